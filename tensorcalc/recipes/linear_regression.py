"""linear-regression — one least-squares problem solved three ways, which must agree.

Data y = X w + b + ε (``make_linear``). With the design matrix A = [X 1] and θ = (w, b), the
mean squared error L(θ) = (1/N)‖Aθ − y‖² is a convex quadratic with gradient
∇L = (2/N) Aᵀ(Aθ − y). Its minimiser solves the *normal equations*

    AᵀA θ* = Aᵀy                                    (closed form, one linear solve)

which gradient descent reaches iteratively:

    θ ← θ − η ∇L(θ)        on all N examples          (batch gradient descent)
    θ ← θ − η ∇L_B(θ)      on mini-batches B          (stochastic gradient descent)

Batch GD converges linearly to θ* (rate 1 − η λ_min(2AᵀA/N) per step); SGD's noise keeps it in
a ball around θ* whose size shrinks with the learning rate, so a decaying (cosine) rate brings
it close. The run checks ‖θ − θ*‖ / ‖θ*‖ against stated tolerances: 1e-4 for batch GD (float32
round-off) and 2e-2 for SGD.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import data as D
from .. import linalg, nn
from ..serialization import save_checkpoint
from ..tensor import Tensor
from ..train import report as R
from ..train.pipeline import plural, prepare_data, run_standard, seed_streams, write_json
from . import Data, Recipe, RunResult, get_recipe, register

#: relative parameter error allowed against the closed form
TOLERANCE = {"batch GD": 1e-4, "SGD": 2e-2}


def _data(cfg):
    n, d, noise = cfg["n"], cfg["features"], cfg["noise"]
    if n < 10:
        raise ValueError(f"--n must be at least 10, got {n}")
    x, y, w, b = D.make_linear(n, d=d, noise=noise, rng=cfg["seed"])
    xtr, xte, ytr, yte = D.train_test_split(x, y, test_size=0.2, rng=cfg["seed"])
    return Data(name="linear", task="regression", train=(xtr, ytr), test=(xte, yte),
                prepare=lambda raw: np.asarray(raw, dtype=np.float32).reshape(-1, d),
                description=f"y = Xw + b + ε with {d} feature(s), X ~ N(0, 1), noise std "
                            f"{noise}; {len(ytr)} training / {len(yte)} test points.",
                extra={"true_w": np.asarray(w, dtype=np.float64), "true_b": float(b)})


def _model(cfg, data, rng):
    return nn.Linear(data.train[0].shape[1], 1, rng=rng)


def closed_form(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """θ* from the normal equations AᵀA θ = Aᵀy with A = [X 1], solved (no inverse) in
    float64 by :func:`tensorcalc.linalg.solve`. Returns (w, b)."""
    a = np.concatenate([x.astype(np.float64), np.ones((len(x), 1))], axis=1)
    gram, rhs = Tensor(a.T @ a), Tensor(a.T @ y.astype(np.float64))
    theta = linalg.solve(gram, rhs).numpy()
    return theta[:-1], float(theta[-1])


def _params(model) -> tuple[np.ndarray, float]:
    return (np.asarray(model.weight.data, dtype=np.float64).reshape(-1),
            float(model.bias.data[0]))


def _mse(x, y, w, b) -> float:
    return float(np.mean((x.astype(np.float64) @ w + b - y) ** 2))


def _run(cfg, run_dir, quiet=False, progress=None):
    """Closed form, then batch GD and SGD as two standard runs (validated on the training set,
    which records the full-batch training MSE after every epoch); compare the three."""
    recipe = get_recipe("linear-regression")
    data = prepare_data(recipe, dict(cfg, val_fraction=0.0), seed_streams(cfg["seed"])["split"])
    (xtr, ytr), (xte, yte) = data.train, data.test
    t0 = time.perf_counter()
    w_cf, b_cf = closed_form(xtr, ytr)
    t_cf = time.perf_counter() - t0
    runs = {"closed form": {"w": w_cf, "b": b_cf, "seconds": t_cf, "history": []}}
    settings = {
        "batch GD": dict(cfg, batch_size=len(ytr), epochs=cfg["gd_steps"], lr=cfg["gd_lr"],
                         optimizer="sgd", schedule="none"),
        "SGD": dict(cfg),
    }
    for name, c in settings.items():
        if not quiet:
            print(f"{name}: {plural(c['epochs'], 'epoch')}, batch {c['batch_size']}, lr "
                  f"{c['lr']:g}, {c['optimizer']}, schedule {c['schedule']}", flush=True)
        t0 = time.perf_counter()
        res = run_standard(recipe, c, data, val=data.train, test=False)
        w, b = _params(res.model)
        if name == "SGD":  # the recipe's model: `tensorcalc evaluate/predict RUN` load it
            save_checkpoint(os.path.join(run_dir, "checkpoints", "last"), res.model,
                            step=res.trainer.global_step, config=cfg)
        runs[name] = {"w": w, "b": b, "seconds": time.perf_counter() - t0,
                      "history": res.history, "config": c}
    theta_cf = np.append(w_cf, b_cf)
    rows, ok = [], True
    for name, r in runs.items():
        r["train_mse"] = _mse(xtr, ytr, r["w"], r["b"])
        r["test_mse"] = _mse(xte, yte, r["w"], r["b"])
        ss = float(np.sum((yte - yte.mean()) ** 2))
        r["test_r2"] = 1 - r["test_mse"] * len(yte) / ss if ss > 0 else float("nan")
        rel = float(np.linalg.norm(np.append(r["w"], r["b"]) - theta_cf)
                    / max(np.linalg.norm(theta_cf), 1e-12))
        r["rel_error"] = rel
        tol = TOLERANCE.get(name)
        agree = tol is None or rel <= tol
        ok &= agree
        rows.append([name, r["train_mse"], r["test_mse"], r["test_r2"], rel,
                     "—" if tol is None else f"≤ {tol:g}",
                     "reference" if tol is None else ("agrees" if agree else "DISAGREES"),
                     r["seconds"]])
    header = ["method", "train MSE", "test MSE", "test R²", "‖θ − θ*‖/‖θ*‖", "tolerance",
              "verdict", "seconds"]
    if not quiet:
        _print_table(header, rows)
        print("the three solutions " + ("agree within the stated tolerances" if ok else
                                        "DO NOT agree — see the table"))
    fig_path = _plot(data, runs, os.path.join(run_dir, "fits.png"))
    test = {"loss": runs["SGD"]["test_mse"], "mse": runs["SGD"]["test_mse"],
            "r2": runs["SGD"]["test_r2"],
            "mse_closed_form": runs["closed form"]["test_mse"],
            "mse_batch_gd": runs["batch GD"]["test_mse"],
            "rel_error_batch_gd": runs["batch GD"]["rel_error"],
            "rel_error_sgd": runs["SGD"]["rel_error"], "agree": bool(ok)}
    rep = R.HTMLReport(f"linear-regression — {recipe.description} on {data.display}",
                       f"{data.description} seed {cfg['seed']} · run directory "
                       f"{os.path.abspath(run_dir)}")
    rep.cards([("verdict", "all three agree" if ok else "disagree"),
               ("test MSE (closed form)", f"{runs['closed form']['test_mse']:.4g}"),
               ("test MSE (batch GD)", f"{runs['batch GD']['test_mse']:.4g}"),
               ("test MSE (SGD)", f"{runs['SGD']['test_mse']:.4g}"),
               ("test R²", f"{runs['closed form']['test_r2']:.4f}")])
    rep.section("Closed form vs batch gradient descent vs SGD")
    rep.figure(fig_path, "Left: the fitted models (for one feature, the lines over the data; "
                         "otherwise predicted against true test targets). Right: training MSE "
                         "above the closed-form optimum after each epoch (log-log): batch GD "
                         "converges geometrically down to float32 round-off; SGD fast at "
                         "first, then as fast as its decaying learning rate allows.")
    rep.table(rows, header, "θ* is the normal-equation solution; the tolerances account for "
                            "float32 arithmetic (GD) and gradient noise (SGD).")
    prow = []
    d = len(w_cf)
    true_w, true_b = data.extra["true_w"], data.extra["true_b"]
    for j in range(d):
        prow.append([f"w[{j}]", float(true_w[j])] + [float(runs[m]["w"][j]) for m in runs])
    prow.append(["b", true_b] + [runs[m]["b"] for m in runs])
    rep.table(prow, ["parameter", "true"] + list(runs))
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    write_json(os.path.join(run_dir, "metrics.json"), {
        "test": test, "methods": {m: {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                      for k, v in r.items() if k not in ("history", "config")}
                                  for m, r in runs.items()}})
    return RunResult(run_dir=run_dir, test=test, report=report,
                     history=runs["SGD"]["history"],
                     train_seconds=runs["SGD"]["seconds"] + runs["batch GD"]["seconds"],
                     config=cfg, extra={"runs": runs, "agree": ok})


def _print_table(header, rows):
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3e}" if (v != 0 and abs(v) < 1e-3) else f"{v:.4f}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for b in body:
        print("  ".join(v.rjust(w) for v, w in zip(b, widths, strict=True)))


def _plot(data, runs, path):
    (xtr, ytr), (xte, yte) = data.train, data.test
    colours = {"closed form": "#111827", "batch GD": R.PALETTE["val"], "SGD": R.PALETTE["train"]}
    styles = {"closed form": "-", "batch GD": "--", "SGD": ":"}
    fig = R.new_figure(11, 4.2)
    ax, bx = fig.subplots(1, 2)
    if xtr.shape[1] == 1:
        ax.scatter(xtr[:, 0], ytr, s=12, c="#9ca3af", label="training data", alpha=0.8)
        ax.scatter(xte[:, 0], yte, s=16, c=R.PALETTE["test"], marker="^", label="test data",
                   alpha=0.8)
        grid = np.linspace(min(xtr.min(), xte.min()), max(xtr.max(), xte.max()), 50)
        for m, r in runs.items():
            ax.plot(grid, grid * r["w"][0] + r["b"], styles[m], color=colours[m], linewidth=2,
                    label=f"{m}: y = {r['w'][0]:.3f} x + {r['b']:.3f}")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title("the three fits", fontsize=11)
    else:
        for m, r in runs.items():
            ax.scatter(yte, xte.astype(np.float64) @ r["w"] + r["b"], s=14, color=colours[m],
                       marker={"closed form": "o", "batch GD": "s", "SGD": "x"}[m], label=m,
                       alpha=0.7)
        lo, hi = float(yte.min()), float(yte.max())
        ax.plot([lo, hi], [lo, hi], color="#9ca3af", linewidth=1)
        ax.set_xlabel("true y (test)")
        ax.set_ylabel("predicted y")
        ax.set_title("predictions on the test points", fontsize=11)
    ax.legend(frameon=False, fontsize=8)
    R.style_axes(ax)
    best = runs["closed form"]["train_mse"]
    for m in ("batch GD", "SGD"):
        h = runs[m]["history"]
        e = [r["epoch"] for r in h]
        # float32 evaluation of L near its minimum is exact to ~1e-7 relative: clip there
        v = [max(r["val_loss"] - best, 1e-7 * best) for r in h]
        bx.plot(e, v, styles[m], color=colours[m], linewidth=2, label=m)
    bx.set_ylabel("L(θ) − L(θ*): training MSE above the optimum", fontsize=9)
    bx.set_yscale("log")
    bx.set_xscale("log")
    bx.set_xlabel("epoch (batch GD: one step per epoch)")
    bx.set_title("convergence to the optimum", fontsize=11)
    bx.legend(frameon=False, fontsize=8)
    R.style_axes(bx)
    return R.save_figure(fig, path)


register(Recipe(
    name="linear-regression",
    description="least squares three ways: normal equations vs batch GD vs SGD",
    defaults={"epochs": 40, "batch_size": 16, "lr": 0.05, "optimizer": "sgd",
              "schedule": "cosine", "n": 200, "features": 1, "noise": 0.5, "gd_steps": 300,
              "gd_lr": 0.1, "val_fraction": 0.0, "dataset": "linear"},
    data=_data, model=_model, run=_run,
    help={"n": "number of points", "features": "number of input features d",
          "noise": "std of the Gaussian noise ε", "gd_steps": "batch gradient descent steps",
          "gd_lr": "batch gradient descent learning rate",
          "epochs": "SGD epochs", "batch_size": "SGD batch size", "lr": "SGD learning rate"},
    choices={"dataset": ("linear",)},
))

__all__ = ["closed_form", "TOLERANCE"]
