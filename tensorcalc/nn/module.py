"""Module and Parameter: the bookkeeping of a model (no calculus here).

A :class:`Module` registers the :class:`Parameter` s, buffers and sub-modules assigned to it as
attributes, so ``parameters()``, ``state_dict()``, ``train()``/``eval()`` and ``repr`` can walk
the tree. Registered values are also kept as ordinary instance attributes, so reading
``self.weight`` inside ``forward`` is a plain attribute lookup (no per-call introspection).
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from contextlib import contextmanager

import numpy as np

from .. import backend
from ..autodiff.mode import no_grad
from ..autodiff.mode import state as _mode_state
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a learnable weight: ``requires_grad=True``, and registered by the
    Module it is assigned to. Arithmetic on a Parameter gives plain Tensors."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad: bool = True, dtype=None):
        if data is None:
            data = np.empty((0,), dtype=backend.get_default_dtype())
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self):
        return "Parameter" + Tensor.__repr__(self)[len("Tensor"):]


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(RuntimeError):
    """load_state_dict found missing or unexpected keys, or shapes that do not match."""


def _fmt(n: int) -> str:
    return f"{n:,}"


class RemovableHandle:
    """What :meth:`Module.register_forward_hook` returns: ``remove()`` unregisters the hook
    (a second call does nothing); usable as a context manager that removes it on exit."""

    _next_id = 0

    def __init__(self, hooks: dict, fn):
        RemovableHandle._next_id += 1
        self.id = RemovableHandle._next_id
        self._hooks = hooks
        hooks[self.id] = fn

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign Parameters / sub-modules as attributes
    (they register themselves) and define ``forward``; ``module(x)`` calls ``forward(x)``.

    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = Linear(4, 2, rng=0)
    ...     def forward(self, x):
    ...         return self.fc(x)
    """

    training: bool

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent"] = set()
        d["_modules"] = {}
        d["training"] = True

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")  # abstract

    def __call__(self, *args, **kwargs):
        # The graph records which module produced each node (autodiff.graph reads it back as a
        # module path), so the innermost running module is kept in the thread's grad state.
        st = _mode_state
        prev = st.module
        st.module = self
        try:
            out = self.forward(*args, **kwargs)
        finally:
            st.module = prev
        hooks = self.__dict__.get("_forward_hooks")
        if hooks:
            for fn in list(hooks.values()):
                r = fn(self, args, out)
                if r is not None:
                    out = r
        return out

    def register_forward_hook(self, fn) -> RemovableHandle:
        """Call ``fn(module, args, output)`` after every forward of this module (PyTorch's
        semantics): a non-None return value replaces the output. Hooks run in the order
        registered; ``handle.remove()`` unregisters one. For looking inside a model (feature
        maps, activation statistics) without changing its code."""
        if not callable(fn):
            raise TypeError(f"register_forward_hook: expected a callable, got "
                            f"{type(fn).__name__}")
        hooks = self.__dict__.setdefault("_forward_hooks", {})
        return RemovableHandle(hooks, fn)

    # ------------------------------------------------------------------ registration
    def _registries(self):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        return d["_parameters"], d["_buffers"], d["_modules"]

    def __setattr__(self, name, value):
        params, buffers, modules = self._registries()
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
            self.__dict__[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
            self.__dict__[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name} is a Parameter: assign a Parameter or None, "
                    f"got {type(value).__name__} (to change its values use load_state_dict or "
                    "copy_ under no_grad)"
                )
            params[name] = None
            self.__dict__[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} is a sub-module: assign a Module "
                                f"or None, got {type(value).__name__}")
            modules[name] = None
            self.__dict__[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                value = Tensor(value)
            buffers[name] = value
            self.__dict__[name] = value
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name):
        d = self.__dict__
        for reg in (d.get("_parameters", {}), d.get("_buffers", {}), d.get("_modules", {})):
            reg.pop(name, None)
        d.get("_non_persistent", set()).discard(name)
        if name in d:
            del d[name]
        else:
            object.__delattr__(self, name)

    def __getattr__(self, name):
        # Only reached when ordinary lookup fails: names registered without an instance
        # attribute (e.g. container entries that would shadow a method).
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            r = d.get(reg)
            if r is not None and name in r:
                return r[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _attach(self, name, value):
        """Also expose ``name`` as an attribute unless that would shadow a class attribute."""
        d = self.__dict__
        if hasattr(type(self), name):
            return
        cur = d.get(name)
        if cur is not None and not isinstance(cur, (Tensor, Module)):
            return  # an ordinary attribute (e.g. ``training``) keeps its name
        d[name] = value

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (a Parameter, or None for an absent one such as bias=False)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got "
                            f"{type(param).__name__}")
        params, buffers, modules = self._registries()
        buffers.pop(name, None)
        modules.pop(name, None)
        params[name] = param
        self._attach(name, param)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register state that is not learned (e.g. running statistics): saved in state_dict
        (unless ``persistent=False``), moved by ``to()``, never returned by parameters()."""
        params, buffers, modules = self._registries()
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        if isinstance(tensor, Parameter):
            raise TypeError(f"register_buffer: {name!r} is a Parameter; use register_parameter")
        params.pop(name, None)
        modules.pop(name, None)
        buffers[name] = tensor
        nonp = self.__dict__["_non_persistent"]
        if persistent:
            nonp.discard(name)
        else:
            nonp.add(name)
        self._attach(name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a sub-module under ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got "
                            f"{type(module).__name__}")
        if "." in name or not name:
            raise ValueError(f"add_module: invalid module name {name!r}")
        params, buffers, modules = self._registries()
        params.pop(name, None)
        buffers.pop(name, None)
        modules[name] = module
        self._attach(name, module)

    # ------------------------------------------------------------------ traversal
    def named_children(self):
        """(name, module) for each direct sub-module."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):

        """Each direct sub-module."""
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "", _memo=None):
        """(qualified name, module) for this module and every descendant, each once."""
        memo = set() if _memo is None else _memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):

        """This module and every descendant, each once (depth first)."""
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(qualified name, Parameter) pairs; a Parameter shared by two layers appears once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{name}" if mname else name), p

    def parameters(self, recurse: bool = True):
        """Every learnable Parameter (each once), in registration order."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):

        """(qualified name, buffer) pairs, each buffer once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for name, b in m._buffers.items():
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                yield (f"{mname}.{name}" if mname else name), b

    def buffers(self, recurse: bool = True):

        """Every buffer (running statistics and other non-learned state)."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> Module:
        """The sub-module at dotted path ``target`` ('' is self)."""
        m = self
        if not target:
            return m
        for part in target.split("."):
            sub = m._modules.get(part)
            if sub is None:
                raise AttributeError(f"{type(m).__name__} has no sub-module {part!r} "
                                     f"(looking up {target!r})")
            m = sub
        return m

    def apply(self, fn) -> Module:
        """Call ``fn(m)`` on every sub-module (children first) and on self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active, batch norm uses batch statistics); returns self."""
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``.grad`` (to None, or zeros in place)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor(backend.array_module(p.data).zeros_like(p.data))

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze (True) every parameter; returns self."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalar parameters (each shared Parameter counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ dtype / device
    def _convert(self, fn) -> Module:
        for t in list(self.parameters()) + list(self.buffers()):
            t.data = fn(t.data)
            if t.grad is not None:
                t.grad = Tensor(fn(t.grad.data))
        return self

    def to(self, device: str | None = None, dtype=None) -> Module:
        """Move parameters and buffers to ``device`` ('cpu', 'cuda' alias 'gpu', 'standin')
        and/or cast float ones to ``dtype``, in place (the Parameter objects stay the same, so
        optimisers keep them, and their state — moments, accumulators — follows to the
        device)."""
        if device is not None:
            from ..devices import parameters_moved

            backend.get_xp(device)  # an unknown or absent device fails before anything moves
            self._convert(lambda a: backend.to_device(a, device))
            parameters_moved(list(self.parameters()), device)
        if dtype is not None:
            dt = np.dtype(dtype)
            self._convert(lambda a: a.astype(dt) if a.dtype.kind == "f" else a)
        return self

    def float(self) -> Module:

        """Cast float parameters and buffers to float32, in place."""
        return self.to(dtype=np.float32)

    def double(self) -> Module:

        """Cast float parameters and buffers to float64, in place (for gradient checks)."""
        return self.to(dtype=np.float64)

    # ------------------------------------------------------------------ state
    def _state_items(self, prefix: str = ""):
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                yield prefix + name, b
        for name, m in self._modules.items():
            if m is not None:
                yield from m._state_items(f"{prefix}{name}.")

    def state_dict(self) -> OrderedDict:
        """{qualified name: NumPy array copy} of every parameter and persistent buffer."""
        return OrderedDict((k, np.array(backend.to_numpy(t.data), copy=True))
                           for k, t in self._state_items())

    def load_state_dict(self, state_dict, strict: bool = True,
                        cast: bool = False) -> IncompatibleKeys:
        """Copy values from ``state_dict`` (name -> array or Tensor) into this module in place.

        Checks everything before changing anything: a shape mismatch is always an error; so is a
        dtype mismatch (float64 or int32 weights into a float32 model: never a silent cast)
        unless ``cast=True``; with ``strict`` missing and unexpected keys are errors too. The
        error lists every problem. Returns (missing_keys, unexpected_keys).
        """
        own = OrderedDict(self._state_items())
        given = {k: (v.data if isinstance(v, Tensor) else v) for k, v in state_dict.items()}
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        mismatched = []
        for k, t in own.items():
            if k in given:
                s = tuple(np.shape(given[k]))
                if s != tuple(t.shape):
                    mismatched.append(f"  {k}: checkpoint has shape {s}, the model "
                                      f"{tuple(t.shape)}")
                dt = getattr(given[k], "dtype", None)
                if not cast and dt is not None and dt != t.dtype:
                    mismatched.append(f"  {k}: dtype {dt}, the model's is {t.dtype} (pass "
                                      "cast=True to convert)")
        problems = []
        if strict and missing:
            problems.append("missing keys (in the model, not in the state dict): "
                            + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys (in the state dict, not in the model): "
                            + ", ".join(unexpected))
        if mismatched:
            problems.append("shape or dtype mismatches:\n" + "\n".join(mismatched))
        if problems:
            raise StateDictError(f"load_state_dict for {type(self).__name__}: "
                                 + "; ".join(problems))
        with no_grad():
            for k, t in own.items():
                if k in given:
                    v = backend.to_device(given[k], t.device)
                    t.copy_(v.astype(t.dtype, copy=False))
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        """One-line description of this layer's configuration (override in subclasses)."""
        return ""

    def _repr_lines(self):
        own = self.num_parameters()
        head = f"{type(self).__name__}({self.extra_repr()}"
        kids = [(n, m) for n, m in self._modules.items() if m is not None]
        note = f"  # {_fmt(own)} params" if own else ""
        if not kids:
            return [head + ")" + note]
        lines = [head + note]
        for name, m in kids:
            sub = m._repr_lines()
            lines.append(f"  ({name}): {sub[0]}")
            lines.extend("  " + s for s in sub[1:])
        lines.append(")")
        return lines

    def __repr__(self):
        lines = self._repr_lines()
        total = self.num_parameters()
        trainable = self.num_parameters(trainable_only=True)
        lines.append(f"Total parameters: {_fmt(total)} (trainable: {_fmt(trainable)})")
        return "\n".join(lines)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._modules) | set(self._parameters)
                      | set(self._buffers))


@contextmanager
def _swapped(module: Module, tensors: dict):
    saved = []
    try:
        for name, t in tensors.items():
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name)
            if leaf not in owner._parameters and leaf not in owner._buffers:
                raise KeyError(f"functional_call: {name!r} is not a parameter or buffer of "
                               f"{type(module).__name__}")
            d = owner.__dict__
            saved.append((d, leaf, d.get(leaf, _MISSING)))
            d[leaf] = t
        yield
    finally:
        for d, leaf, old in reversed(saved):
            if old is _MISSING:
                d.pop(leaf, None)
            else:
                d[leaf] = old


_MISSING = object()


def functional_call(module: Module, tensors: dict, *args, **kwargs):
    """``module(*args, **kwargs)`` with the named parameters/buffers replaced by ``tensors``
    for this one call (e.g. to differentiate with respect to a function of the weights, or to
    gradcheck a layer as a function of (input, *params)). The module is left unchanged."""
    with _swapped(module, tensors):
        return module(*args, **kwargs)


__all__ = ["Module", "Parameter", "functional_call", "StateDictError", "IncompatibleKeys"]
