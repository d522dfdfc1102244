"""A small VGG-style network (Simonyan & Zisserman, 2015): stacks of 3×3 convolutions
(padding 1, so the size is kept) with batch norm and ReLU, a 2×2 max pool after each stage,
then global average pooling and a linear classifier.

    stage s: [conv 3×3 (c -> w_s) -> BN -> ReLU] × depth -> maxpool 2      (H, W halve)

(with batch norm, BN and ReLU are one module, ``BatchNorm2d(w, relu=True)``: the fused
primitive, one pass less each way; without it, conv (with bias) -> ReLU.)
    head:    global average pool -> dropout -> linear (w_last -> num_classes)

Default widths (32, 64, 128) with two convolutions per stage: 28×28 -> 14 -> 7 -> 3.
"""

from __future__ import annotations

from .. import backend, nn


class VGG(nn.Module):
    """VGG-style net for (N, in_channels, H, W) -> (N, num_classes) logits."""

    def __init__(self, in_channels=1, num_classes=10, rng=None, widths=(32, 64, 128), depth=2,
                 batch_norm=True, dropout=0.0):
        super().__init__()
        rng = backend.as_rng(rng)
        layers, c = [], in_channels
        for w in widths:
            for _ in range(depth):
                layers.append(nn.Conv2d(c, w, 3, padding=1, bias=not batch_norm, rng=rng))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(w, relu=True))  # BN → ReLU, fused
                else:
                    layers.append(nn.ReLU())
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        head = [nn.GlobalAvgPool2d()]
        if dropout:
            head.append(nn.Dropout(dropout, rng=rng))
        head.append(nn.Linear(c, num_classes, rng=rng))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))
