"""GAN models for 28×28 images in [−1, 1]: a small DCGAN (Radford et al. 2016) generator and
discriminator/critic, and MLP versions.

    DCGANGenerator:      z (N, latent) -> fc 64·7·7 -> BN -> ReLU -> (N, 64, 7, 7)
                         -> convT 4×4 s2 (64 -> 32) -> BN -> ReLU -> (N, 32, 14, 14)
                         -> convT 4×4 s2 (32 -> 1) -> tanh -> (N, 1, 28, 28)
    DCGANDiscriminator:  x (N, 1, 28, 28) -> conv 4×4 s2 (1 -> 32) -> LReLU 0.2 -> (N, 32, 14, 14)
                         -> conv 4×4 s2 (32 -> 64) [-> BN] -> LReLU 0.2 -> (N, 64, 7, 7)
                         -> fc 1 (a logit, or a WGAN critic's score)

Initial weights: the layers' defaults (PyTorch's Kaiming-uniform), or :func:`dcgan_init_` (Radford
et al.: conv/linear weights ~ N(0, 0.02²), biases 0, batch-norm γ ~ N(1, 0.02²), β 0).

``batchnorm=False`` for a WGAN-GP critic: the gradient penalty is per example, and batch norm
would make each example's score depend on the others (Gulrajani et al. 2017 use none; layer norm
is their alternative).
"""

from __future__ import annotations

from .. import backend, nn, ops
from ..nn import init as _init

INITS = ("default", "dcgan")


def dcgan_init_(model, rng=None):
    """Re-initialise ``model`` in place as the DCGAN paper does (Radford et al. 2016, §4): every
    (transposed) convolution and linear weight ~ N(0, 0.02²) and its bias 0; every batch norm's
    scale γ ~ N(1, 0.02²) and shift β 0. Layers are visited in registration order. Returns
    ``model``."""
    rng = backend.as_rng(rng)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            _init.normal_(m.weight, 0.0, 0.02, rng=rng)
            if m.bias is not None:
                _init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            _init.normal_(m.weight, 1.0, 0.02, rng=rng)
            _init.zeros_(m.bias)
    return model


class Reshape(nn.Module):
    """(N, …) -> (N, *shape)."""

    def __init__(self, *shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return ops.reshape(x, (x.shape[0],) + self.shape)

    def extra_repr(self):
        return ", ".join(map(str, self.shape))


class DCGANGenerator(nn.Sequential):
    def __init__(self, latent=64, channels=(64, 32), out_channels=1, batchnorm=True, rng=None):
        rng = backend.as_rng(rng)
        c1, c2 = channels
        layers = [nn.Linear(latent, c1 * 7 * 7, rng=rng)]
        layers += [nn.BatchNorm1d(c1 * 7 * 7)] if batchnorm else []
        layers += [nn.ReLU(), Reshape(c1, 7, 7),
                   nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1, rng=rng)]
        layers += [nn.BatchNorm2d(c2)] if batchnorm else []
        layers += [nn.ReLU(), nn.ConvTranspose2d(c2, out_channels, 4, stride=2, padding=1,
                                                 rng=rng), nn.Tanh()]
        super().__init__(*layers)
        self.latent = latent


class DCGANDiscriminator(nn.Sequential):
    def __init__(self, channels=(32, 64), in_channels=1, batchnorm=True, rng=None):
        rng = backend.as_rng(rng)
        c1, c2 = channels
        layers = [nn.Conv2d(in_channels, c1, 4, stride=2, padding=1, rng=rng),
                  nn.LeakyReLU(0.2), nn.Conv2d(c1, c2, 4, stride=2, padding=1, rng=rng)]
        layers += [nn.BatchNorm2d(c2)] if batchnorm else []
        layers += [nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(c2 * 7 * 7, 1, rng=rng),
                   Reshape()]
        super().__init__(*layers)


class MLPGenerator(nn.Sequential):
    """z -> fc hidden -> ReLU -> … -> fc 784 -> tanh -> (N, 1, 28, 28)."""

    def __init__(self, latent=64, hidden=(256, 256), rng=None):
        rng = backend.as_rng(rng)
        layers, a = [], latent
        for h in hidden:
            layers += [nn.Linear(a, h, rng=rng), nn.ReLU()]
            a = h
        layers += [nn.Linear(a, 784, rng=rng), nn.Tanh(), Reshape(1, 28, 28)]
        super().__init__(*layers)
        self.latent = latent


class MLPDiscriminator(nn.Sequential):
    """x (N, 1, 28, 28) -> fc hidden -> LeakyReLU 0.2 -> … -> fc 1 -> (N,)."""

    def __init__(self, hidden=(256, 256), rng=None):
        rng = backend.as_rng(rng)
        layers, a = [nn.Flatten()], 784
        for h in hidden:
            layers += [nn.Linear(a, h, rng=rng), nn.LeakyReLU(0.2)]
            a = h
        layers += [nn.Linear(a, 1, rng=rng), Reshape()]
        super().__init__(*layers)
