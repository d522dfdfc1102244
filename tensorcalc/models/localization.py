"""LocalizationNet: find and read one object — a CNN trunk with a class head and a box head.

    x (N, 1, S, S) -> conv 4×4 stride 2 (1 → c₀) -> ReLU                          (S/2)
                   -> per stage: conv 3×3 (cᵢ → cᵢ₊₁) -> ReLU -> max-pool 2       (halves)
                   -> flatten -> fc hidden -> ReLU = h
    class head:  z = W_c h + b_c ∈ ℝᶜ                 (logits)
    box head:    b̂ = σ(W_b h + b_b) ∈ (0, 1)⁴          (cx, cy, w, h) / S, normalised centre form

The model returns the two outputs as a tuple ``(z, b̂)``; a loss such as
:func:`tensorcalc.functional.boxes.class_box_loss` scores both.
"""

from __future__ import annotations

from .. import nn, ops
from ..backend import as_rng

__all__ = ["LocalizationNet"]


class LocalizationNet(nn.Module):
    """CNN trunk + class head + box head: (N, 1, S, S) -> (logits (N, C), box (N, 4)), the box
    as normalised (cx, cy, w, h) ∈ (0, 1)⁴ (see the module docstring)."""

    def __init__(self, num_classes: int = 10, hidden: int = 128, channels=(8, 16, 32, 64),
                 rng=None, size: int = 64):
        super().__init__()
        rng = as_rng(rng)
        if len(channels) < 2:
            raise ValueError(f"LocalizationNet: channels needs at least two widths (the stride-2 "
                             f"stem and one conv-pool stage), got {channels}")
        self.num_classes = num_classes
        layers = [nn.Conv2d(1, channels[0], 4, stride=2, padding=1, rng=rng), nn.ReLU()]
        side = size // 2
        for cin, cout in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2)]
            side //= 2
        if side < 1:
            raise ValueError(f"LocalizationNet: {len(channels) - 1} pooling stages shrink a "
                             f"{size}×{size} canvas below one pixel")
        layers += [nn.Flatten(), nn.Linear(channels[-1] * side * side, hidden, rng=rng),
                   nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(hidden, num_classes, rng=rng)
        self.box = nn.Linear(hidden, 4, rng=rng)

    def forward(self, x):
        h = self.features(x)
        return self.classifier(h), ops.sigmoid(self.box(h))
