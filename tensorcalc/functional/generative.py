"""Generative-model composites: the VAE's reparameterisation, closed-form KL, likelihoods, the
ELBO and the importance-weighted (IWAE) bound; the GAN losses (minimax, non-saturating,
Wasserstein) and the WGAN-GP gradient penalty. Built from primitives: no derivative code here
(the penalty differentiates through ``tc.gradients(..., create_graph=True)``).

Shapes: a batch is (N, ...); the per-example functions sum over every axis but the first and
return (N,) — "nats per example" — so a loss is their mean over the batch.

VAE. With encoder q_φ(z|x) = N(μ, diag σ²), prior p(z) = N(0, I) and decoder p_θ(x|z):

    ELBO(x) = E_q[log p_θ(x|z)] − KL(q_φ(z|x) ‖ p(z))  ≤  log p_θ(x)
    z = μ + σ ⊙ ε,  ε ~ N(0, I)                         (reparameterisation: ∂z/∂μ = 1,
                                                          ∂z/∂σ = ε, so the gradient has low
                                                          variance)
    KL = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)             (closed form for two Gaussians)

IWAE (Burda et al. 2016). With k samples z_i ~ q(z|x) and weights w_i = p(x, z_i)/q(z_i|x):

    L_k = log (1/k) Σ_i w_i = logsumexp_i(log w_i) − log k,   L_1 = ELBO ≤ L_k ≤ L_{k+1} → log p(x)

so −L_k for large k (k = 100 here) estimates the negative log-likelihood; ELBO − L_k is the gap.

GANs (Goodfellow et al. 2014), with discriminator logits l = D(x), D's probability σ(l):

    L_D  = −E log σ(l_real) − E log(1 − σ(l_fake)) = E softplus(−l_real) + E softplus(l_fake)
    L_G  = E log(1 − σ(l_fake)) = −E softplus(l_fake)              (minimax: saturates when D
                                                                     wins, ∂/∂l = −σ(l) → 0)
    L_G  = −E log σ(l_fake) = E softplus(−l_fake)                   (non-saturating)

Wasserstein (Arjovsky et al. 2017; Gulrajani et al. 2017), critic f:

    L_f = E f(x_fake) − E f(x_real) (+ λ E (‖∇_x̂ f(x̂)‖₂ − 1)²,  x̂ = u x_real + (1 − u) x_fake)
    L_G = −E f(x_fake)

and −L_f without the penalty is the critic's estimate of the Wasserstein-1 distance.
"""

from __future__ import annotations

import math

from .. import ops
from ..autodiff import mode as _mode
from ..autodiff.engine import gradients
from ..ops._util import shape_of
from ..tensor import Tensor

__all__ = ["reparameterize", "gaussian_kl", "bernoulli_log_likelihood",
           "gaussian_log_likelihood", "log_normal", "elbo", "iwae_bound", "gan_d_loss",
           "gan_g_loss", "wasserstein_critic_loss", "wasserstein_g_loss", "gradient_penalty",
           "interpolates"]

LOG_2PI = math.log(2.0 * math.pi)


def _sum_per_example(x):
    """Σ over every axis but the first: (N, ...) -> (N,)."""
    nd = len(shape_of(x))
    return x.sum(axis=tuple(range(1, nd))) if nd > 1 else x


def reparameterize(mu, logvar, eps):
    """z = μ + exp(½ log σ²) ⊙ ε for a given ε ~ N(0, I) of μ's shape, or (k, *μ's shape) for k
    samples per example (randomness explicit: the caller draws ε from its own rng)."""
    se, sm = tuple(shape_of(eps)), tuple(shape_of(mu))
    if se != sm and se[1:] != sm:
        raise ValueError(f"reparameterize: eps must have mu's shape {sm} (or (k, *{sm})), got "
                         f"{se}")
    return mu + ops.exp(logvar * 0.5) * eps


def gaussian_kl(mu, logvar, mu2=None, logvar2=None):
    """KL(N(μ, diag σ²) ‖ N(μ₂, diag σ₂²)) per example, (N,); the prior N(0, I) by default:

        KL = ½ Σ_j [σ_j²/σ₂_j² + (μ_j − μ₂_j)²/σ₂_j² − 1 + log σ₂_j² − log σ_j²]
           = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)            for μ₂ = 0, σ₂ = 1
    """
    if mu2 is None and logvar2 is None:
        return _sum_per_example((mu * mu + ops.exp(logvar) - logvar - 1.0) * 0.5)
    mu2 = 0.0 if mu2 is None else mu2
    logvar2 = 0.0 if logvar2 is None else logvar2
    d = mu - mu2
    inv2 = math.exp(-logvar2) if isinstance(logvar2, (int, float)) else ops.exp(-logvar2)
    return _sum_per_example((ops.exp(logvar) * inv2 + d * d * inv2 - 1.0 + logvar2 - logvar)
                            * 0.5)


def bernoulli_log_likelihood(logits, x):
    """log p(x | z) = Σ_d [x_d log σ(l_d) + (1 − x_d) log(1 − σ(l_d))] = Σ_d [x_d l_d −
    softplus(l_d)] per example, (N,). For x ∈ {0, 1} a Bernoulli log-probability; for grey
    levels x ∈ [0, 1] the (continuous) negative binary cross-entropy used by the Kingma–Welling
    VAE on MNIST — then it is not a normalised density, and the figure is "BCE nats"."""
    return _sum_per_example(logits * x - ops.softplus(logits))


def gaussian_log_likelihood(x, mean, logvar=0.0):
    """log N(x; mean, diag exp(logvar)) per example, (N,):
    −½ Σ_d [(x_d − m_d)² e^{−v_d} + v_d + log 2π]. ``logvar`` may be a scalar, a Tensor
    broadcasting against x (a learned per-pixel variance), or a float."""
    d = x - mean
    if isinstance(logvar, (int, float)):
        term = d * d * math.exp(-logvar) + (logvar + LOG_2PI)
    else:
        term = d * d * ops.exp(-logvar) + logvar + LOG_2PI
    return _sum_per_example(term * -0.5)


def log_normal(z, mu=None, logvar=None):
    """log N(z; μ, diag σ²) per example (the standard normal without μ, log σ²), (N,)."""
    if mu is None:
        return _sum_per_example((z * z + LOG_2PI) * -0.5)
    d = z - mu
    return _sum_per_example((d * d * ops.exp(-logvar) + logvar + LOG_2PI) * -0.5)


def elbo(log_px_z, kl, beta: float = 1.0):
    """The (β-weighted) evidence lower bound per example: log p(x|z) − β KL (β = 1: the ELBO;
    β > 1: the β-VAE objective, no longer a bound on log p(x))."""
    return log_px_z - kl * beta if beta != 1.0 else log_px_z - kl


def iwae_bound(log_w, axis: int = 0):
    """L_k = logsumexp_i(log w_i) − log k over ``axis`` (the k samples): the importance-weighted
    bound, ≥ the ELBO (k = 1) and increasing to log p(x) as k grows."""
    k = shape_of(log_w)[axis]
    return ops.logsumexp(log_w, axis=axis) - math.log(k)


# ------------------------------------------------------------------------------------- GANs
GAN_LOSSES = ("minimax", "nonsaturating")


def gan_d_loss(real_logits, fake_logits):
    """The discriminator's cross-entropy: E softplus(−l_real) + E softplus(l_fake)."""
    return ops.softplus(-real_logits).mean() + ops.softplus(fake_logits).mean()


def gan_g_loss(fake_logits, kind: str = "nonsaturating"):
    """The generator's loss: 'minimax' E log(1 − σ(l)) = −E softplus(l) (Goodfellow's game; its
    gradient vanishes when D rejects the fakes), or 'nonsaturating' −E log σ(l) =
    E softplus(−l) (same fixed point, strong gradients early)."""
    if kind == "minimax":
        return -ops.softplus(fake_logits).mean()
    if kind == "nonsaturating":
        return ops.softplus(-fake_logits).mean()
    raise ValueError(f"gan_g_loss: kind must be one of {', '.join(GAN_LOSSES)}, got {kind!r}")


def wasserstein_critic_loss(real_scores, fake_scores):
    """E f(x_fake) − E f(x_real): the critic minimises it; its negative estimates W₁."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_g_loss(fake_scores):
    """−E f(x_fake)."""
    return -fake_scores.mean()


def interpolates(real, fake, u):
    """x̂ = u ⊙ x_real + (1 − u) ⊙ x_fake with one u ∈ [0, 1] per example (u of shape (N,) or
    broadcastable, e.g. (N, 1, 1, 1))."""
    n = shape_of(real)[0]
    nd = len(shape_of(real))
    us = tuple(shape_of(u))
    if us == (n,):
        u = u.reshape((n,) + (1,) * (nd - 1))
    return fake + (real - fake) * u


def gradient_penalty(critic, real, fake, u, lam: float = 10.0, eps: float = 1e-12,
                     return_norms: bool = False):
    """The WGAN-GP penalty λ · mean_n (‖∇_x̂ f(x̂_n)‖₂ − 1)² on x̂ = interpolates(real, fake, u).

    Each example's gradient is flattened and normed on its own (Σ over every axis but the first)
    — f's gradient w.r.t. x̂ of Σ_n f(x̂_n) is per example because the critic treats examples
    independently (no batch norm in a WGAN-GP critic). The norm is √(Σ g² + ε): ε inside the
    square root keeps the penalty's own gradient finite where g = 0 (√ has an infinite slope
    at 0: with ε outside, a zero gradient gives NaN — the PyTorch pitfall). The gradient is
    taken with ``create_graph=True`` only w.r.t. x̂ (not the critic's parameters), so the
    penalty is differentiable w.r.t. the critic's parameters (double backward) and, through
    ``fake``, the generator's.
    """
    outer = _mode.is_grad_enabled()
    # the inner gradient is always taken (like a gradient inside any loss), even when the
    # caller evaluates the penalty under no_grad; its graph is kept only if the caller records
    with _mode.enable_grad():
        x_hat = interpolates(real, fake, u)
        if not (isinstance(x_hat, Tensor) and x_hat.requires_grad):
            x_hat = Tensor(x_hat.data if isinstance(x_hat, Tensor) else x_hat,
                           requires_grad=True)
        scores = critic(x_hat)
        (g,) = gradients([scores.sum()], [x_hat], create_graph=outer)
    norms = ops.sqrt(_sum_per_example(g * g) + eps)
    pen = ((norms - 1.0) ** 2).mean() * lam
    return (pen, norms) if return_norms else pen
