"""Dropout layers: active in training mode, the identity in eval mode."""

from __future__ import annotations

from .. import backend
from ..functional.dropout import dropout as _dropout
from ..functional.dropout import dropout2d as _dropout2d
from .module import Module


class Dropout(Module):
    """Inverted dropout: y = x ⊙ m/(1 − p), mᵢ ~ Bernoulli(1 − p), in training mode; y = x in
    eval mode. Masks come from this layer's own Generator (``rng``: Generator or int seed)."""

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p}")
        self.p = p
        self.rng = backend.as_rng(rng)

    def forward(self, x):
        return _dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel dropout for x (N, C, ...): whole channels are dropped together."""

    def forward(self, x):
        return _dropout2d(x, self.p, self.training, self.rng)


__all__ = ["Dropout", "Dropout2d"]
