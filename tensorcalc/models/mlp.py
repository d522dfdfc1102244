"""Multilayer perceptron: a stack of affine maps and ReLUs ending in a linear output,

    h₀ = x,   hₗ = relu(Wₗ hₗ₋₁ + bₗ)   (l = 1..L, optional dropout after each),
    z = W_out h_L + b_out.
"""

from __future__ import annotations

from .. import nn

__all__ = ["build_mlp"]


def build_mlp(in_features: int, hidden, out_features: int, rng=None,
              dropout: float = 0.0) -> nn.Sequential:
    """Linear → ReLU (→ Dropout) for each width in ``hidden``, then a Linear to
    ``out_features`` outputs; ``rng`` initialises the weights and drives dropout."""
    layers = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h, rng=rng), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout, rng=rng))
        width = h
    layers.append(nn.Linear(width, out_features, rng=rng))
    return nn.Sequential(*layers)
