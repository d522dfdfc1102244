"""Recipes: complete, named training jobs — each a declaration of data, model, loss and metrics,
defaults and figures; the shared pipeline (:mod:`tensorcalc.train.pipeline`) runs them.

``tensorcalc list`` shows them; ``tensorcalc train NAME`` runs one; ``tensorcalc tune NAME``
cross-validates its hyperparameters. From Python::

    from tensorcalc.recipes import get_recipe, train_recipe
    result = train_recipe("mlp", {"epochs": 3}, out_dir="runs/mlp")

Adding a recipe is one module in this package (any ``tensorcalc/recipes/*.py`` not starting
with ``_`` is imported on first use of the registry) that calls :func:`register`::

    from tensorcalc.recipes import Data, Recipe, register

    def data(cfg) -> Data:                  # cfg: the resolved hyperparameters (a dict)
        ...                                 # seeded by cfg["seed"]; model-ready float32 inputs
        return Data(name="mnist10k", task="multiclass", train=(x, y), test=(xt, yt),
                    num_classes=10, image_shape=(28, 28), prepare=to_model_input)

    def model(cfg, data, rng):              # rng: the run's init Generator (also for dropout)
        return models.LeNet5(1, data.num_classes, rng=rng)

    register(Recipe(
        name="lenet", description="LeNet-5 (conv, pool, conv, pool, fc 120-84)",
        defaults={"epochs": 10, "lr": 1e-3, "batch_size": 64},
        data=data, model=model,
        # optional: loss(cfg, data) -> loss_fn; metrics(cfg, data) -> [Metric];
        # augment(cfg, data) -> fn(x, rng) | None; figures(ctx) -> [(png, caption)];
        # run(cfg, out_dir, quiet=..., progress=...) -> RunResult  (a study composing
        #     tensorcalc.train.pipeline.run_standard calls)
        # help={"hidden": "..."}; choices={"dataset": ("mnist10k", "fashion-mnist")}
    ))

For image recipes, :func:`tensorcalc.recipes._common.image_data` gives MNIST-10k or
Fashion-MNIST ready to use (``flat=False`` for (N, 1, 28, 28) convolution inputs).

``Data.task`` picks the defaults: "multiclass" (logits (N, C), cross-entropy, accuracy +
confusion matrix), "binary" (one logit, BCE with logits, accuracy), "regression" (MSE, R²).
Every recipe gets the common hyperparameters of :data:`COMMON_DEFAULTS` (its ``defaults``
override them); each one becomes a ``--flag`` of ``tensorcalc train NAME`` with the default's
type (ints, floats, strings, booleans, and tuples of ints written ``256,128``).
"""

from __future__ import annotations

import importlib
import pkgutil

from ..train import pipeline as _P
from ..train.pipeline import (  # noqa: F401  (the public names of recipes)
    COMMON_DEFAULTS,
    COMMON_HELP,
    OPTIMIZERS,
    SCHEDULES,
    Data,
    Recipe,
    RecipeError,
    RunResult,
    evaluate_run,
    flag,
    get_recipe,
    list_recipes,
    load_run,
    predict_run,
    register,
    train_recipe,
    tune_recipe,
)

__all__ = ["Data", "Recipe", "RunResult", "register", "get_recipe", "list_recipes",
           "COMMON_DEFAULTS", "COMMON_HELP", "RecipeError", "train_recipe", "evaluate_run",
           "predict_run", "tune_recipe", "load_run", "flag"]


def _import_recipes() -> None:
    """Import every recipe module of this package (each registers itself)."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_P.DISCOVERERS.append(_import_recipes)
