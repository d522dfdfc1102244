"""The MPI world of a data-parallel job: rank, size, local rank, and stopping it cleanly.

A job is started by MPI's launcher (``mpiexec -n N tensorcalc train mlp``, or
``tensorcalc train mlp --procs N``, which runs the venv's ``mpiexec`` for you). Each of the N
processes runs the same program; :func:`world` tells it who it is:

* ``rank`` ∈ {0, …, N−1} — rank 0 is the one that writes (logs, checkpoints, reports);
* ``size`` = N;
* ``local_rank`` — its index among the processes on the same host (for choosing a GPU).

Without a launcher (no ``PMI_SIZE`` / ``OMPI_COMM_WORLD_SIZE`` in the environment) the world is
one process and mpi4py is never imported: single-process training costs nothing extra.

Failure. A job must never hang because one rank is gone. ``mpiexec`` (MPICH's Hydra) kills every
rank when one dies from a signal (SIGKILL, a segfault). A rank that *raises* is handled here: an
uncaught exception, or an exit with the run unfinished (the CLI turns errors into exit status 2),
prints ``tensorcalc: rank R of N ...`` and calls ``MPI_Abort``, which stops the whole job within
seconds — the others may be blocked in an allreduce that would otherwise wait forever.

Waiting without spinning. MPICH polls for progress in a busy loop while a rank waits in a
blocking call. With more processes × threads than cores (a loaded machine, or a rank that
finishes its shard early), that polling steals the core a computing rank needs. Every wait of
this package therefore uses non-blocking calls and :func:`wait`, which tests the request and
yields the core between tests (``TENSORCALC_MPI_WAIT=spin`` restores MPI's own blocking wait;
``yield`` — the default — tests in a tight loop for ``TENSORCALC_MPI_SPIN_US`` microseconds,
default 200, so a partner that is nearly there costs no sleep, then sleeps
``TENSORCALC_MPI_POLL_US`` microseconds, default 50, between tests). Rule of thumb for users:
processes × BLAS threads ≤ physical cores.
"""

from __future__ import annotations

import atexit
import os
import sys
import time

__all__ = ["World", "world", "launched", "is_distributed", "mpi_available", "wait",
           "INSTALL_HINT"]

INSTALL_HINT = ("data-parallel training needs MPI: pip install 'tensorcalc[mpi]' "
                "(mpi4py and the MPICH wheel, which brings its own mpiexec)")

_ENV_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
_WORLD = None


def launched() -> int:
    """The number of processes an MPI launcher started (1 without a launcher), read from the
    environment without importing MPI."""
    for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        v = os.environ.get(k)
        if v and v.isdigit():
            return int(v)
    return 1


def mpi_available() -> bool:
    """mpi4py importable (and its MPI library loadable)."""
    try:
        from mpi4py import MPI  # noqa: F401
    except Exception:  # ImportError, or a missing libmpi (mpi4py without an MPI)
        return False
    return True


class World:
    """Who this process is in the job (see the module docstring). ``comm`` is the mpi4py
    communicator (None for a one-process world)."""

    def __init__(self, comm=None):
        self.comm = comm
        if comm is None:
            self.rank, self.size, self.local_rank = 0, 1, 0
        else:
            self.rank, self.size = comm.Get_rank(), comm.Get_size()
            self.local_rank = int(os.environ.get("MPI_LOCALRANKID",
                                                 os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK",
                                                                self.rank)))
        self.finished = False   # the training part is over: exiting is no longer a failure

    def __repr__(self):
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # --------------------------------------------------------------- collectives (yielding)
    def barrier(self) -> None:
        if self.comm is not None:
            wait(self.comm.Ibarrier())

    def bcast_object(self, obj, root: int = 0):
        """A small Python object from ``root`` to every rank (in memory only)."""
        if self.comm is None:
            return obj
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj) -> list:
        if self.comm is None:
            return [obj]
        return self.comm.allgather(obj)

    def bcast_array(self, a, root: int = 0) -> None:
        """Overwrite the contiguous array ``a`` with root's, in place."""
        if self.comm is not None:
            wait(self.comm.Ibcast(a, root=root))

    def allreduce_sum(self, a) -> None:
        """``a`` ← Σ_ranks a, in place."""
        if self.comm is not None:
            from mpi4py import MPI

            wait(self.comm.Iallreduce(MPI.IN_PLACE, a, op=MPI.SUM))

    def abort(self, message: str, code: int = 1) -> None:
        print(f"tensorcalc: rank {self.rank} of {self.size}: {message}", file=sys.stderr,
              flush=True)
        if self.comm is not None:
            # MPI_Abort makes mpiexec kill every process at once, and output its I/O proxy has
            # not forwarded yet is lost: give it a moment, so the line above always arrives
            # (without this the message went missing in about 1 run of 6)
            time.sleep(0.3)
            self.comm.Abort(code)
        os._exit(code)


def wait(request) -> None:
    """Complete an MPI request, yielding the core between tests (module docstring)."""
    if os.environ.get("TENSORCALC_MPI_WAIT", "yield") == "spin":
        request.Wait()
        return
    spin = float(os.environ.get("TENSORCALC_MPI_SPIN_US", "200")) * 1e-6
    pause = float(os.environ.get("TENSORCALC_MPI_POLL_US", "50")) * 1e-6
    t0 = time.perf_counter()
    while not request.Test():  # a short spin catches a partner that is nearly there ...
        if time.perf_counter() - t0 > spin:
            break
    else:
        return
    while not request.Test():  # ... then give the core back between tests
        time.sleep(pause)


def world() -> World:
    """This process's :class:`World`; the first call in an MPI-launched process initialises
    MPI and installs the stop-the-job-on-error handlers (module docstring)."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    if launched() <= 1:
        _WORLD = World(None)
        return _WORLD
    try:
        from mpi4py import MPI
    except Exception as e:
        raise RuntimeError(f"this process was started by an MPI launcher but mpi4py cannot be "
                           f"imported ({e}); {INSTALL_HINT}") from None
    w = World(MPI.COMM_WORLD)
    _WORLD = w
    if w.size > 1:
        _install_failure_handlers(w)
    return w


def is_distributed() -> bool:
    """More than one process in this job."""
    return launched() > 1 and world().size > 1


def _install_failure_handlers(w: World) -> None:
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        previous(kind, value, tb)
        if w.finished:  # a stop every rank agreed on (a signal): leave together, no abort
            return
        w.abort(f"stopped by {kind.__name__}: {' '.join(str(value).split())}; stopping every "
                "rank")

    sys.excepthook = excepthook

    def at_exit():
        if not w.finished:  # an error the CLI reported (exit status 2), or sys.exit mid-run
            w.abort("exited before the run finished (its error is printed above); stopping "
                    "every rank")
        w.barrier()  # every rank leaves together, yielding while the others finish up

    atexit.register(at_exit)  # runs before mpi4py's MPI_Finalize (registered earlier)
