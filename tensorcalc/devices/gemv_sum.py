"""Sums over strided axes as products with a vector of ones (GEMV / batched GEMM), on any array
module.

Why: a sum that keeps the *inner* memory axes and reduces the *outer* ones — batch-norm
statistics and bias gradients of channels-last data, ``(N·H·W, C) -> (C,)`` with C = 6…64,
``sum_to`` of broadcast gradients — is slow in both NumPy and CuPy when the array is a strided
view (NumPy: a (64, 16, 28, 28) NCHW view of NHWC memory summed over (0, 2, 3) takes 1.07 ms;
CuPy gives each output element to one thread block). Written over the array's *memory* order as

    Σ_{reduced run} x  =  1ᵀ · X        X = the (run, rest) matrix of that run in memory,

it is one BLAS call (0.06 ms for the example), which is also the order NumPy itself would add in
for an outer axis (row by row), so on the CPU nothing is lost in accuracy: the CPU path only
reduces runs that are not innermost (``innermost=False``), where NumPy's pairwise summation
would not apply anyway. Same values as ``x.sum(axis, keepdims=keepdims)`` up to rounding.
"""

from __future__ import annotations

_ones: dict = {}


def _ones_vec(xp, n, dtype):
    key = (xp.__name__, n, dtype)
    v = _ones.get(key)
    if v is None:
        if len(_ones) > 64:
            _ones.clear()
        v = _ones[key] = xp.ones(n, dtype=dtype)
    return v


def gemv_sum(xp, x, axis, keepdims=False, *, min_size=1 << 15, innermost=True):
    """Σ over ``axis`` (a tuple of non-negative axes) as GEMVs over x's memory, or None when
    that does not apply (small, non-float, a full reduction, memory not dense, or — with
    ``innermost=False`` — a reduced run that is innermost in memory): the caller then uses
    ``x.sum``."""
    if axis is None or x.size < min_size or x.dtype.kind != "f":
        return None
    nd, shape, strides = x.ndim, x.shape, x.strides
    red = set(axis)
    big = [a for a in range(nd) if shape[a] != 1]
    if not any(a in red for a in big) or all(a in red for a in big):
        return None  # nothing to sum, or everything (a full reduction is fast as it is)
    order = sorted(big, key=lambda a: -strides[a])
    step = x.itemsize
    for a in reversed(order):  # dense memory in this axis order (any view of it, no gaps)
        if strides[a] != step:
            return None
        step *= shape[a]
    if not innermost and order[-1] in red:
        return None
    xm = x.transpose(order + [a for a in range(nd) if shape[a] == 1])
    # runs of summed / kept axes in memory order, e.g. (N, [C], H·W) for an NCHW batch norm
    runs = []
    for a in order:
        r = a in red
        if runs and runs[-1][1] == r:
            runs[-1][0] *= shape[a]
        else:
            runs.append([shape[a], r])
    a2 = xm.reshape(-1)
    total = x.size
    for i in range(len(runs) - 1, -1, -1):
        size, r = runs[i]
        if not r:
            continue
        inner = 1
        for s, _ in runs[i + 1:]:
            inner *= s
        outer = total // (size * inner)
        ones = _ones_vec(xp, size, x.dtype)
        if inner == 1:
            a2 = a2.reshape(outer, size) @ ones
        elif outer == 1:
            a2 = ones @ a2.reshape(size, inner)
        else:
            a2 = xp.matmul(ones.reshape(1, size), a2.reshape(outer, size, inner))
        a2 = a2.reshape(-1)
        total //= size
        runs[i][0] = 1
    kept = [a for a in order if a not in red]  # memory order of the result
    y = a2.reshape([shape[a] for a in kept]).transpose(sorted(range(len(kept)),
                                                              key=lambda i: kept[i]))
    out_shape = tuple(1 if a in red else shape[a] for a in range(nd)) if keepdims else \
        tuple(shape[a] for a in range(nd) if a not in red)
    return y.reshape(out_shape)
