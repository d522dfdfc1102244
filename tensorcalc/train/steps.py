"""Steps: one update of a model family, driven by a :class:`~tensorcalc.train.loop.Loop`.

A Step is what is *specific* to a kind of training; the Loop is everything that is not. The
protocol (Chainer's Updater, in our own terms):

``step(batch) -> dict``
    One update from ``batch`` (None when the Loop has no data: the step draws its own, e.g.
    from an environment). Returns plain-float figures: ``loss`` (guarded against NaN/Inf) and
    whatever else the step measures. A figure named ``n`` is the batch's weight in the period's
    means (its number of examples) and is not logged.
``evaluate(data) -> dict``
    Figures on held-out data (eval mode, no graph); the Loop logs them as ``val_*``.
``modules``, ``optimizers``, ``schedules``, ``rngs``
    Named dicts of what the step owns. A checkpoint saves and restores exactly these, plus
    ``state_arrays()`` / ``load_state_arrays(d)`` (arrays, e.g. a replay buffer) and
    ``state_meta()`` / ``load_state_meta(d)`` (JSON-able values, e.g. running metrics).
``start_period()``, ``period_figures(running) -> dict``
    Optional: reset per-epoch state, and turn the Loop's running means of the step figures
    into the epoch's ``train_*`` figures (a streaming metric such as R² is not a mean).

Hooks. A step calls ``self.after_backward(name)`` with the gradients of module ``name`` in hand
(the place for an MPI allreduce or gradient statistics) and ``self.after_update(name)`` after
the optimiser moved it; the Loop runs the functions registered for those events
(:meth:`Loop.add_hook`, or a callback defining ``after_backward(host, step, name)``). Without
a Loop, or with no hook registered, both cost one attribute test.

Divergence. ``self.check_finite(name, value)`` raises
:class:`~tensorcalc.train.loop.TrainingDiverged` *before* the update that would spread a NaN
into the weights; the Loop adds where it happened and which checkpoint is good.
"""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import mode as _mode
from ..backend import as_rng, to_numpy
from ..tensor import Tensor
from .loop import Hooks, TrainingDiverged
from .metrics import Metric, get_metric

__all__ = ["Step", "SupervisedStep", "find_generators", "split_batch"]


def find_generators(model) -> dict:
    """Every ``numpy.random.Generator`` held as an attribute by the model or any of its
    submodules, by dotted path: ``{"layers.2.rng": Generator, ...}``.

    This is how a checkpoint finds dropout's rng (or any other) without the layer having to
    register it anywhere."""
    out: dict = {}
    mods = model.named_modules() if hasattr(model, "named_modules") else [("", model)]
    for name, m in mods:
        for k, v in vars(m).items():
            if isinstance(v, np.random.Generator):
                out[f"{name}.{k}" if name else k] = v
    return out


def split_batch(batch):
    """(x, y) from a batch: a 2-tuple/list, or a dict with x/input and y/target/label keys."""
    if isinstance(batch, dict):
        x = next((batch[k] for k in ("x", "input", "image", "inputs") if k in batch), None)
        y = next((batch[k] for k in ("y", "target", "label", "labels", "targets")
                  if k in batch), None)
        if x is None or y is None:
            raise ValueError(f"SupervisedStep: cannot find input and target in a batch with "
                             f"keys {sorted(batch)}")
        return x, y
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("SupervisedStep: a batch must be (input, target) or a dict with 'x' and "
                     "'y'")


def _tensor(x, device="cpu"):
    """Tensors of an input or target: an array, or a tuple/list/dict of them, on ``device``
    (a batch already there, e.g. from a DataLoader with ``device=``, is not copied)."""
    if isinstance(x, Tensor):
        return x if device == "cpu" else x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(_tensor(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _tensor(v, device) for k, v in x.items()}
    return Tensor(x) if device == "cpu" else Tensor(x, device=device)


def _raw(x):
    """NumPy arrays of an output or target (tuples/lists/dicts kept); an explicit copy off a
    device (metrics and augmentation run on the host)."""
    if isinstance(x, Tensor):
        return to_numpy(x.data)
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return to_numpy(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_raw(v) for v in x)
    if isinstance(x, dict):
        return {k: _raw(v) for k, v in x.items()}
    return np.asarray(x)


def _length(y) -> int:
    """Examples in a target (the first array of a tuple/dict)."""
    while isinstance(y, (tuple, list, dict)):
        y = next(iter(y.values())) if isinstance(y, dict) else y[0]
    return len(y)


def _stack(parts):
    """Concatenate per-batch outputs along the batch axis (tuples/dicts element-wise)."""
    first = parts[0]
    if isinstance(first, (tuple, list)):
        return type(first)(_stack([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([p[k] for p in parts]) for k in first}
    return np.concatenate([np.array(p) for p in parts])


class Step:
    """Base class of the Step protocol (see the module docstring). Subclasses fill the named
    dicts in ``__init__`` (after ``super().__init__()``) and define :meth:`step`."""

    #: figures the Loop checks for NaN/Inf after every step (besides ``loss``)
    guarded: tuple = ("loss",)

    def __init__(self):
        self.modules: dict = {}
        self.optimizers: dict = {}
        self.schedules: dict = {}
        self.loop = None          # the Loop driving this step (set by Loop.run)
        self.hooks: Hooks | None = None

    # ---------------------------------------------------------------- the protocol
    @property
    def device(self) -> str:
        """Where the step's first module's parameters live ('cpu' without parameters): batches
        are made Tensors there."""
        for m in self.modules.values():
            for p in m.parameters():
                return p.device
        return "cpu"

    @property
    def rngs(self) -> dict:
        """Named Generators whose state a checkpoint holds: by default every Generator held
        by a module (dropout's), ``"<module>.<path>"``; subclasses add their own."""
        out = {}
        for name, m in self.modules.items():
            out.update({f"{name}.{k}": g for k, g in find_generators(m).items()})
        return out

    def step(self, batch) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define step(batch)")

    def evaluate(self, data) -> dict:
        """Figures on held-out ``data``; the base step has none."""
        return {}

    def state_arrays(self) -> dict:
        return {}

    def load_state_arrays(self, arrays: dict) -> None:
        pass

    def state_meta(self) -> dict:
        return {}

    def load_state_meta(self, meta: dict) -> None:
        pass

    def start_period(self) -> None:
        """A new epoch (or period of a step-counted run) begins."""

    def period_figures(self, running: dict) -> dict:
        """The period's training figures from the Loop's running means of step figures."""
        return running

    def train(self, mode: bool = True) -> None:
        """Put every module in training (or eval) mode."""
        for m in self.modules.values():
            m.train(mode)

    # ---------------------------------------------------------------- helpers for subclasses
    def after_backward(self, name: str = "model") -> None:
        """Run the Loop's after-backward hooks (gradients of module ``name`` in hand)."""
        h = self.hooks
        if h is not None and h.after_backward:
            for fn in h.after_backward:
                fn(self, name)

    def after_update(self, name: str = "model") -> None:
        """Run the Loop's after-update hooks (module ``name`` was just updated)."""
        h = self.hooks
        if h is not None and h.after_update:
            for fn in h.after_update:
                fn(self, name)

    def check_finite(self, name: str, value: float) -> float:
        """``value``, or :class:`TrainingDiverged` if it is NaN/Inf — call it before the
        update that would spread it into the weights."""
        if not math.isfinite(value):
            if self.loop is not None:
                self.loop.diverged(name, value, applied=False)
            raise TrainingDiverged(
                f"training diverged: the {name} became {value}; the weights are left as they "
                "were before this step. Try a smaller learning rate or gradient clipping.")
        return value

    def lr(self, name: str | None = None) -> float:
        """The first parameter group's learning rate of optimiser ``name`` (default: the
        first)."""
        opt = self.optimizers[name] if name else next(iter(self.optimizers.values()))
        return float(opt.param_groups[0]["lr"])


class SupervisedStep(Step):
    """One step of supervised learning on a batch (x, y) of B examples:

        z = f_θ(x)                 forward (training mode); z may be a tuple of outputs
        L = ℓ(z, y)                the loss: a scalar, or a dict of named scalars whose
                                   ``"loss"`` (or, without one, their sum) is optimised
        g = ∂L/∂θ                  reverse mode; then the after-backward hooks, clipping
        θ ← update(θ, g)           the optimiser; then the after-update hooks

    Args:
        model: a Module; ``model(x)`` returns one output or a tuple of outputs.
        loss_fn: ``loss_fn(z, y)`` -> scalar Tensor or ``{name: scalar Tensor}``; every named
            loss is logged (``train_<name>``, ``val_<name>``).
        optimizer: over ``model.parameters()`` (None for evaluation only).
        metrics: Metrics or names (``"acc"``, ``"mse"``, ``"r2"``) streamed over the epoch's
            training batches and over the validation set; they see the NumPy output(s) and
            target(s).
        scheduler: its learning-rate schedule (the Loop steps it; see :class:`LRSchedule`).
        augment: ``augment(x, rng) -> x`` on each training batch's inputs (NumPy).
        rng: Generator or seed for the step's own randomness (``augment``).
        clip_grad_norm: rescale the gradients to this global L2 norm when larger.
    """

    def __init__(self, model, loss_fn, optimizer, metrics=(), scheduler=None, augment=None,
                 rng=None, clip_grad_norm: float | None = None):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.metrics: list[Metric] = [get_metric(m) for m in metrics]
        self.augment = augment
        self.rng = as_rng(rng)
        self.clip_grad_norm = clip_grad_norm
        self.modules = {"model": model}
        self.optimizers = {"optimizer": optimizer} if optimizer is not None else {}
        self.schedules = {"scheduler": scheduler} if scheduler is not None else {}
        self._train_metrics: list[Metric] = [m.clone() for m in self.metrics]

    @property
    def rngs(self) -> dict:
        out = {"step": self.rng}
        out.update(super().rngs)
        return out

    # ---------------------------------------------------------------- one update
    def _losses(self, out, y):
        """(the optimised scalar Tensor, {name: Tensor} of every named loss or None)."""
        loss = self.loss_fn(out, y)
        if isinstance(loss, dict):
            total = loss["loss"] if "loss" in loss else sum(loss.values())
            return total, loss
        return loss, None

    def step(self, batch) -> dict:
        x, y = split_batch(batch)
        if self.augment is not None:
            x = self.augment(_raw(x), self.rng)
        dev = self.device
        yt = _tensor(y, dev)
        out = self.model(_tensor(x, dev))
        total, named = self._losses(out, yt)
        value = self.check_finite("loss", float(total.item()))
        opt = self.optimizer
        opt.zero_grad()
        total.backward()
        self.after_backward("model")
        if self.clip_grad_norm:
            from ..optim import clip_grad_norm_

            clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        opt.step()
        self.after_update("model")
        if self._train_metrics:
            out_np, y_np = _raw(out), _raw(y)
            for m in self._train_metrics:
                m.update(out_np, y_np)
        figs = {"loss": value, "n": _length(y)}
        if named:
            for k, v in named.items():
                if k != "loss":
                    figs[k] = float(v.item())
        return figs

    def start_period(self) -> None:
        for m in self._train_metrics:
            m.reset()

    def period_figures(self, running: dict) -> dict:
        d = dict(running)
        for m in self._train_metrics:
            d.update(m.compute())
        return d

    def state_meta(self) -> dict:
        return {"train_metrics": [m.state_dict() for m in self._train_metrics]}

    def load_state_meta(self, meta: dict) -> None:
        for m, s in zip(self._train_metrics, meta.get("train_metrics") or [], strict=False):
            m.load_state_dict(s)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, data, return_outputs: bool = False):
        """Mean loss(es) and metrics over ``data`` (an iterable of batches; eval mode, no
        graph). With ``return_outputs`` also the stacked outputs and targets (NumPy; tuples
        for several outputs)."""
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        metrics = [m.clone() for m in self.metrics]
        sums: dict = {}
        count = 0
        outs, tgts = [], []
        try:
            with _mode.no_grad():
                dev = self.device
                for batch in data:
                    x, y = split_batch(batch)
                    out = self.model(_tensor(x, dev))
                    total, named = self._losses(out, _tensor(y, dev))
                    n = _length(y)
                    sums["loss"] = sums.get("loss", 0.0) + float(total.item()) * n
                    for k, v in (named or {}).items():
                        if k != "loss":
                            sums[k] = sums.get(k, 0.0) + float(v.item()) * n
                    count += n
                    out_np, y_np = _raw(out), _raw(y)
                    for m in metrics:
                        m.update(out_np, y_np)
                    if return_outputs:
                        outs.append(out_np)
                        tgts.append(y_np)
        finally:
            self.model.train(was_training)
        figs = {k: (v / count if count else float("nan")) for k, v in sums.items()} or \
            {"loss": float("nan")}
        for m in metrics:
            figs.update(m.compute())
        if return_outputs:
            if not outs:
                return figs, np.zeros((0,)), np.zeros((0,))
            return figs, _stack(outs), _stack(tgts)
        return figs

    def predict(self, x, batch_size: int = 1024):
        """The model's outputs for inputs ``x`` (NumPy array or Tensor), in eval mode."""
        x = _raw(x)
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        try:
            with _mode.no_grad():
                dev = self.device
                outs = [_raw(self.model(_tensor(x[i:i + batch_size], dev)))
                        for i in range(0, len(x), batch_size)]
        finally:
            self.model.train(was_training)
        return _stack(outs) if outs else np.zeros((0,))
