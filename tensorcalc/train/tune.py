"""Model selection by k-fold cross-validation.

For each candidate setting s of the hyperparameters, the training set is cut into k folds
F₁..F_k (every example in exactly one; stratified by class for classification); the model is
trained k times, each time on the other k − 1 folds, and scored on the held-out fold:

    CV(s) = (1/k) Σⱼ score(model trained on D∖Fⱼ with s, evaluated on Fⱼ)

with its standard deviation over the folds as the uncertainty. The best setting by CV is then
retrained once on all the training data and scored once on the test split — the only time the
test split is touched, so its figure is an unbiased estimate for the chosen setting.

Candidates: the full grid (the Cartesian product of the value lists, ``search="grid"``) or
``trials`` settings drawn uniformly from it without replacement (``search="random"``, Bergstra
& Bengio 2012), from an explicit seed.

:func:`tune` is independent of recipes: it takes ``evaluate(setting, train_idx, val_idx) ->
figures`` and ``final_fit(setting) -> result``; :func:`tensorcalc.recipes.runner.tune_recipe`
supplies them for a recipe. Results go to ``tune.csv`` and ``tune.png`` (and the best run's
report) in ``out_dir``.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..data import kfold_indices
from .logging import ProgressBar

__all__ = ["tune", "grid_settings", "random_settings", "TuneResult", "parse_values",
           "format_setting", "format_value"]


def grid_settings(grid: dict) -> list[dict]:
    """Every combination of the value lists, in order (the last parameter varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


def random_settings(grid: dict, trials: int, rng) -> list[dict]:
    """``trials`` distinct settings drawn uniformly from the grid (all of it if smaller)."""
    allc = grid_settings(grid)
    if trials >= len(allc):
        return allc
    pick = np.sort(np.random.default_rng(rng).choice(len(allc), size=trials, replace=False))
    return [allc[i] for i in pick]


def parse_values(text: str, example=None) -> list:
    """``"0.01,0.1"`` -> [0.01, 0.1], typed like ``example`` (int, float, str, bool). A tuple of
    ints within one value is written ``256x128``, or — with values separated by ``;`` — the way
    ``train`` takes it: ``"256,128;512,256"`` -> [(256, 128), (512, 256)]."""
    out = []
    sep = ";" if ";" in text else ","
    for part in (p.strip() for p in text.split(sep)):
        if not part:
            continue
        out.append(convert(part, example))
    if not out:
        raise ValueError(f"no values in {text!r}")
    return out


def convert(text: str, example):
    """One value from text, typed like ``example``."""
    if isinstance(example, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(example, int):
        return int(text)
    if isinstance(example, float):
        return float(text)
    if isinstance(example, tuple):
        parts = [p for p in text.replace("x", ",").replace(":", ",").split(",") if p.strip()]
        return tuple(int(p) for p in parts)
    if example is None:
        for conv in (int, float):
            try:
                return conv(text)
            except ValueError:
                pass
    return text


def format_value(v) -> str:
    """A hyperparameter value as ``tensorcalc train`` takes it: tuples ``256,128``, floats
    ``%g``."""
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def format_setting(setting: dict) -> str:
    """A setting as the flags of ``tensorcalc train``: ``--hidden 256,128 --lr 0.01``."""
    return " ".join(f"--{k.replace('_', '-')} {format_value(v)}" for k, v in setting.items())


@dataclass
class TuneResult:
    """Cross-validation table (one row per setting), the best setting and its test figures."""

    rows: list
    best: dict
    best_index: int
    score_key: str
    higher_is_better: bool
    final: object = None
    files: dict = field(default_factory=dict)

    def table(self) -> str:
        """The results as aligned text, best marked with ``*``."""
        keys = list(self.rows[0]["setting"]) if self.rows else []
        head = keys + [f"cv {self.score_key} mean", "std", "folds", "seconds"]
        body = []
        for i, r in enumerate(self.rows):
            vals = [format_value(r["setting"][k]) for k in keys]
            body.append(vals + [f"{r['mean']:.4f}", f"{r['std']:.4f}",
                                str(len(r["scores"])), f"{r['seconds']:.2f}"]
                        + (["*"] if i == self.best_index else [""]))
        widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(head)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
        for b in body:
            lines.append("  ".join(v.rjust(w) for v, w in zip(b, widths, strict=False))
                         + (" *" if b[-1] else ""))
        return "\n".join(lines)


def tune(grid: dict, evaluate, final_fit=None, *, n: int, folds: int = 5, search: str = "grid",
         trials: int | None = None, seed: int = 0, score_key: str = "acc",
         higher_is_better: bool = True, stratify=None, out_dir: str | None = None,
         quiet: bool = False, progress: bool | None = None, title: str = "") -> TuneResult:
    """Cross-validate every candidate setting of ``grid`` and retrain the best.

    Args:
        grid: ``{name: [values...]}``.
        evaluate: ``evaluate(setting, train_idx, val_idx) -> {score_key: value, ...}``.
        final_fit: ``final_fit(best_setting) -> result`` (e.g. a run scored on the test split).
        n: number of training examples; folds are index arrays into range(n).
        folds: k ≥ 2. search: "grid" or "random" (``trials`` settings).
        seed: fixes the folds and the random search.
        score_key / higher_is_better: which figure selects the best setting.
        stratify: labels for stratified folds (classification).
        out_dir: writes ``tune.csv`` and ``tune.png`` there.
    """
    if not grid:
        raise ValueError("tune: give at least one --param NAME=V1,V2,...")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"--folds must be an integer >= 2, got {folds!r}")
    if folds > n:
        raise ValueError(f"--folds {folds} is more than the {n} training examples")
    if search == "grid":
        settings = grid_settings(grid)
    elif search == "random":
        if trials is None or trials < 1:
            raise ValueError(f"--trials must be an integer >= 1 for --search random, got "
                             f"{trials!r}")
        settings = random_settings(grid, trials, seed)
    else:
        raise ValueError(f"--search must be 'grid' or 'random', got {search!r}")
    splits = kfold_indices(n, folds, rng=seed, stratify=stratify)
    bar = ProgressBar(enabled=progress, quiet=quiet)
    bar.start(len(settings) * folds, "cross-validation")
    rows = []
    from .. import distributed as _dist
    pre = None
    if _dist.launched() > 1:  # tune --procs N: the settings × folds runs spread over the ranks
        def timed(i):
            t = time.perf_counter()
            figs = evaluate(settings[i // folds], *splits[i % folds])
            return dict(figs), time.perf_counter() - t

        pre = _dist.map_tasks(timed, len(settings) * folds)
    try:
        for si, s in enumerate(settings):
            t0 = time.perf_counter()
            scores = []
            for fi, (tr, va) in enumerate(splits):
                figs = evaluate(s, tr, va) if pre is None else pre[si * folds + fi][0]
                scores.append(float(figs[score_key]))
                bar.update(1, setting=format_setting(s))
            arr = np.array(scores)
            rows.append({"setting": s, "scores": scores, "mean": float(arr.mean()),
                         "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                         "seconds": time.perf_counter() - t0 if pre is None else  # on the ranks
                         sum(pre[si * folds + j][1] for j in range(folds))})
            if not quiet and not bar.enabled:
                print(f"  {format_setting(s)}: cv {score_key} {rows[-1]['mean']:.4f} ± "
                      f"{rows[-1]['std']:.4f}", flush=True)
    finally:
        bar.close()

    def key(i):
        m = rows[i]["mean"]
        if not math.isfinite(m):
            return -math.inf
        return m if higher_is_better else -m

    best_index = max(range(len(rows)), key=key)
    result = TuneResult(rows=rows, best=rows[best_index]["setting"], best_index=best_index,
                        score_key=score_key, higher_is_better=higher_is_better)
    root = pre is None or _dist.world().rank == 0  # rank 0 writes and retrains the best
    if out_dir and root:
        os.makedirs(out_dir, exist_ok=True)
        result.files["csv"] = _write_csv(os.path.join(out_dir, "tune.csv"), rows, best_index)
        from .report import plot_bars

        result.files["png"] = plot_bars(
            [format_setting(r["setting"]) for r in rows], [r["mean"] for r in rows],
            [r["std"] for r in rows], os.path.join(out_dir, "tune.png"),
            f"{folds}-fold cross-validated {score_key} (mean ± std over folds)",
            title or "model selection", highlight=best_index)
    if final_fit is not None and root:
        with _dist.independent():
            result.final = final_fit(result.best)
    if pre is not None:
        _dist.finish()
    return result


def _write_csv(path: str, rows: list, best_index: int) -> str:
    keys = list(rows[0]["setting"]) if rows else []
    k = max((len(r["scores"]) for r in rows), default=0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["cv_mean", "cv_std"] + [f"fold{j + 1}" for j in range(k)]
                   + ["seconds", "best"])
        for i, r in enumerate(rows):
            vals = [format_value(r["setting"][kk]) for kk in keys]
            w.writerow(vals + [f"{r['mean']:.6g}", f"{r['std']:.6g}"]
                       + [f"{s:.6g}" for s in r["scores"]] + [f"{r['seconds']:.2f}",
                                                               int(i == best_index)])
    return path
