"""saddle-escape — how long gradient descent takes to leave a strict saddle, and why a random
kick (perturbed GD, Jin et al. 2017) fixes it.

f(x, y) = ½x² − ½y² + ¼y⁴ has a strict saddle at the origin (Hessian diag(1, −1)) and minima at
(0, ±1). Gradient descent with step η multiplies y by (1 + η − ηy²) ≈ 1 + η while y is small,
so from y₀ it needs about

    T(y₀) ≈ ln(c/|y₀|) / ln(1 + η)          steps to reach |y| > c     (c = ½ here)

— a straight line against −log₁₀|y₀|, and never from y₀ = 0 exactly (the stable manifold).
Perturbed GD adds a kick ξ ~ Uniform(ball of radius r) once ‖∇f‖ ≤ g_thres, so its escape time
no longer depends on y₀: a flat line. :func:`escape_time` counts steps; the chained-saddle
construction of Du et al. 2017 (GD's time multiplying per saddle) is not part of this study.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import optim
from ..tensor import Tensor
from ..train import report as R
from . import Recipe, register
from ._studies import finish, print_table, synthetic_data


def saddle(p):
    """f(x, y) = ½x² − ½y² + ¼y⁴ for a parameter Tensor p = (x, y)."""
    return 0.5 * p[0] ** 2 - 0.5 * p[1] ** 2 + 0.25 * p[1] ** 4


def escape_time(y0, lr=0.1, x0=1.0, threshold=0.5, max_steps=5000, perturbed=None, seed=0):
    """Steps of GD (``perturbed=None``) or PerturbedGD (``perturbed`` = dict of radius,
    g_thres, t_thres) from (x0, y0) until |y| > threshold; None if it never escapes within
    ``max_steps``. Also returns the trajectory of y."""
    p = Tensor(np.array([x0, y0], dtype=np.float64))
    p.requires_grad = True
    if perturbed is None:
        opt = optim.SGD([p], lr=lr)
    else:
        opt = optim.PerturbedGD([p], lr=lr, rng=seed, **perturbed)
    ys = [y0]
    for t in range(1, max_steps + 1):
        opt.zero_grad()
        saddle(p).backward()
        opt.step()
        ys.append(float(p.data[1]))
        if abs(ys[-1]) > threshold:
            return t, ys
    return None, ys


def predicted_time(y0, lr=0.1, threshold=0.5):
    """ln(c/|y₀|)/ln(1 + η): the linearised escape time."""
    return math.log(threshold / abs(y0)) / math.log1p(lr)


def _run(cfg, run_dir, quiet=False, progress=None):
    t0 = time.perf_counter()
    lr = cfg["lr"]
    exps = list(range(3, cfg["max_exponent"] + 1, 3))
    pgd = {"radius": cfg["radius"], "g_thres": cfg["g_thres"], "t_thres": cfg["t_thres"]}
    rows, gd_times, pgd_times = [], [], []
    for e in exps:
        y0 = 10.0 ** -e
        tg, _ = escape_time(y0, lr)
        tp = [escape_time(y0, lr, perturbed=pgd, seed=s)[0] for s in range(cfg["seeds"])]
        gd_times.append(tg)
        pgd_times.append(tp)
        rows.append([f"1e-{e}", tg, round(predicted_time(y0, lr), 1), int(np.median(tp)),
                     min(tp), max(tp)])
    t_zero_gd, _ = escape_time(0.0, lr, max_steps=cfg["max_steps"])
    zero = [escape_time(0.0, lr, perturbed=pgd, seed=s)[0] for s in range(cfg["seeds"])]
    rows.append(["0", "never" if t_zero_gd is None else t_zero_gd, "∞", int(np.median(zero)),
                 min(zero), max(zero)])
    header = ["y₀", "GD steps", "ln(½/|y₀|)/ln(1+η)", "PGD median", "PGD min", "PGD max"]
    if not quiet:
        print_table(header, rows)
    fig = R.new_figure(11, 4.2)
    ax, bx = fig.subplots(1, 2)
    ax.plot(exps, gd_times, "o-", color=R.PALETTE["train"], label="gradient descent")
    ax.plot(exps, [predicted_time(10.0 ** -e, lr) for e in exps], ":", color=R.PALETTE["grey"],
            label="ln(½/|y₀|) / ln(1 + η)")
    med = [np.median(t) for t in pgd_times]
    ax.errorbar(exps, med, yerr=[[m - min(t) for m, t in zip(med, pgd_times, strict=True)],
                                 [max(t) - m for m, t in zip(med, pgd_times, strict=True)]],
                fmt="s-", color=R.PALETTE["val"], capsize=3,
                label=f"perturbed GD (median, range of {cfg['seeds']} seeds)")
    ax.axhline(np.median(zero), color=R.PALETTE["val"], linestyle="--", linewidth=1,
               label="perturbed GD from y₀ = 0")
    ax.set_xlabel("−log₁₀ |y₀|")
    ax.set_ylabel("steps to |y| > ½")
    ax.set_title("escape time from the saddle of ½x² − ½y² + ¼y⁴", fontsize=11)
    ax.legend(frameon=False, fontsize=8)
    R.style_axes(ax)
    for e, colour in ((3, R.PALETTE["train"]), (9, R.PALETTE["accent"])):
        _, ys = escape_time(10.0 ** -e, lr, max_steps=400)
        bx.plot(np.abs(ys), color=colour, label=f"GD, y₀ = 1e-{e}")
    _, ys = escape_time(0.0, lr, perturbed=pgd, seed=0, max_steps=400)
    bx.plot(np.abs(np.array(ys)) + 1e-300, color=R.PALETTE["val"], label="PGD, y₀ = 0")
    bx.set_yscale("log")
    bx.set_ylim(1e-13, 3)
    bx.set_xlabel("step")
    bx.set_ylabel("|y|")
    bx.set_title("|y| along the way (straight lines: growth by 1 + η)", fontsize=11)
    bx.legend(frameon=False, fontsize=8)
    R.style_axes(bx)
    png = R.save_figure(fig, os.path.join(run_dir, "escape.png"))
    slope = float(np.polyfit(exps, gd_times, 1)[0])
    test = {"gd_steps": dict(zip([f"1e-{e}" for e in exps], gd_times, strict=True)),
            "gd_slope_per_decade": slope, "predicted_slope": 1 / math.log10(1 + lr),
            "pgd_median_from_zero": float(np.median(zero)), "pgd_min_from_zero": min(zero),
            "pgd_max_from_zero": max(zero), "gd_from_zero": t_zero_gd}
    return finish(
        run_dir, cfg, "saddle-escape — gradient descent vs perturbed gradient descent",
        f"f(x, y) = ½x² − ½y² + ¼y⁴, η = {lr}, start (1, y₀)",
        [("GD steps per decade of y₀", f"{slope:.1f}"),
         ("predicted", f"{1 / math.log10(1 + lr):.1f}"),
         ("PGD from y₀ = 0 (median)", f"{np.median(zero):.0f} steps")],
        [("section", "Escape time"),
         ("figure", png, "Left: GD's escape time grows linearly in −log₁₀|y₀| (slope "
          "1/log₁₀(1 + η)); PGD's stays flat because its kick of radius r, not y₀, sets the "
          "distance from the stable manifold. Right: |y| against the step."),
         ("table", rows, header, "GD from y₀ = 0 stays on the stable manifold y = 0 forever.")],
        test, seconds=time.perf_counter() - t0)


register(Recipe(
    name="saddle-escape",
    description="escaping a strict saddle: gradient descent vs perturbed gradient descent",
    defaults={"lr": 0.1, "max_exponent": 12, "radius": 1e-3, "g_thres": 1e-3, "t_thres": 50,
              "seeds": 20, "max_steps": 3000, "dataset": "saddle", "val_fraction": 0.0},
    data=lambda cfg: synthetic_data("saddle", "f(x, y) = ½x² − ½y² + ¼y⁴ (no data)"),
    run=_run,
    help={"lr": "step size η", "max_exponent": "smallest y₀ is 10^-max_exponent",
          "radius": "PGD kick radius r", "g_thres": "PGD gradient threshold",
          "t_thres": "PGD steps between kicks", "seeds": "PGD runs per y₀",
          "max_steps": "give up after this many steps"},
    choices={"dataset": ("saddle",)},
))
