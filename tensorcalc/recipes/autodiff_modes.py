"""autodiff-modes — forward versus reverse mode: what the full Jacobian and a gradient cost.

For f: ℝⁿ → ℝᵐ, forward mode pushes one tangent ẋ per pass and gets one column J ẋ; reverse mode
pulls one cotangent ȳ per pass and gets one row ȳᵀJ. Each pass costs a small multiple of one
evaluation of f, so the full Jacobian costs about

    forward:  n passes (one JVP per input)      reverse:  m passes (one VJP per output)

— forward wins when n < m (tall Jacobians), reverse when m < n (wide ones), with the crossover
on the diagonal n ≈ m (shifted by the two modes' different constants). A gradient is the
extreme case m = 1: reverse mode needs one pass for all n partial derivatives, which is why
training uses it. This study times ``tc.jacobian(f, mode=...)`` of a small tanh network over a
grid of (n, m) and the gradient of the logistic-regression loss on MNIST-10k's 3s vs 8s both
ways (n = 785 parameters).
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import functional as F
from ..autodiff.transforms import jacobian
from ..ops import elementwise as E
from ..tensor import Tensor
from ..train import report as R
from . import Recipe, register
from ._studies import finish, print_table, synthetic_data


def network(n, m, hidden=64, seed=0):
    """f(x) = W₃ tanh(W₂ tanh(W₁x)) : ℝⁿ → ℝᵐ (fixed random weights)."""
    rng = np.random.default_rng(seed)
    w1 = Tensor(rng.standard_normal((hidden, n)) / np.sqrt(n))
    w2 = Tensor(rng.standard_normal((hidden, hidden)) / np.sqrt(hidden))
    w3 = Tensor(rng.standard_normal((m, hidden)) / np.sqrt(hidden))
    return lambda x: w3 @ E.tanh(w2 @ E.tanh(w1 @ x))


def best_time(fn, repeats=3):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def jacobian_times(sizes, repeats=3, seed=0):
    """{(n, m): (forward seconds, reverse seconds)} and the largest |J_fwd − J_rev|."""
    rng = np.random.default_rng(seed)
    times, worst = {}, 0.0
    for n in sizes:
        for m in sizes:
            f = network(n, m, seed=seed)
            x = rng.standard_normal(n)
            tf, jf = best_time(lambda f=f, x=x: jacobian(f, mode="forward")(x), repeats)
            tr, jr = best_time(lambda f=f, x=x: jacobian(f, mode="reverse")(x), repeats)
            jf, jr = (np.asarray(getattr(j, "data", j)) for j in (jf, jr))
            worst = max(worst, float(np.max(np.abs(jf - jr))))
            times[(n, m)] = (tf, tr)
    return times, worst


def logistic_gradient_times(repeats=3, downsample=1):
    """The gradient of the mean logistic loss on 3s vs 8s by reverse mode (one VJP) and by
    forward mode (n JVPs, the Jacobian of a scalar): (seconds rev, seconds fwd, n, max diff)."""
    from .logistic_newton import three_vs_eight

    (x, t), _ = three_vs_eight(downsample)
    xt = Tensor(np.concatenate([x, np.ones((len(x), 1))], axis=1))

    def loss(theta):
        return F.binary_cross_entropy_with_logits(xt @ theta, t)

    theta = np.zeros(xt.shape[1])
    tr, gr = best_time(lambda: jacobian(loss, mode="reverse")(theta), repeats)
    tf, gf = best_time(lambda: jacobian(loss, mode="forward")(theta), 1)
    gr, gf = (np.asarray(getattr(g, "data", g)) for g in (gr, gf))
    return tr, tf, xt.shape[1], float(np.max(np.abs(gr - gf)))


def _run(cfg, run_dir, quiet=False, progress=None):
    t0 = time.perf_counter()
    sizes = [int(s) for s in str(cfg["sizes"]).split(",")]
    if any(s < 1 for s in sizes):
        raise ValueError(f"--sizes must be positive integers, got {cfg['sizes']}")
    times, worst = jacobian_times(sizes, cfg["repeats"], cfg["seed"])
    rows = [[n, m, times[(n, m)][0] * 1e3, times[(n, m)][1] * 1e3,
             "forward" if times[(n, m)][0] < times[(n, m)][1] else "reverse"]
            for n in sizes for m in sizes]
    header = ["n (inputs)", "m (outputs)", "forward ms", "reverse ms", "faster"]
    tr, tf, d, gdiff = logistic_gradient_times(cfg["repeats"], cfg["downsample"])
    if not quiet:
        print_table(header, rows)
        print(f"logistic-regression gradient (n = {d}): reverse {tr * 1e3:.2f} ms, forward "
              f"{tf * 1e3:.1f} ms ({tf / tr:.0f}x); max difference {gdiff:.1e}")
    ratio = np.array([[np.log2(times[(n, m)][0] / times[(n, m)][1]) for n in sizes]
                      for m in sizes])
    fig = R.new_figure(11, 4.4)
    ax, bx = fig.subplots(1, 2)
    lim = float(np.max(np.abs(ratio)))
    im = ax.imshow(ratio, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_yticks(range(len(sizes)), sizes)
    ax.plot([-0.5, len(sizes) - 0.5], [-0.5, len(sizes) - 0.5], "k--", linewidth=1,
            label="n = m")
    ax.contour(ratio, levels=[0], colors="#111827", linewidths=2)
    ax.set_xlabel("n (inputs)")
    ax.set_ylabel("m (outputs)")
    ax.set_title("log₂(forward time / reverse time)\n(blue: forward faster; solid: crossover)",
                 fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    mid = sizes[len(sizes) // 2]
    bx.loglog(sizes, [times[(n, mid)][0] for n in sizes], "o-", color=R.PALETTE["train"],
              label=f"forward, m = {mid}: grows with n")
    bx.loglog(sizes, [times[(n, mid)][1] for n in sizes], "s-", color=R.PALETTE["val"],
              label=f"reverse, m = {mid}: flat in n")
    bx.set_xlabel("n (inputs)")
    bx.set_ylabel("seconds for the full Jacobian")
    bx.set_title("cost of the full Jacobian J (m × n)", fontsize=11)
    bx.legend(frameon=False, fontsize=8)
    R.style_axes(bx)
    png = R.save_figure(fig, os.path.join(run_dir, "modes.png"))
    test = {"jacobian_max_abs_diff": worst, "logistic_grad_reverse_ms": tr * 1e3,
            "logistic_grad_forward_ms": tf * 1e3, "logistic_grad_ratio": tf / tr,
            "logistic_grad_max_abs_diff": gdiff, "logistic_params": d}
    return finish(
        run_dir, cfg, "autodiff-modes — forward vs reverse mode", "tc.jacobian(f, mode=...)",
        [(f"gradient, n = {d}: forward / reverse", f"{tf / tr:.0f}×"),
         ("max |J_fwd − J_rev|", f"{worst:.1e}")],
        [("section", "Full Jacobians"),
         ("figure", png, "Left: the time ratio over the grid of input and output sizes; the "
          "crossover follows the diagonal n ≈ m. Right: at fixed m, forward mode's cost grows "
          "with n (one JVP per input), reverse mode's does not (one VJP per output)."),
         ("table", rows, header, "Best of the repeats, one BLAS thread."),
         ("section", "A gradient both ways"),
         ("table", [["reverse (1 VJP)", tr * 1e3], [f"forward ({d} JVPs)", tf * 1e3]],
          ["mode", "milliseconds"], f"∇ of the mean logistic loss on MNIST-10k's 3s vs 8s, "
          f"{d} parameters; the two gradients differ by at most {gdiff:.1e}.")],
        test, seconds=time.perf_counter() - t0)


register(Recipe(
    name="autodiff-modes",
    description="forward vs reverse mode: Jacobian cost over (n, m) and a gradient both ways",
    defaults={"sizes": "1,4,16,64,256", "repeats": 3, "downsample": 1, "dataset": "synthetic",
              "val_fraction": 0.0},
    data=lambda cfg: synthetic_data("synthetic", "a random tanh network ℝⁿ → ℝᵐ; MNIST-10k 3s "
                                    "vs 8s for the gradient"),
    run=_run,
    help={"sizes": "comma-separated n and m values", "repeats": "timings per cell (best kept)",
          "downsample": "average-pool the digits by 1, 2 or 4 for the gradient timing"},
    choices={"dataset": ("synthetic",)},
))
