"""Shape primitives: all Linear, each VJP the transpose op (broadcast_to ↔ sum_to, ...)."""

from __future__ import annotations

import math

from ..autodiff.function import Linear, primitive
from ._util import ndim_of, norm_axis, public, shape_of, sum_axes
from .indexing import getitem


@primitive
class Reshape(Linear):
    """Reshape (same elements, row-major order).

    Forward:  y = reshape(x, shape)
    VJP:      x̄ = reshape(ȳ, x.shape)
    JVP:      ẏ = reshape(ẋ, shape)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, shape):
        return x.reshape(shape)

    @staticmethod
    def vjp(g, y, x, *, needs, shape):
        return (reshape(g, x.shape),)


@public
def reshape(x, shape):
    """Reshape to ``shape`` (one entry may be −1)."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    xs = shape_of(x)
    size = math.prod(xs)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: at most one −1 allowed, got {shape}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise ValueError(f"reshape: cannot reshape {xs} ({size} elements) into {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if math.prod(shape) != size:
        raise ValueError(
            f"reshape: cannot reshape {xs} ({size} elements) into {shape} "
            f"({math.prod(shape)} elements); the element count must match"
        )
    if shape == xs:
        return x
    return Reshape.apply(x, shape=shape)


@primitive
class Transpose(Linear):
    """Permutation of axes.

    Forward:  y = transpose(x, axes)         (y.shape[i] = x.shape[axes[i]])
    VJP:      x̄ = transpose(ȳ, argsort(axes))
    JVP:      ẏ = transpose(ẋ, axes)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, axes):
        return x.transpose(axes)

    @staticmethod
    def vjp(g, y, x, *, needs, axes):
        inv = tuple(sorted(range(len(axes)), key=axes.__getitem__))
        return (Transpose.apply(g, axes=inv),)


@public
def transpose(x, axes=None):
    """Permute axes (default: reverse them)."""
    n = ndim_of(x)
    if axes is None:
        axes = tuple(range(n))[::-1]
    axes = tuple(a % n for a in axes)
    if sorted(axes) != list(range(n)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {n} axes")
    return Transpose.apply(x, axes=axes)


@public(method=True)
def swapaxes(x, a, b):
    """Swap two axes."""
    n = ndim_of(x)
    axes = list(range(n))
    axes[a], axes[b] = axes[b], axes[a]
    return Transpose.apply(x, axes=tuple(axes))


@primitive
class BroadcastTo(Linear):
    """Broadcast to a larger shape (numpy rules); the transpose of sum_to.

    Forward:  y = broadcast_to(x, shape)
    VJP:      x̄ = sum_to(ȳ, x.shape)
    JVP:      ẏ = broadcast_to(ẋ, shape)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, shape):
        # A materialised copy, not a stride-0 view: it is cheaper to make here than
        # numpy.broadcast_to's view, and the consumers (GEMMs, in-place updates) want
        # contiguous writable arrays.
        out = xp.empty(shape, dtype=x.dtype)
        out[...] = x
        return out

    @staticmethod
    def vjp(g, y, x, *, needs, shape):
        return (sum_to(g, x.shape),)


@public(method=True)
def broadcast_to(x, shape):
    """Broadcast ``x`` to ``shape`` (numpy rules)."""
    shape = tuple(shape)
    xs = shape_of(x)
    if xs == shape:
        return x
    if len(xs) > len(shape) or any(
        a != b and a != 1 for a, b in zip(xs[::-1], shape[::-1], strict=False)
    ):
        raise ValueError(
            f"broadcast_to: cannot broadcast {xs} to {shape}: aligned from the last axis, each "
            "size must equal the target or be 1"
        )
    return BroadcastTo.apply(x, shape=shape)


@primitive
class SumTo(Linear):
    """Sum over the broadcast axes to reach ``shape``; the transpose of broadcast_to.

    Forward:  y = sum_to(x, shape)   (sum leading axes and axes where shape has 1)
    VJP:      x̄ = broadcast_to(ȳ, x.shape)
    JVP:      ẏ = sum_to(ẋ, shape)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, shape):
        lead = x.ndim - len(shape)
        if x.shape[lead:] == shape:  # the common case: only leading axes were broadcast
            if not lead:
                return x
            return sum_axes(xp, x, tuple(range(lead)))
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1
        )
        y = sum_axes(xp, x, axes, True) if axes else x
        if lead:
            y = y.reshape(shape)
        return y

    @staticmethod
    def vjp(g, y, x, *, needs, shape):
        return (broadcast_to(g, x.shape),)


@public(method=True)
def sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (the adjoint of broadcasting)."""
    shape = tuple(shape)
    if shape_of(x) == shape:
        return x
    return SumTo.apply(x, shape=shape)


@primitive
class ExpandDims(Linear):
    """Insert size-1 axes.

    Forward:  y = expand_dims(x, axis)
    VJP:      x̄ = squeeze(ȳ, axis)
    JVP:      ẏ = expand_dims(ẋ, axis)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, axis):
        return xp.expand_dims(x, axis)

    @staticmethod
    def vjp(g, y, x, *, needs, axis):
        return (Squeeze.apply(g, axis=axis),)


@public
def expand_dims(x, axis):
    """Insert a size-1 axis at ``axis`` (int or tuple)."""
    n = ndim_of(x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = norm_axis(axes, n + len(axes), "expand_dims")
    return ExpandDims.apply(x, axis=axes)


@primitive
class Squeeze(Linear):
    """Remove size-1 axes.

    Forward:  y = squeeze(x, axis)
    VJP:      x̄ = expand_dims(ȳ, axis)
    JVP:      ẏ = squeeze(ẋ, axis)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, axis):
        return xp.squeeze(x, axis)

    @staticmethod
    def vjp(g, y, x, *, needs, axis):
        return (ExpandDims.apply(g, axis=axis),)


@public(method=True)
def squeeze(x, axis=None):
    """Remove size-1 axes (all of them, or those in ``axis``)."""
    xs = shape_of(x)
    if axis is None:
        axes = tuple(i for i, s in enumerate(xs) if s == 1)
    else:
        axes = norm_axis(axis, len(xs), "squeeze")
        bad = [a for a in axes if xs[a] != 1]
        if bad:
            raise ValueError(f"squeeze: axis {bad[0]} has size {xs[bad[0]]}, not 1 (shape {xs})")
    if not axes:
        return x
    return Squeeze.apply(x, axis=axes)


@primitive
class Concat(Linear):
    """Join tensors along an existing axis.

    Forward:  y = [x₁ | x₂ | ... ] along axis
    VJP:      x̄ᵢ = ȳ[..., offᵢ : offᵢ + nᵢ, ...]   (the slice xᵢ came from)
    JVP:      ẏ = [ẋ₁ | ẋ₂ | ... ] along axis
    """

    @staticmethod
    def forward(xp, *xs, axis):
        return xp.concatenate(xs, axis=axis)

    @staticmethod
    def vjp(g, y, *xs, needs, axis):
        out, off = [], 0
        lead = (slice(None),) * axis
        for x, need in zip(xs, needs, strict=True):
            n = shape_of(x)[axis]
            out.append(getitem(g, lead + (slice(off, off + n),)) if need else None)
            off += n
        return tuple(out)


@public
def concat(xs, axis=0):
    """Concatenate along an existing axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("concat: needs at least one tensor")
    n = ndim_of(xs[0])
    axis = norm_axis(axis, n, "concat")[0]
    s0 = shape_of(xs[0])
    for x in xs[1:]:
        s = shape_of(x)
        if len(s) != n or any(a != b for i, (a, b) in enumerate(zip(s, s0, strict=True))
                              if i != axis):
            raise ValueError(
                f"concat: shapes {[shape_of(x) for x in xs]} must agree on every axis but "
                f"axis {axis}"
            )
    return Concat.apply(*xs, axis=axis)


@primitive
class Stack(Linear):
    """Join same-shaped tensors along a new axis.

    Forward:  y[..., i, ...] = xᵢ   (i at position axis)
    VJP:      x̄ᵢ = ȳ[..., i, ...]
    JVP:      ẏ = stack(ẋ₁, ẋ₂, ...)
    """

    @staticmethod
    def forward(xp, *xs, axis):
        return xp.stack(xs, axis=axis)

    @staticmethod
    def vjp(g, y, *xs, needs, axis):
        lead = (slice(None),) * axis
        return tuple(getitem(g, lead + (i,)) if need else None for i, need in enumerate(needs))


@public
def stack(xs, axis=0):
    """Stack same-shaped tensors along a new axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack: needs at least one tensor")
    s0 = shape_of(xs[0])
    if any(shape_of(x) != s0 for x in xs):
        raise ValueError(f"stack: all shapes must be equal, got {[shape_of(x) for x in xs]}")
    axis = norm_axis(axis, len(s0) + 1, "stack")[0]
    return Stack.apply(*xs, axis=axis)


@primitive
class Pad(Linear):
    """Constant padding; ``pad`` is ((before, after), ...) per axis.

    Forward:  y = pad(x, pad, value)   (y = x in the interior, value outside)
    VJP:      x̄ = ȳ[interior]
    JVP:      ẏ = pad(ẋ, pad, 0)       (the constant has zero tangent)
    """

    @staticmethod
    def forward(xp, x, *, pad, value=0.0):
        return xp.pad(x, pad, mode="constant", constant_values=value)

    @staticmethod
    def vjp(g, y, x, *, needs, pad, value=0.0):
        idx = tuple(slice(b, b + n) for (b, _), n in zip(pad, shape_of(x), strict=True))
        return (getitem(g, idx),)

    @staticmethod
    def jvp(dxs, y, x, *, pad, value=0.0):
        return Pad.apply(dxs[0], pad=pad, value=0.0)


@public(method=True)
def pad(x, pad_width, value=0.0):
    """Constant-pad: ``pad_width`` is an int, a (before, after) pair, or one pair per axis."""
    n = ndim_of(x)
    if isinstance(pad_width, int):
        pw = ((pad_width, pad_width),) * n
    elif len(pad_width) == 2 and all(isinstance(p, int) for p in pad_width):
        pw = (tuple(pad_width),) * n
    else:
        pw = tuple(tuple(int(v) for v in p) for p in pad_width)
    if len(pw) != n or any(len(p) != 2 or min(p) < 0 for p in pw):
        raise ValueError(f"pad: expected {n} non-negative (before, after) pairs, got {pad_width}")
    return Pad.apply(x, pad=pw, value=float(value))


@primitive
class Flip(Linear):
    """Reverse the order of elements along axes.

    Forward:  y = flip(x, axis)
    VJP:      x̄ = flip(ȳ, axis)
    JVP:      ẏ = flip(ẋ, axis)
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, axis):
        return xp.flip(x, axis)

    @staticmethod
    def vjp(g, y, x, *, needs, axis):
        return (Flip.apply(g, axis=axis),)


@public(method=True)
def flip(x, axis=None):
    """Reverse element order along ``axis`` (default all axes)."""
    axes = norm_axis(axis, ndim_of(x), "flip")
    return Flip.apply(x, axis=axes)
