"""Callbacks: things that happen at fixed points of a :class:`~tensorcalc.train.loop.Loop` run.

Hooks (all optional, each gets the loop's host: the :class:`Trainer` that built the loop, or
the Loop itself): ``on_fit_start``, ``on_epoch_start(epoch)``, ``on_batch_end(logs)`` after
every optimisation step (``logs``: the step's figures and ``step``), ``on_epoch_end(epoch,
logs)`` with the epoch's (or period's) history row (``train_*``, ``val_*``, ``lr``),
``on_fit_end``; and, only when a callback defines them (so that unused ones cost nothing per
step), ``after_backward(step, name)`` with the gradients of module ``name`` in hand,
``after_update(step, name)`` and ``on_evaluate(step, figures)``. Callbacks run in ascending
``order`` (schedules first, checkpoints last, so a checkpoint holds the state *after*
everything else of that step or epoch has happened), and those with state implement
``state_dict`` / ``load_state_dict`` so resuming restores them too.

* :class:`LRSchedule` — steps a learning-rate schedule every epoch (or every step);
  ``ReduceLROnPlateau`` gets the monitored figure.
* :class:`EarlyStopping` — stop when the monitored figure has not improved by ``min_delta`` for
  ``patience`` epochs.
* :class:`Checkpoint` — ``last`` every ``every_n_steps`` steps and at each epoch's end, ``best``
  whenever the monitored figure improves (both written atomically by
  :mod:`tensorcalc.serialization`).
"""

from __future__ import annotations

import math
import os

__all__ = ["Callback", "LRSchedule", "EarlyStopping", "Checkpoint", "monitor_mode"]


def monitor_mode(key: str) -> str:
    """'min' for losses and errors (``*loss``, ``*mse``), 'max' for everything else."""
    return "min" if key.endswith(("loss", "mse")) else "max"


def _improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class Callback:
    """Base class: every hook is a no-op; ``order`` sets the running order (ascending)."""

    order = 50

    def on_fit_start(self, trainer):
        pass

    def on_epoch_start(self, trainer, epoch: int):
        pass

    def on_batch_end(self, trainer, logs: dict):
        pass

    def on_epoch_end(self, trainer, epoch: int, logs: dict):
        pass

    def on_fit_end(self, trainer):
        pass

    # Step hooks: registered with the Loop only when a subclass defines them.
    # after_backward(self, trainer, step, name), after_update(self, trainer, step, name),
    # on_evaluate(self, trainer, step, figures)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LRSchedule(Callback):
    """Step ``scheduler`` once per epoch (``interval="epoch"``) or per optimisation step
    (``"step"``; the default for ``OneCycleLR``). A ``ReduceLROnPlateau`` is stepped with
    ``logs[monitor]`` at each epoch's end. The scheduler's own state travels in the checkpoint
    (it is saved with the optimiser), so this callback has none."""

    order = 0

    def __init__(self, scheduler, interval: str | None = None, monitor: str = "val_loss"):
        self.scheduler = scheduler
        name = type(scheduler).__name__
        self.plateau = name == "ReduceLROnPlateau"
        if interval is None:
            interval = getattr(scheduler, "interval", None) or (
                "step" if name == "OneCycleLR" else "epoch")
        if interval not in ("epoch", "step"):
            raise ValueError(f"LRSchedule: interval must be 'epoch' or 'step', got {interval!r}")
        if self.plateau and interval == "step":
            raise ValueError("LRSchedule: ReduceLROnPlateau steps per epoch on a monitored figure")
        self.interval = interval
        self.monitor = monitor

    def _step(self, *args):
        # The Loop owns a step's schedules: a schedule also stepped elsewhere (inside a Step's
        # update, say) would run at twice its planned speed — a silent wrong run. Its counter
        # must be where this callback left it.
        t = getattr(self.scheduler, "last_epoch", None)
        seen = getattr(self, "_seen", None)
        if t is not None and seen is not None and t != seen:
            raise RuntimeError(
                f"LRSchedule: {type(self.scheduler).__name__} was stepped outside the Loop "
                f"(its counter is {t}, the Loop last left it at {seen}); a Step must not step "
                "the schedules it hands to the Loop")
        self.scheduler.step(*args)
        self._seen = getattr(self.scheduler, "last_epoch", None)

    def on_fit_start(self, trainer):
        self._seen = getattr(self.scheduler, "last_epoch", None)

    def on_batch_end(self, trainer, logs):
        if self.interval == "step":
            self._step()

    def on_epoch_end(self, trainer, epoch, logs):
        if self.interval != "epoch":
            return
        if self.plateau:
            key = self.monitor if self.monitor in logs else "train_loss"
            self._step(logs[key])
        else:
            self._step()


class EarlyStopping(Callback):
    """Stop training when ``monitor`` (a history key such as ``val_loss`` or ``val_acc``) has
    not improved by more than ``min_delta`` for ``patience`` consecutive epochs. ``mode`` is
    'min', 'max' or 'auto' (min for losses). Sets ``trainer.stop_training``."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto"):
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {patience}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = monitor_mode(monitor) if mode == "auto" else mode
        if self.mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.best = None
        self.best_epoch = None
        self.wait = 0

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitored figure {self.monitor!r} is not in the "
                           f"epoch's logs {sorted(logs)}")
        v = logs[self.monitor]
        if _improved(v, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = v, epoch, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.stop_reason = (f"early stopping: {self.monitor} has not improved for "
                                       f"{self.patience} epochs (best {self.best:.4g} at epoch "
                                       f"{self.best_epoch})")

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


class Checkpoint(Callback):
    """Save the full training state (see :meth:`Trainer.save_checkpoint`) to
    ``directory/last`` every ``every_n_steps`` optimisation steps (None: only at epoch ends) and
    at the end of each epoch, and to ``directory/best`` when ``monitor`` improves."""

    order = 100

    def __init__(self, directory: str, every_n_steps: int | None = None,
                 monitor: str | None = "val_loss", mode: str = "auto", save_best: bool = True):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"Checkpoint: every_n_steps must be >= 1, got {every_n_steps}")
        self.directory = directory
        self.every_n_steps = every_n_steps
        self.monitor = monitor
        self.mode = (monitor_mode(monitor) if mode == "auto" else mode) if monitor else None
        self.save_best = save_best and monitor is not None
        self.best = None
        self.best_epoch = None

    @property
    def last_path(self) -> str:
        return os.path.join(self.directory, "last")

    @property
    def best_path(self) -> str:
        return os.path.join(self.directory, "best")

    def on_batch_end(self, trainer, logs):
        n = self.every_n_steps
        # the epoch's last step is saved by on_epoch_end, with the epoch's figures
        if n and trainer.global_step % n == 0 and trainer.step_in_epoch < trainer.steps_per_epoch:
            trainer.save_checkpoint(self.last_path)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best:
            key = self.monitor if self.monitor in logs else "train_loss"
            if _improved(logs.get(key), self.best, self.mode if key == self.monitor else "min"):
                self.best, self.best_epoch = logs[key], epoch
                trainer.save_checkpoint(self.best_path)
        trainer.save_checkpoint(self.last_path)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]
