"""vae — variational autoencoder (Kingma & Welling 2014) on MNIST-10k (or Fashion-MNIST).

MLP 784-400-(20, 20)-400-784 by default (``--hidden``, ``--latent``), Adam 1e-3, batch 128. The
encoder gives q(z|x) = N(μ, diag σ²); z = μ + σ ⊙ ε; the decoder a Bernoulli (default: grey-level
BCE, or ``--binarize`` for binary images, fixed stochastic binarisation with seed 0 so every run
sees the same data) or a Gaussian (``--decoder gaussian``, learned per-pixel variance). The loss
is the negative ELBO, −E log p(x|z) + β KL (``--beta`` > 1: β-VAE); its two terms are logged
separately. ``--conditional``: the one-hot class is appended to the encoder's input and to z (a
CVAE); the shipped classifier then labels class-conditional samples.

After training, the test split is scored by the negative ELBO and by the importance-weighted
bound with k = ``--iw-samples`` (IWAE, Burda et al. 2016): −L_k estimates −log p(x) from
above, and ELBO − L_k is the gap a better posterior would close. Figures: reconstructions,
samples, a 2-D latent manifold grid, latent interpolation, the bound against k, learning curves.
``tensorcalc evaluate RUN`` re-scores a saved run (negative ELBO and IWAE NLL).
"""

from __future__ import annotations

import os

import numpy as np

from ..autodiff import mode as _mode
from ..data import DataLoader, TensorDataset
from ..models.vae import DECODERS, VAE
from ..tensor import Tensor
from ..train import Loop
from ..train import report as R
from ..train.generative_steps import VAEStep
from ..train.pipeline import make_optimizer, seed_streams, write_json
from . import Recipe, RecipeError, RunResult, register
from ._generative import GEN_DATASETS, history_series, image_data, images01, plot_grid, plot_lines

DEFAULTS = {"epochs": 75, "lr": 1e-3, "batch_size": 128, "hidden": (400,), "latent": 20,
            "decoder": "bernoulli", "binarize": False, "beta": 1.0, "conditional": False,
            "iw_samples": 100, "iw_images": 0, "dataset": "mnist10k", "val_fraction": 0.0,
            "optimizer": "adam", "eval_every": 5}

BINARIZE_SEED = 0


def _data(cfg):
    return image_data(cfg)


def _model(cfg, data, rng):
    return VAE(784, cfg["hidden"], cfg["latent"], decoder=cfg["decoder"],
               num_classes=10 if cfg["conditional"] else 0, rng=rng)


def arrays(cfg):
    """((x_train, y_train), (x_test, y_test)) flat in [0, 1], binarised when asked (fixed)."""
    (xtr, ytr), (xte, yte) = images01(cfg["dataset"])
    xtr, xte = xtr.reshape(-1, 784), xte.reshape(-1, 784)
    if cfg["limit"]:
        xtr, ytr = xtr[:cfg["limit"]], ytr[:cfg["limit"]]
    if cfg["binarize"]:
        rng = np.random.default_rng(BINARIZE_SEED)
        xtr = (rng.random(xtr.shape) < xtr).astype(np.float32)
        xte = (rng.random(xte.shape) < xte).astype(np.float32)
    return (xtr, ytr), (xte, yte)


def _check(cfg):
    if cfg["latent"] < 1:
        raise RecipeError(f"--latent must be >= 1, got {cfg['latent']}")
    if not cfg["beta"] > 0:
        raise RecipeError(f"--beta must be > 0, got {cfg['beta']}")
    if cfg["iw_samples"] < 0:
        raise RecipeError(f"--iw-samples must be >= 0, got {cfg['iw_samples']}")
    if cfg["binarize"] and cfg["decoder"] != "bernoulli":
        raise RecipeError("--binarize needs --decoder bernoulli")


def score(step, test, k: int, max_n: int | None = None) -> dict:
    """Test figures: negative ELBO, its terms, and −L_k (k importance samples)."""
    x, y = test
    cond = step.conditional
    figs = step.evaluate((x, y if cond else None))
    out = {"neg_elbo": figs["recon"] + figs["kl"], "recon": figs["recon"], "kl": figs["kl"],
           "loss": figs["loss"]}
    if k:
        n = len(x) if max_n is None else min(max_n, len(x))
        lk = step.iwae(x[:n], y[:n] if cond else None, k=k)
        out[f"nll_iwae{k}"] = float(-lk.mean())
        out["gap"] = out["neg_elbo"] - out[f"nll_iwae{k}"]
    return out


def _decode_mean(model, z, y=None):
    with _mode.no_grad():
        return np.asarray(model.mean(model.decode(Tensor(np.asarray(z, np.float32)), y)).data)


def figures(step, cfg, test, run_dir, history):
    m = step.model
    m.eval()
    x, y = test
    cond = step.conditional
    figs = []
    d = cfg["latent"]
    # reconstructions: originals over their means E[x|z=μ]
    with _mode.no_grad():
        mu, _ = m.encode(Tensor(x[:16]), y[:16] if cond else None)
    rec = _decode_mean(m, mu.data, y[:16] if cond else None)
    figs.append((plot_grid(np.concatenate([x[:16], rec]), os.path.join(run_dir,
                                                                       "reconstructions.png"),
                           16, "test images (top) and reconstructions E[x | z = μ(x)]",
                           ["data", "recon."]),
                 "Test images and the decoder's mean at the encoder's mean."))
    # samples from the prior (per class for a CVAE)
    rng = np.random.default_rng(0)
    if cond:
        yy = np.repeat(np.arange(10), 10)
        s = _decode_mean(m, rng.standard_normal((100, d)), yy)
        cap = "Samples z ~ N(0, I), one row per class label (the decoder's mean)."
    else:
        s = _decode_mean(m, rng.standard_normal((100, d)))
        cap = "Samples z ~ N(0, I) through the decoder (its mean σ(l), not a Bernoulli draw)."
    figs.append((plot_grid(s, os.path.join(run_dir, "samples.png"), 10, "samples"), cap))
    # 2-D latent manifold: the two latent dims with the largest mean KL (all of them for d = 2)
    with _mode.no_grad():
        mu_all, lv_all = m.encode(Tensor(x[:1000]), y[:1000] if cond else None)
    kl = 0.5 * (mu_all.data ** 2 + np.exp(lv_all.data) - 1 - lv_all.data).mean(0)
    a, b = np.argsort(-kl)[:2] if d >= 2 else (0, 0)
    from statistics import NormalDist

    q = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, 15)]
    grid = np.zeros((15 * 15, d), np.float32)
    for i, v in enumerate(q[::-1]):
        for j, u in enumerate(q):
            grid[i * 15 + j, a] = u
            if d >= 2:
                grid[i * 15 + j, b] = v
    gy = np.full(225, 3) if cond else None
    figs.append((plot_grid(_decode_mean(m, grid, gy), os.path.join(run_dir, "manifold.png"),
                           15, f"latent manifold (dims {a}, {b}; others 0)"),
                 "The decoder's mean over a 15 × 15 grid of Φ⁻¹(0.05 … 0.95) in the two latent "
                 "dimensions the encoder uses most (largest mean KL)"
                 + ("" if d == 2 else f"; the other {d - 2} are held at 0")
                 + ("; class 3 for the CVAE" if cond else "") + "."))
    # interpolation between test images' means
    rows = []
    for i in range(6):
        za, zb = mu_all.data[2 * i], mu_all.data[2 * i + 1]
        t = np.linspace(0, 1, 10)[:, None]
        zy = np.full(10, y[2 * i]) if cond else None
        rows.append(_decode_mean(m, (1 - t) * za + t * zb, zy))
    figs.append((plot_grid(np.concatenate(rows), os.path.join(run_dir, "interpolation.png"),
                           10, "latent interpolation"),
                 "Straight lines between the encodings μ(x) of two test images, decoded."))
    # the bound against k (ELBO-vs-NLL gap)
    if cfg["iw_samples"]:
        ks = sorted({1, 2, 5, 10, 20, 50, cfg["iw_samples"]})
        n = min(500, cfg["iw_images"] or len(x), len(x))
        vals = [float(-step.iwae(x[:n], y[:n] if cond else None, k=k).mean()) for k in ks]
        figs.append((plot_lines([("−L_k (IWAE bound)", ks, vals)],
                                os.path.join(run_dir, "iwae_gap.png"), "k (importance samples)",
                                "nats per image", f"bound vs k on {n} test images",
                                hlines=[(vals[0], "−ELBO (k = 1)")], logx=True),
                     "The importance-weighted bound tightens with k: −L_1 is the negative ELBO, "
                     "−L_k falls towards −log p(x); the drop is the ELBO-vs-NLL gap."))
    figs.append((plot_lines(history_series(history, ["train_loss", "val_loss", "train_kl",
                                                      "val_kl"]),
                            os.path.join(run_dir, "curves.png"), "epoch", "nats per image",
                            "loss (−ELBO) and KL term", logy=True),
                 "Training and test loss (recon + β KL) and the KL term per epoch."))
    m.train()
    return figs


def conditional_accuracy(step, dataset):
    """Share of class-conditional samples the shipped classifier labels as their class."""
    from ..train.generative_metrics import classifier_outputs

    yy = np.repeat(np.arange(10), 100)
    z = np.random.default_rng(1).standard_normal((1000, step.model.latent))
    step.model.eval()
    s = _decode_mean(step.model, z, yy)
    step.model.train()
    _, p = classifier_outputs(s, dataset)
    return float((p.argmax(1) == yy).mean())


def _run(cfg, run_dir, quiet=False, progress=None):
    _check(cfg)
    streams = seed_streams(cfg["seed"])
    train, test = arrays(cfg)
    model = _model(cfg, None, streams["init"])
    opt = make_optimizer(cfg, model.parameters())
    step = VAEStep(model, opt, beta=cfg["beta"], rng=streams["train"])
    loader = DataLoader(TensorDataset(*train), batch_size=cfg["batch_size"], shuffle=True,
                        rng=streams["loader"])
    what = ("binarised " if cfg["binarize"] else "grey-level ") + cfg["dataset"]
    if not quiet:
        print(f"vae: {what}, {len(train[0]):,} training / {len(test[0]):,} test images; "
              f"{model.num_parameters():,} parameters; {cfg['epochs']} epochs (batch "
              f"{cfg['batch_size']}, lr {cfg['lr']:g}, latent {cfg['latent']}"
              + (", conditional" if cfg["conditional"] else "")
              + (f", β = {cfg['beta']:g}" if cfg["beta"] != 1 else "") + ")", flush=True)
    val = (test[0], test[1] if cfg["conditional"] else None)
    loop = Loop(step, data=loader, epochs=cfg["epochs"], val_data=val,
                eval_every=cfg["eval_every"], out_dir=run_dir,
                checkpoint_every=cfg["checkpoint_every"] or None, quiet=quiet,
                progress=progress, config=cfg)
    hist = loop.run()
    res = score(step, test, cfg["iw_samples"], cfg["iw_images"] or None)
    if cfg["conditional"]:
        res["cond_acc"] = conditional_accuracy(step, cfg["dataset"])
    res["train_seconds"] = loop.train_seconds
    k = cfg["iw_samples"]
    if not quiet:
        print(f"test: −ELBO {res['neg_elbo']:.2f} nats/image (recon {res['recon']:.2f} + KL "
              f"{res['kl']:.2f})" + (f"; IWAE NLL (k = {k}) {res[f'nll_iwae{k}']:.2f}, gap "
                                     f"{res['gap']:.2f}" if k else "")
              + (f"; CVAE samples labelled as their class {100 * res['cond_acc']:.1f} %"
                 if "cond_acc" in res else ""), flush=True)
    figs = figures(step, cfg, test, run_dir, hist)
    rep = R.HTMLReport(f"vae on {what}", f"{cfg['epochs']} epochs, latent {cfg['latent']}, "
                                         f"{cfg['decoder']} decoder")
    cards = [("test −ELBO (nats/image)", f"{res['neg_elbo']:.2f}"),
             ("recon / KL", f"{res['recon']:.2f} / {res['kl']:.2f}")]
    if k:
        cards.insert(1, (f"IWAE NLL, k = {k}", f"{res[f'nll_iwae{k}']:.2f}"))
    if "cond_acc" in res:
        cards.append(("CVAE samples classified as their class", f"{100 * res['cond_acc']:.1f} %"))
    cards.append(("training time", f"{loop.train_seconds:.0f} s"))
    rep.cards(cards)
    rep.section("Figures")
    for png, cap in figs:
        rep.figure(png, cap)
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    write_json(os.path.join(run_dir, "metrics.json"), {"test": res, "epochs": cfg["epochs"]})
    return RunResult(run_dir=run_dir, test=res, report=report, history=hist,
                     train_seconds=loop.train_seconds, config=cfg, model=model,
                     extra={"step": step})


def evaluate_checkpoint(ck, cfg, k=None):
    from .. import serialization as S

    cfg = dict(get_defaults(), **cfg)
    model = _model(cfg, None, 0)
    S.load_state(ck, modules={"model": model}, strict=False)
    step = VAEStep(model, None, beta=cfg["beta"])
    _, test = arrays(cfg)
    res = score(step, test, int(k or cfg["iw_samples"]), cfg.get("iw_images") or None)
    return {"checkpoint": ck, "recipe": "vae", "data": cfg["dataset"], "n": len(test[0]),
            "test": res}


def get_defaults():
    from . import COMMON_DEFAULTS

    return dict(COMMON_DEFAULTS, **DEFAULTS)


register(Recipe(
    name="vae",
    description="variational autoencoder (Gaussian encoder, Bernoulli/Gaussian decoder; β-VAE, "
                "CVAE; ELBO and IWAE NLL)",
    defaults=DEFAULTS, data=_data, model=_model, run=_run,
    evaluate=lambda ck, cfg: evaluate_checkpoint(ck, cfg),
    help={"hidden": "hidden widths of the encoder (the decoder mirrors them), e.g. 400",
          "latent": "latent dimensions", "decoder": "bernoulli | gaussian",
          "binarize": "binarise the images (fixed stochastic binarisation, seed 0)",
          "beta": "KL weight β (1: the ELBO; > 1: β-VAE)",
          "conditional": "condition encoder and decoder on the class (CVAE)",
          "iw_samples": "importance samples k of the IWAE NLL estimate (0: skip)",
          "iw_images": "test images the IWAE NLL is computed on (0: all)",
          "eval_every": "score the test split every N epochs"},
    choices={"decoder": DECODERS, "dataset": GEN_DATASETS},
    headline=("neg_elbo", "test −ELBO"),
))
