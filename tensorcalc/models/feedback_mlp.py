"""A multilayer perceptron trainable by backpropagation ("bp"), feedback alignment ("fa") or
direct feedback alignment ("dfa") — the same forward, three backward passes (see
:mod:`tensorcalc.functional.feedback`).

    h₀ = x,  hₗ = tanh(Wₗ hₗ₋₁ + bₗ)  (l = 1..L),  z = W_out h_L + b_out

The fixed random feedback matrices are buffers drawn from their own ``feedback_rng``, so the
forward weights are initialised identically whichever rule trains them. ``rule`` may be changed
at any time (e.g. to measure the true gradient of the same weights).
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import nn
from ..functional import feedback as FB

__all__ = ["FeedbackMLP", "RULES"]

RULES = ("bp", "fa", "dfa")


class FeedbackMLP(nn.Module):
    """MLP in_features → hidden… → out_features (tanh) trained by ``rule`` (bp | fa | dfa)."""

    def __init__(self, in_features: int = 784, hidden=(256, 256), out_features: int = 10,
                 rule: str = "bp", rng=None, feedback_rng=None):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"FeedbackMLP: rule must be one of {', '.join(RULES)}, got {rule!r}")
        self.rule = rule
        widths = [in_features, *hidden, out_features]
        self.layers = nn.ModuleList([nn.Linear(a, b, rng=rng)
                                     for a, b in zip(widths[:-1], widths[1:], strict=True)])
        frng = np.random.default_rng(feedback_rng)
        for i, lin in enumerate(self.layers):
            out_w, in_w = lin.weight.shape
            # FA: B of W's shape (out, in), scaled like W's initialisation
            bound = 1 / math.sqrt(in_w)
            self.register_buffer(f"fa_B{i}", frng.uniform(-bound, bound, (out_w, in_w))
                                 .astype(lin.weight.dtype))
        for i, width in enumerate(hidden):
            # DFA: B (outputs, width) carries the output error to hidden layer i
            bound = 1 / math.sqrt(out_features)
            self.register_buffer(f"dfa_B{i}", frng.uniform(-bound, bound, (out_features, width))
                                 .astype(self.layers[0].weight.dtype))

    def forward(self, x):
        rule = self.rule
        hub = FB.new_hub() if rule == "dfa" else None
        h = x
        n = len(self.layers)
        for i, lin in enumerate(self.layers):
            if rule == "fa" and i > 0:
                a = FB.fa_linear(h, lin.weight, lin.bias, feedback=getattr(self, f"fa_B{i}"))
            else:
                a = F.linear(h, lin.weight, lin.bias)
            if i == n - 1:
                return FB.dfa_output(a, hub=hub) if rule == "dfa" else a
            h = F.tanh(a)
            if rule == "dfa":
                h = FB.dfa_tap(h, hub=hub, feedback=getattr(self, f"dfa_B{i}"))
        return h

    def extra_repr(self) -> str:
        return f"rule={self.rule}"
