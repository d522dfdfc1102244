"""Basic composites: statistics over axes, clipping, flattening, softmax.

Each is a few primitives; its derivative is whatever the chain rule over them gives.
"""

from __future__ import annotations

import math

from .. import ops
from ..backend import array_module
from ..ops._util import data_of, ndim_of, norm_axis, public, shape_of
from ..tensor import Tensor


def _count(x, axis):
    s = shape_of(x)
    return math.prod(s[a] for a in norm_axis(axis, len(s), "mean"))


@public(method=True)
def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``: (1/n) Σ x."""
    n = _count(x, axis)
    if n == 0:
        raise ValueError(f"mean: reduction over an empty axis (shape {shape_of(x)})")
    return ops.sum(x, axis, keepdims) * (1.0 / n)


@public(method=True)
def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis``: Σ (x − mean)² / (n − ddof)."""
    n = _count(x, axis)
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements with ddof={ddof} leaves no degrees of freedom")
    d = x - mean(x, axis, keepdims=True)
    return ops.sum(d * d, axis, keepdims) * (1.0 / (n - ddof))


@public(method=True)
def std(x, axis=None, keepdims=False, ddof=0):
    """Standard deviation over ``axis``: √var = ‖x − mean‖₂ / √(n − ddof).

    On a constant slice (var = 0) std is a norm at its kink: its gradient there is 0, the
    minimum-norm subgradient (as for :func:`tensorcalc.linalg.norm` at 0), not ∞ · 0 = NaN.
    """
    return safe_sqrt(var(x, axis, keepdims, ddof))


def safe_sqrt(s):
    """√s for s ≥ 0 with the gradient 0 where s = 0 (instead of ∞ · 0 = NaN): the subgradient
    convention of a norm at 0. The square root is never evaluated at 0 (inner where), so no
    ∞ enters the chain rule, in either mode."""
    pos = data_of(s) > 0
    return ops.where(pos, ops.sqrt(ops.where(pos, s, 1.0)), 0.0)


@public(method=True)
def clip(x, lo=None, hi=None):
    """Clamp into [lo, hi]; the gradient is 1 strictly inside, 0 outside, ½ at the bounds."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo={lo} is greater than hi={hi}")
    if lo is not None:
        x = ops.maximum(x, lo)
    if hi is not None:
        x = ops.minimum(x, hi)
    return x


@public(method=True)
def flatten(x, start_axis=0):
    """Merge axes from ``start_axis`` on into one: (N, C, H, W) -> (N, C·H·W) for start 1."""
    s = shape_of(x)
    start_axis = start_axis % max(len(s), 1)
    return ops.reshape(x, s[:start_axis] + (math.prod(s[start_axis:]),))


@public(method=True)
def split(x, sections, axis=0):
    """Split into pieces along ``axis``: ``sections`` is a count of equal parts or a list of
    split points (numpy convention). Composite of getitem."""
    n = shape_of(x)[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {sections}")
        step = n // sections
        points = list(range(step, n, step))
    else:
        points = list(sections)
    bounds = [0, *points, n]
    lead = (slice(None),) * (axis % ndim_of(x))
    return [ops.getitem(x, lead + (slice(a, b),))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _arg(x, axis, keepdims, which):

    d = data_of(x)
    out = getattr(d, which)(axis=axis, keepdims=keepdims)
    return Tensor._wrap(out, None, 0) if isinstance(x, Tensor) else out


@public(method=True)
def argmax(x, axis=None, keepdims=False):
    """Index of the maximum (not differentiable)."""
    return _arg(x, axis, keepdims, "argmax")


@public(method=True)
def argmin(x, axis=None, keepdims=False):
    """Index of the minimum (not differentiable)."""
    return _arg(x, axis, keepdims, "argmin")


@public
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


@public
def softmax(x, axis=-1):
    """softmax(x)ᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m), m = max x: accurate for any finite logits
    (the fused primitive ops.reduce.softmax)."""
    return ops.reduce.softmax(x, axis)


def _all_finite(m):
    return bool(array_module(m).isfinite(m).all())


__all__ = ["mean", "var", "std", "safe_sqrt", "clip", "flatten", "split", "argmax", "argmin",
           "softmax", "log_softmax"]
