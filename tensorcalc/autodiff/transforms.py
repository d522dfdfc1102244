"""Transforms of Python functions of Tensors: grad, value_and_grad, vjp, jvp, jacobian, hessian,
hvp.

Each takes ``f`` and returns a new function (or evaluates at given primals, for vjp/jvp/hvp).
Inputs may be arrays, numbers or Tensors. When an input is a Tensor that itself requires grad
(an outer transform is tracing it), the derivative is computed with ``create_graph=True`` so the
outer transform can differentiate it again — that is how ``hessian = jacobian(grad(f))`` works.
"""

from __future__ import annotations

import math

import numpy as np

from . import function as F
from . import mode
from .engine import gradients
from .forward import push_tangents


def _T():
    return F._Tensor


def _prepare(args, argnums):
    """Wrap the differentiated arguments as Tensors requiring grad. Returns (args, nested)."""
    T = _T()
    args = list(args)
    nested = False
    for i in argnums:
        a = args[i]
        if isinstance(a, T) and a.requires_grad:
            nested = True  # an outer transform traces this input: keep the graph
            continue
        data = a.data if isinstance(a, T) else a
        t = T(data)
        if t.dtype.kind not in "fc":
            t = T(np.asarray(data, dtype=np.float64))
        t.requires_grad = True
        args[i] = t
    return args, nested


def _argnums(argnums):
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def value_and_grad(f, argnums=0, has_aux=False):
    """Return g(*args) -> (f(*args), ∇f) for scalar-valued f; ∇f is a tuple when argnums is.

    With ``has_aux`` f returns (value, aux) and g returns ((value, aux), ∇f).
    """
    nums = _argnums(argnums)

    def g(*args):
        with mode.enable_grad():
            targs, nested = _prepare(args, nums)
            out = f(*targs)
            val, aux = (out if has_aux else (out, None))
            T = _T()
            if not isinstance(val, T) or val.size != 1:
                shape = getattr(val, "shape", type(val).__name__)
                raise ValueError(f"grad: f must return a scalar Tensor, got {shape}")
            wrt = [targs[i] for i in nums]
            if not val.requires_grad:
                grads = [T(np.zeros_like(w.data)) for w in wrt]
            else:
                grads = gradients(val, wrt, create_graph=nested)
                grads = [T(np.zeros_like(w.data)) if gr is None else gr
                         for gr, w in zip(grads, wrt, strict=True)]
        res = grads[0] if isinstance(argnums, int) else tuple(grads)
        if not nested:
            val = val.detach()
        return ((val, aux) if has_aux else val), res

    return g


def grad(f, argnums=0, has_aux=False):
    """Return ∇f: a function computing the gradient of scalar-valued f w.r.t. ``argnums``."""
    vg = value_and_grad(f, argnums, has_aux)

    def g(*args):
        (val, res) = vg(*args)
        if has_aux:
            return res, val[1]
        return res

    return g


def vjp(f, *primals):
    """Return (f(*primals), pullback) where pullback(ȳ) = (x̄₁, x̄₂, ...) = ȳᵀ J."""
    with mode.enable_grad():
        targs, nested = _prepare(primals, range(len(primals)))
        out = f(*targs)

    def pullback(g):
        with mode.enable_grad():
            res = gradients(out, targs, grad_outputs=g, retain_graph=True, create_graph=nested)
        T = _T()
        return tuple(T(np.zeros_like(t.data)) if r is None else r
                     for r, t in zip(res, targs, strict=True))

    return (out if nested else out.detach()), pullback


def jvp(f, primals, tangents, create_graph=False):
    """Return (f(*primals), J·tangents) by forward mode (one trace, tangents pushed forward)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    T = _T()
    with mode.enable_grad():
        targs, nested = _prepare(primals, range(len(primals)))
        out = f(*targs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    for p, t in zip(targs, tangents, strict=True):
        tshape = tuple(np.shape(t.data if isinstance(t, T) else t))
        if tshape != tuple(p.shape):
            raise ValueError(f"jvp: tangent of shape {tshape} for primal of shape {p.shape}")
    tans = [t if isinstance(t, T) and (nested or create_graph) else
            np.asarray(t.data if isinstance(t, T) else t, dtype=p.dtype)
            for t, p in zip(tangents, targs, strict=True)]
    dys = push_tangents(targs, tans, [o for o in outs if isinstance(o, T)],
                        create_graph=nested or create_graph)
    res = []
    for o, d in zip(outs, dys, strict=True):
        if d is None:
            d = np.zeros_like(o.data)
        res.append(d if isinstance(d, T) else T(d))
    outs = tuple(o if nested else o.detach() for o in outs)
    if isinstance(out, (tuple, list)):
        return outs, tuple(res)
    return outs[0], res[0]


def jacobian(f, argnums=0, mode_="reverse"):
    """Return J(f): shape out.shape + in.shape. ``mode_`` 'reverse' (one VJP per output
    element) or 'forward' (one JVP per input element)."""
    nums = _argnums(argnums)
    if mode_ not in ("reverse", "forward"):
        raise ValueError(f"jacobian: mode must be 'reverse' or 'forward', got {mode_!r}")

    def J(*args):
        T = _T()
        with mode.enable_grad():
            targs, nested = _prepare(args, nums)
            out = f(*targs)
        if not isinstance(out, T):
            raise TypeError("jacobian: f must return a Tensor")
        results = []
        for i in nums:
            x = targs[i]
            if mode_ == "reverse":
                rows = []
                for k in range(out.size):
                    e = np.zeros(out.size, dtype=out.dtype)
                    e[k] = 1
                    with mode.enable_grad():
                        g = gradients(out, x, grad_outputs=e.reshape(out.shape),
                                      retain_graph=True, create_graph=nested) \
                            if out.requires_grad else None
                    rows.append(T(np.zeros(x.shape, dtype=x.dtype)) if g is None else g)
                from ..ops.shape import reshape, stack

                jac = reshape(stack(rows, 0), out.shape + x.shape) if rows else \
                    T(np.zeros(out.shape + x.shape, dtype=x.dtype))
            else:
                cols = []
                n = math.prod(x.shape)
                for k in range(n):
                    e = np.zeros(n, dtype=x.dtype)
                    e[k] = 1
                    tans = [np.zeros(targs[j].shape, dtype=targs[j].dtype) for j in
                            range(len(targs)) if isinstance(targs[j], T) and
                            targs[j].requires_grad]
                    prim = [targs[j] for j in range(len(targs))
                            if isinstance(targs[j], T) and targs[j].requires_grad]
                    tans[prim.index(x)] = e.reshape(x.shape)
                    (d,) = push_tangents(prim, tans, [out], create_graph=nested)
                    cols.append(T(np.zeros(out.shape, dtype=out.dtype)) if d is None else
                                (d if isinstance(d, T) else T(d)))
                from ..ops.shape import reshape, stack, transpose

                st = stack(cols, 0)  # (n, *out.shape)
                st = reshape(st, (n, out.size))
                jac = reshape(transpose(st), out.shape + x.shape)
            results.append(jac if nested else jac.detach())
        return results[0] if isinstance(argnums, int) else tuple(results)

    return J


def hessian(f, argnums=0):
    """Return H(f) = J(∇f): forward-over-reverse (forward-mode Jacobian of the gradient)."""
    if not isinstance(argnums, int):
        raise ValueError("hessian: pass a single argnum")
    return jacobian(grad(f, argnums), argnums, mode_="forward")


def hvp(f, primals, tangents):
    """Hessian-vector product H(f)(x)·v by forward-over-reverse: the JVP of ∇f.

    Costs one gradient plus one forward push — about two gradient evaluations, and H is never
    formed. Returns (∇f(x), H v) for a single primal or tuples for several.
    """
    primals, tangents = tuple(primals), tuple(tangents)
    nums = tuple(range(len(primals)))
    g = grad(f, nums)

    def gf(*xs):
        return tuple(g(*xs))

    grads, hv = jvp(gf, primals, tangents)
    if len(primals) == 1:
        return grads[0], hv[0]
    return grads, hv
