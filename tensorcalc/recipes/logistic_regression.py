"""logistic-regression — binary logistic regression on the two-moons data set.

The probability of class 1 is a sigmoid of an affine score,

    p(y = 1 | x) = σ(wᵀφ(x) + b),    σ(z) = 1 / (1 + e⁻ᶻ),

fitted by maximum likelihood: minimise the mean binary cross-entropy
−[y log σ(z) + (1 − y) log(1 − σ(z))] (convex in w, b; gradient (σ(z) − y)·φ(x)). The
decision boundary is the set wᵀφ(x) + b = 0. With the raw features φ(x) = x (``--degree 1``)
it is a straight line, which two interleaved half-moons defeat; with the polynomial
features φ(x) = (x₁ᵃ x₂ᵇ : 1 ≤ a + b ≤ degree) the same linear model draws a curved boundary
(``--degree 3``; measured accuracies in docs/recipes.md) — try
``tensorcalc tune logistic-regression --param degree=1,2,3``.
"""

from __future__ import annotations

import numpy as np

from .. import data as D
from .. import nn
from ..train import metrics as M
from ..train import report as R
from . import Data, Recipe, register


def polynomial_features(x: np.ndarray, degree: int) -> np.ndarray:
    """All monomials x₁ᵃ x₂ᵇ with 1 ≤ a + b ≤ degree, ordered by total degree then by a."""
    cols = [x[:, 0] ** (t - b) * x[:, 1] ** b for t in range(1, degree + 1) for b in range(t + 1)]
    return np.stack(cols, axis=1)


def _data(cfg):
    n, noise, degree = cfg["n"], cfg["noise"], cfg["degree"]
    if n < 8:
        raise ValueError(f"--n must be at least 8, got {n}")
    if degree < 1:
        raise ValueError(f"--degree must be >= 1, got {degree}")
    x, y = D.make_moons(n, noise=noise, rng=cfg["seed"], dtype=np.float64)
    xtr, xte, ytr, yte = D.train_test_split(x, y, test_size=0.25, rng=cfg["seed"], stratify=y)
    norm = D.Normalize.fit(polynomial_features(xtr, degree))

    def prepare(raw):
        a = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
        return norm(polynomial_features(a, degree)).astype(np.float32)

    return Data(
        name="two-moons", task="binary", train=(prepare(xtr), ytr), test=(prepare(xte), yte),
        num_classes=2, class_names=["upper moon", "lower moon"], prepare=prepare,
        description=f"Two interleaving half-moons, {n} points with Gaussian noise {noise}; "
                    f"75 % training / 25 % test; features: all monomials up to degree "
                    f"{degree}, standardised.",
        extra={"raw": {"train": (xtr, ytr), "test": (xte, yte)}})


def _model(cfg, data, rng):
    return nn.Linear(data.train[0].shape[1], 1, rng=rng)


def decision_boundary(ctx, title: str) -> str:
    """p(y = 1 | x) over the plane, the 0.5 contour, and the training / test points."""
    raw = ctx.data.extra["raw"]
    pts = np.concatenate([raw["train"][0], raw["test"][0]])
    lo, hi = pts.min(axis=0) - 0.5, pts.max(axis=0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.stack([g0.ravel(), g1.ravel()], axis=1)
    z = ctx.trainer.predict(ctx.data.prepare(grid)).reshape(g0.shape)
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    fig = R.new_figure(6.8, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    cs = ax.contourf(g0, g1, p, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.55)
    ax.contour(g0, g1, p, levels=[0.5], colors="#111827", linewidths=2)
    fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.04).set_label("p(lower moon | x)")
    for split, marker, size in (("train", "o", 16), ("test", "^", 30)):
        x, y = raw[split]
        for c, colour in ((0, R.PALETTE["train"]), (1, R.PALETTE["bad"])):
            sel = y == c
            ax.scatter(x[sel, 0], x[sel, 1], s=size, marker=marker, c=colour,
                       edgecolors="white", linewidths=0.5,
                       label=f"{split}: {ctx.data.class_names[c]}")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_title(title, fontsize=11)
    ax.legend(frameon=True, fontsize=8, loc="lower left", framealpha=0.85)
    return R.save_figure(fig, ctx.path("decision_boundary.png"))


def _figures(ctx):
    acc = M.accuracy(ctx.outputs, ctx.targets)
    deg = ctx.cfg["degree"]
    png = decision_boundary(ctx, f"decision boundary, degree {deg} — test accuracy "
                                 f"{100 * acc:.1f} %")
    return [(png, "The model's probability of the lower moon over the plane; the black curve "
                  "is the decision boundary wᵀφ(x) + b = 0 (circles: training, triangles: "
                  "test). It is linear in the features φ, a polynomial curve in the plane.")]


register(Recipe(
    name="logistic-regression",
    description="binary logistic regression with a decision-boundary plot",
    defaults={"epochs": 40, "batch_size": 32, "lr": 0.05, "optimizer": "adam",
              "schedule": "cosine", "n": 1000, "noise": 0.2, "degree": 3,
              "dataset": "two-moons"},
    data=_data, model=_model, figures=_figures,
    help={"n": "number of points", "noise": "std of the Gaussian noise on the points",
          "degree": "polynomial feature degree (1: plain linear boundary)"},
    choices={"dataset": ("two-moons",)},
))
