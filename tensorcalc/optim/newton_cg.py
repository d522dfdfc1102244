"""Hessian-free Newton: conjugate gradient on Hessian-vector products (Martens 2010)."""

from __future__ import annotations

import math

from ..autodiff import mode as _mode
from ._second_order import FlatProblem, FlatState, flat_params
from .base import Optimizer

__all__ = ["NewtonCG"]


class NewtonCG(FlatState, Optimizer):
    """Truncated Newton / Hessian-free optimisation (Martens 2010, "Deep learning via
    Hessian-free optimization"), on all parameters as one vector θ.

    Each step minimises the damped quadratic model of L around θ,

        q(d) = L(θ) + gᵀd + ½ dᵀ(H + λI)d,      g = ∇L(θ),  H d = ∇⟨g, d⟩ (one HVP, H never formed)

    by conjugate gradient from d₀ = β·d_prev (β = ``warm_start``; 0 starts from zero), and
    truncates CG on *relative progress* of φ(d) = gᵀd + ½dᵀ(H + λI)d: stop at iteration i when

        i > k  and  φ(dᵢ) < 0  and  (φ(dᵢ) − φ(dᵢ₋ₖ)) / φ(dᵢ) < k ε
        k = max(10, ⌈0.1 i⌉),  ε = ``cg_tol``

    or when ‖r‖ ≤ 1e-10‖g‖, after ``cg_max_iter`` products, or at negative curvature
    pᵀ(H + λI)p ≤ 0 (keep the iterate so far; at the first iteration, step along −g).
    Then θ ← θ + η d (η = lr), and the damping adapts by the reduction ratio (Levenberg-Marquardt
    heuristic, Martens §4.1):

        ρ = (L(θ + η d) − L(θ)) / (q(η d) − L(θ))
        ρ < ¼ → λ ← λ · 3/2;     ρ > ¾ → λ ← λ · 2/3;     a step that raises L is undone.

    ``step(closure)``: the closure returns the scalar loss Tensor *with its graph* and must NOT
    call ``backward()``. Returns the loss before the step. State (``self.state[first param]``):
    ``damping`` (the current λ), ``cg_iters``, ``cg_reason``, ``rho``, ``grad_norm``.
    """

    def __init__(self, params, lr: float = 1.0, damping: float = 1e-3, cg_max_iter: int = 250,
                 cg_tol: float = 5e-4, adapt_damping: bool = True, warm_start: float = 0.0,
                 min_damping: float = 0.0):
        params = flat_params(params, "NewtonCG")
        super().__init__(params, dict(lr=lr, damping=damping, cg_max_iter=cg_max_iter,
                                      cg_tol=cg_tol, adapt_damping=adapt_damping,
                                      warm_start=warm_start, min_damping=min_damping))
        if cg_max_iter < 1:
            raise ValueError(f"NewtonCG: cg_max_iter must be >= 1, got {cg_max_iter!r}")
        self.problem = FlatProblem(params)

    def _validate(self, group):
        super()._validate(group)
        for k in ("damping", "cg_tol", "min_damping"):
            if group.get(k, 0) < 0:
                raise ValueError(f"NewtonCG: {k} must be >= 0, got {group[k]!r}")

    def _cg(self, av, g, x0, max_iter, eps):
        """Martens' CG on A d = −g with the relative-progress stopping rule."""
        b = -g
        x = x0.copy()
        r = b - av(x) if float(x @ x) > 0 else b.copy()
        p = r.copy()
        rr = float(r @ r)
        gnorm = math.sqrt(float(g @ g))
        phis = []
        ax = b - r  # A x
        for i in range(max_iter):
            if math.sqrt(rr) <= 1e-10 * gnorm:
                return x, i, "residual"
            ap = av(p)
            pap = float(p @ ap)
            if pap <= 0:
                return (x if i > 0 else b.copy()), i, "negative curvature"
            alpha = rr / pap
            x += alpha * p
            ax += alpha * ap
            r -= alpha * ap
            phi = float(0.5 * (x @ ax) - (b @ x))  # gᵀx + ½xᵀAx
            phis.append(phi)
            k = max(10, math.ceil(0.1 * (i + 1)))
            if i + 1 > k and phi < 0 and (phi - phis[-1 - k]) / phi < k * eps:
                return x, i + 1, "relative progress"
            rr_new = float(r @ r)
            p = r + (rr_new / rr) * p
            rr = rr_new
        return x, max_iter, "max_iter"

    def step(self, closure=None):
        if closure is None:
            raise ValueError("NewtonCG: step needs a closure returning the loss (with its graph)")
        group = self.param_groups[0]
        pb = self.problem
        st = self.state.setdefault(pb.params[0], {})
        lam = st.get("damping", group["damping"])
        loss, gs = pb.loss_with_grad_graph(closure, "NewtonCG")
        g = pb.cat(gs)

        def hv(v):
            return pb.hvp(gs, v)

        def av(v):
            return hv(v) + lam * v

        prev = st.get("_prev_direction")
        beta = group["warm_start"]
        x0 = beta * prev if (prev is not None and beta > 0) else pb.xp.zeros_like(g)
        d, iters, reason = self._cg(av, g, x0, group["cg_max_iter"], group["cg_tol"])
        eta = group["lr"]
        step = eta * d
        # q(ηd) − L(θ) for the damped model, with the undamped H (Martens uses the same)
        pred = float(g @ step + 0.5 * (step @ hv(step)))
        theta = pb.get()
        pb.set(theta + step)
        with _mode.no_grad():
            new = float(closure().data)
        rho = (new - loss) / pred if pred < 0 else -math.inf
        if not (new <= loss):  # undo a step that does not descend (NaN included)
            pb.set(theta)
        if group["adapt_damping"]:
            if rho < 0.25:
                lam = lam * 1.5 if lam > 0 else 1e-4
            elif rho > 0.75:
                lam = max(lam * (2.0 / 3.0), group["min_damping"])
        st.update(damping=lam, cg_iters=iters, cg_reason=reason, rho=rho,
                  grad_norm=math.sqrt(float(g @ g)), n_iter=st.get("n_iter", 0) + 1,
                  _prev_direction=d)
        return loss
