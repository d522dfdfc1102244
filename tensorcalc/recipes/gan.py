"""gan — generative adversarial networks on MNIST-10k or Fashion-MNIST: minimax and
non-saturating GANs, DCGAN, WGAN with weight clipping, WGAN-GP; scored by FID and the classifier
inception score on the shipped LeNet of that data set (``tensorcalc/models/weights/``).

Models (``--arch dcgan``, the default): G: z (64) -> fc 64·7·7 -> BN -> ReLU -> convT 64→32 -> BN
-> ReLU -> convT 32→1 -> tanh; D: conv 1→32 -> LReLU -> conv 32→64 [-> BN] -> LReLU -> fc 1
(no batch norm in a WGAN-GP critic). ``--arch mlp``: 256-256 MLPs. Initial weights
(``--init``): the DCGAN paper's N(0, 0.02²), batch-norm γ ~ N(1, 0.02²) for the non-saturating
and minimax losses; the layers' own (Kaiming-uniform) for the Wasserstein ones. Images are
scaled to [−1, 1]. One *step* is one generator update after ``n_critic`` discriminator updates,
each on its own minibatch of ``batch_size`` real images (``--steps`` counts generator steps).

``--loss`` and the papers' settings it brings (every flag not given takes them; a given one
wins, and ``config.json`` records what ran): ``nonsaturating`` / ``minimax`` (Adam 2e-4,
β = (0.5, 0.999), n_critic 1, 6,225 steps); ``wgan`` (RMSProp 5e-5, clip ±0.01, n_critic 5);
``wgan-gp`` (Adam 1e-4, β = (0, 0.9), n_critic 5, λ = 10, 1,508 steps).

Every ``eval_every`` steps 2,000 samples of fixed noise are scored against the 2,000 test
images (FID on the classifier's 84-d features, classifier IS), and 64 of them become a frame of
``samples.gif``. The report puts every number beside the real-data floor (2,000 training
images) and uniform noise, and shows the class histogram of the generated images (mode
collapse), latent interpolations, both losses and the critic's Wasserstein estimate.
``tensorcalc evaluate RUN`` re-scores a saved generator.
"""

from __future__ import annotations

import os

import numpy as np

from .. import optim
from ..data import FASHION_MNIST_CLASSES, DataLoader, TensorDataset
from ..models.gan import (
    INITS,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    dcgan_init_,
)
from ..train import Loop
from ..train import report as R
from ..train.generative_metrics import GenerativeScorer
from ..train.generative_steps import GAN_KINDS, GANStep
from ..train.pipeline import seed_streams, write_json
from . import COMMON_DEFAULTS, Recipe, RecipeError, RunResult, register
from ._generative import (
    DATA_NAMES,
    GEN_DATASETS,
    history_series,
    image_data,
    images01,
    plot_class_histogram,
    plot_grid,
    plot_lines,
    write_gif,
)

DEFAULTS = {"loss": "nonsaturating", "arch": "dcgan", "steps": 6225, "lr": 2e-4, "beta1": 0.5,
            "beta2": 0.999, "n_critic": 1, "clip": 0.01, "gp_lambda": 10.0, "latent": 64,
            "batch_size": 64, "eval_every": 500, "eval_samples": 2000, "dataset": "mnist10k",
            "optimizer": "adam", "val_fraction": 0.0, "epochs": 1, "init": "dcgan"}

#: the papers' settings per loss (applied to every setting the user did not give)
LOSS_DEFAULTS = {
    "wgan": {"lr": 5e-5, "optimizer": "rmsprop", "n_critic": 5, "steps": 1508,
             "init": "default"},
    "wgan-gp": {"lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5, "steps": 1508,
                "init": "default"},
}


def resolve(cfg: dict, given=frozenset()) -> dict:
    """``cfg`` with the loss's own settings (:data:`LOSS_DEFAULTS`) for every key not in
    ``given`` (the keys the user set: those win, even where they equal a default)."""
    out = dict(cfg)
    for k, v in LOSS_DEFAULTS.get(cfg["loss"], {}).items():
        if k not in given:
            out[k] = v
    return out


def _models(cfg, rng):
    if cfg["arch"] == "dcgan":
        g = DCGANGenerator(cfg["latent"], rng=rng)
        d = DCGANDiscriminator(batchnorm=cfg["loss"] != "wgan-gp", rng=rng)
    else:
        g = MLPGenerator(cfg["latent"], rng=rng)
        d = MLPDiscriminator(rng=rng)
    if cfg.get("init", "default") == "dcgan":
        dcgan_init_(g, rng)
        dcgan_init_(d, rng)
    return g, d


def _optimizer(cfg, params):
    if cfg["optimizer"] == "rmsprop":
        return optim.RMSprop(list(params), lr=cfg["lr"])
    if cfg["optimizer"] != "adam":
        raise RecipeError("gan: --optimizer must be adam or rmsprop")
    return optim.Adam(list(params), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]))


def _check(cfg):
    if cfg["steps"] < 1 or cfg["n_critic"] < 1 or cfg["eval_every"] < 1:
        raise RecipeError("--steps, --n-critic and --eval-every must be >= 1")
    if not 0 <= cfg["beta1"] < 1 or not 0 <= cfg["beta2"] < 1:
        raise RecipeError("--beta1 and --beta2 must be in [0, 1)")
    if cfg["eval_samples"] < 100:
        raise RecipeError("--eval-samples must be >= 100")


def _has_tensorboard() -> bool:
    """TensorBoard event files where tensorboardX is installed (a bare GPU box may lack it)."""
    import importlib.util

    return importlib.util.find_spec("tensorboardX") is not None


_SCORERS: dict = {}


def scorer(dataset, n):
    """The FID/IS scorer against the first ``n`` test images (floor: the first ``n`` training
    images), cached per process."""
    key = (dataset, n)
    if key not in _SCORERS:
        (xtr, _), (xte, _) = images01(dataset)
        _SCORERS[key] = GenerativeScorer(xte[:n], xtr[:n], dataset=dataset)
    return _SCORERS[key]


def build(cfg, with_scorer=True):
    streams = seed_streams(cfg["seed"])
    g, d = _models(cfg, streams["init"])
    sc = scorer(cfg["dataset"], cfg["eval_samples"]) if with_scorer else None
    step = GANStep(g, d, _optimizer(cfg, g.parameters()), _optimizer(cfg, d.parameters()),
                   kind=cfg["loss"], n_critic=cfg["n_critic"], clip=cfg["clip"],
                   gp_lambda=cfg["gp_lambda"], latent=cfg["latent"], rng=streams["train"],
                   scorer=sc, eval_samples=cfg["eval_samples"])
    return step, streams


def _run(cfg, run_dir, quiet=False, progress=None):
    _check(cfg)
    step, streams = build(cfg)
    (xtr, _), _ = images01(cfg["dataset"])
    if cfg["limit"]:
        xtr = xtr[:cfg["limit"]]
    real = (xtr.reshape(-1, 1, 28, 28) * 2.0 - 1.0).astype(np.float32)
    loader = DataLoader(TensorDataset(real), batch_size=cfg["batch_size"] * cfg["n_critic"],
                        shuffle=True, drop_last=True, rng=streams["loader"])
    if not quiet:
        print(f"gan ({cfg['loss']}, {cfg['arch']}): {len(real):,} "
              f"{DATA_NAMES[cfg['dataset']]} training images; "
              f"G {step.G.num_parameters():,} / D {step.D.num_parameters():,} parameters; "
              f"{cfg['steps']:,} generator steps × {cfg['n_critic']} critic steps, batch "
              f"{cfg['batch_size']}, {cfg['optimizer']} lr {cfg['lr']:g}"
              + (f" β = ({cfg['beta1']:g}, {cfg['beta2']:g})" if cfg["optimizer"] == "adam"
                 else ""), flush=True)
    loop = Loop(step, data=loader, steps=cfg["steps"], eval_every=cfg["eval_every"],
                val_data=0, out_dir=run_dir, monitor="val_fid", tensorboard=_has_tensorboard(),
                checkpoint_every=cfg["checkpoint_every"] or None, quiet=quiet,
                progress=progress, config=cfg)
    hist = loop.run()
    sc = step.scorer
    imgs = step.sample(step.eval_noise)
    s = sc(imgs)
    base = sc.baselines()
    test = {"fid": s["fid"], "is": s["is"], **{k: base[k] for k in ("floor_fid", "floor_is",
                                                                     "noise_fid", "noise_is")},
            "seconds_per_step": loop.train_seconds / max(loop.global_step, 1),
            "generator_steps": loop.global_step}
    if not quiet:
        print(f"FID {test['fid']:.2f}, classifier IS {test['is']:.2f} (real-data floor FID "
              f"{test['floor_fid']:.2f} / IS {test['floor_is']:.2f}; uniform noise FID "
              f"{test['noise_fid']:.0f} / IS {test['noise_is']:.2f}); "
              f"{test['seconds_per_step']:.3f} s per generator step", flush=True)
    figs = figures(step, cfg, hist, s, run_dir)
    rep = R.HTMLReport(f"gan ({cfg['loss']}, {cfg['arch']}) on {DATA_NAMES[cfg['dataset']]}",
                       f"{loop.global_step:,} generator steps")
    rep.cards([("FID (2,000 samples vs test)", f"{test['fid']:.2f}"),
               ("classifier IS", f"{test['is']:.2f}"),
               ("real-data floor FID / IS", f"{test['floor_fid']:.2f} / {test['floor_is']:.2f}"),
               ("uniform noise FID / IS", f"{test['noise_fid']:.0f} / {test['noise_is']:.2f}"),
               ("s per generator step", f"{test['seconds_per_step']:.3f}")])
    rows = [[r["step"], f"{r.get('val_fid', float('nan')):.2f}",
             f"{r.get('val_is', float('nan')):.2f}", f"{r.get('train_loss_d', 0):.4f}",
             f"{r.get('train_loss_g', 0):.4f}"] for r in hist]
    rep.section("Scores over training")
    rep.table(rows, ["generator step", "FID", "classifier IS", "loss D (mean)",
                     "loss G (mean)"])
    rep.section("Figures")
    for png, cap in figs:
        rep.figure(png, cap)
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    write_json(os.path.join(run_dir, "metrics.json"),
               {"test": test, "class_hist": s["class_hist"].tolist()})
    return RunResult(run_dir=run_dir, test=test, report=report, history=hist,
                     train_seconds=loop.train_seconds, config=cfg, model=step.G,
                     extra={"step": step})


def figures(step, cfg, hist, s, run_dir):
    figs = []
    if step.frames:
        labels = [f"step {r['step']:,}  FID {r.get('val_fid', float('nan')):.1f}"
                  for r in hist[-len(step.frames):]]
        gif = write_gif(step.frames, os.path.join(run_dir, "samples.gif"), labels=labels)
        figs.append((gif, "The same 64 noise vectors through the generator at every "
                          "evaluation (animated GIF)."))
    last = step.sample(step.grid_noise)
    figs.append((plot_grid(last, os.path.join(run_dir, "samples.png"), 8,
                           f"fixed-noise samples after {hist[-1]['step']:,} steps"),
                 "Samples of the final generator (eval mode)."))
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(6):
        za, zb = rng.standard_normal((2, step.latent)).astype(np.float32)
        t = np.linspace(0, 1, 10, dtype=np.float32)[:, None]
        rows.append(step.sample((1 - t) * za + t * zb))
    figs.append((plot_grid(np.concatenate(rows), os.path.join(run_dir, "interpolation.png"), 10,
                           "latent interpolation"),
                 "Straight lines between two noise vectors, through the generator."))
    tr = np.asarray(step.trace)
    x = np.arange(1, len(tr) + 1)
    w = max(1, len(tr) // 100)
    smooth = lambda v: np.convolve(v, np.ones(w) / w, mode="valid")  # noqa: E731
    xs = x[w - 1:]
    figs.append((plot_lines([("loss D" if not step.wasserstein else "loss critic (incl. GP)",
                              xs, smooth(tr[:, 0])), ("loss G", xs, smooth(tr[:, 1]))],
                            os.path.join(run_dir, "losses.png"), "generator step",
                            f"loss (moving mean of {w})", "both losses"),
                 "The discriminator's (critic's) loss, mean over its n_critic updates, and the "
                 f"generator's loss at every generator step (moving mean of {w} steps)."))
    if step.wasserstein:
        figs.append((plot_lines([("E f(real) − E f(fake)", xs, smooth(tr[:, 2]))],
                                os.path.join(run_dir, "wasserstein.png"), "generator step",
                                "Wasserstein estimate", "the critic's Wasserstein estimate"),
                     "The critic's estimate of the Wasserstein-1 distance (before the penalty)"
                     "; it falls as the generator improves."))
    else:
        figs.append((plot_lines([("mean D(real)", xs, smooth(tr[:, 2]))],
                                os.path.join(run_dir, "d_real.png"), "generator step",
                                "probability", "the discriminator on real images"),
                     "The discriminator's mean probability that a real image is real."))
    base = step.scorer.baselines()
    figs.append((plot_lines(history_series(hist, ["val_fid"], "step"),
                            os.path.join(run_dir, "fid.png"), "generator step", "FID",
                            "FID on the shipped classifier's features",
                            hlines=[(base["floor_fid"], "real-data floor")], logy=True),
                 f"FID of {cfg['eval_samples']:,} fixed-noise samples against the test images;"
                 f" uniform noise scores {base['noise_fid']:.0f}."))
    fashion = cfg["dataset"] == "fashion-mnist"
    figs.append((plot_class_histogram(s["class_hist"], os.path.join(run_dir, "classes.png"),
                                      class_names=list(FASHION_MNIST_CLASSES) if fashion
                                      else None,
                                      title="classes of the generated "
                                            + ("images" if fashion else "digits")),
                 "The shipped classifier's labels for the generated samples: a missing or "
                 "dominant class is mode collapse made visible."))
    return figs


def evaluate_checkpoint(ck, cfg, **_):
    from .. import serialization as S

    cfg = {**COMMON_DEFAULTS, **DEFAULTS, **cfg}  # the run's own (resolved) settings
    step, _ = build(cfg)
    S.load_state(ck, modules={"generator": step.G}, strict=False)
    s = step.scorer(step.sample(step.eval_noise))
    base = step.scorer.baselines()
    return {"checkpoint": ck, "recipe": "gan", "data": cfg["dataset"],
            "n": cfg["eval_samples"],
            "test": {"fid": s["fid"], "is": s["is"], "floor_fid": base["floor_fid"],
                     "floor_is": base["floor_is"], "noise_fid": base["noise_fid"],
                     "noise_is": base["noise_is"]}}


register(Recipe(
    name="gan",
    description="GANs: minimax / non-saturating DCGAN, WGAN (clipping), WGAN-GP; FID and "
                "classifier IS on a shipped LeNet",
    defaults=DEFAULTS, data=image_data, model=lambda cfg, data, rng: _models(cfg, rng)[0],
    run=_run, evaluate=evaluate_checkpoint, resolve=resolve,
    help={"loss": "minimax | nonsaturating | wgan | wgan-gp (brings the paper's settings)",
          "arch": "dcgan | mlp", "steps": "generator steps",
          "beta1": "Adam β₁", "beta2": "Adam β₂",
          "n_critic": "discriminator (critic) steps per generator step",
          "clip": "wgan: clip the critic's weights to ±clip",
          "gp_lambda": "wgan-gp: the gradient penalty's weight λ",
          "latent": "noise dimensions",
          "init": "dcgan: N(0, 0.02²) weights, BN γ ~ N(1, 0.02²) (Radford et al.) | default: "
                  "the layers' own (Kaiming-uniform)",
          "eval_every": "score FID/IS every N generator steps",
          "eval_samples": "samples scored (and test images they are compared with)",
          "epochs": "(unused: GANs are counted in generator steps, --steps)"},
    choices={"loss": GAN_KINDS, "arch": ("dcgan", "mlp"), "dataset": GEN_DATASETS,
             "init": INITS},
    headline=("fid", "FID"),
))
