"""User-defined derivatives: ``custom_vjp`` (JAX's name) and gradient checkpointing.

``custom_vjp`` turns a Python function into a differentiable operation whose reverse rule the
user writes — for an adjoint method (the neural-ODE adjoint solves an ODE backwards instead of
differentiating the solver), a straight-through estimator, a numerically safer rule, or
recomputation (:func:`checkpoint`)::

    @tc.custom_vjp
    def clip_gradient(x):                # forward: the identity
        return x

    def fwd(x):                          # -> (output, residuals saved for backward)
        return x, None

    def bwd(res, g):                     # -> one cotangent per positional input
        return (tc.clip(g, -1.0, 1.0),)

    clip_gradient.defvjp(fwd, bwd)

Positional arguments are the differentiable operands (arrays or Tensors); keyword arguments are
passed through as constants. The output is a Tensor or a tuple of Tensors. ``bwd`` receives the
residuals and the output cotangent(s) ``g`` (a tuple for several outputs) and returns one
cotangent per positional input (``None`` for zero).

The derivative rules of the resulting node, in the notation of the primitives:

    Forward:  y = f(x₁, …, xₙ)                        (run by ``fwd`` without recording)
    VJP:      (x̄₁, …, x̄ₙ) = bwd(residuals, ȳ)
    JVP:      ẏ = ∂/∂u ⟨bwd(residuals, u), ẋ⟩        (the VJP transposed: bwd is linear in u)

so forward mode, ``hvp`` and Hessians work through a custom node whenever ``bwd`` is written with
tensorcalc's own operations (it is then differentiable in ``u`` and in the residuals); with
``create_graph`` the rule is recorded like any other, giving second derivatives. The generic
numerical checks (``tc.gradcheck``, ``tc.gradgradcheck``) apply unchanged.
"""

from __future__ import annotations

import functools

from ..backend import xp_of
from ..tensor import Tensor
from . import function as F
from . import mode
from .engine import gradients

__all__ = ["custom_vjp", "checkpoint", "CustomFunction"]


class _Spec:
    """One custom function: its forward, its fwd/bwd pair, and the per-call residuals."""

    __slots__ = ("name", "fun", "fwd", "bwd", "nout")

    def __init__(self, name, fun):
        self.name = name
        self.fun = fun
        self.fwd = None
        self.bwd = None
        self.nout = None


class _Residuals:
    """A per-call slot for what ``fwd`` saves (kept in the node's keyword arguments)."""

    __slots__ = ("value", "multi")

    def __init__(self):
        self.value = None
        self.multi = False


def _as_tensor(a):
    return a if isinstance(a, Tensor) else Tensor._wrap(a, None, 0)


def _residuals(spec, res, xs, kwargs):
    """The residuals of the forward pass; when the rule is being recorded (higher order: the
    inputs are traced Tensors), ``fwd`` is run again on the traced inputs so that residuals
    depending on them (y = eˣ saved by an exp, say) carry their own derivatives."""
    if spec.fwd is None or not any(isinstance(x, Tensor) and x.requires_grad for x in xs):
        return res.value
    with mode.enable_grad():
        return spec.fwd(*xs, **kwargs)[1]


class CustomFunction(F.Function):
    """The node of every ``custom_vjp`` call (see the module docstring for its rules)."""

    name = "custom_vjp"
    views = True  # fwd may return an input itself (the identity of a straight-through rule)

    @staticmethod
    def forward(xp, *xs, spec, res, kwargs):
        with mode.no_grad():
            ins = [Tensor._wrap(x, None, 0)
                   if not isinstance(x, Tensor) and hasattr(x, "shape") else x for x in xs]
            if spec.fwd is None:
                out, residuals = spec.fun(*ins, **kwargs), None
            else:
                got = spec.fwd(*ins, **kwargs)
                if not (isinstance(got, tuple) and len(got) == 2):
                    raise TypeError(f"custom_vjp {spec.name}: fwd must return "
                                    "(output, residuals)")
                out, residuals = got
        res.value = residuals
        if isinstance(out, (tuple, list)):
            res.multi = True
            return tuple(o.data if isinstance(o, Tensor) else xp.asarray(o) for o in out)
        return out.data if isinstance(out, Tensor) else xp.asarray(out)

    @staticmethod
    def vjp(g, y, *xs, needs, spec, res, kwargs):
        if spec.bwd is None:
            raise RuntimeError(f"custom_vjp {spec.name}: no rule; call "
                               f"{spec.name}.defvjp(fwd, bwd) first")
        ts = any(isinstance(x, Tensor) for x in xs) or isinstance(g, Tensor)
        gxs = spec.bwd(_residuals(spec, res, xs, kwargs), g)
        if not isinstance(gxs, (tuple, list)):
            gxs = (gxs,)
        if len(gxs) != len(xs):
            raise ValueError(f"custom_vjp {spec.name}: bwd returned {len(gxs)} cotangents for "
                             f"{len(xs)} positional inputs")
        ts = any(isinstance(x, Tensor) for x in xs) or isinstance(g, Tensor)
        out = []
        for gx, x, n in zip(gxs, xs, needs, strict=True):
            if not n or gx is None:
                out.append(None)
                continue
            if isinstance(gx, Tensor) and not ts:
                gx = gx.data
            elif not isinstance(gx, Tensor):
                gx = xp_of((gx,)).asarray(gx, dtype=x.dtype)
            out.append(gx)
        return tuple(out)

    @classmethod
    def jvp(cls, dxs, y, *xs, spec, res, kwargs):
        # ẏ = ∂/∂u ⟨bwd(res, u), ẋ⟩: bwd is linear in u, so this gradient is J ẋ.
        ys = y if type(y) is tuple else (y,)
        with mode.enable_grad():
            us = []
            for yi in ys:
                u = Tensor._wrap(xp_of((yi.data if isinstance(yi, Tensor) else yi,)).zeros_like(
                    yi.data if isinstance(yi, Tensor) else yi), None, 0)
                u.requires_grad = True
                us.append(u)
            gxs = spec.bwd(_residuals(spec, res, xs, kwargs),
                           tuple(us) if type(y) is tuple else us[0])
            if not isinstance(gxs, (tuple, list)):
                gxs = (gxs,)
            s = None
            for gx, dx in zip(gxs, dxs, strict=True):
                if gx is None or dx is None:
                    continue
                t = (_as_tensor(gx) * dx).sum()
                s = t if s is None else s + t
            if s is None or not s.requires_grad:
                return None
            create = any(isinstance(d, Tensor) and d.requires_grad for d in dxs if d is not None)
            dys = gradients(s, us, create_graph=create, allow_unused=True)
        dys = [d if d is not None else _as_tensor(xp_of((u.data,)).zeros_like(u.data))
               for d, u in zip(dys, us, strict=True)]
        if not any(isinstance(d, Tensor) and d.requires_grad for d in dys):
            dys = [d.data for d in dys]
        return tuple(dys) if type(y) is tuple else dys[0]


class _CustomVJP:
    """A function with a user-written VJP (see the module docstring)."""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.spec = _Spec(getattr(fun, "__name__", "custom"), fun)

    def defvjp(self, fwd, bwd):
        """Set the rule: ``fwd(*args) -> (out, residuals)``, ``bwd(residuals, ȳ) -> (x̄, ...)``."""
        self.spec.fwd = fwd
        self.spec.bwd = bwd
        return self

    def __call__(self, *args, **kwargs):
        if not any(isinstance(a, Tensor) for a in args):
            args = (_as_tensor(args[0]),) + args[1:] if args else args
        return CustomFunction.apply(*args, spec=self.spec, res=_Residuals(), kwargs=kwargs)


def custom_vjp(fun):
    """Decorator: ``fun`` becomes differentiable by the rule given with ``.defvjp(fwd, bwd)``."""
    return _CustomVJP(fun)


def checkpoint(fn, *args, params=None):
    """Gradient checkpointing: y = fn(*args) without keeping its intermediate values; backward
    recomputes fn's forward (with recording on) and differentiates that — memory of one
    segment's activations for about one extra forward.

    ``fn`` may close over parameters: a :class:`~tensorcalc.nn.Module` contributes its own
    ``parameters()``; for a plain function pass them as ``params=[...]``. They receive their
    gradients through the checkpointed node like any other input.

        y = tc.checkpoint(block, h)            # block: a Module
    """
    if params is None:
        params = list(fn.parameters()) if hasattr(fn, "parameters") else []
    params = [p for p in params if isinstance(p, Tensor) and p.requires_grad]
    n = len(args)

    def fwd(*xs):
        return fn(*xs[:n]), xs[:n]

    def bwd(saved, g):
        gs = g if isinstance(g, tuple) else (g,)
        create = any(isinstance(x, Tensor) and x.requires_grad for x in (*gs, *saved))
        ins = []
        for a in saved:
            if create and isinstance(a, Tensor) and a.requires_grad:
                t = a  # higher order: differentiate the recomputation through the traced input
            else:
                t = Tensor(a.data if isinstance(a, Tensor) else a)
                if t.dtype.kind in "fc":
                    t.requires_grad = True
            ins.append(t)
        with mode.enable_grad():
            out = fn(*ins)
            outs = out if isinstance(out, tuple) else (out,)
            wrt = [t for t in ins if t.requires_grad] + params
            grads = gradients(list(outs), wrt, grad_outputs=list(gs), create_graph=create,
                              allow_unused=True)
        it = iter(grads)
        gins = [next(it) if t.requires_grad else None for t in ins]
        gparams = list(it)
        return tuple(gins) + tuple(gparams)

    spec = _Spec(f"checkpoint({getattr(fn, '__name__', type(fn).__name__)})", None)
    spec.fwd = fwd
    spec.bwd = bwd
    args = (_as_tensor(args[0]),) + args[1:] if args else args
    return CustomFunction.apply(*args, *params, spec=spec, res=_Residuals(), kwargs={})
