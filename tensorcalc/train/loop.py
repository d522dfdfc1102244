"""The Loop: iteration, progress, logs, evaluation, checkpoints, exact resume and signals.

A :class:`Loop` drives a :class:`~tensorcalc.train.steps.Step` and knows nothing about models
(Chainer's Trainer, with the Step as its Updater). It owns

* iteration — ``epochs`` passes over a loader, or ``steps`` updates (with ``data=None`` the
  step draws its own data, e.g. from an environment; with a loader it cycles through it);
* the period — an epoch, or ``eval_every`` steps of a step-counted run: at its end the Loop
  evaluates on ``val_data`` (every ``eval_every`` epochs in an epoch run), appends one row to
  :attr:`history` (``epoch``/``step``, ``lr``, ``train_*`` from the step's figures,
  ``val_*``, ``seconds``), writes ``history.csv`` and TensorBoard scalars and runs the callbacks;
* checkpoints — ``checkpoints/last`` every ``checkpoint_every`` steps (default: about four
  per epoch / period) and at each period's end, ``checkpoints/best`` when ``monitor`` improves;
* exact resume — a checkpoint holds the step's modules, optimisers, schedules, rngs and extra
  state, plus the loader's position, the running sums of the period's figures, the history, the
  counters, the plan and the callbacks' state: a run killed with SIGKILL and resumed from its
  last checkpoint ends bit-identical to one never interrupted;
* signals — Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves ``checkpoints/last``
  and raises :class:`TrainingInterrupted` (:class:`TrainingTerminated` for SIGTERM) naming it;
  a signal that arrives after the last step (during the final evaluation or callbacks) does the
  same once the run is done. The previous handlers are restored when :meth:`run` returns;
* safety — a non-finite ``loss`` (or any figure in ``step.guarded``) raises
  :class:`TrainingDiverged` naming where it happened and the last good checkpoint; NaN/Inf in a
  batch's float arrays raises :class:`DataError` (a ``ValueError``) naming the data set, batch
  and row, before the step sees it — bad data is not divergence. The check is one vectorised
  pass over each float array of the batch.

Training longer. A resumed run may be given more ``epochs`` (or ``steps``) than it was planned
for. Schedules with a horizon (cosine annealing, 1cycle, warm-up followed by one of them) are
*re-planned*: when the horizon equals the old plan's length it becomes the new length, so the
remaining steps follow the schedule as if the run had been planned that long from the start —
the cosine, say, climbs back from its end to the rate the longer plan has at this point and
anneals to its minimum at the new end. Schedules without a horizon simply continue.

Derived files. ``history.csv`` is rewritten from the restored history as soon as a resumed run
starts, so a file left stale by a crash is repaired even if no further epoch completes.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import numpy as np

from ..data.validation import DataError  # NaN/Inf in the data: not a divergence
from .callbacks import Callback, Checkpoint, LRSchedule
from .logging import CSVLog, ProgressBar, TensorBoardLog, format_metrics

__all__ = ["Loop", "Hooks", "TrainingDiverged", "TrainingInterrupted", "TrainingTerminated",
           "DataError"]

STATE_KIND = "tensorcalc.loop"


class TrainingDiverged(RuntimeError):
    """A figure (the loss) became NaN or Inf; the message says where and which checkpoint is
    good. ``figure``, ``value`` and ``lr`` are kept for callers that add their own advice (the
    CLI names its flags)."""

    def __init__(self, message: str, figure: str | None = None, value: float | None = None,
                 lr: float | None = None):
        super().__init__(message)
        self.figure, self.value, self.lr = figure, value, lr


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a run; ``checkpoint`` is the path saved (or None),
    ``signal_name`` which signal it was."""

    def __init__(self, message: str, checkpoint: str | None, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signal_name = signal_name


class TrainingTerminated(TrainingInterrupted):
    """SIGTERM during a run (a scheduler or ``kill`` asked it to stop); a checkpoint was
    saved as for Ctrl-C."""


class Hooks:
    """The Loop's hook lists; a Step calls them through :meth:`Step.after_backward` /
    :meth:`Step.after_update`. Each entry is ``fn(step, name)``; ``on_evaluate`` entries are
    ``fn(step, figures)`` and run after each validation."""

    __slots__ = ("after_backward", "after_update", "on_evaluate")

    def __init__(self):
        self.after_backward: list = []
        self.after_update: list = []
        self.on_evaluate: list = []


def _overrides(cb, name: str) -> bool:
    fn = getattr(type(cb), name, None)
    return fn is not None and fn is not getattr(Callback, name, None)


def _array(v):
    """The NumPy array of a batch leaf (array or Tensor), or None."""
    d = getattr(v, "data", v) if not isinstance(v, np.ndarray) else v
    return d if isinstance(d, np.ndarray) else None


def _leaves(batch, prefix=""):
    """(name, array) of a batch's arrays: tuples by position, dicts by key."""
    if isinstance(batch, (tuple, list)):
        names = ("inputs", "targets") if len(batch) == 2 else None
        for i, v in enumerate(batch):
            yield from _leaves(v, f"{prefix}{names[i] if names else f'item {i}'}")
    elif isinstance(batch, dict):
        for k, v in batch.items():
            yield from _leaves(v, f"{prefix}{k!r}")
    else:
        a = _array(batch)
        if a is not None:
            yield prefix or "batch", a


def _all_finite(a: np.ndarray) -> bool:
    """Every entry of a float array finite: one vectorised pass (measured faster than a float64
    sum, and exact)."""
    if a.dtype.kind not in "fc":
        return True
    return bool(np.isfinite(a).all())


class Loop:
    """Drive ``step`` over ``data`` (see the module docstring).

    Args:
        step: a :class:`~tensorcalc.train.steps.Step`.
        data: the training loader (an iterable of batches with ``len``; a
            :class:`~tensorcalc.data.DataLoader` resumes mid-epoch), or None when the step draws
            its own data (then ``steps`` is required).
        epochs: passes over ``data``; or ``steps``: the number of updates (exactly one of them;
            a resumed run continues to the same total, or to a new one: "training longer").
        val_data: held-out data for ``step.evaluate`` at each evaluation.
        out_dir: where ``history.csv``, ``tb/`` and ``checkpoints/`` go; None: in memory only.
        callbacks: :class:`~tensorcalc.train.callbacks.Callback` objects; their hooks get
            ``host`` (the Loop, or the :class:`Trainer` that built it).
        checkpoint_every: save ``checkpoints/last`` every this many steps (default: about four
            times per period); 0: only at period ends.
        eval_every: evaluate every this many epochs (epoch runs, default 1), or end a period
            every this many steps (step runs, default a tenth of the run).
        monitor: the figure that decides the ``best`` checkpoint (default ``val_loss``).
        quiet / progress: no bar and no lines / force the bar on or off (default: a terminal).
        config: hyperparameters stored in every checkpoint.
        tensorboard: write TensorBoard events under ``out_dir/tb``.
        check_data: check each batch's float arrays for NaN/Inf (one vectorised pass per array).
        data_name: the data set's name for :class:`DataError` (default: ``data.name`` or
            ``data.dataset.name`` when present).
    """

    def __init__(self, step, data=None, *, epochs: int | None = None, steps: int | None = None,
                 val_data=None, out_dir: str | None = None, callbacks=(),
                 checkpoint_every: int | None = None, eval_every: int | None = None,
                 monitor: str = "val_loss", quiet: bool = False, progress: bool | None = None,
                 config: dict | None = None, tensorboard: bool = True, check_data: bool = True,
                 data_name: str | None = None):
        self.step = step
        self.data = data
        self.epochs = epochs
        self.steps = steps
        self.val_data = val_data
        self.out_dir = out_dir
        self.callbacks: list = list(callbacks)
        self.checkpoint_every = checkpoint_every
        self.eval_every = eval_every
        self.monitor = monitor
        self.quiet = quiet
        self.progress = progress
        self.config = dict(config or {})
        self.tensorboard = tensorboard
        self.check_data = check_data
        self.data_name = data_name
        self.host = self            # what callbacks receive (a Trainer sets itself)
        self.hooks = Hooks()
        self.history: list[dict] = []
        self.epoch = 0              # periods (epochs) completed
        self.global_step = 0        # updates taken
        self.step_in_epoch = 0      # updates taken in the current period
        self.steps_per_epoch = 0    # updates in the current period
        self.train_seconds = 0.0    # time spent in run (across resumes)
        self.stop_training = False
        self.stop_reason = ""
        self.checkpointer: Checkpoint | None = None
        self._sums: dict = {}
        self._weight = 0.0
        self._signal: str | None = None
        self._last_good_checkpoint: str | None = None
        self._clock: float | None = None
        self._period = 0            # steps per period of a step-counted run
        self._iter = None           # the loader's iterator (step-counted runs over a loader)
        self._hooked: set = set()  # callbacks whose hooks are registered

    # ------------------------------------------------------------------ plan
    @property
    def checkpoint_dir(self) -> str | None:
        return None if self.out_dir is None else os.path.join(self.out_dir, "checkpoints")

    @property
    def by_steps(self) -> bool:
        return self.steps is not None

    def _check_plan(self):
        if (self.epochs is None) == (self.steps is None):
            if self.epochs is None and self.data is not None:
                self.epochs = 1
            else:
                raise ValueError("Loop: give exactly one of epochs (passes over data) and "
                                 f"steps (updates); got epochs={self.epochs!r}, "
                                 f"steps={self.steps!r}")
        total = self.steps if self.by_steps else self.epochs
        if isinstance(total, bool) or int(total) != total or total < 1:
            what = "steps" if self.by_steps else "epochs"
            raise ValueError(f"Loop: {what} must be >= 1, got {total!r}")
        if self.data is None and not self.by_steps:
            raise ValueError("Loop: without data the run is counted in steps (steps=N)")
        if self.data is not None and not self.by_steps:
            self.steps_per_epoch = len(self.data)
            if self.steps_per_epoch == 0:
                raise ValueError("Loop: the training loader yields no batches (fewer examples "
                                 "than one batch with drop_last?)")
        if self.by_steps and self._period == 0:
            self._period = int(self.eval_every or max(1, math.ceil(self.steps / 10)))

    def _plan(self) -> dict:
        return {"mode": "steps" if self.by_steps else "epochs", "epochs": self.epochs,
                "steps": self.steps, "steps_per_epoch": self.steps_per_epoch,
                "period": self._period}

    def _prepare(self):
        """Callbacks for the step's schedules, the checkpointer, hooks from callbacks, and the
        rng-sharing check. Safe to repeat (a Trainer may fit more than once)."""
        step = self.step
        step.loop = self
        step.hooks = self.hooks
        self._place_on_device(step)
        for sched in step.schedules.values():
            if not any(isinstance(c, LRSchedule) and c.scheduler is sched
                       for c in self.callbacks):
                plateau = type(sched).__name__ == "ReduceLROnPlateau"
                interval = "step" if self.by_steps and not plateau else None
                self.callbacks.append(LRSchedule(sched, interval=interval, monitor=self.monitor))
        self.checkpointer = next((c for c in self.callbacks if isinstance(c, Checkpoint)), None)
        if self.out_dir is not None and self.checkpointer is None:
            every = self.checkpoint_every
            if every is None:
                per = self._period if self.by_steps else self.steps_per_epoch
                every = max(1, per // 4)
            self.checkpointer = Checkpoint(self.checkpoint_dir, every_n_steps=every or None,
                                           monitor=self.monitor)
            self.callbacks.append(self.checkpointer)
        self.callbacks.sort(key=lambda c: c.order)
        host = self.host
        for c in self.callbacks:
            if id(c) in self._hooked:
                continue
            self._hooked.add(id(c))
            for event in ("after_backward", "after_update", "on_evaluate"):
                if _overrides(c, event):
                    getattr(self.hooks, event).append(
                        lambda s, arg, _f=getattr(c, event): _f(host, s, arg))
        lrng = getattr(self.data, "rng", None)
        if lrng is not None:
            for name, g in step.rngs.items():
                if g is lrng:
                    raise ValueError(
                        f"Loop: the training DataLoader shares its rng with {name}; give the "
                        "loader its own Generator (e.g. a separate seed) so that resuming "
                        "mid-epoch can replay its shuffle without rewinding the other")

    def add_hook(self, event: str, fn) -> None:
        """Register ``fn(step, name)`` for ``after_backward`` / ``after_update``, or
        ``fn(step, figures)`` for ``on_evaluate``."""
        if event not in Hooks.__slots__:
            raise ValueError(f"Loop.add_hook: event must be one of {Hooks.__slots__}, "
                             f"got {event!r}")
        getattr(self.hooks, event).append(fn)

    # ------------------------------------------------------------------ run
    def run(self, resume_from: str | None = None) -> list[dict]:
        """Train to the planned total (continuing a checkpoint's run with ``resume_from``);
        returns the history (one dict per period)."""
        self._check_plan()
        self._prepare()
        if self.out_dir is not None:
            os.makedirs(self.out_dir, exist_ok=True)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self.stop_training = False
        self._iter = None
        csv_log = CSVLog(os.path.join(self.out_dir, "history.csv")) if self.out_dir else None
        if csv_log is not None and resume_from is not None:
            csv_log.write(self.history)  # repair a file a crash left stale
        tb = None
        if self.tensorboard and self.out_dir is not None:
            tb = TensorBoardLog(os.path.join(self.out_dir, "tb"),
                                purge_step=self.global_step if resume_from else None)
        bar = ProgressBar(enabled=self.progress, quiet=self.quiet)
        old = self._install_signals()
        try:
            for c in self.callbacks:
                c.on_fit_start(self.host)
            while not self.stop_training and not self._done():
                self._run_period(bar, tb, csv_log)
                if self._signal:
                    self._on_interrupt()
            for c in self.callbacks:
                c.on_fit_end(self.host)
        finally:
            bar.close()
            self._restore_signals(old)
            if tb is not None:
                tb.close()
        if self._signal:  # arrived after the last step: save and stop as mid-run
            self._on_interrupt()
        if self.stop_reason and not self.quiet:
            print(self.stop_reason)
        return self.history

    def _done(self) -> bool:
        if self.by_steps:
            return self.global_step >= self.steps
        return self.epoch >= self.epochs

    def _elapsed(self) -> float:
        if self._clock is None:
            return self.train_seconds
        return self.train_seconds + (time.perf_counter() - self._clock)

    def _stop_clock(self):
        self.train_seconds = self._elapsed()
        self._clock = None

    def _batches(self):
        """This period's batches: an epoch of the loader, or the next updates of a
        step-counted run (None batches without data; the loader restarted as needed)."""
        n = self.steps_per_epoch - self.step_in_epoch
        if not self.by_steps:
            yield from self.data
            return
        for _ in range(n):
            if self.data is None:
                yield None
                continue
            if self._iter is None:
                self._iter = iter(self.data)
            try:
                yield next(self._iter)
            except StopIteration:  # the loader's epoch ended: start its next one
                self._iter = iter(self.data)
                yield next(self._iter)

    def _run_period(self, bar, tb, csv_log):
        step, host, cbs = self.step, self.host, self.callbacks
        period = self.epoch + 1
        if self.by_steps:
            start = self.epoch * self._period
            self.steps_per_epoch = min(self._period, self.steps - start)
            total = math.ceil(self.steps / self._period)
            desc = f"steps {start + 1}-{start + self.steps_per_epoch} of {self.steps}"
        else:
            total = self.epochs
            desc = f"epoch {period:>{len(str(total))}}/{total}"
        self._clock = time.perf_counter()
        if self.step_in_epoch == 0:
            self._sums, self._weight = {}, 0.0
            step.start_period()
        for c in cbs:
            c.on_epoch_start(host, period)
        step.train(True)
        bar.start(self.steps_per_epoch, desc, initial=self.step_in_epoch)
        check = self.check_data
        try:
            for batch in self._batches():
                if check and batch is not None:
                    self._check_batch(batch)
                figs = step.step(batch)
                self.global_step += 1
                self.step_in_epoch += 1
                self._accumulate(figs)
                logs = dict(figs, step=self.global_step)
                for c in cbs:
                    c.on_batch_end(host, logs)
                if tb is not None and (self.global_step % 10 == 0 or self.step_in_epoch == 1):
                    tb.scalars({**{k: v for k, v in figs.items() if k != "n"}, **self.lrs()},
                               self.global_step, "step/")
                if bar.enabled:
                    bar.update(1, **self._bar_figures())
                if self._signal:
                    self._on_interrupt()
        except BaseException:
            self._stop_clock()
            raise
        row = {"epoch": period} if not self.by_steps else {}
        row["step"] = self.global_step
        row.update(self.lrs())
        row.update({f"train_{k}": v for k, v in self._period_figures().items()})
        every = self.eval_every or 1
        if self.val_data is not None and (self.by_steps or period % every == 0
                                          or period == total):
            figs = step.evaluate(self.val_data)
            for fn in self.hooks.on_evaluate:
                fn(step, figs)
            row.update({f"val_{k}": v for k, v in figs.items()})
        self._stop_clock()
        row["seconds"] = round(self.train_seconds, 3)
        self.epoch = period
        self.step_in_epoch = 0
        self.history.append(row)
        for c in cbs:
            c.on_epoch_end(host, period, row)
        shown = [k for k in row if k.startswith(("train_", "val_"))
                 and k.split("_", 1)[1] in ("loss", "acc", "mse", "r2")]
        bar.close(**{k.replace("train_", ""): row[k] for k in shown})
        lines = max(1, math.ceil(total / 15))  # at most ~15 lines in a log
        if not self.quiet and not bar.enabled and (period % lines == 0 or period in (1, total)
                                                   or self.stop_training):
            what = (f"step {self.global_step:>{len(str(self.steps))}}/{self.steps}"
                    if self.by_steps else f"epoch {period:>3}/{total}")
            print(f"{what}  {format_metrics(row, shown)}  ({self.train_seconds:.1f} s)",
                  flush=True)
        if csv_log is not None:
            csv_log.write(self.history)
        if tb is not None:
            tb.scalars({k: v for k, v in row.items() if k not in ("epoch", "step")},
                       period if not self.by_steps else self.global_step, "epoch/")
            tb.flush()

    # ------------------------------------------------------------------ figures
    def _accumulate(self, figs: dict):
        w = figs.get("n", 1)
        sums = self._sums
        for k, v in figs.items():
            if k != "n":
                sums[k] = sums.get(k, 0.0) + v * w
        self._weight += w
        for k in self.step.guarded:
            v = figs.get(k)
            if v is not None and not math.isfinite(v):
                self.diverged(k, v, applied=True)

    def _running(self) -> dict:
        w = self._weight
        return {k: (s / w if w else float("nan")) for k, s in self._sums.items()}

    def _period_figures(self) -> dict:
        return self.step.period_figures(self._running())

    def _bar_figures(self) -> dict:
        d = self._period_figures()
        return {k: d[k] for k in ("loss", "acc", "mse", "r2") if k in d}

    def lrs(self) -> dict:
        """``{"lr": rate}`` for one optimiser, ``{"lr_<name>": rate, ...}`` for several."""
        opts = self.step.optimizers
        if len(opts) == 1:
            return {"lr": float(next(iter(opts.values())).param_groups[0]["lr"])}
        return {f"lr_{k}": float(o.param_groups[0]["lr"]) for k, o in opts.items()}

    @property
    def lr(self) -> float:
        opts = self.step.optimizers
        return float(next(iter(opts.values())).param_groups[0]["lr"]) if opts else float("nan")

    # ------------------------------------------------------------------ safety
    def where(self, offset: int = 1) -> str:
        """Where the run stands, for messages (``offset`` 1: the step being taken)."""
        if self.by_steps:
            return f"step {self.global_step + offset} of {self.steps}"
        return (f"epoch {self.epoch + 1}, step {self.step_in_epoch + offset} of "
                f"{self.steps_per_epoch} (global step {self.global_step + offset})")

    def diverged(self, name: str, value: float, applied: bool = False):
        """Raise :class:`TrainingDiverged` for figure ``name`` = ``value`` at the current step
        (``applied``: the step's update has already happened)."""
        where = self.where(0 if applied else 1)
        good = (f"the last good checkpoint is {self._last_good_checkpoint}"
                if self._last_good_checkpoint else "no checkpoint was written yet")
        lr = self.lr
        state = ("the update of this step was applied" if applied else
                 "the weights are left as they were before this step")
        raise TrainingDiverged(
            f"training diverged: the {name} became {value} at {where} with lr={lr:g}; "
            f"{state} and {good}. Try a smaller learning rate or gradient clipping.",
            figure=name, value=value, lr=lr)

    def _place_on_device(self, step):
        """With a default device set (``backend.set_default_device``, the CLI's --device), move
        the step's modules there (optimiser state follows) and have the loaders hand out
        batches there. Checkpoints stay device-independent (saved as host arrays)."""
        from ..backend import default_device

        dev = default_device()
        if dev == "cpu":
            return
        for m in step.modules.values():
            if any(p.device != dev for p in m.parameters()):
                m.to(dev)
        for opt in step.optimizers.values():
            if hasattr(opt, "to"):
                opt.to(dev)
        for loader in (self.data, self.val_data):
            if loader is not None and getattr(loader, "device", "x") is None:
                loader.device = dev

    def _check_batch(self, batch):
        for name, a in _leaves(batch):
            if not _all_finite(a):
                self._data_error(name, a)

    def _data_error(self, name, a):
        bad = ~np.isfinite(a)
        rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1)) if a.ndim else [0]
        kind = "NaN" if np.isnan(a).any() else "Inf"
        ds = self.data_name or getattr(self.data, "name", None) or getattr(
            getattr(self.data, "dataset", None), "name", None)
        what = f"the training data {ds!r}" if ds else "the training data"
        at = (f"step {self.global_step + 1}" if self.by_steps else
              f"epoch {self.epoch + 1}, batch {self.step_in_epoch + 1} of "
              f"{self.steps_per_epoch}")
        where = ""
        arrays = getattr(getattr(self.data, "dataset", None), "arrays", None)
        if isinstance(arrays, (tuple, list)):
            for arr in arrays:
                arr = np.asarray(arr)
                if arr.dtype.kind in "fc" and arr.shape[1:] == a.shape[1:]:
                    idx = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
                    if len(idx):
                        more = f" and {len(idx) - 5} more" if len(idx) > 5 else ""
                        rows_s = "row" if len(idx) == 1 else "rows"
                        where = (f"; in the data set: {rows_s} "
                                 f"{', '.join(map(str, idx[:5]))}{more}")
                        break
        raise DataError(
            f"{what} holds {kind} in its {name} at {at}, row {int(rows[0])} of the batch"
            f"{where}. This is bad data, not divergence: clean or drop those rows.")

    # ------------------------------------------------------------------ checkpoints
    def _keyed_callbacks(self) -> dict:
        """Callbacks by class name (``EarlyStopping``, ``EarlyStopping#2`` for a second one),
        so a resumed run matches states to callbacks whatever else it adds."""
        out, seen = {}, {}
        for c in self.callbacks:
            name = type(c).__name__
            seen[name] = seen.get(name, 0) + 1
            out[name if seen[name] == 1 else f"{name}#{seen[name]}"] = c
        return out

    def state_meta(self) -> dict:
        """The Loop's own JSON state (everything but the step's)."""
        data = self.data
        return {
            "kind": STATE_KIND,
            "epoch": self.epoch, "global_step": self.global_step,
            "step_in_epoch": self.step_in_epoch, "train_seconds": self._elapsed(),
            "history": self.history, "sums": self._sums, "weight": self._weight,
            "plan": self._plan(),
            "data": data.state_dict() if hasattr(data, "state_dict") else None,
            "callbacks": {k: s for k, s in ((k, c.state_dict())
                                            for k, c in self._keyed_callbacks().items()) if s},
        }

    def save_checkpoint(self, path: str) -> str:
        """Atomically save everything needed to continue this run exactly (see module doc);
        refuses to overwrite a good checkpoint with weights holding NaN/Inf."""
        from .. import serialization

        step = self.step
        for mname, m in step.modules.items():
            bad = [n for n, p in m.named_parameters() if not np.all(np.isfinite(p.data))]
            if bad:
                raise TrainingDiverged(
                    f"training diverged: parameters {bad[:3]} of {mname} hold NaN/Inf at "
                    f"global step {self.global_step}; not overwriting the last good checkpoint "
                    f"{self._last_good_checkpoint}")
        serialization.save_state(
            path, modules=step.modules, optimizers=step.optimizers, schedules=step.schedules,
            rngs=step.rngs, arrays=step.state_arrays(),
            meta={"step": self.global_step, "loop": _jsonable(self.state_meta()),
                  "step_state": _jsonable(step.state_meta())},
            config=self.config)
        self._last_good_checkpoint = str(path)
        return str(path)

    def load_checkpoint(self, path: str):
        """Restore a :meth:`save_checkpoint`: the step's modules, optimisers, schedules, rngs
        and state, then the loader's position, counters, running sums, history and callbacks.
        Everything is checked before anything changes (a :class:`CheckpointError` leaves the
        run as it was). A checkpoint of the version-1 Trainer (one model) loads too. Re-plans
        horizon schedules when the run is now planned longer (module docstring). Returns the
        :class:`~tensorcalc.serialization.State`."""
        from .. import serialization as S

        self._prepare()
        step = self.step
        if S.read_manifest(path)["format_version"] == 1:
            return self._load_v1(path)
        found = {}

        def check(st):
            meta = st.meta if isinstance(st.meta, dict) else {}
            found["loop"] = self._checked_meta(path, meta.get("loop"))
            found["step"] = _from_jsonable(meta.get("step_state") or {})

        st = S.load_state(path, modules=step.modules, optimizers=step.optimizers,
                          schedules=step.schedules, rngs=step.rngs, check=check)
        step.load_state_arrays(dict(st.arrays or {}))
        step.load_state_meta(found["step"])
        self._restore(found["loop"], path)
        return st

    def _checked_meta(self, path, loop) -> dict:
        """The Loop's saved state, checked to be complete and to fit this run's loader."""
        from ..serialization import CheckpointError

        if not isinstance(loop, dict) or loop.get("kind") != STATE_KIND:
            raise CheckpointError(f"{path}: the checkpoint holds no Loop state (it was not "
                                  "written by Loop.save_checkpoint)")
        types = {"epoch": int, "global_step": int, "step_in_epoch": int,
                 "train_seconds": (int, float), "history": list, "sums": dict,
                 "weight": (int, float)}
        for k, t in types.items():
            if not isinstance(loop.get(k), t) or isinstance(loop.get(k), bool):
                raise CheckpointError(f"{path}: Loop state field {k!r} is missing or not "
                                      f"{getattr(t, '__name__', 'a number')}: {loop.get(k)!r}")
        self._check_data_state(path, loop.get("data"))
        return _from_jsonable(loop)

    def _check_data_state(self, path, state):
        from ..serialization import CheckpointError

        if state is None or not hasattr(self.data, "state_dict"):
            return
        mine = self.data.state_dict()
        for key in ("num_examples", "batch_size", "shuffle", "drop_last"):
            if key in state and key in mine and state[key] != mine[key]:
                raise CheckpointError(f"{path}: the checkpoint's loader had {key}="
                                      f"{state[key]!r}, this run's has {key}={mine[key]!r}")

    def _load_v1(self, path):
        """A checkpoint of the version-1 Trainer: model/optimizer/scheduler by those names,
        the trainer's counters and rng states in ``extra["trainer"]``."""
        from .. import serialization as S

        step = self.step
        found = {}

        def check(st):
            tr = _from_jsonable(((st.meta or {}).get("extra") or {}).get("trainer") or {})
            if not tr:
                raise S.CheckpointError(f"{path}: a version-1 checkpoint without training state "
                                        "(weights only); load it with load_checkpoint")
            rngs = {("step" if k == "trainer" else k): v for k, v in tr.get("rngs", {}).items()}
            gens = step.rngs
            for k, v in rngs.items():
                g = gens.get(k)
                if g is None or v.get("bit_generator") != type(g.bit_generator).__name__:
                    raise S.CheckpointError(f"{path}: its rng {k!r} has no counterpart in this "
                                            f"step (rngs {sorted(gens)})")
            self._check_data_state(path, tr.get("loader"))
            found["rngs"], found["tr"] = rngs, tr

        st = S.load_state(path, modules=step.modules, optimizers=step.optimizers,
                          schedules=step.schedules, check=check)
        tr = found["tr"]
        gens = step.rngs
        for k, v in found["rngs"].items():
            gens[k].bit_generator.state = v
        step.load_state_meta({"train_metrics": tr.get("train_metrics") or []})
        running = tr.get("running") or {}
        loop = dict(tr, sums={"loss": running.get("loss_sum", 0.0)},
                    weight=running.get("count", 0), data=tr.get("loader"), plan={})
        self._restore(loop, path)
        return st

    def _restore(self, loop: dict, path: str):
        """The Loop's own state from :meth:`state_meta` (after the step's was loaded)."""
        self.epoch = int(loop["epoch"])
        self.global_step = int(loop["global_step"])
        self.step_in_epoch = int(loop["step_in_epoch"])
        self.train_seconds = float(loop["train_seconds"])
        self.history = list(loop["history"])
        self._sums = dict(loop.get("sums") or {})
        self._weight = float(loop.get("weight") or 0.0)
        plan = loop.get("plan") or {}
        if self.by_steps and plan.get("period"):
            self._period = int(plan["period"])
        if loop.get("data") is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(loop["data"])
        saved = loop.get("callbacks") or {}
        for key, c in self._keyed_callbacks().items():
            if key in saved:
                c.load_state_dict(saved[key])
        self._replan(plan)
        self._last_good_checkpoint = str(path)

    def _units(self, plan: dict, interval: str) -> int | None:
        """The plan's length in a schedule's units (epochs/periods, or steps)."""
        if plan.get("mode") == "steps":
            if interval == "step":
                return plan.get("steps")
            p = plan.get("period") or 1
            return math.ceil(plan["steps"] / p) if plan.get("steps") else None
        if plan.get("epochs") is None:
            return None
        return plan["epochs"] * (plan.get("steps_per_epoch") or 0) if interval == "step" \
            else plan["epochs"]

    def _replan(self, saved: dict):
        now = self._plan()
        if self.epochs is None and self.steps is None:  # loaded outside run(): no plan
            return
        if not saved or saved.get("mode") != now["mode"]:
            return
        for c in self.callbacks:
            if not isinstance(c, LRSchedule):
                continue
            sched = c.scheduler
            horizon = getattr(sched, "horizon", None)
            old, new = self._units(saved, c.interval), self._units(now, c.interval)
            if horizon is None or old is None or new is None or old == new:
                continue
            if horizon == old and new >= sched.last_epoch:
                sched.set_horizon(new)
                if not self.quiet:
                    print(f"{type(sched).__name__}: planned for {old} {c.interval}s, re-planned "
                          f"for {new}; the learning rate continues at {self.lr:.4g}", flush=True)

    # ------------------------------------------------------------------ signals
    def _install_signals(self):
        self._signal = None
        if self.out_dir is None or threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._signal:  # a second signal: stop now
                raise KeyboardInterrupt
            self._signal = signal.Signals(signum).name

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        return old

    def _restore_signals(self, old):
        for sig, h in (old or {}).items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)

    def _on_interrupt(self):
        name, self._signal = self._signal, None
        path = self.save_checkpoint(os.path.join(self.checkpoint_dir, "last"))
        if self._done() or self.stop_training:
            at = f"after the last step ({self.global_step} steps)"
        elif self.by_steps:
            at = f"at step {self.global_step} of {self.steps}"
        else:
            at = (f"at epoch {self.epoch + 1}, step {self.step_in_epoch} of "
                  f"{self.steps_per_epoch}")
        cls = TrainingTerminated if name == "SIGTERM" else TrainingInterrupted
        raise cls(f"{'terminated (SIGTERM)' if name == 'SIGTERM' else 'interrupted'} {at}; "
                  f"checkpoint saved to {path}", path, name)


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
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _from_jsonable(v):
    if isinstance(v, dict):
        if "__ndarray__" in v:
            return np.array(v["__ndarray__"], dtype=v["dtype"])
        return {k: _from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_jsonable(x) for x in v]
    return v
