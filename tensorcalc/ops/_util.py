"""Small non-differentiable helpers shared by the rules (masks, axis normalisation)."""

from __future__ import annotations

from ..backend import EW_PIECE, kernel_threads, parallel_chunks, xp_of
from ..devices import cpu_jobs as _jobs
from ..devices import cuda as _cuda
from ..devices.gemv_sum import gemv_sum
from ..tensor import Tensor

_CPU_MIN_SUM = 1 << 13  # below this NumPy's own reduction is as fast (measured)
# values from which a binary elementwise op goes over the kernel pool (T > 1): at 2 threads a
# (2048, 128) float32 add 122 → 86 µs, (2048, 512) 517 → 325 µs; (768, 128) 13 → 59 (in cache)
_BINARY_PAR_MIN = 1 << 18


def _dense_order(a):
    """The axis order that makes ``a`` C-contiguous (its memory order), or None."""
    order = sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))
    return order if a.transpose(order).flags.c_contiguous else None


def parallel_binary(op, x, y):
    """``xp.<op>(x, y)`` for the elementwise ufunc named ``op`` ("add", "subtract",
    "multiply") in pieces over the kernel pool, or None where that does not apply: NumPy
    arrays of one shape, dtype and dense memory order (C-contiguous, or both the same permuted
    view such as channels-last), at least _BINARY_PAR_MIN values, and T > 1 kernel threads.
    The result has x's memory order; each value is the serial call's (the same bits at any
    T)."""
    if getattr(x, "size", 0) < _BINARY_PAR_MIN or isinstance(x, Tensor) or isinstance(y, Tensor):
        return None  # (the size first: the per-op path of small arrays pays one comparison)
    xp = xp_of((x,))
    if getattr(xp, "__name__", "") != "numpy" or not isinstance(x, xp.ndarray) \
            or not isinstance(y, xp.ndarray) or x.shape != y.shape or x.dtype != y.dtype \
            or x.strides != y.strides or kernel_threads() <= 1:
        return None
    ufunc = getattr(xp, op)
    order = _dense_order(x)
    if order is None:
        return None
    xt, yt = x.transpose(order), y.transpose(order)
    out_t = xp.empty(xt.shape, dtype=x.dtype)
    xf, yf, of = xt.reshape(-1), yt.reshape(-1), out_t.reshape(-1)
    if not _jobs.binary(op, xf, yf, of, _BINARY_PAR_MIN):
        parallel_chunks(xf.size, lambda s, e: ufunc(xf[s:e], yf[s:e], out=of[s:e]),
                        min_size=_BINARY_PAR_MIN, piece=EW_PIECE)
    inverse = [0] * len(order)
    for i, a in enumerate(order):
        inverse[a] = i
    return out_t.transpose(inverse)


def sum_axes(xp, x, axes, keepdims=False):
    """``x.sum(axis=axes, keepdims=keepdims)`` for a forward (raw arrays), with sums over outer
    memory axes of strided views (channels-last batch statistics, broadcast gradients) done as
    GEMVs over x's memory (devices/gemv_sum.py): on a GPU always, on NumPy where the reduced
    axes are not the innermost in memory (NumPy would add those row by row too: same order,
    about 4-15x faster)."""
    y = None
    if _cuda.uses(xp):
        y = _cuda.reduce_sum(x, axes, keepdims)
    elif getattr(xp, "__name__", "") == "numpy" and axes:
        y = gemv_sum(xp, x, axes, keepdims, min_size=_CPU_MIN_SUM, innermost=False)
    return x.sum(axis=axes, keepdims=keepdims) if y is None else y


def cast_like(mask, like):
    """A boolean mask as 0/1 values of ``like``'s dtype; never part of the graph."""
    T = Tensor
    m = mask.data if isinstance(mask, T) else mask
    dtype = like.dtype
    out = m.astype(dtype)
    if isinstance(like, T) or isinstance(mask, T):
        return T._wrap(out, None, 0)
    return out


def data_of(x):
    """The raw array behind a Tensor (or ``x`` itself) — for non-differentiable bookkeeping only."""
    T = Tensor
    return x.data if isinstance(x, T) else x


def norm_axis(axis, ndim, who):
    """Axis argument -> sorted tuple of non-negative axes (None -> all axes)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"{who}: axis {a} is out of range for a tensor with {ndim} dims")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{who}: repeated axis in {axis}")
    return tuple(sorted(out))


def shape_of(x):
    return tuple(getattr(x, "shape", ()))


def check_residual(who, x, residual):
    """A residual added to x's result must have x's shape and dtype (no silent broadcast)."""
    if residual is not None and (shape_of(residual) != shape_of(x)
                                 or data_of(residual).dtype != data_of(x).dtype):
        raise ValueError(f"{who}: the residual must have x's shape {shape_of(x)} and dtype "
                         f"{data_of(x).dtype}, got {shape_of(residual)} "
                         f"{data_of(residual).dtype}")


def ndim_of(x):
    return len(getattr(x, "shape", ()))


# ---------------------------------------------------------------- the public names, generated

PUBLIC: dict[str, object] = {}  # tc.<name> (and tc.ops.<name> for wrappers in ops/)
METHODS: dict[str, object] = {}  # Tensor.<name>(self, ...) = fn(self, ...)
NAMESPACES: dict[str, dict[str, object]] = {}  # e.g. "linalg": tc.linalg.<name>


def public(fn=None, *, method=False, namespace=None):
    """Mark a wrapper public: ``tc.<name>`` (or ``tc.<namespace>.<name>``), and with
    ``method=True`` also the Tensor method ``t.<name>(...)`` = ``fn(t, ...)``.

    This decorator is the one export list: ``tensorcalc.ops``, ``tensorcalc`` and ``Tensor``
    build their names from these tables, so a new op is its class, its wrapper (decorated)
    directly below it, and one spec in tests/op_db.py.
    """

    def mark(f):
        name = f.__name__
        table = PUBLIC if namespace is None else NAMESPACES.setdefault(namespace, {})
        old = table.get(name)
        if old is not None and old is not f and old.__module__ != f.__module__:
            raise RuntimeError(f"public name {name!r} exported twice")
        table[name] = f
        if method:
            METHODS[name] = f
        return f

    return mark if fn is None else mark(fn)
