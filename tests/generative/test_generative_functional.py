"""The generative composites: the WGAN-GP penalty's double backward through the generic checker
(a small conv critic), ε inside the norm, the closed-form KL against Monte Carlo, the ELBO
against a Monte Carlo estimate of its definition, the IWAE bound's order, the GAN losses."""

import math

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.functional import generative as G
from tensorcalc.tensor import Tensor


def _critic(x, w, b, v):
    """A small conv critic (no batch norm): conv 3×3 s2 (1 -> 2) -> leaky ReLU -> fc 1."""
    h = F.leaky_relu(F.conv2d(x, w, b, stride=2, padding=1), 0.2)
    return h.reshape((h.shape[0], -1)) @ v


def _params(rng):
    return (rng.standard_normal((2, 1, 3, 3)) * 0.5, rng.standard_normal(2) * 0.1,
            rng.standard_normal(2 * 3 * 3) * 0.5)


def test_gradient_penalty_double_backward_passes_gradcheck():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((3, 1, 6, 6)), rng.standard_normal((3, 1, 6, 6))
    u = rng.random(3)
    w, b, v = _params(rng)

    def penalty(w, b, v, fake):  # differentiable in the critic's parameters and the fakes
        return G.gradient_penalty(lambda x: _critic(x, w, b, v), real, fake, u, lam=10.0)

    rep = tc.gradcheck(penalty, w, b, v, fake, atol=1e-5, rtol=1e-4)
    assert rep.ok if hasattr(rep, "ok") else True
    # and the critic itself to second order (what the penalty's backward differentiates)
    tc.gradgradcheck(lambda x, w, v: _critic(x, w, b, v), real, w, v, atol=1e-5, rtol=1e-4)


def test_gradient_penalty_matches_per_example_norms_by_hand():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 1))
    real, fake = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    u = rng.random(4)
    pen, norms = G.gradient_penalty(lambda x: (x @ W).reshape((-1,)) ** 2, real, fake, u,
                                    lam=10.0, return_norms=True)
    xh = u[:, None] * real + (1 - u[:, None]) * fake
    g = 2 * (xh @ W) * W.T                       # ∇ₓ (xᵀW)² per example
    n = np.sqrt((g * g).sum(1) + 1e-12)
    np.testing.assert_allclose(norms.data, n, rtol=1e-10)
    np.testing.assert_allclose(pen.item(), 10 * ((n - 1) ** 2).mean(), rtol=1e-10)


def test_zero_gradient_gives_a_finite_penalty_gradient():
    """ε inside the square root: a critic flat in x (zero gradient) must not produce NaN."""
    w = Tensor(np.ones((3, 1)), requires_grad=True)
    real, fake = np.zeros((2, 3)), np.zeros((2, 3))
    # f(x) = (x W)² has zero gradient at x = 0
    pen = G.gradient_penalty(lambda x: ((x @ w) ** 2).reshape((-1,)), real, fake,
                             np.full(2, 0.5))
    (gw,) = tc.gradients([pen], [w])
    assert np.isfinite(pen.item()) and abs(pen.item() - 10 * (1 - 1e-6) ** 2) < 1e-4
    assert np.all(np.isfinite(gw.data))


def test_gaussian_kl_closed_form_against_monte_carlo():
    rng = np.random.default_rng(2)
    mu, logvar = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)) * 0.5
    kl = G.gaussian_kl(Tensor(mu), Tensor(logvar)).data
    eps = rng.standard_normal((200_000, 2, 3))
    z = mu + np.exp(0.5 * logvar) * eps
    logq = (-0.5 * (eps ** 2 + logvar + math.log(2 * math.pi))).sum(-1)
    logp = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum(-1)
    mc = (logq - logp).mean(0)
    np.testing.assert_allclose(kl, mc, atol=0.02)
    # against a non-standard Gaussian too
    mu2, lv2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)) * 0.3
    kl2 = G.gaussian_kl(Tensor(mu), Tensor(logvar), Tensor(mu2), Tensor(lv2)).data
    logp2 = (-0.5 * ((z - mu2) ** 2 / np.exp(lv2) + lv2 + math.log(2 * math.pi))).sum(-1)
    np.testing.assert_allclose(kl2, (logq - logp2).mean(0), atol=0.03)


def test_elbo_equals_a_monte_carlo_estimate_of_its_definition():
    """ELBO = E_q[log p(x|z)] − KL = E_q[log p(x|z) + log p(z) − log q(z|x)]."""
    rng = np.random.default_rng(3)
    n, d, D = 2, 2, 4
    mu, logvar = rng.standard_normal((n, d)), rng.standard_normal((n, d)) * 0.3
    A = rng.standard_normal((d, D))
    x = (rng.random((n, D)) < 0.5).astype(float)
    eps = rng.standard_normal((100_000, n, d))
    z = mu + np.exp(0.5 * logvar) * eps
    logits = z @ A
    log_px = (x * logits - np.logaddexp(0, logits)).sum(-1)
    log_pz = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum(-1)
    log_q = (-0.5 * (eps ** 2 + logvar + math.log(2 * math.pi))).sum(-1)
    mc = (log_px + log_pz - log_q).mean(0)
    # the library's pieces: reparameterised samples, bernoulli_log_likelihood, closed-form KL
    S = 20000
    zt = G.reparameterize(Tensor(mu), Tensor(logvar), Tensor(eps[:S]))      # (S, n, d)
    lp = G.bernoulli_log_likelihood(Tensor((zt.data @ A).reshape(S * n, D)),
                                    Tensor(np.tile(x, (S, 1)))).data.reshape(S, n)
    e = G.elbo(Tensor(lp.mean(0)), G.gaussian_kl(Tensor(mu), Tensor(logvar))).data
    np.testing.assert_allclose(e, mc, atol=0.05)
    # IWAE: L_1 ≤ L_k ≤ log p(x) with the bound increasing in k (on average)
    log_w = (log_px + log_pz - log_q)[:1000 * 50].reshape(50, 1000, n)
    lks = [G.iwae_bound(Tensor(log_w[:k]), axis=0).data.mean(0) for k in (1, 5, 50)]
    assert np.all(lks[0] <= lks[1] + 1e-9) and np.all(lks[1] <= lks[2] + 1e-9)
    se = log_w[0].std(0) / math.sqrt(1000)      # L_1 is a 1,000-draw mean: within 4 s.e.
    assert np.all(np.abs(lks[0] - mc) < 4 * se)


def test_gaussian_log_likelihood_and_log_normal():
    rng = np.random.default_rng(4)
    x, m, lv = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    ref = (-0.5 * ((x - m) ** 2 / np.exp(lv) + lv + math.log(2 * math.pi))).sum(1)
    np.testing.assert_allclose(G.gaussian_log_likelihood(Tensor(x), Tensor(m), Tensor(lv)).data,
                               ref, rtol=1e-12)
    np.testing.assert_allclose(G.log_normal(Tensor(x), Tensor(m), Tensor(np.tile(lv, (3, 1))))
                               .data, ref, rtol=1e-12)


def test_gan_losses_and_their_gradients():
    lr, lf = np.array([2.0, -1.0]), np.array([30.0, -3.0])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    d = G.gan_d_loss(Tensor(lr), Tensor(lf)).item()
    # −log σ(l) = log(1 + e^{−l}), −log(1 − σ(l)) = log(1 + e^{l}) (1 − σ(30) would round)
    np.testing.assert_allclose(d, np.logaddexp(0, -lr).mean() + np.logaddexp(0, lf).mean(),
                               rtol=1e-12)
    f = Tensor(lf, requires_grad=True)
    (gm,) = tc.gradients([G.gan_g_loss(f, "minimax")], [f])
    f2 = Tensor(lf, requires_grad=True)
    (gn,) = tc.gradients([G.gan_g_loss(f2, "nonsaturating")], [f2])
    # minimax saturates where D rejects the fake (l = −3 → small), non-saturating does not
    np.testing.assert_allclose(gm.data, -sig(lf) / 2, rtol=1e-10)
    np.testing.assert_allclose(gn.data, -sig(-lf) / 2, rtol=1e-10)
    assert abs(gn.data[1]) > 10 * abs(gm.data[1])
    assert G.wasserstein_critic_loss(Tensor(lr), Tensor(lf)).item() == pytest.approx(
        lf.mean() - lr.mean())
    with pytest.raises(ValueError, match="kind"):
        G.gan_g_loss(f, "hinge")
