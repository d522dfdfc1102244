"""Tensor: an array (``.data``, numpy or cupy) plus what reverse mode needs.

``requires_grad`` marks a leaf to differentiate with respect to; a Tensor produced by a recorded
primitive holds its graph ``Node``. ``.grad`` is filled by :meth:`backward`. Operators and methods
delegate to the primitives in :mod:`tensorcalc.ops` and the composites in
:mod:`tensorcalc.functional`.
"""

from __future__ import annotations

import numpy as np

from . import backend

# The non-NumPy array types (CuPy's, the stand-in's), filled by the backend as devices are first
# used: Tensor._wrap accepts them as they are.
_DEVICE_TYPES = backend._XP_BY_TYPE


def data_of(x):
    """The array behind a Tensor, or ``x`` itself."""
    return x.data if isinstance(x, Tensor) else x


def _is_float_dtype(dtype) -> bool:
    return np.dtype(dtype).kind in "fc"


class Version:
    """The version counter of one storage, shared by every Tensor that aliases it.

    A view (a basic slice, a reshape, ``.T``, ``detach()``, ``Tensor(t)``) holds the *same*
    counter object as the tensor it aliases, so an in-place write through any alias bumps the
    version that every graph node saved for backward checks.
    """

    __slots__ = ("v",)

    def __init__(self):
        self.v = 0


class Tensor:
    """A multi-dimensional array that can record the operations applied to it.

    >>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward(); x.grad
    Tensor([2., 4., 6.], dtype=float32)
    """

    __slots__ = ("data", "grad", "_rg", "_node", "_index", "_vc", "name", "__weakref__")
    __array_ufunc__ = None  # ndarray ⊕ Tensor defers to Tensor's reflected operators
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = False, dtype=None, device: str | None = None):
        src = None
        if isinstance(data, Tensor):
            src = data
            data = data.data
        if device is not None:
            xp = backend.get_xp(device)
            if hasattr(data, "dtype") and not isinstance(data, np.generic):
                data = backend.to_device(data, device)  # an explicit transfer
        else:
            xp = backend.array_module(data)
        if dtype is None and not hasattr(data, "dtype"):
            arr = xp.asarray(data)
            if arr.dtype.kind == "f":
                arr = arr.astype(backend.get_default_dtype())
        else:
            arr = xp.asarray(data, dtype=dtype)
        self.data = arr
        self.grad = None
        self._node = None
        self._index = 0
        # Tensor(t) without a copy aliases t's storage: it shares t's version counter.
        self._vc = src._counter() if src is not None and arr is data else None
        self.name = None
        self._rg = False
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _wrap(cls, data, node, index):
        """Fast internal constructor (no conversion): used by Function.apply."""
        t = object.__new__(Tensor)
        if type(data) is not np.ndarray and type(data) not in _DEVICE_TYPES:
            data = np.asarray(data)
        t.data = data
        t.grad = None
        t._node = node
        t._index = index
        t._vc = None  # version 0; the counter object is made on the first need
        t.name = None
        t._rg = node is not None
        return t

    # ------------------------------------------------------------------ autodiff attributes
    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if value and not _is_float_dtype(self.data.dtype):
            raise TypeError(
                f"requires_grad: only float tensors can require gradients, got {self.data.dtype}"
                " (integer and bool tensors are indices and masks)"
            )
        if not value and self._node is not None:
            raise RuntimeError("requires_grad: cannot turn off on a non-leaf; use .detach()")
        self._rg = bool(value)

    def requires_grad_(self, value: bool = True) -> Tensor:
        self.requires_grad = value
        return self

    @property
    def _version(self) -> int:
        """The version of this tensor's storage (shared with every view of it)."""
        vc = self._vc
        return 0 if vc is None else vc.v

    @_version.setter
    def _version(self, value: int):
        self._counter().v = value

    def _counter(self) -> Version:
        """This storage's version counter, made when first needed (most tensors never are
        viewed or written in place, and skip the allocation)."""
        vc = self._vc
        if vc is None:
            vc = self._vc = Version()
        return vc

    def _bump(self) -> None:
        """Record an in-place change of the storage (seen by every graph that saved it)."""
        vc = self._vc
        if vc is None:
            vc = self._vc = Version()
        vc.v += 1
        _mode.versions.inplace_epoch += 1

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    @property
    def grad_fn(self):
        """Name of the primitive that produced this tensor (None for a leaf)."""
        return None if self._node is None else self._node.fn.name

    def backward(self, grad_output=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf requiring grad."""
        from .autodiff.engine import backward

        backward(self, grad_output, retain_graph=retain_graph, create_graph=create_graph)

    def detach(self) -> Tensor:
        """Same data, no graph. The result aliases this tensor's storage (and its version
        counter): writing into it in place is seen by any graph that saved this tensor."""
        t = Tensor._wrap(self.data, None, 0)
        t._vc = self._counter()
        return t

    def clone(self) -> Tensor:
        """A copy of the data, differentiable (identity in the graph)."""
        from .ops.arithmetic import Cast

        return Cast.apply(self, dtype=self.dtype)

    # ------------------------------------------------------------------ array attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        """Where the data lives: 'cpu', 'cuda' or 'standin' (see tensorcalc.devices)."""
        return backend.device_of(self.data)

    def __len__(self) -> int:
        if not self.data.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied off the GPU if needed; shares memory on CPU)."""
        return backend.to_numpy(self.data)

    def __array__(self, dtype=None, copy=None):
        if type(self.data) in _DEVICE_TYPES:  # as CuPy and PyTorch: no silent device -> host
            raise TypeError(f"a tensor on device {self.device!r} does not convert to NumPy "
                            "implicitly; use .numpy() (an explicit copy) or .to('cpu')")
        a = backend.to_numpy(self.data)
        if dtype is not None:
            a = a.astype(dtype, copy=False)
        return a.copy() if copy else a

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python scalar, got "
                             f"shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data.reshape(()).item())

    def __hash__(self):
        return id(self)

    def astype(self, dtype) -> Tensor:
        """Cast (differentiable between float dtypes: the gradient is cast back)."""
        from .ops.arithmetic import cast

        return cast(self, dtype)

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def to(self, device=None, dtype=None) -> Tensor:
        """This tensor on ``device`` ('cpu', 'cuda' alias 'gpu', or 'standin') and/or cast to
        ``dtype``. ``self`` when nothing changes; a move is a copy, and the copy is a new leaf
        (``requires_grad`` kept, like ``.detach()`` then move) — the graph does not cross
        devices."""
        t = self
        if device is not None:
            xp = backend.get_xp(device)
            if backend.array_module(self.data) is not xp:
                t = Tensor._wrap(backend.to_device(self.data, device), None, 0)
                t._rg = self._rg
        if dtype is not None and t.dtype != np.dtype(dtype):
            t = t.astype(dtype)
        return t

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def __repr__(self):
        body = np.array2string(backend.to_numpy(self.data), separator=", ", precision=4,
                               threshold=50, edgeitems=3, prefix="Tensor(")
        extra = []
        if self.data.size > 50 or self.data.ndim > 2:
            extra.append(f"shape={self.shape}")
        extra.append(f"dtype={self.dtype}")
        if self._node is not None:
            extra.append(f"grad_fn={self._node.fn.name}")
        elif self._rg:
            extra.append("requires_grad=True")
        if self.device != "cpu":
            extra.append(f"device={self.device}")
        return f"Tensor({body}, {', '.join(extra)})"

    # ------------------------------------------------------------------ in-place (versioned)
    def _inplace(self, who):
        if self._rg and _mode.state.grad:
            raise RuntimeError(
                f"{who}: in-place change of a tensor that requires grad; wrap it in no_grad() "
                "(optimisers do) or use the out-of-place op"
            )
        self._bump()

    def __setitem__(self, index, value):
        self._inplace("__setitem__")
        if isinstance(index, tuple):
            index = tuple(data_of(i) for i in index)
        else:
            index = data_of(index)
        self.data[index] = data_of(value)

    def add_(self, other, alpha=1.0) -> Tensor:
        self._inplace("add_")
        o = data_of(other)
        if alpha == 1.0:
            self.data += o
        else:
            self.data += alpha * o
        return self

    def sub_(self, other) -> Tensor:
        self._inplace("sub_")
        self.data -= data_of(other)
        return self

    def mul_(self, other) -> Tensor:
        self._inplace("mul_")
        self.data *= data_of(other)
        return self

    def div_(self, other) -> Tensor:
        self._inplace("div_")
        self.data /= data_of(other)
        return self

    def copy_(self, other) -> Tensor:
        self._inplace("copy_")
        self.data[...] = data_of(other)
        return self

    def fill_(self, value) -> Tensor:
        self._inplace("fill_")
        self.data.fill(value)
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def clamp_(self, lo=None, hi=None) -> Tensor:
        self._inplace("clamp_")
        backend.array_module(self.data).clip(self.data, lo, hi, out=self.data)
        return self


# ---------------------------------------------------------------------- operators and methods
# The engine, ops and functional import Tensor from this module; importing them only now (the
# class exists) keeps those imports honest, with no cycle at import time.
from . import functional  # noqa: E402, F401  (its @public(method=True) composites)
from . import ops as _ops  # noqa: E402
from .autodiff import mode as _mode  # noqa: E402


def _binary(fn, reflected=False):
    if reflected:
        return lambda self, other: fn(other, self)
    return lambda self, other: fn(self, other)


def _compare(ufunc_name):
    def op(self, other):
        xp = backend.array_module(self.data)
        return Tensor._wrap(getattr(xp, ufunc_name)(self.data, data_of(other)), None, 0)

    return op


from .ops.arithmetic import Add as _Add  # noqa: E402
from .ops.arithmetic import Div as _Div  # noqa: E402
from .ops.arithmetic import Mul as _Mul  # noqa: E402
from .ops.arithmetic import Sub as _Sub  # noqa: E402

# Operators call the primitive directly (one Python frame less on the hottest path).
Tensor.__add__ = lambda self, other: _Add.apply(self, other)
Tensor.__radd__ = lambda self, other: _Add.apply(other, self)
Tensor.__sub__ = lambda self, other: _Sub.apply(self, other)
Tensor.__rsub__ = lambda self, other: _Sub.apply(other, self)
Tensor.__mul__ = lambda self, other: _Mul.apply(self, other)
Tensor.__rmul__ = lambda self, other: _Mul.apply(other, self)
Tensor.__truediv__ = lambda self, other: _Div.apply(self, other)
Tensor.__rtruediv__ = lambda self, other: _Div.apply(other, self)
Tensor.__pow__ = _binary(_ops.pow)
Tensor.__rpow__ = _binary(_ops.pow, True)
Tensor.__matmul__ = _binary(_ops.matmul)
Tensor.__rmatmul__ = _binary(_ops.matmul, True)
Tensor.__neg__ = lambda self: _ops.neg(self)
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = lambda self: _ops.abs(self)
Tensor.__getitem__ = lambda self, index: _ops.getitem(self, index)
Tensor.__lt__ = _compare("less")
Tensor.__le__ = _compare("less_equal")
Tensor.__gt__ = _compare("greater")
Tensor.__ge__ = _compare("greater_equal")
Tensor.__eq__ = _compare("equal")
Tensor.__ne__ = _compare("not_equal")
Tensor.__invert__ = lambda self: Tensor._wrap(~self.data, None, 0)
Tensor.__and__ = _compare("logical_and")
Tensor.__or__ = _compare("logical_or")
Tensor.__hash__ = lambda self: id(self)


def _method(fn):
    def m(self, *args, **kw):
        return fn(self, *args, **kw)

    m.__name__ = fn.__name__
    m.__doc__ = fn.__doc__
    return m


# Generated: every wrapper marked @public(method=True) in ops/ or functional/ is a method.
for _name, _fn in _ops.METHODS.items():
    setattr(Tensor, _name, _method(_fn))


def _reshape_method(self, *shape):
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = shape[0]
    return _ops.reshape(self, shape)


def _permute(self, *axes):
    if len(axes) == 1 and not isinstance(axes[0], int):
        axes = axes[0]
    return _ops.transpose(self, axes)


def _transpose_method(self, *axes):
    if not axes:
        return _ops.transpose(self)
    if len(axes) == 2 and all(isinstance(a, int) for a in axes) and self.ndim != 2:
        return _ops.swapaxes(self, *axes)
    return _permute(self, *axes)


Tensor.reshape = _reshape_method
Tensor.view = _reshape_method
Tensor.permute = _permute
Tensor.transpose = _transpose_method
Tensor.T = property(lambda self: _ops.transpose(self))
Tensor.mT = property(lambda self: _ops.swapaxes(self, -1, -2))
Tensor.unsqueeze = lambda self, axis: _ops.expand_dims(self, axis)
Tensor.expand_dims = Tensor.unsqueeze
Tensor.clamp = Tensor.clip
