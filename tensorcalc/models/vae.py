"""Variational autoencoders (Kingma & Welling 2014): a Gaussian encoder q_φ(z|x) = N(μ, diag σ²)
and a Bernoulli or Gaussian decoder p_θ(x|z), both MLPs; conditional on a class label when
``num_classes`` > 0 (the one-hot label is appended to the encoder's input and to z).

    x (N, D) [⊕ onehot(y)] -> fc hidden -> relu -> (μ, log σ²) (N, latent) each
    z (N, latent) [⊕ onehot(y)] -> fc hidden -> relu -> fc D -> logits (Bernoulli: p = σ(l))
                                                                or means (Gaussian: m = σ(l),
                                                                with a learned per-pixel
                                                                log-variance ``decoder_logvar``)

The losses (reparameterisation, closed-form KL, ELBO, IWAE) are in
:mod:`tensorcalc.functional.generative`; the training step is
:class:`tensorcalc.train.generative_steps.VAEStep`.
"""

from __future__ import annotations

import numpy as np

from .. import backend, nn, ops
from ..functional import generative as G
from ..functional.activations import sigmoid
from ..tensor import Tensor

DECODERS = ("bernoulli", "gaussian")


def _mlp(sizes, rng):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, rng=rng))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """MLP VAE, e.g. 784-400-(20, 20)-400-784 (``VAE(784, 400, 20)``); ``hidden`` an int or a
    tuple of widths (encoder order; the decoder mirrors it)."""

    def __init__(self, in_features=784, hidden=400, latent=20, decoder="bernoulli",
                 num_classes=0, rng=None):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"VAE: decoder must be one of {', '.join(DECODERS)}, got "
                             f"{decoder!r}")
        rng = backend.as_rng(rng)
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        self.in_features, self.latent, self.decoder_kind = in_features, latent, decoder
        self.num_classes = int(num_classes)
        c = self.num_classes
        self.encoder = _mlp((in_features + c,) + hidden, rng).append(nn.ReLU())
        self.to_mu = nn.Linear(hidden[-1], latent, rng=rng)
        self.to_logvar = nn.Linear(hidden[-1], latent, rng=rng)
        self.decoder = _mlp((latent + c,) + hidden[::-1] + (in_features,), rng)
        if decoder == "gaussian":
            self.decoder_logvar = nn.Parameter(np.zeros((in_features,), np.float32))

    def _cond(self, x, y):
        if not self.num_classes:
            return x
        if y is None:
            raise ValueError(f"VAE: a conditional VAE ({self.num_classes} classes) needs labels")
        yy = np.asarray(y.data if isinstance(y, Tensor) else y).astype(np.int64).reshape(-1)
        onehot = np.zeros((len(yy), self.num_classes), np.float32)
        onehot[np.arange(len(yy)), yy] = 1.0
        like = x.data if isinstance(x, Tensor) else x
        dev = backend.device_of(like)
        oh = onehot.astype(like.dtype)
        return ops.concat([x, Tensor(oh) if dev == "cpu" else Tensor(oh, device=dev)], axis=1)

    def encode(self, x, y=None):
        """(μ, log σ²) of q(z|x[, y]), each (N, latent)."""
        h = self.encoder(self._cond(x, y))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z, y=None):
        """The decoder's logits (N, D): p(x|z) = Bernoulli(σ(l)), or Gaussian with mean σ(l)."""
        return self.decoder(self._cond(z, y))

    def log_px_z(self, logits, x):
        """log p(x|z) per example (N,) for decoder output ``logits``."""
        if self.decoder_kind == "bernoulli":
            return G.bernoulli_log_likelihood(logits, x)
        return G.gaussian_log_likelihood(x, sigmoid(logits), self.decoder_logvar)

    def mean(self, logits):
        """E[x|z]: σ(l) for both decoders."""
        return sigmoid(logits)

    def forward(self, x, eps, y=None):
        """(logits, μ, log σ²) with z = μ + σ ⊙ eps."""
        mu, logvar = self.encode(x, y)
        z = G.reparameterize(mu, logvar, eps)
        return self.decode(z, y), mu, logvar
