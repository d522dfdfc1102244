"""transfer — transfer learning: what digits 0–4 teach a CNN about digits 5–9.

Source task: classify the MNIST-10k training digits 0–4 (≈ 4,100 images) with a small CNN
(:class:`~tensorcalc.models.DigitCNN`). Target task: classify digits 5–9 (relabelled 0–4) from
only ``fraction`` (default 10 %, ≈ 390 images, stratified) of their training images, scored on
every 5–9 image of the standard 2,000-image test split (≈ 960). The target task is learned
three ways, with the same new head initialisation, the same batches in the same order and the
same epochs:

(a) **scratch** — the whole network freshly initialised, every layer trained at ``lr``;
(b) **frozen** — the pre-trained convolutional feature extractor with ``requires_grad_(False)``
    (no gradient flows into it, and the engine records no graph for it) and a new head trained
    at ``lr``: only the head's parameters are learned;
(c) **fine-tune** — the pre-trained feature extractor and a new head, every layer trained, the
    pre-trained layers at the smaller rate ``lr · finetune_factor`` (default ×0.1) so that the
    useful features are adjusted rather than overwritten, the new head at ``lr``.

Each of the four runs (pre-training and the three methods) is the standard run
(:func:`~tensorcalc.train.pipeline.run_standard`) with its own data, model and parameter
groups; every one minimises the cross-entropy −log softmax(z)_y with Adam. The report and the
console show a table — test accuracy, trainable and total parameters, training time — and the
validation-accuracy curves (validation: up to ``val_size`` of the unused 90 % of the 5–9
training images). The fine-tuned model is the run's saved model (``tensorcalc evaluate RUN``
scores it).
"""

from __future__ import annotations

import os

import numpy as np

from .. import data as D
from ..models import DigitCNN
from ..serialization import save_checkpoint
from ..train import metrics as M
from ..train import report as R
from ..train.pipeline import plural, run_standard, write_json
from . import Data, Recipe, RecipeError, RunResult, get_recipe, register
from ._common import image_transform

__all__ = ["DigitCNN", "transfer_split", "run_transfer", "METHODS"]

METHODS = ("scratch", "frozen", "fine-tune")
SOURCE_DIGITS, TARGET_DIGITS = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


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


def _task(name, train, test, val, digits, what) -> Data:
    return Data(name=name, task="multiclass", train=train, test=test,
                val=val if val is not None and len(val[1]) else None, num_classes=5,
                class_names=[str(d) for d in digits], image_shape=(28, 28),
                prepare=image_transform("mnist10k", flat=False), description=what)


def _data(cfg, sp=None) -> Data:
    """The target task (digits 5–9) as a recipe's Data (what `tensorcalc evaluate` scores);
    checks every setting of the recipe."""
    _check_cfg(cfg)
    sp = sp or transfer_split(cfg)
    return _task("mnist10k-5to9", sp["target_train"], sp["target_test"], sp["target_val"],
                 TARGET_DIGITS, "digits 5–9 of MNIST-10k (labels 0–4 stand for 5–9)")


def _model(cfg, data, rng):
    return DigitCNN(5, cfg["hidden"], rng=rng)


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


def _run(cfg, data, model, params, epochs, loader_key, quiet, what) -> RunResult:
    """One standard run: ``epochs`` epochs of ``model`` over ``params`` on ``data``, batches
    shuffled by the Generator of ``loader_key`` (the same key gives the same batches)."""
    res = run_standard("transfer", dict(cfg, epochs=epochs), data, model=model, params=params,
                       streams={"loader": _rng(cfg, *loader_key), "train": _rng(cfg, 9)})
    if not quiet:
        last = res.history[-1]
        extra = f", validation accuracy {100 * last['val_acc']:.2f} %" if "val_acc" in last \
            else ""
        print(f"  {what}: {plural(epochs, 'epoch')} in {res.train_seconds:.1f} s, training loss "
              f"{last['train_loss']:.4f}{extra}", flush=True)
    return res


def run_transfer(cfg, run_dir=None, quiet=False, progress=None, **_) -> RunResult:
    """Pre-train on 0–4, then learn 5–9 three ways (see the module docstring); writes the
    report, ``metrics.json`` and the fine-tuned model into ``run_dir`` (None: no files)."""
    _check_cfg(cfg)
    recipe = get_recipe("transfer")
    sp = transfer_split(cfg)
    hidden = cfg["hidden"]
    if not quiet:
        print(f"transfer: pre-training on digits 0–4 ({len(sp['source_train'][1]):,} images, "
              f"{plural(cfg['pre_epochs'], 'epoch')}), then digits 5–9 from "
              f"{len(sp['target_train'][1]):,} images ({100 * cfg['fraction']:g} %) three "
              f"ways, {plural(cfg['epochs'], 'epoch')} each", flush=True)
    source_data = _task("mnist10k-0to4", sp["source_train"], sp["source_test"], None,
                        SOURCE_DIGITS, "digits 0–4 of MNIST-10k")
    source = DigitCNN(5, hidden, rng=_rng(cfg, 2))
    pre = _run(cfg, source_data, source, None, cfg["pre_epochs"], (3,), quiet,
               "pre-training on 0–4")
    source_test = pre.test
    if not quiet:
        print(f"  source task: test accuracy on digits 0–4 {100 * source_test['acc']:.2f} %",
              flush=True)

    # ---- target task, three ways: same head init (seed key 4), same batches (key 5)
    target = _data(cfg, sp)
    runs = {}
    for method in METHODS:
        model = DigitCNN(5, hidden, rng=_rng(cfg, 6), head_rng=_rng(cfg, 4))
        if method != "scratch":
            model.features.load_state_dict(source.features.state_dict())
        if method == "scratch":
            params = None
        elif method == "frozen":
            model.features.requires_grad_(False)
            params = model.head.parameters()
        else:
            params = [{"params": list(model.features.parameters()),
                       "lr": cfg["lr"] * cfg["finetune_factor"]},
                      {"params": list(model.head.parameters()), "lr": cfg["lr"]}]
        res = _run(cfg, target, model, params, cfg["epochs"], (5,), quiet, method)
        runs[method] = {"test": {k: res.test[k] for k in ("acc", "loss")},
                        "history": res.history, "model": model,
                        "outputs": res.extra["outputs"],
                        "trainable": model.num_parameters(trainable_only=True),
                        "total": model.num_parameters(), "seconds": res.train_seconds,
                        "steps": res.trainer.global_step}
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
    keep = ("test", "trainable", "total", "seconds")
    result = RunResult(run_dir=run_dir, test=test, history=list(runs["fine-tune"]["history"]),
                       train_seconds=pre.train_seconds + sum(r["seconds"] for r in
                                                             runs.values()),
                       config=cfg, model=runs["fine-tune"]["model"],
                       extra={"table": rows, "header": header, "source_test": source_test,
                              "runs": {m: {k: r[k] for k in keep} for m, r in runs.items()}})
    if run_dir is None:
        return result
    save_checkpoint(os.path.join(run_dir, "checkpoints", "last"), runs["fine-tune"]["model"],
                    step=runs["fine-tune"]["steps"], config=cfg)
    write_json(os.path.join(run_dir, "metrics.json"), {
        "test": test, "source_test": source_test, "pretrain_seconds": pre.train_seconds,
        "methods": {m: {"test": r["test"], "trainable_parameters": r["trainable"],
                        "total_parameters": r["total"], "train_seconds": r["seconds"]}
                    for m, r in runs.items()}})
    result.report = _report(recipe, cfg, sp, pre, source_test, runs, header, rows, run_dir)
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


def _report(recipe, cfg, sp, pre, source_test, runs, header, rows, run_dir) -> str:
    def path(name):
        return os.path.join(run_dir, name)

    best = max(runs, key=lambda m: runs[m]["test"]["acc"])
    rep = R.HTMLReport(f"transfer — {recipe.description} on MNIST-10k",
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
              f"Same head initialisation, same batches, {plural(cfg['epochs'], 'epoch')} each; "
              "test "
              f"accuracy on all {len(sp['target_test'][1]):,} test images of digits 5–9; "
              "training time excludes the per-epoch validation.")
    rep.text("(a) scratch: every layer freshly initialised. (b) frozen: the convolutional "
             "layers pre-trained on 0–4 with requires_grad_(False), only the new head learns. "
             "(c) fine-tune: pre-trained layers at the smaller learning rate, new head at the "
             "full rate.")
    hists = {m: r["history"] for m, r in runs.items()}
    rep.figure(R.plot_methods_history(hists, path("curves.png")),
               f"Validation accuracy ({len(sp['target_val'][1]):,} unused 5–9 training "
               "images) and training loss per epoch for the three methods.")
    cm = M.confusion_matrix(sp["target_test"][1], runs[best]["outputs"].argmax(1), 5)
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
    rep.pre(repr(runs["fine-tune"]["model"]))
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
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
