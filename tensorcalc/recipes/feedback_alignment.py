"""feedback-alignment — backpropagation, feedback alignment and direct feedback alignment train
the same MLP (784-256-256-10, tanh) on MNIST-10k.

The three rules share the forward pass, the initial weights, the batches (same order), the
optimiser and the epochs; they differ only in what a hidden layer receives as its error
(:mod:`tensorcalc.functional.feedback`, written with ``tc.custom_vjp``):

* **bp** — δhₗ = δaₗ₊₁ Wₗ₊₁ (the true gradient);
* **fa** — δhₗ = δaₗ₊₁ Bₗ₊₁ with a fixed random Bₗ₊₁ of Wₗ₊₁'s shape (Lillicrap et al. 2016);
* **dfa** — δhₗ = e Bₗ: the output error e = ∂L/∂z sent to every hidden layer through a fixed
  random matrix (Nøkland 2016).

Every ``angle_every`` steps the update each rule makes to each weight matrix, on a fixed probe
batch of training images, is compared with the true gradient of the same weights:
∠(ΔWₗ, ∇_{Wₗ}L) = arccos(⟨ΔWₗ, ∇L⟩ / ‖ΔWₗ‖‖∇L‖) — below 90° the rule descends; the angle
shrinking over training is the "alignment" both papers describe (W comes to resemble Bᵀ).
The report has the table of test accuracies, the validation curves and the angles per layer.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..autodiff.engine import gradients
from ..functional import cross_entropy
from ..models.feedback_mlp import RULES, FeedbackMLP
from ..serialization import save_checkpoint
from ..tensor import Tensor
from ..train import report as R
from ..train.pipeline import plural, prepare_data, run_standard, seed_streams, write_json
from . import Recipe, RecipeError, RunResult, get_recipe, register
from ._common import image_data


def _data(cfg):
    if not isinstance(cfg["angle_every"], int) or cfg["angle_every"] < 1:
        raise RecipeError(f"--angle-every must be an integer >= 1, got {cfg['angle_every']!r}")
    if cfg["rules"] and any(r not in RULES for r in cfg["rules"].split(",")):
        raise RecipeError(f"--rules must list some of {', '.join(RULES)}, got {cfg['rules']!r}")
    return image_data(cfg, flat=True)


def _model(cfg, data, rng):
    return FeedbackMLP(784, cfg["hidden"], data.num_classes, rule="bp", rng=rng,
                       feedback_rng=cfg["seed"] + 1)


def update_angles(model, x, y) -> list[float]:
    """Angle in degrees between the update ``model.rule`` makes to each weight matrix on (x, y)
    and the true gradient (backpropagation) of the same weights."""
    weights = [lin.weight for lin in model.layers]
    rule = model.rule
    grads = {}
    try:
        for r in (rule, "bp"):
            model.rule = r
            loss = cross_entropy(model(Tensor(x)), y)
            grads[r] = [g.data for g in gradients(loss, weights)]
    finally:
        model.rule = rule
    out = []
    for a, b in zip(grads[rule], grads["bp"], strict=True):
        c = float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
        out.append(math.degrees(math.acos(max(-1.0, min(1.0, c)))))
    return out


class AngleProbe:
    """A forward hook: every ``every`` training forwards, record (step, angles per layer)."""

    def __init__(self, x, y, every):
        self.x, self.y, self.every = x, y, every
        self.calls, self.rows, self._busy = 0, [], False

    def __call__(self, module, args, out):
        if self._busy or not module.training:
            return None
        if self.calls % self.every == 0:
            self._busy = True
            try:
                self.rows.append([self.calls, *update_angles(module, self.x, self.y)])
            finally:
                self._busy = False
        self.calls += 1
        return None


def run_feedback(cfg, run_dir=None, quiet=False, progress=None, **_) -> RunResult:
    recipe = get_recipe("feedback-alignment")
    rules = tuple(cfg["rules"].split(",")) if cfg["rules"] else RULES
    data = prepare_data(recipe, cfg, seed_streams(cfg["seed"])["split"])
    xp, yp = data.train[0][:256], data.train[1][:256]
    if not quiet:
        print(f"feedback-alignment: {', '.join(rules)} on {data.display} "
              f"({len(data.train[1]):,} training images), {plural(cfg['epochs'], 'epoch')} "
              "each, same initialisation and batches", flush=True)
    runs = {}
    for rule in rules:
        streams = seed_streams(cfg["seed"])  # same init, same batches for every rule
        model = _model(cfg, data, streams["init"])
        model.rule = rule
        probe = AngleProbe(xp, yp, cfg["angle_every"])
        handle = model.register_forward_hook(probe)
        res = run_standard(recipe, dict(cfg), data, model=model, streams=streams,
                           quiet=True, progress=progress)
        handle.remove()
        runs[rule] = {"test": res.test, "history": res.history, "angles": probe.rows,
                      "seconds": res.train_seconds, "model": model,
                      "steps": res.trainer.global_step}
        if not quiet:
            a = probe.rows[-1][1:-1] if rule != "bp" else []
            print(f"  {rule}: test accuracy {100 * res.test['acc']:.2f} % in "
                  f"{res.train_seconds:.0f} s" + (", final angles of the hidden layers' "
                                                 "updates " + ", ".join(f"{v:.1f}°" for v in a)
                                                 if a else ""), flush=True)
    base = runs.get("bp", {}).get("test", {}).get("acc")
    header = ["rule", "test accuracy", "Δ vs bp (points)", "test loss",
              "angle W1 first → last (°)", "angle W2 first → last (°)", "training time (s)"]
    rows = []
    for rule, r in runs.items():
        ang = np.asarray(r["angles"])
        cells = [f"{ang[0, k]:.1f} → {ang[-1, k]:.1f}" if len(ang) else "" for k in (1, 2)]
        rows.append([rule, r["test"]["acc"], None if base is None else
                     100 * (r["test"]["acc"] - base), r["test"]["loss"], *cells, r["seconds"]])
    test = {"acc": runs[rules[0]]["test"]["acc"], "loss": runs[rules[0]]["test"]["loss"]}
    for rule, r in runs.items():
        test[f"acc_{rule}"] = r["test"]["acc"]
        if len(r["angles"]) and rule != "bp":
            for k in range(1, len(r["angles"][0]) - 1):
                test[f"angle_{rule}_W{k}_first"] = r["angles"][0][k]
                test[f"angle_{rule}_W{k}_last"] = r["angles"][-1][k]
    result = RunResult(run_dir=run_dir, test=test, history=runs[rules[0]]["history"],
                       config=cfg, model=runs[rules[0]]["model"],
                       train_seconds=sum(r["seconds"] for r in runs.values()),
                       extra={"runs": {k: {"test": v["test"], "angles": v["angles"]}
                                       for k, v in runs.items()}, "table": rows})
    if run_dir is None:
        return result
    first = runs[rules[0]]
    save_checkpoint(os.path.join(run_dir, "checkpoints", "last"), first["model"],
                    step=first["steps"], config=cfg)
    write_json(os.path.join(run_dir, "metrics.json"),
               {"test": test, "rules": {k: {"test": v["test"], "angles": v["angles"],
                                            "train_seconds": v["seconds"]}
                                        for k, v in runs.items()}})
    result.report = _report(recipe, cfg, data, runs, header, rows, run_dir)
    return result


def plot_angles(runs: dict, path: str, every: int) -> str:
    fig = R.new_figure(11, 3.8)
    axes = fig.subplots(1, 2)
    colours = {"fa": R.PALETTE["val"], "dfa": R.PALETTE["test"], "bp": R.PALETTE["train"]}
    for rule, r in runs.items():
        if rule == "bp" or not r["angles"]:
            continue
        a = np.asarray(r["angles"])
        for k, ax in zip((1, 2), axes, strict=True):
            ax.plot(a[:, 0], a[:, k], color=colours.get(rule), linewidth=1.5, label=rule)
    for k, ax in zip((1, 2), axes, strict=True):
        ax.axhline(90, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"hidden layer {k}: ∠(ΔW{k}, ∇W{k} L)", fontsize=11)
        ax.set_xlabel("training step")
        ax.set_ylabel("angle (degrees)")
        ax.set_ylim(0, 100)
        R.style_axes(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False)
    return R.save_figure(fig, path)


def _report(recipe, cfg, data, runs, header, rows, run_dir) -> str:
    def path(name):
        return os.path.join(run_dir, name)

    rep = R.HTMLReport(f"feedback-alignment — {recipe.description} on {data.display}",
                       f"{data.display} · {len(data.train[1]):,} training / "
                       f"{len(data.test[1]):,} test images · seed {cfg['seed']} · run "
                       f"directory {os.path.abspath(run_dir)}")
    rep.cards([(f"test accuracy, {r}", f"{100 * v['test']['acc']:.2f} %")
               for r, v in runs.items()])
    rep.section("Three backward passes, one network")
    rep.table(rows, header, f"Same initial weights, same batches, "
              f"{plural(cfg['epochs'], 'epoch')} of {cfg['optimizer']} (lr {cfg['lr']:g}) "
              "each; test accuracy on the held-out images. Angles: between the rule's "
              "update of the weight matrix and the true gradient, on a fixed batch of 256 "
              "training images, at the first and the last measurement.")
    rep.figure(R.plot_methods_history({k: v["history"] for k, v in runs.items()},
                                      path("curves.png")),
               "Validation accuracy and training loss per epoch for each rule.")
    if any(r != "bp" for r in runs):
        rep.figure(plot_angles(runs, path("angles.png"), cfg["angle_every"]),
                   f"Angle between each rule's weight update and the true gradient, every "
                   f"{cfg['angle_every']} steps (the output layer's update is the same for "
                   "every rule: angle 0). Below 90°: the update descends the loss.")
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    return rep.save(path("report.html"))


register(Recipe(
    name="feedback-alignment",
    description="backpropagation vs feedback alignment vs direct feedback alignment "
                "(MLP 784-256-256-10, tanh)",
    defaults={"epochs": 20, "batch_size": 64, "lr": 0.05, "optimizer": "momentum",
              "momentum": 0.9, "hidden": (256, 256), "dataset": "mnist10k",
              "angle_every": 50, "rules": ""},
    data=_data, model=_model, run=run_feedback,
    help={"hidden": "hidden layer widths, e.g. 256,256",
          "angle_every": "measure the update angles every N training steps",
          "rules": "comma-separated subset of bp,fa,dfa (empty: all three)"},
    choices={"dataset": ("mnist10k", "fashion-mnist")},
))
