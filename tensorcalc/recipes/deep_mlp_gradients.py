"""mlp-gradients — vanishing gradients in a deep MLP, and what cures them, measured per layer.

Backpropagation through a plain MLP zˡ = Wˡ aˡ⁻¹ + bˡ, aˡ = σ(zˡ) runs

    δˡ = (Wˡ⁺¹)ᵀ δˡ⁺¹ ⊙ σ′(zˡ),    ∂C/∂Wˡ = δˡ (aˡ⁻¹)ᵀ,

so the error signal is multiplied once per layer by (Wˡ⁺¹)ᵀ and by σ′ ≤ ¼ (sigmoid) or ≤ 1
(tanh): with unsuited weights it shrinks (or grows) geometrically towards the input and the
first layers barely learn. Xavier initialisation (Var w = 2/(fan_in + fan_out)) keeps the
signal's scale through tanh; He initialisation (Var w = 2/fan_in) through ReLU; batch norm
re-standardises every zˡ whatever the weights; a residual block aˡ = aˡ⁻¹ + σ(zˡ) adds an
identity path, ∂aˡ/∂aˡ⁻¹ = I + …, that the gradient can take unshrunk.

The study: the same MLP (``depth`` hidden layers of ``width``) on MNIST-10k, as sigmoid / tanh /
ReLU with a naive initialisation (w ~ N(0, ``naive_std``²), biases 0) and with a good one
(Xavier / Xavier / He), plus ReLU with batch norm and ReLU with residual connections, both on
the naive initialisation. For every layer, the error signal ‖δˡ‖ = ‖∂L/∂zˡ‖ (and ‖∂L/∂Wˡ‖)
on one fixed batch at initialisation and after ``steps`` steps of SGD with momentum; the test
accuracy after training. One figure (two panels, log scale), one table of ‖δ¹‖ / ‖δ^L‖ (first
over last layer). ‖∂L/∂Wˡ‖ = ‖δˡ (aˡ⁻¹)ᵀ‖ also carries the forward activations' scale, which
can shrink as fast as δ grows (small ReLU weights), so the δ ratio is the cleaner measure.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import functional as F
from .. import nn
from ..autodiff import gradients
from ..nn import init
from ..optim import SGD
from ..tensor import Tensor
from . import Recipe, RecipeError, register
from ._common import image_data
from ._studies import finish, print_table

# (key, label, activation, init, batch norm, residual)
VARIANTS = (
    ("sigmoid-naive", "sigmoid, naive init", "sigmoid", "naive", False, False),
    ("sigmoid-xavier", "sigmoid, Xavier", "sigmoid", "xavier", False, False),
    ("tanh-naive", "tanh, naive init", "tanh", "naive", False, False),
    ("tanh-xavier", "tanh, Xavier", "tanh", "xavier", False, False),
    ("relu-naive", "ReLU, naive init", "relu", "naive", False, False),
    ("relu-he", "ReLU, He", "relu", "he", False, False),
    ("relu-bn", "ReLU + batch norm, naive init", "relu", "naive", True, False),
    ("relu-res", "ReLU + residual, naive init", "relu", "naive", False, True),
)


class DeepMLP(nn.Module):
    """784 → width (× depth hidden layers) → 10, with optional batch norm and residual blocks."""

    def __init__(self, depth, width, act, how, bn, res, naive_std, rng):
        super().__init__()
        sizes = [784] + [width] * depth + [10]
        self.layers = nn.ModuleList([nn.Linear(a, b, rng=rng)
                                     for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(width) for _ in range(depth)] if bn else [])
        self.act, self.res = getattr(F, act), res
        for lin in self.layers:
            init.zeros_(lin.bias)
            if how == "naive":
                init.normal_(lin.weight, 0.0, naive_std, rng=rng)
            elif how == "xavier":
                init.xavier_normal_(lin.weight, gain=init.calculate_gain(act), rng=rng)
            else:
                init.kaiming_normal_(lin.weight, nonlinearity="relu", rng=rng)

    def forward(self, x, zs=None):
        h = x
        for i, lin in enumerate(self.layers):
            z = lin(h)
            if zs is not None:
                zs.append(z)
            if i == len(self.layers) - 1:
                return z
            if len(self.norms):
                z = self.norms[i](z)
            h = h + self.act(z) if self.res and i > 0 else self.act(z)


def _norm(g):
    return float(np.sqrt((np.asarray(g.data if isinstance(g, Tensor) else g,
                                     dtype=np.float64) ** 2).sum()))


def layer_grad_norms(model, x, y):
    """Per layer l, first to last, on the batch (x, y): ‖δˡ‖ = ‖∂L/∂zˡ‖ (the error signal at
    the pre-activations, Frobenius over the batch) and ‖∂L/∂Wˡ‖."""
    zs = []
    loss = F.cross_entropy(model(x, zs), y)
    ws = [lin.weight for lin in model.layers]
    gs = gradients(loss, zs + ws)
    return [_norm(g) for g in gs[:len(zs)]], [_norm(g) for g in gs[len(zs):]]


def _accuracy(model, x, y):
    model.eval()
    out = np.concatenate([np.asarray(model(x[i:i + 1000]).data) for i in range(0, len(x), 1000)])
    model.train()
    return float((out.argmax(-1) == y).mean())


def _run(cfg, run_dir, quiet=False, progress=None):
    t0 = time.perf_counter()
    data = image_data(cfg)
    (xtr, ytr), (xte, yte) = data.train, data.test
    rng = np.random.default_rng(cfg["seed"])
    mb = rng.choice(len(xtr), cfg["measure_batch"], replace=False)
    xm, ym = Tensor(xtr[mb]), ytr[mb]
    order = [rng.integers(0, len(xtr), cfg["batch_size"]) for _ in range(cfg["steps"])]
    keys = [k.strip() for k in cfg["variants"].split(",") if k.strip()]
    unknown = sorted(set(keys) - {v[0] for v in VARIANTS})
    if unknown or not keys:
        raise RecipeError(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose "
                          f"from {', '.join(v[0] for v in VARIANTS)}")
    results = {}
    for key, lab, act, how, bn, res in VARIANTS:
        if key not in keys:
            continue
        model = DeepMLP(cfg["depth"], cfg["width"], act, how, bn, res, cfg["naive_std"],
                        np.random.default_rng(cfg["seed"] + 1))
        before, w_before = layer_grad_norms(model, xm, ym)
        opt = SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
        loss = math.nan
        for idx in order:
            opt.zero_grad()
            out = F.cross_entropy(model(Tensor(xtr[idx])), ytr[idx])
            out.backward()
            loss = float(out.data)
            if not math.isfinite(loss):
                break
            opt.step()
        after, w_after = layer_grad_norms(model, xm, ym)
        acc = _accuracy(model, xte, yte) if math.isfinite(loss) else math.nan
        results[key] = {"label": lab, "init": before, "trained": after,
                        "weight_init": w_before, "weight_trained": w_after,
                        "weight_ratio_init": w_before[0] / max(w_before[-1], 1e-300),
                        "ratio_init": before[0] / max(before[-1], 1e-300),
                        "ratio_trained": after[0] / max(after[-1], 1e-300),
                        "final_loss": loss, "test_accuracy": acc}
        if not quiet:
            print(f"{lab:30s} ‖δ¹‖/‖δ^L‖ {results[key]['ratio_init']:.2e} at init, "
                  f"{results[key]['ratio_trained']:.2e} trained; test accuracy {acc:.3f}",
                  flush=True)
    return _report(run_dir, cfg, results, time.perf_counter() - t0)


def _report(run_dir, cfg, results, seconds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    colors = {"sigmoid-naive": "tab:blue", "sigmoid-xavier": "tab:blue",
              "tanh-naive": "tab:orange", "tanh-xavier": "tab:orange", "relu-naive": "tab:green",
              "relu-he": "tab:green", "relu-bn": "tab:red", "relu-res": "tab:purple"}
    for ax, key, title in ((axes[0], "init", "at initialisation"),
                           (axes[1], "trained", f"after {cfg['steps']} SGD steps")):
        for k, r in results.items():
            ls = "--" if k.endswith("-naive") else "-"
            ax.semilogy(np.arange(1, len(r[key]) + 1), np.maximum(np.array(r[key]), 1e-30), ls,
                        color=colors[k], marker="o", ms=3, label=r["label"])
        ax.set_xlabel("layer l (1 = input side)")
        ax.set_title(f"‖δˡ‖ = ‖∂L/∂zˡ‖ {title}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("gradient norm (log scale)")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(f"{cfg['depth']} hidden layers × {cfg['width']}, MNIST-10k; naive init "
                 f"w ~ N(0, {cfg['naive_std']:g}²)")
    fig.tight_layout()
    png = os.path.join(run_dir, "layer_gradients.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    rows = [[r["label"], r["ratio_init"], r["ratio_trained"], r["weight_ratio_init"],
             r["final_loss"], r["test_accuracy"]] for r in results.values()]
    header = ["variant", "‖δ¹‖/‖δ^L‖ init", "trained", "‖∂L/∂W¹‖/‖∂L/∂W^L‖ init",
              "last loss", "test acc"]
    print_table(header, rows)
    test = {k: {kk: v for kk, v in r.items() if not isinstance(v, list)}
            for k, r in results.items()}
    best = max(results.values(), key=lambda r: -1 if math.isnan(r["test_accuracy"])
               else r["test_accuracy"], default=None)
    cards = [("variants", str(len(results)))]
    if best is not None:
        cards.append(("best test accuracy", f"{best['test_accuracy']:.3f} ({best['label']})"))
    blocks = [("figure", png, "per-layer error-signal norms on one fixed batch"),
              ("table", rows, header, "first-layer over last-layer gradient norms")]
    return finish(run_dir, cfg, "Vanishing gradients in a deep MLP", __doc__.split("\n")[0],
                  cards, blocks, test, seconds, extra={"curves": results})


register(Recipe(
    name="mlp-gradients",
    description="per-layer gradient norms of a deep MLP: sigmoid/tanh/ReLU, naive vs "
                "Xavier/He init, batch norm, residual; at init and after training",
    defaults={"depth": 10, "width": 64, "steps": 1000, "lr": 0.02, "batch_size": 64,
              "naive_std": 0.05, "measure_batch": 256, "epochs": 1,
              "variants": ",".join(v[0] for v in VARIANTS)},
    data=image_data, run=_run,
    help={"depth": "hidden layers", "width": "units per hidden layer",
          "steps": "SGD (momentum 0.9) steps per variant",
          "naive_std": "naive init: w ~ N(0, std²)",
          "measure_batch": "images in the fixed batch the gradient norms are measured on",
          "variants": "comma-separated subset of " + ",".join(v[0] for v in VARIANTS)},
))
