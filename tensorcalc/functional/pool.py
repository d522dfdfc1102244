"""Pooling: max / average over sliding windows (max: the ``max_pool2d`` primitive of
``ops/windows.py``; average: composites of unfold or reshape, and sum).

Output size per axis as for convolution:  H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1 (floor mode;
stride defaults to the kernel size). For average pooling, non-overlapping windows (stride =
kernel, no padding, no dilation) are a reshape (N, C, H_out, kh, W_out, kw), not an unfold.
"""

from __future__ import annotations

from .. import ops
from ..backend import xp_of
from ..ops._util import data_of, shape_of
from ..ops.windows import MaxPool2d, Unfold, window_geometry


def _geometry(who, x, kernel_size, stride, padding, dilation):
    xs = shape_of(x)
    if len(xs) != 4:
        raise ValueError(f"{who}: expected input of shape (N, C, H, W), got {tuple(xs)}")
    if stride is None:
        stride = kernel_size
    if isinstance(padding, str):
        raise ValueError(f"{who}: padding must be an int or pairs, got {padding!r}")
    k, s, p, d, out = window_geometry(who, xs, kernel_size, stride, padding, dilation)
    for ki, pi in zip(k, p, strict=True):
        if max(pi) > ki // 2:
            raise ValueError(f"{who}: padding {p} must be at most half the kernel size {k}")
    return xs, k, s, p, d, out


def _stacked_windows(x, xs, k, out):
    """Non-overlapping windows as (kh·kw, N, ...): the window offset on the OUTER axis.

    x is cropped to whole windows and viewed as (N, C, H_out, kh, W_out, kw) (free), then the
    offsets are moved first with one copy. Reducing over an outer axis is a few fast
    elementwise passes (and so is the backward of ``max``), where reducing the strided inner
    (kh, kw) axes in place is ~5x slower. The copy follows x's memory order: channels-last
    memory (a conv output) gives (kh·kw, N, H_out, W_out, C), else (kh·kw, N, C, H_out, W_out).
    Returns (windows, channels_last).
    """
    n, c, h, w = xs
    (kh, kw), (ho, wo) = k, out
    if (h, w) != (ho * kh, wo * kw):
        x = x[:, :, :ho * kh, :wo * kw]
    st = data_of(x).strides
    channels_last = c > 1 and st[1] < st[3]
    if channels_last:
        # via the (N, H, W, C) view, so that the backward's final reshape copy comes out in
        # channels-last memory again, matching x (mixed layouts make later ufuncs slow)
        b = ops.reshape(ops.transpose(x, (0, 2, 3, 1)), (n, ho, kh, wo, kw, c))
        b = ops.transpose(b, (2, 4, 0, 1, 3, 5))
        return ops.reshape(b, (kh * kw, n, ho, wo, c)), True
    b = ops.reshape(x, (n, c, ho, kh, wo, kw))
    b = ops.transpose(b, (3, 5, 0, 1, 2, 4))
    return ops.reshape(b, (kh * kw, n, c, ho, wo)), False


def _from_stacked(y, channels_last):
    return ops.transpose(y, (0, 3, 1, 2)) if channels_last else y


def _windows(x, xs, k, s, d, out, pad_value=0.0, padding=((0, 0), (0, 0))):
    """Every window as (N, L, kh·kw, C) via unfold (after padding with ``pad_value``)."""
    if any(padding[0] + padding[1]):
        x = ops.pad(x, ((0, 0), (0, 0)) + tuple(padding), value=pad_value)
    cols = Unfold.apply(x, kernel=k, stride=s, padding=((0, 0), (0, 0)), dilation=d)
    return ops.reshape(cols, (xs[0], out[0] * out[1], k[0] * k[1], xs[1]))


def _to_nchw(y, xs, out):
    return ops.transpose(ops.reshape(y, (xs[0], out[0], out[1], xs[1])), (0, 3, 1, 2))


def _simple(k, s, p, d):
    return s == k and d == (1, 1) and not any(p[0] + p[1])


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max pooling: y[n, c, h, w] = max_{i,j} x_pad[n, c, h·s₁ + i·d₁, w·s₂ + j·d₂], padding −∞.

    Subgradient: the cotangent goes to the maximum of each window; k tied maxima share it
    equally (1/k each), as in the ``max`` primitive.
    """
    xs, k, s, p, d, out = _geometry("max_pool2d", x, kernel_size, stride, padding, dilation)
    return MaxPool2d.apply(x, kernel=k, stride=s, padding=p, dilation=d)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling: y[n, c, h, w] = (1/|window|) Σ_{i,j} x_pad[n, c, h·s₁ + i, w·s₂ + j].

    |window| = kh·kw (zero padding counted) or, with ``count_include_pad=False``, the number of
    window entries inside the image.
    """
    xs, k, s, p, d, out = _geometry("avg_pool2d", x, kernel_size, stride, padding, 1)
    kk = k[0] * k[1]
    if _simple(k, s, p, d):
        win, cl = _stacked_windows(x, xs, k, out)
        return _from_stacked(ops.sum(win, axis=0) * (1.0 / kk), cl)
    win = _windows(x, xs, k, s, d, out, padding=p)
    tot = _to_nchw(ops.sum(win, axis=2), xs, out)
    if count_include_pad or not any(p[0] + p[1]):
        return tot * (1.0 / kk)
    dd = data_of(x)
    xp = xp_of((dd,))
    ones = xp.ones((1, 1, xs[2], xs[3]), dtype=dd.dtype)
    cnt = Unfold.forward(xp, ones, kernel=k, stride=s, padding=p, dilation=d).sum(axis=2)
    return tot * (1.0 / cnt).reshape(1, 1, out[0], out[1])


def _pool_matrix(xp, n, m, dtype):
    """(m, n) averaging matrix of adaptive pooling: row i averages [⌊i·n/m⌋, ⌈(i+1)·n/m⌉)."""
    a = xp.zeros((m, n), dtype=dtype)
    for i in range(m):
        lo, hi = (i * n) // m, -((-(i + 1) * n) // m)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size (oh, ow): window i along an axis of length n covers
    [⌊i·n/o⌋, ⌈(i+1)·n/o⌉). Linear and separable: y = A_h x A_wᵀ (two matmuls with constant
    averaging matrices A (o, n))."""
    xs = shape_of(x)
    if len(xs) != 4:
        raise ValueError(
            f"adaptive_avg_pool2d: expected input of shape (N, C, H, W), got {tuple(xs)}")
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_avg_pool2d: output size must be positive, got {output_size!r}")
    if (oh, ow) == (1, 1):
        return ops.sum(x, axis=(2, 3), keepdims=True) * (1.0 / (xs[2] * xs[3]))
    if xs[2] % oh == 0 and xs[3] % ow == 0:
        return avg_pool2d(x, (xs[2] // oh, xs[3] // ow))
    dd = data_of(x)
    xp = xp_of((dd,))
    ah = _pool_matrix(xp, xs[2], oh, dd.dtype)
    awt = _pool_matrix(xp, xs[3], ow, dd.dtype).T.copy()
    return ops.matmul(ops.matmul(ah, x), awt)


def global_avg_pool2d(x, keepdims=False):
    """Global average pooling: y[n, c] = (1/HW) Σ_{h,w} x[n, c, h, w]; (N, C) or (N, C, 1, 1)."""
    xs = shape_of(x)
    if len(xs) != 4:
        raise ValueError(
            f"global_avg_pool2d: expected input of shape (N, C, H, W), got {tuple(xs)}")
    return ops.sum(x, axis=(2, 3), keepdims=keepdims) * (1.0 / (xs[2] * xs[3]))
