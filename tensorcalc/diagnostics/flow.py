"""Gradient flow and activation health during training: a Loop callback sampling every N steps.

At every ``every``-th optimisation step (steps 1, N+1, 2N+1, ...; the others only count) the
:class:`GradientFlow` callback records, per parameter (by module path):

* ‖g‖ — the L2 norm of its gradient, after backward (before clipping and the update);
* ‖θ‖ — the L2 norm of the weight;
* ‖Δθ‖/‖θ‖ — the update/weight ratio after the optimiser's step (about 10⁻³ is the healthy
  order of magnitude for SGD/Adam: much smaller and the layer barely learns, much larger and it
  thrashes);

and, per activation module (ReLU, Tanh, Sigmoid, GELU, ...; seen by forward hooks that exist
only during the sampled step's forward pass, and only in training mode):

* the mean and standard deviation of its output;
* for ReLU/ReLU6: the **dead fraction** — the fraction of units (all coordinates but the batch
  axis: a neuron, or a channel at a position) that output 0 for every example of the batch;
* for Sigmoid/Hardsigmoid: the **saturated fraction** of outputs with σ < 0.01 or σ > 0.99
  (σ′ < 0.0099: the gradient through them is cut a hundredfold); for Tanh: |tanh| > 0.99
  (tanh′ < 0.02).

A model whose activations are functions rather than modules gets the statistics of its
parametric layers' outputs (Linear, Conv2d) instead.

Warnings (one line each, printed once per kind and kept in :attr:`GradientFlow.warnings` for
the report), on the weight matrices and kernels only (parameters with two or more axes: a bias
before batch norm has an exactly zero gradient, which is not a disease):

* **vanishing** — the smallest layer gradient norm is below ``vanish`` (default 10⁻⁷: that
  layer has stopped learning), or the smallest is below ``spread`` (default 10⁻⁵) times the
  largest (the layers far from the loss learn 10⁵ times slower than the near ones);
* **exploding** — the largest layer gradient norm exceeds ``explode`` (default 10³), or a
  gradient is not finite.

Cost: the work happens on sampled steps only — one norm per parameter, a copy of the weights
for the update ratio, one or two reductions per activation output; :attr:`GradientFlow.seconds`
is the time spent in the callback, shown in the report against the training time. With a run
directory the figures also go to TensorBoard (``tb/``, tags ``diagnostics/...``), and
:func:`plot_diagnostics` draws them for the run report (:func:`report_section`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..tensor import Tensor
from ..train.callbacks import Callback

__all__ = ["GradientFlow", "plot_diagnostics", "report_section", "ACTIVATIONS"]

#: activation modules whose outputs are watched, and what is counted for each
DEAD = {"ReLU", "ReLU6"}
SATURATING = {"Sigmoid": "sigmoid", "Hardsigmoid": "sigmoid", "Tanh": "tanh"}
ACTIVATIONS = DEAD | set(SATURATING) | {"LeakyReLU", "PReLU", "ELU", "CELU", "GELU", "SELU",
                                        "SiLU", "Mish", "Softplus", "Hardtanh", "Hardswish",
                                        "Softsign"}
#: the most records kept: beyond it every other one is dropped (and ``every`` doubled)
MAX_RECORDS = 400


def _xp(a):
    from ..backend import array_module
    return array_module(a)


def _norm(a) -> float:
    if isinstance(a, Tensor):
        a = a.data
    return float(_xp(a).linalg.norm(a.ravel()))


def _act_stats(kind: str, y) -> dict:
    xp = _xp(y)
    yf = y.astype(xp.float32, copy=False) if y.dtype != xp.float64 else y
    out = {"mean": float(yf.mean()), "std": float(yf.std())}
    if kind in DEAD and y.ndim >= 1 and y.shape[0] > 0:
        alive = (y.reshape(y.shape[0], -1) > 0).any(axis=0)
        out["dead"] = 1.0 - float(alive.mean())
    elif SATURATING.get(kind) == "sigmoid":
        out["saturated"] = float(((y < 0.01) | (y > 0.99)).mean())
    elif SATURATING.get(kind) == "tanh":
        out["saturated"] = float((abs(y) > 0.99).mean())
    return out


class GradientFlow(Callback):
    """Per-layer gradient norms, weight norms, update/weight ratios and activation statistics,
    sampled every ``every`` steps (see the module docstring for the figures, the thresholds of
    ``vanish``, ``spread`` and ``explode`` and the cost). ``verbose``: print the warnings."""

    order = 40

    def __init__(self, every: int = 50, vanish: float = 1e-7, explode: float = 1e3,
                 spread: float = 1e-5, verbose: bool = True, activations: bool = True,
                 tensorboard: bool = True):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"GradientFlow: every must be an integer >= 1, got {every!r}")
        self.every, self.vanish, self.explode, self.spread = int(every), vanish, explode, spread
        self.verbose, self.activations, self.tensorboard = verbose, activations, tensorboard
        #: one dict per sampled step: "step", and path -> value maps "grad", "weight",
        #: "ratio", "act" (path -> {"mean", "std", "dead" | "saturated"})
        self.records: list[dict] = []
        self.warnings: list[str] = []
        self.seconds = 0.0            # time spent in this callback (hooks included)
        self._n = 0                   # after_backward calls (kept for old checkpoints' state)
        self._rec: dict | None = None
        self._before: dict = {}
        self._handles: list = []
        self._warned: set = set()
        self._tb = None
        self._layer_kinds: dict = {}
        self._ndim: dict = {}         # parameter path -> number of axes

    # ------------------------------------------------------------------ what to watch
    @staticmethod
    def _modules(step) -> dict:
        mods = dict(getattr(step, "modules", None) or {})
        if not mods and getattr(step, "model", None) is not None:
            mods = {"model": step.model}
        return mods

    def _named_params(self, step, name=None):
        mods = self._modules(step)
        many = len(mods) > 1
        for mname, m in mods.items():
            if name is not None and many and mname != name:
                continue
            for path, p in m.named_parameters():
                if getattr(p, "requires_grad", True):
                    yield (f"{mname}.{path}" if many else path), p

    def _watched(self, step):
        """(path, module, kind) of the modules whose outputs are recorded."""
        mods = self._modules(step)
        many = len(mods) > 1
        acts, layers = [], []
        for mname, m in mods.items():
            for path, sub in m.named_modules():
                kind = type(sub).__name__
                full = (f"{mname}.{path}" if many else path) or mname
                if kind in ACTIVATIONS:
                    acts.append((full, sub, kind))
                elif sub.__dict__.get("_parameters") and not sub.__dict__.get("_modules") \
                        and kind in ("Linear", "Conv1d", "Conv2d", "Conv3d"):
                    layers.append((full, sub, kind))
        return acts or layers

    def _sampled(self, k: int) -> bool:
        """Whether the step after ``k`` taken steps is sampled."""
        return k % self.every == 0

    # ------------------------------------------------------------------ hooks
    def _install(self, host):
        if not self.activations or self._handles:
            return
        step = getattr(host, "step", host)
        for path, m, kind in self._watched(step):
            self._handles.append(m.register_forward_hook(self._hook(path, kind)))

    def _hook(self, path, kind):
        def fn(module, args, y):
            if not module.training or self._rec is None:
                return None
            t0 = time.perf_counter()
            a = getattr(y, "data", None) if isinstance(y, Tensor) else None
            if a is not None and a.dtype.kind == "f":
                self._rec["act"][path] = _act_stats(kind, a)
                self._layer_kinds[path] = kind
            self.seconds += time.perf_counter() - t0
            return None
        return fn

    def _remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    # ------------------------------------------------------------------ callback
    def on_fit_start(self, trainer):
        t0 = time.perf_counter()
        self._out = getattr(trainer, "out_dir", None)
        self._resumed_at = int(getattr(trainer, "global_step", 0))
        self._begin(trainer)
        self.seconds += time.perf_counter() - t0

    def _writer(self):
        """The TensorBoard writer, opened at the first record (never an empty events file)."""
        if self._tb is None and self.tensorboard and getattr(self, "_out", None):
            import os

            from tensorboardX import SummaryWriter
            gs = getattr(self, "_resumed_at", 0)
            self._tb = SummaryWriter(logdir=os.path.join(self._out, "tb"), flush_secs=30,
                                     filename_suffix=".diagnostics",
                                     purge_step=gs if gs else None)
        return self._tb

    def _begin(self, trainer):
        """Open a record (and hooks) when the coming step is a sampled one."""
        k = int(getattr(trainer, "global_step", 0))
        if self._sampled(k):
            self._rec = {"step": k + 1, "grad": {}, "weight": {}, "ratio": {}, "act": {}}
            self._install(trainer)
        else:
            self._rec = None

    def after_backward(self, trainer, step, name):
        self._n += 1
        rec = self._rec
        if rec is None:
            return
        t0 = time.perf_counter()
        self._remove()  # the forward passes of this step are over
        for path, p in self._named_params(step, name):
            a = p.data
            self._ndim[path] = a.ndim
            rec["weight"][path] = _norm(a)
            if p.grad is not None:
                rec["grad"][path] = _norm(p.grad)
            self._before[path] = a.copy()
        self.seconds += time.perf_counter() - t0

    def after_update(self, trainer, step, name):
        if self._rec is None or not self._before:
            return
        t0 = time.perf_counter()
        rec = self._rec
        for path, p in self._named_params(step, name):
            w0 = self._before.pop(path, None)
            if w0 is not None:
                rec["ratio"][path] = _norm(p.data - w0) / max(rec["weight"][path], 1e-30)
        self.seconds += time.perf_counter() - t0

    def on_batch_end(self, trainer, logs):
        t0 = time.perf_counter()
        rec = self._rec
        if rec is not None:
            self._remove()
            self._before = {}
            if rec["grad"] or rec["act"]:
                self.records.append(rec)
                self._check(rec)
                self._log(rec)
                if len(self.records) > MAX_RECORDS:  # long runs: keep every other sample
                    self.records = self.records[::2]
                    self.every *= 2
        self._begin(trainer)
        self.seconds += time.perf_counter() - t0

    def on_fit_end(self, trainer):
        self._remove()
        self._rec = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    # ------------------------------------------------------------------ warnings, logs
    def _check(self, rec):
        g = {k: v for k, v in rec["grad"].items() if self._is_matrix(k)}
        if not g:
            return
        lo_k, hi_k = min(g, key=g.get), max(g, key=g.get)
        lo, hi = g[lo_k], g[hi_k]
        s = rec["step"]
        if not all(math.isfinite(v) for v in g.values()):
            bad = next(k for k, v in g.items() if not math.isfinite(v))
            self._warn("explode", f"gradient flow: non-finite gradient at step {s} in {bad}")
        elif hi > self.explode:
            self._warn("explode", f"gradient flow: exploding gradients at step {s}: ‖g‖ of "
                                  f"{hi_k} is {hi:.1e} > {self.explode:g}")
        if lo < self.vanish:
            self._warn("vanish", f"gradient flow: vanishing gradients at step {s}: ‖g‖ of "
                                 f"{lo_k} is {lo:.1e} < {self.vanish:g}")
        elif hi > 0 and lo < self.spread * hi:
            self._warn("vanish", f"gradient flow: vanishing gradients at step {s}: ‖g‖ of "
                                 f"{lo_k} is {lo:.1e}, {hi / max(lo, 1e-300):.0e} times smaller "
                                 f"than {hi_k}'s {hi:.1e}")

    def _is_matrix(self, path) -> bool:
        return self._ndim.get(path, 2) >= 2

    def _warn(self, kind, msg):
        if kind in self._warned:
            return
        self._warned.add(kind)
        self.warnings.append(msg)
        if self.verbose:
            print(msg, flush=True)

    def _log(self, rec):
        tb = self._writer()
        if tb is None:
            return
        s = rec["step"]
        for key, tag in (("grad", "grad_norm"), ("ratio", "update_ratio")):
            for path, v in rec[key].items():
                if math.isfinite(v):
                    tb.add_scalar(f"diagnostics/{tag}/{path}", v, s)
        for path, st in rec["act"].items():
            for k, v in st.items():
                tb.add_scalar(f"diagnostics/act_{k}/{path}", v, s)
        tb.flush()  # sampled steps only: a crash leaves whole records, never an empty file

    # ------------------------------------------------------------------ resume
    def state_dict(self):
        return {"records": self.records, "warned": sorted(self._warned),
                "warnings": self.warnings, "every": self.every, "n": self._n,
                "seconds": self.seconds, "ndims": self._ndim}

    def load_state_dict(self, state):
        self.records = list(state.get("records", []))
        self._warned = set(state.get("warned", []))
        self.warnings = list(state.get("warnings", []))
        self.every = int(state.get("every", self.every))
        self._n = int(state.get("n", 0))
        self.seconds = float(state.get("seconds", 0.0))
        self._ndim.update(state.get("ndims", {}))

    # ------------------------------------------------------------------ summaries
    def layers(self) -> list[str]:
        """The weight matrices / kernels (parameters with two or more axes) in model order."""
        seen = []
        for r in self.records:
            for k in r["grad"]:
                if self._is_matrix(k) and k not in seen:
                    seen.append(k)
        return seen

    def series(self, key: str, path: str, stat: str | None = None):
        """(steps, values) of one figure: ``key`` in grad/weight/ratio, or "act" with a
        ``stat`` (mean/std/dead/saturated)."""
        xs, ys = [], []
        for r in self.records:
            v = r[key].get(path)
            if stat is not None:
                v = None if v is None else v.get(stat)
            if v is not None:
                xs.append(r["step"])
                ys.append(v)
        return xs, ys


# ------------------------------------------------------------------------------ figures
def _colours(n):
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def plot_diagnostics(flow: GradientFlow, path: str, title: str = "") -> str:
    """Six panels: per-layer gradient norm and update/weight ratio over training, gradient norm
    by depth (first vs last sample), activation mean and std over training, and the dead-ReLU /
    saturated fractions. Layers are coloured by depth (dark: input side)."""
    from ..train.report import PALETTE, new_figure, save_figure, style_axes

    layers = flow.layers()
    acts = []
    for r in flow.records:
        for k in r["act"]:
            if k not in acts:
                acts.append(k)
    fig = new_figure(13.5, 7.4)
    ax = fig.subplots(2, 3).ravel()
    cl, ca = _colours(len(layers)), _colours(len(acts))
    legend = len(layers) <= 10

    def lines(a, key, names, cols, stat=None, logy=True):
        any_ = False
        for p, c in zip(names, cols, strict=True):
            x, y = flow.series(key, p, stat)
            if x:
                a.plot(x, y, color=c, linewidth=1.5, marker="o", markersize=2.5,
                       label=p if legend else None)
                any_ = True
        if logy and any_:
            a.set_yscale("log")
        a.set_xlabel("step")
        return any_

    lines(ax[0], "grad", layers, cl)
    ax[0].set_title("gradient norm ‖∂L/∂W‖ per layer", fontsize=10.5)
    lines(ax[1], "ratio", layers, cl)
    ax[1].axhline(1e-3, color=PALETTE["grey"], linestyle="--", linewidth=1)
    ax[1].set_title("update / weight ‖ΔW‖/‖W‖ (dashed: 10⁻³)", fontsize=10.5)
    if flow.records and layers:
        first, last = flow.records[0], flow.records[-1]
        d = np.arange(1, len(layers) + 1)
        for r, lab, c in ((first, f"step {first['step']}", PALETTE["val"]),
                          (last, f"step {last['step']}", PALETTE["train"])):
            ax[2].plot(d, [r["grad"].get(p, np.nan) for p in layers], marker="o", color=c,
                       label=lab)
        ax[2].set_yscale("log")
        ax[2].set_xticks(d)
        ax[2].legend(frameon=False, fontsize=8)
    ax[2].set_xlabel("layer (1 = nearest the input)")
    ax[2].set_title("gradient norm by depth", fontsize=10.5)
    lines(ax[3], "act", acts, ca, "mean", logy=False)
    ax[3].set_title("activation mean", fontsize=10.5)
    lines(ax[4], "act", acts, ca, "std", logy=False)
    ax[4].set_title("activation std", fontsize=10.5)
    have = False
    for p, c in zip(acts, ca, strict=True):
        for stat, style in (("dead", "-"), ("saturated", "--")):
            x, y = flow.series("act", p, stat)
            if x:
                ax[5].plot(x, y, color=c, linestyle=style, marker="o", markersize=2.5,
                           label=f"{p} {stat}" if legend else None)
                have = True
    ax[5].set_ylim(-0.02, 1.02)
    ax[5].set_xlabel("step")
    ax[5].set_title("dead ReLU (—) / saturated (--) fraction", fontsize=10.5)
    if not have:
        ax[5].text(0.5, 0.5, "no ReLU / sigmoid / tanh modules", ha="center", va="center",
                   transform=ax[5].transAxes, color=PALETTE["grey"])
    for a in ax:
        style_axes(a)
    for a in (ax[0], ax[3], ax[5]):
        if a.get_legend_handles_labels()[0]:
            a.legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


def find(trainer) -> GradientFlow | None:
    """The GradientFlow callback of a trainer or loop, if any."""
    for c in getattr(trainer, "callbacks", ()) or ():
        if isinstance(c, GradientFlow):
            return c
    return None


def report_section(rep, ctx) -> None:
    """The "Training diagnostics" section of a run report (nothing when the run had none)."""
    flow = find(ctx.trainer)
    if flow is None or not flow.records:
        return
    rep.section("Training diagnostics")
    png = plot_diagnostics(flow, ctx.path("diagnostics.png"))
    total = float(getattr(ctx.trainer, "train_seconds", 0.0) or 0.0)
    cost = (f" Recording them took {flow.seconds:.2f} s of the {total:.1f} s of training "
            f"({100 * flow.seconds / total:.1f} %)." if total > 0 else "")
    rep.figure(png, f"Sampled every {flow.every} steps ({len(flow.records)} samples). Top: "
                    "per-layer gradient norm, update/weight ratio (about 10⁻³ is healthy), "
                    "gradient norm against depth at the first and last sample (a slope down "
                    "towards layer 1 is vanishing gradient). Bottom: mean and standard "
                    "deviation of each activation layer's output, and the fraction of dead "
                    "ReLU units (0 for every example of the batch) and of saturated "
                    "sigmoid/tanh outputs." + cost)
    last = flow.records[-1]
    rows = [[p, last["grad"].get(p), last["weight"].get(p), last["ratio"].get(p)]
            for p in last["grad"]]
    rep.table(rows, ["parameter", "‖g‖", "‖θ‖", "‖Δθ‖/‖θ‖"],
              f"At step {last['step']}.")
    if last["act"]:
        arow = [[p, flow._layer_kinds.get(p, ""), s["mean"], s["std"],
                 s.get("dead", s.get("saturated", ""))] for p, s in last["act"].items()]
        rep.table(arow, ["layer", "kind", "mean", "std", "dead / saturated"],
                  f"Activation outputs at step {last['step']}.")
    rep.text("Warnings: " + ("; ".join(flow.warnings) if flow.warnings else
                             "none (vanishing: a layer's ‖g‖ < "
                             f"{flow.vanish:g} or < {flow.spread:g} × the largest; exploding: "
                             f"‖g‖ > {flow.explode:g} or not finite)."))
