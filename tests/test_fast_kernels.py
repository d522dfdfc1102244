"""The float32 fast paths of ops (chunked NumPy kernels) against scipy in float64.

The generic op suite checks every primitive in float64, where erf and GELU use scipy; these
tests bound the error of the float32 kernels (ops/elementwise.py) on a dense grid instead, and
of the compiled GELU and layer norm (devices/cpu_jit.py) where numba is installed: each test
runs on both paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sps

import tensorcalc as tc
from tensorcalc.devices import cpu_jit as _jit


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def _path(request):
    if request.param == "compiled" and not _jit.enabled():
        pytest.skip("compiled kernels off: no numba (tensorcalc[fast]) or TENSORCALC_JIT=0")
    old = _jit.set_enabled(request.param == "compiled")
    yield
    _jit.set_enabled(old)

# a dense grid over the whole float32 range that matters, plus the edges
GRID = np.concatenate([np.linspace(-12, 12, 2_400_001), [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30]])
X32 = GRID.astype(np.float32)
X = X32.astype(np.float64)  # the exact values of the float32 inputs
ULP1 = float(np.finfo(np.float32).eps)  # 2⁻²³, the spacing of float32 just above 1


def _f32(fn, x=X32):
    y = fn(tc.tensor(x)).data
    assert y.dtype == np.float32
    return y.astype(np.float64)


def test_erf_float32_error_is_a_few_ulps():
    got, ref = _f32(tc.erf), sps.erf(X)
    err = np.abs(got - ref)
    assert err.max() <= 4 * ULP1  # |erf| ≤ 1: absolute error of a few ulps of 1
    small = (np.abs(X) < 1) & (X != 0)
    assert (err[small] / np.abs(ref[small])).max() <= 4 * ULP1  # relative near 0
    far = np.abs(X) >= 4.3  # the kernel's clamp: exactly ±1 beyond (so Φ(−∞) = 0 exactly)
    assert np.array_equal(got[far], np.sign(X[far]))
    assert np.all(np.abs(got) <= 1)
    assert np.all(np.diff(got[np.argsort(X, kind="stable")]) >= 0)  # monotone, like erf


def test_gelu_float32_error():
    got, ref = _f32(tc.gelu), X * sps.ndtr(X)
    err = np.abs(got - ref)
    # x·Φ(x) with Φ = ½(1 + erf(x/√2)): |x|·(error of Φ) + the rounding of the product
    assert (err <= 2 * ULP1 * np.abs(X) + 1e-7 + 2 * ULP1 * np.abs(ref)).all()
    assert np.isfinite(got[np.isfinite(X)]).all()


def test_gelu_grad_float32_error():
    got = _f32(tc.gelu_grad)
    ref = sps.ndtr(X) + X * np.exp(-X * X / 2) / np.sqrt(2 * np.pi)
    assert np.abs(got - ref).max() <= 4 * ULP1


def test_gelu_float32_limits_and_empty():
    x = np.array([-np.inf, np.inf, 0.0, -0.0, -200.0, 200.0], np.float32)
    np.testing.assert_array_equal(tc.gelu(x), [0, np.inf, 0, 0, 0, 200])
    np.testing.assert_array_equal(tc.gelu_grad(x), [0, 1, 0.5, 0.5, 0, 1])
    assert tc.gelu(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_gelu_float32_matches_float64_path_on_odd_shapes():
    """Chunk boundaries and non-contiguous inputs: the kernel sees every element once."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 40_000)).astype(np.float32)[:, ::3]  # a strided view
    for fn in (tc.gelu, tc.gelu_grad, tc.erf):
        got = np.asarray(fn(x))
        want = np.asarray(fn(x.astype(np.float64)))
        assert got.shape == x.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_gelu_float32_backward_uses_the_saved_derivative_and_agrees():
    """With a gradient to come, the float32 forward keeps GELU′ next to y; ȳ ⊙ that equals
    ȳ ⊙ gelu_grad(x); without one (no_grad, or a plain array) nothing extra is kept."""
    from tensorcalc.ops.elementwise import _saved_grad

    rng = np.random.default_rng(1)
    xd = np.concatenate([rng.standard_normal(70_003) * 3, [np.inf, -np.inf, 0.0, -7.0, 9.0]])
    xd = xd.reshape(3, 4, -1)
    x = tc.tensor(xd.astype(np.float32), requires_grad=True)
    y = tc.gelu(x)
    assert _saved_grad(y.data) is not None
    with tc.no_grad():
        assert _saved_grad(tc.gelu(x).data) is None
    assert _saved_grad(tc.gelu(tc.tensor(xd.astype(np.float32))).data) is None
    g = rng.standard_normal(xd.shape).astype(np.float32)
    (y * tc.tensor(g)).sum().backward()
    assert x.grad.dtype == np.float32
    want = g.astype(np.float64) * np.asarray(tc.gelu_grad(xd))
    np.testing.assert_allclose(x.grad.data, want, rtol=4 * ULP1, atol=1e-6)


def test_gelu_float32_second_derivative():
    """Under create_graph the rule is gelu_grad's (no saved Φ): f″ = φ(x)(2 − x²)."""
    zd = np.array([0.3, -1.2, 2.5], np.float32)
    d2 = tc.grad(lambda t: tc.grad(lambda u: tc.gelu(u).sum())(t).sum())(tc.tensor(zd))
    z = zd.astype(np.float64)
    np.testing.assert_allclose(np.asarray(d2.data), np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
                               * (2 - z * z), rtol=1e-5)


def test_layer_norm_keeps_its_statistics_for_the_backward_and_agrees():
    """With a gradient to come, layer_norm's forward keeps x̂ and 1/√(σ² + ε) behind y; the rule
    that reads them gives the recomputing rule's x̄, γ̄, β̄ (float32 and float64, 1 and 2 kernel
    threads); under no_grad nothing extra is kept."""
    from tensorcalc import backend
    from tensorcalc.ops.reduce import LayerNorm, _ln_saved

    rng = np.random.default_rng(4)
    for dtype, tol in ((np.float32, 2e-6), (np.float64, 1e-13)):
        xd = (rng.standard_normal((6, 5, 48)) * 3 + 1).astype(dtype)
        xd[0, 0] = 2.5  # a constant row: x̂ = 0, x̄ = (ĝ − mean ĝ)/√ε
        wd, bd = rng.standard_normal(48).astype(dtype), rng.standard_normal(48).astype(dtype)
        g = rng.standard_normal(xd.shape).astype(dtype)
        for t in (1, 2):
            backend.set_kernel_threads(t)
            try:
                x = tc.tensor(xd, requires_grad=True)
                w, b = tc.tensor(wd, requires_grad=True), tc.tensor(bd, requires_grad=True)
                y = tc.layer_norm(x, w, b)
                assert _ln_saved(y.data, 30) is not None
                with tc.no_grad():
                    assert _ln_saved(tc.layer_norm(x, w, b).data, 30) is None
                np.testing.assert_array_equal(y.data, LayerNorm.forward(np, xd, wd, bd, eps=1e-5))
                (y * tc.tensor(g)).sum().backward()
                want = LayerNorm.vjp(g, y.data, xd, wd, bd, needs=(True, True, True), eps=1e-5)
                for got, ref in zip((x.grad, w.grad, b.grad), want, strict=True):
                    assert got.dtype == dtype
                    np.testing.assert_allclose(got.data, ref, rtol=tol, atol=tol)
            finally:
                backend.set_kernel_threads(None)
