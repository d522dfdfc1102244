"""The dense layer's CPU GEMMs (devices/cpu_gemm): the forward with the bias inside the GEMM
(y filled with b's rows, then BLAS accumulates x Wᵀ into it) against x @ Wᵀ + b, W̄ split over
rows on the kernel pool against one product, and where each must not apply."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import same_bits

import tensorcalc as tc
from tensorcalc.devices import cpu_gemm as G

A = importlib.import_module("tensorcalc.ops.affine")  # (tensorcalc.ops.affine is the function)


def _data(rows, n_in, n_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, n_in)).astype(dtype)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(256, 128, 64), (2048, 128, 512), (129, 77, 131)])
def test_bias_in_the_gemm_is_x_wt_plus_b(dtype, shape):
    rows, n_in, n_out = shape
    assert rows * n_out >= G._GEMM_BIAS_MIN  # these take the fused path
    x, w, b = _data(rows, n_in, n_out, dtype)
    y = G.gemm_bias(np, x, w, b)
    assert y is not None and y.shape == (rows, n_out) and y.dtype == dtype
    assert y.flags.c_contiguous  # a C-ordered result, as matmul's
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.sqrt(n_in))
    # and the primitive's forward on a 3-D input (reshaped rows) gives the same
    y3 = A.Affine.forward(np, x.reshape(rows, 1, n_in), w, b)
    np.testing.assert_array_equal(y3.reshape(rows, n_out), y)


def test_where_the_fused_gemm_does_not_apply_the_plain_path_runs():
    x, w, b = _data(256, 64, 128, np.float32)
    assert G.gemm_bias(np, x, w, None) is None  # no bias
    assert G.gemm_bias(np, x[:8], w[:8], b[:8]) is None  # small output
    assert G.gemm_bias(np, x[:, ::2], w[:, :32], b) is None  # x not C-contiguous
    assert G.gemm_bias(np, x, np.asfortranarray(w), b) is None  # W not C-contiguous
    assert G.gemm_bias(np, x, w, b.astype(np.float64)) is None  # mixed dtypes
    xi = np.ones((256, 64), dtype=np.int64)
    assert G.gemm_bias(np, xi, w.astype(np.int64), b.astype(np.int64)) is None
    # each of those still computes x Wᵀ + b through the primitive
    for xx, ww, bb in [(x[:, ::2], w[:, :32], b), (x, np.asfortranarray(w), b),
                       (x, w, b.astype(np.float64))]:
        y = A.Affine.forward(np, xx, ww, bb)
        ref = xx.astype(np.float64) @ ww.T.astype(np.float64) + bb
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_linear_layer_trains_through_the_fused_forward():
    """nn.Linear on a batch big enough for the fused path: forward as x Wᵀ + b, gradients as
    the plain primitive's (the backward is unchanged)."""
    x, _, _ = _data(512, 64, 64, np.float32, seed=1)
    lin = tc.nn.Linear(64, 64, rng=0)
    xt = tc.tensor(x, requires_grad=True)
    y = lin(xt)
    w, b = lin.weight.data, lin.bias.data
    np.testing.assert_allclose(y.data, x @ w.T + b, rtol=1e-5, atol=1e-5)
    (y * y).sum().backward()
    g = 2 * (x @ w.T + b)
    np.testing.assert_allclose(lin.bias.grad.data, g.sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(lin.weight.grad.data, g.T @ x, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(xt.grad.data, g @ w, rtol=1e-4, atol=1e-3)


def test_small_weight_gradient_over_many_rows_splits_its_rows_over_threads(threads):
    """W̄ = ȳᵀ x as T partial sums over row ranges (devices/cpu_gemm.weight_grad_split): equal to
    the one product to rounding, the same bits on every run with the same T, and not used at
    T = 1, for big W̄ or for few rows."""
    rng = np.random.default_rng(2)
    g = rng.standard_normal((2048, 128)).astype(np.float32)
    x = rng.standard_normal((2048, 96)).astype(np.float32)
    ref = g.astype(np.float64).T @ x.astype(np.float64)
    assert threads(1, lambda: G.weight_grad_split(g, x)) is None
    for t in (2, 3):
        a = threads(t, lambda: G.weight_grad_split(g, x))
        assert a is not None and a.shape == (128, 96) and a.dtype == np.float32
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-3)
        same_bits(a, threads(t, lambda: G.weight_grad_split(g, x)))
    assert threads(2, lambda: G.weight_grad_split(g[:256], x[:256])) is None  # few rows
    big = rng.standard_normal((2048, 512)).astype(np.float32)
    assert threads(2, lambda: G.weight_grad_split(big, big)) is None  # a big W̄
    # through the primitive's backward where x̄ is not needed (an input layer): W̄ as the
    # split sum, b̄ as before
    w = rng.standard_normal((128, 96)).astype(np.float32)
    b = rng.standard_normal(128).astype(np.float32)
    y = A.Affine.forward(np, x, w, b)
    gx, gw, gb = threads(2, lambda: A.Affine.vjp(g, y, x, w, b, needs=(False, True, True)))
    assert gx is None
    same_bits(gw, threads(2, lambda: G.weight_grad_split(g, x)))
    np.testing.assert_allclose(gb, g.astype(np.float64).sum(0), rtol=1e-4, atol=1e-3)
    # at T = 3 with x̄ needed too: the split W̄ (side by side is for T = 2)
    gx, gw, gb = threads(3, lambda: A.Affine.vjp(g, y, x, w, b, needs=(True, True, True)))
    same_bits(gw, threads(3, lambda: G.weight_grad_split(g, x)))
    np.testing.assert_allclose(gx, g.astype(np.float64) @ w, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_x_grad_and_weight_grad_side_by_side_at_two_threads(threads, dtype):
    """x̄ = ȳ W and W̄ = ȳᵀ x as two single-threaded GEMMs at once (cpu_gemm.
    dense_grads_side_by_side): each the same bits as its one-thread product, at T = 2 only, and
    not for small products; the primitive's backward takes it when it needs both."""
    rng = np.random.default_rng(3)
    g = rng.standard_normal((2048, 128)).astype(dtype)
    x = rng.standard_normal((2048, 96)).astype(dtype)
    w = rng.standard_normal((128, 96)).astype(dtype)
    calls = tc.backend.parallel_calls()
    gx, gw, none = threads(2, lambda: G.dense_grads_side_by_side(g, x, w))
    assert tc.backend.parallel_calls() == calls + 1 and none is None  # on the pool
    same_bits(gx, threads(1, lambda: g @ w))
    same_bits(gw, threads(1, lambda: g.T @ x))
    # b̄ in x̄'s piece: whatever the callable returns, computed there
    got = threads(2, lambda: G.dense_grads_side_by_side(g, x, w, lambda: g.sum(axis=0)))
    same_bits(got[2], g.sum(axis=0))
    assert threads(1, lambda: G.dense_grads_side_by_side(g, x, w)) is None
    assert threads(3, lambda: G.dense_grads_side_by_side(g, x, w)) is None
    assert threads(2, lambda: G.dense_grads_side_by_side(g[:64], x[:64], w)) is None  # small
    b = rng.standard_normal(128).astype(dtype)
    y = A.Affine.forward(np, x, w, b)
    ax, aw, ab = threads(2, lambda: A.Affine.vjp(g.reshape(32, 64, 128), y.reshape(32, 64, 128),
                                                  x.reshape(32, 64, 96), w, b,
                                                  needs=(True, True, True)))
    assert ax.shape == (32, 64, 96)
    same_bits(ax.reshape(2048, 96), gx)
    same_bits(aw, gw)
    np.testing.assert_allclose(ab, g.astype(np.float64).sum(0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [2048, 1031])
def test_bias_gemm_in_pieces_on_the_pool(threads, dtype, rows):
    """At T > 1 the fused forward runs in row pieces on the kernel pool (each fills its rows
    with b, then one single-threaded GEMM): x Wᵀ + b to rounding, the same bits on every run
    with the same T; at T = 1, one GEMM (no pool). Compiled only (numba)."""
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.usable(np, np.dtype(dtype)) or cpu_jit.gemm_bias_rows_kernel(dtype) is None:
        pytest.skip("no compiled kernels (numba missing or TENSORCALC_JIT=0)")
    x, w, b = _data(rows, 128, 512, dtype, seed=4)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
    tol = 2e-5 if dtype == np.float32 else 1e-12
    calls = tc.backend.parallel_calls()
    y1 = threads(1, lambda: G.gemm_bias(np, x, w, b))
    assert tc.backend.parallel_calls() == calls
    for t in (2, 3):
        y = threads(t, lambda: G.gemm_bias(np, x, w, b))
        assert tc.backend.parallel_calls() > calls
        assert y.shape == (rows, 512) and y.dtype == dtype and y.flags.c_contiguous
        np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.sqrt(128))
        same_bits(y, threads(t, lambda: G.gemm_bias(np, x, w, b)))
    np.testing.assert_allclose(y1, ref, rtol=tol, atol=tol * np.sqrt(128))
