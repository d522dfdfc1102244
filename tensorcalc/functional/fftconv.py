"""Convolution by the convolution theorem: the same function as ``conv2d``, a second algorithm.

Convolution theorem (size-S discrete Fourier transform F, indices mod S): for the circular
cross-correlation (x ⋆ w)[n] = Σ_m x[n + m] w[m],

    F(x ⋆ w) = F(x) ⊙ conj(F(w))          (for the convolution x ∗ w: F(x) ⊙ F(w)).

Take S = (H + 2p₁, W + 2p₂), the padded input size, and zero-pad w to S. For an output position
n ≤ S − k every read x[n + m], m < k, stays inside the image, so the circular correlation equals
the linear one there: y = irfft2(rfft2(x) ⊙ conj(rfft2(w)))[:H_out, :W_out]. Summing over input
channels happens per frequency, as a (real) matrix product: with X = Xr + iXi and W = Wr + iWi,

    Y = Σ_c X_c conj(W_c):   [Yr  Yi] = [Xr  Xi] · [[Wr, −Wi], [Wi, Wr]]

— one batched real GEMM over the S₁·(S₂/2 + 1) frequencies. Everything is built from the
differentiable ``rfft2`` / ``irfft2`` / ``matmul`` primitives, so gradients (and second
derivatives) come from them. Cost O(N·C·S log S + S·N·C·O) against O(N·C·O·L·k²) directly:
FFT wins for large kernels (see ``benchmarks/bench_fftconv.py``).
"""

from __future__ import annotations

from .. import ops
from ..ops._util import shape_of
from ..ops.windows import window_geometry
from ._dtypes import operand
from .conv import _check_conv


def conv2d_fft(x, w, b=None, padding=0):
    """conv2d(x, w, b, stride=1, padding, dilation=1, groups=1) via FFTs (see module doc).

    x (N, C, H, W), W (O, C, kh, kw) -> (N, O, H_out, W_out), H_out = H + 2p − kh + 1.
    """
    xs, ws = shape_of(x), shape_of(w)
    o = _check_conv("conv2d_fft", xs, ws, 1, None if b is None else shape_of(b))
    x = operand(x, w, "conv2d_fft")
    k, _, p, _, (ho, wo) = window_geometry("conv2d_fft", xs, ws[2:], 1, padding, 1)
    n, c = xs[0], xs[1]
    if any(p[0] + p[1]):
        x = ops.pad(x, ((0, 0), (0, 0)) + tuple(p))
    s = (xs[2] + p[0][0] + p[0][1], xs[3] + p[1][0] + p[1][1])
    f = s[0] * (s[1] // 2 + 1)  # number of stored frequencies
    xf = ops.rfft2(x, s=s)  # (N, C, 2, S₁, F₂)
    wf = ops.rfft2(w, s=s)  # (O, C, 2, S₁, F₂)
    # frequencies first: X as (freq, N, [re | im]·C), W as the real 2×2 block (freq, 2C, 2O)
    xm = ops.reshape(ops.transpose(xf, (3, 4, 0, 2, 1)), (f, n, 2 * c))
    wt = ops.reshape(ops.transpose(wf, (3, 4, 2, 1, 0)), (f, 2, c, o))
    wr, wi = wt[:, 0], wt[:, 1]
    blk = ops.concat([ops.concat([wr, -wi], axis=2), ops.concat([wi, wr], axis=2)], axis=1)
    ym = ops.matmul(xm, blk)  # (freq, N, [re | im]·O)
    yf = ops.transpose(ops.reshape(ym, (s[0], s[1] // 2 + 1, n, 2, o)), (2, 4, 3, 0, 1))
    y = ops.irfft2(yf, s=s)[:, :, :ho, :wo]
    if b is not None:
        y = y + ops.reshape(b, (o, 1, 1))
    return y
