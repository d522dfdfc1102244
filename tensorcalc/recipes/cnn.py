"""Convolutional-network recipes: lenet, vgg, resnet, inception.

Each trains a network of :mod:`tensorcalc.models` on 28×28 grey images — MNIST-10k by default
(the fixed 8,000 / 2,000 split; the 2,000 held-out images are the test set), Fashion-MNIST with
``--dataset fashion-mnist`` — by minimising the cross-entropy −log softmax(z)_y of the logits z
(the negative log-likelihood of a categorical distribution).

The convolution layers compute y[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c] (⋆ cross-correlation;
H_out = ⌊(H + 2p − k)/s⌋ + 1): each filter W[o] is a small template slid over the image, and a
feature map y[n, o] shows where the template matches. Besides the standard report, the report
of a conv recipe shows the learned first-layer filters, the feature maps of one test image
after the first two convolutions and — with ``--augment`` — what the augmentation does.

Options shared by the four recipes: ``--augment crop,affine`` (label-preserving random
transforms of each training batch, drawn fresh every step from the run's seed, applied in the
order given; names in :data:`~tensorcalc.recipes._common.AUGMENTATIONS`) and
``--train-fraction 0.1`` (train on a stratified random 10 % of the training images: the regime
where augmentation matters most). The defaults were chosen by measurement; the measured
accuracies and times are in docs/recipes.md.
"""

from __future__ import annotations

import numpy as np

from .. import models
from ..train import report as R
from . import Recipe, RecipeError, register
from ._common import (
    AUGMENTATIONS,
    IMAGE_DATASETS,
    augmentation_examples,
    check_fraction,
    image_data,
    label,
    make_augment,
    parse_augment,
    subsample,
)

__all__ = ["conv_recipe_data", "conv_recipe_figures"]


def conv_recipe_data(cfg):
    """The image data of ``--dataset`` as (N, 1, 28, 28), reduced by ``--train-fraction``."""
    check_fraction(cfg)
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


def conv_recipe_figures(ctx) -> list:
    """Filters and feature maps (:func:`tensorcalc.train.report.conv_figures`), then what
    ``--augment`` does to a few training images."""
    out = R.conv_figures(ctx)
    names = parse_augment(ctx.cfg.get("augment", ""))
    if names:
        png = augmentation_examples(ctx.data, [names], ctx.path("augmentation.png"),
                                    seed=ctx.cfg["seed"])
        out.append((png, f"What --augment {label(names)} does: the first row shows training "
                         "images as stored, the next rows fresh random draws of the "
                         "augmentation (each step sees new ones)."))
    return out


def _ints(cfg, key, what):
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
    widths = _ints(cfg, "widths", "channel counts like 16,32,64")
    _ints(cfg, "depth", "an integer >= 1")
    if len(widths) > 4:
        raise RecipeError(f"--widths: at most 4 stages for 28×28 images (each halves the size), "
                          f"got {len(widths)}")
    if not 0 <= cfg["dropout"] < 1:
        raise RecipeError(f"--dropout must be in [0, 1), got {cfg['dropout']!r}")
    return models.VGG(1, data.num_classes, rng=rng, widths=widths, depth=cfg["depth"],
                      dropout=cfg["dropout"])


def _resnet(cfg, data, rng):
    widths = _ints(cfg, "widths", "channel counts like 16,32,64")
    _ints(cfg, "blocks", "an integer >= 1")
    return models.ResNet(1, data.num_classes, rng=rng, widths=widths, blocks=cfg["blocks"])


def _inception(cfg, data, rng):
    w = cfg["width"]
    if isinstance(w, bool) or not isinstance(w, int) or w < 4 or w % 4:
        raise RecipeError(f"--width must be a multiple of 4 (>= 4), got {w!r}")
    return models.InceptionNet(1, data.num_classes, rng=rng, width=w)


SHARED_HELP = {
    "dataset": "mnist10k | fashion-mnist (Fashion-MNIST is read from disk; if it is missing "
               "the error says how to get it: tensorcalc.data.download_fashion_mnist)",
    "augment": "comma-separated augmentations applied in order: "
               + ", ".join(AUGMENTATIONS) + "; none (or empty): no augmentation",
    "train_fraction": "train on this stratified fraction of the training images (0 < f <= 1)",
}
_TRAINING = {"batch_size": 64, "optimizer": "adam", "schedule": "cosine", "augment": "crop",
             "dataset": "mnist10k", "train_fraction": 1.0}


def _register(name, description, defaults, model, help=None, choices=None):
    register(Recipe(
        name=name, description=description, defaults={**_TRAINING, **defaults},
        data=conv_recipe_data, model=model, augment=lambda cfg, data: make_augment(
            cfg.get("augment", ""), data), figures=conv_recipe_figures,
        help={**SHARED_HELP, **(help or {})},
        choices={"dataset": IMAGE_DATASETS, **(choices or {})}))


_register("lenet", "LeNet-5 (conv 5×5, pool, conv 5×5, pool, fc 120-84)",
          {"epochs": 30, "lr": 2e-3, "activation": "relu", "pool": "max"}, _lenet,
          help={"activation": "relu | tanh (the 1998 choice)",
                "pool": "max | avg (the original subsampling)"},
          choices={"activation": ("relu", "tanh"), "pool": ("max", "avg")})
_register("vgg", "VGG-style net (stacks of 3×3 conv + batch norm + ReLU, max pool)",
          {"epochs": 6, "lr": 3e-3, "widths": (16, 32, 64), "depth": 2, "dropout": 0.0}, _vgg,
          help={"widths": "channels per stage (each stage ends in a 2×2 max pool), e.g. 16,32,64",
                "depth": "3×3 convolutions per stage",
                "dropout": "dropout before the linear classifier (0: none)"})
_register("resnet", "ResNet with basic residual blocks (skip connections, batch norm)",
          {"epochs": 6, "lr": 3e-3, "widths": (16, 32, 64), "blocks": 1}, _resnet,
          help={"widths": "channels per stage (stages after the first halve the size), e.g. "
                          "16,32,64",
                "blocks": "residual blocks per stage (2 with widths 16,32,64: ResNet-14)"})
_register("inception", "Inception-style net (parallel 1×1 / 3×3 / double-3×3 / pool branches)",
          {"epochs": 6, "lr": 1e-2, "width": 16}, _inception,
          help={"width": "base channel count w (stem w; block branches w/2 .. 2w); multiple of 4"})
