"""Adadelta: unit-consistent steps from running averages of squared gradients and updates."""

from __future__ import annotations

from .base import Optimizer

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012), PyTorch's conventions (a learning rate γ scales the step).

    With decay ρ, ε, weight decay λ, learning rate γ (1.0 in the paper); v₀ = u₀ = 0:

        g   ← g_t + λ θ_{t−1}
        v_t = ρ v_{t−1} + (1 − ρ) g²
        Δ_t = √(u_{t−1} + ε) / √(v_t + ε) · g
        u_t = ρ u_{t−1} + (1 − ρ) Δ_t²
        θ_t = θ_{t−1} − γ Δ_t

    State: ``step``, ``square_avg`` v, ``acc_delta`` u.
    """

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def update(self, p, g, state, group):
        xp = self._xp(p)
        if not state.get("step"):
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
            state["acc_delta"] = xp.zeros_like(p)
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        g = self._coupled_decay(p, g, group["weight_decay"], state)
        v, u = state["square_avg"], state["acc_delta"]
        buf = self._scratch(state, p)
        delta = self._scratch(state, p, "_delta")
        v *= rho
        xp.multiply(g, g, out=buf)
        self._axpy(1.0 - rho, buf, v)
        xp.add(v, eps, out=buf)
        xp.sqrt(buf, out=buf)              # √(v_t + ε)
        xp.add(u, eps, out=delta)
        xp.sqrt(delta, out=delta)          # √(u_{t−1} + ε)
        delta /= buf
        delta *= g                         # Δ_t
        u *= rho
        xp.multiply(delta, delta, out=buf)
        self._axpy(1.0 - rho, buf, u)
        self._axpy(-group["lr"], delta, p)
