"""Sharded sampling: each rank trains on a disjoint slice of every global batch.

Every rank holds the same :class:`~tensorcalc.data.DataLoader` with the same seeded ``rng``, so
each epoch all ranks draw the *same* permutation π of the N examples. Global batch b is
π[bB : (b+1)B]; rank r of P keeps its rows ``[⌊rn/P⌋, ⌊(r+1)n/P⌋)`` (n = the batch's length,
B except perhaps for the last). The shards of one batch are disjoint and cover it, so over an
epoch every example is seen exactly once by exactly one rank — the same examples, in the same
global batches, as a single process with batch B.

Averaging the gradients. Rank r's loss is the mean over its n_r examples, so its gradient is
g_r = (1/n_r) Σ_{i∈r} ∇ℓᵢ. The single-process gradient of the global batch is

    g = (1/n) Σᵢ ∇ℓᵢ = Σ_r (n_r / n) g_r,

which the allreduce computes exactly (any split, uneven last batch included) by summing the
weighted g_r: :attr:`Shard.weight` = n_r / n.

Randomness that follows the batch. Dropout masks and augmentations draw random numbers per
example. :class:`ShardedGenerator` makes those draws equal to the single-process run's: a draw
whose first axis is the local batch length n_r draws the whole global batch (n rows) from the
shared stream and keeps the rank's rows. Every rank therefore advances its generator exactly as
one process would — rng states in checkpoints do not depend on the number of processes, which is
what lets a run resume with a different number of them. The cost is P× the random numbers of
such draws (cheap next to the matmuls they mask). Draws of any other shape are taken whole on
every rank (identical everywhere, as in one process). The match is exact for the draws
NumPy makes row by row in C order: ``random``, ``standard_normal``, ``integers``,
``uniform``, ``normal`` — what dropout and the shipped augmentations use.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Shard", "shard_loader", "ShardedGenerator", "shard_generators"]


class Shard:
    """The current global batch's split: ``total`` examples, this rank's ``offset`` and
    ``count``; ``weight`` = count / total (the gradient's share)."""

    __slots__ = ("rank", "size", "total", "offset", "count")

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size
        self.total = self.offset = self.count = 0

    def split(self, n: int) -> slice:
        lo, hi = (self.rank * n) // self.size, ((self.rank + 1) * n) // self.size
        self.total, self.offset, self.count = n, lo, hi - lo
        return slice(lo, hi)

    @property
    def weight(self) -> float:
        return self.count / self.total if self.total else 0.0


class _ShardFetch:
    """The loader's ``_fetch`` restricted to this rank's rows of each global batch."""

    def __init__(self, fetch, shard: Shard):
        self.fetch, self.shard = fetch, shard

    def __call__(self, idx):
        n = len(idx)
        if n < self.shard.size:
            raise ValueError(
                f"distributed: a global batch of {n} example(s) cannot be split over "
                f"{self.shard.size} processes (each needs at least one); choose a batch size "
                f"that leaves a last batch of at least {self.shard.size} or use drop_last")
        return self.fetch(idx[self.shard.split(n)])


def shard_loader(loader, shard: Shard):
    """Make ``loader`` (a DataLoader) hand out this rank's slice of each global batch (module
    docstring). Its length, epochs, shuffling and ``state_dict`` stay those of the global
    loader — a checkpoint's loader position is the same for any number of processes. Returns
    the loader (changed in place)."""
    if isinstance(getattr(loader, "_fetch", None), _ShardFetch):
        return loader
    n = loader.num_examples
    B = loader.batch_size
    last = n % B
    if not getattr(loader, "drop_last", False) and 0 < last < shard.size:
        raise ValueError(f"distributed: {n} examples in batches of {B} leave a last batch of "
                         f"{last}, too few for {shard.size} processes; change the batch size")
    if B < shard.size:
        raise ValueError(f"distributed: batch size {B} is smaller than the {shard.size} "
                         "processes it is split over")
    loader._fetch = _ShardFetch(loader._fetch, shard)
    return loader


class ShardedGenerator(np.random.Generator):
    """A Generator over the same bit generator as the wrapped one whose per-example draws
    are the rank's rows of the global batch's draws (module docstring)."""

    def __init__(self, bit_generator, shard: Shard):
        super().__init__(bit_generator)
        self.shard = shard

    def _global(self, size):
        """(global size, rows to keep) when ``size`` is batch-shaped on this rank, else None."""
        s = self.shard
        if size is None or not s.total or s.total == s.count:
            return None
        shape = (size,) if isinstance(size, (int, np.integer)) else tuple(size)
        if not shape or shape[0] != s.count:
            return None
        return (s.total,) + shape[1:], slice(s.offset, s.offset + s.count)

    def random(self, size=None, dtype=np.float64, out=None):
        g = self._global(size) if out is None else None
        if g is None:
            return super().random(size, dtype, out)
        return super().random(g[0], dtype)[g[1]]

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        g = self._global(size) if out is None else None
        if g is None:
            return super().standard_normal(size, dtype, out)
        return super().standard_normal(g[0], dtype)[g[1]]

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        g = self._global(size)
        if g is None:
            return super().integers(low, high, size, dtype, endpoint)
        return super().integers(low, high, g[0], dtype, endpoint)[g[1]]

    def uniform(self, low=0.0, high=1.0, size=None):
        g = self._global(size)
        if g is None:
            return super().uniform(low, high, size)
        return super().uniform(low, high, g[0])[g[1]]

    def normal(self, loc=0.0, scale=1.0, size=None):
        g = self._global(size)
        if g is None:
            return super().normal(loc, scale, size)
        return super().normal(loc, scale, g[0])[g[1]]


def shard_generators(step, shard: Shard) -> list[str]:
    """Replace every Generator the step draws per-example randomness from — the step's own
    (``step.rng``: augmentation) and those its modules hold (dropout) — with a
    :class:`ShardedGenerator` over the same bit generator. Returns the names replaced."""
    done = []
    if isinstance(getattr(step, "rng", None), np.random.Generator) and \
            not isinstance(step.rng, ShardedGenerator):
        step.rng = ShardedGenerator(step.rng.bit_generator, shard)
        done.append("step")
    for mname, model in step.modules.items():
        mods = model.named_modules() if hasattr(model, "named_modules") else [("", model)]
        for name, m in mods:
            for k, v in list(vars(m).items()):
                if isinstance(v, np.random.Generator) and not isinstance(v, ShardedGenerator):
                    setattr(m, k, ShardedGenerator(v.bit_generator, shard))
                    done.append(f"{mname}.{name}.{k}" if name else f"{mname}.{k}")
    return done
