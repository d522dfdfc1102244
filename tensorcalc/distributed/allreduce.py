"""Gradient averaging over flat buckets.

After backward each rank holds g_r, the gradient of its shard's mean loss; every rank must step
with the global batch's gradient g = Σ_r w_r g_r (w_r = n_r / n, see :mod:`.sampler`). The
parameters' gradients are moved into one contiguous buffer
(:meth:`~tensorcalc.optim.flat.FlatParameters.grad_vector`: each ``p.grad`` becomes a view of
it), scaled by w_r, and summed over ranks in place — so the optimiser, which reads ``p.grad``,
sees g without a copy back.

Buckets. An allreduce costs a latency α plus β per byte; one call per parameter pays α once per
tensor (10 calls for a small MLP, 60+ for a ResNet). The buffer is cut into buckets of about
``bucket_mb`` MB (whole parameters, in reverse registration order — the order backward
finishes them); all buckets are started as non-blocking ``Iallreduce`` and completed together,
so the transfers pipeline in the MPI library. ``bucket_mb=0`` gives one bucket for the whole
buffer (the fewest calls); ``mode="per_tensor"`` is the naive baseline the benchmark compares
against: one call per parameter, one after another.

Overlap with backward. PyTorch DDP and Horovod start a bucket's allreduce while backward is
still computing earlier layers' gradients; that needs a "this gradient is final" hook inside
the autodiff engine, which tensorcalc's engine (gradients accumulate into leaves when the walk
ends) does not have. Here all buckets start when backward has finished. On this 2-core machine
the overlap could not pay anyway: with 2 ranks × 1 BLAS thread every core is computing, and
communication progress (MPICH's shared-memory copies) needs a core too — measured figures in
benchmarks/RESULTS.md ("MPI data parallelism").

Statistics: :attr:`calls`, :attr:`bytes` (per rank, sent into the allreduce per step) and
:attr:`seconds` (time inside the allreduce, including waiting for the slower rank) accumulate
over the run.
"""

from __future__ import annotations

import time

import numpy as np

from ..backend import array_module, to_numpy
from ..optim.flat import FlatParameters
from .comm import World, wait

__all__ = ["GradientAverager"]


class GradientAverager:
    """Average the gradients of ``params`` over the ranks of ``world`` (module docstring).

    Args:
        params: the parameters (one dtype).
        world: the :class:`~tensorcalc.distributed.comm.World`.
        bucket_mb: bucket size in MB (0: one bucket).
        mode: ``"buckets"`` (default) or ``"per_tensor"`` (one call per parameter).
    """

    def __init__(self, params, world: World, bucket_mb: float = 4.0, mode: str = "buckets"):
        if mode not in ("buckets", "per_tensor"):
            raise ValueError(f"GradientAverager: mode must be 'buckets' or 'per_tensor', "
                             f"got {mode!r}")
        self.flat = FlatParameters(params)
        self.world = world
        self.mode = mode
        self.calls = 0
        self.bytes = 0
        self.seconds = 0.0
        self.steps = 0
        itemsize = np.dtype(self.flat.vector.dtype).itemsize
        limit = max(1, int(bucket_mb * 2**20 / itemsize)) if bucket_mb > 0 else self.flat.numel
        # whole parameters, from the last registered (its gradient is ready first) backwards
        self.buckets: list[tuple[int, int]] = []
        hi = self.flat.numel
        lo = hi
        for off in reversed(self.flat.offsets):
            if hi - off > limit and lo < hi:
                self.buckets.append((lo, hi))
                hi = lo
            lo = off
        self.buckets.append((lo, hi))

    @property
    def numel(self) -> int:
        return self.flat.numel

    def average(self, weight: float) -> None:
        """g ← Σ_ranks weight_r · g_r, in the parameters' ``.grad`` (views of one buffer)."""
        dev = self.flat.grad_vector()
        if weight != 1.0:
            dev *= dev.dtype.type(weight)
        # MPICH's wheel is not CUDA-aware: a device buffer goes through the host (one copy each
        # way; untested on a GPU here)
        g = dev if isinstance(dev, np.ndarray) else to_numpy(dev)
        comm = self.world.comm
        t = time.perf_counter()
        if comm is not None:
            from mpi4py import MPI

            if self.mode == "per_tensor":
                for off, n in zip(self.flat.offsets, self.flat.sizes, strict=True):
                    wait(comm.Iallreduce(MPI.IN_PLACE, g[off:off + n], op=MPI.SUM))
                self.calls += len(self.flat.sizes)
            else:
                reqs = [comm.Iallreduce(MPI.IN_PLACE, g[lo:hi], op=MPI.SUM)
                        for lo, hi in self.buckets]
                for r in reqs:
                    wait(r)
                self.calls += len(reqs)
            self.bytes += g.nbytes
            if g is not dev:
                dev[...] = array_module(dev).asarray(g)
        self.seconds += time.perf_counter() - t
        self.steps += 1
