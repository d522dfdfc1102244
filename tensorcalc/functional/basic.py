"""Basic composites: statistics over axes, clipping, flattening, softmax.

Each is a few primitives; its derivative is whatever the chain rule over them gives.
"""

from __future__ import annotations

import math

from .. import ops
from ..backend import array_module
from ..ops._util import data_of, norm_axis, shape_of


def _count(x, axis):
    s = shape_of(x)
    return math.prod(s[a] for a in norm_axis(axis, len(s), "mean"))


def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``: (1/n) Σ x."""
    n = _count(x, axis)
    if n == 0:
        raise ValueError(f"mean: reduction over an empty axis (shape {shape_of(x)})")
    return ops.sum(x, axis, keepdims) * (1.0 / n)


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis``: Σ (x − mean)² / (n − ddof)."""
    n = _count(x, axis)
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements with ddof={ddof} leaves no degrees of freedom")
    d = x - mean(x, axis, keepdims=True)
    return ops.sum(d * d, axis, keepdims) * (1.0 / (n - ddof))


def std(x, axis=None, keepdims=False, ddof=0):
    """Standard deviation over ``axis``: √var."""
    return ops.sqrt(var(x, axis, keepdims, ddof))


def clip(x, lo=None, hi=None):
    """Clamp into [lo, hi]; the gradient is 1 strictly inside, 0 outside, ½ at the bounds."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo={lo} is greater than hi={hi}")
    if lo is not None:
        x = ops.maximum(x, lo)
    if hi is not None:
        x = ops.minimum(x, hi)
    return x


def flatten(x, start_axis=0):
    """Merge axes from ``start_axis`` on into one: (N, C, H, W) -> (N, C·H·W) for start 1."""
    s = shape_of(x)
    start_axis = start_axis % max(len(s), 1)
    return ops.reshape(x, s[:start_axis] + (math.prod(s[start_axis:]),))


def _arg(x, axis, keepdims, which):
    from ..autodiff import function as F

    d = data_of(x)
    out = getattr(d, which)(axis=axis, keepdims=keepdims)
    return F._Tensor._wrap(out, None, 0) if isinstance(x, F._Tensor) else out


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum (not differentiable)."""
    return _arg(x, axis, keepdims, "argmax")


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum (not differentiable)."""
    return _arg(x, axis, keepdims, "argmin")


def log_softmax(x, axis=-1):
    """log softmax(x) = d − logsumexp(d) with d = x − max(x): finite and accurate for any logits.

    The max m is a constant (softmax is invariant to shifts, so treating it as one changes no
    derivative); shifting first keeps d exact and logsumexp(d) ∈ [0, log n] small, where
    x − logsumexp(x) would carry the float32 rounding of a large lse (~1e-3 at 1e4) into every
    log-probability.
    """
    xd = data_of(x)
    m = xd.max(axis=axis, keepdims=True)
    m = m if _all_finite(m) else array_module(m).where(array_module(m).isfinite(m), m, 0)
    d = x - m
    return d - ops.logsumexp(d, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    """softmax(x)ᵢ = exp(log softmax(x)ᵢ): accurate for any logits (see log_softmax)."""
    return ops.exp(log_softmax(x, axis))


def _all_finite(m):
    return bool(array_module(m).isfinite(m).all())


__all__ = ["mean", "var", "std", "clip", "flatten", "argmax", "argmin", "softmax",
           "log_softmax"]
