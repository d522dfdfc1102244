"""vanishing-gradients — why plain RNNs forget and how gates fix it, measured.

Backpropagation through time multiplies Jacobians: for a loss L on the last state h_T,

    ∂L/∂h_t = ∂L/∂h_T · ∏_{s=t+1..T} ∂h_s/∂h_{s−1},    ∂h_s/∂h_{s−1} = diag(φ′) W_hh  (Elman),

so ‖∂L/∂h_t‖ shrinks or grows roughly geometrically in the distance T − t, at a rate set by the
singular values of W_hh and the slopes φ′ ≤ 1 (tanh). The LSTM's cell has the additive path
c_s = f ⊙ c_{s−1} + i ⊙ g with ∂c_s/∂c_{s−1} = diag(f): with forget gates near 1 the product
does not decay; the GRU's h_s = (1 − z) ⊙ n + z ⊙ h_{s−1} has the same kind of path.

The study:

1. For RNN (tanh), RNN (relu), LSTM and GRU (hidden ``hidden``), the norm ‖∂L/∂h_t‖ over a
   batch of random sequences of length ``T`` with L the cross-entropy of a linear read-out of
   h_T, against T − t — at initialisation and after training on a memory task (the label is
   the sign of the first input; later inputs are noise; sequences of ``train_T`` steps).
2. Exploding gradients: a relu RNN whose W_hh starts as ``explode_gain`` × an orthogonal
   matrix, trained with plain SGD with and without clipping the global gradient norm to
   ``clip``: the gradient norm per step and the loss.

The figure has one panel each; the table gives ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ and the task accuracy.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from .. import functional as F
from .. import nn
from ..autodiff import gradients
from ..nn import init
from ..optim import SGD, Adam
from ..optim.clip import clip_grad_norm_
from ..tensor import Tensor
from . import Recipe, RunResult, register
from ._common import write_markdown_report

KINDS = (("rnn-tanh", "RNN (tanh)"), ("rnn-relu", "RNN (relu)"), ("lstm", "LSTM"),
         ("gru", "GRU"))


def _layer(kind, n_in, hidden, rng):
    if kind.startswith("rnn"):
        return nn.RNN(n_in, hidden, nonlinearity=kind[4:], rng=rng, dtype="float64")
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](n_in, hidden, rng=rng, dtype="float64")


def _cell_of(layer, kind):
    n_in, hidden = layer.input_size, layer.hidden_size
    if kind.startswith("rnn"):
        cell = nn.RNNCell(n_in, hidden, nonlinearity=kind[4:], dtype="float64")
    else:
        cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](n_in, hidden, dtype="float64")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).data[...] = getattr(layer, name + "_l0").data
    return cell


def _task(rng, n, T, n_in):
    """x (T, n, n_in) noise; the label is the sign of x[0, :, 0], which is made large."""
    x = rng.normal(size=(T, n, n_in))
    y = (rng.random(n) < 0.5).astype(np.int64)
    x[0, :, 0] = np.where(y == 1, 3.0, -3.0)
    return x, y


def grad_norms(layer, head, kind, x, y):
    """‖∂L/∂h_t‖ for t = 1..T, unrolled with the cell so every h_t is a node of the graph."""
    cell = _cell_of(layer, kind)
    T, n, _ = x.shape
    h = np.zeros((n, layer.hidden_size))
    c = np.zeros((n, layer.hidden_size))
    hs = []
    for t in range(T):
        if kind == "lstm":
            h, c = cell(x[t], (h, c))
        else:
            h = cell(x[t], h)
        hs.append(h)
    loss = F.cross_entropy(head(hs[-1]), y)
    gs = gradients(loss, hs)
    return np.array([float(np.sqrt((np.asarray(g.data if isinstance(g, Tensor) else g) ** 2)
                                   .sum())) for g in gs])


def _train(layer, head, x, y, steps, lr, clip, opt="adam", batch=32, rng=None):
    params = list(layer.parameters()) + list(head.parameters())
    o = Adam(params, lr=lr) if opt == "adam" else SGD(params, lr=lr)
    norms, losses = [], []
    n = x.shape[1]
    for _ in range(steps):
        idx = rng.integers(0, n, batch)
        out, _ = layer(x[:, idx])
        loss = F.cross_entropy(head(out[-1]), y[idx])
        o.zero_grad()
        loss.backward()
        gn = clip_grad_norm_(params, clip if clip > 0 else math.inf)
        lv = float(loss.data)
        norms.append(float(gn))
        losses.append(lv)
        if not (math.isfinite(lv) and math.isfinite(gn)):
            break
        o.step()
    return norms, losses


def _accuracy(layer, head, x, y):
    out, _ = layer(x)
    return float((np.asarray(head(out[-1]).data).argmax(-1) == y).mean())


def _run(cfg, run_dir, quiet=False, progress=None):
    rng = np.random.default_rng(cfg["seed"])
    H, T, n_in = cfg["hidden"], cfg["T"], 8
    xm, ym = _task(rng, 64, T, n_in)
    xt, yt = _task(rng, 2048, cfg["train_T"], n_in)
    xv, yv = _task(rng, 512, cfg["train_T"], n_in)
    results = {}
    for kind, label in KINDS:
        layer = _layer(kind, n_in, H, rng)
        head = nn.Linear(H, 2, rng=rng, dtype="float64")
        before = grad_norms(layer, head, kind, xm, ym)
        _, losses = _train(layer, head, xt, yt, cfg["train_steps"], cfg["lr"], cfg["clip"],
                           rng=rng)
        after = grad_norms(layer, head, kind, xm, ym)
        acc = _accuracy(layer, head, xv, yv)
        results[kind] = {"label": label, "init": before.tolist(), "trained": after.tolist(),
                         "ratio_init": float(before[0] / before[-1]),
                         "ratio_trained": float(after[0] / after[-1]),
                         "task_accuracy": acc, "final_train_loss": losses[-1]}
        if not quiet:
            print(f"{label:11s} ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = {before[0] / before[-1]:.2e} at init, "
                  f"{after[0] / after[-1]:.2e} trained; memory-task accuracy {acc:.3f}",
                  flush=True)
    explode = {}
    for name, clip in (("no clipping", 0.0), (f"clipped at {cfg['clip']:g}", cfg["clip"])):
        r = np.random.default_rng(cfg["seed"] + 7)
        layer = _layer("rnn-relu", n_in, H, r)
        init.orthogonal_(layer.weight_hh_l0, gain=cfg["explode_gain"], rng=r)
        head = nn.Linear(H, 2, rng=r, dtype="float64")
        with np.errstate(over="ignore", invalid="ignore"):  # the unclipped run overflows
            norms, losses = _train(layer, head, xt, yt, cfg["explode_steps"],
                                   cfg["explode_lr"], clip, opt="sgd", rng=r)
        explode[name] = {"grad_norm": norms, "loss": losses}
        if not quiet:
            fin = [v for v in losses if math.isfinite(v)]
            print(f"exploding, {name}: max gradient norm {max(norms):.3g}, "
                  f"{len(losses)} steps, last finite loss {fin[-1] if fin else float('nan'):.3g}"
                  + ("" if math.isfinite(losses[-1]) else " (then non-finite: stopped)"),
                  flush=True)
    test = {k: {kk: vv for kk, vv in v.items() if kk not in ("init", "trained")}
            for k, v in results.items()}
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"test": test, "curves": results, "exploding": explode}, f)
    report = _report(run_dir, cfg, results, explode)
    return RunResult(run_dir=run_dir, test=test, report=report, config=cfg)


def _report(run_dir, cfg, results, explode):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in ((axes[0], "init", "at initialisation"),
                           (axes[1], "trained", "after training")):
        for r in results.values():
            g = np.array(r[key])
            ax.semilogy(np.arange(len(g))[::-1], g, label=r["label"])
        ax.set_xlabel("distance T − t")
        ax.set_ylabel("‖∂L/∂h_t‖")
        ax.set_title(f"gradient reaching h_t, {title} (T = {cfg['T']})")
        ax.legend()
    ax = axes[2]
    for name, r in explode.items():
        ax.semilogy(np.maximum(np.array(r["grad_norm"]), 1e-12), label=name)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("global gradient norm (before clipping)")
    ax.set_title(f"relu RNN, W_hh = {cfg['explode_gain']:g}·orthogonal")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "vanishing.png"), dpi=100)
    plt.close(fig)
    lines = ["# Vanishing and exploding gradients", "", "![gradients](vanishing.png)", "",
             "| cell | ‖∂L/∂h₁‖ / ‖∂L/∂h_T‖ at init | after training | memory-task accuracy "
             f"(T = {cfg['train_T']}) |", "|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r['label']} | {r['ratio_init']:.2e} | {r['ratio_trained']:.2e} | "
                     f"{r['task_accuracy']:.3f} |")
    lines += ["", "Exploding gradients (relu RNN, SGD):", ""]
    for name, r in explode.items():
        fin = [v for v in r["loss"] if math.isfinite(v)]
        lines.append(f"- {name}: {len(r['loss'])} steps, largest gradient norm "
                     f"{max(r['grad_norm']):.3g}, last finite loss "
                     f"{fin[-1] if fin else float('nan'):.3g}"
                     + ("" if math.isfinite(r["loss"][-1]) else "; then the loss became "
                        "non-finite and training stopped"))
    return write_markdown_report(run_dir, lines)


def _data(cfg):
    from . import Data

    x = np.zeros((4, 1), np.float32)
    y = np.zeros(4, np.int64)
    return Data(name="synthetic", task="multiclass", train=(x, y), test=(x, y), num_classes=2,
                title="synthetic sequences")


register(Recipe(
    name="vanishing-gradients",
    description="‖∂L/∂h_t‖ against T − t for RNN (tanh, relu), LSTM, GRU; exploding gradients",
    defaults={"hidden": 64, "T": 100, "train_T": 40, "train_steps": 300, "lr": 3e-3,
              "clip": 1.0, "explode_gain": 1.5, "explode_steps": 60, "explode_lr": 0.05,
              "epochs": 1},
    data=_data, run=_run,
    help={"T": "sequence length for the gradient measurement",
          "train_T": "sequence length of the memory task", "train_steps": "Adam steps per cell",
          "clip": "global gradient norm limit", "explode_gain": "W_hh = gain × orthogonal",
          "explode_steps": "SGD steps of the exploding run", "explode_lr": "its learning rate"},
))
