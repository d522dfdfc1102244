"""augment-study — the effect of data augmentation on a reduced training set.

One of the conv recipes' networks (``--model``, default LeNet-5) is trained on a
``--train-fraction`` share of the training images once per augmentation setting of ``--sets``
(``none,crop,affine,crop+affine,...``; ``+`` combines transforms) and seed (``--repeats`` seeds
from ``--seed``). Every run is the standard run of that network's recipe
(:func:`~tensorcalc.train.pipeline.run_standard`) with the same reduced training images, the
same number of optimisation steps and the same initialisation per seed: only the random
transforms applied to each training batch differ. The report tabulates the test accuracy per
setting (mean ± standard deviation over the seeds, and the difference to ``none``).

A transform is only an augmentation if it preserves the label: geometric jitter helps digits,
mirroring hurts them (a mirrored 3 is no digit). Measured results are in docs/recipes.md.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from ..train import report as R
from ..train.pipeline import plural, prepare_data, run_standard, validate_config, write_json
from . import Recipe, RecipeError, RunResult, get_recipe, register
from ._common import (
    AUGMENTATIONS,
    IMAGE_DATASETS,
    augmentation_examples,
    check_fraction,
    label,
    parse_sets,
)
from .cnn import SHARED_HELP, conv_recipe_data

__all__ = ["augment_study", "format_study", "STUDY_MODELS"]

STUDY_MODELS = ("lenet", "vgg", "resnet", "inception")


def augment_study(cfg: dict, out_dir: str | None, *, quiet: bool = False,
                  progress: bool | None = None) -> RunResult:
    """Train ``cfg["model"]`` on a ``cfg["train_fraction"]`` share of the training images once
    per augmentation setting of ``cfg["sets"]`` and seed (``cfg["repeats"]`` seeds from
    ``cfg["seed"]``), every run with the same number of optimisation steps, and score each on the
    full test split. Returns a :class:`RunResult` whose ``extra["rows"]`` holds, per setting,
    the mean and standard deviation of the test accuracy and its difference to ``none``;
    ``report.html`` (when ``out_dir`` is given) has the table, a bar chart and examples."""
    sets = _check(cfg)
    base = get_recipe(cfg["model"])
    keep = ("epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
            "dataset", "train_fraction", "checkpoint_every")
    bcfg = base.config({k: cfg[k] for k in keep})
    bcfg["val_fraction"] = 0.0  # every reduced training image is used for training
    validate_config(base, bcfg)
    rows, runs = [], []
    t_all = time.perf_counter()
    # one reduced training set (drawn with --seed) for every run: the runs differ only in the
    # augmentation and in the seed of initialisation, shuffling and augmentation draws
    data = prepare_data(base, dict(bcfg, seed=cfg["seed"]))
    for s in sets:
        accs, losses, secs = [], [], []
        for r in range(cfg["repeats"]):
            rcfg = dict(bcfg, augment=label(s) if s else "", seed=cfg["seed"] + r)
            t0 = time.perf_counter()
            res = run_standard(base, rcfg, data, val=None)
            secs.append(time.perf_counter() - t0)
            accs.append(res.test["acc"])
            losses.append(res.test["loss"])
            runs.append({"setting": label(s), "seed": rcfg["seed"], "acc": res.test["acc"],
                         "loss": res.test["loss"], "seconds": secs[-1]})
            if not quiet:
                print(f"  {label(s):<24} seed {rcfg['seed']}: test accuracy "
                      f"{100 * res.test['acc']:6.2f} %  ({secs[-1]:.1f} s)", flush=True)
        rows.append({"setting": label(s), "names": s, "acc": float(np.mean(accs)),
                     "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
                     "accs": accs, "loss": float(np.mean(losses)),
                     "seconds": float(np.mean(secs))})
    ref = next((r["acc"] for r in rows if not r["names"]), None)
    for r in rows:
        r["gain"] = r["acc"] - ref if ref is not None else float("nan")
    best = max(rows, key=lambda r: r["acc"])
    total = time.perf_counter() - t_all
    n_train = len(data.train[1])
    if not quiet:
        print(format_study(rows, n_train, cfg))
    result = RunResult(run_dir=out_dir, test={"acc": best["acc"], "loss": best["loss"]},
                       train_seconds=total, config=cfg,
                       extra={"rows": rows, "runs": runs, "best": best["setting"],
                              "n_train": n_train})
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        write_json(os.path.join(out_dir, "metrics.json"),
                   {"rows": [{k: v for k, v in r.items() if k != "names"} for r in rows],
                    "runs": runs, "best": best["setting"], "n_train": n_train,
                    "seconds": total})
        result.report = _study_report(cfg, bcfg, base, data, rows, best, total, out_dir)
    return result


def format_study(rows, n_train, cfg) -> str:
    """The study's table as text (for the terminal)."""
    ref = any(not r["names"] for r in rows)
    lines = [f"\naugmentation study: {cfg['model']} on {n_train:,} training images, "
             f"{cfg['repeats']} seed(s) each, test accuracy on the full test split",
             f"  {'setting':<24} {'accuracy':>9} {'± std':>7}" + (f" {'vs none':>9}" if ref
                                                                   else "")]
    for r in rows:
        sd = f"{100 * r['std']:6.2f}" if math.isfinite(r["std"]) else "     —"
        gain = f" {100 * r['gain']:+8.2f}" if ref else ""
        lines.append(f"  {r['setting']:<24} {100 * r['acc']:8.2f} % {sd}{gain}")
    return "\n".join(lines)


def _study_report(cfg, bcfg, base, data, rows, best, total, out_dir) -> str:
    ref = next((r for r in rows if not r["names"]), None)
    rep = R.HTMLReport(
        f"augment-study — {cfg['model']} with and without data augmentation on {data.display}",
        f"{data.display} · {len(data.train[1]):,} training images (--train-fraction "
        f"{cfg['train_fraction']:g}) / {len(data.test[1]):,} test images · {cfg['repeats']} "
        f"seed(s) per setting from seed {cfg['seed']} · {os.path.abspath(out_dir)}")
    cards = [("best setting", best["setting"]), ("its test accuracy", f"{100 * best['acc']:.2f} %")]
    if ref is not None:
        cards += [("without augmentation", f"{100 * ref['acc']:.2f} %"),
                  ("gain", f"{100 * (best['acc'] - ref['acc']):+.2f} points")]
    cards.append(("total time", f"{total:.0f} s"))
    rep.cards(cards)
    rep.text("Every setting trains the same model from the same initialisations (one per seed) "
             f"for the same {plural(bcfg['epochs'], 'epoch')} of {len(data.train[1]):,} images; "
             "only the random transforms applied to each training batch differ. With few images "
             "the network memorises them; label-preserving transforms show it new versions of the "
             "same digits at every step, which acts as a regulariser.")
    rep.section("Test accuracy per augmentation setting")
    table = []
    for r in rows:
        desc = "; ".join(AUGMENTATIONS[n] for n in r["names"]) or "no augmentation"
        table.append([r["setting"], 100 * r["acc"],
                      100 * r["std"] if math.isfinite(r["std"]) else "—",
                      f"{100 * r['gain']:+.2f}" if ref is not None else "—",
                      ", ".join(f"{100 * a:.2f}" for a in r["accs"]), r["loss"],
                      f"{r['seconds']:.1f} s", desc])
    rep.table(table, ["setting", "test accuracy %", "± std", "vs none (points)",
                      "per seed %", "test loss", "time per run", "transforms"],
              "Mean over seeds; ± is the standard deviation across seeds (the spread a single "
              "run can show). Differences smaller than about twice that are noise.")
    png = R.plot_bars([r["setting"] for r in rows], [100 * r["acc"] for r in rows],
                      [100 * r["std"] if math.isfinite(r["std"]) else 0.0 for r in rows],
                      os.path.join(out_dir, "study.png"), "test accuracy (%)",
                      title="test accuracy by augmentation setting (mean ± std over seeds)",
                      highlight=rows.index(best))
    rep.figure(png, "Test accuracy per setting; the best one highlighted.")
    settings = [r["names"] for r in rows if r["names"]]
    if settings:
        rep.section("What the augmentations do")
        png = augmentation_examples(data, settings, os.path.join(out_dir, "augmentation.png"),
                                    seed=cfg["seed"], draws=1)
        rep.figure(png, "Training images as stored (first row) and one random draw of each "
                        "setting.")
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    return rep.save(os.path.join(out_dir, "report.html"))


def _study_run(cfg, out_dir, quiet=False, progress=None, **_):
    if not quiet:
        n_sets = len(parse_sets(cfg["sets"]))
        print(f"augment-study: {cfg['model']}, {n_sets} settings × {cfg['repeats']} seed(s) on "
              f"--train-fraction {cfg['train_fraction']:g} of the training images", flush=True)
    return augment_study(cfg, out_dir, quiet=quiet, progress=progress)


def _check(cfg) -> list:
    """The study's own settings checked; returns the parsed ``--sets``."""
    if cfg["model"] not in STUDY_MODELS:
        raise RecipeError(f"--model must be one of {', '.join(STUDY_MODELS)}, got "
                          f"{cfg['model']!r}")
    sets = parse_sets(cfg["sets"])
    if isinstance(cfg["repeats"], bool) or not isinstance(cfg["repeats"], int) or \
            cfg["repeats"] < 1:
        raise RecipeError(f"--repeats must be an integer >= 1, got {cfg['repeats']!r}")
    check_fraction(cfg)
    return sets


def _study_data(cfg):  # the study's settings and data, checked before the run starts
    _check(cfg)
    return conv_recipe_data(dict(cfg, augment=""))


register(Recipe(
    name="augment-study",
    description="effect of data augmentation on a reduced training set: a CNN trained with "
                "each --sets setting, table in the report",
    defaults={"model": "lenet", "sets": "none,crop,affine,noise,cutout,flip,crop+affine",
              "repeats": 2, "train_fraction": 0.1, "dataset": "mnist10k", "epochs": 30,
              "batch_size": 32, "lr": 2e-3, "optimizer": "adam", "schedule": "cosine",
              "val_fraction": 0.0},
    data=_study_data, run=_study_run,
    help={"model": "the network: " + " | ".join(STUDY_MODELS),
          "sets": "augmentation settings to compare, comma-separated; + combines "
                  "transforms (none,crop,affine,crop+affine); names: " + ", ".join(AUGMENTATIONS),
          "repeats": "seeds per setting (seed, seed+1, ...): mean and spread",
          "train_fraction": SHARED_HELP["train_fraction"],
          "dataset": SHARED_HELP["dataset"]},
    choices={"dataset": IMAGE_DATASETS, "model": STUDY_MODELS},
))
