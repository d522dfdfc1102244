"""Running recipes: the standard train → test → report pipeline, evaluate, predict, tune.

The pipeline of :func:`train_recipe` for a recipe and its hyperparameters ``cfg``:

1. check ``cfg`` (a bad value raises :class:`RecipeError` naming the ``--flag``);
2. ``recipe.data(cfg)``; check every split for NaN/Inf (naming the data set and row) and labels
   in range; split a validation set off the training data (stratified); ``--limit``;
3. seed four independent streams from ``cfg["seed"]`` (``SeedSequence.spawn``): the split, the
   initialisation (the model keeps it for dropout), the loader's shuffling, and the trainer's
   own (augmentation) — independent so that resuming one never rewinds another;
4. build the model, loss, metrics, optimiser (by name) and schedule (by name);
5. train with :class:`~tensorcalc.train.Trainer` into ``run_dir`` (``--resume`` continues from
   ``run_dir/checkpoints/last``);
6. score the final weights once on the test split; write ``metrics.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time

import numpy as np

from .. import data as D
from .. import functional as F
from .. import optim
from .. import serialization as S
from ..tensor import Tensor
from ..train import metrics as M
from ..train import report as R
from ..train.trainer import Trainer
from . import OPTIMIZERS, SCHEDULES, Data, Recipe, RecipeError, RunResult, get_recipe

__all__ = ["train_recipe", "evaluate_run", "predict_run", "tune_recipe", "validate_config",
           "make_optimizer", "make_scheduler", "prepare_data", "fit_once", "flag", "seed_streams",
           "load_run", "LoadedRun"]


def flag(key: str) -> str:
    """The command-line flag of a hyperparameter: ``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


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
    need("seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    need("optimizer", lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS))
    need("schedule", lambda v: v in SCHEDULES, "one of " + ", ".join(SCHEDULES))
    for key, allowed in recipe.choices.items():
        need(key, lambda v, a=allowed, k=key: v in a or (v == "" and k == "dataset"),
             "one of " + ", ".join(map(str, allowed)))
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
        D.check_finite(y, f"{data.name} {split} targets")
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
                  quiet=False, progress=None, streams=None):
    """Model, optimiser, schedule, loader and Trainer for one training run."""
    streams = streams or seed_streams(cfg["seed"])
    model = recipe.model(cfg, data, streams["init"])
    loss_fn = recipe.loss(cfg, data) if recipe.loss else default_loss(data)
    metrics = recipe.metrics(cfg, data) if recipe.metrics else default_metrics(data)
    loader = _loader(train_xy, cfg["batch_size"], streams["loader"], shuffle=True)
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = make_scheduler(cfg, optimizer, len(loader))
    augment = recipe.augment(cfg, data) if recipe.augment else None
    monitor = "val_acc" if data.classification else "val_loss"
    trainer = Trainer(model, loss_fn, optimizer, metrics=metrics, scheduler=scheduler,
                      rng=streams["train"], out_dir=out_dir,
                      checkpoint_every=cfg.get("checkpoint_every") or None, monitor=monitor,
                      augment=augment, quiet=quiet, progress=progress, config=cfg)
    return trainer, loader


def fit_once(recipe: Recipe, cfg: dict, data: Data, train_xy, val_xy=None, *, quiet=True,
             progress=False):
    """Train a fresh model in memory (no files) and return the trainer (used by tune)."""
    trainer, loader = build_trainer(recipe, cfg, data, train_xy, None, quiet=quiet,
                                    progress=progress)
    val = _loader(val_xy, 1000) if val_xy is not None else None
    trainer.fit(loader, val, epochs=cfg["epochs"])
    return trainer


# ------------------------------------------------------------------------------ train
def _resume_config(recipe: Recipe, run_dir: str, given: dict) -> tuple[dict, str]:
    """The saved run's config (checked: the checkpoint must be complete and uncorrupted),
    with ``epochs`` and ``checkpoint_every`` as the only values a resume may change."""
    ck = os.path.join(run_dir, "checkpoints", "last")
    if not os.path.isdir(ck):
        raise RecipeError(f"--resume: there is no checkpoint at {ck}; start the run without "
                          "--resume (or point --out at the run to continue)")
    try:
        saved = S.load_checkpoint(ck)  # verifies size and sha256 of everything
    except S.CheckpointError as e:
        raise RecipeError(f"--resume: the checkpoint is unusable: {e}. The run directory "
                          f"{run_dir} was left as it is.") from None
    cfg = dict(saved.config or {})
    if cfg.get("recipe") != recipe.name:
        raise RecipeError(f"--resume: {run_dir} holds a run of recipe {cfg.get('recipe')!r}, "
                          f"not {recipe.name!r}")
    for k, v in given.items():
        if k == "epochs" and v != cfg.get("epochs") and cfg.get("schedule") in ("cosine",
                                                                              "onecycle"):
            raise RecipeError(f"--resume: the run's {cfg['schedule']} schedule is laid out "
                              f"for its {cfg['epochs']} epochs; resume it without --epochs, or "
                              "start a new run to train longer")
        if k in ("epochs", "checkpoint_every"):
            cfg[k] = v
        elif k in cfg and cfg[k] != v and not (isinstance(v, tuple) and list(v) == cfg[k]):
            raise RecipeError(f"--resume continues the run as it was configured: {flag(k)} "
                              f"{v!r} differs from the run's {cfg[k]!r}")
    for k, v in list(cfg.items()):  # JSON turned tuples into lists
        if isinstance(recipe.config().get(k), tuple) and isinstance(v, list):
            cfg[k] = tuple(v)
    return cfg, ck


def _fresh_run_dir(run_dir: str) -> None:
    os.makedirs(run_dir, exist_ok=True)
    for name in ("checkpoints", "tb"):
        p = os.path.join(run_dir, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
    for name in ("history.csv", "metrics.json", "report.html"):
        p = os.path.join(run_dir, name)
        if os.path.exists(p):
            os.remove(p)


def train_recipe(name, overrides: dict | None = None, out_dir: str | None = None, *,
                 resume: bool = False, quiet: bool = False, progress: bool | None = None,
                 report: bool = True) -> RunResult:
    """Run recipe ``name`` with hyperparameters ``overrides`` into ``out_dir`` (default
    ``runs/<name>``); see the module docstring. Returns a :class:`RunResult`."""
    recipe = get_recipe(name)
    given = dict(overrides or {})
    run_dir = out_dir or os.path.join("runs", recipe.name)
    if resume:
        cfg, ck = _resume_config(recipe, run_dir, given)
    else:
        cfg, ck = recipe.config(given), None
    validate_config(recipe, cfg)
    if recipe.run is not None:
        if resume:
            raise RecipeError(f"recipe {recipe.name!r} runs in seconds and has no --resume; "
                              "run it again")
        _fresh_run_dir(run_dir)
        write_json(os.path.join(run_dir, "config.json"), cfg)
        return recipe.run(cfg, run_dir, quiet=quiet, progress=progress)
    streams = seed_streams(cfg["seed"])
    data = prepare_data(recipe, cfg, streams["split"])
    if not resume:
        _fresh_run_dir(run_dir)
        write_json(os.path.join(run_dir, "config.json"), cfg)
    trainer, loader = build_trainer(recipe, cfg, data, data.train, run_dir, quiet=quiet,
                                    progress=progress, streams=streams)
    val = _loader(data.val, 1000) if data.val is not None else None
    if not quiet:
        n_val = 0 if data.val is None else len(data.val[1])
        print(f"{recipe.name}: {data.name}, {len(data.train[1]):,} training / {n_val:,} "
              f"validation / {len(data.test[1]):,} test examples; "
              f"{trainer.model.num_parameters():,} parameters; {cfg['epochs']} epochs of "
              f"{len(loader)} steps ({cfg['optimizer']}, lr {cfg['lr']:g}, batch "
              f"{cfg['batch_size']})" + (f"; resuming from {ck}" if resume else ""), flush=True)
    try:
        trainer.fit(loader, val, epochs=cfg["epochs"], resume_from=ck)
    except S.CheckpointError as e:
        raise RecipeError(f"--resume: the checkpoint is unusable: {e}. The run directory "
                          f"{run_dir} was left as it is.") from None
    return finish_run(recipe, cfg, data, trainer, run_dir, report=report)


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
                       train_seconds=trainer.train_seconds, config=cfg)
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


def _pct(v):
    return f"{100 * v:.2f} %" if isinstance(v, float) and math.isfinite(v) else "—"


def headline(task: str, test: dict) -> tuple[str, str]:
    """The one figure a run is judged by: (label, formatted value)."""
    if task == "regression":
        return "test R²", f"{test.get('r2', float('nan')):.4f}"
    return "test accuracy", _pct(test.get("acc", float("nan")))


def write_run_report(ctx: RunContext) -> str:
    """Figures (PNGs beside the report) and ``report.html`` for a standard run."""
    recipe, cfg, data, trainer, test = ctx.recipe, ctx.cfg, ctx.data, ctx.trainer, ctx.test
    history = trainer.history
    n_val = 0 if data.val is None else len(data.val[1])
    rep = R.HTMLReport(
        f"{recipe.name} — {recipe.description}",
        f"{data.name} · {len(data.train[1]):,} train / {n_val:,} validation / "
        f"{len(data.test[1]):,} test examples · seed {cfg['seed']} · run directory "
        f"{os.path.abspath(ctx.run_dir)}")
    label, value = headline(data.task, test)
    cards = [(label, value), ("test loss", f"{test['loss']:.4f}")]
    if data.classification:
        cards.append(("macro F1", f"{test.get('f1', float('nan')):.4f}"))
    else:
        cards.append(("test MSE", f"{test.get('mse', float('nan')):.4g}"))
    cards += [("training time", f"{trainer.train_seconds:.1f} s"),
              ("epochs", f"{trainer.epoch}"), ("parameters", f"{ctx.model.num_parameters():,}")]
    rep.cards(cards)
    if data.description:
        rep.text(data.description)

    if history:
        rep.section("Learning curves")
        curves = R.plot_history(history, ctx.path("curves.png"))
        rep.figure(curves, "Loss and metrics per epoch on the training data (running mean over "
                           "the epoch, in training mode) and on the validation split.")
        last = history[-1]
        rows = [[k, last[k]] for k in last if k.startswith(("train_", "val_"))]
        rows.append(["learning rate at the end", last.get("lr")])
        rep.table(rows, ["final epoch", "value"])

    if recipe.figures is not None:
        extra = recipe.figures(ctx) or []
        if extra:
            rep.section("The model's view")
            for png, caption in extra:
                rep.figure(png, caption)

    if data.classification:
        rep.section("Test set")
        conf = np.asarray(ctx.per_class["confusion"])
        names = data.class_names
        cm_png = R.plot_confusion(conf, ctx.path("confusion.png"), names)
        pc = ctx.per_class
        rows = [[(names[i] if names else i), pc["precision"][i], pc["recall"][i], pc["f1"][i],
                 pc["support"][i]] for i in range(len(pc["f1"]))]
        rows.append(["macro average", test["precision"], test["recall"], test["f1"],
                     int(sum(pc["support"]))])
        rep.figure(cm_png, "Confusion matrix on the test split: row = true class, column = "
                           "predicted; colour is the fraction of the row.")
        rep.table(rows, ["class", "precision", "recall", "F1", "support"],
                  f"Test accuracy {_pct(test['acc'])} over {len(ctx.targets):,} examples.")
        if data.image_shape is not None:
            _image_sections(rep, ctx)
    else:
        rep.section("Test set")
        rep.table([[k, v] for k, v in test.items()], ["figure", "value"])

    rep.section("Model")
    rep.text(f"{ctx.model.num_parameters():,} trainable parameters; optimiser "
             f"{type(trainer.optimizer).__name__}"
             + (f", schedule {type(trainer.scheduler).__name__}" if trainer.scheduler else ""))
    rep.pre(repr(ctx.model))
    rep.section("Hyperparameters")
    hyperparameter_table(rep, cfg)
    rep.section("Run")
    steps = trainer.global_step
    rep.table([["optimisation steps", steps],
               ["time per epoch", f"{trainer.train_seconds / max(trainer.epoch, 1):.2f} s"],
               ["time per step (incl. validation)",
                f"{1000 * trainer.train_seconds / max(steps, 1):.1f} ms"],
               ["machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                           f"Python {platform.python_version()}, NumPy {np.__version__}"]],
              ["", ""])
    rep.section("Files")
    rep.table([["history.csv", "per-epoch figures"],
               ["tb/", "TensorBoard events: tensorboard --logdir " + ctx.run_dir],
               ["checkpoints/last, checkpoints/best", "resumable checkpoints (safetensors + "
                                                      "JSON manifest)"],
               ["metrics.json", "test figures, per-class table, confusion matrix"],
               ["*.png", "the figures of this page"]], ["file", "what"],
              f"Continue training: tensorcalc train {recipe.name} --out {ctx.run_dir} --resume "
              f"--epochs N.   Re-score: tensorcalc evaluate {ctx.run_dir}.")
    return rep.save(ctx.path("report.html"))


def _hp(v) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def hyperparameter_table(rep, cfg: dict):
    """The hyperparameters as they would be typed on the command line."""
    rep.table([[flag(k), _hp(v)] for k, v in cfg.items() if k != "recipe"],
              ["flag", "value"],
              "Repeat this run: tensorcalc train " + str(cfg.get("recipe", "RECIPE")) + " "
              + " ".join(f"{flag(k)} {_hp(v)}" for k, v in cfg.items()
                         if k != "recipe" and _hp(v) != ""))


def _image_sections(rep, ctx):
    data, out, tgt = ctx.data, ctx.outputs, ctx.targets
    pred = M.predicted_labels(out)
    if out.ndim == 2 and out.shape[1] > 1:
        z = out - out.max(axis=1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        conf = prob[np.arange(len(pred)), pred]
    else:
        conf = None
    xs = data.test[0]
    n = min(32, len(xs))
    rep.section("Sample predictions")
    png = R.plot_image_grid(xs[:n], ctx.path("samples.png"), pred[:n], tgt[:n],
                            data.class_names, None if conf is None else conf[:n],
                            image_shape=data.image_shape)
    rep.figure(png, f"The first {n} test images with the model's prediction and confidence "
                    "(red: wrong, with the true class).")
    wrong = np.flatnonzero(pred != tgt)
    if conf is not None:
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")]  # most confident mistakes first
    k = min(32, len(wrong))
    rep.section(f"Misclassified ({len(wrong)} of {len(tgt):,})")
    png = R.plot_image_grid(xs[wrong[:k]], ctx.path("misclassified.png"), pred[wrong[:k]],
                            tgt[wrong[:k]], data.class_names,
                            None if conf is None else conf[wrong[:k]],
                            image_shape=data.image_shape)
    rep.figure(png, "Test images the model gets wrong, most confident mistakes first: "
                    "predicted class (true class) and the probability the model gave it.")


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
        S.load_checkpoint(ck, model)
    except S.CheckpointError as e:
        raise RecipeError(f"unusable checkpoint: {e}") from None
    model.eval()
    return LoadedRun(recipe, cfg, data, model, ck, run_dir)


def evaluate_run(path: str, which: str = "last") -> dict:
    """Score a saved run's model on its test split: loss, metrics, per-class table."""
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
        trainer = fit_once(recipe, cfg, data, (x[train_idx], y[train_idx]))
        return trainer.evaluate(_loader((x[val_idx], y[val_idx]), 1000))

    def final_fit(setting):
        cfg = dict(cfg0, **setting)
        run_dir = out_dir and os.path.join(out_dir, "best")
        t0 = time.perf_counter()
        trainer, loader = build_trainer(recipe, cfg, data, data.train, run_dir, quiet=True,
                                        progress=progress)
        trainer.fit(loader, None, epochs=cfg["epochs"])
        res = finish_run(recipe, cfg, data, trainer, run_dir, report=run_dir is not None)
        res.extra["seconds"] = time.perf_counter() - t0
        return res

    return T.tune(grid, evaluate_setting, final_fit, n=len(y), folds=folds, search=search,
                  trials=trials, seed=cfg0["seed"], score_key=key, higher_is_better=higher,
                  stratify=y if data.classification else None, out_dir=out_dir, quiet=quiet,
                  progress=progress, title=f"{recipe.name}: {folds}-fold cross-validation")
