"""Newton's method, damped, with an optional backtracking line search."""

from __future__ import annotations

from ..autodiff import mode as _mode
from ._second_order import FlatProblem, FlatState, flat_params
from .base import Optimizer

__all__ = ["Newton", "NotPositiveDefiniteError"]


class NotPositiveDefiniteError(ValueError):
    """H + λI is not positive definite, so the Newton direction is not a descent direction."""


class Newton(FlatState, Optimizer):
    """Damped Newton's method on all parameters as one vector θ ∈ ℝⁿ (n ≲ a few thousand).

    With learning rate η (step length), damping λ ≥ 0, gradient g = ∇L(θ) and Hessian
    H = ∇²L(θ) (dense, built column by column from n Hessian-vector products H eⱼ = ∇⟨g, eⱼ⟩):

        (H + λ I) d = −g          solved by Cholesky: H + λI = LLᵀ, L y = −g, Lᵀ d = y
        θ ← θ + t d               t = η, or with ``line_search="armijo"`` the first of
                                  η, η/2, η/4, … with L(θ + t d) ≤ L(θ) + c t gᵀd   (c = 1e-4)

    For a strictly convex L near its minimiser the iteration converges quadratically; for
    logistic regression it is IRLS (iteratively reweighted least squares), H = Xᵀ S X + (1/C) I.
    If H + λI is not positive definite the Cholesky factorisation fails and ``step`` raises
    :class:`NotPositiveDefiniteError` with the smallest eigenvalue and the damping that would
    fix it (Newton's direction would not be a descent direction there).

    ``step(closure)``: the closure re-evaluates the model and returns the scalar loss Tensor
    *with its graph* — it must NOT call ``backward()`` (the optimiser differentiates twice
    itself). Returns the loss before the step. ``state["grad_norm"]`` holds ‖g‖ at θ before
    the step, ``state["step_size"]`` the t used.
    """

    def __init__(self, params, lr: float = 1.0, damping: float = 0.0, line_search=None,
                 max_backtracks: int = 30):
        params = flat_params(params, "Newton")
        if line_search not in (None, "armijo"):
            raise ValueError(f"Newton: line_search must be None or 'armijo', got {line_search!r}")
        super().__init__(params, dict(lr=lr, damping=damping, line_search=line_search,
                                      max_backtracks=max_backtracks))
        if self.defaults["lr"] <= 0:
            raise ValueError(f"Newton: lr must be > 0, got {lr!r}")
        self.problem = FlatProblem(params)

    def _validate(self, group):
        super()._validate(group)
        if group.get("damping", 0) < 0:
            raise ValueError(f"Newton: damping must be >= 0, got {group['damping']!r}")

    def step(self, closure=None):
        if closure is None:
            raise ValueError("Newton: step needs a closure returning the loss (with its graph)")
        group = self.param_groups[0]
        pb = self.problem
        xp = pb.xp
        loss, gs = pb.loss_with_grad_graph(closure, "Newton")
        g = pb.cat(gs)
        h = pb.hessian(gs)
        del gs
        lam = group["damping"]
        if lam:
            h[xp.diag_indices_from(h)] += lam
        try:
            c = xp.linalg.cholesky(h)
        except xp.linalg.LinAlgError:
            wmin = float(xp.linalg.eigvalsh(h)[0])
            raise NotPositiveDefiniteError(
                f"Newton: H + λI is not positive definite (λ = {lam:g}, smallest eigenvalue "
                f"{wmin:.4g}), so −(H + λI)⁻¹g need not descend; use damping > "
                f"{max(lam - wmin, 0):.4g}, or NewtonCG / LBFGS") from None
        y = _tri_solve(xp, c, -g, lower=True)
        d = _tri_solve(xp, c.T, y, lower=False)
        theta = pb.get()
        t = group["lr"]
        if group["line_search"] == "armijo":
            slope = float(g @ d)
            with _mode.no_grad():
                for _ in range(group["max_backtracks"]):
                    pb.set(theta + t * d)
                    if float(closure().data) <= loss + 1e-4 * t * slope:
                        break
                    t *= 0.5
        pb.set(theta + t * d)
        st = self.state.setdefault(pb.params[0], {})
        st["grad_norm"] = float(xp.sqrt(g @ g))
        st["step_size"] = t
        st["n_iter"] = st.get("n_iter", 0) + 1
        return loss


def _tri_solve(xp, a, b, lower):
    """Solve the triangular system a x = b (SciPy's solver when the arrays are NumPy's)."""
    try:
        if xp.__name__ == "numpy":
            from scipy.linalg import solve_triangular
            return solve_triangular(a, b, lower=lower)
    except ImportError:  # pragma: no cover - scipy is a dependency in practice
        pass
    return xp.linalg.solve(a, b)
