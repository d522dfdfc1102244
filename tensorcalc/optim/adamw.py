"""AdamW: Adam with decoupled weight decay."""

from __future__ import annotations

from .adam import Adam

__all__ = ["AdamW"]


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam whose weight decay shrinks θ directly instead of
    entering the gradient (so it is not rescaled by the adaptive denominator); PyTorch's
    conventions, where the decay is multiplied by the learning rate.

    With learning rate γ, betas (β₁, β₂), ε, weight decay λ, step t = 1, 2, …; m₀ = v₀ = 0:

        θ   ← θ_{t−1} (1 − γ λ)                              (decoupled decay, first)
        m_t = β₁ m_{t−1} + (1 − β₁) g_t
        v_t = β₂ v_{t−1} + (1 − β₂) g_t²
        v̂_t = max(v̂_{t−1}, v_t)  if amsgrad  else  v_t        (v̂₀ = 0)
        θ_t = θ − (γ / (1 − β₁ᵗ)) · m_t / (√v̂_t / √(1 − β₂ᵗ) + ε)

    State: ``step``, ``exp_avg`` m, ``exp_avg_sq`` v, ``max_exp_avg_sq`` (amsgrad).
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
