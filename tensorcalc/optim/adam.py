"""Adam (with AMSGrad): adaptive moment estimation."""

from __future__ import annotations

import math

from ..devices import cuda as _cuda
from .base import Optimizer

__all__ = ["Adam"]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), with AMSGrad (Reddi et al. 2018); PyTorch's conventions.

    With learning rate γ, betas (β₁, β₂), ε, weight decay λ, step t = 1, 2, …; m₀ = v₀ = 0:

        g   ← g_t + λ θ_{t−1}              (coupled: the L2 penalty passes through the moments)
        m_t = β₁ m_{t−1} + (1 − β₁) g
        v_t = β₂ v_{t−1} + (1 − β₂) g²
        v̂_t = max(v̂_{t−1}, v_t)  if amsgrad  else  v_t        (v̂₀ = 0)
        θ_t = θ_{t−1} − (γ / (1 − β₁ᵗ)) · m_t / (√v̂_t / √(1 − β₂ᵗ) + ε)

    i.e. θ ← θ − γ m̂/(√v̂ + ε) with the bias-corrected m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), ε
    added after the correction exactly as PyTorch does. For decoupled weight decay use
    :class:`AdamW`. State: ``step``, ``exp_avg`` m, ``exp_avg_sq`` v, ``max_exp_avg_sq``
    (amsgrad).
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def update(self, p, g, state, group):
        xp = self._xp(p)
        if not state.get("step"):
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
        state["step"] = t = state["step"] + 1
        lr, wd = group["lr"], group["weight_decay"]
        b1, b2 = group["betas"]
        fused = not group["amsgrad"] and _cuda.on_cuda(p)  # on a GPU: one kernel (below)
        if self._decoupled:
            if wd != 0:
                p *= 1.0 - lr * wd
        elif not fused:
            g = self._coupled_decay(p, g, wd, state)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if fused:
            _cuda.adam_update(p, g, m, v, lr, b1, b2, group["eps"],
                              0.0 if self._decoupled else wd, t)
            return
        buf = self._scratch(state, p)
        m *= b1
        self._axpy(1.0 - b1, g, m)
        v *= b2
        xp.multiply(g, g, out=buf)
        self._axpy(1.0 - b2, buf, v)
        if group["amsgrad"]:
            vmax = state.get("max_exp_avg_sq")
            if vmax is None:
                vmax = state["max_exp_avg_sq"] = xp.zeros_like(p)
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        xp.sqrt(v, out=buf)
        buf *= 1.0 / math.sqrt(bc2)
        buf += group["eps"]
        xp.divide(m, buf, out=buf)
        self._axpy(-lr / bc1, buf, p)
