"""MPI data parallelism (mpi4py + MPICH): rank setup, sharded sampling, bucketed allreduce.

Two ways to start a job of N processes (``pip install 'tensorcalc[mpi]'``)::

    tensorcalc train lenet --procs 2          # runs the venv's mpiexec for you
    mpiexec -n 2 tensorcalc train lenet       # or MPI's launcher directly

Every shipped recipe then trains data-parallel (:func:`data_parallel` is applied by the recipe
pipeline); ``tensorcalc tune RECIPE --procs N`` instead spreads its settings × folds over the
ranks (:func:`tasks`). From Python, in a script run under ``mpiexec``::

    from tensorcalc import distributed as dist
    trainer = tc.train.Trainer(model, loss_fn, opt, out_dir="runs/x")
    dist.data_parallel(trainer, loader)      # no-op in a one-process run
    trainer.fit(loader, val, epochs=5)

Modules: :mod:`.comm` (the world, failures, yielding waits), :mod:`.sampler` (disjoint shards
of each global batch, per-example randomness that follows the rows), :mod:`.allreduce`
(gradient averaging over flat buckets), :mod:`.parallel` (the Loop callback).
Performance model and measurements: docs/distributed.md, benchmarks/RESULTS.md.
"""

from __future__ import annotations

import contextlib

from .comm import INSTALL_HINT, World, launched, mpi_available, wait, world

__all__ = ["World", "world", "launched", "mpi_available", "wait", "INSTALL_HINT", "active",
           "independent", "data_parallel", "DataParallel", "GradientAverager", "Shard",
           "shard_loader", "ShardedGenerator", "tasks", "map_tasks", "finish"]

_INDEPENDENT = [0]


def active() -> bool:
    """True in a multi-process MPI job whose runs are data-parallel (not inside
    :func:`independent`)."""
    return launched() > 1 and not _INDEPENDENT[0]


@contextlib.contextmanager
def independent():
    """Runs inside this block are each rank's own (model selection spreads whole runs over the
    ranks): the pipeline does not make them data-parallel."""
    _INDEPENDENT[0] += 1
    try:
        yield
    finally:
        _INDEPENDENT[0] -= 1


def tasks(n: int) -> list[int]:
    """The indices of ``n`` independent tasks this rank does (round robin over the ranks)."""
    w = world()
    return list(range(w.rank, n, w.size))


def map_tasks(fn, n: int) -> list:
    """``[fn(0), …, fn(n−1)]`` computed by the ranks together: each does its :func:`tasks`
    (as independent single-process runs) and every rank gets the whole list, in order."""
    mine = {}
    with independent():
        for i in tasks(n):
            mine[i] = fn(i)
    out = {}
    for part in world().allgather_object(mine):
        out.update(part)
    return [out[i] for i in range(n)]


def finish() -> None:
    """Mark this rank's part of the job done: exiting is no longer a failure."""
    world().finished = True


def __getattr__(name):  # the parts that import the training stack, on first use
    if name in ("data_parallel", "DataParallel"):
        from . import parallel as _m
        return getattr(_m, name)
    if name == "GradientAverager":
        from .allreduce import GradientAverager
        return GradientAverager
    if name in ("Shard", "shard_loader", "ShardedGenerator"):
        from . import sampler as _m
        return getattr(_m, name)
    raise AttributeError(f"module 'tensorcalc.distributed' has no attribute {name!r}")
