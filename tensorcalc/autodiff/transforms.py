"""Transforms of Python functions of Tensors: grad, value_and_grad, vjp, jvp, jacobian, hessian,
hvp — over pytrees, and nestable without perturbation confusion.

Each takes ``f`` and returns a new function (or evaluates at given primals, for vjp/jvp/hvp).
Inputs may be arrays, numbers, Tensors, or pytrees of them (dicts, lists, tuples: see
:mod:`~tensorcalc.autodiff.pytree`); results have the inputs' structure.

**One tape, distinct variables.** tensorcalc records every op on one tape. A transform makes a
*fresh* variable for each input it differentiates: a new leaf for an array, and for a Tensor that
is already being traced (an outer transform's variable, or any tensor that requires grad) an
*alias* — a new node y = x on the tape. The inner transform differentiates with respect to y
alone: the reverse sweep stops at y (the engine prunes the sweep to the paths that reach the
requested variables) and forward mode seeds tangents at y only. So in

    f = lambda x: grad(lambda y: x * y)(x)          # ∂(x·y)/∂y = x, so f(x) = x and f′(x) = 1

the inner gradient is x (not 2x, the classic "perturbation confusion" that JAX avoids with trace
levels), and the outer transform still sees every path from its own variable — through the
closure and through the alias — so f′(3) = 1.

**When the result stays differentiable.** If the traced function reaches any tensor that
requires grad other than the transform's fresh leaves (an outer transform's variable, a model
parameter, an alias), the derivative is computed with ``create_graph=True`` and returned
attached to the tape, so an outer transform — or ``loss.backward()`` in a training step, as in
WGAN-GP's gradient penalty — can differentiate it again. Otherwise results are detached.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import xp_of
from ..tensor import Tensor
from . import function as F
from . import mode
from .engine import gradients
from .forward import push_tangents
from .graph import walk
from .pytree import tree_flatten, tree_unflatten

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp"]


def _argnums(argnums):
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def _fresh(leaf):
    """A new variable for one input leaf: an alias node of a traced Tensor, else a new leaf."""
    if isinstance(leaf, Tensor):
        if leaf._rg:
            with mode.enable_grad():
                return F.REGISTRY["cast"].apply(leaf, dtype=leaf.dtype), True
        data = leaf.data
    else:
        data = leaf
    t = Tensor(data)
    if t.dtype.kind not in "fc":
        t = Tensor(xp_of((t.data,)).asarray(t.data, dtype=np.float64))
    t.requires_grad = True
    return t, False


class _Trace:
    """The fresh variables of one transform call, and whether results must stay on the tape."""

    def __init__(self, args, argnums):
        args = list(args)
        self.start = next(F._seq)  # every node depending on the fresh variables comes later
        self.trees = []
        self.vars = []      # flat list of the fresh variables, argnum by argnum
        self.counts = []
        self.aliased = False
        if not args and argnums:
            raise TypeError("transform: the function was called with no arguments")
        for i in argnums:
            if not -len(args) <= i < len(args):
                raise ValueError(f"transform: argnum {i} but only {len(args)} arguments")
            leaves, tree = tree_flatten(args[i])
            if not leaves:
                raise ValueError(f"transform: argument {i} has no array leaves to differentiate")
            fresh = []
            for leaf in leaves:
                t, aliased = _fresh(leaf)
                self.aliased = self.aliased or aliased
                fresh.append(t)
            args[i] = tree_unflatten(tree, fresh)
            self.trees.append(tree)
            self.vars.extend(fresh)
            self.counts.append(len(fresh))
        self.args = args
        self.nested = self.aliased

    def observe(self, outputs):
        """Decide ``nested``: does the traced program reach a tensor that requires grad other
        than our fresh leaves (so the results must stay differentiable)?"""
        if self.nested:
            return
        fresh = {id(v) for v in self.vars}
        for node in walk(outputs, freed="skip"):
            for x in node.inputs:
                if isinstance(x, Tensor) and x._node is None and x._rg and id(x) not in fresh:
                    self.nested = True
                    return

    def split(self, flat):
        """Per-argnum pytrees from a flat list aligned with ``vars``."""
        out, k = [], 0
        for tree, n in zip(self.trees, self.counts, strict=True):
            out.append(tree_unflatten(tree, flat[k:k + n]))
            k += n
        return out

    def finish(self, x):
        """Leave a result on the tape when nested, else detach it."""
        if isinstance(x, Tensor) and not self.nested:
            return x.detach()
        return x


def _zeros_like(t):
    return Tensor._wrap(xp_of((t.data,)).zeros_like(t.data), None, 0)


def _tensor_leaves(out, who):
    leaves, tree = tree_flatten(out)
    for leaf in leaves:
        if not isinstance(leaf, Tensor):
            raise TypeError(f"{who}: f must return Tensors (or a pytree of them), got "
                            f"{type(leaf).__name__}")
    return leaves, tree


def value_and_grad(f, argnums=0, has_aux=False):
    """Return g(*args) -> (f(*args), ∇f) for scalar-valued f; ∇f has the structure of the
    differentiated argument (a tuple over ``argnums`` when it is a tuple).

    With ``has_aux`` f returns (value, aux) and g returns ((value, aux), ∇f).
    """
    nums = _argnums(argnums)

    def g(*args):
        with mode.enable_grad():
            tr = _Trace(args, nums)
            out = f(*tr.args)
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise ValueError("grad: with has_aux=True f must return (value, aux)")
                val, aux = out
            else:
                val, aux = out, None
            if not isinstance(val, Tensor) or val.size != 1:
                shape = getattr(val, "shape", type(val).__name__)
                raise ValueError(f"grad: f must return a scalar Tensor, got {shape}")
            tr.observe([val])
            if not val.requires_grad:
                flat = [_zeros_like(v) for v in tr.vars]
            else:
                flat = gradients(val, tr.vars, create_graph=tr.nested,
                                 retain_graph=tr.nested)
                flat = [_zeros_like(v) if gr is None else gr
                        for gr, v in zip(flat, tr.vars, strict=True)]
            flat = [tr.finish(gr) for gr in flat]
        per_arg = tr.split(flat)
        res = per_arg[0] if isinstance(argnums, int) else tuple(per_arg)
        val = tr.finish(val)
        return ((val, aux) if has_aux else val), res

    return g


def grad(f, argnums=0, has_aux=False):
    """Return ∇f: a function computing the gradient of scalar-valued f w.r.t. ``argnums``
    (pytrees in, the same pytrees out)."""
    vg = value_and_grad(f, argnums, has_aux)

    def g(*args):
        (val, res) = vg(*args)
        if has_aux:
            return res, val[1]
        return res

    return g


def vjp(f, *primals):
    """Return (f(*primals), pullback) where pullback(ȳ) = (x̄₁, x̄₂, ...) = ȳᵀ J.

    ``ȳ`` has the structure of f's output; each x̄ᵢ that of primal i.
    """
    nums = tuple(range(len(primals)))
    with mode.enable_grad():
        tr = _Trace(primals, nums)
        out = f(*tr.args)
    leaves, otree = _tensor_leaves(out, "vjp")
    tr.observe(leaves)

    def pullback(g):
        gl, gtree = tree_flatten(g)
        if gtree != otree:
            raise ValueError(f"vjp: cotangent structure {gtree!r} does not match the output's "
                             f"{otree!r}")
        live = [i for i, y in enumerate(leaves) if y.requires_grad]
        res = [None] * len(tr.vars)
        if live:
            with mode.enable_grad():
                res = gradients([leaves[i] for i in live], tr.vars,
                                grad_outputs=[gl[i] for i in live], retain_graph=True,
                                create_graph=tr.nested)
        flat = [tr.finish(_zeros_like(v) if r is None else r)
                for r, v in zip(res, tr.vars, strict=True)]
        return tuple(tr.split(flat))

    return tree_unflatten(otree, [tr.finish(y) for y in leaves]), pullback


def jvp(f, primals, tangents, create_graph=False):
    """Return (f(*primals), J·tangents) by forward mode (one trace, tangents pushed forward).

    ``tangents`` has the structure of ``primals``; the output tangent that of f's output.
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    nums = tuple(range(len(primals)))
    with mode.enable_grad():
        tr = _Trace(primals, nums)
        out = f(*tr.args)
    leaves, otree = _tensor_leaves(out, "jvp")
    tr.observe(leaves)
    keep = tr.nested or create_graph
    tans = []
    for i, t in enumerate(tangents):
        tl, ttree = tree_flatten(t)
        if ttree != tr.trees[i]:
            raise ValueError(f"jvp: tangent {i} has structure {ttree!r}, its primal "
                             f"{tr.trees[i]!r}")
        tans.extend(tl)
    fixed = []
    for p, t in zip(tr.vars, tans, strict=True):
        tshape = tuple(np.shape(t.data if isinstance(t, Tensor) else t))
        if tshape != tuple(p.shape):
            raise ValueError(f"jvp: tangent of shape {tshape} for primal of shape {p.shape}")
        if isinstance(t, Tensor) and keep:
            fixed.append(t)
        else:
            d = t.data if isinstance(t, Tensor) else t
            fixed.append(xp_of((p.data,)).asarray(d, dtype=p.dtype))
    dys = push_tangents(tr.vars, fixed, leaves, create_graph=keep, since=tr.start)
    res = []
    for o, d in zip(leaves, dys, strict=True):
        if d is None:
            d = _zeros_like(o)
        res.append(tr.finish(d if isinstance(d, Tensor) else Tensor._wrap(d, None, 0)))
    outs = [tr.finish(o) for o in leaves]
    return tree_unflatten(otree, outs), tree_unflatten(otree, res)


def jacobian(f, argnums=0, mode="reverse"):
    """Return J(f): for an output y and an input x, an array of shape y.shape + x.shape.

    ``mode`` 'reverse' (one VJP per output element) or 'forward' (one JVP per input element).
    Pytrees: the result has the output's structure, each output leaf holding the input's
    structure (a tuple over ``argnums`` when it is a tuple) — as JAX's jacobian.
    """
    nums = _argnums(argnums)
    if mode not in ("reverse", "forward"):
        raise ValueError(f"jacobian: mode must be 'reverse' or 'forward', got {mode!r}")
    _mode = mode

    def J(*args):
        from . import mode as gm

        with gm.enable_grad():
            tr = _Trace(args, nums)
            out = f(*tr.args)
        outs, otree = _tensor_leaves(out, "jacobian")
        tr.observe(outs)
        # blocks[o][v]: d out_o / d var_v as a Tensor of shape out_o.shape + var_v.shape
        if _mode == "reverse":
            blocks = [_reverse_rows(y, tr) for y in outs]
        else:
            blocks = _forward_cols(outs, tr)
        per_out = []
        for row in blocks:
            per_arg = tr.split([tr.finish(b) for b in row])
            per_out.append(per_arg[0] if isinstance(argnums, int) else tuple(per_arg))
        return tree_unflatten(otree, per_out)

    return J


def _reverse_rows(y, tr):
    """d y / d vars by one VJP per element of y."""
    from . import mode as gm

    rows = [[] for _ in tr.vars]
    xp = xp_of((y.data,))
    for k in range(y.size):
        e = xp.zeros(y.size, dtype=y.dtype)
        e[k] = 1
        if y.requires_grad:
            with gm.enable_grad():
                gs = gradients(y, tr.vars, grad_outputs=e.reshape(y.shape), retain_graph=True,
                               create_graph=tr.nested)
        else:
            gs = [None] * len(tr.vars)
        for r, g, v in zip(rows, gs, tr.vars, strict=True):
            r.append(_zeros_like(v) if g is None else g)
    ops = F.REGISTRY
    out = []
    for r, v in zip(rows, tr.vars, strict=True):
        if not r:
            out.append(Tensor._wrap(xp.zeros(y.shape + v.shape, dtype=v.dtype), None, 0))
            continue
        st = ops["stack"].apply(*r, axis=0)
        out.append(ops["reshape"].apply(st, shape=tuple(y.shape) + tuple(v.shape)))
    return out


def _forward_cols(outs, tr):
    """d outs / d vars by one JVP per element of each variable."""
    ops = F.REGISTRY
    blocks = [[None] * len(tr.vars) for _ in outs]
    xps = [xp_of((v.data,)) for v in tr.vars]
    for j, v in enumerate(tr.vars):
        n = math.prod(v.shape)
        cols = [[] for _ in outs]
        for k in range(n):
            tans = [xp.zeros(w.shape, dtype=w.dtype) for w, xp in zip(tr.vars, xps, strict=True)]
            e = xps[j].zeros(n, dtype=v.dtype)
            e[k] = 1
            tans[j] = e.reshape(v.shape)
            ds = push_tangents(tr.vars, tans, outs, create_graph=tr.nested, since=tr.start)
            for c, d, y in zip(cols, ds, outs, strict=True):
                c.append(_zeros_like(y) if d is None else (d if isinstance(d, Tensor) else
                                                           Tensor._wrap(d, None, 0)))
        for i, (c, y) in enumerate(zip(cols, outs, strict=True)):
            if not c:
                blocks[i][j] = Tensor._wrap(xps[j].zeros(y.shape + v.shape, dtype=y.dtype), None, 0)
                continue
            st = ops["reshape"].apply(ops["stack"].apply(*c, axis=0), shape=(n, y.size))
            blocks[i][j] = ops["reshape"].apply(ops["transpose"].apply(st, axes=(1, 0)),
                                                shape=tuple(y.shape) + tuple(v.shape))
    return blocks


def hessian(f, argnums=0):
    """Return H(f) = J(∇f): forward-over-reverse (forward-mode Jacobian of the gradient).

    For a pytree argument (or a tuple of argnums) the result is nested the same way twice, as
    JAX's hessian: H[a][b] = ∂²f / ∂a ∂b.
    """
    return jacobian(grad(f, argnums), argnums, mode="forward")


def hvp(f, primals, tangents):
    """Hessian-vector product H(f)(x)·v by forward-over-reverse: the JVP of ∇f.

    Costs one gradient plus one forward push — about two gradient evaluations, and H is never
    formed. Returns (∇f(x), H v) for a single primal or tuples for several; pytrees allowed.
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
