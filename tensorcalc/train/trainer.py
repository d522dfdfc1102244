"""The Trainer: supervised learning in one object — a :class:`SupervisedStep` on a :class:`Loop`.

One optimisation step on a batch (x, y) of B examples:

    z = f_θ(x)                     forward (the model, in training mode)
    L = ℓ(z, y)                    the loss, a mean over the batch
    g = ∂L/∂θ                      reverse mode (``L.backward()``)
    θ ← update(θ, g)               the optimiser (SGD, Adam, ...) — after optional clipping

This class is a convenience facade: the step lives in :class:`~tensorcalc.train.steps.
SupervisedStep` and everything else — epochs, progress, logs, evaluation, callbacks,
checkpoints, exact resume, Ctrl-C/SIGTERM, the divergence guard and the data check — in
:class:`~tensorcalc.train.loop.Loop` (see their docstrings). Callbacks receive the Trainer, so
``trainer.model``, ``trainer.evaluate(...)``, ``trainer.global_step``, ``trainer.stop_training``
work inside them.

Determinism: everything random draws from explicit numpy Generators — the model's initialiser
and dropout (given to the model by whoever built it), the loader's shuffling (its own rng), and
``trainer.rng`` (data augmentation) — so the same seeds give bit-identical losses and weights,
and a run killed with SIGKILL and resumed from its last checkpoint ends bit-identical to one
never interrupted. Checkpoints written by the version-1 Trainer still resume.
"""

from __future__ import annotations

import numpy as np

from .loop import DataError, Loop, TrainingDiverged, TrainingInterrupted, TrainingTerminated
from .metrics import Metric
from .steps import SupervisedStep, find_generators

__all__ = ["Trainer", "TrainingDiverged", "TrainingInterrupted", "TrainingTerminated",
           "DataError", "find_generators"]


class Trainer:
    """Fit a model with mini-batch gradient descent (see the module docstring).

    Args:
        model: a :class:`tensorcalc.nn.Module` mapping an input batch to outputs (logits or
            predictions; a tuple of outputs is allowed).
        loss_fn: ``loss_fn(output, target) -> scalar Tensor`` (e.g. ``F.cross_entropy``), or a
            dict of named scalar Tensors (see :class:`SupervisedStep`).
        optimizer: a :class:`tensorcalc.optim.Optimizer` over ``model.parameters()``.
        metrics: Metrics (or names: ``"acc"``, ``"mse"``, ``"r2"``) computed on training batches
            as they go and on the validation set; a fresh copy is used for each.
        callbacks: extra :class:`Callback` objects (their hooks get this Trainer).
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
        tensorboard: write TensorBoard events under ``out_dir/tb``.
    """

    def __init__(self, model, loss_fn, optimizer, metrics=(), callbacks=(), scheduler=None,
                 rng=None, out_dir: str | None = None, *, checkpoint_every: int | None = None,
                 monitor: str = "val_loss", augment=None, clip_grad_norm: float | None = None,
                 quiet: bool = False, progress: bool | None = None, config: dict | None = None,
                 tensorboard: bool = True):
        self.step = SupervisedStep(model, loss_fn, optimizer, metrics=metrics,
                                   scheduler=scheduler, augment=augment, rng=rng,
                                   clip_grad_norm=clip_grad_norm)
        self.loop = Loop(self.step, None, out_dir=out_dir, callbacks=callbacks,
                         checkpoint_every=checkpoint_every, monitor=monitor, quiet=quiet,
                         progress=progress, config=config,
                         tensorboard=tensorboard and out_dir is not None)
        self.loop.host = self

    # ------------------------------------------------------------------ the parts
    model = property(lambda self: self.step.model)
    optimizer = property(lambda self: self.step.optimizer)
    scheduler = property(lambda self: self.step.scheduler)
    rng = property(lambda self: self.step.rng)
    augment = property(lambda self: self.step.augment)
    clip_grad_norm = property(lambda self: self.step.clip_grad_norm)
    out_dir = property(lambda self: self.loop.out_dir)
    config = property(lambda self: self.loop.config)
    monitor = property(lambda self: self.loop.monitor)
    callbacks = property(lambda self: self.loop.callbacks)
    checkpointer = property(lambda self: self.loop.checkpointer)
    checkpoint_dir = property(lambda self: self.loop.checkpoint_dir)
    steps_per_epoch = property(lambda self: self.loop.steps_per_epoch)
    step_in_epoch = property(lambda self: self.loop.step_in_epoch)
    lr = property(lambda self: self.loop.lr)

    @property
    def metrics(self) -> list[Metric]:
        return self.step.metrics

    @property
    def loss_fn(self):
        return self.step.loss_fn

    @loss_fn.setter
    def loss_fn(self, fn):
        self.step.loss_fn = fn

    # ------------------------------------------------------------------ the run's state
    def _loop_attr(name):  # noqa: N805 - a property factory used in the class body
        return property(lambda self: getattr(self.loop, name),
                        lambda self, v: setattr(self.loop, name, v))

    history = _loop_attr("history")
    epoch = _loop_attr("epoch")
    global_step = _loop_attr("global_step")
    train_seconds = _loop_attr("train_seconds")
    stop_training = _loop_attr("stop_training")
    stop_reason = _loop_attr("stop_reason")
    del _loop_attr

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader, val_loader=None, epochs: int = 1,
            resume_from: str | None = None) -> list[dict]:
        """Train for ``epochs`` epochs in total (a resumed run continues to that total, which
        may be larger than planned: see "Training longer" in :mod:`~tensorcalc.train.loop`);
        returns the history (one dict per epoch)."""
        if isinstance(epochs, bool) or int(epochs) < 1:
            raise ValueError(f"Trainer.fit: epochs must be >= 1, got {epochs}")
        loop = self.loop
        loop.data, loop.val_data, loop.epochs, loop.steps = train_loader, val_loader, \
            int(epochs), None
        return loop.run(resume_from=resume_from)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, loader, return_outputs: bool = False):
        """Mean loss and metrics over ``loader`` (eval mode, no graph). With
        ``return_outputs`` also the stacked outputs and targets (NumPy)."""
        return self.step.evaluate(loader, return_outputs=return_outputs)

    def predict(self, x, batch_size: int = 1024) -> np.ndarray:
        """The model's outputs for inputs ``x`` (NumPy array or Tensor), in eval mode."""
        return self.step.predict(x, batch_size=batch_size)

    def generators(self) -> dict:
        """Every Generator whose state a checkpoint holds (the loader's travels with the
        loader's own state)."""
        return self.step.rngs

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str) -> str:
        """Atomically save everything needed to continue this run exactly."""
        return self.loop.save_checkpoint(path)

    def load_checkpoint(self, path: str, train_loader=None):
        """Restore a :meth:`save_checkpoint` (or a version-1 Trainer checkpoint): model,
        optimiser, schedule, rngs, loader position, counters, history, callbacks. Returns the
        :class:`tensorcalc.serialization.State`."""
        if train_loader is not None:
            self.loop.data = train_loader
        return self.loop.load_checkpoint(path)

