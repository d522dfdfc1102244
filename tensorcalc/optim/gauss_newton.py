"""Gauss-Newton and Levenberg-Marquardt for nonlinear least squares, matrix-free."""

from __future__ import annotations

import math

from ..autodiff import mode as _mode
from ._second_order import FlatProblem, FlatState, conjugate_gradient, flat_params
from .base import Optimizer

__all__ = ["GaussNewton", "LevenbergMarquardt"]


class LevenbergMarquardt(FlatState, Optimizer):
    """Levenberg-Marquardt for L(θ) = ½‖r(θ)‖², r: ℝⁿ → ℝᵐ a residual vector.

    With J = ∂r/∂θ (m × n) — never formed: J v is a JVP and Jᵀu a VJP, both from reverse sweeps
    (J v by the double-VJP trick, see :mod:`._second_order`) — each step solves

        (JᵀJ + λ I) δ = −Jᵀr

    densely (JᵀJ assembled from n products JᵀJ eⱼ, Cholesky) when n ≤ ``dense_max``, else by
    conjugate gradient on v ↦ Jᵀ(J v) + λv (tolerance ``cg_tol``, at most ``cg_max_iter``
    products). The gain ratio ρ of actual to predicted decrease,

        ρ = (L(θ) − L(θ + δ)) / (L(θ) − ½‖r + J δ‖²),

    accepts the step when ρ > 0 and adapts λ (Nielsen 1999): accepted → λ ← λ · max(⅓,
    1 − (2ρ − 1)³), ν ← 2; rejected → λ ← λ ν, ν ← 2ν (θ is left unchanged).

    ``step(closure)``: the closure returns the residual vector r(θ) as a Tensor with its graph
    (not the loss; no ``backward()``). Returns L(θ) before the step. State: ``damping``,
    ``rho``, ``accepted``, ``grad_norm`` (‖Jᵀr‖).
    """

    _adaptive = True

    def __init__(self, params, damping: float = 1e-3, dense_max: int = 500,
                 cg_max_iter: int = 200, cg_tol: float = 1e-10):
        params = flat_params(params, type(self).__name__)
        super().__init__(params, dict(damping=damping, dense_max=dense_max,
                                      cg_max_iter=cg_max_iter, cg_tol=cg_tol))
        if damping < 0:
            raise ValueError(f"{self._name}: damping must be >= 0, got {damping!r}")
        self.problem = FlatProblem(params)

    def _solve(self, jv, jtu, rhs, lam, group):
        pb = self.problem
        xp, n = pb.xp, pb.numel

        def gn(v):
            return jtu(jv(v)) + lam * v

        if n <= group["dense_max"]:
            a = xp.empty((n, n), dtype=pb.dtype)
            e = xp.zeros(n, dtype=pb.dtype)
            for j in range(n):
                e[j] = 1
                a[:, j] = gn(e)
                e[j] = 0
            a = (a + a.T) * 0.5
            try:
                return xp.linalg.solve(a, rhs)
            except xp.linalg.LinAlgError:
                raise ValueError(f"{self._name}: JᵀJ + λI is singular (λ = {lam:g}); use "
                                 "LevenbergMarquardt or damping > 0") from None
        d, _, _ = conjugate_gradient(gn, rhs, group["cg_max_iter"], group["cg_tol"], xp)
        return d

    def step(self, closure=None):
        if closure is None:
            raise ValueError(f"{self._name}: step needs a closure returning the residual r(θ)")
        group = self.param_groups[0]
        pb = self.problem
        st = self.state.setdefault(pb.params[0], {})
        lam = st.get("damping", group["damping"])
        nu = st.get("nu", 2.0)
        r, jv, jtu = pb.residual_products(closure, self._name)
        loss = 0.5 * float(r @ r)
        g = jtu(r)
        if not float(g @ g) > 0:   # a stationary point: nothing to solve (and λ must not grow)
            st.update(damping=lam, nu=nu, rho=0.0, accepted=False, grad_norm=0.0,
                      n_iter=st.get("n_iter", 0) + 1)
            return loss
        delta = self._solve(jv, jtu, -g, lam, group)
        theta = pb.get()
        pb.set(theta + delta)
        with _mode.no_grad():
            r_new = closure().data.reshape(-1)
        new = 0.5 * float(r_new @ r_new)
        lin = r + jv(delta)
        pred = loss - 0.5 * float(lin @ lin)
        rho = (loss - new) / pred if pred > 0 else (0.0 if new >= loss else 1.0)
        accepted = True
        if self._adaptive:
            if rho > 0 and math.isfinite(new):
                lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                nu = 2.0
            else:
                pb.set(theta)
                accepted = False
                lam = min(lam * nu, 1e20) if lam > 0 else 1e-6
                nu *= 2.0
        st.update(damping=lam, nu=nu, rho=rho, accepted=accepted,
                  grad_norm=math.sqrt(float(g @ g)), n_iter=st.get("n_iter", 0) + 1)
        return loss


class GaussNewton(LevenbergMarquardt):
    """Gauss-Newton for L(θ) = ½‖r(θ)‖²: the full step of the linearised problem,

        (JᵀJ + λ I) δ = −Jᵀr,   θ ← θ + δ        (λ = ``damping``, fixed; 0 = pure Gauss-Newton)

    JᵀJ is the Hessian without the term Σᵢ rᵢ ∇²rᵢ, so convergence is quadratic for zero-residual
    problems and linear otherwise. Products with J and Jᵀ as in :class:`LevenbergMarquardt`
    (which adds the adaptive damping that makes it robust far from the solution).
    """

    _adaptive = False

    def __init__(self, params, damping: float = 0.0, dense_max: int = 500,
                 cg_max_iter: int = 200, cg_tol: float = 1e-10):
        super().__init__(params, damping=damping, dense_max=dense_max, cg_max_iter=cg_max_iter,
                         cg_tol=cg_tol)
