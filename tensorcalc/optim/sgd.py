"""Stochastic gradient descent with momentum, Nesterov momentum, dampening and weight decay."""

from __future__ import annotations

from ..devices import cuda as _cuda
from .base import Optimizer

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch's conventions for momentum and Nesterov).

    With learning rate γ, momentum μ, dampening τ, weight decay λ, gradient g_t of step t:

        g  ← g_t + λ θ_{t−1}                      (coupled weight decay: L2 penalty ½λ‖θ‖²)
        if μ ≠ 0:
            b_t = g                               (t = 1)
            b_t = μ b_{t−1} + (1 − τ) g           (t > 1)
            g  ← g + μ b_t   if nesterov  else  g ← b_t
        θ_t = θ_{t−1} − γ g

    State: ``momentum_buffer`` b (only when μ ≠ 0). Nesterov needs μ > 0 and τ = 0.
    Note the momentum is applied to the gradient before the learning rate (as in PyTorch), not
    to the step (as in Sutskever et al.); the two agree for a constant γ.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _validate(self, group):
        super()._validate(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0, "
                             f"got momentum={group['momentum']}, dampening={group['dampening']}")

    def update(self, p, g, state, group):
        lr, mu = group["lr"], group["momentum"]
        if mu != 0 and _cuda.on_cuda(p):
            b = state.get("momentum_buffer")
            if b is not None:  # on a GPU: the whole update below as one fused kernel
                _cuda.sgd_update(p, g, b, lr, mu, group["dampening"], group["weight_decay"],
                                 group["nesterov"])
                return
        g = self._coupled_decay(p, g, group["weight_decay"], state)
        if mu != 0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = g.copy()
            else:
                b *= mu
                self._axpy(1.0 - group["dampening"], g, b)
            if group["nesterov"]:  # θ − γ(g + μb) as two fused passes
                self._axpy(-lr, g, p)
                self._axpy(-lr * mu, b, p)
                return
            g = b
        self._axpy(-lr, g, p)
