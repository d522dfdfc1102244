"""The compiled kernels (devices/cpu_jit.py, numba) against the NumPy reference path they stand
in for: the same values to rounding, the same NaN/±inf behaviour, the same bits at any kernel
thread count, the switch that turns them off — and the reference path still passes the op
suite."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import test_op_suite as S
from conftest import same_bits

import tensorcalc as tc
from tensorcalc import backend
from tensorcalc.devices import cpu_jit as _jit
from tensorcalc.ops import elementwise as E
from tensorcalc.ops import reduce as R

pytest.importorskip("numba")

JIT_OPS = {"gelu", "ops.gelu", "gelu_grad", "layer_norm", "ops.layer_norm", "softmax",
           "F.softmax", "ops.softmax", "conv2d", "conv2d_primitive", "conv1d",
           "conv_transpose2d"}  # the convolutions' x̄: the compiled fold or per-offset adds


@pytest.fixture(autouse=True)
def _kernels_on():
    """The kernels on whatever TENSORCALC_JIT says: these tests are about them (with
    TENSORCALC_JIT=0 the library runs the NumPy path, which the op suite checks)."""
    old = _jit.set_enabled(True)
    yield
    _jit.set_enabled(old)


@pytest.fixture
def numpy_path():
    old = _jit.set_enabled(False)
    yield
    _jit.set_enabled(old)


def test_the_kernels_are_on_and_the_switch_turns_them_off():
    x = np.ones((4, 8), np.float32)
    assert _jit.enabled() and _jit.applies(np, x)
    assert not _jit.applies(np, x[:, ::2])  # not C-contiguous
    assert not _jit.applies(np, x.astype(np.float16))
    assert not _jit.applies(np, x, x.astype(np.float64))  # mixed dtypes
    old = _jit.set_enabled(False)
    try:
        assert not _jit.applies(np, x)
    finally:
        _jit.set_enabled(old)
    code = "from tensorcalc.devices import cpu_jit as j; import numpy as np; " \
           "print(j.applies(np, np.ones(3, np.float32)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TENSORCALC_JIT": "0"}, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ the reference path
REF_CASES = [c for c in S.CASES if c.values[0].name in JIT_OPS]
REF_SPECIAL = [c for c in S.SPECIAL if c.values[0].name in JIT_OPS]


@pytest.mark.parametrize("spec,shapes,kw", REF_CASES)
def test_numpy_path_passes_the_op_suite(numpy_path, spec, shapes, kw):
    assert REF_CASES
    if spec.ref is not None:
        S.test_forward_matches_reference(spec, shapes, kw)
    S.test_first_order_vjp_jvp_adjoint(spec, shapes, kw)
    S.test_float32_preserved_and_inputs_untouched(spec, shapes, kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("spec,sv", REF_SPECIAL)
def test_numpy_path_special_values(numpy_path, spec, sv, dtype):
    S.test_special_values(spec, sv, dtype)


# ------------------------------------------------------------------ layer norm
def _ln_both(x, w, b, keep):
    y = R.LayerNorm.forward(np, x, w, b, eps=1e-5, keep=keep)
    old = _jit.set_enabled(False)
    try:
        ref = R.LayerNorm.forward(np, x, w, b, eps=1e-5, keep=keep)
    finally:
        _jit.set_enabled(old)
    return y, ref


@pytest.mark.parametrize("dtype,tol", [(np.float32, 3e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (5, 7), (2, 3, 128), (300, 96)])
def test_layer_norm_kernels_agree_with_numpy(dtype, tol, shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    x.reshape(-1, shape[-1])[0] = 2.5  # a constant row
    n = shape[-1]
    w, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    for keep in (False, True):
        y, ref = _ln_both(x, w, b, keep)
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    got = R.LayerNorm.vjp(g, y, x, w, b, needs=(True, True, True), eps=1e-5, keep=True)
    old = _jit.set_enabled(False)
    try:
        want = R.LayerNorm.vjp(g, ref, x, w, b, needs=(True, True, True), eps=1e-5, keep=True)
    finally:
        _jit.set_enabled(old)
    for a, r in zip(got, want, strict=True):
        assert a.dtype == dtype and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=10 * tol, atol=10 * tol * np.sqrt(x.size))
    # needs: only what is asked for is computed
    gx, gw, gb = R.LayerNorm.vjp(g, y, x, w, b, needs=(False, True, False), eps=1e-5,
                                 keep=True)
    assert gx is None and gb is None
    np.testing.assert_allclose(gw, want[1], rtol=10 * tol, atol=10 * tol * np.sqrt(x.size))


def test_layer_norm_kernels_propagate_nan_and_inf_like_numpy():
    x = np.array([[1.0, np.nan, 2.0, 3.0], [np.inf, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]],
                 np.float32)
    w, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    with np.errstate(all="ignore"):
        y, ref = _ln_both(x, w, b, True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert np.isnan(y[:2]).all() and np.isfinite(y[2]).all()


def test_layer_norm_with_zero_variance_and_zero_eps_is_nan_or_inf_not_an_error():
    x = np.full((2, 4), 3.0)
    with np.errstate(all="ignore"):
        y = R.LayerNorm.forward(np, x, np.ones(4), np.zeros(4), eps=0.0)
    assert np.isnan(y).all()  # 0 · ∞, as NumPy's path gives (numba would raise by default)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_kernels_give_the_same_bits_at_any_thread_count(threads, dtype):
    rng = np.random.default_rng(7)
    rows, n = (_jit._ROW_PAR_MIN * 3) // 256 + 13, 256  # big enough to be split, ragged end
    x = rng.standard_normal((rows, n)).astype(dtype)
    w, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal((rows, n)).astype(dtype)
    calls = backend.parallel_calls()

    def run():
        y = _jit.layer_norm_forward(x, w, b, 1e-5, True)
        y0 = _jit.layer_norm_forward(x, w, b, 1e-5, False)
        xh, inv = R._ln_saved(y, rows)
        return (y, y0) + _jit.layer_norm_backward(g, w, xh, inv.reshape(-1), (True, True, True))

    one = threads(1, run)
    assert backend.parallel_calls() == calls
    for t in (2, 3):
        for a, b_ in zip(one, threads(t, run), strict=True):
            same_bits(a, b_)
    assert backend.parallel_calls() > calls
    same_bits(one[0], one[1])  # keep or not: the same y


# ------------------------------------------------------------------ GELU
def _gelu_numpy(x):
    y = E._chunked(np, E._gelu_keep32_chunk, (x,), nout=2)
    return y[0], y[1]


def test_gelu_kernel_matches_the_numpy_kernel_and_its_edges():
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-20, 20, 400_001), rng.standard_normal(10_000) * 5,
                        [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, np.inf, -np.inf, np.nan,
                         13.0, -13.0, 13.3, -13.3, 14.2, -14.2, 19.9, -19.9, 1e4, -1e4]])
    x = x.astype(np.float32)
    y, d = _jit.gelu32(x, 1)
    y_ref, d_ref = _gelu_numpy(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_array_equal(np.isnan(d), np.isnan(x))
    f = np.isfinite(x)
    scale = np.maximum(1.0, np.abs(x[f]))
    assert (np.abs(y[f] - y_ref[f]) / scale).max() <= 1e-6
    assert np.abs(d[f] - d_ref[f]).max() <= 1e-6
    # the limits, exactly: y(−∞) = −0, y(+∞) = +∞, GELU′(±∞) = 0 and 1, φ underflows to 0
    i = {v: int(np.flatnonzero(x == v)[0]) for v in (np.inf, -np.inf, -1e4, -13.3)}
    assert y[i[np.inf]] == np.inf and y[i[-np.inf]] == 0 and d[i[np.inf]] == 1
    assert d[i[-np.inf]] == 0 and d[i[-1e4]] == 0 and y[i[-1e4]] == 0
    assert d[i[-13.3]] == 0  # x·φ(x) beyond float32's range is 0, not a denormal
    # the three modes write the same values
    same_bits(_jit.gelu32(x, 0)[0], y)
    same_bits(_jit.gelu32(x, 2)[0], d)


@pytest.mark.parametrize("n", [1, 4095, 4097, _jit._ROW_PAR_MIN * 2 + 4099])
def test_gelu_kernel_gives_the_same_bits_at_any_thread_count(threads, n):
    x = (np.random.default_rng(n).standard_normal(n) * 4).astype(np.float32)
    one = threads(1, lambda: _jit.gelu32(x, 1))
    for t in (2, 3):
        same_bits(one, threads(t, lambda: _jit.gelu32(x, 1)))


def test_gelu_through_the_library_uses_the_kernel_and_keeps_its_derivative():
    x = (np.random.default_rng(0).standard_normal((64, 96)) * 2).astype(np.float32)
    t = tc.tensor(x, requires_grad=True)
    tc.gelu(t).sum().backward()
    _, d = _jit.gelu32(x, 1)
    same_bits(t.grad.data, d)  # ȳ = 1: x̄ is the kept GELU′


# ------------------------------------------------------------------ softmax
def _softmax_both(x, mask):
    y = R.Softmax.forward(np, x, axis=x.ndim - 1, mask=mask)
    old = _jit.set_enabled(False)
    try:
        ref = R.Softmax.forward(np, x, axis=x.ndim - 1, mask=mask)
    finally:
        _jit.set_enabled(old)
    return y, ref


def _masks(rng, shape):
    L, n = shape[-2], shape[-1]
    yield None
    yield np.tril(np.ones((L, n), bool))  # causal: used as it is (rows tile it)
    kp = rng.random((shape[0],) + (1,) * (len(shape) - 2) + (n,)) > 0.3  # key padding
    kp[0] = False  # a sample with no allowed key
    yield kp
    yield rng.random(shape) > 0.5  # full


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 64, 64), (3, 1, 1)])
def test_softmax_kernel_agrees_with_numpy_under_every_mask(shape):
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    for mask in _masks(rng, shape):
        y, ref = _softmax_both(x, mask)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=1e-7)
        if mask is not None:
            assert (y[~np.broadcast_to(mask, shape)] == 0).all()
        got = R.Softmax.vjp(g, y, x, needs=(True,), axis=x.ndim - 1, mask=mask)[0]
        old = _jit.set_enabled(False)
        try:
            want = R.Softmax.vjp(g, ref, x, needs=(True,), axis=x.ndim - 1, mask=mask)[0]
        finally:
            _jit.set_enabled(old)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_kernel_edge_rows_are_numpys():
    x = np.array([[1, 2, np.inf, 3], [np.nan, 1, 2, 3], [-np.inf] * 4, [1, 2, 3, 4],
                  [-np.inf, 0, 1, -np.inf], [-200, 0, -90, -87]], np.float32)
    m = np.array([[1, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1],
                  [1, 1, 1, 1]], bool)
    with np.errstate(all="ignore"):
        for mask in (None, m):
            y, ref = _softmax_both(x, mask)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
            ok = ~np.isnan(ref)
            np.testing.assert_allclose(y[ok], ref[ok], rtol=2e-6, atol=1e-30)
        y = _softmax_both(x, None)[0]
    assert np.isnan(y[0, 2]) and (y[0, [0, 1, 3]] == 0).all()  # ∞/∞ at the +∞
    assert np.isnan(y[1:3]).all()  # a NaN score, and 0/0 for an all −∞ row


@pytest.mark.parametrize("masked", [False, True])
def test_softmax_kernels_give_the_same_bits_at_any_thread_count(threads, masked):
    L = 64
    rows = (_jit._ROW_PAR_MIN * 3) // L + 5 * L  # split; a multiple of the mask's rows
    x = (np.random.default_rng(1).standard_normal((rows // L, L, L)) * 4).astype(np.float32)
    g = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    mask = np.tril(np.ones((L, L), bool)) if masked else None

    def run():
        y = R.Softmax.forward(np, x, axis=2, mask=mask)
        return y, R.Softmax.vjp(g, y, x, needs=(True,), axis=2, mask=mask)[0]

    one = threads(1, run)
    for t in (2, 3):
        for a, b in zip(one, threads(t, run), strict=True):
            same_bits(a, b)


# ------------------------------------------------------------------ batch norm, ReLU′
def _cl(a):
    """(N, C, H, W) values in channels-last memory (a conv output's layout)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _bn_run(x, w, b, g, gmu, gvar, r=None, **kw):
    """BatchNorm's (y, μ, σ²) and its cotangents (x̄, γ̄, β̄ and, with a residual r, r̄)."""
    xs = (x, w, b) if r is None else (x, w, b, r)
    y = R.BatchNorm.forward(np, *xs, eps=1e-5, **kw)
    return list(y) + list(R.BatchNorm.vjp((g, gmu, gvar), y, *xs, needs=(True,) * len(xs),
                                          eps=1e-5, **kw))


@pytest.mark.parametrize("relu", [False, True], ids=["bn", "bn+relu"])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(64, 16, 28, 28), (3, 5, 7, 2), (2, 64, 1, 1)])
@pytest.mark.parametrize("g_layout", ["channels-last", "C", "broadcast"])
def test_batch_norm_kernels_agree_with_numpy_on_channels_last_memory(dtype, tol, shape, relu,
                                                                     g_layout):
    """x in channels-last memory takes the compiled kernels; ȳ in another layout (NCHW, or
    global average pooling's broadcast) is copied to channels-last rows for them."""
    kw = {"relu": True} if relu else {}
    rng = np.random.default_rng(sum(shape))
    x = _cl((rng.standard_normal(shape) * 2 + 3).astype(dtype))
    x[:, 0] = 1.5  # a constant channel: x̂ = 0
    c = shape[1]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    if g_layout == "channels-last":
        g = _cl(g)
    elif g_layout == "broadcast":
        g = np.broadcast_to(g[:, :, :1, :1], shape)
    gmu, gvar = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    assert R._cl_rows(x) is not None
    assert (R._cl_rows(g) is not None) == (g_layout == "channels-last" or shape[2:] == (1, 1))
    got = _bn_run(x, w, b, g, gmu, gvar, **kw)
    old = _jit.set_enabled(False)
    try:
        want = _bn_run(x, w, b, g, gmu, gvar, **kw)
    finally:
        _jit.set_enabled(old)
    assert got[0].transpose(0, 2, 3, 1).flags.c_contiguous  # y and x̄ stay channels-last
    assert got[3].transpose(0, 2, 3, 1).flags.c_contiguous
    # a broadcast ȳ sums H·W equal values per sample and channel: β̄ is ~10⁴ here, and its
    # float32 rounding (blocks of 256 rows, then the blocks) ~2e-6 relative, 16 ulps
    loose = 8 if g_layout == "broadcast" and dtype == np.float32 else 1
    for a, r in zip(got, want, strict=True):
        assert a.dtype == dtype and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=tol, atol=loose * tol * max(1.0, np.abs(r).max()))
    assert (got[0][:, 0] == (max(b[0], 0) if relu else b[0])).all()  # constant channel: y = β
    if relu:  # the fusion is ReLU after batch norm: y, and x̄ from ȳ ⊙ [y > 0]
        plain = _bn_run(x, w, b, g * (got[0] > 0), gmu, gvar)
        assert (got[0] >= 0).all() and (got[0] > 0).any() and (got[0] == 0).any()
        np.testing.assert_allclose(got[0], np.maximum(plain[0], 0), rtol=tol, atol=tol)
        for a, r in zip(got[3:], plain[3:], strict=True):
            np.testing.assert_allclose(a, r, rtol=tol, atol=tol * max(1.0, np.abs(r).max()))


@pytest.mark.parametrize("relu", [False, True], ids=["bn+r", "bn+r+relu"])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("r_layout", ["channels-last", "C"])
def test_batch_norm_residual_kernels_agree_with_numpy(dtype, tol, relu, r_layout,
                                                      monkeypatch):
    """y = γ x̂ + β + r (then ReLU), r̄ = ȳ (⊙ [y > 0]): the compiled kernels against the NumPy
    path (a C-ordered residual takes the NumPy path), and both against batch norm without the
    residual plus the add."""
    shape = (8, 16, 12, 12)
    rng = np.random.default_rng(11)
    x = _cl((rng.standard_normal(shape) * 2 + 3).astype(dtype))
    r = rng.standard_normal(shape).astype(dtype)
    r = _cl(r) if r_layout == "channels-last" else r
    w, b = rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)
    g = _cl(rng.standard_normal(shape).astype(dtype))
    gmu, gvar = rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)
    kw = {"relu": True} if relu else {}
    seen = []
    fwd = _jit.batch_norm_forward
    monkeypatch.setattr(_jit, "batch_norm_forward", lambda *a: seen.append(a[-1]) or fwd(*a))
    got = _bn_run(x, w, b, g, gmu, gvar, r, **kw)
    # the kernels ran, with the residual's rows, where r is channels-last as x is
    assert [s is not None for s in seen] == ([True] if r_layout == "channels-last" else [])
    old = _jit.set_enabled(False)
    try:
        want = _bn_run(x, w, b, g, gmu, gvar, r, **kw)
    finally:
        _jit.set_enabled(old)
    assert len(got) == 7
    for a, e in zip(got, want, strict=True):
        assert a.dtype == dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()))
    plain = _bn_run(x, w, b, g, gmu, gvar)  # batch norm alone, then the add (and ReLU)
    s = plain[0] + r
    np.testing.assert_allclose(got[0], np.maximum(s, 0) if relu else s, rtol=tol, atol=tol)
    gm = g * (got[0] > 0) if relu else g
    np.testing.assert_array_equal(got[6], gm)  # r̄: ȳ itself, or masked
    if relu:
        assert (got[0] == 0).any() and (got[0] > 0).any()
        masked = _bn_run(x, w, b, gm, gmu, gvar)
        for a, e in zip(got[3:6], masked[3:], strict=True):
            np.testing.assert_allclose(a, e, rtol=tol, atol=tol * max(1.0, np.abs(e).max()))
    # r̄ alone (x needs no gradient): the mask without the x̄ pass
    y = R.BatchNorm.forward(np, x, w, b, r, eps=1e-5, **kw)
    only = R.BatchNorm.vjp((g, gmu, gvar), y, x, w, b, r, needs=(False, False, False, True),
                           eps=1e-5, **kw)
    assert only[0] is None
    np.testing.assert_array_equal(only[3], gm)


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_kernel_keeps_a_nan_in_its_channel(relu):
    x = _cl(np.random.default_rng(0).standard_normal((4, 3, 5, 5)))
    x[1, 2, 3, 3] = np.nan
    w, b = np.ones(3), np.zeros(3)
    y, mu, var = R.BatchNorm.forward(np, x, w, b, eps=1e-5, relu=relu)
    assert np.isnan(y[:, 2]).all() and np.isnan(mu[2]) and np.isfinite(y[:, :2]).all()


def test_batch_norm_kernels_give_the_same_bits_at_any_thread_count(threads):
    shape = (64, 32, 28, 28)  # 1.6M values: split over the pool
    rng = np.random.default_rng(5)
    x = _cl(rng.standard_normal(shape).astype(np.float32))
    g = _cl(rng.standard_normal(shape).astype(np.float32))
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    gmu, gvar = np.ones(32, np.float32), np.ones(32, np.float32)
    calls = backend.parallel_calls()
    for kw in ({}, {"relu": True}):
        def run(kw=kw):
            return _bn_run(x, w, b, g, gmu, gvar, **kw)

        one = threads(1, run)
        for t in (2, 3):
            for a, b_ in zip(one, threads(t, run), strict=True):
                same_bits(a, b_)
    assert backend.parallel_calls() > calls


@pytest.mark.parametrize("slope", [0.0, 0.2])
@pytest.mark.parametrize("layout", ["C", "channels-last", "mixed", "padded view", "x C, g not"])
def test_relu_rule_kernel_is_the_product_with_the_mask(layout, slope):
    """ReLU's rule ȳ ⊙ [x > 0] and leaky ReLU's where(x > 0, ȳ, a·ȳ), compiled, give the NumPy
    rules' bits in every pair of layouts: one flat pass where ȳ and x share one, the strided
    4-D pass where x is channels-last and ȳ is not (ȳ NCHW from a flatten, or a view into a
    padded buffer, as a convolution's x̄ is); x C-contiguous with ȳ in another layout: NumPy."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 16, 12, 12)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    x[0, 0, 0, :4] = [0.0, -0.0, np.nan, -1.0]
    g[0, 0, 0, :4] = [1.0, 1.0, 1.0, np.inf]  # inf·0 = NaN, as ȳ ⊙ [x > 0] gives
    if layout not in ("C", "x C, g not"):
        x = _cl(x)
    if layout == "channels-last":
        g = _cl(g)
    if layout == "padded view":  # channels-last memory of a padded image, viewed
        buf = np.zeros((8, 14, 14, 16), np.float32)
        buf[:, 1:13, 1:13] = g.transpose(0, 2, 3, 1)
        g = buf[:, 1:13, 1:13].transpose(0, 3, 1, 2)
    if layout == "x C, g not":
        g = _cl(g)
    with np.errstate(invalid="ignore"):
        if slope:
            got = E.LeakyRelu.vjp(g, None, x, needs=(True,), negative_slope=slope)[0]
            want = np.where(x > 0, g, g * np.float32(slope))
        else:
            got = E.Relu.vjp(g, None, x, needs=(True,))[0]
            want = g * (x > 0)
    same_bits(np.ascontiguousarray(got), np.ascontiguousarray(want))
    handled = _jit.relu_grad(g, x, slope) is not None
    assert handled == (layout != "x C, g not")
    if layout != "C" and handled:
        assert got.transpose(0, 2, 3, 1).flags.c_contiguous  # x̄ in x's layout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "channels-last", "strided"])
def test_relu_forward_kernel_gives_numpys_maximum_bits(layout, dtype, monkeypatch):
    """max(x, 0) by the compiled pass is NumPy's maximum(x, 0) bit for bit (−0 → +0, NaN kept,
    ±inf), in x's memory order; a layout it does not take goes to NumPy."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 16, 12, 12)).astype(dtype)
    x[0, 0, 0, :6] = [0.0, -0.0, np.nan, -np.inf, np.inf, -1.0]
    if layout == "channels-last":
        x = _cl(x)
    if layout == "strided":
        x = x[:, :, ::2]
    ran = []
    real = _jit.relu
    monkeypatch.setattr(_jit, "relu", lambda a: ran.append(1) or real(a))
    got = E.Relu.forward(np, x)
    same_bits(np.ascontiguousarray(got), np.ascontiguousarray(np.maximum(x, 0)))
    assert ran  # the kernel was asked
    assert (real(x) is None) == (layout == "strided")
    if layout == "channels-last":
        assert got.transpose(0, 2, 3, 1).flags.c_contiguous


def _pool_run(x, g):
    from tensorcalc.ops import windows as W

    geo = dict(kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1))
    y = W.MaxPool2d.forward(np, x, **geo)
    return y, W.MaxPool2d.vjp(g, y, x, needs=(True,), **geo)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_kernels_give_numpys_bits_ties_nan_and_inf_included(dtype, threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 8, 10)).astype(dtype)
    x[0, 0, :2, :2] = 1.0  # a four-way tie
    x[0, 1, 0, 0] = np.nan  # a NaN window
    x[1, 2, 2:4, 2:4] = [[2.0, 2.0], [0.0, -1.0]]  # a two-way tie
    x = _cl(x)
    g = rng.standard_normal((6, 5, 4, 5)).astype(dtype)
    g[2, 3, 1, 1] = np.inf  # NaN off the maximum, as the NumPy rule gives
    g = _cl(g)
    with np.errstate(invalid="ignore", divide="ignore"):
        got = _pool_run(x, g)
        old = _jit.set_enabled(False)
        try:
            want = _pool_run(x, g)
        finally:
            _jit.set_enabled(old)
    for a, b in zip(got, want, strict=True):
        same_bits(np.ascontiguousarray(a), np.ascontiguousarray(b))
        assert a.transpose(0, 2, 3, 1).flags.c_contiguous  # channels-last stays so
    assert got[1][0, 0, 0, 0] == g[0, 0, 0, 0] / 4 and np.isnan(got[1][0, 1, :2, :2]).all()
    big = _cl(rng.standard_normal((64, 32, 24, 24)).astype(dtype))  # split over the pool
    gb = _cl(rng.standard_normal((64, 32, 12, 12)).astype(dtype))
    one = threads(1, lambda: _pool_run(big, gb))
    for a, b in zip(one, threads(2, lambda: _pool_run(big, gb)), strict=True):
        same_bits(np.ascontiguousarray(a), np.ascontiguousarray(b))


# ------------------------------------------------------------------ convolution x̄ (fold)
def _conv_grads(x, w, g, geo):
    from tensorcalc.ops import windows as W

    y = W.Conv2d.forward(np, x, w, None, **geo)
    return W.Conv2d.vjp(g, y, x, w, None, needs=(True, True, False), **geo)[0]


# (N, C, H, W), O, kernel, stride, padding, dilation: valid, strided (DCGAN's 4×4 / 2), padded
# with few channels (the full correlation needs 16), dilated, non-square, one sample
FOLD_GEOS = [((5, 16, 12, 12), 32, (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
             ((4, 8, 14, 14), 16, (4, 4), (2, 2), ((1, 1), (1, 1)), (1, 1)),
             ((3, 3, 9, 9), 5, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
             ((2, 4, 11, 10), 6, (3, 2), (2, 1), ((2, 0), (1, 3)), (2, 3)),
             ((1, 2, 5, 5), 3, (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1))]


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("xs,o,k,s,p,d", FOLD_GEOS)
def test_conv_input_grad_fold_agrees_with_the_per_offset_adds(dtype, tol, xs, o, k, s, p, d):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((o, xs[1]) + k).astype(dtype)
    geo = dict(stride=s, padding=p, dilation=d)
    from tensorcalc.ops.windows import out_size

    ho = out_size(xs[2], k[0], s[0], p[0], d[0])
    wo = out_size(xs[3], k[1], s[1], p[1], d[1])
    g = rng.standard_normal((xs[0], o, ho, wo)).astype(dtype)
    got = _conv_grads(x, w, g, geo)
    old = _jit.set_enabled(False)
    try:
        want = _conv_grads(x, w, g, geo)
    finally:
        _jit.set_enabled(old)
    assert got.shape == x.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    # and x̄ is the adjoint's: ⟨x̄, x⟩ = ⟨ȳ, conv(x)⟩ (float64)
    lhs = float(np.vdot(got.astype(np.float64), x.astype(np.float64)))
    from tensorcalc.ops import windows as W

    y = W.Conv2d.forward(np, x.astype(np.float64), w.astype(np.float64), None, **geo)
    rhs = float(np.vdot(g.astype(np.float64), y))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(rhs))


def test_conv_input_grad_fold_gives_the_same_bits_at_any_thread_count(threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 16, 5, 5)).astype(np.float32)
    g = rng.standard_normal((64, 32, 8, 8)).astype(np.float32)
    geo = dict(stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1))
    calls = backend.parallel_calls()
    one = threads(1, lambda: _conv_grads(x, w, g, geo))
    for t in (2, 3):
        same_bits(one, threads(t, lambda: _conv_grads(x, w, g, geo)))
    assert backend.parallel_calls() > calls  # the pool did run


# (N, C, H_out·W_out from) kernel, stride, padding, dilation: DCGAN's 4×4 / 2 transposed
# convolutions, overlapping 3×3 / 1 with padding, dilated non-square
FOLD_FWD_GEOS = [((3, 4, (14, 14)), (4, 4), (2, 2), ((1, 1), (1, 1)), (1, 1)),
                 ((2, 3, (9, 7)), (3, 3), (1, 1), ((1, 1), (0, 2)), (1, 1)),
                 ((2, 2, (11, 10)), (3, 2), (2, 1), ((2, 0), (1, 3)), (2, 3))]


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("shape,k,s,p,d", FOLD_FWD_GEOS)
def test_fold_kernel_agrees_with_numpys_strided_adds(dtype, tol, shape, k, s, p, d):
    from tensorcalc.ops import windows as W

    n, c, (h, w) = shape
    ho = W.out_size(h, k[0], s[0], p[0], d[0])
    wo = W.out_size(w, k[1], s[1], p[1], d[1])
    cols = np.random.default_rng(6).standard_normal((n, ho * wo, k[0] * k[1] * c)).astype(dtype)
    geo = dict(size=(h, w), kernel=k, stride=s, padding=p, dilation=d)
    got = W.Fold.forward(np, cols, **geo)
    old = _jit.set_enabled(False)
    try:
        want = W.Fold.forward(np, cols, **geo)
    finally:
        _jit.set_enabled(old)
    assert got.shape == want.shape == (n, c, h, w) and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_fold_kernel_gives_the_same_bits_at_any_thread_count(threads):
    from tensorcalc.ops import windows as W

    cols = np.random.default_rng(7).standard_normal((64, 14 * 14, 16 * 32)).astype(np.float32)
    geo = dict(size=(28, 28), kernel=(4, 4), stride=(2, 2), padding=((1, 1), (1, 1)),
               dilation=(1, 1))
    calls = backend.parallel_calls()
    one = threads(1, lambda: W.Fold.forward(np, cols, **geo))
    for t in (2, 3):
        same_bits(one, threads(t, lambda: W.Fold.forward(np, cols, **geo)))
    assert backend.parallel_calls() > calls


# ------------------------------------------------------------------ tanh and the LSTM steps
def test_tanh32_is_within_two_ulps_and_keeps_its_edges():
    """_tanh32 (the LSTM kernels' tanh) on a dense grid and the edges, as a compiled loop."""
    nb = _jit._numba()
    _jit._kernel("lstm_fwd")  # compiles the helpers
    tanh32 = _jit._tanh32

    @nb.njit
    def run(x, y, e, t):
        for i in range(x.size):
            y[i] = tanh32(x[i], e, t)

    x = np.concatenate([np.linspace(-12, 12, 1_200_001), [0.0, -0.0, 1e-30, -1e-30, 0.4, -0.4,
                        np.nextafter(0.4, 0), 43.0, 44.0, -44.0, 1e30, np.inf, -np.inf,
                        np.nan]]).astype(np.float32)
    y = np.empty_like(x)
    run(x, y, *_jit._tanh_consts())
    ref = np.tanh(x.astype(np.float64))
    f = np.isfinite(x) & (x != 0)
    assert (np.abs(y[f] - ref[f]) / np.abs(ref[f])).max() <= 3e-7
    assert y[-3] == 1 and y[-2] == -1 and np.isnan(y[-1]) and y[-4] == 1
    assert y[-14] == 0 and y[-12] == 1e-30 and abs(y[-9]) < 1  # tanh x = x near 0
    assert np.all(np.abs(y[np.isfinite(x)]) <= 1)


def _lstm_data(T=5, B=3, H=8, seed=0):
    rng = np.random.default_rng(seed)
    zs = (rng.standard_normal((T, B, 4 * H)) * 2).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    w = (rng.standard_normal((4 * H, H)) * 0.5).astype(np.float32)
    ghs = rng.standard_normal((T, B, H)).astype(np.float32)
    gcs = rng.standard_normal((T, B, H)).astype(np.float32)
    return zs, h0, c0, w, ghs, gcs


@pytest.mark.parametrize("with_gcs", [False, True])
def test_lstm_step_kernels_agree_with_the_numpy_rules(with_gcs):
    from tensorcalc.ops.rnn import LstmScan

    zs, h0, c0, w, ghs, gcs = _lstm_data()
    gcs = gcs if with_gcs else np.zeros_like(gcs)
    gg = np.zeros(zs.shape, np.float32)
    needs = (True, True, True, True)
    assert LstmScan._compiled(np, zs, h0, c0, w, None)
    y = LstmScan.forward(np, zs, h0, c0, w)
    g = LstmScan.vjp((ghs, gcs, gg), y, zs, h0, c0, w, needs=needs)
    old = _jit.set_enabled(False)
    try:
        assert not LstmScan._compiled(np, zs, h0, c0, w, None)
        y_ref = LstmScan.forward(np, zs, h0, c0, w)
        g_ref = LstmScan.vjp((ghs, gcs, gg), y_ref, zs, h0, c0, w, needs=needs)
    finally:
        _jit.set_enabled(old)
    for a, b in zip((*y, *g), (*y_ref, *g_ref), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # and the compiled backward is the derivative of the compiled forward (float64 check of
    # a directional derivative: ⟨ȳ, J v⟩ = ⟨Jᵀȳ, v⟩ with J by central differences)
    rng = np.random.default_rng(1)
    v = [rng.standard_normal(a.shape).astype(np.float32) for a in (zs, h0, c0, w)]
    eps = 1e-2

    def f(s):
        hs, cs, _ = LstmScan.forward(np, *(a + s * d for a, d in zip((zs, h0, c0, w), v,
                                                                       strict=True)))
        return float(np.sum(hs.astype(np.float64) * ghs) + np.sum(cs.astype(np.float64) * gcs))

    fd = (f(eps) - f(-eps)) / (2 * eps)
    an = sum(float(np.sum(a.astype(np.float64) * d)) for a, d in zip(g, v, strict=True))
    assert abs(fd - an) <= 2e-3 * max(1.0, abs(an))


def test_lstm_kernels_are_not_used_with_a_mask_float64_or_a_gate_cotangent():
    from tensorcalc.ops.rnn import LstmScan

    zs, h0, c0, w, ghs, gcs = _lstm_data()
    mask = np.ones(zs.shape[:2], bool)
    assert not LstmScan._compiled(np, zs, h0, c0, w, mask)
    d = [a.astype(np.float64) for a in (zs, h0, c0, w)]
    assert not LstmScan._compiled(np, *d, None)
    # a non-zero gate cotangent: the NumPy rule (the same values as with the kernels off)
    y = LstmScan.forward(np, zs, h0, c0, w)
    gg = np.random.default_rng(2).standard_normal(y[2].shape).astype(np.float32)
    g = LstmScan.vjp((ghs, gcs, gg), y, zs, h0, c0, w, needs=(True,) * 4)
    old = _jit.set_enabled(False)
    try:
        g_ref = LstmScan.vjp((ghs, gcs, gg), y, zs, h0, c0, w, needs=(True,) * 4)
    finally:
        _jit.set_enabled(old)
    for a, b in zip(g, g_ref, strict=True):
        same_bits(a, b)


def test_gru_step_kernels_agree_with_the_numpy_rules():
    from tensorcalc.ops.rnn import GruScan

    rng = np.random.default_rng(3)
    T, B, H = 5, 3, 8
    xs = (rng.standard_normal((T, B, 3 * H)) * 2).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    w = (rng.standard_normal((3 * H, H)) * 0.5).astype(np.float32)
    b = rng.standard_normal(3 * H).astype(np.float32)
    gy = rng.standard_normal((T, B, H)).astype(np.float32)
    needs = (True,) * 4
    assert GruScan._compiled(np, xs, h0, w, b, None)
    assert not GruScan._compiled(np, xs, h0, w, b, np.ones((T, B), bool))
    y = GruScan.forward(np, xs, h0, w, b)
    g = GruScan.vjp(gy, y, xs, h0, w, b, needs=needs)
    old = _jit.set_enabled(False)
    try:
        assert not GruScan._compiled(np, xs, h0, w, b, None)
        y_ref = GruScan.forward(np, xs, h0, w, b)
        g_ref = GruScan.vjp(gy, y_ref, xs, h0, w, b, needs=needs)
    finally:
        _jit.set_enabled(old)
    for a_, b_ in zip((y, *g), (y_ref, *g_ref), strict=True):
        assert a_.shape == b_.shape and a_.dtype == b_.dtype == np.float32
        np.testing.assert_allclose(a_, b_, rtol=2e-5, atol=2e-6)
    # the compiled backward is the derivative of the compiled forward (central differences)
    v = [rng.standard_normal(a_.shape).astype(np.float32) for a_ in (xs, h0, w, b)]
    eps = 1e-2

    def f(s):
        hs = GruScan.forward(np, *(a_ + s * d for a_, d in zip((xs, h0, w, b), v, strict=True)))
        return float(np.sum(hs.astype(np.float64) * gy))

    fd = (f(eps) - f(-eps)) / (2 * eps)
    an = sum(float(np.sum(a_.astype(np.float64) * d)) for a_, d in zip(g, v, strict=True))
    assert abs(fd - an) <= 2e-3 * max(1.0, abs(an))
    # needs: W̄ and b̄ only when asked
    _, _, gw, gb = GruScan.vjp(gy, y, xs, h0, w, b, needs=(True, True, False, False))
    assert gw is None and gb is None


@pytest.mark.parametrize("slope", [0.01, 0.2, 1.0])
@pytest.mark.parametrize("layout", ["C", "channels-last"])
def test_leaky_relu_forward_kernel_gives_numpys_bits(layout, slope):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    x[0, 0, 0, :6] = [0.0, -0.0, np.nan, -np.inf, np.inf, -1e-45]
    if layout == "channels-last":
        x = _cl(x)
    assert _jit.leaky_relu(x, slope) is not None
    got = E.LeakyRelu.forward(np, x, negative_slope=slope)
    want = np.maximum(x, x * np.float32(slope))
    same_bits(np.ascontiguousarray(got), np.ascontiguousarray(want))
    assert np.signbit(got[0, 0, 0, 1])  # −0 stays −0
    if layout == "channels-last":
        assert got.transpose(0, 2, 3, 1).flags.c_contiguous
    assert _jit.leaky_relu(x, 0.0) is None and _jit.leaky_relu(x, 2.0) is None


def test_recurrent_scans_split_their_batch_over_threads(threads):
    """The LSTM and GRU time loops run per batch range on the kernel pool (cpu_jit._over_batch):
    the same values as one thread to rounding (a range's GEMMs have fewer rows), the same bits
    on every run with the same thread count, and the pool is used."""
    from tensorcalc.ops.rnn import GruScan, LstmScan

    rng = np.random.default_rng(5)
    T, B, H = 12, 48, 64
    zs = (rng.standard_normal((T, B, 4 * H)) * 2).astype(np.float32)
    xs = zs[..., :3 * H].copy()
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    w4 = (rng.standard_normal((4 * H, H)) * 0.3).astype(np.float32)
    w3, b3 = w4[:3 * H].copy(), rng.standard_normal(3 * H).astype(np.float32)
    gy = rng.standard_normal((T, B, H)).astype(np.float32)
    gz = np.zeros((T, B, 4 * H), np.float32)

    def lstm():
        y = LstmScan.forward(np, zs, h0, c0, w4)
        return (*y, *LstmScan.vjp((gy, gy * 0.5, gz), y, zs, h0, c0, w4, needs=(True,) * 4))

    def gru():
        y = GruScan.forward(np, xs, h0, w3, b3)
        return (y, *GruScan.vjp(gy, y, xs, h0, w3, b3, needs=(True,) * 4))

    assert LstmScan._compiled(np, zs, h0, c0, w4, None)
    for run in (lstm, gru):
        one = threads(1, run)
        calls = backend.parallel_calls()
        two = threads(2, run)
        assert backend.parallel_calls() > calls
        for a, b_ in zip(one, two, strict=True):
            np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)
        for a, b_ in zip(two, threads(2, run), strict=True):
            same_bits(a, b_)


def test_recurrent_time_loops_compiled_and_python_agree(monkeypatch):
    """The LSTM's and GRU's time loops run as one compiled call (GEMMs through SciPy's BLAS
    pointer, in small-matrix blocks) where those kernels exist, else as Python loops of NumPy
    calls: the two give the same values to rounding."""
    from tensorcalc.ops.rnn import GruScan, LstmScan

    for name in ("lstm_fwd_scan", "lstm_bwd_scan", "gru_fwd_scan", "gru_bwd_scan"):
        assert _jit._blas_kernel(name, np.float32) is not None
    zs, h0, c0, w, ghs, gcs = _lstm_data(T=7, B=5, H=40)  # 160 gate columns: 5 blocks of 32
    gg = np.zeros(zs.shape, np.float32)
    xs, w3 = zs[..., :120].copy(), w[:120].copy()
    b3 = np.linspace(-1, 1, 120, dtype=np.float32)

    def run():
        y = LstmScan.forward(np, zs, h0, c0, w)
        g = GruScan.forward(np, xs, h0, w3, b3)
        return (*y, *LstmScan.vjp((ghs, gcs, gg), y, zs, h0, c0, w, needs=(True,) * 4), g,
                *GruScan.vjp(ghs, g, xs, h0, w3, b3, needs=(True,) * 4))

    monkeypatch.setattr(_jit, "_small_block", lambda rows, k, n: min(n, 32))
    compiled = run()
    real = _jit._blas_kernel
    monkeypatch.setattr(_jit, "_blas_kernel",
                        lambda name, dt: None if name.endswith("_scan") else real(name, dt))
    python = run()
    for a, b_ in zip(compiled, python, strict=True):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)


_WIDE_PROBE = (
    "import llvmlite.binding as ll, numba\n"
    "{before}"
    "from tensorcalc.devices import cpu_jit as J\n"
    "assert J._numba() is not None\n"
    "print(J._STATE['wide'], numba.config.CPU_FEATURES, ll.get_host_cpu_name(),\n"
    "      '+avx512f' in ll.get_host_cpu_features().flatten().split(','))\n")


def _wide_probe(env=None, before=""):
    e = {k: v for k, v in os.environ.items()
         if k not in ("TENSORCALC_JIT_WIDE", "NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME")}
    e.update(env or {})
    out = subprocess.run([sys.executable, "-c", _WIDE_PROBE.format(before=before)], env=e,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", out[1], out[2], out[3] == "True"


def test_wide_vectors_only_on_the_cpus_listed_and_never_over_the_users_settings():
    """cpu_jit._prefer_wide_vectors: numba's target features get ``-prefer-256-bit`` on an
    AVX-512 CPU of _WIDE_CPUS (and nowhere else), not with TENSORCALC_JIT_WIDE=0, not over a
    user's NUMBA_CPU_FEATURES, and not once numba has compiled something."""
    wide, feats, cpu, avx512 = _wide_probe()
    assert wide == (cpu in _jit._WIDE_CPUS and avx512)
    if wide:
        assert feats.endswith(",-prefer-256-bit") and "+avx512f" in feats
    else:
        assert feats == "None"
    assert _wide_probe({"TENSORCALC_JIT_WIDE": "0"})[:2] == (False, "None")
    assert _wide_probe({"NUMBA_CPU_FEATURES": "+sse2"})[:2] == (False, "+sse2")
    compiled_first = "numba.njit(lambda v: v + 1)(1)\n"
    assert _wide_probe(before=compiled_first)[:2] == (False, "None")
