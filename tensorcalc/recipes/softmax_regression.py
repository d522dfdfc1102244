"""softmax-regression — multinomial logistic regression on MNIST-10k or Fashion-MNIST.

One affine map to 10 logits and a softmax, z = W x + b, p(y = c | x) = softmax(z)_c, fitted by
maximum likelihood: minimise the mean cross-entropy −log p(yᵢ | xᵢ) (convex in W, b). Its
gradient is ∂ℓ/∂z = softmax(z) − onehot(y), so each step moves W by the outer product of that
error with x. A linear classifier; each row of W is a "template" of its class (shown in the report).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..train import report as R
from . import Recipe, register
from ._common import IMAGE_DATASETS, image_data


def _model(cfg, data, rng):
    """W = 0, b = 0: the problem is convex, so no symmetry needs breaking, and every pattern in
    the learned templates comes from the data rather than from the initial noise."""
    model = nn.Linear(784, data.num_classes, rng=rng)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    return model


def _figures(ctx):
    """The weight rows W[c] as 28×28 images: what each class's score responds to."""
    w = np.asarray(ctx.model.weight.data)
    fig = R.new_figure(12, 1.9)
    lim = float(np.abs(w).max()) or 1.0
    for c in range(len(w)):
        ax = fig.add_subplot(1, len(w), c + 1)
        ax.imshow(w[c].reshape(28, 28), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(ctx.data.class_names[c], fontsize=10)
        ax.axis("off")
    fig.suptitle("weights W[c] per class (red: pixel raises the class score, blue: lowers it)",
                 fontsize=10)
    png = R.save_figure(fig, ctx.path("weights.png"))
    return [(png, "Each class's weight vector drawn as an image: a linear classifier scores a "
                  "digit by how well it matches these templates.")]


register(Recipe(
    name="softmax-regression",
    description="softmax (multinomial logistic) regression",
    defaults={"epochs": 10, "batch_size": 128, "lr": 1e-3, "optimizer": "adam",
              "dataset": "mnist10k"},
    data=lambda cfg: image_data(cfg, flat=True), model=_model, figures=_figures,
    help={"dataset": "mnist10k | fashion-mnist"},
    choices={"dataset": IMAGE_DATASETS},
))
