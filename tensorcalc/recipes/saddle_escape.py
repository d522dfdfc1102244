"""saddle-escape — how long gradient descent takes to leave a strict saddle, and why a random
kick (perturbed GD, Jin et al. 2017) fixes it.

f(x, y) = ½x² − ½y² + ¼y⁴ has a strict saddle at the origin (Hessian diag(1, −1)) and minima at
(0, ±1). Gradient descent with step η multiplies y by (1 + η − ηy²) ≈ 1 + η while y is small,
so from y₀ it needs about

    T(y₀) ≈ ln(c/|y₀|) / ln(1 + η)          steps to reach |y| > c     (c = ½ here)

— a straight line against −log₁₀|y₀|, and never from y₀ = 0 exactly (the stable manifold).
Perturbed GD adds a kick ξ ~ Uniform(ball of radius r) once ‖∇f‖ ≤ g_thres, so its escape time
no longer depends on y₀: a flat line. :func:`escape_time` counts steps.

Chained saddles (after Du, Jin, Lee, Jordan, Singh & Póczos 2017, "Gradient descent can take
exponential time to escape saddle points"; a smooth simplification of their construction):

    f(x) = Σᵢ₌₁ᵈ (1 − sᵢ) ½L xᵢ² + sᵢ (−½γ xᵢ² + ¼γ xᵢ⁴),   s₁ = 1,  sᵢ = xᵢ₋₁² / (xᵢ₋₁² + δ)

While xᵢ₋₁ ≈ 0 coordinate i is stable (GD shrinks it by 1 − ηL per step); once xᵢ₋₁ has escaped
to ±1, i becomes unstable (grows by 1 + ηγ). So GD passes the saddles one after another, and
every step spent at saddles 1…i has shrunk xᵢ₊₁ further: with κ = ln(1/(1 − ηL))/ln(1 + ηγ),
stage i + 1 lasts about κ times all the previous stages together, and the total time multiplies
by ≈ 1 + κ per saddle — exponential in d. PGD's kicks reset each coordinate to ~r, so its time
grows about linearly in d (:func:`chain_escape_times`).
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


def chain(x, d, lipschitz=1.0, gamma=1.0, delta=1e-2):
    """The chained-saddle function above for a parameter Tensor x of length d."""
    total = None
    for i in range(d):
        xi = x[i]
        if i == 0:
            term = gamma * (0.25 * xi ** 4 - 0.5 * xi ** 2)
        else:
            u2 = x[i - 1] ** 2
            si = u2 / (u2 + delta)
            term = (1 - si) * (0.5 * lipschitz) * xi ** 2 + si * gamma * (0.25 * xi ** 4
                                                                           - 0.5 * xi ** 2)
        total = term if total is None else total + term
    return total


def chain_escape_times(d, lr=0.1, lipschitz=1.0, start=1e-3, perturbed=None, seed=0,
                       max_steps=20000, threshold=0.5):
    """The step at which each coordinate first exceeds ``threshold`` (None if not within
    ``max_steps``), GD or PerturbedGD from x = (start, …, start)."""
    x = Tensor(np.full(d, start, dtype=np.float64))
    x.requires_grad = True
    opt = (optim.SGD([x], lr=lr) if perturbed is None
           else optim.PerturbedGD([x], lr=lr, rng=seed, **perturbed))
    times = [None] * d
    for t in range(1, max_steps + 1):
        opt.zero_grad()
        chain(x, d, lipschitz).backward()
        opt.step()
        for i in np.flatnonzero(np.abs(x.data) > threshold):
            if times[i] is None:
                times[i] = t
        if times[-1] is not None:
            break
    return times


def chain_factor(lr=0.1, lipschitz=1.0, gamma=1.0):
    """1 + κ, κ = ln(1/(1 − ηL)) / ln(1 + ηγ): the predicted growth of GD's time per saddle."""
    return 1 + math.log(1 / (1 - lr * lipschitz)) / math.log1p(lr * gamma)


def _run(cfg, run_dir, quiet=False, progress=None):
    if not 2 <= cfg["chain_d"] <= 8:
        raise ValueError(f"--chain-d must be between 2 and 8, got {cfg['chain_d']}")
    if not 0 < cfg["lr"] * cfg["chain_L"] < 1:
        raise ValueError(f"--lr × --chain-L must lie in (0, 1), got {cfg['lr'] * cfg['chain_L']}")
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
    d = cfg["chain_d"]
    gd_chain = chain_escape_times(d, lr, cfg["chain_L"], max_steps=cfg["max_steps"] * 10)
    pgd_chain = chain_escape_times(d, lr, cfg["chain_L"], perturbed=pgd, seed=0,
                                   max_steps=cfg["max_steps"] * 10)
    factor = chain_factor(lr, cfg["chain_L"])
    chain_rows = [[i + 1, gd_chain[i], (gd_chain[i] / gd_chain[i - 1]
                                        if i and gd_chain[i] and gd_chain[i - 1] else "—"),
                   pgd_chain[i]] for i in range(d)]
    chain_header = ["saddle i", "GD: step leaving it", "ratio to the previous", "PGD"]
    if not quiet:
        print(f"chained saddles, d = {d}, L = {cfg['chain_L']}: predicted growth per saddle "
              f"1 + κ = {factor:.2f}")
        print_table(chain_header, chain_rows)
    fig = R.new_figure(15, 4.2)
    ax, bx, cx = fig.subplots(1, 3)
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
    idx = np.arange(1, d + 1)
    cx.semilogy(idx, [t or np.nan for t in gd_chain], "o-", color=R.PALETTE["train"],
                label="gradient descent")
    cx.semilogy(idx, [gd_chain[0] * factor ** i for i in range(d)], ":",
                color=R.PALETTE["grey"], label=f"× (1 + κ) = × {factor:.2f} per saddle")
    cx.semilogy(idx, [t or np.nan for t in pgd_chain], "s-", color=R.PALETTE["val"],
                label="perturbed GD")
    cx.set_xticks(idx)
    cx.set_xlabel("saddle i")
    cx.set_ylabel("step at which xᵢ leaves (|xᵢ| > ½)")
    cx.set_title(f"{d} chained saddles (Du et al. 2017)", fontsize=11)
    cx.legend(frameon=False, fontsize=8)
    R.style_axes(cx)
    png = R.save_figure(fig, os.path.join(run_dir, "escape.png"))
    slope = float(np.polyfit(exps, gd_times, 1)[0]) if len(exps) > 1 else float("nan")
    test = {"gd_steps": dict(zip([f"1e-{e}" for e in exps], gd_times, strict=True)),
            "gd_slope_per_decade": slope, "predicted_slope": 1 / math.log10(1 + lr),
            "pgd_median_from_zero": float(np.median(zero)), "pgd_min_from_zero": min(zero),
            "pgd_max_from_zero": max(zero), "gd_from_zero": t_zero_gd,
            "chain_gd": gd_chain, "chain_pgd": pgd_chain, "chain_predicted_factor": factor}
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
         ("table", rows, header, "GD from y₀ = 0 stays on the stable manifold y = 0 forever."),
         ("section", "Chained saddles"),
         ("table", chain_rows, chain_header, "GD's time multiplies by about 1 + κ per saddle "
          "(κ = ln(1/(1 − ηL))/ln(1 + ηγ)); PGD's grows by about a constant per saddle. Third "
          "panel of the figure above.")],
        test, seconds=time.perf_counter() - t0)


register(Recipe(
    name="saddle-escape",
    description="escaping a strict saddle: gradient descent vs perturbed gradient descent",
    defaults={"lr": 0.1, "max_exponent": 12, "radius": 1e-3, "g_thres": 1e-3, "t_thres": 50,
              "seeds": 20, "max_steps": 3000, "chain_d": 5, "chain_L": 1.0, "dataset": "saddle",
              "val_fraction": 0.0},
    data=lambda cfg: synthetic_data("saddle", "f(x, y) = ½x² − ½y² + ¼y⁴ (no data)"),
    run=_run,
    help={"lr": "step size η", "max_exponent": "smallest y₀ is 10^-max_exponent",
          "radius": "PGD kick radius r", "g_thres": "PGD gradient threshold",
          "t_thres": "PGD steps between kicks", "seeds": "PGD runs per y₀",
          "max_steps": "give up after this many steps (×10 for the chain)",
          "chain_d": "number of chained saddles (3–8)",
          "chain_L": "curvature L of the stable directions in the chain"},
    choices={"dataset": ("saddle",)},
))
