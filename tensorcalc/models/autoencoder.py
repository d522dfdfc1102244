"""Autoencoders: x -> code (N, k) -> logits of x̂ (N, 784); σ(logits) is the reconstruction in
[0, 1]. With linear layers and squared error an autoencoder can do no better than PCA with k
components (the best rank-k affine map); the nonlinear ones here beat it at the same k.

    MLPAutoencoder:   784 -> 256 -> ReLU -> k  |  k -> 256 -> ReLU -> 784
    ConvAutoencoder:  (1, 28, 28) -> conv 3×3 s2 (16) -> ReLU -> conv 3×3 s2 (32) -> ReLU
                      -> fc k  |  k -> fc 32·7·7 -> ReLU -> convT 4×4 s2 (16) -> ReLU
                      -> convT 4×4 s2 (1) -> flatten 784
"""

from __future__ import annotations

from .. import backend, nn
from .gan import Reshape


class MLPAutoencoder(nn.Module):
    def __init__(self, in_features=784, hidden=(256,), code=32, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        enc, a = [], in_features
        for h in hidden:
            enc += [nn.Linear(a, h, rng=rng), nn.ReLU()]
            a = h
        self.encoder = nn.Sequential(*enc, nn.Linear(a, code, rng=rng))
        dec, a = [], code
        for h in hidden[::-1]:
            dec += [nn.Linear(a, h, rng=rng), nn.ReLU()]
            a = h
        self.decoder = nn.Sequential(*dec, nn.Linear(a, in_features, rng=rng))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class ConvAutoencoder(nn.Module):
    def __init__(self, code=32, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.encoder = nn.Sequential(
            Reshape(1, 28, 28), nn.Conv2d(1, 16, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, rng=rng), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * 7 * 7, code, rng=rng))
        self.decoder = nn.Sequential(
            nn.Linear(code, 32 * 7 * 7, rng=rng), nn.ReLU(), Reshape(32, 7, 7),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1, rng=rng), nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1, rng=rng), nn.Flatten())

    def forward(self, x):
        return self.decoder(self.encoder(x))
