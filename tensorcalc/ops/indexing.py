"""Indexing: getitem ↔ scatter_add (transposes of each other), and take (gather)."""

from __future__ import annotations

from ..autodiff.function import Linear, primitive
from ..backend import device_of, to_device
from ._util import data_of, ndim_of, public, shape_of


def _on_device_of(x, index):
    """Index arrays given on the host (NumPy arrays, lists) for an ``x`` on another device are
    moved there once, in the wrapper (the device's array module refuses to mix)."""
    device = device_of(data_of(x))
    if device == "cpu":
        return index
    return tuple(to_device(i, device) if hasattr(i, "shape") and getattr(i, "ndim", 0) else i
                 for i in index)


def _advanced(index):
    """True when the index holds an integer/bool array (elements may repeat: use add.at)."""
    return any(hasattr(i, "dtype") or isinstance(i, list) for i in index)


@primitive
class GetItem(Linear):
    """Basic and advanced indexing (slices, ints, None, ..., integer arrays, boolean masks).

    Forward:  y = x[index]
    VJP:      x̄ = scatter_add(ȳ, index, x.shape)   (repeated indices accumulate)
    JVP:      ẏ = ẋ[index]
    """

    views = True  # may return a view of x (same storage, same version counter)

    @staticmethod
    def forward(xp, x, *, index):
        return x[index]

    @staticmethod
    def vjp(g, y, x, *, needs, index):
        return (ScatterAdd.apply(g, index=index, shape=shape_of(x)),)


@public
def getitem(x, index):
    """x[index] — differentiable; integer-array and boolean-mask indices included."""
    index = index if isinstance(index, tuple) else (index,)
    index = _on_device_of(x, tuple(data_of(i) for i in index))
    return GetItem.apply(x, index=index)


@primitive
class ScatterAdd(Linear):
    """Add ``x`` into zeros of ``shape`` at ``index``; the transpose of getitem.

    Forward:  y = zeros(shape);  y[index] += x   (repeated indices accumulate)
    VJP:      x̄ = ȳ[index]
    JVP:      ẏ = scatter_add(ẋ, index, shape)
    """

    @staticmethod
    def forward(xp, x, *, index, shape):
        y = xp.zeros(shape, dtype=x.dtype)
        if _advanced(index):
            if not _rows_at(xp, y, index, x):
                xp.add.at(y, index, x)
        else:
            y[index] = x
        return y

    @staticmethod
    def vjp(g, y, x, *, needs, index, shape):
        return (GetItem.apply(g, index=index),)


def _rows_at(xp, y, index, x):
    """y[i] += x for one integer array i over y's first axis (an embedding's gradient), as a
    stable sort of i and one add.reduceat over the runs of equal rows: the same sums as ufunc.at
    (up to the rounding of their order), ~5x faster on NumPy (0.9 -> 0.17 ms for 768 rows of
    128). False (nothing done) for any other index."""
    if getattr(xp, "__name__", "") != "numpy" or len(index) != 1:
        return False
    i = index[0]
    if getattr(i, "dtype", None) is None or i.dtype.kind not in "iu" or i.size == 0 \
            or x.shape != i.shape + y.shape[1:]:
        return False
    flat = i.reshape(-1) % y.shape[0]
    order = xp.argsort(flat, kind="stable")
    rows = flat[order]
    starts = xp.flatnonzero(xp.concatenate(([True], rows[1:] != rows[:-1])))
    y2 = y.reshape(y.shape[0], -1)
    y2[rows[starts]] = xp.add.reduceat(x.reshape(flat.size, -1)[order], starts, axis=0)
    return True


@public
def scatter_add(x, index, shape):
    """zeros(shape) with ``x`` added at ``index`` (the adjoint of getitem)."""
    index = index if isinstance(index, tuple) else (index,)
    index = _on_device_of(x, tuple(data_of(i) for i in index))
    return ScatterAdd.apply(x, index=index, shape=tuple(shape))


@primitive
class Take(Linear):
    """Gather rows along ``axis`` by integer ``indices`` (embedding lookup).

    Forward:  y = take(x, indices, axis)
    VJP:      x̄ = scatter_add(ȳ, (:, ..., indices), x.shape)
    JVP:      ẏ = take(ẋ, indices, axis)
    """

    @staticmethod
    def forward(xp, x, *, indices, axis):
        return xp.take(x, indices, axis=axis)

    @staticmethod
    def vjp(g, y, x, *, needs, indices, axis):
        index = (slice(None),) * axis + (indices,)
        return (ScatterAdd.apply(g, index=index, shape=shape_of(x)),)


@public(method=True)
def take(x, indices, axis=0):
    """Gather along ``axis`` by integer ``indices`` (any shape): embedding lookup."""
    idx = data_of(indices)
    if getattr(idx, "ndim", 0):
        idx = _on_device_of(x, (idx,))[0]
    n = ndim_of(x)
    axis = axis % n
    size = shape_of(x)[axis]
    if getattr(idx, "dtype", None) is not None and idx.dtype.kind not in "iu":
        raise TypeError(f"take: indices must be integers, got {idx.dtype}")
    if getattr(idx, "size", 1) and (idx.min() < -size or idx.max() >= size):
        raise IndexError(
            f"take: index {int(idx.max()) if idx.max() >= size else int(idx.min())} is out of "
            f"range for axis {axis} of size {size}"
        )
    return Take.apply(x, indices=idx, axis=axis)
