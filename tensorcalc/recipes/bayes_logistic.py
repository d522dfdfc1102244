"""bayes-logistic — Bayesian logistic regression by Laplace's approximation.

Prior θ ~ N(0, α⁻¹I) on the weights and bias, likelihood p(t | x, θ) = σ(θᵀx̃)ᵗ(1 − σ(θᵀx̃))¹⁻ᵗ
with x̃ = (x, 1). The negative log posterior

    E(θ) = Σᵢ log(1 + exp(−sᵢ θᵀx̃ᵢ)) + ½α‖θ‖²                    (sᵢ = ±1)

is minimised by Newton's method (the MAP θ*); Laplace approximates the posterior by the Gaussian
N(θ*, Σ) with Σ = (∇²E(θ*))⁻¹ = (X̃ᵀSX̃ + αI)⁻¹ (the Hessian by automatic differentiation). For a
test input the activation a = θᵀx̃ is then Gaussian with μ_a = θ*ᵀx̃ and σ_a² = x̃ᵀΣx̃, and the
predictive probability p(t = 1 | x) = ∫σ(a)N(a | μ_a, σ_a²)da is computed

    by the probit approximation   σ(κ μ_a),  κ = (1 + πσ_a²/8)^(−1/2)      (MacKay 1992)
    by Monte Carlo                 (1/S) Σₛ σ(θₛᵀx̃),  θₛ = θ* + Lzₛ,  LLᵀ = Σ (Cholesky)

and compared for calibration with the MAP's plug-in σ(μ_a): a reliability diagram (accuracy
against confidence in bins) and the expected calibration error ECE = Σ_b (n_b/N)|acc_b − conf_b|.
The Laplace predictive pulls the confidence of inputs far from the data towards ½. Measured on
this problem (300 training images, α = 1), the MAP is already well calibrated on 3s and 8s and
the Laplace predictive is *under*confident there (higher ECE); its gain is on inputs unlike the
training data — the other eight digits — where it lowers the MAP's confidence.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import linalg, optim
from ..autodiff.transforms import hessian
from ..ops import elementwise as E
from ..tensor import Tensor
from ..train import report as R
from . import Data, Recipe, register
from ._studies import finish, print_table
from .logistic_newton import three_vs_eight


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def neg_log_posterior(x1, t, alpha):
    """E(θ) as a function of a Tensor θ, for inputs with a column of ones appended."""
    xt = Tensor(x1)
    s = 2 * t - 1

    def e(theta):
        z = (xt @ theta) * s
        return E.softplus(-z).sum() + 0.5 * alpha * (theta * theta).sum()

    return e


def laplace(x, t, alpha=1.0, max_iter=20):
    """(θ*, Σ, Newton iterations, ‖∇E‖) for training inputs x (N, d) and targets t ∈ {0, 1}."""
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    e = neg_log_posterior(x1, t, alpha)
    theta = Tensor(np.zeros(x1.shape[1]))
    theta.requires_grad = True
    opt = optim.Newton([theta])
    for _ in range(max_iter):
        opt.step(lambda: e(theta))
        if opt.state[theta]["grad_norm"] < 1e-10:
            break
    it = opt.state[theta]["n_iter"]
    h = hessian(e)(theta.data.copy())
    h = np.asarray(getattr(h, "data", h))
    cov = np.linalg.inv(h)
    cov = (cov + cov.T) / 2
    z = x1 @ theta.data
    g = x1.T @ (_sigmoid(z) - t) + alpha * theta.data
    return theta.data.copy(), cov, it, float(np.linalg.norm(g))


def predictive(x, theta, cov, samples=2000, rng=0):
    """p(t = 1 | x) three ways: MAP plug-in, probit approximation, Monte Carlo."""
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    mu = x1 @ theta
    var = np.einsum("nd,de,ne->n", x1, cov, x1)
    p_map = _sigmoid(mu)
    p_probit = _sigmoid(mu / np.sqrt(1 + math.pi * var / 8))
    chol = linalg.cholesky(Tensor(cov)).data
    zs = np.random.default_rng(rng).standard_normal((samples, len(theta)))
    thetas = theta + zs @ chol.T
    p_mc = _sigmoid(x1 @ thetas.T).mean(axis=1)
    return {"MAP": p_map, "Laplace (probit)": p_probit, "Laplace (Monte Carlo)": p_mc}


def calibration(p, t, bins=10):
    """(ECE, per-bin (confidence, accuracy, count)) with confidence max(p, 1 − p)."""
    conf = np.maximum(p, 1 - p)
    correct = ((p > 0.5) == (t > 0.5)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            c, a = float(conf[sel].mean()), float(correct[sel].mean())
            ece += sel.mean() * abs(a - c)
            table.append((c, a, int(sel.sum())))
    return float(ece), table


def _nll(p, t):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def other_digits(downsample):
    """The test split's digits other than 3 and 8 (inputs the model never saw a class for)."""
    from .. import data as D

    s = D.mnist10k_split(test_size=2000, seed=0)
    x, y = s.test
    x = x[(y != 3) & (y != 8)].astype(np.float64) / 255.0
    k = downsample
    if k > 1:
        x = x.reshape(len(x), 28 // k, k, 28 // k, k).mean(axis=(2, 4))
    return x.reshape(len(x), -1)


def _split(cfg):
    (x, t), (xte, tte) = three_vs_eight(cfg["downsample"])
    rng = np.random.default_rng(cfg["seed"])
    idx = rng.permutation(len(t))[:cfg["train_size"]]
    return (x[idx], t[idx]), (xte, tte)


def _data(cfg):
    if cfg["train_size"] < 10:
        raise ValueError(f"--train-size must be at least 10, got {cfg['train_size']}")
    if cfg["alpha"] <= 0:
        raise ValueError(f"--alpha must be > 0, got {cfg['alpha']}")
    if cfg["downsample"] not in (1, 2, 4):
        raise ValueError(f"--downsample must be 1, 2 or 4, got {cfg['downsample']}")
    (x, t), (xte, tte) = _split(cfg)
    return Data(name="mnist10k-3v8", task="binary", train=(x.astype(np.float32), t),
                test=(xte.astype(np.float32), tte), num_classes=2, class_names=["3", "8"],
                description=f"MNIST-10k 3s vs 8s, {len(t)} training images "
                            f"({x.shape[1]} features), {len(tte)} test images",
                title="MNIST-10k (3 vs 8)")


def _run(cfg, run_dir, quiet=False, progress=None):
    t0 = time.perf_counter()
    (x, t), (xte, tte) = _split(cfg)
    theta, cov, iters, gnorm = laplace(x, t, cfg["alpha"])
    preds = predictive(xte, theta, cov, cfg["mc_samples"], cfg["seed"])
    rows, cal = [], {}
    for name, p in preds.items():
        ece, table = calibration(p, tte, cfg["bins"])
        cal[name] = table
        rows.append([name, float(np.mean((p > 0.5) == (tte > 0.5))), _nll(p, tte), ece,
                     float(np.mean(np.maximum(p, 1 - p)))])
    ood = predictive(other_digits(cfg["downsample"]), theta, cov, cfg["mc_samples"],
                     cfg["seed"])
    for r in rows:
        r.append(float(np.mean(np.maximum(ood[r[0]], 1 - ood[r[0]]))))
    header = ["predictive", "test accuracy", "test NLL", "ECE", "mean confidence",
              "mean confidence on other digits"]
    if not quiet:
        print(f"MAP by Newton: {iters} iterations, ‖∇E‖ = {gnorm:.1e}")
        print_table(header, rows)
    fig = R.new_figure(11, 4.4)
    ax, bx = fig.subplots(1, 2)
    colours = {"MAP": R.PALETTE["bad"], "Laplace (probit)": R.PALETTE["train"],
               "Laplace (Monte Carlo)": R.PALETTE["test"]}
    ax.plot([0.5, 1], [0.5, 1], color="#9ca3af", linestyle=":", label="perfect calibration")
    for name, table in cal.items():
        c, a, n = (np.array(v) for v in zip(*table, strict=True))
        ax.plot(c, a, "o-", color=colours[name], label=name)
    ax.set_xlabel("confidence max(p, 1 − p)")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability diagram (test set)", fontsize=11)
    ax.legend(frameon=False, fontsize=8)
    R.style_axes(ax)
    bx.scatter(preds["MAP"], preds["Laplace (probit)"], s=4, color=R.PALETTE["train"],
               alpha=0.5, label="MAP → Laplace (probit)")
    bx.scatter(preds["Laplace (probit)"], preds["Laplace (Monte Carlo)"], s=4,
               color=R.PALETTE["test"], alpha=0.5, label="probit → Monte Carlo")
    bx.plot([0, 1], [0, 1], color="#9ca3af", linestyle=":")
    bx.set_xlabel("p (MAP plug-in; for the green points: probit)")
    bx.set_ylabel("p (Laplace predictive)")
    bx.set_title("the predictive pulls confident MAP outputs towards ½", fontsize=10)
    bx.legend(frameon=False, fontsize=8)
    R.style_axes(bx)
    png = R.save_figure(fig, os.path.join(run_dir, "calibration.png"))
    test = {"newton_iterations": iters, "grad_norm": gnorm,
            **{f"ece_{r[0]}": r[3] for r in rows}, **{f"nll_{r[0]}": r[2] for r in rows},
            **{f"accuracy_{r[0]}": r[1] for r in rows},
            **{f"ood_confidence_{r[0]}": r[5] for r in rows},
            "probit_vs_mc_max_diff": float(np.max(np.abs(
                preds["Laplace (probit)"] - preds["Laplace (Monte Carlo)"])))}
    return finish(
        run_dir, cfg, "bayes-logistic — Laplace's approximation vs the MAP",
        f"{len(t)} training images of 3s and 8s, {x.shape[1]} features, prior precision "
        f"α = {cfg['alpha']}",
        [("ECE, MAP", f"{rows[0][3]:.3f}"), ("ECE, Laplace (probit)", f"{rows[1][3]:.3f}"),
         ("ECE, Laplace (MC)", f"{rows[2][3]:.3f}"), ("Newton iterations", f"{iters}")],
        [("section", "Calibration"),
         ("figure", png, "Left: accuracy against confidence in bins (a calibrated model lies on "
          "the diagonal). Right: the Laplace predictive against the MAP's plug-in probability, "
          "and the probit approximation against Monte Carlo."),
         ("table", rows, header, f"ECE with {cfg['bins']} equal-width confidence bins; Monte "
          f"Carlo with {cfg['mc_samples']} posterior samples. Last column: the test images of "
          "the other eight digits, for which neither answer is right — lower is better.")],
        test, seconds=time.perf_counter() - t0)


register(Recipe(
    name="bayes-logistic",
    description="Bayesian logistic regression by Laplace's approximation; calibration vs MAP",
    defaults={"alpha": 1.0, "train_size": 300, "downsample": 2, "mc_samples": 2000,
              "bins": 10, "dataset": "mnist10k", "val_fraction": 0.0},
    data=_data, run=_run,
    help={"alpha": "prior precision α (1/C)", "train_size": "training images (a small set "
          "leaves the posterior uncertain)", "downsample": "average-pool the digits by 1, 2 "
          "or 4", "mc_samples": "Monte Carlo posterior samples", "bins": "calibration bins"},
    choices={"dataset": ("mnist10k",)},
))
