"""The stand-in device: NumPy underneath, but behaving like a separate device the way CuPy does.

CI has no GPU. This module is an array module (``xp``) whose arrays, :class:`StandInArray`, live
"somewhere else": exactly like ``cupy.ndarray`` they

* refuse implicit conversion to NumPy (``np.asarray(a)``, ``np.array(a)``, ``float`` of a
  non-scalar, iterating into a NumPy function) with CuPy's own TypeError;
* refuse to mix with NumPy arrays in any function or operator (``a + np_array`` raises);
* come back from reductions as 0-d arrays, never as NumPy scalars;
* move to the host only through ``a.get()`` / ``xp.asnumpy(a)``, and from it only through
  ``xp.asarray(np_array)`` / ``xp.array(np_array)``.

So running the op suite, the layers, the optimisers and a training run on device ``"standin"``
catches every host leak that would break (or silently slow down) the same code on a GPU. It is
slow (every call is unwrapped and rewrapped) and meant for tests only.
"""

from __future__ import annotations

import types

import numpy as np

_LEAK = ("Implicit conversion to a NumPy array is not allowed (device 'standin', as on CuPy). "
         "Please use `.get()` or tensorcalc.backend.to_numpy() to construct a NumPy array "
         "explicitly.")


def _mixing(where):
    return TypeError(f"{where}: an operand is a NumPy (host) array and another lives on device "
                     "'standin'; move one of them first (as CuPy: Unsupported type "
                     "<class 'numpy.ndarray'>)")


class StandInArray:
    """An ndarray on the stand-in device (see the module docstring)."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 2000

    def __init__(self, a):
        self._a = a

    # --------------------------------------------------------------- no implicit host copies
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_LEAK)

    def get(self, stream=None, order="C", out=None):
        """A NumPy copy (the explicit device -> host transfer)."""
        return np.array(self._a, copy=True)

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        ins = _unwrap(inputs, f"numpy.{ufunc.__name__}")
        if "out" in kw:
            kw["out"] = _unwrap(kw["out"], f"numpy.{ufunc.__name__}")
        return _wrap(getattr(ufunc, method)(*ins, **kw))

    def __array_function__(self, func, types_, args, kw):
        name = getattr(func, "__name__", "function")
        return _wrap(func(*_unwrap(args, f"numpy.{name}"), **_unwrap(kw, f"numpy.{name}")))

    # --------------------------------------------------------------- array attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StandInArray(self._a.T))
    mT = property(lambda self: StandInArray(np.swapaxes(self._a, -1, -2)))
    real = property(lambda self: StandInArray(self._a.real))
    imag = property(lambda self: StandInArray(self._a.imag))

    @property
    def base(self):
        # The NumPy array owning the memory, so identity of storage can be compared (the
        # engine's view tracking); never a StandInArray made on the fly.
        b = self._a.base
        return self._a if b is None else b

    @property
    def device(self):
        return "standin"

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for v in self._a:
            yield _wrap(v)

    def __repr__(self):
        return f"standin.array({np.array2string(self._a, separator=', ')}, dtype={self.dtype})"

    __str__ = __repr__

    def __getitem__(self, index):
        return _wrap(self._a[_index(index)])

    def __setitem__(self, index, value):
        self._a[_index(index)] = _unwrap(value, "__setitem__")

    # scalars out of 0-d (size-1) arrays are explicit synchronisations on CuPy too
    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return bool(self._a)

    def __getattr__(self, name):
        # methods of ndarray (sum, reshape, astype, ...): unwrap arguments, wrap results. No
        # dunder passes through: __array_interface__ / __array_struct__ would let NumPy copy
        # the data to the host silently.
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kw):
                return _wrap(attr(*_unwrap(args, f"ndarray.{name}"),
                                  **_unwrap(kw, f"ndarray.{name}")))

            return method
        return _wrap(attr)

    def __getstate__(self):
        raise TypeError(_LEAK)


def _binop(name):
    def op(self, other):
        r = getattr(self._a, name)(_unwrap(other, f"ndarray.{name}"))
        return NotImplemented if r is NotImplemented else _wrap(r)

    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        getattr(self._a, name)(_unwrap(other, f"ndarray.{name}"))
        return self

    op.__name__ = name
    return op


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
           "xor", "lshift", "rshift", "lt", "le", "gt", "ge", "eq", "ne"):
    for _d in (f"__{_n}__", f"__r{_n}__"):
        if hasattr(np.ndarray, _d):
            setattr(StandInArray, _d, _binop(_d))
    if hasattr(np.ndarray, f"__i{_n}__"):
        setattr(StandInArray, f"__i{_n}__", _inplace(f"__i{_n}__"))
for _n in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(StandInArray, _n, (lambda n: lambda self: _wrap(getattr(self._a, n)()))(_n))
StandInArray.__hash__ = None


def _unwrap(x, where):
    """StandInArray -> its ndarray; a NumPy array -> TypeError (mixing devices); containers
    recursively; everything else (Python and NumPy scalars, dtypes, None) unchanged."""
    t = type(x)
    if t is StandInArray:
        return x._a
    if t is np.ndarray:
        raise _mixing(where)
    if t is tuple or t is list:
        return t(_unwrap(v, where) for v in x)
    if t is dict:
        return {k: _unwrap(v, where) for k, v in x.items()}
    return x


def _wrap(x):
    t = type(x)
    if t is np.ndarray:
        return StandInArray(x)
    if isinstance(x, np.generic):  # reductions give 0-d device arrays, as on CuPy
        return StandInArray(np.asarray(x))
    if t is tuple or t is list:
        return t(_wrap(v) for v in x)
    if isinstance(x, tuple):  # named results (linalg.eigh, slogdet, ...): a plain tuple
        return tuple(_wrap(v) for v in x)
    return x


def _index(index):
    """Indices may be device arrays, or NumPy integer/bool arrays (CuPy accepts those too)."""
    if type(index) is tuple:
        return tuple(i._a if type(i) is StandInArray else i for i in index)
    return index._a if type(index) is StandInArray else index


# ------------------------------------------------------------------------- the module (xp)
def _to_device(a, dtype=None, copy=False, **kw):
    t = type(a)
    if t is StandInArray:
        a = a._a
    elif t in (list, tuple):
        a = _unwrap_lists(a)
    out = np.array(a, dtype=dtype, copy=True, **kw) if copy else np.asarray(a, dtype=dtype, **kw)
    return StandInArray(out)


def _unwrap_lists(x):
    if type(x) in (list, tuple):
        return [_unwrap_lists(v) for v in x]
    if type(x) is StandInArray:
        return x._a
    return x


def asarray(a, dtype=None, order=None, **kw):
    """Host data (NumPy array, list, scalar) or a device array -> a device array."""
    return _to_device(a, dtype=dtype, order=order)


def array(a, dtype=None, copy=True, order="K", ndmin=0, **kw):
    return _to_device(a, dtype=dtype, copy=copy, order=order, ndmin=ndmin)


def asnumpy(a, stream=None, order="C", out=None):
    """A NumPy copy of a device array (NumPy input passes through, as cupy.asnumpy)."""
    if type(a) is StandInArray:
        return np.array(a._a, copy=True)
    return np.asarray(a)


def get_array_module(*args):
    for a in args:
        if type(a) is StandInArray:
            return _MODULE
    return np


def _function(fn, name):
    def f(*args, **kw):
        return _wrap(fn(*_unwrap(args, f"standin.{name}"), **_unwrap(kw, f"standin.{name}")))

    f.__name__ = name
    f.__doc__ = getattr(fn, "__doc__", None)
    return f


class _UFunc:
    """A NumPy ufunc with device-array semantics, its methods (at, reduce, outer, ...) too."""

    def __init__(self, uf, name):
        self._uf = uf
        self.__name__ = name
        self._call = _function(uf, name)

    def __call__(self, *args, **kw):
        return self._call(*args, **kw)

    def at(self, a, indices, b=None):
        where = f"standin.{self.__name__}.at"
        if type(a) is not StandInArray:
            raise _mixing(where)
        args = (_index(indices),) if b is None else (_index(indices), _unwrap(b, where))
        self._uf.at(a._a, *args)

    def __getattr__(self, name):
        attr = getattr(self._uf, name)
        return _function(attr, f"{self.__name__}.{name}") if callable(attr) else attr


class _Proxy(types.ModuleType):
    """A module whose functions are NumPy's with device-array semantics."""

    def __init__(self, name, np_mod, own=None):
        super().__init__(name)
        self._np = np_mod
        for k, v in (own or {}).items():
            setattr(self, k, v)

    def __getattr__(self, name):
        attr = getattr(self._np, name)
        if isinstance(attr, types.ModuleType):
            value = _Proxy(f"{self.__name__}.{name}", attr)
        elif isinstance(attr, np.ufunc):
            value = _UFunc(attr, name)
        elif callable(attr) and not isinstance(attr, type) and not isinstance(attr, np.dtype):
            value = _function(attr, name)
        else:
            value = attr
        setattr(self, name, value)  # cache
        return value


_MODULE = _Proxy("tensorcalc.devices.standin.xp", np, {
    "ndarray": StandInArray, "asarray": asarray, "array": array, "asnumpy": asnumpy,
    "get_array_module": get_array_module, "device_name": "standin",
})

xp = _MODULE

__all__ = ["StandInArray", "xp", "asnumpy"]


def special():
    """scipy.special with stand-in semantics (what cupyx.scipy.special is to CuPy)."""
    global _SPECIAL
    if _SPECIAL is None:
        import scipy.special as sp

        _SPECIAL = _Proxy("tensorcalc.devices.standin.special", sp)
    return _SPECIAL


_SPECIAL = None
