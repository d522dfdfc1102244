"""VAEStep and GANStep on a device (the stand-in always, CUDA where present): every tensor they
make lives where the model lives, and the figures come back as host floats; the device run
matches the CPU run."""

from __future__ import annotations

import numpy as np
import pytest

from tensorcalc import optim
from tensorcalc.models.gan import DCGANDiscriminator, DCGANGenerator
from tensorcalc.models.vae import VAE
from tensorcalc.train.generative_steps import GANStep, VAEStep


def _vae(dev):
    m = VAE(784, 16, 3, num_classes=10, rng=0).to(dev)
    return VAEStep(m, optim.Adam(m.parameters(), lr=1e-3), binarize="dynamic", rng=1)


def _gan(dev, kind, nc, bn):
    g = DCGANGenerator(8, channels=(8, 4), rng=0).to(dev)
    d = DCGANDiscriminator(channels=(4, 8), batchnorm=bn, rng=1).to(dev)
    return GANStep(g, d, optim.Adam(g.parameters()), optim.Adam(d.parameters()), kind=kind,
                   n_critic=nc, rng=2, eval_samples=8, grid=4,
                   scorer=lambda im: {"fid": float(im.mean()), "is": 1.0})


def test_vae_step_on_device_matches_cpu(device):
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 784)).astype(np.float32), rng.integers(0, 10, 32)
    a, b = _vae("cpu"), _vae(device)
    fa, fb = a.step((x, y)), b.step((x, y))
    assert fa.keys() == fb.keys() and all(isinstance(v, (int, float)) for v in fb.values())
    assert fb["loss"] == pytest.approx(fa["loss"], rel=1e-4)
    assert b.evaluate((x, y))["elbo"] == pytest.approx(a.evaluate((x, y))["elbo"], rel=1e-4)
    np.testing.assert_allclose(b.iwae(x[:4], y[:4], k=3), a.iwae(x[:4], y[:4], k=3), rtol=1e-4)


@pytest.mark.parametrize("kind, nc, bn", [("nonsaturating", 1, True), ("wgan-gp", 2, False),
                                          ("wgan", 2, True)])
def test_gan_step_on_device_matches_cpu(device, kind, nc, bn):
    real = (np.random.default_rng(0).random((16 * nc, 1, 28, 28)) * 2 - 1).astype(np.float32)
    a, b = _gan("cpu", kind, nc, bn), _gan(device, kind, nc, bn)
    fa, fb = a.step((real,)), b.step((real,))
    for k in fa:
        assert fb[k] == pytest.approx(fa[k], rel=1e-3, abs=1e-5), k
    assert b.evaluate() == pytest.approx(a.evaluate(), rel=1e-4)
    assert b.frames[0].shape == (4, 1, 28, 28) and isinstance(b.frames[0], np.ndarray)
