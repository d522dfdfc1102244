"""transfer — transfer learning: what digits 0–4 teach a CNN about digits 5–9.

Source task: classify the MNIST-10k training digits 0–4 (≈ 4,100 images) with a small CNN
(:class:`DigitCNN`). Target task: classify digits 5–9 (relabelled 0–4) from only ``fraction``
(default 10 %, ≈ 390 images, stratified) of their training images, scored on every 5–9 image of
the standard 2,000-image test split (≈ 960). The target task is learned three ways, with the
same new head initialisation, the same batches in the same order and the same epochs:

(a) **scratch** — the whole network freshly initialised, every layer trained at ``lr``;
(b) **frozen** — the pre-trained convolutional feature extractor with ``requires_grad_(False)``
    (no gradient flows into it, and the engine records no graph for it) and a new head trained
    at ``lr``: only the head's parameters are learned;
(c) **fine-tune** — the pre-trained feature extractor and a new head, every layer trained, the
    pre-trained layers at the smaller rate ``lr · finetune_factor`` (default ×0.1) so that the
    useful features are adjusted rather than overwritten, the new head at ``lr``.

Every run minimises the cross-entropy −log softmax(z)_y with Adam. The report and the console
show a table — test accuracy, trainable and total parameters, training time — and the
validation-accuracy curves (validation: up to ``val_size`` of the unused 90 % of the 5–9
training images, scored after each epoch outside the timed training). The fine-tuned model is
the run's saved model (``tensorcalc evaluate RUN`` scores it).

Model (:class:`DigitCNN`): features = conv 5×5 (1→16, pad 2) → ReLU → max-pool 2 → conv 5×5
(16→32, pad 2) → ReLU → max-pool 2 → conv 3×3 (32→64, pad 1) → ReLU → max-pool 2 → flatten
(64·3·3 = 576); head = fc 576→``hidden`` → ReLU → fc ``hidden``→5.
"""

from __future__ import annotations

import os

import numpy as np

from .. import data as D
from .. import functional as F
from .. import nn, optim
from ..backend import as_rng
from ..serialization import save_checkpoint
from ..train import metrics as M
from ..train import report as R
from ..train.callbacks import Callback
from ..train.trainer import Trainer
from . import Data, Recipe, RecipeError, RunResult, get_recipe, register
from ._common import image_transform

__all__ = ["DigitCNN", "transfer_split", "METHODS"]

METHODS = ("scratch", "frozen", "fine-tune")
SOURCE_DIGITS, TARGET_DIGITS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


class DigitCNN(nn.Module):
    """``features`` (three conv–ReLU–pool stages) then ``head`` (fc–ReLU–fc): (N, 1, 28, 28)
    -> (N, num_classes) logits (see the module docstring)."""

    def __init__(self, num_classes: int = 5, hidden: int = 64, rng=None, head_rng=None):
        super().__init__()
        rng = as_rng(rng)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten())
        self.head = self.new_head(num_classes, hidden, rng if head_rng is None else head_rng)

    @staticmethod
    def new_head(num_classes: int, hidden: int, rng) -> nn.Module:
        """A freshly initialised classifier head fc 576→hidden → ReLU → fc hidden→classes."""
        rng = as_rng(rng)
        return nn.Sequential(nn.Linear(64 * 3 * 3, hidden, rng=rng), nn.ReLU(),
                             nn.Linear(hidden, num_classes, rng=rng))

    def forward(self, x):
        return self.head(self.features(x))


def _rng(cfg, *key) -> np.random.Generator:
    """An independent Generator for one named purpose, from the run's seed."""
    return np.random.default_rng(np.random.SeedSequence([int(cfg["seed"]), *key]))


def transfer_split(cfg) -> dict:
    """The two tasks from the standard MNIST-10k split (8,000 train / 2,000 test), prepared as
    (N, 1, 28, 28) inputs. Returns a dict of (x, y) pairs: ``source_train``, ``source_test``
    (digits 0–4), ``target_train`` (``fraction`` of the 5–9 training images, stratified),
    ``target_val`` (up to ``val_size`` of the others), ``target_test`` (all 5–9 test images);
    target labels are digit − 5."""
    frac = cfg["fraction"]
    if not (0 < frac <= 1):
        raise RecipeError(f"--fraction must be in (0, 1], got {frac!r}")
    s = D.mnist10k_split(test_size=2000, seed=0)
    prep = image_transform("mnist10k", flat=False)
    (xtr, ytr), (xte, yte) = s.train, s.test
    ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    src_tr, src_te = ytr < 5, yte < 5
    tgt_idx = np.flatnonzero(ytr >= 5)
    n_keep = max(5, int(round(frac * len(tgt_idx))))
    if n_keep >= len(tgt_idx):
        keep, rest = np.arange(len(tgt_idx)), np.arange(0)
    else:
        keep, rest = D.train_test_split(len(tgt_idx), test_size=len(tgt_idx) - n_keep,
                                        rng=_rng(cfg, 1), stratify=ytr[tgt_idx])
    keep, rest = np.sort(tgt_idx[keep]), tgt_idx[rest][:cfg["val_size"]]
    out = {"source_train": (prep(xtr[src_tr]), ytr[src_tr]),
           "source_test": (prep(xte[src_te]), yte[src_te]),
           "target_train": (prep(xtr[keep]), ytr[keep] - 5),
           "target_val": (prep(xtr[rest]), ytr[rest] - 5),
           "target_test": (prep(xte[~src_te]), yte[~src_te] - 5)}
    if cfg["limit"]:
        n = cfg["limit"]
        for k in ("source_train", "target_train"):
            out[k] = (out[k][0][:n], out[k][1][:n])
    return out


def _data(cfg) -> Data:
    """The target task (digits 5–9) as a recipe's Data (what `tensorcalc evaluate` scores)."""
    sp = transfer_split(cfg)
    val = sp["target_val"] if len(sp["target_val"][1]) else None
    return Data(name="mnist10k-5to9", task="multiclass", train=sp["target_train"],
                test=sp["target_test"], val=val, num_classes=5,
                class_names=[str(d) for d in TARGET_DIGITS], image_shape=(28, 28),
                prepare=image_transform("mnist10k", flat=False),
                description="digits 5–9 of MNIST-10k (labels 0–4 stand for 5–9)")


def _model(cfg, data, rng):
    return DigitCNN(5, cfg["hidden"], rng=rng)


class _Validate(Callback):
    """Scores the validation set after each epoch and adds ``val_*`` to the epoch's row. It runs
    after the trainer has stopped its clock, so training times exclude it."""

    order = 10

    def __init__(self, xy):
        self.xy = xy

    def on_epoch_end(self, trainer, epoch, logs):
        loader = D.DataLoader(D.TensorDataset(*self.xy), batch_size=1000)
        logs.update({f"val_{k}": v for k, v in trainer.evaluate(loader).items()})


def _fit(model, params, cfg, train, val, epochs, loader_key, quiet, label):
    opt = optim.Adam(params, lr=cfg["lr"])
    loader = D.DataLoader(D.TensorDataset(*train), batch_size=cfg["batch_size"], shuffle=True,
                          rng=_rng(cfg, *loader_key))
    callbacks = [_Validate(val)] if val is not None and len(val[1]) else []
    trainer = Trainer(model, F.cross_entropy, opt, metrics=[M.Accuracy()], callbacks=callbacks,
                      rng=_rng(cfg, 9), quiet=True, progress=False)
    trainer.fit(loader, None, epochs=epochs)
    if not quiet:
        last = trainer.history[-1]
        extra = f", validation accuracy {100 * last['val_acc']:.2f} %" if "val_acc" in last \
            else ""
        print(f"  {label}: {epochs} epochs in {trainer.train_seconds:.1f} s, training loss "
              f"{last['train_loss']:.4f}{extra}", flush=True)
    return trainer


def _test(trainer, xy) -> dict:
    loader = D.DataLoader(D.TensorDataset(*xy), batch_size=1000)
    return {k: float(v) for k, v in trainer.evaluate(loader).items()}


def _check_cfg(cfg):
    for key in ("pre_epochs", "hidden"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise RecipeError(f"--{key.replace('_', '-')} must be an integer >= 1, got "
                              f"{cfg[key]!r}")
    if not isinstance(cfg["val_size"], int) or cfg["val_size"] < 0:
        raise RecipeError(f"--val-size must be an integer >= 0, got {cfg['val_size']!r}")
    f = cfg["finetune_factor"]
    if not isinstance(f, (int, float)) or not (0 < f <= 1):
        raise RecipeError(f"--finetune-factor must be in (0, 1], got {f!r}")


def run_transfer(cfg, run_dir=None, quiet=False, progress=None, **_) -> RunResult:
    """Pre-train on 0–4, then learn 5–9 three ways (see the module docstring); writes the
    report, ``metrics.json`` and the fine-tuned model into ``run_dir`` (None: no files)."""
    from .runner import hyperparameter_table, write_json

    _check_cfg(cfg)
    recipe = get_recipe("transfer")
    sp = transfer_split(cfg)
    hidden = cfg["hidden"]
    if not quiet:
        print(f"transfer: pre-training on digits 0–4 ({len(sp['source_train'][1]):,} images, "
              f"{cfg['pre_epochs']} epochs), then digits 5–9 from "
              f"{len(sp['target_train'][1]):,} images ({100 * cfg['fraction']:g} %) three "
              f"ways, {cfg['epochs']} epochs each", flush=True)
    # ---- source task
    source = DigitCNN(5, hidden, rng=_rng(cfg, 2))
    pre = _fit(source, source.parameters(), cfg, sp["source_train"], None, cfg["pre_epochs"],
               (3,), quiet, "pre-training on 0–4")
    source_test = _test(pre, sp["source_test"])
    if not quiet:
        print(f"  source task: test accuracy on digits 0–4 {100 * source_test['acc']:.2f} %",
              flush=True)

    # ---- target task, three ways: same head init (seed key 4), same batches (key 5)
    def fresh(pretrained: bool) -> DigitCNN:
        m = DigitCNN(5, hidden, rng=_rng(cfg, 6), head_rng=_rng(cfg, 4))
        if pretrained:
            m.features.load_state_dict(source.features.state_dict())
        return m

    runs = {}
    for method in METHODS:
        model = fresh(method != "scratch")
        if method == "scratch":
            params = model.parameters()
        elif method == "frozen":
            model.features.requires_grad_(False)
            params = model.head.parameters()
        else:
            params = [{"params": list(model.features.parameters()),
                       "lr": cfg["lr"] * cfg["finetune_factor"]},
                      {"params": list(model.head.parameters()), "lr": cfg["lr"]}]
        trainer = _fit(model, params, cfg, sp["target_train"], sp["target_val"], cfg["epochs"],
                       (5,), quiet, method)
        runs[method] = {"trainer": trainer, "test": _test(trainer, sp["target_test"]),
                        "trainable": model.num_parameters(trainable_only=True),
                        "total": model.num_parameters(), "seconds": trainer.train_seconds}
    lrs = {"scratch": f"{cfg['lr']:g}", "frozen": f"{cfg['lr']:g} (head only)",
           "fine-tune": f"{cfg['lr'] * cfg['finetune_factor']:g} features, {cfg['lr']:g} head"}
    header = ["method", "test accuracy", "test loss", "trainable parameters",
              "total parameters", "learning rate", "training time (s)"]
    rows = [[m, r["test"]["acc"], r["test"]["loss"], r["trainable"], r["total"], lrs[m],
             r["seconds"]] for m, r in runs.items()]
    if not quiet:
        _print_table(header, rows)
    test = {"acc": runs["fine-tune"]["test"]["acc"], "loss": runs["fine-tune"]["test"]["loss"],
            "source_acc": source_test["acc"]}
    for m, r in runs.items():
        test[f"acc_{m.replace('-', '')}"] = r["test"]["acc"]
    result = RunResult(run_dir=run_dir, test=test,
                       history=list(runs["fine-tune"]["trainer"].history),
                       train_seconds=pre.train_seconds + sum(r["seconds"] for r in
                                                             runs.values()),
                       config=cfg, extra={"table": rows, "header": header,
                                          "source_test": source_test,
                                          "runs": {m: {k: v for k, v in r.items()
                                                       if k != "trainer"}
                                                   for m, r in runs.items()}})
    if run_dir is None:
        return result
    save_checkpoint(os.path.join(run_dir, "checkpoints", "last"), runs["fine-tune"][
        "trainer"].model, step=runs["fine-tune"]["trainer"].global_step, config=cfg)
    write_json(os.path.join(run_dir, "metrics.json"), {
        "test": test, "source_test": source_test, "pretrain_seconds": pre.train_seconds,
        "methods": {m: {"test": r["test"], "trainable_parameters": r["trainable"],
                        "total_parameters": r["total"], "train_seconds": r["seconds"]}
                    for m, r in runs.items()}})
    result.report = _report(recipe, cfg, sp, pre, source_test, runs, header, rows, run_dir,
                            hyperparameter_table)
    return result


def _print_table(header, rows):
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(header)]
    print("  ".join(h.ljust(w) if j == 0 else h.rjust(w)
                    for j, (h, w) in enumerate(zip(header, widths, strict=True))))
    for b in body:
        print("  ".join(v.ljust(w) if j == 0 else v.rjust(w)
                        for j, (v, w) in enumerate(zip(b, widths, strict=True))))


def _report(recipe, cfg, sp, pre, source_test, runs, header, rows, run_dir,
            hyperparameter_table) -> str:
    def path(name):
        return os.path.join(run_dir, name)

    best = max(runs, key=lambda m: runs[m]["test"]["acc"])
    rep = R.HTMLReport(f"transfer — {recipe.description}",
                       f"MNIST-10k · source: digits 0–4 ({len(sp['source_train'][1]):,} "
                       f"images) · target: digits 5–9 from {len(sp['target_train'][1]):,} "
                       f"images, tested on {len(sp['target_test'][1]):,} · seed {cfg['seed']}"
                       f" · run directory {os.path.abspath(run_dir)}")
    rep.cards([(f"test accuracy, {m}", f"{100 * runs[m]['test']['acc']:.2f} %")
               for m in METHODS] + [("source task (0–4) test accuracy",
                                     f"{100 * source_test['acc']:.2f} %")],
              highlight=METHODS.index(best))
    rep.section("Three ways to learn digits 5–9 from 10 % of their data")
    rep.table(rows, header,
              f"Same head initialisation, same batches, {cfg['epochs']} epochs each; test "
              f"accuracy on all {len(sp['target_test'][1]):,} test images of digits 5–9; "
              "training time excludes the per-epoch validation.")
    rep.text("(a) scratch: every layer freshly initialised. (b) frozen: the convolutional "
             "layers pre-trained on 0–4 with requires_grad_(False), only the new head learns. "
             "(c) fine-tune: pre-trained layers at the smaller learning rate, new head at the "
             "full rate.")
    hists = {m: r["trainer"].history for m, r in runs.items()}
    rep.figure(R.plot_methods_history(hists, path("curves.png")),
               f"Validation accuracy ({len(sp['target_val'][1]):,} unused 5–9 training "
               "images) and training loss per epoch for the three methods.")
    pred = runs[best]["trainer"].predict(sp["target_test"][0])
    cm = M.confusion_matrix(sp["target_test"][1], pred.argmax(1), 5)
    rep.figure(R.plot_confusion(cm, path("confusion.png"), [str(d) for d in TARGET_DIGITS],
                                f"confusion matrix ({best}, test)"),
               f"Confusion matrix of the best method ({best}) on the 5–9 test images.")
    rep.section("Pre-training on digits 0–4")
    rep.table([["images", len(sp["source_train"][1])], ["epochs", cfg["pre_epochs"]],
               ["training time (s)", pre.train_seconds],
               ["test accuracy on digits 0–4", source_test["acc"]],
               ["test loss", source_test["loss"]]], ["", ""])
    rep.figure(R.plot_history(pre.history, path("pretrain.png")),
               "Pre-training: loss and accuracy per epoch (training data).")
    rep.section("Model")
    rep.pre(repr(runs["fine-tune"]["trainer"].model))
    rep.section("Hyperparameters")
    hyperparameter_table(rep, cfg)
    return rep.save(path("report.html"))


register(Recipe(
    name="transfer",
    description="transfer learning: CNN pre-trained on digits 0–4 learns 5–9 from 10 % "
                "(scratch vs frozen vs fine-tune)",
    defaults={"epochs": 25, "pre_epochs": 4, "batch_size": 32, "lr": 1e-3, "optimizer": "adam",
              "fraction": 0.1, "finetune_factor": 0.1, "hidden": 64, "val_size": 500,
              "dataset": "mnist10k", "val_fraction": 0.0},
    data=_data, model=_model, run=run_transfer,
    help={"epochs": "epochs of each target-task run",
          "pre_epochs": "epochs of pre-training on digits 0–4",
          "fraction": "share of the 5–9 training images the target task may use",
          "finetune_factor": "fine-tune: the pre-trained layers' rate is lr × this",
          "hidden": "width of the head's hidden layer",
          "val_size": "validation images (unused 5–9 training images) for the curves",
          "limit": "use only this many source and target training images (0: all)",
          "optimizer": "Adam (fixed for this recipe)"},
    choices={"dataset": ("mnist10k",), "optimizer": ("adam",)},
))
