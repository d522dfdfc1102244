"""The shared recipe pipeline: settings, data, seeding, optimiser and schedule by name, the run,
test scoring, ``metrics.json``, the report; evaluate / predict / load of a finished run; tune.

A *recipe* (:class:`Recipe`) is a declaration — data, model, loss and metrics (or the task's
defaults), defaults, figures — and :func:`train_recipe` does the rest, once for every recipe:

1. settings: the common defaults, the recipe's, the caller's; each checked
   (:func:`validate_config`: a bad value raises :class:`RecipeError` naming the ``--flag``);
2. data: ``recipe.data(cfg)``; every split checked for NaN/Inf (naming the data set and row)
   and labels in range; a validation split (stratified) and ``--limit``
   (:func:`prepare_data`);
3. seeding: four independent streams from ``cfg["seed"]`` (``SeedSequence.spawn``): the split,
   the initialisation (the model keeps it for dropout), the loader's shuffling and the
   trainer's own (augmentation) — independent so that resuming one never rewinds another;
4. the model is built — all of the above happens *before* the run directory is touched, so a
   typo never costs a finished run — then :func:`tensorcalc.train.rundir.prepare` readies the
   directory (refusing one that holds a run unless ``resume`` or ``overwrite``);
5. the run (:func:`run_standard`): loss, metrics, optimiser and schedule by name, training
   with checkpoints, logs and exact resume;
6. test scoring of the final weights, ``metrics.json`` and ``report.html`` (one generic
   report, extended by the recipe's ``figures``).

A *study* that compares runs (transfer learning's three methods, an augmentation study) is a
recipe with a ``run`` of its own that composes :func:`run_standard` calls — each one the
standard run with given settings, data, model and parameter groups — and writes its own
comparison; it never copies the training loop.

The registry (:func:`register`, :func:`get_recipe`) lives here; :mod:`tensorcalc.recipes`
holds the shipped recipes, which register themselves when that package is imported (its
entry points — ``tensorcalc.recipes.train_recipe`` and friends — import them all first).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import data as D
from .. import functional as F
from .. import optim
from .. import serialization as S
from ..tensor import Tensor
from . import metrics as M
from . import rundir as RD
from .report import flag, write_run_report
from .trainer import Trainer

__all__ = ["Data", "Recipe", "RunResult", "RecipeError", "register", "get_recipe",
           "list_recipes", "COMMON_DEFAULTS", "COMMON_HELP", "OPTIMIZERS", "SCHEDULES",
           "DATASET_TITLES", "train_recipe", "run_standard", "evaluate_run", "predict_run",
           "tune_recipe", "validate_config", "make_optimizer", "make_scheduler", "prepare_data",
           "flag", "seed_streams", "load_run", "LoadedRun", "RunContext", "write_json"]

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
    "diagnostics": 50,
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
    "diagnostics": "record per-layer gradient flow and activation health every N steps for "
                   "the report and TensorBoard (0: off)",
}

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "cosine", "step", "onecycle", "plateau")

#: what ``Data.task`` may be: the first three pick the default loss, metrics and report; a
#: recipe with another kind of target ("detection": class + box) declares its loss and metrics
TASKS = ("multiclass", "binary", "regression", "detection")

#: how report titles name the shipped data sets (``Data.title`` overrides)
DATASET_TITLES = {"mnist10k": "MNIST-10k", "fashion-mnist": "Fashion-MNIST",
                  "mnist10k-canvas": "MNIST-10k digits on 64×64 canvases",
                  "mnist10k-5to9": "MNIST-10k digits 5–9", "two-moons": "two moons",
                  "linear": "a synthetic linear data set"}


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
    ``title`` is the name shown in report titles (default: :attr:`display`).
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
    title: str = ""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"Data: task must be one of {', '.join(map(repr, TASKS))}, got "
                             f"{self.task!r}")

    @property
    def classification(self) -> bool:
        return self.task in ("multiclass", "binary")

    @property
    def display(self) -> str:
        """The data set's name for titles: ``title``, else the known name of ``name``
        (:data:`DATASET_TITLES`), else ``name``."""
        return self.title or DATASET_TITLES.get(self.name, self.name)


@dataclass
class Recipe:
    """A named training job: a declaration the pipeline runs.

    ``data(cfg) -> Data`` and ``model(cfg, data, rng) -> Module`` are required (a study may
    leave out the model); optional: ``loss(cfg, data) -> fn``, ``metrics(cfg, data) ->
    [Metric]``, ``augment(cfg, data) -> fn(x, rng) | None``, ``figures(ctx) -> [(png,
    caption)]`` (extra sections of the report), ``run(cfg, run_dir, quiet=, progress=) ->
    RunResult`` (a study composing :func:`run_standard` calls), ``help`` (flag texts) and
    ``choices`` (allowed values), ``headline`` (``(test key, label)``: the figure the report
    leads with, default accuracy or R² by the task). ``description`` says what is trained,
    not on which data set or how well: report titles add the run's real data set.
    ``resolve(cfg, given) -> cfg`` fills settings whose defaults depend on other settings (a
    loss's or an environment's published hyperparameters) for every key not in ``given``, the
    keys the user set; :meth:`config` applies it, so ``config.json`` records what ran.
    """

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
    headline: tuple | None = None
    #: ``evaluate(checkpoint, cfg, **options) -> dict`` replaces the test-split scoring of
    #: ``evaluate_run`` (reinforcement learning: greedy episodes, ``episodes=N``)
    evaluate: Callable | None = None
    #: the ``run`` hook accepts ``resume=True`` (continues from its own checkpoints)
    resumable: bool = False
    #: ``resolve(cfg, given) -> cfg``: defaults that depend on other settings (see above)
    resolve: Callable | None = None

    def config(self, overrides: dict | None = None) -> dict:
        """The hyperparameters: common defaults, then the recipe's, then ``overrides``."""
        cfg = dict(COMMON_DEFAULTS)
        cfg.update(self.defaults)
        for k, v in (overrides or {}).items():
            if k not in cfg:
                raise RecipeError(f"recipe {self.name!r} has no hyperparameter {k!r}; it has "
                                  f"{', '.join(sorted(cfg))}")
            cfg[k] = v
        if self.resolve is not None:
            cfg = self.resolve(cfg, frozenset(overrides or ()))
        cfg["recipe"] = self.name
        return cfg


@dataclass
class RunResult:
    """What a finished run returns: its directory, test figures, report path, history — and,
    from :func:`run_standard`, the trained ``model`` and the ``trainer`` that trained it (with
    the test ``outputs`` and ``targets`` in ``extra``)."""

    run_dir: str | None
    test: dict
    report: str | None = None
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    model: object = None
    trainer: object = None


_REGISTRY: dict[str, Recipe] = {}


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


#: functions that register recipes on first use of the registry (``tensorcalc.recipes`` adds
#: the one that imports the shipped recipes; a plugin package can add its own)
DISCOVERERS: list[Callable[[], None]] = []


#: packages whose import registers recipes; the shipped ones are found by name (not imported at
#: module level: recipes sit above this module), so a run loads from any entry point
RECIPE_PACKAGES: list[str] = ["tensorcalc.recipes"]


def _discover() -> None:
    while RECIPE_PACKAGES:
        importlib.import_module(RECIPE_PACKAGES.pop(0))
    while DISCOVERERS:
        DISCOVERERS.pop(0)()


def list_recipes() -> list[Recipe]:
    """Every registered recipe, sorted by name."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (``_`` and ``-`` are interchangeable); a :class:`RecipeError`
    listing the recipes if there is none."""
    if isinstance(name, Recipe):
        return name
    _discover()
    key = str(name).strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    names = ", ".join(sorted(_REGISTRY))
    import difflib

    close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise RecipeError(f"unknown recipe {name!r}.{hint} Available recipes: {names} "
                      "(see `tensorcalc list`)")




# ------------------------------------------------------------------------------ running
# ------------------------------------------------------------------------------ configuration
def validate_config(recipe: Recipe, cfg: dict) -> dict:
    """Check the common hyperparameters and the recipe's choices; returns ``cfg``."""

    def need(key, ok, what):
        v = cfg.get(key)
        if not ok(v):
            raise RecipeError(f"{flag(key)} must be {what}, got {v!r}")

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def is_num(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    need("epochs", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    need("batch_size", lambda v: is_int(v) and v >= 1, "an integer >= 1")
    need("lr", lambda v: is_num(v) and math.isfinite(v) and v > 0, "a number > 0")
    need("weight_decay", lambda v: is_num(v) and math.isfinite(v) and v >= 0, "a number >= 0")
    need("momentum", lambda v: is_num(v) and 0 <= v < 1, "in [0, 1)")
    need("val_fraction", lambda v: is_num(v) and 0 <= v < 1, "in [0, 1)")
    need("limit", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    need("checkpoint_every", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    if "diagnostics" in cfg:
        need("diagnostics", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    need("seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    need("optimizer", lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS))
    need("schedule", lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES))
    for key, allowed in recipe.choices.items():
        need(key, lambda v, a=allowed, k=key: v in a or (v == "" and k == "dataset"),
             "one of " + ", ".join(map(str, allowed)))
    # Settings many recipes share, checked by meaning wherever a recipe has them: a value that
    # makes no sense is refused by its flag name before anything is built or written.
    checks = {
        "dropout": lambda v: D.check_fraction(v, flag("dropout")),
        "shift": lambda v: D.check_at_least(v, flag("shift"), 0, integer=True),
        "hidden": lambda v: D.check_widths(v, flag("hidden")),
        "widths": lambda v: D.check_widths(v, flag("widths"), allow_empty=False),
        "channels": lambda v: D.check_widths(v, flag("channels"), allow_empty=False),
    }
    for key, check in checks.items():
        if key in cfg:
            try:
                check(cfg[key])
            except ValueError as e:
                raise RecipeError(str(e)) from None
    return cfg


def seed_streams(seed: int) -> dict:
    """Four independent Generators from one seed: split, init, loader, train."""
    names = ("split", "init", "loader", "train")
    kids = np.random.SeedSequence(int(seed)).spawn(len(names))
    return {n: np.random.default_rng(k) for n, k in zip(names, kids, strict=True)}


# ------------------------------------------------------------------------------ data
def _check_split(data: Data, split: str, xy):
    x, y = xy
    D.check_finite(x, f"{data.name} {split} inputs")
    if data.classification:
        D.check_labels(y, data.num_classes or 2, f"{data.name} {split} labels")
    else:
        D.check_finite(np.asarray(y, dtype=np.float64), f"{data.name} {split} targets")
    if len(x) != len(y):
        raise RecipeError(f"{data.name} {split}: {len(x)} inputs but {len(y)} targets")


def prepare_data(recipe: Recipe, cfg: dict, rng=None) -> Data:
    """``recipe.data(cfg)``, checked, with a validation split and ``--limit`` applied."""
    try:
        data = recipe.data(cfg)
    except (ValueError, FileNotFoundError) as e:
        if isinstance(e, RecipeError):
            raise
        raise RecipeError(str(e)) from None
    if data.task == "binary" and data.num_classes is None:
        data.num_classes = 2
    try:
        for split in ("train", "val", "test"):
            xy = getattr(data, split)
            if xy is not None:
                _check_split(data, split, xy)
    except ValueError as e:
        raise RecipeError(str(e)) from None
    rng = rng if rng is not None else seed_streams(cfg["seed"])["split"]
    x, y = data.train
    if data.val is None and cfg.get("val_fraction", 0) > 0:
        k = int(round(cfg["val_fraction"] * len(y)))
        if k >= 1 and len(y) - k >= 1:
            tr, va = D.train_test_split(len(y), test_size=k, rng=rng,
                                        stratify=y if data.classification else None)
            data.train, data.val = (x[tr], y[tr]), (x[va], y[va])
    if cfg.get("limit"):
        n = cfg["limit"]
        data.train = (data.train[0][:n], data.train[1][:n])
        if data.val is not None:
            data.val = (data.val[0][:max(n // 4, 1)], data.val[1][:max(n // 4, 1)])
    return data


# ------------------------------------------------------------------------------ model pieces
def _binary_loss(z, t):
    """Binary cross-entropy with logits for one logit per example (output (N,) or (N, 1))."""
    n = z.shape[0]
    tt = Tensor(np.asarray(t.data if isinstance(t, Tensor) else t).reshape(n).astype(z.dtype))
    return F.binary_cross_entropy_with_logits(z.reshape((n,)), tt)


def _regression_loss(z, t):
    """Mean squared error ½-free: (1/N) Σ (ŷ − y)², output reshaped to the target's shape."""
    tt = t if isinstance(t, Tensor) else Tensor(t)
    if tt.dtype != z.dtype:
        tt = Tensor(tt.data.astype(z.dtype))
    return F.mse_loss(z.reshape(tt.shape), tt)


def default_loss(data: Data):
    if data.task not in ("multiclass", "binary", "regression"):
        raise RecipeError(f"{data.name}: a {data.task!r} task has no default loss; the recipe "
                          "declares loss= and metrics=")
    return {"multiclass": F.cross_entropy, "binary": _binary_loss,
            "regression": _regression_loss}[data.task]


def default_metrics(data: Data) -> list:
    if data.classification:
        return [M.Accuracy()]
    return [M.MeanSquaredError(), M.R2Score()]


def make_optimizer(cfg: dict, params):
    """An optimiser by name: sgd, momentum (heavy ball), nesterov, adam, adamw, rmsprop."""
    name, lr, wd, mu = cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["momentum"]
    params = list(params)
    if name == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=mu, weight_decay=wd)
    if name == "nesterov":
        return optim.SGD(params, lr=lr, momentum=mu, weight_decay=wd, nesterov=True)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise RecipeError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def make_scheduler(cfg: dict, optimizer, steps_per_epoch: int):
    """A schedule by name: none, cosine (to 0 over the run, per epoch), step (×0.1 at ⅔ of the
    epochs), onecycle (per step, peak ``lr``), plateau (×0.1 after 2 flat epochs of val loss)."""
    name, epochs = cfg["schedule"], cfg["epochs"]
    if name == "none":
        return None
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(1, (2 * epochs) // 3), gamma=0.1)
    if name == "onecycle":
        total = max(2, epochs * steps_per_epoch)
        cyc = "momentum" in optimizer.param_groups[0] and optimizer.param_groups[0][
            "momentum"] > 0 or "betas" in optimizer.param_groups[0]
        return optim.OneCycleLR(optimizer, max_lr=cfg["lr"], total_steps=total,
                                cycle_momentum=bool(cyc))
    if name == "plateau":
        return optim.ReduceLROnPlateau(optimizer, factor=0.1, patience=2)
    raise RecipeError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")


def _loader(xy, batch_size, rng=None, shuffle=False):
    return D.DataLoader(D.TensorDataset(*xy), batch_size=batch_size, shuffle=shuffle, rng=rng)


def build_trainer(recipe: Recipe, cfg: dict, data: Data, train_xy, out_dir=None, *,
                  quiet=False, progress=None, streams=None, model=None, params=None):
    """Model (``recipe.model`` unless given), loss, metrics, optimiser over ``params`` (default:
    the model's parameters; a list of parameter groups sets per-group rates), schedule, loader
    and Trainer for one run."""
    streams = streams or seed_streams(cfg["seed"])
    if model is None:
        model = recipe.model(cfg, data, streams["init"])
    loss_fn = recipe.loss(cfg, data) if recipe.loss else default_loss(data)
    metrics = recipe.metrics(cfg, data) if recipe.metrics else default_metrics(data)
    loader = _loader(train_xy, cfg["batch_size"], streams["loader"], shuffle=True)
    optimizer = make_optimizer(cfg, model.parameters() if params is None else params)
    scheduler = make_scheduler(cfg, optimizer, len(loader))
    augment = recipe.augment(cfg, data) if recipe.augment else None
    monitor = "val_acc" if data.classification else "val_loss"
    callbacks = []
    if out_dir is not None and cfg.get("diagnostics", 50):  # a run with a report
        from ..diagnostics.flow import GradientFlow
        callbacks.append(GradientFlow(every=int(cfg.get("diagnostics", 50)), verbose=not quiet))
    trainer = Trainer(model, loss_fn, optimizer, metrics=metrics, scheduler=scheduler,
                      rng=streams["train"], out_dir=out_dir, callbacks=callbacks,
                      checkpoint_every=cfg.get("checkpoint_every") or None, monitor=monitor,
                      augment=augment, quiet=quiet, progress=progress, config=cfg)
    from .. import distributed  # an MPI job (mpiexec / --procs): this run is data-parallel
    if distributed.active():
        distributed.data_parallel(trainer, loader)
    return trainer, loader


_DATA_VAL = object()


def run_standard(recipe, cfg: dict, data: Data, *, model=None, params=None, train=None,
                 val=_DATA_VAL, out_dir: str | None = None, streams: dict | None = None,
                 resume_from: str | None = None, test: bool = True, report: bool = False,
                 quiet: bool = True, progress: bool | None = False) -> RunResult:
    """The standard run of ``recipe`` with settings ``cfg`` on prepared ``data``: train, then
    (``test``) score the final weights on ``data.test``; with ``out_dir`` also checkpoints,
    logs, ``metrics.json`` and (``report``) ``report.html``. Returns a :class:`RunResult`
    holding the trained ``model`` and its ``trainer``.

    This is the one training run of the library's recipes; a study composes several, varying
    ``cfg`` (settings), ``model`` (e.g. pre-trained layers), ``params`` (which parameters
    learn, at which rates), ``train`` / ``val`` (the (x, y) pairs; default ``data.train`` and
    ``data.val``, ``val=None`` for none) and ``streams`` (the seeded Generators of
    :func:`seed_streams`, e.g. to give several runs the same batches).
    """
    recipe = get_recipe(recipe)
    trainer, loader = build_trainer(recipe, cfg, data, data.train if train is None else train,
                                    out_dir, quiet=quiet, progress=progress, streams=streams,
                                    model=model, params=params)
    val_xy = data.val if val is _DATA_VAL else val
    val_loader = _loader(val_xy, 1000) if val_xy is not None and len(val_xy[1]) else None
    trainer.fit(loader, val_loader, epochs=cfg["epochs"], resume_from=resume_from)
    if not test:
        return RunResult(run_dir=out_dir, test={}, history=list(trainer.history),
                         train_seconds=trainer.train_seconds, config=cfg, model=trainer.model,
                         trainer=trainer)
    return finish_run(recipe, cfg, data, trainer, out_dir, report=report)


# ------------------------------------------------------------------------------ train
def _resume_config(recipe: Recipe, run_dir: str, given: dict) -> tuple[dict, str]:
    """The saved run's config (checked: the checkpoint must be complete and uncorrupted),
    with ``epochs`` and ``checkpoint_every`` as the only values a resume may change."""
    ck = os.path.join(run_dir, "checkpoints", "last")
    if not os.path.isdir(ck):
        raise RecipeError(f"--resume: there is no checkpoint at {ck}; start the run without "
                          "--resume (or point --out at the run to continue)")
    try:
        saved = S.load_state(ck)  # verifies the manifest, size and sha256 of everything
    except S.CheckpointError as e:
        raise RecipeError(f"--resume: the checkpoint is unusable: {e}. The run directory "
                          f"{run_dir} was left as it is.") from None
    cfg = dict(saved.config or {})
    if cfg.get("recipe") != recipe.name:
        raise RecipeError(f"--resume: {run_dir} holds a run of recipe {cfg.get('recipe')!r}, "
                          f"not {recipe.name!r}")
    for k, v in given.items():  # --epochs may change: the Loop re-plans the schedule
        if k in ("epochs", "checkpoint_every"):
            cfg[k] = v
        elif k in cfg and cfg[k] != v and not (isinstance(v, tuple) and list(v) == cfg[k]):
            raise RecipeError(f"--resume continues the run as it was configured: {flag(k)} "
                              f"{v!r} differs from the run's {cfg[k]!r}")
    for k, v in list(cfg.items()):  # JSON turned tuples into lists
        if isinstance(recipe.config().get(k), tuple) and isinstance(v, list):
            cfg[k] = tuple(v)
    return cfg, ck


def _resume_run_config(recipe: Recipe, run_dir: str, given: dict) -> dict:
    """The saved ``config.json`` of a resumable run hook's run (its checkpoints are its own),
    with ``checkpoint_every`` as the only value a resume may change."""
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        raise RecipeError(f"--resume: there is no readable run configuration at {path}; start "
                          "the run without --resume") from None
    if not isinstance(cfg, dict) or cfg.get("recipe") != recipe.name:
        raise RecipeError(f"--resume: {run_dir} holds no run of recipe {recipe.name!r}")
    full = recipe.config()
    for k, v in list(cfg.items()):  # JSON turned tuples into lists
        if isinstance(full.get(k), tuple) and isinstance(v, list):
            cfg[k] = tuple(v)
    for k, v in given.items():
        if k == "checkpoint_every":
            cfg[k] = v
        elif cfg.get(k) != v:
            raise RecipeError(f"--resume continues the run as it was configured: {flag(k)} "
                              f"{v!r} differs from the run's {cfg.get(k)!r}")
    return cfg


def _record_outputs(rd, run_dir: str) -> None:
    """Add what the run wrote at the top of ``run_dir`` to the run directory's record."""
    if rd is None:
        return
    for name in sorted(os.listdir(run_dir)):
        if name not in rd.preexisting and name != RD.RECORD and not name.startswith("."):
            rd.record(name)


@contextlib.contextmanager
def _recording(rd, run_dir: str):
    """Record the run's outputs when the block ends. If the block failed, its error is the one
    reported (a full disk names the file that could not be written, not the record after it)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            _record_outputs(rd, run_dir)
        raise
    _record_outputs(rd, run_dir)


def train_recipe(name, overrides: dict | None = None, out_dir: str | None = None, *,
                 resume: bool = False, overwrite: bool = False, quiet: bool = False,
                 progress: bool | None = None, report: bool = True) -> RunResult:
    """Run recipe ``name`` with hyperparameters ``overrides`` into ``out_dir`` (default
    ``runs/<name>``); see the module docstring. ``resume`` continues the run in ``out_dir``;
    ``overwrite`` replaces the run there (only files tensorcalc wrote are removed); a directory
    holding a run with neither raises :class:`~tensorcalc.train.rundir.RunDirError`.
    Returns a :class:`RunResult`."""
    recipe = get_recipe(name)
    given = dict(overrides or {})
    run_dir = out_dir or os.path.join("runs", recipe.name)
    if resume and recipe.run is not None and recipe.resumable:
        cfg, ck = _resume_run_config(recipe, run_dir, given), None
    elif resume:
        cfg, ck = _resume_config(recipe, run_dir, given)
    else:
        cfg, ck = recipe.config(given), None
    validate_config(recipe, cfg)
    if recipe.run is not None:  # a study: it validates its own settings before running
        from .. import distributed
        if distributed.active():  # every rank would write the same files
            raise RecipeError(f"recipe {recipe.name!r} runs its own training and is not "
                              "data-parallel; run it without --procs / mpiexec")
        if resume and not recipe.resumable:
            raise RecipeError(f"recipe {recipe.name!r} compares several short runs and has no "
                              "--resume; run it again")
        prepare_data(recipe, cfg)  # every data setting checked before the disk is touched
        rd = RD.prepare(run_dir, resume=resume, overwrite=overwrite)
        if not resume:
            write_json(os.path.join(run_dir, "config.json"), cfg)
        with _recording(rd, run_dir):
            if resume:  # a resumable run hook continues from its own checkpoints
                return recipe.run(cfg, run_dir, quiet=quiet, progress=progress, resume=True)
            return recipe.run(cfg, run_dir, quiet=quiet, progress=progress)
    streams = seed_streams(cfg["seed"])
    data = prepare_data(recipe, cfg, streams["split"])
    model = recipe.model(cfg, data, streams["init"])  # bad model settings fail here, not later
    from .. import distributed
    if distributed.active() and distributed.world().rank > 0:  # rank 0 writes, the others train
        return run_standard(recipe, cfg, data, model=model, streams=streams, resume_from=ck,
                            test=False, quiet=True, progress=False)
    rd = RD.prepare(run_dir, resume=resume, overwrite=overwrite)
    if not resume:
        write_json(os.path.join(run_dir, "config.json"), cfg)
        rd.record("config.json")
    if not quiet:
        n_val = 0 if data.val is None else len(data.val[1])
        steps = -(-len(data.train[1]) // cfg["batch_size"])
        print(f"{recipe.name}: {data.display}, {len(data.train[1]):,} training / {n_val:,} "
              f"validation / {len(data.test[1]):,} test examples; "
              f"{model.num_parameters():,} parameters; {plural(cfg['epochs'], 'epoch')} of "
              f"{plural(steps, 'step')} ({cfg['optimizer']}, lr {cfg['lr']:g}, batch "
              f"{cfg['batch_size']})" + (f"; resuming from {ck}" if resume else ""), flush=True)
    with _recording(rd, run_dir):
        try:
            return run_standard(recipe, cfg, data, model=model, out_dir=run_dir,
                                streams=streams, resume_from=ck, report=report, quiet=quiet,
                                progress=progress)
        except S.CheckpointError as e:
            raise RecipeError(f"--resume: the checkpoint is unusable: {e}. The run directory "
                              f"{run_dir} was left as it is.") from None


def plural(n: int, word: str) -> str:
    """``plural(1, "epoch")`` -> "1 epoch", ``plural(3, "epoch")`` -> "3 epochs"."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def finish_run(recipe, cfg, data, trainer, run_dir, report=True) -> RunResult:
    """Score the test split, write ``metrics.json`` and the report."""
    test_loader = _loader(data.test, 1000)
    figs, outputs, targets = trainer.evaluate(test_loader, return_outputs=True)
    test = {k: float(v) for k, v in figs.items()}
    per_class = None
    if data.classification:
        pred = M.predicted_labels(outputs)
        prf = M.precision_recall_f1(targets, pred, data.num_classes)
        test.update(precision=prf["macro_precision"], recall=prf["macro_recall"],
                    f1=prf["macro_f1"])
        per_class = {k: prf[k].tolist() for k in ("precision", "recall", "f1", "support")}
        per_class["confusion"] = M.confusion_matrix(targets, pred, data.num_classes).tolist()
    result = RunResult(run_dir=run_dir, test=test, history=list(trainer.history),
                       train_seconds=trainer.train_seconds, config=cfg, model=trainer.model,
                       trainer=trainer, extra={"outputs": outputs, "targets": targets,
                                               "per_class": per_class})
    if run_dir:
        write_json(os.path.join(run_dir, "metrics.json"),
                    {"test": test, "per_class": per_class, "train_seconds": trainer.train_seconds,
                     "epochs": trainer.epoch, "parameters": trainer.model.num_parameters()})
        if report:
            ctx = RunContext(recipe, cfg, data, trainer, run_dir, test, outputs, targets,
                             per_class)
            result.report = write_run_report(ctx)
    return result


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=lambda v: list(v) if isinstance(v, tuple) else str(v))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ report
class RunContext:
    """Everything a report (and a recipe's ``figures`` hook) may need about a finished run."""

    def __init__(self, recipe, cfg, data, trainer, run_dir, test, outputs, targets, per_class):
        self.recipe, self.cfg, self.data, self.trainer = recipe, cfg, data, trainer
        self.model = trainer.model
        self.run_dir, self.test, self.outputs, self.targets = run_dir, test, outputs, targets
        self.per_class = per_class

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)


# ------------------------------------------------------------------------------ evaluate/predict
class LoadedRun:
    """A trained model rebuilt from a run directory or checkpoint."""

    def __init__(self, recipe, cfg, data, model, checkpoint, run_dir):
        self.recipe, self.cfg, self.data, self.model = recipe, cfg, data, model
        self.checkpoint, self.run_dir = checkpoint, run_dir


def _find_checkpoint(path: str, which: str = "last") -> tuple[str, str | None]:
    """(checkpoint dir, run dir or None) from a run directory or a checkpoint directory."""
    if not os.path.exists(path):
        raise RecipeError(f"no such run or checkpoint: {path}")
    if os.path.isfile(os.path.join(path, S.MANIFEST)):
        parent = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        return path, parent if os.path.isfile(os.path.join(parent, "config.json")) else None
    ck = os.path.join(path, "checkpoints", which)
    if os.path.isdir(ck):
        return ck, path
    if os.path.isdir(os.path.join(path, "checkpoints")) or os.path.isfile(
            os.path.join(path, "config.json")):
        raise RecipeError(f"{path}: the run has no checkpoint '{which}' (did it finish an "
                          "epoch?)")
    raise RecipeError(f"{path}: neither a run directory (with checkpoints/) nor a checkpoint "
                      f"directory (with {S.MANIFEST})")


def load_run(path: str, which: str = "last") -> LoadedRun:
    """Rebuild a run's model from its checkpoint (verified: a corrupt one raises
    :class:`RecipeError` and changes nothing) and its data from the saved config."""
    ck, run_dir = _find_checkpoint(path, which)
    try:
        manifest = S.read_manifest(ck)
    except S.CheckpointError as e:
        raise RecipeError(f"unusable checkpoint: {e}") from None
    cfg = dict(manifest.get("config") or {})
    if "recipe" not in cfg:
        raise RecipeError(f"{ck}: the checkpoint does not say which recipe made it")
    recipe = get_recipe(cfg["recipe"])
    full = recipe.config()
    for k, v in cfg.items():
        if isinstance(full.get(k), tuple) and isinstance(v, list):
            cfg[k] = tuple(v)
    streams = seed_streams(cfg.get("seed", 0))
    data = prepare_data(recipe, cfg, streams["split"])
    model = recipe.model(cfg, data, streams["init"])
    try:
        S.load_state(ck, modules={"model": model})  # the weights only
    except S.CheckpointError as e:
        raise RecipeError(f"unusable checkpoint: {e}") from None
    model.eval()
    return LoadedRun(recipe, cfg, data, model, ck, run_dir)


def _custom_evaluation(path: str, which: str, options: dict):
    """The recipe's own ``evaluate`` of a checkpoint, when it declares one (else None)."""
    ck, _ = _find_checkpoint(path, which)
    try:
        cfg = dict(S.read_manifest(ck).get("config") or {})
    except S.CheckpointError as e:
        raise RecipeError(f"unusable checkpoint: {e}") from None
    recipe = get_recipe(cfg["recipe"]) if "recipe" in cfg else None
    if recipe is not None and recipe.evaluate is not None:
        return recipe.evaluate(ck, cfg, **options)
    if options:
        raise RecipeError(f"{', '.join(flag(k) for k in options)}: only for runs of recipes "
                          "that evaluate by playing episodes (dqn)")
    return None


def evaluate_run(path: str, which: str = "last", **options) -> dict:
    """Score a saved run's model on its test split: loss, metrics, per-class table (or the
    recipe's own ``evaluate`` with ``options``, e.g. ``episodes=100`` for dqn)."""
    custom = _custom_evaluation(path, which, options)
    if custom is not None:
        return custom
    run = load_run(path, which)
    recipe, data = run.recipe, run.data
    loss_fn = recipe.loss(run.cfg, data) if recipe.loss else default_loss(data)
    metrics = recipe.metrics(run.cfg, data) if recipe.metrics else default_metrics(data)
    trainer = Trainer(run.model, loss_fn, None, metrics=metrics, quiet=True)
    figs, out, tgt = trainer.evaluate(_loader(data.test, 1000), return_outputs=True)
    res = {"checkpoint": run.checkpoint, "recipe": recipe.name, "data": data.name,
           "n": int(len(tgt)), "test": {k: float(v) for k, v in figs.items()}, "run": run}
    if data.classification:
        pred = M.predicted_labels(out)
        res["per_class"] = M.precision_recall_f1(tgt, pred, data.num_classes)
        res["confusion"] = M.confusion_matrix(tgt, pred, data.num_classes)
    return res


def predict_run(path: str, inputs=None, index=None) -> dict:
    """Predictions of a saved run's model for raw ``inputs`` (prepared like the training data)
    or for test examples ``index``; returns outputs, labels / values and probabilities."""
    run = load_run(path)
    data = run.data
    if inputs is not None:
        try:  # complex or text input is refused, never cast (the imaginary part would vanish)
            inputs = D.check_numeric(inputs, "predict inputs")
        except ValueError as e:
            raise RecipeError(str(e)) from None
        if data.prepare is None:
            x = np.asarray(inputs, dtype=np.float32)
        else:
            x = data.prepare(np.asarray(inputs))
        x = np.asarray(x)
        want = data.test[0].shape[1:]
        if x.ndim == len(want):
            x = x[None]
        if x.shape[1:] != want:
            raise RecipeError(f"predict: inputs of shape {x.shape[1:]} per example, the model "
                              f"takes {want}")
        try:
            D.check_finite(x, "predict --input")
        except ValueError as e:
            raise RecipeError(str(e)) from None
        truth = None
    else:
        idx = np.asarray(index if index is not None else [0], dtype=np.int64).reshape(-1)
        n = len(data.test[1])
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise RecipeError(f"--index must lie in [0, {n}) (the test split), got "
                              f"{idx.tolist()}")
        x, truth = data.test[0][idx], data.test[1][idx]
    trainer = Trainer(run.model, None, None, quiet=True)
    out = trainer.predict(x)
    res = {"outputs": out, "truth": truth, "task": data.task, "class_names": data.class_names,
           "recipe": run.recipe.name}
    if data.task == "multiclass":
        z = out - out.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        res["labels"], res["probs"] = p.argmax(1), p
    elif data.task == "binary":
        p1 = 1 / (1 + np.exp(-out.reshape(len(out))))
        res["labels"], res["probs"] = (p1 > 0.5).astype(np.int64), np.stack([1 - p1, p1], 1)
    elif isinstance(out, (tuple, list)):  # several outputs side by side, e.g. logits | box
        res["values"] = np.concatenate([np.asarray(o).reshape(len(o), -1) for o in out], 1)
    else:
        res["values"] = out.reshape(len(out), -1)
    return res


# ------------------------------------------------------------------------------ tune
def tune_recipe(name, grid: dict, base: dict | None = None, folds: int = 5,
                search: str = "grid", trials: int | None = None, out_dir: str | None = None,
                quiet: bool = False, progress: bool | None = None):
    """k-fold cross-validation of a recipe over hyperparameter settings, then the best setting
    retrained on all training data and scored once on the test split (see
    :func:`tensorcalc.train.tune.tune`)."""
    from ..train import tune as T

    recipe = get_recipe(name)
    if recipe.model is None:
        raise RecipeError(f"recipe {recipe.name!r} has a custom run and cannot be tuned")
    for k in grid:
        if k in ("seed", "recipe"):
            raise RecipeError(f"--param {k}: not a hyperparameter to tune")
        recipe.config({k: None})  # raises RecipeError for unknown names
    cfg0 = recipe.config(base or {})
    validate_config(recipe, cfg0)
    streams = seed_streams(cfg0["seed"])
    cfg_nosplit = dict(cfg0, val_fraction=0.0)
    data = prepare_data(recipe, cfg_nosplit, streams["split"])
    x, y = data.train
    higher = data.classification
    key = "acc" if data.classification else "loss"

    def evaluate_setting(setting, train_idx, val_idx):
        cfg = dict(cfg0, **setting)
        validate_config(recipe, cfg)
        res = run_standard(recipe, cfg, data, train=(x[train_idx], y[train_idx]), val=None,
                           test=False)
        return res.trainer.evaluate(_loader((x[val_idx], y[val_idx]), 1000))

    def final_fit(setting):
        cfg = dict(cfg0, **setting)
        run_dir = out_dir and os.path.join(out_dir, "best")
        t0 = time.perf_counter()
        res = run_standard(recipe, cfg, data, val=None, out_dir=run_dir,
                           report=run_dir is not None, progress=progress)
        res.extra["seconds"] = time.perf_counter() - t0
        return res

    return T.tune(grid, evaluate_setting, final_fit, n=len(y), folds=folds, search=search,
                  trials=trials, seed=cfg0["seed"], score_key=key, higher_is_better=higher,
                  stratify=y if data.classification else None, out_dir=out_dir, quiet=quiet,
                  progress=progress, title=f"{recipe.name}: {folds}-fold cross-validation")
