"""Steps of the generative models, driven by the same :class:`~tensorcalc.train.loop.Loop` as
every other family (the math of the losses is in :mod:`tensorcalc.functional.generative`).

:class:`VAEStep` — one gradient step on the negative (β-)ELBO of a batch; it logs the two terms
separately (``recon`` = −E log p(x|z), ``kl``) beside ``loss`` = recon + β·kl and ``elbo``.
Binarised data: ``binarize="dynamic"`` draws x ~ Bernoulli(grey level) afresh for each batch from
the step's rng (data given already binarised needs nothing).

:class:`GANStep` — two models, two optimisers, alternating. One Loop step is one *generator*
step: the batch holds ``n_critic`` minibatches of real images; the discriminator/critic is
updated on each (fresh noise each time), then the generator once. Losses: "minimax",
"nonsaturating" (Goodfellow et al. 2014), "wgan" (weight clipping to ±``clip``), "wgan-gp"
(λ·gradient penalty on per-example interpolates, double backward). The critic's Wasserstein
estimate E f(real) − E f(fake) is logged for the Wasserstein losses; D's mean probabilities on
real and fake images for the others.

Both steps own every random choice through their own Generator (saved in checkpoints), so a run
killed with SIGKILL resumes bit-identically.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import mode as _mode
from ..backend import as_rng, to_numpy
from ..functional import generative as G
from ..tensor import Tensor
from .steps import Step

__all__ = ["VAEStep", "GANStep", "GAN_KINDS"]

GAN_KINDS = ("minimax", "nonsaturating", "wgan", "wgan-gp")


def _batch_xy(batch):
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def _np(x):
    """A NumPy array of a Tensor or array on any device (an explicit copy off a device)."""
    return to_numpy(x.data if isinstance(x, Tensor) else x)


def _on(x, device):
    """A Tensor of NumPy ``x`` on ``device``."""
    return Tensor(x) if device == "cpu" else Tensor(x, device=device)


class VAEStep(Step):
    """One step on the VAE objective mean_n [−log p(x_n|z_n) + β KL(q(z|x_n) ‖ p(z))] with
    z = μ + σ ⊙ ε, ε drawn from the step's rng.

    Args:
        model: a :class:`~tensorcalc.models.vae.VAE` (``model(x, eps, y)`` -> (logits, μ, log σ²),
            ``model.log_px_z(logits, x)``).
        optimizer: over ``model.parameters()``.
        beta: the KL weight (1: the ELBO).
        binarize: None, or "dynamic" (x ~ Bernoulli(x) per batch).
        rng: Generator or seed for ε (and dynamic binarisation).
        eval_seed: evaluation draws ε from a fresh Generator with this seed (it never consumes
            the training rng, so evaluating does not change the run).
    """

    guarded = ("loss",)

    def __init__(self, model, optimizer, beta: float = 1.0, binarize: str | None = None,
                 rng=None, eval_seed: int = 12345):
        super().__init__()
        if binarize not in (None, "dynamic"):
            raise ValueError(f"VAEStep: binarize must be None or 'dynamic', got {binarize!r}")
        self.model, self.optimizer = model, optimizer
        self.beta, self.binarize = float(beta), binarize
        self.rng = as_rng(rng)
        self.eval_seed = eval_seed
        self.modules = {"model": model}
        self.optimizers = {"optimizer": optimizer}

    @property
    def rngs(self) -> dict:
        return {"step": self.rng, **super().rngs}

    @property
    def conditional(self) -> bool:
        return bool(getattr(self.model, "num_classes", 0))

    def terms(self, x, y, rng):
        """(recon (N,), kl (N,), logits) for a batch, ε from ``rng``."""
        dev = self.device
        eps = _on(rng.standard_normal((len(x), self.model.latent)).astype(np.float32), dev)
        xt = x if isinstance(x, Tensor) else _on(np.asarray(x, dtype=np.float32), dev)
        logits, mu, logvar = self.model(xt, eps, y if self.conditional else None)
        return -self.model.log_px_z(logits, xt), G.gaussian_kl(mu, logvar), logits

    def step(self, batch) -> dict:
        x, y = _batch_xy(batch)
        x = _np(x).astype(np.float32)
        if self.binarize == "dynamic":
            x = (self.rng.random(x.shape) < x).astype(np.float32)
        rec, kl, _ = self.terms(x, y, self.rng)
        r, k = rec.mean(), kl.mean()
        loss = r + k * self.beta
        value = self.check_finite("loss", float(loss.item()))
        self.optimizer.zero_grad()
        loss.backward()
        self.after_backward("model")
        self.optimizer.step()
        self.after_update("model")
        rv, kv = float(r.item()), float(k.item())
        return {"loss": value, "recon": rv, "kl": kv, "elbo": -(rv + kv), "n": len(x)}

    def evaluate(self, data, batch_size: int = 500) -> dict:
        """Mean recon, kl, loss (β-weighted) and elbo over ``data`` = (x, y) arrays (or x)."""
        x, y = _batch_xy(data)
        x = _np(x).astype(np.float32)
        y = None if y is None else _np(y)
        rng = np.random.default_rng(self.eval_seed)
        sums = np.zeros(2)
        was = self.model.training
        self.model.eval()
        try:
            with _mode.no_grad():
                for i in range(0, len(x), batch_size):
                    yb = None if y is None else y[i:i + batch_size]
                    rec, kl, _ = self.terms(x[i:i + batch_size], yb, rng)
                    sums += [float(rec.sum().item()), float(kl.sum().item())]
        finally:
            self.model.train(was)
        r, k = sums / len(x)
        return {"loss": r + self.beta * k, "recon": r, "kl": k, "elbo": -(r + k)}

    def iwae(self, x, y=None, k: int = 100, batch_size: int = 100, seed: int = 0) -> np.ndarray:
        """Per-example importance-weighted bounds L_k (N,) (nats; −L_k estimates −log p(x)):
        log w = log p(x|z) + log p(z) − log q(z|x) for k draws z ~ q(z|x)."""
        x = _np(x).astype(np.float32)
        y = None if y is None else _np(y)
        rng = np.random.default_rng(seed)
        m, d = self.model, self.model.latent
        dev = self.device
        out = []
        was = m.training
        m.eval()
        try:
            with _mode.no_grad():
                for i in range(0, len(x), batch_size):
                    xb = x[i:i + batch_size]
                    n = len(xb)
                    yb = None if y is None else y[i:i + batch_size]
                    mu, logvar = (_np(t) for t in m.encode(_on(xb, dev), yb))
                    eps = rng.standard_normal((k, n, d)).astype(np.float32)
                    z = (mu + np.exp(0.5 * logvar) * eps).reshape(k * n, d)
                    yk = None if yb is None else np.tile(yb, k)
                    zt = _on(z, dev)
                    lpx = _np(m.log_px_z(m.decode(zt, yk), _on(np.tile(xb, (k, 1)), dev)))
                    lpz = _np(G.log_normal(Tensor(z)))
                    lqz = _np(G.log_normal(Tensor(z), Tensor(np.tile(mu, (k, 1))),
                                           Tensor(np.tile(logvar, (k, 1)))))
                    log_w = (lpx + lpz - lqz).reshape(k, n).astype(np.float64)
                    out.append(np.asarray(_np(G.iwae_bound(Tensor(log_w), axis=0))))
        finally:
            m.train(was)
        return np.concatenate(out).astype(np.float64)


class GANStep(Step):
    """One generator step of a GAN (see the module docstring).

    Args:
        generator, discriminator: Modules; ``generator(z)`` images in [−1, 1] like the real
            batch, ``discriminator(x)`` one logit/score per example, shape (N,).
        opt_g, opt_d: their optimisers.
        kind: one of :data:`GAN_KINDS`.
        n_critic: discriminator updates per generator update (the batch holds n_critic
            minibatches).
        clip: "wgan": the critic's weights are clipped to [−clip, clip] after each update.
        gp_lambda: "wgan-gp": the penalty's weight λ.
        latent: z's size (default: ``generator.latent``).
        rng: Generator or seed for z and the interpolation weights u.
        scorer: ``scorer(images in [0, 1]) -> {"fid", "is", ...}`` (a
            :class:`~tensorcalc.train.generative_metrics.GenerativeScorer`): each evaluation
            scores ``eval_samples`` images of fixed noise (seed ``eval_seed``) and keeps a frame
            of ``grid`` fixed-noise samples for the training GIF.
    """

    guarded = ("loss_d", "loss_g")

    def __init__(self, generator, discriminator, opt_g, opt_d, kind: str = "nonsaturating",
                 n_critic: int = 1, clip: float = 0.01, gp_lambda: float = 10.0, latent=None,
                 rng=None, scorer=None, eval_samples: int = 2000, grid: int = 64,
                 eval_seed: int = 4321):
        super().__init__()
        if kind not in GAN_KINDS:
            raise ValueError(f"GANStep: kind must be one of {', '.join(GAN_KINDS)}, got "
                             f"{kind!r}")
        if n_critic < 1:
            raise ValueError(f"GANStep: n_critic must be >= 1, got {n_critic}")
        self.G, self.D = generator, discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.kind, self.n_critic = kind, int(n_critic)
        self.clip, self.gp_lambda = float(clip), float(gp_lambda)
        self.latent = int(latent or generator.latent)
        self.rng = as_rng(rng)
        self.modules = {"generator": generator, "discriminator": discriminator}
        self.optimizers = {"g": opt_g, "d": opt_d}
        self.frames: list = []          # fixed-noise samples over training (see snapshot)
        self.trace: list = []           # per generator step: loss_d, loss_g, W estimate / D(real)
        self.scorer = scorer
        zr = np.random.default_rng(eval_seed)
        self.eval_noise = zr.standard_normal((eval_samples, self.latent)).astype(np.float32)
        self.grid_noise = self.eval_noise[:grid]

    @property
    def rngs(self) -> dict:
        return {"noise": self.rng, **super().rngs}

    @property
    def wasserstein(self) -> bool:
        return self.kind in ("wgan", "wgan-gp")

    def noise(self, n: int, rng=None) -> np.ndarray:
        return (rng or self.rng).standard_normal((n, self.latent)).astype(np.float32)

    def _d_update(self, real) -> dict:
        n = len(real)
        dev = self.device
        with _mode.no_grad():
            fake = self.G(_on(self.noise(n), dev))
        xr = _on(real, dev)
        fr, ff = self.D(xr), self.D(fake)
        figs = {}
        if self.wasserstein:
            loss = G.wasserstein_critic_loss(fr, ff)
            figs["wasserstein"] = -float(loss.item())
            if self.kind == "wgan-gp":
                u = _on(self.rng.random(n).astype(np.float32), dev)
                gp = G.gradient_penalty(self.D, xr, fake, u, lam=self.gp_lambda)
                figs["gp"] = float(gp.item())
                loss = loss + gp
        else:
            loss = G.gan_d_loss(fr, ff)
            figs["d_real"] = float(np.mean(1.0 / (1.0 + np.exp(-_np(fr)))))
            figs["d_fake"] = float(np.mean(1.0 / (1.0 + np.exp(-_np(ff)))))
        figs["loss_d"] = self.check_finite("loss_d", float(loss.item()))
        self.opt_d.zero_grad()
        loss.backward()
        self.after_backward("discriminator")
        self.opt_d.step()
        self.after_update("discriminator")
        if self.kind == "wgan":
            for p in self.D.parameters():
                p.data.clip(-self.clip, self.clip, out=p.data)
        return figs

    def step(self, batch) -> dict:
        real, _ = _batch_xy(batch)
        real = _np(real).astype(np.float32)
        if len(real) % self.n_critic:
            raise ValueError(f"GANStep: a batch of {len(real)} does not split into n_critic = "
                             f"{self.n_critic} equal minibatches")
        m = len(real) // self.n_critic
        sums: dict = {}
        for i in range(self.n_critic):
            for k, v in self._d_update(real[i * m:(i + 1) * m]).items():
                sums[k] = sums.get(k, 0.0) + v
        figs = {k: v / self.n_critic for k, v in sums.items()}
        fake = self.G(_on(self.noise(m), self.device))
        scores = self.D(fake)
        if self.wasserstein:
            loss_g = G.wasserstein_g_loss(scores)
        else:
            loss_g = G.gan_g_loss(scores, self.kind)
        figs["loss_g"] = self.check_finite("loss_g", float(loss_g.item()))
        self.opt_g.zero_grad()
        self.opt_d.zero_grad()
        loss_g.backward()
        self.after_backward("generator")
        self.opt_g.step()
        self.after_update("generator")
        figs["n"] = m
        self.trace.append((figs["loss_d"], figs["loss_g"],
                           figs.get("wasserstein", figs.get("d_real", float("nan")))))
        return figs

    def evaluate(self, data=None) -> dict:
        """FID / classifier IS of the fixed-noise samples (with a scorer); adds a GIF frame."""
        if self.scorer is None:
            return {}
        imgs = self.sample(self.eval_noise)
        self.frames.append(imgs[:len(self.grid_noise)].astype(np.float32))
        s = self.scorer(imgs)
        return {"fid": s["fid"], "is": s["is"]}

    def sample(self, z) -> np.ndarray:
        """Generated images in [0, 1] for noise z (eval mode: batch norm uses running
        statistics)."""
        was = self.G.training
        self.G.eval()
        try:
            with _mode.no_grad():
                outs = [_np(self.G(_on(np.asarray(z[i:i + 500], np.float32), self.device)))
                        for i in range(0, len(z), 500)]
        finally:
            self.G.train(was)
        return np.clip((np.concatenate(outs) + 1.0) * 0.5, 0.0, 1.0)

    def snapshot(self, z) -> None:
        """Keep the samples of fixed noise z as a frame of the training GIF (saved in
        checkpoints)."""
        self.frames.append(self.sample(z).astype(np.float32))

    def state_arrays(self) -> dict:
        out = {"frames": np.stack(self.frames)} if self.frames else {}
        if self.trace:
            out["trace"] = np.asarray(self.trace, dtype=np.float64)
        return out

    def load_state_arrays(self, arrays: dict) -> None:
        f = arrays.get("frames")
        self.frames = [] if f is None else [np.array(a) for a in f]
        t = arrays.get("trace")
        self.trace = [] if t is None else [tuple(map(float, r)) for r in t]
