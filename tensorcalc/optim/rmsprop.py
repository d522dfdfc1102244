"""RMSprop: divide the gradient by a running root-mean-square of recent gradients."""

from __future__ import annotations

from .base import Optimizer

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton's lecture 6e; centred variant of Graves 2013), PyTorch's conventions.

    With learning rate γ, smoothing α, ε, weight decay λ, momentum μ; v₀ = ḡ₀ = b₀ = 0:

        g   ← g_t + λ θ_{t−1}
        v_t = α v_{t−1} + (1 − α) g²
        ṽ   = v_t                                  (plain)
        ḡ_t = α ḡ_{t−1} + (1 − α) g ;  ṽ = v_t − ḡ_t²   (centered: variance, not raw 2nd moment)
        if μ > 0:  b_t = μ b_{t−1} + g / (√ṽ + ε) ;  θ_t = θ_{t−1} − γ b_t
        else:      θ_t = θ_{t−1} − γ g / (√ṽ + ε)

    State: ``step``, ``square_avg`` v, ``grad_avg`` ḡ (centered), ``momentum_buffer`` b (μ > 0).
    ε is added outside the square root, as in PyTorch.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def update(self, p, g, state, group):
        xp = self._xp(p)
        if not state.get("step"):
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p)
        state["step"] += 1
        alpha, mu = group["alpha"], group["momentum"]
        g = self._coupled_decay(p, g, group["weight_decay"], state)
        v = state["square_avg"]
        buf = self._scratch(state, p)
        v *= alpha
        xp.multiply(g, g, out=buf)
        self._axpy(1.0 - alpha, buf, v)
        if group["centered"]:
            ga = state.get("grad_avg")
            if ga is None:
                ga = state["grad_avg"] = xp.zeros_like(p)
            ga *= alpha
            self._axpy(1.0 - alpha, g, ga)
            xp.multiply(ga, ga, out=buf)
            xp.subtract(v, buf, out=buf)
            xp.sqrt(buf, out=buf)
        else:
            xp.sqrt(v, out=buf)
        buf += group["eps"]
        xp.divide(g, buf, out=buf)  # g / (√ṽ + ε)
        if mu > 0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = xp.zeros_like(p)
            b *= mu
            self._axpy(1.0, buf, b)
            self._axpy(-group["lr"], b, p)
        else:
            self._axpy(-group["lr"], buf, p)
