"""Recipes: complete, named training jobs — data, model, loss, metrics, hyperparameters.

``tensorcalc list`` shows them; ``tensorcalc train NAME`` runs one; ``tensorcalc tune NAME``
cross-validates its hyperparameters. From Python::

    from tensorcalc.recipes import get_recipe, train_recipe
    result = train_recipe("mlp", {"epochs": 3}, out_dir="runs/mlp")

Protocol — adding a recipe is one module in this package (any ``tensorcalc/recipes/*.py`` not
starting with ``_`` is imported on first use of the registry) that calls :func:`register`::

    from tensorcalc.recipes import Data, Recipe, register

    def data(cfg) -> Data:                  # cfg: the resolved hyperparameters (a dict)
        ...                                 # seeded by cfg["seed"]; model-ready float32 inputs
        return Data(name="mnist10k", task="multiclass", train=(x, y), test=(xt, yt),
                    num_classes=10, image_shape=(28, 28), prepare=to_model_input)

    def model(cfg, data, rng):              # rng: the run's init Generator (also for dropout)
        return nn.Sequential(...)

    register(Recipe(
        name="lenet", description="LeNet-5 on MNIST-10k (conv, pool, 99 %)",
        defaults={"epochs": 10, "lr": 1e-3, "batch_size": 64, "hidden": (120, 84)},
        data=data, model=model,
        # optional: loss(cfg, data) -> loss_fn; metrics(cfg, data) -> [Metric];
        # augment(cfg, data) -> fn(x, rng) | None; figures(ctx) -> [(png, caption)];
        # run(cfg, out_dir, quiet=..., resume=...) -> RunResult   (replaces the standard run)
        # help={"hidden": "..."}; choices={"dataset": ("mnist10k", "fashion-mnist")}
    ))

For image recipes, :func:`tensorcalc.recipes._common.image_data` gives MNIST-10k or
Fashion-MNIST ready to use (``flat=False`` for (N, 1, 28, 28) convolution inputs) and
:func:`~tensorcalc.recipes._common.random_shift` a shift augmentation for ``augment``.

``Data.task`` picks the defaults: "multiclass" (logits (N, C), cross-entropy, accuracy +
confusion matrix), "binary" (one logit, BCE with logits, accuracy), "regression" (MSE, R²).
Every recipe gets the common hyperparameters of :data:`COMMON_DEFAULTS` (its ``defaults``
override them); each one becomes a ``--flag`` of ``tensorcalc train NAME`` with the default's
type (ints, floats, strings, booleans, and tuples of ints written ``256,128``).

The standard run (:func:`tensorcalc.recipes.runner.train_recipe`) then does the rest: splits a
validation set off the training data, seeds everything from ``cfg["seed"]``, builds the
optimiser and schedule by name, trains with the :class:`~tensorcalc.train.Trainer` (progress
bar, CSV + TensorBoard logs, checkpoints, resume), scores the test split and writes
``report.html``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Data", "Recipe", "RunResult", "register", "get_recipe", "list_recipes",
           "COMMON_DEFAULTS", "COMMON_HELP", "RecipeError", "train_recipe"]

#: hyperparameters every recipe has (a recipe's ``defaults`` override the values)
COMMON_DEFAULTS: dict = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "none",
    "seed": 0,
    "dataset": "",
    "val_fraction": 0.1,
    "limit": 0,
    "checkpoint_every": 0,
}

COMMON_HELP: dict = {
    "epochs": "passes over the training data",
    "batch_size": "examples per optimisation step",
    "lr": "learning rate (peak rate for --schedule onecycle)",
    "optimizer": "sgd | momentum | nesterov | adam | adamw | rmsprop",
    "momentum": "momentum μ for sgd-type optimisers",
    "weight_decay": "L2 penalty λ (decoupled for adamw)",
    "schedule": "learning-rate schedule: none | cosine | step | onecycle | plateau",
    "seed": "seed of every random choice (split, init, shuffling, dropout, augmentation)",
    "dataset": "data set (recipe-specific; empty: the recipe's default)",
    "val_fraction": "fraction of the training data held out for validation (0: none)",
    "limit": "use only this many training examples (0: all) — for quick checks",
    "checkpoint_every": "save a resumable checkpoint every N steps (0: about 4 per epoch)",
}

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "cosine", "step", "onecycle", "plateau")


class RecipeError(ValueError):
    """Bad recipe name, hyperparameter or data: the message is meant for the user as is."""


@dataclass
class Data:
    """A recipe's data: model-ready arrays and what is needed to show and explain them.

    ``train``/``test`` (and optional ``val``) are ``(x, y)`` pairs: float inputs in the shape
    the model takes, integer labels (classification) or float targets (regression).
    ``image_shape`` (e.g. (28, 28) or (3, 32, 32)) lets reports draw inputs as images;
    ``prepare(raw) -> x`` turns raw user input (``tensorcalc predict --input file.npy``) into
    model input, applying the same scaling as the training data. ``extra`` holds anything a
    recipe's own figures need (e.g. the raw 2-D points behind polynomial features).
    """

    name: str
    task: str
    train: tuple
    test: tuple
    val: tuple | None = None
    num_classes: int | None = None
    class_names: list | None = None
    image_shape: tuple | None = None
    prepare: Callable | None = None
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in ("multiclass", "binary", "regression"):
            raise ValueError(f"Data: task must be 'multiclass', 'binary' or 'regression', got "
                             f"{self.task!r}")

    @property
    def classification(self) -> bool:
        return self.task != "regression"


@dataclass
class Recipe:
    """A named training job (see the module docstring for the protocol)."""

    name: str
    description: str
    data: Callable
    model: Callable | None = None
    defaults: dict = field(default_factory=dict)
    loss: Callable | None = None
    metrics: Callable | None = None
    augment: Callable | None = None
    figures: Callable | None = None
    run: Callable | None = None
    help: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)

    def config(self, overrides: dict | None = None) -> dict:
        """The hyperparameters: common defaults, then the recipe's, then ``overrides``."""
        cfg = dict(COMMON_DEFAULTS)
        cfg.update(self.defaults)
        for k, v in (overrides or {}).items():
            if k not in cfg:
                raise RecipeError(f"recipe {self.name!r} has no hyperparameter {k!r}; it has "
                                  f"{', '.join(sorted(cfg))}")
            cfg[k] = v
        cfg["recipe"] = self.name
        return cfg


@dataclass
class RunResult:
    """What a finished run returns: its directory, test figures, report path, history."""

    run_dir: str | None
    test: dict
    report: str | None = None
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[str, Recipe] = {}
_discovered = False


def register(recipe: Recipe) -> Recipe:
    """Add a recipe to the registry (its name must be new); returns it."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register: expected a Recipe, got {type(recipe).__name__}")
    if recipe.name in _REGISTRY and _REGISTRY[recipe.name] is not recipe:
        raise ValueError(f"register: a recipe named {recipe.name!r} already exists")
    if recipe.model is None and recipe.run is None:
        raise ValueError(f"register: recipe {recipe.name!r} needs a model builder or a run")
    _REGISTRY[recipe.name] = recipe
    return recipe


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "runner":
            importlib.import_module(f"{__name__}.{info.name}")


def list_recipes() -> list[Recipe]:
    """Every registered recipe, sorted by name."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (``_`` and ``-`` are interchangeable); a :class:`RecipeError`
    listing the recipes if there is none."""
    _discover()
    if isinstance(name, Recipe):
        return name
    key = str(name).strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    names = ", ".join(sorted(_REGISTRY))
    import difflib

    close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RecipeError(f"unknown recipe {name!r}.{hint} Available recipes: {names} "
                      "(see `tensorcalc list`)")


def train_recipe(name, overrides: dict | None = None, out_dir: str | None = None, **kw):
    """Run a recipe end to end (see :func:`tensorcalc.recipes.runner.train_recipe`)."""
    from .runner import train_recipe as _train

    return _train(name, overrides, out_dir, **kw)
