"""Neural-ODE model family: dynamics Modules for :class:`tensorcalc.nn.ODEBlock` and the ODE-Net
classifier of Chen et al. (2018).

* :class:`SpiralDynamics` — f(t, y) = W₂ tanh(W₁ y³ + b₁) + b₂, the MLP of torchdiffeq's
  ode_demo (2-50-tanh-2 applied to y³, elementwise cube).
* :class:`ConvDynamics` — f(t, h) = conv(relu(norm(conv(relu(norm(h)))))) on feature maps,
  3×3 convolutions keeping the shape (time-invariant dynamics).
* :class:`ODENet` — a small downsampling front (28×28 → 7×7 feature maps), one ODE block
  integrating the feature maps from t = 0 to 1, and a linear head on the flattened maps.
"""

from __future__ import annotations

from .. import functional as F
from .. import nn

__all__ = ["SpiralDynamics", "ConvDynamics", "ODENet"]


class SpiralDynamics(nn.Module):
    """f(t, y) = W₂ tanh(W₁ y³ + b₁) + b₂ for y (N, 2) (torchdiffeq's ode_demo ODEFunc)."""

    def __init__(self, dim: int = 2, hidden: int = 50, rng=None, dtype=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, rng=rng, dtype=dtype)
        self.fc2 = nn.Linear(hidden, dim, rng=rng, dtype=dtype)

    def forward(self, t, y):
        return self.fc2(F.tanh(self.fc1(y ** 3)))


def _groups(c: int) -> int:
    # several channels per group: with one channel per group the norm removes each channel's
    # spatial mean, and a globally pooled head (torchdiffeq's) would then see nearly constants
    for g in (8, 4, 2):
        if c % g == 0 and c // g >= 2:
            return g
    return 1


class ConvDynamics(nn.Module):
    """f(t, h) = conv₂(relu(norm₂(conv₁(relu(norm₁(h)))))) + its final norm; h (N, C, H, W)."""

    def __init__(self, channels: int, rng=None, groups: int | None = None):
        super().__init__()
        g = groups or _groups(channels)
        self.norm1 = nn.GroupNorm(g, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, rng=rng)
        self.norm2 = nn.GroupNorm(g, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, rng=rng)
        self.norm3 = nn.GroupNorm(g, channels)

    def forward(self, t, h):
        h = self.conv1(F.relu(self.norm1(h)))
        h = self.conv2(F.relu(self.norm2(h)))
        return self.norm3(h)


class ODENet(nn.Module):
    """Image classifier: front (conv 3×3, two stride-2 convs: 28 → 7), an ODEBlock on the 7×7
    maps, then norm, relu and a linear layer from the flattened maps to the logits.

    The head reads every position of the 7×7 maps (``width``·49 inputs). torchdiffeq's
    odenet_mnist pools them globally instead; at the front's 12-pixel receptive field that
    leaves the head a bag of local patches, and at width 32 it learned far too slowly (front +
    pooled head: 63 % test accuracy after 200 Adam steps of 64 images, against 96 % for the
    flattened head after 150; measured on MNIST-10k)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, rng=None,
                 method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3,
                 adjoint: bool = True, step_size: float | None = None, image_size: int = 28):
        super().__init__()
        g = _groups(width)
        side = image_size // 4  # the front's two stride-2 convolutions
        self.front = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, rng=rng), nn.GroupNorm(g, width),
            nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1, rng=rng), nn.GroupNorm(g, width),
            nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1, rng=rng))
        self.ode = nn.ODEBlock(ConvDynamics(width, rng=rng), 0.0, 1.0, method=method,
                               rtol=rtol, atol=atol, adjoint=adjoint, step_size=step_size)
        self.norm = nn.GroupNorm(g, width)
        self.head = nn.Linear(width * side * side, num_classes, rng=rng)

    def forward(self, x):
        h = self.ode(self.front(x))
        h = F.relu(self.norm(h))
        return self.head(h.reshape(h.shape[0], -1))
