"""LeNet-5 (LeCun et al., 1998), adapted to 28×28 inputs (MNIST): the classic convolutional net.

    x (N, C, 28, 28) -> conv 5×5 (C -> 6, pad 2) -> act -> pool 2 -> (N, 6, 14, 14)
                     -> conv 5×5 (6 -> 16)        -> act -> pool 2 -> (N, 16, 5, 5)
                     -> flatten 400 -> fc 120 -> act -> fc 84 -> act -> fc num_classes (logits)

``activation``: 'relu' (default, trains fastest) or 'tanh' (the 1998 choice); ``pool``: 'max'
(default) or 'avg' (the original subsampling). Other input sizes work as long as the feature
map stays ≥ 1 (the first fc layer is sized from ``input_size``).
"""

from __future__ import annotations

from .. import backend, nn


def _act(name):
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"LeNet5: activation must be 'relu' or 'tanh', got {name!r}")


def _pool(name):
    if name == "max":
        return nn.MaxPool2d(2)
    if name == "avg":
        return nn.AvgPool2d(2)
    raise ValueError(f"LeNet5: pool must be 'max' or 'avg', got {name!r}")


class LeNet5(nn.Module):
    """LeNet-5 for (N, in_channels, 28, 28) images -> (N, num_classes) logits."""

    def __init__(self, in_channels=1, num_classes=10, rng=None, activation="relu", pool="max",
                 input_size=28):
        super().__init__()
        rng = backend.as_rng(rng)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2, rng=rng), _act(activation), _pool(pool),
            nn.Conv2d(6, 16, 5, rng=rng), _act(activation), _pool(pool),
        )
        side = ((input_size // 2) - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet5: input_size {input_size} is too small (needs ≥ 12)")
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120, rng=rng), _act(activation),
            nn.Linear(120, 84, rng=rng), _act(activation), nn.Linear(84, num_classes, rng=rng),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
