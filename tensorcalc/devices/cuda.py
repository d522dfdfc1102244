"""Fused CUDA kernels (CuPy) for the hot paths of a training step on a GPU.

Each kernel here is an *implementation* of an existing forward or rule, selected when the arrays
are CuPy arrays: the math, the docstrings and the derivative rules stay where they are (ops/,
optim/), and the NumPy path (and the stand-in device, which is NumPy underneath) never reaches
this module. Why: on a GPU a training step of a small model is bound by the number of kernel
launches and the Python work around each, not by arithmetic; one fused kernel replaces a chain of
small ones (benchmarks/RESULTS.md, H200 section, has the before/after figures).

* ``unfold`` / ``fold`` (im2col / col2im): one gather kernel each, instead of a channels-last copy,
  a zero-padded buffer, a strided copy (unfold) or kh·kw strided adds (fold). Fold is written as
  a gather (each output pixel sums the windows that read it, in the same (i, j) order as the CPU
  loop), so it needs no atomics and is deterministic.
* ``relu_grad``: x̄ = ȳ ⊙ [x > 0] in one pass (the mask is not materialised).
* ``sgd_update`` / ``adam_update``: one kernel per parameter for SGD (momentum, dampening,
  coupled weight decay) and Adam / AdamW, instead of three to nine passes.

``TENSORCALC_CUDA_KERNELS=0`` turns them all off (the generic CuPy path is then used), which is
how the speed-up of each is measured and how a suspected kernel bug is ruled out.
"""

from __future__ import annotations

import os

from .. import backend
from .gemv_sum import gemv_sum

ENABLED = os.environ.get("TENSORCALC_CUDA_KERNELS", "1") != "0"
_cp = backend._cupy
_ndarray = _cp.ndarray if _cp is not None else None
_kernels: dict = {}


def on_cuda(a) -> bool:
    """True when ``a`` is a CuPy array and the fused kernels are enabled."""
    return _ndarray is not None and ENABLED and type(a) is _ndarray


def uses(xp) -> bool:
    """True when ``xp`` is CuPy and the fused kernels are enabled."""
    return _cp is not None and ENABLED and xp is _cp


def _kernel(name):
    k = _kernels.get(name)
    if k is None:
        k = _kernels[name] = _cp.ElementwiseKernel(*_SOURCES[name], name=f"tc_{name}")
    return k


_SOURCES = {
    # y (N, L, K) contiguous, K = (a·kw + b)·C + c; x read through its logical index (any strides)
    "unfold": (
        "raw T x, int32 C, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, "
        "int32 sy, int32 sx, int32 p0, int32 q0, int32 dy, int32 dx",
        "T y",
        """
        const long long K = (long long)kh * kw * C;
        const long long L = (long long)Ho * Wo;
        long long r = i;
        const int k = (int)(r % K); r /= K;
        const int l = (int)(r % L);
        const long long n = r / L;
        const int c = k % C, ab = k / C, b = ab % kw, a = ab / kw;
        const int h = (l / Wo) * sy - p0 + a * dy;
        const int w = (l % Wo) * sx - q0 + b * dx;
        y = (h >= 0 && h < H && w >= 0 && w < W)
            ? x[((n * C + c) * H + h) * (long long)W + w] : (T)0;
        """,
    ),
    # y (N, H, W, C) contiguous: the sum over the windows (a, b) that read pixel (h, w)
    "fold": (
        "raw T cols, int32 C, int32 H, int32 W, int32 Ho, int32 Wo, int32 kh, int32 kw, "
        "int32 sy, int32 sx, int32 p0, int32 q0, int32 dy, int32 dx",
        "T y",
        """
        const long long K = (long long)kh * kw * C;
        const long long L = (long long)Ho * Wo;
        long long r = i;
        const int c = (int)(r % C); r /= C;
        const int w = (int)(r % W); r /= W;
        const int h = (int)(r % H);
        const long long n = r / H;
        const int hp = h + p0, wp = w + q0;
        T acc = 0;
        for (int a = 0; a < kh; ++a) {
            const int t = hp - a * dy;
            if (t < 0) break;
            if (t % sy) continue;
            const int ho = t / sy;
            if (ho >= Ho) continue;
            for (int b = 0; b < kw; ++b) {
                const int u = wp - b * dx;
                if (u < 0) break;
                if (u % sx) continue;
                const int wo = u / sx;
                if (wo >= Wo) continue;
                acc += cols[(n * L + (long long)ho * Wo + wo) * K
                            + (long long)(a * kw + b) * C + c];
            }
        }
        y = acc;
        """,
    ),
    "relu_grad": ("T g, X x", "T gx", "gx = g * (T)(x > (X)0)"),
    # b ← μ b + (1 − τ)(g + λθ);  θ ← θ − γ b   (nesterov: θ ← θ − γ (g + λθ + μ b))
    "sgd": (
        "T g, T mu, T damp, T lr, T wd, int32 nesterov", "T p, T b",
        """
        const T gg = g + wd * p;
        b = mu * b + damp * gg;
        p = p - lr * (nesterov ? gg + mu * b : b);
        """,
    ),
    # m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  θ ← θ − step · m / (√v · rc2 + ε)
    "adam": (
        "T g, T b1, T b2, T step, T rc2, T eps, T wd", "T p, T m, T v",
        """
        const T gg = g + wd * p;
        m = b1 * m + ((T)1 - b1) * gg;
        v = b2 * v + ((T)1 - b2) * gg * gg;
        p = p - step * m / (sqrt(v) * rc2 + eps);
        """,
    ),
}


def unfold(x, kernel, stride, padding, dilation):
    """im2col of x (N, C, H, W) into a contiguous (N, H_out·W_out, kh·kw·C) array (the layout
    of ``ops.windows.Unfold``)."""
    (kh, kw), (sy, sx), (dy, dx) = kernel, stride, dilation
    (p0, p1), (q0, q1) = padding
    n, c, h, w = x.shape
    ho = (h + p0 + p1 - dy * (kh - 1) - 1) // sy + 1
    wo = (w + q0 + q1 - dx * (kw - 1) - 1) // sx + 1
    y = _cp.empty((n, ho * wo, kh * kw * c), dtype=x.dtype)
    _kernel("unfold")(x, c, h, w, ho, wo, kh, kw, sy, sx, p0, q0, dy, dx, y)
    return y


def fold(cols, size, kernel, stride, padding, dilation):
    """col2im of cols (N, L, kh·kw·C) into (N, C, H, W), a transposed view of channels-last
    memory (the layout of ``ops.windows.Fold``)."""
    (kh, kw), (sy, sx), (dy, dx) = kernel, stride, dilation
    (p0, p1), (q0, q1) = padding
    h, w = size
    n, _, k = cols.shape
    c = k // (kh * kw)
    ho = (h + p0 + p1 - dy * (kh - 1) - 1) // sy + 1
    wo = (w + q0 + q1 - dx * (kw - 1) - 1) // sx + 1
    y = _cp.empty((n, h, w, c), dtype=cols.dtype)
    _kernel("fold")(cols, c, h, w, ho, wo, kh, kw, sy, sx, p0, q0, dy, dx, y)
    return y.transpose(0, 3, 1, 2)


def relu_grad(g, x):
    """ȳ ⊙ [x > 0] in g's dtype (NaN/inf in ȳ propagate as in the unfused product)."""
    return _kernel("relu_grad")(g, x)


def sgd_update(p, g, b, lr, mu, dampening, wd, nesterov):
    """One fused SGD-with-momentum step on p and its momentum buffer b (both in place)."""
    t = p.dtype.type
    _kernel("sgd")(g, t(mu), t(1.0 - dampening), t(lr), t(wd), int(bool(nesterov)), p, b)


def adam_update(p, g, m, v, lr, b1, b2, eps, wd, t):
    """One fused Adam step (t ≥ 1, coupled weight decay wd; 0 for none) on p, m, v in place:
    θ ← θ − (γ/(1 − β₁ᵗ)) m / (√v / √(1 − β₂ᵗ) + ε)."""
    f = p.dtype.type
    bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    _kernel("adam")(g, f(b1), f(b2), f(lr / bc1), f(1.0 / bc2 ** 0.5), f(eps), f(wd), p, m, v)


# ------------------------------------------------------------------ sums over strided axes
# CuPy's reduction kernel gives each output element to one thread block. Summing a large array
# down to a few values along its *outer* memory axes (batch-norm statistics, bias gradients,
# sum_to of broadcast gradients: (N·H·W, C) -> (C,) with C = 6..64) then runs on a handful of
# blocks: 0.5 ms per call on an H200 where the data take microseconds to read. Written as
# products with a vector of ones, the same sums are cuBLAS GEMV / strided batched GEMM calls,
# which spread any shape over the whole GPU (float32 accumulation, like the reduction kernel).
_MIN_SUM = 1 << 15


def reduce_sum(x, axis, keepdims=False):
    """Σ over ``axis`` (a tuple of non-negative axes) as GEMVs over x's memory, or None when
    that does not apply (small, non-float, a full reduction, memory not dense): the caller then
    uses ``x.sum``. Same values as ``x.sum(axis=axis, keepdims=keepdims)`` up to rounding.
    The algorithm is device-independent: devices/gemv_sum.py."""
    if not ENABLED:
        return None
    return gemv_sum(_cp, x, axis, keepdims, min_size=_MIN_SUM)


_finite_or_zero = None


def finite_or_zero(m):
    """m where finite, else 0, in one kernel and without a host synchronisation (the NumPy
    path tests ``isfinite(m).all()`` first; on a GPU that test would stall the host)."""
    global _finite_or_zero
    if _finite_or_zero is None:
        _finite_or_zero = _cp.ElementwiseKernel("T m", "T y", "y = isfinite(m) ? m : (T)0",
                                                "tc_finite_or_zero")
    return _finite_or_zero(m)
