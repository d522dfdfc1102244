"""Window primitives, convolutions and pooling against the direct loops of refs.py, over all
option combinations; adjointness; layouts; float32; bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cnn import refs
from conftest import same_bits

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.ops import fold, unfold

RNG = np.random.default_rng(0)
STRIDES = [1, 2, (2, 1)]
PADS = [0, 1, (0, 2), ((1, 0), (0, 1))]
DILS = [1, 2, (1, 2)]


def _t(a):
    return tc.tensor(a)


@pytest.mark.parametrize("kernel,stride,padding,dilation",
                         list(itertools.product([1, 2, (3, 2)], STRIDES, PADS, DILS)))
@pytest.mark.parametrize("xshape", [(2, 3, 7, 6), (2, 1, 6, 13)])  # (2, 1, ...): K-major copy
def test_unfold_fold_match_loops_and_are_adjoint(kernel, stride, padding, dilation, xshape):
    x = RNG.standard_normal(xshape)
    size = xshape[2:]
    kw = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
    cols = unfold(_t(x), **kw).numpy()
    np.testing.assert_allclose(cols, refs.unfold(x, **kw), rtol=0, atol=0)
    c = RNG.standard_normal(cols.shape)
    back = fold(_t(c), size, **kw).numpy()
    np.testing.assert_allclose(back, refs.fold(c, size, **kw), rtol=1e-12, atol=1e-12)
    # ⟨unfold x, c⟩ = ⟨x, fold c⟩: fold is the transpose of unfold
    assert abs((cols * c).sum() - (x * back).sum()) < 1e-10 * max(1.0, abs((cols * c).sum()))


@pytest.mark.parametrize("padding", [0, ((1, 0), (0, 2))])
@pytest.mark.parametrize("stride,dilation", [(1, 1), ((2, 1), (1, 2))])
def test_few_channel_unfold_copy_numpy_and_compiled_agree(padding, stride, dilation):
    """The K-major copy (few channels) is the same, bit for bit, from NumPy's strided view and
    from the compiled copy (devices/cpu_jit.unfold_few_into), float32 and float64."""
    from tensorcalc.devices import cpu_jit

    if cpu_jit._numba() is None:
        pytest.skip("numba not installed")
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(5).standard_normal((3, 2, 9, 31)).astype(dtype)[:, :, :, 1:]
        kw = dict(kernel=(3, 2), stride=stride, padding=padding, dilation=dilation)
        old = cpu_jit.set_enabled(True)
        try:
            got = unfold(_t(x), **kw).numpy()
            cpu_jit.set_enabled(False)
            want = unfold(_t(x), **kw).numpy()
        finally:
            cpu_jit.set_enabled(old)
        assert got.dtype == dtype and got.shape == want.shape
        assert np.array_equal(got, want)
        np.testing.assert_array_equal(want, refs.unfold(x, **kw))


@pytest.mark.parametrize("kernel,stride,padding,dilation",
                         list(itertools.product([(3, 2), 2], STRIDES, PADS, DILS)))
def test_channels_last_unfold_copy_compiled_is_numpys(kernel, stride, padding, dilation):
    """The implicit GEMM's column copy from channels-last memory (devices/cpu_jit
    .unfold_nhwc_into: it reads x itself, zero padding included) is NumPy's strided view of
    the padded image, bit for bit, for samples lo … lo + B − 1, float32 and float64."""
    from tensorcalc.devices import cpu_jit
    from tensorcalc.ops.windows import norm_padding, out_size, pair

    if cpu_jit._numba() is None:
        pytest.skip("numba not installed")
    kh, kw = pair(kernel, "k", "test", 1)
    sh, sw = pair(stride, "s", "test", 1)
    dh, dw = pair(dilation, "d", "test", 1)
    pad = norm_padding(padding, "test")
    for dtype in (np.float32, np.float64):
        xh = np.random.default_rng(6).standard_normal((5, 7, 9, 3)).astype(dtype)
        ho = out_size(7, kh, sh, pad[0], dh)
        wo = out_size(9, kw, sw, pad[1], dw)
        got = np.full((2, ho, wo, kh, kw, 3), np.nan, dtype=dtype)
        cpu_jit.unfold_nhwc_into(xh, 2, got, (sh, sw), pad, (dh, dw))
        xp_ = np.pad(xh[2:4], ((0, 0), pad[0], pad[1], (0, 0)))
        bn, bh, bw, bc = xp_.strides
        want = np.lib.stride_tricks.as_strided(
            xp_, (2, ho, wo, kh, kw, 3), (bn, sh * bh, sw * bw, dh * bh, dw * bw, bc))
        assert np.array_equal(got, want)


@pytest.mark.parametrize("xs,ws,kw", [((3, 8, 7, 9), (5, 8, 3, 3), {"stride": 2, "padding": 1}),
                                      ((3, 8, 7, 9), (5, 8, 3, 2), {"dilation": (2, 1)}),
                                      ((2, 6, 12, 12), (4, 6, 5, 5), {}),
                                      ((2, 6, 9, 8), (4, 6, 3, 3),
                                       {"stride": (1, 2), "padding": ((1, 0), (2, 1))})])
def test_conv2d_on_channels_last_memory_matches_loops_and_gradcheck(xs, ws, kw):
    """Convolutions of channels-last x (a conv output's memory) take the compiled column copy
    where numba is: values against the direct loops, gradients against finite differences."""
    n, c, h, w_ = xs
    x = RNG.standard_normal((n, h, w_, c)).transpose(0, 3, 1, 2)
    w, b = RNG.standard_normal(ws), RNG.standard_normal(ws[0])
    got = F.conv2d(_t(x), _t(w), _t(b), **kw).numpy()
    np.testing.assert_allclose(got, refs.conv2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    tc.gradcheck(lambda a, c_, d: F.conv2d(a, c_, d, **kw), x, w, b)


def test_unfold_never_aliases_its_input():
    x = tc.tensor(RNG.standard_normal((2, 3, 4, 4)).transpose(0, 2, 3, 1).copy()
                  .transpose(0, 3, 1, 2))  # channels-last memory: the 1×1 window is a view
    cols = unfold(x, 1)
    assert not np.shares_memory(cols.numpy(), x.numpy())


CONV_CASES = [
    # (x shape, w shape, kwargs)
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((2, 3, 7, 6), (4, 3, 3, 2), {"stride": 2, "padding": 1}),
    ((2, 3, 7, 6), (4, 3, 2, 2), {"padding": "same"}),
    ((2, 3, 7, 6), (4, 3, 3, 3), {"padding": "same", "dilation": 2}),
    ((2, 3, 7, 6), (4, 3, 2, 3), {"dilation": (2, 1), "padding": ((1, 0), (2, 1))}),
    ((2, 3, 7, 6), (4, 3, 3, 3), {"stride": (1, 2), "dilation": 2, "padding": 2}),
    ((2, 4, 6, 6), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 4, 6, 6), (4, 1, 3, 3), {"groups": 4, "stride": 2}),  # depthwise
    ((2, 4, 6, 6), (8, 1, 3, 3), {"groups": 4, "padding": 1, "dilation": 2}),  # multiplier 2
    ((2, 1, 5, 5), (2, 1, 5, 5), {}),  # kernel = image
    ((1, 3, 5, 5), (2, 3, 1, 1), {"stride": 2}),  # 1×1 downsampling conv
    ((2, 1, 6, 12), (3, 1, 3, 3), {"padding": 1, "stride": (1, 2)}),  # few channels: K-major
    ((2, 2, 5, 14), (3, 2, 2, 3), {"dilation": (1, 2)}),
]


@pytest.mark.parametrize("xs,ws,kw", CONV_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d_matches_loops(xs, ws, kw, bias):
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    b = RNG.standard_normal(ws[0]) if bias else None
    got = F.conv2d(_t(x), _t(w), None if b is None else _t(b), **kw).numpy()
    np.testing.assert_allclose(got, refs.conv2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs,ws,kw", CONV_CASES[1:9:2] + CONV_CASES[-2:])
def test_conv2d_gradcheck(xs, ws, kw):
    x, w, b = RNG.standard_normal(xs), RNG.standard_normal(ws), RNG.standard_normal(ws[0])
    tc.gradcheck(lambda a, c, d: F.conv2d(a, c, d, **kw), x, w, b)


def test_same_padding_keeps_size_for_even_kernels():
    y = F.conv2d(tc.randn(1, 2, 7, 8, rng=0), tc.randn(3, 2, 4, 2, rng=1), padding="same")
    assert y.shape == (1, 3, 7, 8)


@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 2}, {"dilation": 3},
                                {"padding": "same", "dilation": 2}, {"groups": 2}])
def test_conv1d_matches_loops(kw):
    x = RNG.standard_normal((2, 4, 11))
    w = RNG.standard_normal((6, 4 // kw.get("groups", 1), 3))
    b = RNG.standard_normal(6)
    got = F.conv1d(_t(x), _t(w), _t(b), **kw).numpy()
    np.testing.assert_allclose(got, refs.conv1d(x, w, b, **kw), rtol=1e-12, atol=1e-12)


TCASES = [
    ((2, 3, 3, 4), (3, 2, 3, 3), {}),
    ((2, 3, 3, 4), (3, 2, 3, 2), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((2, 3, 3, 4), (3, 2, 2, 2), {"stride": 2}),
    ((2, 3, 4, 3), (3, 2, 3, 3), {"stride": (2, 1), "dilation": 2, "padding": (1, 0)}),
    ((2, 4, 3, 3), (4, 3, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
]


@pytest.mark.parametrize("xs,ws,kw", TCASES)
def test_conv_transpose2d_matches_loops_and_is_the_adjoint_of_conv2d(xs, ws, kw):
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    b = RNG.standard_normal(ws[1] * kw.get("groups", 1))
    y = F.conv_transpose2d(_t(x), _t(w), _t(b), **kw).numpy()
    np.testing.assert_allclose(y, refs.conv_transpose2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    # ⟨convT(x), z⟩ = ⟨x, conv2d(z)⟩ with the same weight (bias aside)
    y0 = F.conv_transpose2d(_t(x), _t(w), **kw).numpy()
    z = RNG.standard_normal(y0.shape)
    ckw = {k: v for k, v in kw.items() if k != "output_padding"}
    cz = F.conv2d(_t(z), _t(w), **ckw).numpy()
    assert cz.shape == x.shape
    np.testing.assert_allclose((y0 * z).sum(), (x * cz).sum(), rtol=1e-11)


POOL_KW = [
    {"kernel_size": 2}, {"kernel_size": 3}, {"kernel_size": (2, 3)},
    {"kernel_size": 3, "stride": 2, "padding": 1}, {"kernel_size": 2, "stride": 1},
    {"kernel_size": (3, 2), "stride": (1, 2), "padding": (1, 0)},
]


@pytest.mark.parametrize("kw", POOL_KW + [{"kernel_size": 2, "stride": 1, "dilation": 2},
                                          {"kernel_size": 3, "dilation": (1, 2), "padding": 1}])
def test_max_pool2d_matches_loops(kw):
    x = RNG.standard_normal((2, 3, 7, 6))
    np.testing.assert_array_equal(F.max_pool2d(_t(x), **kw).numpy(), refs.max_pool2d(x, **kw))


@pytest.mark.parametrize("kw", POOL_KW)
@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool2d_matches_loops(kw, cip):
    x = RNG.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(F.avg_pool2d(_t(x), count_include_pad=cip, **kw).numpy(),
                               refs.avg_pool2d(x, count_include_pad=cip, **kw), rtol=1e-12)


@pytest.mark.parametrize("out", [1, 2, (3, 2), (7, 6), (4, 5), (5, 4)])
def test_adaptive_avg_pool2d_matches_loops(out):
    x = RNG.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(_t(x), out).numpy(),
                               refs.adaptive_avg_pool2d(x, out), rtol=1e-12, atol=1e-15)


def test_global_avg_pool2d():
    x = RNG.standard_normal((2, 3, 4, 5))
    assert F.global_avg_pool2d(_t(x)).shape == (2, 3)
    np.testing.assert_allclose(F.global_avg_pool2d(_t(x), keepdims=True).numpy(),
                               x.mean(axis=(2, 3), keepdims=True))


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 2, "stride": 1}])
def test_max_pool_ties_share_the_gradient_equally(kw):
    x = tc.tensor(np.zeros((1, 1, 4, 4)), requires_grad=True)  # every window is a 4-way tie
    F.max_pool2d(x, **kw).sum().backward()
    if kw.get("stride", 2) == 2:
        np.testing.assert_allclose(x.grad.numpy(), 0.25)
    else:  # overlapping windows: pixel (h, w) is in (#windows covering it) windows, ¼ from each
        cover = np.zeros((4, 4))
        for i in range(3):
            for j in range(3):
                cover[i:i + 2, j:j + 2] += 0.25
        np.testing.assert_allclose(x.grad.numpy()[0, 0], cover)


def test_layout_of_the_input_does_not_change_results():
    x = RNG.standard_normal((2, 5, 6, 6))
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # channels-last
    w = RNG.standard_normal((3, 5, 3, 3))
    for f in (lambda a: F.max_pool2d(a, 2), lambda a: F.avg_pool2d(a, 2),
              lambda a: F.conv2d(a, tc.tensor(w), padding=1)):
        np.testing.assert_allclose(f(_t(x)).numpy(), f(_t(cl)).numpy(), rtol=1e-13)
        tc.gradcheck(f, cl)


@pytest.mark.parametrize("k", [2, 3])
def test_max_pool_tiles_of_channels_last_input_give_the_per_offset_bits(k):
    """The broadcast path for exactly tiling windows on channels-last x with ≥ 32 channels
    (windows._maxpool_grad_tiles) against the per-offset loop it replaces (the same x in
    NCHW memory takes that loop): ties, ±inf cotangents and float32 included."""
    from tensorcalc.ops.windows import _TILE_MIN_CHANNELS, MaxPool2d

    c = _TILE_MIN_CHANNELS + 8
    x = np.maximum(RNG.standard_normal((3, c, 4 * k, 2 * k)), 0).astype(np.float32)  # ties at 0
    x[0, 0, :k, :k] = 1.0
    cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    geo = dict(kernel=(k, k), stride=(k, k), padding=((0, 0), (0, 0)), dilation=(1, 1))
    y = MaxPool2d.forward(np, x, **geo)
    g = RNG.standard_normal(y.shape).astype(np.float32)
    g[1, 2, 0, 0], g[2, 3, 1, 1] = np.inf, -np.inf
    with np.errstate(invalid="ignore"):  # ±inf·0 off the maxima: NaN, as documented
        want = MaxPool2d.vjp(g, y, x, needs=(True,), **geo)[0]
        got = MaxPool2d.vjp(g, MaxPool2d.forward(np, cl, **geo), cl, needs=(True,), **geo)[0]
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(np.ascontiguousarray(got), np.ascontiguousarray(want))
    assert want[0, 0, 0, 0] == g[0, 0, 0, 0] / (k * k)  # a k·k-way tie shares ȳ equally


def test_float32_stays_float32_through_conv_and_pool():
    x = tc.randn(2, 3, 8, 8, rng=0)
    w = tc.tensor(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.max_pool2d(F.conv2d(x, w, padding=1), 2)
    assert y.dtype == np.float32
    y.sum().backward()
    assert w.grad.dtype == np.float32


# ----------------------------------------------------------------------------- bad input


def test_wrong_channel_count_names_layer_and_shapes():
    msg = r"conv2d: input \(2, 4, 8, 8\) has C = 4 channels.*\(6, 3, 3, 3\)"
    with pytest.raises(ValueError, match=msg):
        F.conv2d(tc.randn(2, 4, 8, 8), tc.randn(6, 3, 3, 3))


def test_too_small_input_states_the_formula():
    with pytest.raises(ValueError, match=r"conv2d: input \(1, 1, 4, 4\) is too small.*"
                                         r"H_out = ⌊\(H \+ 2p − d\(k − 1\) − 1\)/s⌋ \+ 1"):
        F.conv2d(tc.randn(1, 1, 4, 4), tc.randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match="max_pool2d: input"):
        F.max_pool2d(tc.randn(1, 1, 1, 4), 2)


@pytest.mark.parametrize("kw", [{"stride": 0}, {"stride": -1}, {"stride": 1.5},
                                {"padding": -1}, {"padding": "full"}, {"padding": (1, 2, 3)},
                                {"dilation": 0}, {"padding": "same", "stride": 2},
                                {"groups": 2}, {"groups": 0}])
def test_invalid_options_raise_value_error(kw):
    with pytest.raises(ValueError, match="conv2d"):
        F.conv2d(tc.randn(1, 3, 8, 8), tc.randn(4, 3, 3, 3), **kw)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="expected input of shape"):
        F.conv2d(tc.randn(3, 8, 8), tc.randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv2d(tc.randn(1, 3, 8, 8), tc.randn(4, 3, 3, 3), tc.randn(3))
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(tc.randn(1, 1, 8, 8), 2, padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(tc.randn(1, 3, 4, 4), tc.randn(3, 2, 3, 3), stride=2,
                           output_padding=2)
    with pytest.raises(ValueError, match="fold: cols"):
        fold(tc.randn(1, 5, 4), (3, 3), 2)
    with pytest.raises(ValueError, match="conv1d"):
        F.conv1d(tc.randn(1, 3, 2), tc.randn(2, 3, 5))


def test_conv_transpose2d_output_padding_must_be_below_stride():
    import tensorcalc.functional as F

    x = tc.tensor(np.ones((1, 1, 4, 4)))
    w = tc.tensor(np.ones((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"output_padding 1 must be ≥ 0 and < stride = \(1, 1\)"):
        F.conv_transpose2d(x, w, stride=1, dilation=2, output_padding=1)
    assert F.conv_transpose2d(x, w, stride=2, output_padding=1).shape == (1, 1, 10, 10)


def _conv_grads_ref(x, w, g, **kw):
    """x̄ and W̄ of ⟨conv2d(x, W), g⟩ from the direct loops (conv2d is linear in each)."""
    gx = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = 1.0
        gx[idx] = (refs.conv2d(e, w, **kw) * g).sum()
    gw = np.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        e = np.zeros_like(w)
        e[idx] = 1.0
        gw[idx] = (refs.conv2d(x, e, **kw) * g).sum()
    return gx, gw


@pytest.mark.parametrize("full_from", [1, 10 ** 6])  # x̄ as a full correlation, or per offset
@pytest.mark.parametrize("kw", [{"padding": 1}, {"stride": 2, "padding": (1, 0)},
                                {"dilation": (1, 2), "padding": ((1, 1), (1, 1))},
                                {"padding": ((1, 1), (0, 1))}])
def test_conv2d_in_sample_chunks_matches_loops(monkeypatch, kw, full_from):
    """The conv primitive's array paths work a few samples at a time (implicit GEMM, chunked
    input gradient); with tiny chunk budgets a batch of 5 runs as chunks 1+1+...: same values.
    ``full_from`` = 1 sends every stride-1 'same' case through the full-correlation x̄."""
    import tensorcalc.ops.windows as W

    monkeypatch.setattr(W, "_CHUNK_BYTES", 1)
    monkeypatch.setattr(W, "_GRAD_CHUNK_BYTES", 1)
    monkeypatch.setattr(W, "_FULL_MIN_CHANNELS", full_from)
    x = RNG.standard_normal((5, 3, 6, 5))
    w = RNG.standard_normal((4, 3, 3, 2))
    y_ref = refs.conv2d(x, w, **kw)
    g = RNG.standard_normal(y_ref.shape)
    xt, wt = tc.tensor(x, requires_grad=True), tc.tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, **kw)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-12, atol=1e-12)
    (y * tc.tensor(g)).sum().backward()
    gx, gw = _conv_grads_ref(x, w, g, **kw)
    np.testing.assert_allclose(xt.grad.numpy(), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.numpy(), gw, rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(W, "_CHUNK_BYTES", 11000)  # chunks of 2 (or more) and a remainder
    monkeypatch.setattr(W, "_GRAD_CHUNK_BYTES", 5000)
    xt.grad = wt.grad = None
    y = F.conv2d(xt, wt, **kw)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-12, atol=1e-12)
    (y * tc.tensor(g)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.numpy(), gw, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv2d_matches_loops(stride, channels_last):
    """1×1 convolutions are one GEMM over the input's (strided) pixels, no unfold."""
    x = RNG.standard_normal((3, 5, 7, 6))
    if channels_last:
        x = x.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    w, b = RNG.standard_normal((4, 5, 1, 1)), RNG.standard_normal(4)
    xt, wt, bt = (tc.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xt, wt, bt, stride=stride)
    y_ref = refs.conv2d(x, w, b, stride=stride)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-12, atol=1e-12)
    g = RNG.standard_normal(y_ref.shape)
    (y * tc.tensor(g)).sum().backward()
    gx, gw = _conv_grads_ref(x, w, g, stride=stride)
    np.testing.assert_allclose(xt.grad.numpy(), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(wt.grad.numpy(), gw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(bt.grad.numpy(), g.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("rows,o", [(1, 16), (31, 16), (64, 16), (67, 32), (5, 7), (40, 200),
                                    (9, 300)])
def test_bias_add_over_tiled_rows_gives_the_broadcast_bits(rows, o):
    """Conv2d adds its bias k = 256 // O rows at a time against the bias tiled k times (NumPy's
    broadcast add runs one short inner loop per row); the values are those of y + b, with or
    without a remainder of rows."""
    from tensorcalc.ops.windows import _add_to_rows

    rng = np.random.default_rng(rows * 1000 + o)
    for dtype in (np.float32, np.float64):
        y = rng.standard_normal((rows, o)).astype(dtype)
        b = rng.standard_normal(o).astype(dtype)
        want = y + b
        _add_to_rows(np, y, b)
        assert np.array_equal(y, want)


def _sq_loss_grads(x, w, b, kw):
    """y = conv2d(x, W) + b and (W̄, b̄) of Σ y² through the Tensor API."""
    wt, bt = tc.tensor(w, requires_grad=True), tc.tensor(b, requires_grad=True)
    y = F.conv2d(tc.tensor(x), wt, bt, **kw)
    (y * y).sum().backward()
    return y.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("kw", [{}, {"padding": 2, "stride": (1, 2)}])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_few_channel_chunks_match_the_whole_unfold(monkeypatch, threads, t, kw, dtype, tol):
    """A first layer's convolution (one input channel) in chunks of samples — forward and W̄
    one compiled call a chunk (the copy, then per sample a GEMM into rows pre-filled with the
    bias, or accumulated into W̄ with b̄ summed), and _column_chunks' chunks of NumPy calls —
    against the whole few-channel unfold and its per-sample GEMMs: y, W̄, b̄ at 1 and 2 kernel
    threads, to rounding (the chunks' sums are added in another order)."""
    import tensorcalc.ops.windows as W
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the chunk kernels are compiled (numba)")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((24, 1, 28, 28)).astype(dtype)
    w = (rng.standard_normal((16, 1, 5, 5)) / 5).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    monkeypatch.setattr(W, "_FEW_CHUNK_BYTES", 1 << 17)  # several chunks of 2-3 samples

    def run():
        return _sq_loss_grads(x, w, b, kw)

    calls = []
    for name in ("_few_channel_conv", "_few_channel_wgrad"):
        real = getattr(W, name)
        monkeypatch.setattr(W, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    got = threads(t, run)
    assert calls == ["_few_channel_conv", "_few_channel_wgrad"]  # forward, then W̄ and b̄
    chunks = threads(t, lambda: (monkeypatch.setattr(W, "_few_channel_conv", lambda *a: None),
                                 monkeypatch.setattr(W, "_few_channel_wgrad", lambda *a: None),
                                 run())[-1])  # _column_chunks' few-channel chunks
    monkeypatch.setattr(W, "_few_channel_chunks", lambda *a: None)
    want = threads(t, run)  # the whole unfold
    for a, r in zip(chunks, want, strict=True):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max())
    for a, r in zip(got, want, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max())
    np.testing.assert_allclose(got[0], refs.conv2d(x.astype(np.float64), w.astype(np.float64),
                                                   b.astype(np.float64), **kw),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("t", [1, 2])
@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1}])
@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_implicit_gemm_weight_grad_chunks_match_the_numpy_calls(monkeypatch, threads, t, kw,
                                                                dtype, tol):
    """W̄ and b̄ of a convolution of channels-last x in chunks, one compiled call a chunk
    (devices/cpu_jit.nhwc_wgrad_kernel: the column copy, W̄ += colsᵀ ȳ in blocks of rows,
    b̄ += ȳᵀ 1) against _column_chunks' chunks of separate calls, at 1 and 2 kernel threads,
    to rounding; and b̄ against 2 Σ y of the direct loops (ȳ = 2y for the loss Σ y²)."""
    import tensorcalc.ops.windows as W
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the chunk kernel is compiled (numba)")
    rng = np.random.default_rng(12)
    x = np.ascontiguousarray(rng.standard_normal((20, 12, 12, 16)).astype(dtype)) \
        .transpose(0, 3, 1, 2)
    w = (rng.standard_normal((32, 16, 5, 5)) / 20).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    monkeypatch.setattr(W, "_CHUNK_BYTES", 1 << 17)  # several chunks a piece

    def run():
        return _sq_loss_grads(x, w, b, kw)

    calls = []
    real = W._nhwc_wgrad
    monkeypatch.setattr(W, "_nhwc_wgrad", lambda *a: calls.append(1) or real(*a))
    got = threads(t, run)
    assert calls == [1]
    monkeypatch.setattr(W, "_nhwc_wgrad", lambda *a: None)
    want = threads(t, run)
    for a, r in zip(got, want, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max())
    y64 = refs.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kw)
    np.testing.assert_allclose(got[2], 2 * y64.sum(axis=(0, 2, 3)), rtol=tol * 10,
                               atol=tol * 10 * np.abs(y64).sum())


# ------------------------------------------------------------ the kernel-row convolution
ROW_CASES = [  # (x, W, padding): stride-1 convolutions that the kernel-row form takes
    ((3, 16, 16, 15), (16, 16, 3, 3), 1),
    ((2, 5, 14, 30), (8, 5, 5, 5), 2),
    ((2, 6, 16, 18), (12, 6, 3, 3), ((1, 0), (2, 1))),  # asymmetric padding
    ((2, 8, 16, 16), (16, 8, 3, 2), 0),  # 'valid', an even kernel width
]


def _conv_all(x, w, b, g, padding):
    """y, x̄, W̄, b̄ of ⟨conv2d(x, W) + b, g⟩ through the Tensor API."""
    xt, wt, bt = (tc.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xt, wt, bt, padding=padding)
    (y * tc.tensor(g)).sum().backward()
    return y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("xs,ws,padding", ROW_CASES)
def test_kernel_row_columns_compiled_are_numpys_padded_strided_view(xs, ws, padding):
    """Z (devices/cpu_jit.row_z_into: one pass over channels-last x, padding read as zeros)
    is the strided view of the padded image plus a zero row, bit for bit: z[n, r] = the kw·C
    values from flat pixel r on, windows past a row's end reading the next row."""
    import tensorcalc.ops.windows as W
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the kernel-row step is compiled (numba)")
    n, c, h, w = xs
    kh, kw = ws[2:]
    geo = W.window_geometry("t", xs, (kh, kw), 1, padding, 1)
    (p0, p1), (q0, q1) = pad = geo[2]
    hp, wp, _, _ = W._row_grid(xs, kh, kw, pad)
    for dtype in (np.float32, np.float64):
        xh = np.random.default_rng(3).standard_normal((n + 2, h, w, c)).astype(dtype)
        got = np.full((n, hp * wp, kw * c), np.nan, dtype=dtype)
        cpu_jit.row_z_into(xh, 1, got, kw, pad, wp)
        padded = np.pad(xh[1:n + 1], ((0, 0), (p0, p1 + 1), (q0, q1), (0, 0)))
        pf = padded.reshape(n, -1)
        isz = pf.itemsize
        want = np.lib.stride_tricks.as_strided(pf, (n, hp * wp, kw * c),
                                               (pf.strides[0], c * isz, isz))
        assert np.array_equal(got, want)


@pytest.mark.parametrize("xs,ws,padding", ROW_CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_kernel_row_conv_matches_im2col_and_loops(monkeypatch, xs, ws, padding, dtype, tol,
                                                  layout):
    """The kernel-row form (forward, x̄ as a full correlation, W̄ and b̄) against the implicit
    GEMM over im2col columns and, for the forward, the direct loops; chunks of 1 sample with
    the GEMMs in blocks of rows, and chunks of all samples; x in NCHW memory (copied to
    channels-last once) and in channels-last memory (a conv output's: read as it is)."""
    import tensorcalc.ops.windows as W
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the kernel-row step is compiled (numba): without it im2col runs")
    rng = np.random.default_rng(sum(xs))
    x = rng.standard_normal(xs).astype(dtype)
    if layout == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    geo = W.window_geometry("t", xs, ws[2:], 1, padding, 1)
    assert W._row_conv_applies(np, x, ws[0], ws[2:], (1, 1), (1, 1), geo[2])
    assert W._row_conv_applies(np, x, ws[0], ws[2:], (1, 1), (1, 1), geo[2], grad=True)
    y_ref = refs.conv2d(x.astype(np.float64), w.astype(np.float64), padding=padding) \
        + b.reshape(-1, 1, 1)
    g = rng.standard_normal(y_ref.shape).astype(dtype)
    got = []
    # chunks of one sample with GEMMs in blocks of 13-50 rows, then chunks of all samples
    for chunk, small, least in ((1, 10 ** 4, 1), (1 << 30, 100 ** 3, 64)):
        monkeypatch.setattr(W, "_ROW_CHUNK_BYTES", chunk)
        monkeypatch.setattr(W, "_SMALL_GEMM", small)
        monkeypatch.setattr(W, "_SMALL_GEMM_MIN_ROWS", least)
        if chunk == 1 and W.scipy_blas_small_kernels():
            assert W._small_rows(xs[2] * (xs[3] + 2), ws[1] * ws[3] * ws[0]) < xs[2] * xs[3]
        got.append(_conv_all(x, w, b, g, padding))
    monkeypatch.setattr(W, "_row_conv_applies", lambda *a, **k: False)
    want = _conv_all(x, w, b, g, padding)
    np.testing.assert_allclose(got[0][0], y_ref, rtol=tol, atol=tol * np.abs(y_ref).max())
    for one in got:
        for a, r in zip(one, want, strict=True):
            assert a.dtype == dtype and a.shape == r.shape
            np.testing.assert_allclose(a, r, rtol=tol, atol=tol * np.abs(r).max())


def test_kernel_row_conv_gives_the_same_bits_at_any_thread_count(threads):
    """Forward and x̄: a GEMM per sample, whichever piece runs it; W̄ and b̄ are sums over the
    pieces (the same at every run with the same T), to rounding across T."""
    import tensorcalc.ops.windows as W
    from tensorcalc import backend
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the kernel-row step is compiled (numba)")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((16, 16, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((16, 16, 3, 3)) / 12).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    g = rng.standard_normal((16, 16, 28, 28)).astype(np.float32)
    one = threads(1, lambda: _conv_all(x, w, b, g, 1))
    calls = backend.parallel_calls()
    two = threads(2, lambda: _conv_all(x, w, b, g, 1))
    assert backend.parallel_calls() > calls
    assert W._row_conv_applies(np, x, 16, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)))
    for a, r in zip(one[:2], two[:2], strict=True):
        same_bits(a, r)
    for a, r in zip(one[2:], two[2:], strict=True):
        np.testing.assert_allclose(a, r, rtol=2e-6, atol=2e-6 * np.abs(r).max())
    for a, r in zip(two, threads(2, lambda: _conv_all(x, w, b, g, 1)), strict=True):
        same_bits(a, r)


def test_scipy_blas_runs_one_thread_inside_the_pools_regions():
    """The kernel-row step calls SciPy's BLAS (a second OpenBLAS in SciPy's wheels): inside a
    serial-BLAS region it is held at one thread too, and restored after."""
    from tensorcalc import backend
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled() or cpu_jit.row_conv_kernel(np.float32) is None:
        pytest.skip("the kernel-row step is compiled (numba)")
    ctl = backend._KERNEL_THREADS["scipy_blas"]
    if not ctl:
        pytest.skip("SciPy's BLAS is not a separate OpenBLAS here")
    before = ctl.get_num_threads()
    ctl.set_num_threads(2)
    backend.set_kernel_threads(2)
    try:
        with backend.single_thread_blas():
            assert ctl.get_num_threads() == 1
        assert ctl.get_num_threads() == 2
    finally:
        backend.set_kernel_threads(None)
        ctl.set_num_threads(before)


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_conv_grads_over_the_pool_match_one_thread(threads, stride):
    """A 1×1 convolution's x̄ (a GEMM per piece of samples, placed into the piece's part of
    the zero image: the same bits) and W̄ (pieces of pixel rows, their products summed: to
    rounding) at 2 kernel threads against 1."""
    from tensorcalc import backend

    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 16, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((32, 16, 1, 1)) / 4).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    ho = 28 // stride
    g = rng.standard_normal((16, 32, ho, ho)).astype(np.float32)

    def run():
        xt, wt, bt = (tc.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xt, wt, bt, stride=stride)
        (y * tc.tensor(g)).sum().backward()
        return y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()

    one = threads(1, run)
    calls = backend.parallel_calls()
    two = threads(2, run)
    assert backend.parallel_calls() > calls
    same_bits(one[0], two[0])
    same_bits(one[1], two[1])
    for a, r in zip(one[2:], two[2:], strict=True):
        np.testing.assert_allclose(a, r, rtol=2e-6, atol=2e-6 * np.abs(r).max())
    gw_ref = np.einsum("nchw,nohw->oc", x[:, :, ::stride, ::stride].astype(np.float64), g)
    # (sums of 12544 products of unit normals, ~10² in size: float32 rounding ~1e-4)
    np.testing.assert_allclose(two[2].reshape(32, 16), gw_ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("m,k,n", [(4096, 144, 16), (1001, 288, 32), (700, 32, 400),
                                   (50, 144, 16), (3000, 576, 64)])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_gemms_in_row_blocks_match_matmul(m, k, n, dtype, tol):
    """The implicit GEMM's products in blocks of rows that OpenBLAS's small-matrix kernels take
    (a @ b, and aᵀ b summed over the blocks) against one matmul; shapes with a remainder
    block, and ones below the block size or with too few rows a block (one matmul)."""
    import tensorcalc.ops.windows as W

    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    g = rng.standard_normal((m, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype=dtype)
    assert W._matmul_rows(np, a, b, out) is out
    want = a.astype(np.float64) @ b
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.abs(want).max())
    bias = rng.standard_normal(n).astype(dtype) * 10  # the bias written into each block
    out[:] = np.nan
    assert W._matmul_rows(np, a, b, out, bias) is out
    np.testing.assert_allclose(out, want + bias, rtol=tol, atol=tol * np.abs(want).max())
    gw = W._matmul_tn_rows(np, a, g)
    want = a.T.astype(np.float64) @ g
    assert gw.shape == (k, n) and gw.dtype == dtype
    np.testing.assert_allclose(gw, want, rtol=tol * 10, atol=tol * 10 * np.abs(want).max())
    into = np.full((k + 1, n), np.nan, dtype=dtype)  # into rows of a bigger array, as W̄'s
    W._matmul_tn_rows(np, a, g, into[:k])
    np.testing.assert_allclose(into[:k], gw, rtol=tol, atol=tol * np.abs(want).max())
    assert np.isnan(into[k]).all()


def test_blocks_and_kernel_row_gradients_need_the_small_matrix_kernels(monkeypatch):
    """Without OpenBLAS's small-matrix kernels (its AVX2 kernels) products are not cut into
    blocks, W̄ takes the implicit GEMM, and the forward may still take kernel rows."""
    import tensorcalc.ops.windows as W
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the kernel-row steps are compiled (numba)")
    x = np.zeros((2, 16, 28, 28), np.float32)
    pad = ((1, 1), (1, 1))
    calls = []
    monkeypatch.setattr(cpu_jit, "gemm_rows_kernel", lambda dt: calls.append(dt))
    monkeypatch.setattr(W, "scipy_blas_small_kernels", lambda: False)
    assert W._small_rows(5000, 144 * 16) == 5000
    a = np.ones((5000, 144), np.float32)
    b = np.ones((144, 16), np.float32)
    out = np.empty((5000, 16), np.float32)
    W._matmul_rows(np, a, b, out)
    assert calls == [] and (out == 144).all()
    assert W._row_conv_applies(np, x, 16, (3, 3), (1, 1), (1, 1), pad)
    assert not W._row_conv_applies(np, x, 16, (3, 3), (1, 1), (1, 1), pad, grad=True)
    monkeypatch.setattr(W, "scipy_blas_small_kernels", lambda: True)
    assert W._small_rows(5000, 144 * 16) < 5000
    assert W._row_conv_applies(np, x, 16, (3, 3), (1, 1), (1, 1), pad, grad=True)


def test_without_a_blas_pointer_convolutions_take_im2col(monkeypatch):
    """Where numba cannot call SciPy's GEMM (no pointer, or a failed check) the kernel-row and
    blocked-product steps are None and convolutions take the implicit GEMM, with the same
    values."""
    import numba.extending

    import tensorcalc.ops.windows as W
    from tensorcalc.devices import cpu_jit

    if not cpu_jit.enabled():
        pytest.skip("the kernel-row steps are compiled (numba)")
    x = RNG.standard_normal((2, 16, 16, 16))
    w = RNG.standard_normal((16, 16, 3, 3)) / 12
    want = refs.conv2d(x, w, padding=1)
    kernels = {k: v for k, v in cpu_jit._STATE["kernels"].items()
               if not k.startswith(("row_", "gemm_rows"))}
    monkeypatch.setitem(cpu_jit._STATE, "kernels", kernels)
    monkeypatch.setitem(cpu_jit._STATE, "gemm_symbols", False)  # (as in a fresh process)

    def no_pointer(*a, **k):
        raise ValueError("no such function")

    monkeypatch.setattr(numba.extending, "get_cython_function_address", no_pointer)
    assert cpu_jit.row_conv_kernel(np.float64) is None
    assert cpu_jit.gemm_rows_kernel(np.float64) is None
    assert not W._row_conv_applies(np, x, 16, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)))
    np.testing.assert_allclose(F.conv2d(tc.tensor(x), tc.tensor(w), padding=1).numpy(), want,
                               rtol=1e-12, atol=1e-12)
