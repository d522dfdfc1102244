"""Adagrad: per-coordinate learning rates from the running sum of squared gradients."""

from __future__ import annotations

from .base import Optimizer

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011), with PyTorch's lr decay and defaults.

    With learning rate γ, lr decay η, weight decay λ, ε, step t = 1, 2, …, s₀ =
    ``initial_accumulator_value``:

        γ̃_t = γ / (1 + (t − 1) η)
        g   ← g_t + λ θ_{t−1}
        s_t = s_{t−1} + g²
        θ_t = θ_{t−1} − γ̃_t g / (√s_t + ε)

    State: ``step`` t, ``sum`` s. Squares, roots and divisions are elementwise.
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))
        # PyTorch creates the accumulators eagerly; so do we (state_dict before step 1 is full).
        for group in self.param_groups:
            for p in group["params"]:
                self._init(p.data, self.state.setdefault(p, {}), group)

    def _init(self, p, state, group):
        state["step"] = 0
        s = state["sum"] = self._xp(p).empty_like(p)
        s.fill(group["initial_accumulator_value"])

    def update(self, p, g, state, group):
        if "sum" not in state:
            self._init(p, state, group)
        xp = self._xp(p)
        state["step"] = t = state["step"] + 1
        clr = group["lr"] / (1.0 + (t - 1) * group["lr_decay"])
        g = self._coupled_decay(p, g, group["weight_decay"], state)
        s = state["sum"]
        buf = self._scratch(state, p)
        xp.multiply(g, g, out=buf)
        self._axpy(1.0, buf, s)
        xp.sqrt(s, out=buf)
        buf += group["eps"]
        xp.divide(g, buf, out=buf)
        self._axpy(-clr, buf, p)
