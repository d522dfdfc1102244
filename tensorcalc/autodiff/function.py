"""Primitives: the ``Function`` base, its three structures, the registry and the graph ``Node``.

A primitive is a class with staticmethods

* ``forward(xp, *xs, **kw) -> y`` on raw arrays (``xp`` is numpy or cupy), and
* ``vjp(g, y, *xs, needs, **kw) -> (gx₁, gx₂, ...)`` — one cotangent per positional input
  (``None`` where ``needs[i]`` is False), and
* ``jvp(dxs, y, *xs, **kw) -> dy`` — tangents ``dxs`` (``None`` = zero) pushed forward.

Rules are written with the library's own functions and operators. In an ordinary backward pass
they receive raw arrays and run at NumPy speed (``Function.apply`` with no Tensor among its inputs
is a plain array call); with ``create_graph=True`` they receive Tensors and record a new graph,
which is how second derivatives come for free.

Structures derive the rules that follow from what an op *is*:

* :class:`Elementwise` — write ``derivative(y, *xs)`` (f′, or one partial per input); VJP is
  ``g ⊙ f′`` and JVP is ``ẋ ⊙ f′``.
* :class:`Linear` — the JVP is the op itself applied to the tangents; write the VJP as the
  transpose op.
* :class:`Bilinear` — ż = f(ẋ, y) + f(x, ẏ) comes free; write the VJP.

Only differentiable operands are positional; indices, axes, shapes and flags are keyword-only.
"""

from __future__ import annotations

import itertools
import re
import weakref

from ..backend import xp_of
from ..tensor import Tensor
from . import mode

REGISTRY: dict[str, type] = {}

_seq = itertools.count()
_weakref = weakref.ref
_mode = mode.state
_versions = mode.versions



def primitive(cls):
    """Class decorator: register a primitive under its snake_case name."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    cls.name = name
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise RuntimeError(f"primitive {name!r} registered twice")
    REGISTRY[name] = cls
    return cls


class Node:
    """One recorded application of a primitive: what backward needs, and no more.

    ``inputs`` holds the positional operands (Tensors or constants), ``out`` the output array(s),
    ``outref`` a weak reference to the output Tensor(s) (a strong one would make a cycle), ``seq``
    a creation counter: a node's inputs always have smaller ``seq``, so visiting nodes by
    decreasing ``seq`` is a reverse topological order. ``versions`` are the inputs' storage
    versions when recorded, ``outversions`` the outputs' (non-zero only for a view of an input),
    ``epoch`` the global in-place epoch (see ``mode``) and ``module`` the innermost
    :class:`~tensorcalc.nn.Module` running when the node was made (None outside modules).
    """

    __slots__ = ("fn", "inputs", "datas", "kw", "out", "outref", "needs", "seq", "versions",
                 "outversions", "epoch", "module", "__weakref__")

    @property
    def multi(self) -> bool:
        return type(self.out) is tuple

    def __repr__(self):
        return f"<Node {self.fn.name} #{self.seq}>"


_object_new = object.__new__


def _new_node(fn, inputs, datas, kw, out, needs, versions):
    node = _object_new(Node)
    node.fn = fn
    node.inputs = inputs
    node.datas = datas
    node.kw = kw
    node.out = out
    node.needs = needs
    node.versions = versions
    node.outversions = None
    node.seq = next(_seq)
    node.epoch = _versions.inplace_epoch
    node.module = _mode.module
    node.outref = None
    return node


def _root(a):
    """The array that owns ``a``'s memory (``a`` itself if it owns it)."""
    while True:
        b = a.base
        if b is None or not hasattr(b, "base"):
            return a
        a = b


def _share_versions(ys, args):
    """Outputs that alias an input's storage (a view, or the input array itself) take that
    input's version counter."""
    for y in ys:
        r = _root(y.data)
        for a in args:
            if isinstance(a, Tensor) and _root(a.data) is r:
                y._vc = a._counter()
                break


def _shape(a):
    return getattr(a, "shape", ())


class Function:
    """Base of every primitive. Subclasses set ``forward`` / ``vjp`` / ``jvp`` as staticmethods."""

    name = "function"
    broadcasts = False  # True: inputs broadcast against each other; the engine sums gradients back
    # True: the output may alias an input's memory (reshape, transpose, basic getitem, ...); it
    # then shares that input's version counter, so in-place writes through it are seen.
    views = False

    @classmethod
    def apply(cls, *args, **kw):
        """Run ``forward`` on the arrays; record a Node when grad mode is on and an input
        requires grad. With no Tensor among the inputs this is a plain array call."""
        T = Tensor
        for a in args:
            if isinstance(a, T):
                break
        else:  # no Tensor operand: a plain array call (the fast path inside backward rules)
            try:
                return cls.forward(xp_of(args), *args, **kw)
            except TypeError as e:
                raise cls._on_type_error(e, args) from None
        datas = []
        needs = []
        versions = []
        record = False
        for a in args:
            if isinstance(a, T):
                datas.append(a.data)
                if a._rg:
                    record = True
                    needs.append(True)
                else:
                    needs.append(False)
                vc = a._vc
                versions.append(0 if vc is None else vc.v)
            else:
                datas.append(a)
                needs.append(False)
                versions.append(None)
        try:
            out = cls.forward(xp_of(datas), *datas, **kw)
        except ValueError as e:
            raise ValueError(cls._explain(e, datas)) from None
        except TypeError as e:
            raise cls._on_type_error(e, datas) from None
        if _mode.anomaly:
            _check_finite(cls, "forward", out)
        wrap = T._wrap
        multi = type(out) is tuple
        if not (record and _mode.grad):
            ys = tuple(wrap(o, None, 0) for o in out) if multi else (wrap(out, None, 0),)
            if cls.views:
                _share_versions(ys, args)
            return ys if multi else ys[0]
        node = _new_node(cls, args, datas, kw, out, needs, versions)
        if multi:
            ys = tuple(wrap(o, node, i) for i, o in enumerate(out))
            node.outref = tuple(_weakref(y) for y in ys)
        else:
            y = wrap(out, node, 0)
            node.outref = _weakref(y)
            ys = (y,)
        if cls.views:
            _share_versions(ys, args)
            node.outversions = tuple(y._version for y in ys)
        return ys if multi else ys[0]

    @classmethod
    def _on_type_error(cls, err, datas):
        """Operands on different devices (the array module refuses them with a TypeError, as
        CuPy does) become one error naming the op and every operand's device; any other
        TypeError passes unchanged."""
        from ..backend import device_of, mixed_devices

        devices = mixed_devices(datas)
        if devices is None:
            return err
        where = ", ".join(f"operand {i} of shape {tuple(d.shape)} on {device_of(d)!r}"
                          for i, d in enumerate(datas)
                          if hasattr(d, "shape") and hasattr(d, "dtype") and d.shape != ()
                          or type(d).__name__ in ("ndarray", "StandInArray"))
        return RuntimeError(f"{cls.name}: operands on different devices ({' and '.join(devices)}"
                            f"): {where}; move them to one device first with .to(device)")

    @classmethod
    def _explain(cls, err, datas):
        shapes = ", ".join(str(tuple(_shape(d))) for d in datas)
        msg = str(err)
        if cls.broadcasts and len(datas) > 1:
            import numpy as np

            try:
                np.broadcast_shapes(*[_shape(d) for d in datas])
            except ValueError:
                return (
                    f"{cls.name}: shapes {shapes} do not broadcast: aligned from the last axis, "
                    "each pair of sizes must be equal or one of them 1"
                )
        return f"{cls.name}: {msg} (input shapes {shapes})"

    # Default rules: a primitive must define vjp and jvp (or inherit them from a structure).
    @staticmethod
    def forward(xp, *xs, **kw):  # pragma: no cover - abstract
        raise NotImplementedError("abstract: every primitive defines forward")


def _check_finite(cls, where, value):
    vals = value if type(value) is tuple else (value,)
    for v in vals:
        if v is None:
            continue
        data = v.data if isinstance(v, Tensor) else v
        xp = xp_of((data,))
        if getattr(data, "dtype", None) is not None and data.dtype.kind in "fc":
            if not bool(xp.isfinite(data).all()):
                raise FloatingPointError(
                    f"detect_anomaly: {cls.name} produced a NaN or Inf in its {where} "
                    f"(shape {tuple(data.shape)})"
                )


class Elementwise(Function):
    """y = f(x₁, ..., xₙ) applied elementwise (inputs broadcast).

    Subclasses write ``derivative(y, *xs, **kw)``: f′ for one input, or a tuple of partials
    ∂y/∂xᵢ for several. VJP: x̄ᵢ = ȳ ⊙ ∂y/∂xᵢ; JVP: ẏ = Σᵢ ẋᵢ ⊙ ∂y/∂xᵢ.
    """

    broadcasts = True

    @classmethod
    def vjp(cls, g, y, *xs, needs, **kw):
        d = cls.derivative(y, *xs, **kw)
        if len(xs) == 1:
            return (g * d,)
        return tuple(g * di if n else None for di, n in zip(d, needs, strict=True))

    @classmethod
    def jvp(cls, dxs, y, *xs, **kw):
        d = cls.derivative(y, *xs, **kw)
        if len(xs) == 1:
            return dxs[0] * d
        acc = None
        for dx, di in zip(dxs, d, strict=True):
            if dx is not None:
                t = dx * di
                acc = t if acc is None else acc + t
        return acc


class Linear(Function):
    """y = L(x₁, ..., xₙ) with L linear: the JVP is L applied to the tangents.

    Subclasses write the VJP as the transpose op (broadcast_to ↔ sum_to, unfold ↔ fold, ...).
    Structural ops that may return a view of their input (reshape, transpose, slicing, ...)
    set ``views = True``: the output then shares the input's version counter.
    """

    @classmethod
    def jvp(cls, dxs, y, *xs, **kw):
        if len(dxs) == 1:
            return cls.apply(dxs[0], **kw)
        from .engine import zeros_like

        dxs = [zeros_like(x) if dx is None else dx for dx, x in zip(dxs, xs, strict=True)]
        return cls.apply(*dxs, **kw)


class Bilinear(Function):
    """z = f(x, y) linear in each argument: ż = f(ẋ, y) + f(x, ẏ). Subclasses write the VJP."""

    @classmethod
    def jvp(cls, dxs, z, x, y, **kw):
        dx, dy = dxs
        out = None
        if dx is not None:
            out = cls.apply(dx, y, **kw)
        if dy is not None:
            t = cls.apply(x, dy, **kw)
            out = t if out is None else out + t
        return out
