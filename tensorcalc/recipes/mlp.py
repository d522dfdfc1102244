"""mlp — a multilayer perceptron on MNIST-10k or Fashion-MNIST.

The model is a stack of affine maps and ReLUs ending in 10 logits,

    h₀ = x ∈ ℝ⁷⁸⁴,   hₗ = relu(Wₗ hₗ₋₁ + bₗ)   (l = 1..L),   z = W_out h_L + b_out ∈ ℝ¹⁰,

trained by minimising the cross-entropy −log softmax(z)_y (the negative log-likelihood of a
categorical distribution) with Adam and a cosine learning-rate schedule. Each training image is
shifted by up to ±2 pixels in each direction (fresh shifts every epoch, from the run's seed): the
8,000 training digits then look like many more. Default 784-256-128-10 (235,146 parameters);
measured accuracies are in docs/recipes.md.
"""

from __future__ import annotations

from ..models import build_mlp
from . import Recipe, register
from ._common import IMAGE_DATASETS, image_data, random_shift


def _data(cfg):
    return image_data(cfg, flat=True)


def _model(cfg, data, rng):
    return build_mlp(784, cfg["hidden"], data.num_classes, rng, cfg["dropout"])


def _augment(cfg, data):
    return random_shift(cfg["shift"]) if cfg["shift"] > 0 else None


register(Recipe(
    name="mlp",
    description="multilayer perceptron (784-256-128-10, ReLU)",
    defaults={"epochs": 12, "batch_size": 128, "lr": 2e-3, "optimizer": "adam",
              "schedule": "cosine", "hidden": (256, 128), "dropout": 0.0, "shift": 2,
              "dataset": "mnist10k"},
    data=_data, model=_model, augment=_augment,
    help={"hidden": "hidden layer widths, e.g. 256,128",
          "dropout": "dropout probability after each hidden layer (0: none)",
          "shift": "augmentation: random shifts of up to this many pixels (0: none)",
          "dataset": "mnist10k | fashion-mnist"},
    choices={"dataset": IMAGE_DATASETS},
))
