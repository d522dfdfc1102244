"""DigitCNN: a small three-stage CNN for 28×28 images, split into ``features`` and ``head`` so
that the feature extractor can be pre-trained, frozen or fine-tuned (transfer learning).

    features: conv 5×5 (1→16, pad 2) → ReLU → max-pool 2 → conv 5×5 (16→32, pad 2) → ReLU →
              max-pool 2 → conv 3×3 (32→64, pad 1) → ReLU → max-pool 2 → flatten (64·3·3 = 576)
    head:     fc 576→hidden → ReLU → fc hidden→num_classes
"""

from __future__ import annotations

from .. import nn
from ..backend import as_rng

__all__ = ["DigitCNN"]


class DigitCNN(nn.Module):
    """``features`` then ``head``: (N, 1, 28, 28) -> (N, num_classes) logits. ``head_rng``
    (default ``rng``) initialises the head alone, so several models can share one."""

    def __init__(self, num_classes: int = 5, hidden: int = 64, rng=None, head_rng=None):
        super().__init__()
        rng = as_rng(rng)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten())
        self.head = self.new_head(num_classes, hidden, rng if head_rng is None else head_rng)

    @staticmethod
    def new_head(num_classes: int, hidden: int, rng) -> nn.Module:
        """A freshly initialised classifier head fc 576→hidden → ReLU → fc hidden→classes."""
        rng = as_rng(rng)
        return nn.Sequential(nn.Linear(64 * 3 * 3, hidden, rng=rng), nn.ReLU(),
                             nn.Linear(hidden, num_classes, rng=rng))

    def forward(self, x):
        return self.head(self.features(x))
