"""Shared pieces of the image recipes: the digit data sets, the ``--augment`` settings and the
random-shift augmentation.

Not a recipe itself (modules starting with ``_`` are not auto-imported by the registry).
"""

from __future__ import annotations

import numpy as np

from .. import data as D
from ..data import augment as A
from ..train import report as R
from . import Data, RecipeError

#: mean and standard deviation of MNIST pixels scaled to [0, 1] (the customary constants, so the
#: scaling does not depend on which images a split holds)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530

IMAGE_DATASETS = ("mnist10k", "fashion-mnist")


def image_transform(dataset: str, flat: bool):
    """raw images (N, 28, 28) or (28, 28) — bytes 0..255 or floats in [0, 1] — to model input:
    x ↦ (x/255 − μ)/σ, shaped (N, 784) if ``flat`` else (N, 1, 28, 28)."""
    mean, std = (FASHION_MEAN, FASHION_STD) if dataset == "fashion-mnist" else (
        MNIST_MEAN, MNIST_STD)
    norm = D.Normalize(mean, std)

    def prepare(raw):
        a = np.asarray(raw)
        if a.ndim == 1 and a.size == 784 or a.ndim == 2 and a.shape == (28, 28):
            a = a.reshape(1, 28, 28)
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim == 2 and a.shape[1] == 784:
            a = a.reshape(-1, 28, 28)
        if a.ndim != 3 or a.shape[1:] != (28, 28):
            raise RecipeError(f"{dataset}: expected 28×28 images — shape (28, 28), (N, 28, 28), "
                              f"(N, 784) or (N, 1, 28, 28) — got {np.shape(raw)}")
        scale = 1.0 / 255.0 if (a.dtype.kind in "iu" or float(a.max(initial=0)) > 1.5) else 1.0
        x = norm(D.ToFloat(scale)(a))
        return x.reshape(len(x), 784) if flat else x.reshape(len(x), 1, 28, 28)

    return prepare


def image_data(cfg: dict, flat: bool = True) -> Data:
    """MNIST-10k (default: the fixed 8,000 / 2,000 train/test split of
    :func:`tensorcalc.data.mnist10k_split`) or Fashion-MNIST (60,000 / 10,000), prepared by
    :func:`image_transform`."""
    name = cfg.get("dataset") or "mnist10k"
    if name == "mnist10k":
        s = D.mnist10k_split(test_size=2000, seed=0)
        (xtr, ytr), (xte, yte) = s.train, s.test
        classes = [str(i) for i in range(10)]
        desc = ("MNIST-10k: 10,000 real handwritten digits shipped with tensorcalc; a fixed "
                "stratified split of 8,000 training and 2,000 held-out test images")
    elif name == "fashion-mnist":
        try:
            xtr, ytr = D.load_fashion_mnist("train")
            xte, yte = D.load_fashion_mnist("test")
        except FileNotFoundError as e:
            raise RecipeError(str(e)) from None
        classes = list(D.FASHION_MNIST_CLASSES)
        desc = "Fashion-MNIST: 60,000 training and 10,000 test images of clothing (10 classes)"
    else:
        raise RecipeError(f"--dataset must be one of {', '.join(IMAGE_DATASETS)}, got {name!r}")
    prepare = image_transform(name, flat)
    return Data(name=name, task="multiclass", train=(prepare(xtr), ytr.astype(np.int64)),
                test=(prepare(xte), yte.astype(np.int64)), num_classes=10, class_names=classes,
                image_shape=(28, 28), prepare=prepare, description=desc)


def random_shift(max_shift: int = 2):
    """Augmentation: translate each image by (dy, dx), each uniform in {−s, …, s}, filling with
    the background value (the image's minimum). Works on (N, 784) and (N, 1, 28, 28) batches."""

    def augment(x, rng):
        shape = x.shape
        n = shape[0]
        img = x.reshape(n, 28, 28)
        s = max_shift
        bg = img.min(axis=(1, 2), keepdims=True)
        padded = np.empty((n, 28 + 2 * s, 28 + 2 * s), dtype=x.dtype)
        padded[...] = bg
        padded[:, s:s + 28, s:s + 28] = img
        dy = rng.integers(0, 2 * s + 1, n)
        dx = rng.integers(0, 2 * s + 1, n)
        r = np.arange(28)
        rows = (dy[:, None] + r)[:, :, None]
        cols = (dx[:, None] + r)[:, None, :]
        out = padded[np.arange(n)[:, None, None], rows, cols]
        return out.reshape(shape)

    return augment


# ------------------------------------------------------------------------------ --augment
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


def check_fraction(cfg):
    """``--train-fraction`` must lie in (0, 1]."""
    f = cfg.get("train_fraction", 1.0)
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0 < f <= 1):
        raise RecipeError(f"--train-fraction must be in (0, 1], got {f!r}")


def char_loss_png(run_dir: str, history, title: str, ref: float, ref_label: str) -> str:
    """loss.png of a character LM run (char-lstm, char-transformer): training and validation
    nats/char against the step, with a reference line (a baseline or a target)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    s = [r["step"] for r in history]
    ax.plot(s, [r.get("train_loss", np.nan) for r in history], label="train (running mean)")
    ax.plot(s, [r.get("val_loss", np.nan) for r in history], label="validation (32 windows)")
    ax.axhline(ref, color="gray", ls="--", lw=1, label=ref_label)
    ax.set_xlabel("step")
    ax.set_ylabel("nats / character")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    png = os.path.join(run_dir, "loss.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def write_markdown_report(run_dir: str, lines) -> str:
    """A study's ``report.md`` from its lines (figures beside it as PNGs); returns its path."""
    import os

    path = os.path.join(run_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def read_finished_run(run_dir: str, who: str, kind: str) -> tuple[dict, dict, str]:
    """(config, vocabulary JSON, weights path) of a finished run that saved ``config.json``,
    ``vocab.json`` and ``model.safetensors`` (char-lstm, char-transformer, translate); a
    ValueError naming what is missing otherwise."""
    import json
    import os

    paths = {n: os.path.join(run_dir, n)
             for n in ("config.json", "vocab.json", "model.safetensors")}
    missing = [n for n, q in paths.items() if not os.path.exists(q)]
    if missing:
        raise ValueError(f"{who}: {run_dir} is not a finished {kind} run (missing "
                         f"{', '.join(missing)})")
    with open(paths["config.json"], encoding="utf-8") as f:
        cfg = json.load(f)
    with open(paths["vocab.json"], encoding="utf-8") as f:
        vocab = json.load(f)
    return cfg, vocab, paths["model.safetensors"]
