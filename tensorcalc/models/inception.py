"""An Inception-style network (Szegedy et al., 2015): blocks of parallel branches with
different receptive fields, concatenated along the channels.

InceptionBlock(c_in; b1, (r3, b3), (r5, b5), bp):

    branch 1: conv 1×1 (c_in -> b1)
    branch 2: conv 1×1 (c_in -> r3) -> relu -> conv 3×3 (r3 -> b3, pad 1)
    branch 3: conv 1×1 (c_in -> r5) -> relu -> conv 3×3 -> relu -> conv 3×3 (two 3×3 = one 5×5
              receptive field, as in Inception-v2)
    branch 4: max pool 3×3 (stride 1, pad 1) -> conv 1×1 (c_in -> bp)
    y = relu(BN(concat(branch 1..4)))   (b1 + b3 + b5 + bp channels, same H×W)

The 1×1 "reduce" convolutions keep the expensive 3×3 branches narrow. Network: stem conv 3×3
-> BN -> relu, inception block, max pool 2, inception block, max pool 2, global average pool,
linear.
"""

from __future__ import annotations

from .. import backend, nn, ops


class InceptionBlock(nn.Module):
    """Four parallel branches (1×1, 3×3, double 3×3, pool-proj) concatenated on channels."""

    def __init__(self, in_channels, b1, b3, b5, bp, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        (r3, o3), (r5, o5) = b3, b5
        self.branch1 = nn.Conv2d(in_channels, b1, 1, rng=rng)
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, r3, 1, rng=rng), nn.ReLU(),
                                     nn.Conv2d(r3, o3, 3, padding=1, rng=rng))
        self.branch5 = nn.Sequential(nn.Conv2d(in_channels, r5, 1, rng=rng), nn.ReLU(),
                                     nn.Conv2d(r5, o5, 3, padding=1, rng=rng), nn.ReLU(),
                                     nn.Conv2d(o5, o5, 3, padding=1, rng=rng))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                         nn.Conv2d(in_channels, bp, 1, rng=rng))
        self.out_channels = b1 + o3 + o5 + bp
        self.bn = nn.BatchNorm2d(self.out_channels, relu=True)  # BN → ReLU, fused

    def forward(self, x):
        ys = [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)]
        return self.bn(ops.concat(ys, axis=1))


class InceptionNet(nn.Module):
    """Small Inception-style net for (N, in_channels, H, W) -> (N, num_classes) logits."""

    def __init__(self, in_channels=1, num_classes=10, rng=None, width=32):
        super().__init__()
        rng = backend.as_rng(rng)
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1, bias=False, rng=rng),
                                  nn.BatchNorm2d(w, relu=True))
        self.block1 = InceptionBlock(w, w // 2, (w // 2, w), (w // 4, w // 2), w // 2, rng=rng)
        c1 = self.block1.out_channels
        self.block2 = InceptionBlock(c1, w, (w // 2, w * 2), (w // 4, w // 2), w // 2, rng=rng)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.GlobalAvgPool2d()
        self.fc = nn.Linear(self.block2.out_channels, num_classes, rng=rng)

    def forward(self, x):
        h = self.pool(self.block1(self.stem(x)))
        h = self.pool(self.block2(h))
        return self.fc(self.gap(h))
