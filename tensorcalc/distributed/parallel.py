"""Data-parallel training of a Loop's Step over the ranks of an MPI job.

:func:`data_parallel` turns a single-process run (a :class:`~tensorcalc.train.Trainer`, or a
:class:`~tensorcalc.train.loop.Loop` and its training loader) into one rank of a data-parallel
job. With P processes and a global batch of B:

1. the loader hands each rank its slice of every global batch (:mod:`.sampler`), and the
   per-example randomness (dropout, augmentation) follows the rows, so the P ranks together
   compute exactly what one process computes on the whole batch;
2. when training starts, rank 0's parameters, buffers and optimiser state are broadcast (the
   ranks begin identical even if they were built differently, and after a resume);
3. after every backward the gradients are averaged over flat buckets (:mod:`.allreduce`), so
   every rank takes the same optimiser step and the weights stay identical without ever being
   sent again;
4. the step's logged figures (loss, …) and the epoch's training metrics are averaged over the
   ranks (weighted by their examples), so rank 0's log is the global batch's; the same small
   allreduce carries a "got Ctrl-C / SIGTERM" flag, so all ranks stop after the same step and
   rank 0 saves the checkpoint;
5. only rank 0 writes: on the others the Loop gets no ``out_dir`` (no history, TensorBoard,
   checkpoints) and stays quiet. Every rank resumes from rank 0's checkpoint; because the
   loader's position and every rng state are those of the global run, a checkpoint written by
   P processes resumes on any other number.

Equivalence. After k steps the weights equal a one-process run's with batch B up to float
reassociation: Σ_r w_r g_r sums the per-example gradients in a different order than one
batched matmul does. In float32 the relative difference stays ~1e-6 over a few steps (the tests
assert ≤ 1e-4 on the weights after 6 Adam steps, MLP and CNN with dropout).

Batch normalisation. Statistics are per rank (each normalises its own B/P examples, running
averages kept on each rank and rank 0's saved) — what PyTorch DDP does unless asked for
SyncBatchNorm. With B/P ≥ 32 the difference from global statistics is small; a synchronised
variant would need an allreduce inside every BN layer's forward and backward.

Validation runs on every rank over the whole validation set (identical weights give identical
figures; the cost is that validation does not speed up).
"""

from __future__ import annotations

from .allreduce import GradientAverager
from .comm import World, world
from .sampler import Shard, shard_generators, shard_loader

__all__ = ["DataParallel", "data_parallel"]

try:  # the Callback base (train imports nothing from here: no cycle)
    from ..train.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object


class DataParallel(Callback):
    """The Loop side of data parallelism: broadcast at start, gradient averaging after backward,
    figure averaging (module docstring). Made by :func:`data_parallel`."""

    order = 5  # before schedules and checkpoints

    def __init__(self, step, w: World, shard: Shard, bucket_mb: float = 4.0,
                 mode: str = "buckets"):
        self.step = step
        self.world = w
        self.shard = shard
        self.bucket_mb, self.mode = bucket_mb, mode
        self.averager: GradientAverager | None = None  # built when the run starts: on the
        # device the Loop placed the parameters on
        self._period_count = 0
        self._pending, self._stop = None, False  # a signal seen here / by any rank
        self._old_handlers = None
        self._wrap_step(step)

    # ------------------------------------------------------------------ Loop hooks
    def on_fit_start(self, trainer):
        params = [p for m in self.step.modules.values() for p in m.parameters()]
        a = self.averager
        if a is None or any(p.device != q.device for p, q in zip(params, a.flat.params,
                                                                 strict=True)):
            self.averager = GradientAverager(params, self.world, bucket_mb=self.bucket_mb,
                                             mode=self.mode)
        self.broadcast()
        self._install_signals()

    def after_backward(self, trainer, step, name):
        self.averager.average(self.shard.weight)

    def on_batch_end(self, trainer, logs):
        if not self._stop:
            return
        # every rank learnt in the same step's figure allreduce that some rank got a signal:
        # all stop after this same step; rank 0's Loop saves the checkpoint and says so
        self.world.finished = True
        name = self._pending or "SIGTERM"
        loop = getattr(trainer, "loop", trainer)
        if self.world.is_root:
            loop._signal = name
            return
        from ..train.loop import TrainingInterrupted, TrainingTerminated

        cls = TrainingTerminated if name == "SIGTERM" else TrainingInterrupted
        raise cls(f"rank {self.world.rank}: stopped with the job ({name}) after global step "
                  f"{loop.global_step}; rank 0 saved the checkpoint", None, name)

    def on_fit_end(self, trainer):
        self.world.finished = True
        import signal

        for sig, h in (self._old_handlers or {}).items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)
        self._old_handlers = None

    # ------------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        """Ctrl-C / SIGTERM (mpiexec forwards them to every rank, perhaps in different
        steps) only mark a stop; the ranks agree on it in the next figure allreduce and all
        stop after the same step (:meth:`on_batch_end`). Replaces the Loop's own handler on
        rank 0 (the Loop restores its predecessor when the run ends)."""
        import signal
        import threading

        self._pending, self._stop = None, False
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self._pending:  # a second signal: stop now
                raise KeyboardInterrupt
            self._pending = signal.Signals(signum).name

        self._old_handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)

    # ------------------------------------------------------------------ broadcast
    def broadcast(self) -> None:
        """Rank 0's parameters, buffers and optimiser state to every rank."""
        w = self.world
        if w.comm is None:
            return
        import numpy as np

        for m in self.step.modules.values():
            for t in list(m.parameters()) + list(m.buffers()):
                a = t.data
                if isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable:
                    w.bcast_array(a)
                else:  # a view, or a device array (through the host: MPICH is not CUDA-aware)
                    from ..backend import array_module, to_numpy

                    host = np.ascontiguousarray(to_numpy(a))
                    w.bcast_array(host)
                    a[...] = array_module(a).asarray(host)
        for opt in self.step.optimizers.values():
            state = w.bcast_object(opt.state_dict() if w.is_root else None)
            if not w.is_root:
                opt.load_state_dict(state)

    # ------------------------------------------------------------------ figures
    def _wrap_step(self, step) -> None:
        """Average each step's figures over the ranks (weighted by examples), and the epoch's
        streamed training metrics too."""
        w, shard = self.world, self.shard
        inner_step, inner_start = step.step, step.start_period
        inner_period = step.period_figures

        def dp_step(batch):
            figs = inner_step(batch)
            import numpy as np

            keys = [k for k in figs if k != "n"]
            v = np.array([float(figs[k]) * shard.count for k in keys]
                         + [1.0 if self._pending else 0.0, shard.count], dtype=np.float64)
            w.allreduce_sum(v)
            self._stop = bool(v[-2] > 0)
            out = {k: float(v[i] / v[-1]) for i, k in enumerate(keys)}
            out["n"] = int(v[-1])
            self._period_count += shard.count
            return out

        def dp_start():
            self._period_count = 0
            inner_start()

        def dp_period(running):
            import numpy as np

            d = inner_period(running)
            own = sorted(k for k in d if k not in running)  # the step's streamed metrics
            if own:
                v = np.array([float(d[k]) * self._period_count for k in own]
                             + [self._period_count], dtype=np.float64)
                w.allreduce_sum(v)
                for i, k in enumerate(own):
                    d[k] = float(v[i] / v[-1]) if v[-1] else d[k]
            return d

        step.step, step.start_period, step.period_figures = dp_step, dp_start, dp_period


def data_parallel(trainer, loader=None, *, bucket_mb: float = 4.0, mode: str = "buckets",
                  w: World | None = None):
    """Make ``trainer`` (a Trainer, or a Loop) and its training ``loader`` one rank of a
    data-parallel job over ``w`` (default: this process's :func:`~.comm.world`); see the
    module docstring. A one-process world changes nothing. Returns the
    :class:`DataParallel` callback (None for one process)."""
    w = w or world()
    if w.size <= 1:
        return None
    loop = getattr(trainer, "loop", trainer)
    step = loop.step
    if any(isinstance(c, DataParallel) for c in loop.callbacks):
        return next(c for c in loop.callbacks if isinstance(c, DataParallel))
    shard = Shard(w.rank, w.size)
    loader = loader if loader is not None else loop.data
    if loader is None:
        raise ValueError("data_parallel: the training loader is needed (pass loader=)")
    shard_loader(loader, shard)
    shard_generators(step, shard)
    dp = DataParallel(step, w, shard, bucket_mb=bucket_mb, mode=mode)
    loop.callbacks.append(dp)
    if not w.is_root:  # rank 0 writes; the others train silently
        loop.out_dir = None
        loop.tensorboard = False
        loop.quiet = True
        loop.progress = False
    return dp
