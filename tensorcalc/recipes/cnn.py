"""Convolutional-network recipes: lenet, vgg, resnet, inception — and augment-study.

Each trains a network of :mod:`tensorcalc.models` on 28×28 grey images — MNIST-10k by default
(the fixed 8,000 / 2,000 split; the 2,000 held-out images are the test set), Fashion-MNIST with
``--dataset fashion-mnist`` — by minimising the cross-entropy −log softmax(z)_y of the logits z
(the negative log-likelihood of a categorical distribution).

The convolution layers compute y[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c] (⋆ cross-correlation;
H_out = ⌊(H + 2p − k)/s⌋ + 1): each filter W[o] is a small template slid over the image, and a
feature map y[n, o] shows where the template matches. Besides the standard report (curves,
confusion matrix, samples, mistakes), the report of a conv recipe shows the learned first-layer
filters, the feature maps of one test image after the first two convolutions, and — with
``--augment`` — what the augmentation does to a few training images.

Options shared by the four recipes:

``--augment crop,affine``
    label-preserving random transforms of each training batch, drawn fresh every step from the
    run's seed (:mod:`tensorcalc.data.augment`), applied in the order given. Names (see
    :data:`AUGMENTATIONS`): crop (pad 2, random 28×28 window: shifts of ±2 px), flip (mirror
    left–right: wrong for digits — a mirrored 3 is no digit — right for clothes), affine
    (rotation ±10°, shift ±8 %, scale 0.9–1.1), noise (Gaussian, σ = 0.1 of the pixel range),
    cutout (one 8×8 square set to background). ``none`` or empty: no augmentation.
``--train-fraction 0.1``
    train on a stratified random 10 % of the training images (seeded): the regime where
    augmentation matters most.

Defaults, chosen by measurement (MNIST-10k, seed 0: 7,200 training / 800 validation / 2,000
test images; Adam, cosine schedule, batch 64, ``--augment crop``; times of training on the
2-core box with one OpenBLAS thread, mostly while another training job shared the cores):

    recipe     model (parameters)                   epochs  lr     test accuracy   time
    lenet      LeNet-5 (61,706)                     30      2e-3   99.00 %          50 s idle
    vgg        widths 16,32,64, depth 2 (72,666)    6       3e-3   98.85 %         240 s
    resnet     widths 16,32,64, 1 block (77,754)    6       3e-3   98.55 %         150 s
    inception  width 16 (8,250)                     6       1e-2   96.00 %         210 s

Other settings measured: lenet 12 epochs 98.30 %, 20 epochs 98.60 % (affine 98.65 %,
crop+affine 98.45 %, lr 1e-3 98.25 %), 30 epochs with seeds 1 and 2: 98.60 % and 98.80 %;
resnet 4 epochs 97.75 %, 6 epochs with lr 1e-2 98.60 %; inception 6 epochs at lr 3e-3-5e-3
95.75 %, without augmentation 95.95 %, 10 epochs 96.75 % (it underfits: the small net is held
back by capacity, not by augmentation; a larger --width costs ~3× per step).
Fashion-MNIST (54,000 / 6,000 / 10,000 images): lenet --epochs 10 gives 90.00 % in 121 s of
training (two threads); ``--augment crop,flip`` suits clothes (mirroring keeps their class).

``tensorcalc train augment-study`` trains one of the four models on a reduced training set
with every augmentation setting in ``--sets`` (``none,crop,affine,crop+affine,...``; ``+``
combines), a few seeds each, and reports a table of test accuracy with and without
augmentation (:func:`augment_study`). Its defaults (LeNet-5 on 10 %: 800 images, 30 epochs,
2 seeds, 7 settings) run in about 90 s on two cores and gave, mean over the seeds:

    none 94.62 %   crop 95.75 %   affine 96.55 %   noise 94.97 %   cutout 95.58 %
    flip 91.27 %   crop+affine 96.23 %

— geometric jitter helps most; flipping hurts on digits (a mirrored 2 or 3 is not a digit of
its class: a transform is only an augmentation if it preserves the label).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import data as D
from .. import models
from ..autodiff.mode import no_grad
from ..data import augment as A
from ..nn import Conv2d
from ..tensor import Tensor
from ..train import report as R
from . import Data, Recipe, RecipeError, RunResult, register
from ._common import IMAGE_DATASETS, image_data

__all__ = ["AUGMENTATIONS", "parse_augment", "parse_sets", "make_augment", "subsample",
           "conv_figures", "first_conv_weights", "capture_conv_outputs", "augment_study"]

#: the augmentations ``--augment`` accepts, with what each does (for help texts and reports)
AUGMENTATIONS = {
    "crop": "pad 2 px with background, cut a random 28×28 window (shift ±2 px)",
    "flip": "mirror left–right with probability ½",
    "affine": "rotate ±10°, shift ±8 %, scale 0.9–1.1 (bilinear)",
    "noise": "add Gaussian noise, σ = 0.1 of the pixel range",
    "cutout": "set one random 8×8 square to background",
}


# ------------------------------------------------------------------------------ options
def parse_augment(spec) -> tuple[str, ...]:
    """``"crop,affine"`` (or ``"crop+affine"``) -> ``("crop", "affine")``; ``""`` / ``"none"``
    -> ``()``. Unknown or repeated names raise :class:`RecipeError` naming ``--augment``."""
    if spec is None:
        return ()
    if isinstance(spec, (tuple, list)):
        parts = [str(s) for s in spec]
    else:
        parts = str(spec).replace("+", ",").split(",")
    names = [p.strip().lower() for p in parts if p.strip()]
    if names == ["none"]:
        return ()
    for n in names:
        if n not in AUGMENTATIONS:
            raise RecipeError(f"--augment: unknown augmentation {n!r}; choose from "
                              f"{', '.join(AUGMENTATIONS)} (comma-separated, e.g. crop,affine) "
                              "or none")
    if len(set(names)) != len(names):
        raise RecipeError(f"--augment: {spec!r} names an augmentation twice")
    return tuple(names)


def parse_sets(spec) -> list[tuple[str, ...]]:
    """``--sets`` of augment-study: settings separated by commas, transforms within one joined
    by ``+``: ``"none,crop,crop+affine"`` -> ``[(), ("crop",), ("crop", "affine")]``."""
    sets = []
    for part in str(spec).split(","):
        if not part.strip():
            continue
        s = parse_augment(part.replace("+", ","))
        if s in sets:
            raise RecipeError(f"--sets: {label(s)!r} is listed twice")
        sets.append(s)
    if not sets:
        raise RecipeError("--sets: give at least one setting, e.g. none,crop,affine")
    return sets


def label(names) -> str:
    """A setting's name: ``("crop", "affine")`` -> ``"crop+affine"``, ``()`` -> ``"none"``."""
    return "+".join(names) if names else "none"


def _pixel_scale(data: Data) -> tuple[float, float]:
    """(background value, size of the full pixel range) in the model-input units of ``data``
    (inputs are normalised (x/255 − μ)/σ: background −μ/σ, range 1/σ)."""
    if data.prepare is None:
        x = data.train[0]
        return float(x.min()), float(x.max() - x.min()) or 1.0
    lo = float(np.asarray(data.prepare(np.zeros((1, 28, 28), np.uint8))).min())
    hi = float(np.asarray(data.prepare(np.full((1, 28, 28), 255, np.uint8))).max())
    return lo, hi - lo


def make_augment(names, data: Data):
    """The augmentation ``fn(x, rng) -> x`` for the names of :func:`parse_augment` (None for
    none): a :class:`~tensorcalc.data.augment.Compose` drawing from the trainer's rng, with
    fills at the data's background value and noise in pixel-range units."""
    names = parse_augment(names)
    if not names:
        return None
    bg, rng_px = _pixel_scale(data)
    t = {"crop": lambda: A.RandomCrop(28, padding=2, fill=bg),
         "flip": lambda: A.RandomHorizontalFlip(0.5),
         "affine": lambda: A.RandomAffine(10, translate=0.08, scale=(0.9, 1.1), fill=bg),
         "noise": lambda: A.GaussianNoise(0.1 * rng_px),
         "cutout": lambda: A.Cutout(8, fill=bg)}
    pipeline = A.Compose([t[n]() for n in names])

    def augment(x, rng):
        return pipeline(x, rng=rng)

    augment.names = names
    return augment


def subsample(xy, fraction: float, seed: int):
    """A stratified random ``fraction`` of ``(x, y)`` (at least one example per class present),
    a function of ``seed`` alone."""
    x, y = xy
    if fraction >= 1:
        return xy
    n = len(y)
    keep = max(int(round(fraction * n)), len(np.unique(y)))
    if keep >= n:
        return xy
    rest, idx = D.train_test_split(n, test_size=keep, rng=np.random.default_rng([seed, 104729]),
                                   stratify=y)
    idx = np.sort(idx)
    return x[idx], y[idx]


def _check_fraction(cfg):
    f = cfg.get("train_fraction", 1.0)
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0 < f <= 1):
        raise RecipeError(f"--train-fraction must be in (0, 1], got {f!r}")


# ------------------------------------------------------------------------------ recipe pieces
def _data(cfg) -> Data:
    _check_fraction(cfg)
    parse_augment(cfg.get("augment", ""))  # fail before training on a bad --augment
    data = image_data(cfg, flat=False)
    frac = cfg.get("train_fraction", 1.0)
    if frac < 1:
        n0 = len(data.train[1])
        data.train = subsample(data.train, frac, cfg["seed"])
        data.description += (f" — reduced by --train-fraction {frac:g} to "
                             f"{len(data.train[1]):,} of the {n0:,} training images "
                             "(stratified)")
    return data


def _augment(cfg, data):
    return make_augment(cfg.get("augment", ""), data)


def _positive_ints(cfg, key, what):
    v = cfg[key]
    vals = v if isinstance(v, tuple) else (v,)
    if not vals or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 1
                       for i in vals):
        raise RecipeError(f"--{key.replace('_', '-')} must be {what}, got {v!r}")
    return v


def _lenet(cfg, data, rng):
    return models.LeNet5(1, data.num_classes, rng=rng, activation=cfg["activation"],
                         pool=cfg["pool"])


def _vgg(cfg, data, rng):
    widths = _positive_ints(cfg, "widths", "channel counts like 16,32,64")
    _positive_ints(cfg, "depth", "an integer >= 1")
    if len(widths) > 4:
        raise RecipeError(f"--widths: at most 4 stages for 28×28 images (each halves the size), "
                          f"got {len(widths)}")
    if not 0 <= cfg["dropout"] < 1:
        raise RecipeError(f"--dropout must be in [0, 1), got {cfg['dropout']!r}")
    return models.VGG(1, data.num_classes, rng=rng, widths=widths, depth=cfg["depth"],
                      dropout=cfg["dropout"])


def _resnet(cfg, data, rng):
    widths = _positive_ints(cfg, "widths", "channel counts like 16,32,64")
    _positive_ints(cfg, "blocks", "an integer >= 1")
    return models.ResNet(1, data.num_classes, rng=rng, widths=widths, blocks=cfg["blocks"])


def _inception(cfg, data, rng):
    w = cfg["width"]
    if isinstance(w, bool) or not isinstance(w, int) or w < 4 or w % 4:
        raise RecipeError(f"--width must be a multiple of 4 (>= 4), got {w!r}")
    return models.InceptionNet(1, data.num_classes, rng=rng, width=w)


# ------------------------------------------------------------------------------ figures
def _conv_layers(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2d)]


def first_conv_weights(model) -> tuple[str, np.ndarray]:
    """(name, W (C_out, C_in, kh, kw)) of the first convolution applied to the input: the one
    whose input channels match the image's, first in registration order."""
    convs = _conv_layers(model)
    if not convs:
        raise ValueError(f"first_conv_weights: {type(model).__name__} has no Conv2d layer")
    c_in = min(m.weight.shape[1] * m.groups for _, m in convs)
    name, m = next((n, m) for n, m in convs if m.weight.shape[1] * m.groups == c_in)
    return name, np.asarray(m.weight.numpy())


def capture_conv_outputs(model, x, count: int = 2) -> list[tuple[str, np.ndarray]]:
    """Run ``model`` on ``x`` (one example, (1, C, H, W)) in eval mode, without gradients, and
    return the outputs (C_out, H, W) of the first ``count`` Conv2d layers in the order the
    forward pass calls them, as ``[(layer name, maps), ...]``."""
    seen: list[tuple[str, np.ndarray]] = []
    patched = []
    for name, m in _conv_layers(model):
        def hooked(inp, _m=m, _name=name):
            y = type(_m).forward(_m, inp)
            if len(seen) < count:
                seen.append((_name, np.asarray(y.numpy() if isinstance(y, Tensor) else y)[0]))
            return y

        m.__dict__["forward"] = hooked  # instance attribute shadows the class's forward
        patched.append(m)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.asarray(x)))
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)
        model.train(was_training)
    return seen


def _describe_conv(model, name):
    m = model.get_submodule(name)
    kh, kw = m.weight.shape[2:]
    return f"{name} ({kh}×{kw} conv)"


def conv_figures(ctx) -> list:
    """The report's figures for a conv recipe: learned first-layer filters, the feature maps of
    one test image after the first two convolutions, and augmented training images."""
    model, data = ctx.model, ctx.data
    out = []
    x_test, y_test = data.test
    idx = 0
    maps = capture_conv_outputs(model, x_test[idx:idx + 1], count=2)
    if maps:  # the first convolution the forward pass applies
        name = maps[0][0]
        w = np.asarray(model.get_submodule(name).weight.numpy())
    else:
        name, w = first_conv_weights(model)
    kh, kw = w.shape[2:]
    png = R.plot_filters(w, ctx.path("filters.png"),
                         title=f"learned filters of the first layer ({name}: {w.shape[0]} × "
                               f"{kh}×{kw})")
    out.append((png, f"The {w.shape[0]} learned {kh}×{kw} filters of the first convolution "
                     f"({name}), drawn as the pixels they weigh: red w > 0 (ink there raises "
                     "the output), blue w < 0, each filter on its own scale (max |w| below "
                     "it). Edge and stroke detectors show up as red/blue pairs side by side."))
    pred = ctx.outputs.argmax(axis=1) if ctx.outputs is not None else None
    maps = [(_describe_conv(model, n), a) for n, a in maps]
    true = data.class_names[int(y_test[idx])] if data.class_names else int(y_test[idx])
    guess = (f", predicted {data.class_names[int(pred[idx])] if data.class_names else pred[idx]}"
             if pred is not None else "")
    png = R.plot_feature_maps(x_test[idx], maps, ctx.path("feature_maps.png"),
                              title=f"test image {idx} (class {true}{guess}) through the "
                                    "first convolutions")
    out.append((png, "Feature maps of test image 0: the output of each of the first two "
                     "convolution layers (before batch norm / ReLU), one map per filter; "
                     "red > 0 (the ReLU passes it), blue < 0 (cut to 0). Maps of a layer share "
                     "one colour scale, so a pale map responds little to this image."))
    names = parse_augment(ctx.cfg.get("augment", ""))
    if names:
        png = augmentation_examples(data, [names], ctx.path("augmentation.png"),
                                    seed=ctx.cfg["seed"])
        out.append((png, f"What --augment {label(names)} does: the first row shows training "
                         "images as stored, the next rows fresh random draws of the "
                         "augmentation (each step sees new ones)."))
    return out


def augmentation_examples(data: Data, settings, path: str, seed: int = 0, n: int = 8,
                          draws: int = 2) -> str:
    """A grid: ``n`` training images, then ``draws`` augmented versions per setting."""
    x = data.train[0][:n]
    rows = []
    for s in settings:
        fn = make_augment(s, data)
        if fn is None:
            continue
        rng = np.random.default_rng([seed, 31337])
        for d in range(draws):
            rows.append((label(s) if d == 0 else "", fn(x.copy(), rng)))
    return R.plot_augmentations(x, rows, path, image_shape=data.image_shape)


# ------------------------------------------------------------------------------ registration
_SHARED_DEFAULTS = {"dataset": "mnist10k", "augment": "", "train_fraction": 1.0}
_SHARED_HELP = {
    "dataset": "mnist10k | fashion-mnist (Fashion-MNIST is read from disk; if it is missing "
               "the error says how to get it: tensorcalc.data.download_fashion_mnist)",
    "augment": "comma-separated augmentations applied in order: "
               + ", ".join(AUGMENTATIONS) + "; none (or empty): no augmentation",
    "train_fraction": "train on this stratified fraction of the training images (0 < f <= 1)",
}


def _register(name, description, defaults, model, help=None, choices=None):
    register(Recipe(
        name=name, description=description,
        defaults={**_SHARED_DEFAULTS, **defaults},
        data=_data, model=model, augment=_augment, figures=conv_figures,
        help={**_SHARED_HELP, **(help or {})},
        choices={"dataset": IMAGE_DATASETS, **(choices or {})},
    ))


_register(
    "lenet", "LeNet-5 (conv 5×5, pool, conv 5×5, pool, fc 120-84) on MNIST-10k: ≈ 99 % in "
             "about a minute (make demo)",
    {"epochs": 30, "batch_size": 64, "lr": 2e-3, "optimizer": "adam", "schedule": "cosine",
     "augment": "crop", "activation": "relu", "pool": "max"},
    _lenet,
    help={"activation": "relu | tanh (the 1998 choice)",
          "pool": "max | avg (the original subsampling)"},
    choices={"activation": ("relu", "tanh"), "pool": ("max", "avg")})

_register(
    "vgg", "VGG-style net (stacks of 3×3 conv + batch norm + ReLU, max pool) on MNIST-10k",
    {"epochs": 6, "batch_size": 64, "lr": 3e-3, "optimizer": "adam", "schedule": "cosine",
     "augment": "crop", "widths": (16, 32, 64), "depth": 2, "dropout": 0.0},
    _vgg,
    help={"widths": "channels per stage (each stage ends in a 2×2 max pool), e.g. 16,32,64",
          "depth": "3×3 convolutions per stage",
          "dropout": "dropout before the linear classifier (0: none)"})

_register(
    "resnet", "ResNet with basic residual blocks (skip connections, batch norm) on MNIST-10k",
    {"epochs": 6, "batch_size": 64, "lr": 3e-3, "optimizer": "adam", "schedule": "cosine",
     "augment": "crop", "widths": (16, 32, 64), "blocks": 1},
    _resnet,
    help={"widths": "channels per stage (stages after the first halve the size), e.g. 16,32,64",
          "blocks": "residual blocks per stage (2 with widths 16,32,64: ResNet-14)"})

_register(
    "inception", "Inception-style net (parallel 1×1 / 3×3 / double-3×3 / pool branches) on "
                 "MNIST-10k",
    {"epochs": 6, "batch_size": 64, "lr": 1e-2, "optimizer": "adam", "schedule": "cosine",
     "augment": "crop", "width": 16},
    _inception,
    help={"width": "base channel count w (stem w; block branches w/2 .. 2w); multiple of 4"})


# ------------------------------------------------------------------------------ augment study
STUDY_MODELS = ("lenet", "vgg", "resnet", "inception")


def augment_study(cfg: dict, out_dir: str | None, *, quiet: bool = False,
                  progress: bool | None = None) -> RunResult:
    """Train ``cfg["model"]`` on a ``cfg["train_fraction"]`` share of the training images once
    per augmentation setting of ``cfg["sets"]`` and seed (``cfg["repeats"]`` seeds from
    ``cfg["seed"]``), every run with the same number of optimisation steps, and score each on the
    full test split. Returns a :class:`RunResult` whose ``extra["rows"]`` holds, per setting,
    the mean and standard deviation of the test accuracy and its difference to ``none``;
    ``report.html`` (when ``out_dir`` is given) has the table, a bar chart and examples."""
    from . import get_recipe
    from .runner import build_trainer, finish_run, prepare_data, validate_config, write_json

    if cfg["model"] not in STUDY_MODELS:
        raise RecipeError(f"--model must be one of {', '.join(STUDY_MODELS)}, got "
                          f"{cfg['model']!r}")
    sets = parse_sets(cfg["sets"])
    if isinstance(cfg["repeats"], bool) or not isinstance(cfg["repeats"], int) or \
            cfg["repeats"] < 1:
        raise RecipeError(f"--repeats must be an integer >= 1, got {cfg['repeats']!r}")
    _check_fraction(cfg)
    base = get_recipe(cfg["model"])
    keep = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
            "dataset", "train_fraction", "checkpoint_every")
    bcfg = base.config({k: cfg[k] for k in keep})
    bcfg["val_fraction"] = 0.0  # every reduced training image is used for training
    validate_config(base, bcfg)
    rows, runs = [], []
    t_all = time.perf_counter()
    # one reduced training set (drawn with --seed) for every run: the runs differ only in the
    # augmentation and in the seed of initialisation, shuffling and augmentation draws
    data = prepare_data(base, dict(bcfg, seed=cfg["seed"]))
    for s in sets:
        accs, losses, secs = [], [], []
        for r in range(cfg["repeats"]):
            rcfg = dict(bcfg, augment=label(s) if s else "", seed=cfg["seed"] + r)
            data_r = data
            t0 = time.perf_counter()
            trainer, loader = build_trainer(base, rcfg, data_r, data_r.train, None, quiet=True,
                                            progress=False)
            trainer.fit(loader, None, epochs=rcfg["epochs"])
            res = finish_run(base, rcfg, data_r, trainer, None, report=False)
            secs.append(time.perf_counter() - t0)
            accs.append(res.test["acc"])
            losses.append(res.test["loss"])
            runs.append({"setting": label(s), "seed": rcfg["seed"], "acc": res.test["acc"],
                         "loss": res.test["loss"], "seconds": secs[-1]})
            if not quiet:
                print(f"  {label(s):<24} seed {rcfg['seed']}: test accuracy "
                      f"{100 * res.test['acc']:6.2f} %  ({secs[-1]:.1f} s)", flush=True)
        rows.append({"setting": label(s), "names": s, "acc": float(np.mean(accs)),
                     "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
                     "accs": accs, "loss": float(np.mean(losses)),
                     "seconds": float(np.mean(secs))})
    ref = next((r["acc"] for r in rows if not r["names"]), None)
    for r in rows:
        r["gain"] = r["acc"] - ref if ref is not None else float("nan")
    best = max(rows, key=lambda r: r["acc"])
    total = time.perf_counter() - t_all
    n_train = len(data.train[1])
    if not quiet:
        print(format_study(rows, n_train, cfg))
    result = RunResult(run_dir=out_dir, test={"acc": best["acc"], "loss": best["loss"]},
                       train_seconds=total, config=cfg,
                       extra={"rows": rows, "runs": runs, "best": best["setting"],
                              "n_train": n_train})
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, "metrics.json"),
                   {"rows": [{k: v for k, v in r.items() if k != "names"} for r in rows],
                    "runs": runs, "best": best["setting"], "n_train": n_train,
                    "seconds": total})
        result.report = _study_report(cfg, bcfg, base, data, rows, best, total, out_dir)
    return result


def format_study(rows, n_train, cfg) -> str:
    """The study's table as text (for the terminal)."""
    ref = any(not r["names"] for r in rows)
    lines = [f"\naugmentation study: {cfg['model']} on {n_train:,} training images, "
             f"{cfg['repeats']} seed(s) each, test accuracy on the full test split",
             f"  {'setting':<24} {'accuracy':>9} {'± std':>7}" + (f" {'vs none':>9}" if ref
                                                                   else "")]
    for r in rows:
        sd = f"{100 * r['std']:6.2f}" if math.isfinite(r["std"]) else "     —"
        gain = f" {100 * r['gain']:+8.2f}" if ref else ""
        lines.append(f"  {r['setting']:<24} {100 * r['acc']:8.2f} % {sd}{gain}")
    return "\n".join(lines)


def _study_report(cfg, bcfg, base, data, rows, best, total, out_dir) -> str:
    from .runner import hyperparameter_table

    ref = next((r for r in rows if not r["names"]), None)
    rep = R.HTMLReport(
        f"augment-study — {cfg['model']} with and without data augmentation",
        f"{data.name} · {len(data.train[1]):,} training images (--train-fraction "
        f"{cfg['train_fraction']:g}) / {len(data.test[1]):,} test images · {cfg['repeats']} "
        f"seed(s) per setting from seed {cfg['seed']} · {os.path.abspath(out_dir)}")
    cards = [("best setting", best["setting"]), ("its test accuracy", f"{100 * best['acc']:.2f} %")]
    if ref is not None:
        cards += [("without augmentation", f"{100 * ref['acc']:.2f} %"),
                  ("gain", f"{100 * (best['acc'] - ref['acc']):+.2f} points")]
    cards.append(("total time", f"{total:.0f} s"))
    rep.cards(cards)
    rep.text("Every setting trains the same model from the same initialisations (one per seed) "
             f"for the same {bcfg['epochs']} epochs of {len(data.train[1]):,} images; only the "
             "random transforms applied to each training batch differ. With few images the "
             "network memorises them; label-preserving transforms show it new versions of the "
             "same digits at every step, which acts as a regulariser.")
    rep.section("Test accuracy per augmentation setting")
    table = []
    for r in rows:
        desc = "; ".join(AUGMENTATIONS[n] for n in r["names"]) or "no augmentation"
        table.append([r["setting"], 100 * r["acc"],
                      100 * r["std"] if math.isfinite(r["std"]) else "—",
                      f"{100 * r['gain']:+.2f}" if ref is not None else "—",
                      ", ".join(f"{100 * a:.2f}" for a in r["accs"]), r["loss"],
                      f"{r['seconds']:.1f} s", desc])
    rep.table(table, ["setting", "test accuracy %", "± std", "vs none (points)",
                      "per seed %", "test loss", "time per run", "transforms"],
              "Mean over seeds; ± is the standard deviation across seeds (the spread a single "
              "run can show). Differences smaller than about twice that are noise.")
    png = R.plot_bars([r["setting"] for r in rows], [100 * r["acc"] for r in rows],
                      [100 * r["std"] if math.isfinite(r["std"]) else 0.0 for r in rows],
                      os.path.join(out_dir, "study.png"), "test accuracy (%)",
                      title="test accuracy by augmentation setting (mean ± std over seeds)",
                      highlight=rows.index(best))
    rep.figure(png, "Test accuracy per setting; the best one highlighted.")
    settings = [r["names"] for r in rows if r["names"]]
    if settings:
        rep.section("What the augmentations do")
        png = augmentation_examples(data, settings, os.path.join(out_dir, "augmentation.png"),
                                    seed=cfg["seed"], draws=1)
        rep.figure(png, "Training images as stored (first row) and one random draw of each "
                        "setting.")
    rep.section("Hyperparameters")
    hyperparameter_table(rep, cfg)
    return rep.save(os.path.join(out_dir, "report.html"))


def _study_run(cfg, out_dir, quiet=False, progress=None, **_):
    if not quiet:
        n_sets = len(parse_sets(cfg["sets"]))
        print(f"augment-study: {cfg['model']}, {n_sets} settings × {cfg['repeats']} seed(s) on "
              f"--train-fraction {cfg['train_fraction']:g} of the training images", flush=True)
    return augment_study(cfg, out_dir, quiet=quiet, progress=progress)


def _study_data(cfg):  # the data of the study's model (for `tensorcalc list` and checks)
    return _data(dict(cfg, augment=""))


register(Recipe(
    name="augment-study",
    description="effect of data augmentation on a reduced training set: a CNN trained with "
                "each --sets setting, table in the report",
    defaults={"model": "lenet", "sets": "none,crop,affine,noise,cutout,flip,crop+affine",
              "repeats": 2, "train_fraction": 0.1, "dataset": "mnist10k", "epochs": 30,
              "batch_size": 32, "lr": 2e-3, "optimizer": "adam", "schedule": "cosine",
              "val_fraction": 0.0},
    data=_study_data, run=_study_run,
    help={"model": "the network: " + " | ".join(STUDY_MODELS),
          "sets": "augmentation settings to compare, comma-separated; + combines "
                  "transforms (none,crop,affine,crop+affine); names: " + ", ".join(AUGMENTATIONS),
          "repeats": "seeds per setting (seed, seed+1, ...): mean and spread",
          "train_fraction": _SHARED_HELP["train_fraction"],
          "dataset": _SHARED_HELP["dataset"]},
    choices={"dataset": IMAGE_DATASETS, "model": STUDY_MODELS},
))
