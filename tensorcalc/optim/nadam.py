"""NAdam: Adam with Nesterov momentum."""

from __future__ import annotations

from .base import Optimizer

__all__ = ["NAdam"]


class NAdam(Optimizer):
    """NAdam (Dozat 2016), with the momentum schedule and conventions of PyTorch's NAdam.

    With learning rate γ, betas (β₁, β₂), ε, weight decay λ, momentum decay ψ, step t = 1, 2, …;
    m₀ = v₀ = 0:

        g   ← g_t + λ θ_{t−1}        (coupled; with ``decoupled_weight_decay``: θ ← θ(1 − γλ))
        μ_t = β₁ (1 − ½ · 0.96^(t ψ)),   μ_{t+1} = β₁ (1 − ½ · 0.96^((t+1) ψ))
        m_t = β₁ m_{t−1} + (1 − β₁) g
        v_t = β₂ v_{t−1} + (1 − β₂) g²
        d   = √(v_t / (1 − β₂ᵗ)) + ε
        θ_t = θ_{t−1} − γ (1 − μ_t) / (1 − ∏_{i≤t} μ_i) · g / d
                      − γ μ_{t+1} / (1 − ∏_{i≤t+1} μ_i) · m_t / d

    State: ``step``, ``mu_product`` ∏_{i≤t} μ_i (a float), ``exp_avg`` m, ``exp_avg_sq`` v.
    """

    def __init__(self, params, lr: float = 2e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def update(self, p, g, state, group):
        xp = self._xp(p)
        if not state.get("step"):
            state["step"] = 0
            state["mu_product"] = 1.0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
        state["step"] = t = state["step"] + 1
        lr, wd, psi = group["lr"], group["weight_decay"], group["momentum_decay"]
        b1, b2 = group["betas"]
        if group["decoupled_weight_decay"]:
            if wd != 0:
                p *= 1.0 - lr * wd
        else:
            g = self._coupled_decay(p, g, wd, state)
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        state["mu_product"] = mu_prod = state["mu_product"] * mu
        mu_prod_next = mu_prod * mu_next
        m, v = state["exp_avg"], state["exp_avg_sq"]
        buf = self._scratch(state, p)
        d = self._scratch(state, p, "_d")
        m *= b1
        self._axpy(1.0 - b1, g, m)
        v *= b2
        xp.multiply(g, g, out=buf)
        self._axpy(1.0 - b2, buf, v)
        xp.multiply(v, 1.0 / (1.0 - b2 ** t), out=d)
        xp.sqrt(d, out=d)
        d += group["eps"]
        xp.divide(g, d, out=buf)
        self._axpy(-lr * (1.0 - mu) / (1.0 - mu_prod), buf, p)
        xp.divide(m, d, out=buf)
        self._axpy(-lr * mu_next / (1.0 - mu_prod_next), buf, p)
