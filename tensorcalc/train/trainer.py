"""The Trainer: the loop of mini-batch gradient descent, with everything a real run needs.

One optimisation step on a batch (x, y) of B examples:

    z = f_θ(x)                     forward (the model, in training mode)
    L = ℓ(z, y)                    the loss, a mean over the batch
    g = ∂L/∂θ                      reverse mode (``L.backward()``)
    θ ← update(θ, g)               the optimiser (SGD, Adam, ...) — after optional clipping

An epoch is one pass over the training loader; after it the model is evaluated on the
validation loader (``no_grad``, eval mode) and the epoch's figures become one row of
``trainer.history``.

Determinism: everything random draws from explicit numpy Generators — the model's initialiser
and dropout (given to the model by whoever built it), the loader's shuffling (its own rng), and
``trainer.rng`` (data augmentation) — so the same seeds give bit-identical losses and weights.

Resume: :meth:`save_checkpoint` stores the model, the optimiser, the schedule, the loader's
position within its epoch, the state of *every* Generator involved, the running sums of the
epoch's figures, the history and the callbacks' state. :meth:`fit` with ``resume_from`` restores
all of it and replays the rest of the run exactly: a run killed with SIGKILL mid-epoch and
resumed ends bit-identical to one never interrupted.

Safety: a NaN/Inf loss stops the run with :class:`TrainingDiverged` *before* the step that would
spread it into the weights, leaving the last good checkpoint untouched; Ctrl-C (SIGINT) finishes
the current step, saves a checkpoint and raises :class:`TrainingInterrupted` naming it.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import numpy as np

from ..autodiff import mode as _mode
from ..backend import as_rng
from ..tensor import Tensor
from .callbacks import Callback, Checkpoint, LRSchedule
from .logging import CSVLog, ProgressBar, TensorBoardLog, format_metrics
from .metrics import Metric, get_metric

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "find_generators"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; the message says where and which checkpoint is good."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Trainer.fit`; ``checkpoint`` is the path saved (or None)."""

    def __init__(self, message: str, checkpoint: str | None):
        super().__init__(message)
        self.checkpoint = checkpoint


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


def _split_batch(batch):
    """(x, y) from a batch: a 2-tuple/list, or a dict with x/input and y/target/label keys."""
    if isinstance(batch, dict):
        x = next((batch[k] for k in ("x", "input", "image", "inputs") if k in batch), None)
        y = next((batch[k] for k in ("y", "target", "label", "labels", "targets")
                  if k in batch), None)
        if x is None or y is None:
            raise ValueError(f"Trainer: cannot find input and target in a batch with keys "
                             f"{sorted(batch)}")
        return x, y
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError("Trainer: a batch must be (input, target) or a dict with 'x' and 'y'")


def _as_input(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _raw(x) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": str(v.dtype)}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _from_jsonable(v):
    if isinstance(v, dict):
        if "__ndarray__" in v:
            return np.array(v["__ndarray__"], dtype=v["dtype"])
        return {k: _from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_jsonable(x) for x in v]
    return v


class Trainer:
    """Fit a model with mini-batch gradient descent (see the module docstring).

    Args:
        model: a :class:`tensorcalc.nn.Module` mapping an input batch to outputs (logits or
            predictions).
        loss_fn: ``loss_fn(output, target) -> scalar Tensor`` (e.g. ``F.cross_entropy``).
        optimizer: a :class:`tensorcalc.optim.Optimizer` over ``model.parameters()``.
        metrics: Metrics (or names: ``"acc"``, ``"mse"``, ``"r2"``) computed on training batches
            as they go and on the validation set; a fresh copy is used for each.
        callbacks: extra :class:`Callback` objects.
        scheduler: a learning-rate schedule; stepped per epoch (per step for ``OneCycleLR``).
        rng: Generator or seed for the trainer's own randomness (``augment``).
        out_dir: where logs and checkpoints go (``history.csv``, ``tb/``, ``checkpoints/``);
            None for an in-memory run (no files, no checkpoints).
        checkpoint_every: save ``checkpoints/last`` every this many steps (default: about four
            times per epoch); 0 saves only at epoch ends.
        monitor: the figure that decides the ``best`` checkpoint (default ``val_loss``).
        augment: ``augment(x, rng) -> x`` applied to each training batch's inputs (NumPy).
        clip_grad_norm: rescale gradients to this global L2 norm when larger.
        quiet: no progress bar and no per-epoch lines.
        progress: force the progress bar on (True) / off (False); default: on a terminal.
        config: hyperparameters stored in every checkpoint (and shown in reports).
    """

    def __init__(self, model, loss_fn, optimizer, metrics=(), callbacks=(), scheduler=None,
                 rng=None, out_dir: str | None = None, *, checkpoint_every: int | None = None,
                 monitor: str = "val_loss", augment=None, clip_grad_norm: float | None = None,
                 quiet: bool = False, progress: bool | None = None, config: dict | None = None,
                 tensorboard: bool = True):
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.metrics: list[Metric] = [get_metric(m) for m in metrics]
        self.scheduler = scheduler
        self.rng = as_rng(rng)
        self.out_dir = out_dir
        self.checkpoint_every = checkpoint_every
        self.monitor = monitor
        self.augment = augment
        self.clip_grad_norm = clip_grad_norm
        self.quiet = quiet
        self.progress = progress
        self.config = dict(config or {})
        self.tensorboard = tensorboard and out_dir is not None
        self.callbacks: list[Callback] = list(callbacks)
        if scheduler is not None and not any(isinstance(c, LRSchedule) for c in self.callbacks):
            self.callbacks.append(LRSchedule(scheduler, monitor=monitor))
        self.checkpointer: Checkpoint | None = next(
            (c for c in self.callbacks if isinstance(c, Checkpoint)), None)
        self.history: list[dict] = []
        self.epoch = 0              # epochs completed
        self.global_step = 0        # optimisation steps taken
        self.step_in_epoch = 0      # steps taken in the current epoch
        self.steps_per_epoch = 0
        self.train_seconds = 0.0    # time spent in fit (across resumes)
        self.stop_training = False
        self.stop_reason = ""
        self._train_loader = None
        self._running = {"loss_sum": 0.0, "count": 0}
        self._train_metrics: list[Metric] = []
        self._interrupted = False
        self._last_good_checkpoint: str | None = None
        self._epoch_clock: float | None = None  # perf_counter() when this epoch's timing began

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_dir(self) -> str | None:
        return None if self.out_dir is None else os.path.join(self.out_dir, "checkpoints")

    # ------------------------------------------------------------------ one step
    def _forward_loss(self, x, y):
        out = self.model(_as_input(x))
        loss = self.loss_fn(out, y if isinstance(y, Tensor) else Tensor(y))
        return out, loss

    def _train_step(self, batch):
        x, y = _split_batch(batch)
        if self.augment is not None:
            x = self.augment(_raw(x), self.rng)
        out, loss = self._forward_loss(x, y)
        value = float(loss.item())
        if not math.isfinite(value):
            where = (f"epoch {self.epoch + 1}, step {self.step_in_epoch + 1} of "
                     f"{self.steps_per_epoch} (global step {self.global_step + 1})")
            lr = self.optimizer.param_groups[0]["lr"]
            good = (f"the last good checkpoint is {self._last_good_checkpoint}"
                    if self._last_good_checkpoint else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"training diverged: the loss became {value} at {where} with lr={lr:g}; "
                f"the weights are left as they were before this step and {good}. "
                "Try a smaller learning rate (--lr) or gradient clipping.")
        self.optimizer.zero_grad()
        loss.backward()
        if self.clip_grad_norm:
            from ..optim import clip_grad_norm_

            clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        n = len(_raw(y))
        self._running["loss_sum"] += value * n
        self._running["count"] += n
        out_np, y_np = out.data, _raw(y)
        for m in self._train_metrics:
            m.update(out_np, y_np)
        return value

    def _running_figures(self) -> dict:
        c = self._running["count"]
        d = {"loss": self._running["loss_sum"] / c if c else float("nan")}
        for m in self._train_metrics:
            d.update(m.compute())
        return d

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader, val_loader=None, epochs: int = 1,
            resume_from: str | None = None) -> list[dict]:
        """Train for ``epochs`` epochs in total (a resumed run continues to the same total);
        returns the history (one dict per epoch)."""
        if int(epochs) < 1:
            raise ValueError(f"Trainer.fit: epochs must be >= 1, got {epochs}")
        self._check_rngs(train_loader)
        self._train_loader = train_loader
        self.steps_per_epoch = len(train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError("Trainer.fit: the training loader yields no batches (fewer "
                             "examples than one batch with drop_last?)")
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)
            if self.checkpointer is None:
                every = self.checkpoint_every
                if every is None:
                    every = max(1, self.steps_per_epoch // 4)
                self.checkpointer = Checkpoint(self.checkpoint_dir, every_n_steps=every or None,
                                               monitor=self.monitor)
                self.callbacks.append(self.checkpointer)
        self.callbacks.sort(key=lambda c: c.order)
        self._train_metrics = [m.clone() for m in self.metrics]
        if resume_from is not None:
            self.load_checkpoint(resume_from, train_loader)
        self.stop_training = False
        csv_log = CSVLog(os.path.join(self.out_dir, "history.csv")) if self.out_dir else None
        tb = None
        if self.tensorboard:
            tb = TensorBoardLog(os.path.join(self.out_dir, "tb"),
                                purge_step=self.global_step if resume_from else None)
        bar = ProgressBar(enabled=self.progress, quiet=self.quiet)
        for c in self.callbacks:
            c.on_fit_start(self)
        old_handler = self._install_sigint()
        try:
            while self.epoch < epochs and not self.stop_training:
                self._run_epoch(train_loader, val_loader, epochs, bar, tb, csv_log)
        finally:
            bar.close()
            self._restore_sigint(old_handler)
            if tb is not None:
                tb.close()
        for c in self.callbacks:
            c.on_fit_end(self)
        if self.stop_reason and not self.quiet:
            print(self.stop_reason)
        return self.history

    def _elapsed(self) -> float:
        """Seconds spent training so far, including the running epoch (kept across resumes)."""
        if self._epoch_clock is None:
            return self.train_seconds
        return self.train_seconds + (time.perf_counter() - self._epoch_clock)

    def _stop_clock(self):
        self.train_seconds = self._elapsed()
        self._epoch_clock = None

    def _run_epoch(self, train_loader, val_loader, epochs, bar, tb, csv_log):
        epoch = self.epoch + 1
        self._epoch_clock = time.perf_counter()
        if self.step_in_epoch == 0:
            self._running = {"loss_sum": 0.0, "count": 0}
            for m in self._train_metrics:
                m.reset()
        for c in self.callbacks:
            c.on_epoch_start(self, epoch)
        self.model.train()
        bar.start(self.steps_per_epoch, f"epoch {epoch:>{len(str(epochs))}}/{epochs}",
                  initial=self.step_in_epoch)
        try:
            for batch in train_loader:
                loss = self._train_step(batch)
                self.global_step += 1
                self.step_in_epoch += 1
                logs = {"loss": loss, "step": self.global_step}
                for c in self.callbacks:
                    c.on_batch_end(self, logs)
                if tb is not None and (self.global_step % 10 == 0 or self.step_in_epoch == 1):
                    tb.scalars({"loss": loss, "lr": self.lr}, self.global_step, "step/")
                if bar.enabled:
                    bar.update(1, **self._bar_figures())
                if self._interrupted:
                    self._on_interrupt()
        except BaseException:
            self._stop_clock()
            raise
        train_figs = self._running_figures()
        row = {"epoch": epoch, "step": self.global_step, "lr": self.lr}
        row.update({f"train_{k}": v for k, v in train_figs.items()})
        if val_loader is not None:
            row.update({f"val_{k}": v for k, v in self.evaluate(val_loader).items()})
        self._stop_clock()
        row["seconds"] = round(self.train_seconds, 3)
        self.epoch = epoch
        self.step_in_epoch = 0
        self.history.append(row)
        for c in self.callbacks:
            c.on_epoch_end(self, epoch, row)
        bar.close(**{k.replace("train_", ""): v for k, v in row.items()
                     if k.startswith(("train_", "val_"))
                     and k.split("_", 1)[1] in ("loss", "acc", "mse", "r2")})
        every = max(1, math.ceil(epochs / 15))  # at most ~15 lines in a log
        if not self.quiet and not bar.enabled and (epoch % every == 0 or epoch in (1, epochs)
                                                   or self.stop_training):
            keys = [k for k in row if k.startswith(("train_", "val_"))
                    and k.split("_", 1)[1] in ("loss", "acc", "mse", "r2")]
            print(f"epoch {epoch:>3}/{epochs}  {format_metrics(row, keys)}  "
                  f"({self.train_seconds:.1f} s)", flush=True)
        if csv_log is not None:
            csv_log.write(self.history)
        if tb is not None:
            tb.scalars({k: v for k, v in row.items() if k not in ("epoch", "step")}, epoch,
                       "epoch/")
            tb.flush()

    def _bar_figures(self) -> dict:
        d = self._running_figures()
        return {k: d[k] for k in ("loss", "acc", "mse", "r2") if k in d}

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, loader, return_outputs: bool = False):
        """Mean loss and metrics over ``loader`` (eval mode, no graph). With
        ``return_outputs`` also the stacked outputs and targets (NumPy)."""
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        metrics = [m.clone() for m in self.metrics]
        loss_sum, count = 0.0, 0
        outs, tgts = [], []
        try:
            with _mode.no_grad():
                for batch in loader:
                    x, y = _split_batch(batch)
                    out, loss = self._forward_loss(x, y)
                    n = len(_raw(y))
                    loss_sum += float(loss.item()) * n
                    count += n
                    for m in metrics:
                        m.update(out.data, _raw(y))
                    if return_outputs:
                        outs.append(np.array(out.data))
                        tgts.append(np.array(_raw(y)))
        finally:
            self.model.train(was_training)
        figs = {"loss": loss_sum / count if count else float("nan")}
        for m in metrics:
            figs.update(m.compute())
        if return_outputs:
            return figs, np.concatenate(outs), np.concatenate(tgts)
        return figs

    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        """The model's outputs for inputs ``x`` (NumPy array or Tensor), in eval mode."""
        x = _raw(x)
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        try:
            with _mode.no_grad():
                outs = [np.array(self.model(Tensor(x[i:i + batch_size])).data)
                        for i in range(0, len(x), batch_size)]
        finally:
            self.model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0,))

    # ------------------------------------------------------------------ rngs
    def generators(self) -> dict:
        """Every Generator whose state a checkpoint must hold (the loader's travels with the
        loader's own state)."""
        gens = {"trainer": self.rng}
        gens.update({f"model.{k}": v for k, v in find_generators(self.model).items()})
        return gens

    def _check_rngs(self, loader):
        lrng = getattr(loader, "rng", None)
        if lrng is None:
            return
        for name, g in self.generators().items():
            if g is lrng:
                raise ValueError(
                    f"Trainer: the training DataLoader shares its rng with {name}; give the "
                    "loader its own Generator (e.g. a separate seed) so that resuming mid-epoch "
                    "can replay its shuffle without rewinding the other")

    # ------------------------------------------------------------------ checkpoints
    def _trainer_state(self) -> dict:
        loader = self._train_loader
        return _jsonable({
            "epoch": self.epoch, "global_step": self.global_step,
            "step_in_epoch": self.step_in_epoch, "train_seconds": self._elapsed(),
            "history": self.history, "running": self._running,
            "train_metrics": [m.state_dict() for m in self._train_metrics],
            "rngs": {k: g.bit_generator.state for k, g in self.generators().items()},
            "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "callbacks": self._callback_states(),
        })

    def _keyed_callbacks(self) -> dict:
        """Callbacks by class name (``EarlyStopping``, ``EarlyStopping#2`` for a second one),
        so a resumed run matches states to callbacks whatever else it adds."""
        out, seen = {}, {}
        for c in self.callbacks:
            name = type(c).__name__
            seen[name] = seen.get(name, 0) + 1
            out[name if seen[name] == 1 else f"{name}#{seen[name]}"] = c
        return out

    def _callback_states(self) -> dict:
        states = {k: c.state_dict() for k, c in self._keyed_callbacks().items()}
        return {k: v for k, v in states.items() if v}

    def save_checkpoint(self, path: str) -> str:
        """Atomically save everything needed to continue this run exactly (see module doc)."""
        from .. import serialization

        bad = [n for n, p in self._named_params() if not np.all(np.isfinite(p.data))]
        if bad:
            raise TrainingDiverged(
                f"training diverged: parameters {bad[:3]} hold NaN/Inf at global step "
                f"{self.global_step}; not overwriting the last good checkpoint "
                f"{self._last_good_checkpoint}")
        serialization.save_checkpoint(
            path, self.model, optimizer=self.optimizer, step=self.global_step,
            config=self.config, scheduler=self.scheduler,
            extra={"trainer": self._trainer_state()})
        self._last_good_checkpoint = path
        return path

    def _named_params(self):
        if hasattr(self.model, "named_parameters"):
            return list(self.model.named_parameters())
        return [(str(i), p) for i, p in enumerate(self.model.parameters())]

    def load_checkpoint(self, path: str, train_loader=None) -> dict:
        """Restore a :meth:`save_checkpoint` (model, optimiser, schedule, loader, rngs, trainer
        counters, history, callbacks). Returns the :class:`tensorcalc.serialization.Checkpoint`."""
        from .. import serialization

        ck = serialization.load_checkpoint(path, self.model, optimizer=self.optimizer,
                                           scheduler=self.scheduler)
        st = _from_jsonable((ck.extra or {}).get("trainer") or {})
        if not st:
            return ck
        self.epoch = int(st["epoch"])
        self.global_step = int(st["global_step"])
        self.step_in_epoch = int(st["step_in_epoch"])
        self.train_seconds = float(st["train_seconds"])
        self.history = list(st["history"])
        self._running = dict(st["running"])
        for m, s in zip(self._train_metrics, st["train_metrics"], strict=False):
            m.load_state_dict(s)
        gens = self.generators()
        for name, state in st["rngs"].items():
            if name in gens:
                gens[name].bit_generator.state = state
        loader = train_loader if train_loader is not None else self._train_loader
        if st.get("loader") is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(st["loader"])
        saved = st.get("callbacks") or {}
        for key, c in self._keyed_callbacks().items():
            if key in saved:
                c.load_state_dict(saved[key])
        self._last_good_checkpoint = path
        return ck

    # ------------------------------------------------------------------ Ctrl-C
    def _install_sigint(self):
        self._interrupted = False
        if self.out_dir is None or threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._interrupted:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._interrupted = True

        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, old):
        if old is not None:
            signal.signal(signal.SIGINT, old)

    def _on_interrupt(self):
        path = self.save_checkpoint(os.path.join(self.checkpoint_dir, "last"))
        raise TrainingInterrupted(
            f"interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch} of "
            f"{self.steps_per_epoch}; checkpoint saved to {path}", path)
