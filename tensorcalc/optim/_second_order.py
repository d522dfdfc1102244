"""Shared machinery of the second-order optimisers (Newton, Newton-CG, Gauss-Newton, L-BFGS).

They all think of the parameters as one vector θ ∈ ℝⁿ (see :mod:`.flat`) and of the loss as a
function L(θ) that a *closure* re-evaluates. Curvature is reached through products, never by
differentiating by hand:

* gradient with its graph:   g(θ) = ∇L, recorded (``create_graph=True``) so it can be
  differentiated again;
* Hessian-vector product:    H v = ∇⟨g(θ), v⟩ — one more reverse sweep over g's graph
  (Pearlmutter 1994, reverse-over-reverse); n of them give the dense Hessian column by column;
* for a residual r(θ) ∈ ℝᵐ:  Jᵀu = ∇⟨r, u⟩ (one VJP), and J v by the "double VJP" trick:
  Jᵀu is linear in u, so J v = ∇_u ⟨Jᵀu, v⟩ — a VJP of the VJP, with u a dummy variable.

Everything here returns plain arrays of the parameters' dtype.
"""

from __future__ import annotations

import copy
import math

from ..autodiff import mode as _mode
from ..autodiff.engine import gradients
from ..backend import array_module
from ..tensor import Tensor

__all__ = ["FlatProblem", "flat_params", "FlatState"]


def flat_params(params, who):
    ps = list(params)
    if not ps:
        raise ValueError(f"{who}: got an empty parameter list")
    for i, p in enumerate(ps):
        if isinstance(p, dict):
            raise ValueError(f"{who}: works on one vector of parameters; parameter groups "
                             "(dicts) are not supported")
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: parameters must be Tensors, got {type(p).__name__} at "
                            f"position {i}")
    return ps


class FlatState:
    """Mixin for optimisers whose state belongs to the whole vector θ (kept under the first
    parameter): flat arrays of length n (directions, previous gradients, L-BFGS pairs) do not
    have the first parameter's shape, so loading checks them against n instead."""

    def load_state_dict(self, state_dict: dict) -> None:
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError(f"{who}: expected a dict with 'state' and 'param_groups'")
        n = self.problem.numel
        xp, dtype = self.problem.xp, self.problem.dtype
        st = dict(state_dict.get("state", {}))
        flat = st.pop(0, st.pop("0", None))
        if st:
            raise ValueError(f"{who}: state for parameters {sorted(st)}; this optimiser keeps "
                             "its state under parameter 0 only")

        def restore(v, key):
            if hasattr(v, "shape") and hasattr(v, "dtype"):
                if tuple(v.shape) != (n,):
                    raise ValueError(f"{who}: state {key!r} has shape {tuple(v.shape)}, the "
                                     f"parameters make one vector of length {n}")
                return xp.array(v, dtype=dtype, copy=True)
            if isinstance(v, list):
                return [restore(a, key) for a in v]
            return copy.deepcopy(v)

        restored = None if flat is None else {k: restore(v, k) for k, v in flat.items()}
        saved = [{k: v for k, v in g.items() if k != "params"}
                 for g in state_dict["param_groups"]]
        if len(saved) != 1 or len(state_dict["param_groups"][0]["params"]) != len(
                self.problem.params):
            raise ValueError(f"{who}: the state is for a different set of parameters")
        group = dict(self.param_groups[0])
        group.update(copy.deepcopy(saved[0]))
        self._validate(group)
        self.param_groups = [group]
        self.state = {} if restored is None else {self.problem.params[0]: restored}


class FlatProblem:
    """θ ↦ L(θ) through a closure, with gradient, HVP, dense Hessian and J/Jᵀ products."""

    def __init__(self, params):
        self.params = list(params)
        self.sizes = [p.size for p in self.params]
        self.numel = sum(self.sizes)
        self.xp = array_module(self.params[0].data)
        self.dtype = self.params[0].dtype

    # ---------------------------------------------------------------- vectors <-> parameters
    def get(self):
        return self.xp.concatenate([p.data.reshape(-1) for p in self.params])

    def set(self, theta) -> None:
        k = 0
        for p, n in zip(self.params, self.sizes, strict=True):
            p.data[...] = theta[k:k + n].reshape(p.shape)
            p._bump()
            k += n

    def split(self, v) -> list:
        out, k = [], 0
        for p, n in zip(self.params, self.sizes, strict=True):
            out.append(v[k:k + n].reshape(p.shape))
            k += n
        return out

    def cat(self, gs) -> object:
        xp = self.xp
        parts = []
        for p, g in zip(self.params, gs, strict=True):
            if g is None:
                parts.append(xp.zeros(p.size, dtype=self.dtype))
            else:
                d = g.data if isinstance(g, Tensor) else g
                parts.append(d.reshape(-1).astype(self.dtype, copy=False))
        return xp.concatenate(parts)

    # ---------------------------------------------------------------- derivatives
    def loss_with_grad_graph(self, closure, who):
        """Evaluate the closure; return (L as float, g as a list of recorded Tensors)."""
        with _mode.enable_grad():
            loss = closure()
            if not isinstance(loss, Tensor) or loss.data.size != 1:
                raise TypeError(f"{who}: the closure must return the scalar loss as a Tensor "
                                f"(with its graph), got {type(loss).__name__}")
            if loss._node is None:
                raise RuntimeError(f"{who}: the loss has no graph: does the closure call "
                                   "backward() (it must not here) or run under no_grad?")
            gs = gradients(loss, self.params, create_graph=True)
        gs = [g if g is not None else Tensor._wrap(self.xp.zeros_like(p.data), None, 0)
              for p, g in zip(self.params, gs, strict=True)]
        return float(loss.data), gs

    def hvp(self, gs, v):
        """H v from the recorded gradient ``gs`` (graph retained for more products)."""
        live = [(i, g) for i, g in enumerate(gs) if g._node is not None]
        if not live:
            return self.xp.zeros(self.numel, dtype=self.dtype)
        vs = self.split(v)
        with _mode.enable_grad():
            hv = gradients([g for _, g in live], self.params,
                           grad_outputs=[vs[i] for i, _ in live], retain_graph=True)
        return self.cat(hv)

    def hessian(self, gs):
        """The dense n×n Hessian, column by column (n HVPs), symmetrised."""
        xp, n = self.xp, self.numel
        h = xp.empty((n, n), dtype=self.dtype)
        e = xp.zeros(n, dtype=self.dtype)
        for j in range(n):
            e[j] = 1
            h[:, j] = self.hvp(gs, e)
            e[j] = 0
        return (h + h.T) * 0.5

    def loss_and_grad(self, closure, who):
        """(L, g) as float and flat array, no graph kept."""
        with _mode.enable_grad():
            loss = closure()
            if not isinstance(loss, Tensor) or loss.data.size != 1:
                raise TypeError(f"{who}: the closure must return the scalar loss as a Tensor, "
                                f"got {type(loss).__name__}")
            gs = gradients(loss, self.params) if loss._node is not None else [None] * len(
                self.params)
        return float(loss.data), self.cat(gs)

    # ---------------------------------------------------------------- residuals (least squares)
    def residual_products(self, residual_fn, who):
        """Evaluate r(θ); return (r array, Jv(v), Jtu(u)) — J is never formed."""
        with _mode.enable_grad():
            r = residual_fn()
            if not isinstance(r, Tensor):
                raise TypeError(f"{who}: the closure must return the residual vector r(θ) as a "
                                f"Tensor, got {type(r).__name__}")
            if r._node is None:
                raise RuntimeError(f"{who}: the residual has no graph (under no_grad?)")
            u = Tensor(self.xp.zeros(r.shape, dtype=r.dtype))
            u.requires_grad = True
            jtu_graph = gradients(r, self.params, grad_outputs=u, create_graph=True)
        live = [(i, g) for i, g in enumerate(jtu_graph) if g is not None and g._node is not None]
        rdata = r.data.reshape(-1).copy()
        xp = self.xp

        def jtu(uvec):
            with _mode.enable_grad():
                gs = gradients(r, self.params, grad_outputs=uvec.reshape(r.shape),
                               retain_graph=True)
            return self.cat(gs)

        def jv(v):
            if not live:
                return xp.zeros(rdata.shape, dtype=rdata.dtype)
            vs = self.split(v)
            with _mode.enable_grad():
                out = gradients([g for _, g in live], u, grad_outputs=[vs[i] for i, _ in live],
                                retain_graph=True)
            if out is None:
                return xp.zeros(rdata.shape, dtype=rdata.dtype)
            return out.data.reshape(-1).astype(self.dtype, copy=False)

        return rdata, jv, jtu


def conjugate_gradient(apply_a, b, max_iter, tol, xp):
    """Solve A x = b for symmetric positive (semi)definite A given as a product, from x = 0.

    Stops when ‖r‖ ≤ tol·‖b‖, after ``max_iter`` products, or on negative curvature pᵀAp ≤ 0
    (then returns the iterate so far, or the steepest-descent direction b at the first step,
    as truncated Newton does). Returns (x, iterations, reason).
    """
    x = xp.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    bnorm = math.sqrt(rr)
    if bnorm == 0:
        return x, 0, "zero right-hand side"
    for k in range(max_iter):
        ap = apply_a(p)
        pap = float(p @ ap)
        if pap <= 0:
            return (b.copy() if k == 0 else x), k, "negative curvature"
        alpha = rr / pap
        x += alpha * p
        r -= alpha * ap
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= tol * bnorm:
            return x, k + 1, "converged"
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, max_iter, "max_iter"
