"""ResNet with basic residual blocks (He et al., 2016), sized for small images.

A BasicBlock learns a residual F and adds the input back through a skip connection:

    y = relu( F(x) + S(x) ),   F = conv3×3 -> BN -> relu -> conv3×3 -> BN
    S(x) = x, or conv1×1 (stride s) -> BN when the block changes the size or the width

so ∂y/∂x = relu′ ⊙ (∂F/∂x + I): the identity path carries the gradient through deep stacks.

Network: stem conv 3×3 (in -> w₀) -> BN -> relu, then one stage per width, each of
``blocks`` BasicBlocks (the first of every stage after the first downsamples with stride 2),
then global average pooling and a linear classifier. Default: widths (16, 32, 64),
2 blocks per stage (a ResNet-14 for 28×28 / 32×32 inputs).
"""

from __future__ import annotations

from .. import backend, nn


class BasicBlock(nn.Module):
    """y = relu(F(x) + S(x)) with F = conv-BN-relu-conv-BN and S the identity or a 1×1 conv."""

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(out_channels, relu=True)  # conv → BN → ReLU, fused
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, rng=rng)
        self.bn2 = nn.BatchNorm2d(out_channels, relu=True)  # relu(BN + shortcut), fused
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False, rng=rng),
                nn.BatchNorm2d(out_channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        h = self.bn1(self.conv1(x))
        return self.bn2(self.conv2(h), residual=self.shortcut(x))


class ResNet(nn.Module):
    """ResNet of BasicBlocks for (N, in_channels, H, W) -> (N, num_classes) logits."""

    def __init__(self, in_channels=1, num_classes=10, rng=None, widths=(16, 32, 64), blocks=2):
        super().__init__()
        rng = backend.as_rng(rng)
        blocks = (blocks,) * len(widths) if isinstance(blocks, int) else tuple(blocks)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False,
                                            rng=rng),
                                  nn.BatchNorm2d(widths[0], relu=True))
        layers, c = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(c, w, stride, rng=rng))
                c = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.GlobalAvgPool2d()
        self.fc = nn.Linear(c, num_classes, rng=rng)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


def resnet_small(in_channels=1, num_classes=10, rng=None):
    """ResNet-14: widths (16, 32, 64), 2 BasicBlocks per stage."""
    return ResNet(in_channels, num_classes, rng, (16, 32, 64), 2)
