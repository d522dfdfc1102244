"""Shared pieces of the image recipes: the digit data sets and random-shift augmentation.

Not a recipe itself (modules starting with ``_`` are not auto-imported by the registry).
"""

from __future__ import annotations

import numpy as np

from .. import data as D
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
