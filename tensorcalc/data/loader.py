"""DataLoader: mini-batches of a dataset, in a reproducible order, resumable mid-epoch.

An epoch visits every example once. With ``shuffle=True`` epoch e uses the order
``π_e = rng.permutation(N)``, drawn from the loader's explicit ``rng`` when the epoch starts, so
the sequence of batches over all epochs is a function of the seed alone. Batch b of an epoch holds
the examples ``π_e[bB : (b+1)B]`` (B the batch size); the last batch is shorter unless
``drop_last=True`` drops it. So ``len(loader) = ⌈N/B⌉``, or ``⌊N/B⌋`` with ``drop_last``.

Fast path: when the dataset is array-backed (a :class:`TensorDataset`, an array, a tuple or dict
of arrays, or a :class:`Subset` of one) and no ``collate_fn`` is given, a batch is built with one
fancy-indexing call per array, ``x[π_e[bB:(b+1)B]]`` — no Python loop over examples.

Resuming (what a trainer needs for bit-identical restarts): :meth:`DataLoader.state_dict` returns

``{"epoch": e, "position": k, "rng_state": s, "num_examples": N, "batch_size": B, ...}``

meaning "k batches of epoch e have been handed out, and the rng's ``bit_generator.state`` was s
when epoch e began". :meth:`DataLoader.load_state_dict` restores s into the loader's rng, so the
next ``iter(loader)`` redraws the same permutation ``π_e`` and continues with batch k; after that
epoch the rng is exactly where an uninterrupted run would have it. A state taken right after the
last batch of an epoch already reads ``epoch = e+1, position = 0``. The state is a plain dict of
Python ints/strings (JSON-serialisable for the default PCG64 bit generator).

Give each loader its own rng (an int seed, or ``np.random.default_rng(seed)``): a Generator shared
with, say, dropout advances with it, and restoring the loader's state rewinds it for both.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ..backend import as_rng, canonical_device, get_default_dtype, to_device
from .dataset import ArrayDataset, Dataset, TensorDataset

__all__ = ["DataLoader", "default_collate", "to_tensors"]


def _to_device(batch, device):
    """A batch (array, Tensor, or tuple/list/dict of them) with every array on ``device``."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if _is_tensor(batch):
        return batch.to(device)
    if hasattr(batch, "dtype") and hasattr(batch, "shape"):
        return to_device(batch, device)
    return batch


def _is_tensor(x) -> bool:
    return hasattr(x, "requires_grad") and hasattr(x, "data") and not isinstance(x, np.ndarray)


def default_collate(samples):
    """Stack a list of examples into a batch along a new leading axis.

    Arrays (and Tensors, by their data) -> ``np.stack``; Python ints -> int64; Python floats ->
    the default float dtype (float32), never float64 by accident; tuples/lists -> a tuple with
    each position collated; dicts -> a dict with each key collated; strings -> a list.
    """
    if len(samples) == 0:
        raise ValueError("default_collate: got an empty list of examples")
    first = samples[0]
    if isinstance(first, dict):
        keys = first.keys()
        for s in samples:
            if not isinstance(s, dict) or s.keys() != keys:
                raise TypeError("default_collate: examples are dicts with different keys")
        return {k: default_collate([s[k] for s in samples]) for k in keys}
    if isinstance(first, (tuple, list)):
        n = len(first)
        for s in samples:
            if not isinstance(s, (tuple, list)) or len(s) != n:
                raise TypeError(f"default_collate: examples are sequences of different lengths "
                                f"(first has {n}, another {len(s)})")
        return tuple(default_collate([s[j] for s in samples]) for j in range(n))
    if isinstance(first, str):
        return list(samples)
    if isinstance(first, bool):
        return np.asarray(samples, dtype=bool)
    if isinstance(first, int):
        return np.asarray(samples, dtype=np.int64)
    if isinstance(first, float):
        return np.asarray(samples, dtype=get_default_dtype())
    if _is_tensor(first):
        samples = [s.data for s in samples]
        first = samples[0]
    if isinstance(first, (np.ndarray, np.generic)):
        shape = np.shape(first)
        for s in samples:
            if np.shape(s) != shape:
                raise ValueError(f"default_collate: examples of different shapes {shape} and "
                                 f"{np.shape(s)}; pass a collate_fn that pads them")
        return np.stack(samples)
    raise TypeError(f"default_collate: cannot batch examples of type {type(first).__name__}")


def to_tensors(batch):
    """The same structure with every array leaf wrapped as a tensorcalc Tensor (dtype kept)."""
    from ..tensor import Tensor  # lazy: the data layer itself never needs Tensors

    if isinstance(batch, dict):
        return {k: to_tensors(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(to_tensors(v) for v in batch)
    if isinstance(batch, np.ndarray):
        return Tensor(batch)
    return batch


def _as_dataset(data):
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray) or _is_tensor(data):
        return ArrayDataset(data)
    if isinstance(data, (tuple, list)):
        return TensorDataset(*data)
    if isinstance(data, dict):
        return TensorDataset(**data)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return data  # any sequence-like object works through the per-example path
    raise TypeError(f"DataLoader: expected a Dataset, an array, or a tuple/dict of arrays, "
                    f"got {type(data).__name__}")


class DataLoader:
    """Iterate over ``dataset`` in mini-batches (see the module docstring for the math).

    Args:
        dataset: a :class:`Dataset`, an array, a tuple/list of arrays (batches are tuples) or a
            dict of arrays (batches are dicts).
        batch_size: B ≥ 1.
        shuffle: draw a new permutation from ``rng`` at the start of every epoch.
        rng: numpy Generator or int seed (required for reproducibility when shuffling; ``None``
            means fresh OS entropy).
        drop_last: drop the final batch if it has fewer than B examples.
        collate_fn: turns a list of examples into a batch; default :func:`default_collate`.
            Giving one disables the array fast path (the function sees single examples).
        as_tensor: yield tensorcalc Tensors instead of NumPy arrays (dtypes kept).
        device: move each batch to this device ('cuda', 'standin') as it is handed out (one
            host-to-device copy per array); ``None`` keeps batches on the host. A Loop running
            a step whose model is on a device sets this on its loaders when it is ``None``.
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = False, rng=None,
                 drop_last: bool = False, collate_fn=None, as_tensor: bool = False,
                 device=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}")
        self.dataset = _as_dataset(dataset)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.rng = as_rng(rng) if (shuffle or rng is not None) else None
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.as_tensor = bool(as_tensor)
        self.device = None if device is None else canonical_device(device)
        self.fast_path = collate_fn is None and getattr(self.dataset, "batch_indexable", False)
        self.epoch = 0          # index of the current (or next) epoch
        self._position = 0      # batches of that epoch already handed out
        self._epoch_rng_state = None  # rng state when the current epoch began (mid-epoch only)
        self._active = False    # an epoch's iteration has started and not finished

    # ---------------------------------------------------------------- sizes
    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.dataset)

    # ---------------------------------------------------------------- iteration
    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if self.shuffle:
            return self.rng.permutation(n)
        return np.arange(n)

    def _fetch(self, idx: np.ndarray):
        if self.fast_path:
            batch = self.dataset[idx]
        else:
            collate = self.collate_fn or default_collate
            batch = collate([self.dataset[int(i)] for i in idx])
        if self.device is not None and self.device != "cpu":
            batch = _to_device(batch, self.device)
        return to_tensors(batch) if self.as_tensor else batch

    def __iter__(self):
        if self._active and self._position > 0:
            # the previous epoch was abandoned part-way: count it as finished
            self._end_epoch()
        return self._epoch()

    def _end_epoch(self):
        self.epoch += 1
        self._position = 0
        self._epoch_rng_state = None
        self._active = False

    def _epoch(self):
        start = self._position
        if self.rng is not None:
            if self._epoch_rng_state is None or start == 0:
                self._epoch_rng_state = copy.deepcopy(self.rng.bit_generator.state)
            else:  # resuming: replay the permutation drawn when this epoch began
                self.rng.bit_generator.state = copy.deepcopy(self._epoch_rng_state)
        else:
            self._epoch_rng_state = {}
        self._active = True
        order = self._order()
        nb, B = len(self), self.batch_size
        if start >= nb:
            self._end_epoch()
            return
        for b in range(start, nb):
            idx = order[b * B:(b + 1) * B]
            if b == nb - 1:
                self._end_epoch()  # a state taken after the last batch points to the next epoch
            else:
                self._position = b + 1
            yield self._fetch(idx)

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """Where the loader stands: ``epoch``, ``position`` (batches handed out in that epoch),
        ``rng_state`` (the rng's bit_generator state when that epoch began; None without rng)
        and the sizes it was built with, checked on restore."""
        if self.rng is None:
            rng_state = None
        elif self._position > 0 and self._epoch_rng_state:
            rng_state = copy.deepcopy(self._epoch_rng_state)
        else:
            rng_state = copy.deepcopy(self.rng.bit_generator.state)
        return {"epoch": self.epoch, "position": self._position, "rng_state": rng_state,
                "num_examples": len(self.dataset), "batch_size": self.batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`: the next ``iter(self)`` continues exactly there."""
        for key in ("num_examples", "batch_size", "shuffle", "drop_last"):
            mine = len(self.dataset) if key == "num_examples" else getattr(self, key)
            if key in state and state[key] != mine:
                raise ValueError(f"DataLoader.load_state_dict: the state was saved with {key}="
                                 f"{state[key]!r}, this loader has {key}={mine!r}")
        position = int(state.get("position", 0))
        if not 0 <= position <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: position {position} outside "
                             f"[0, {len(self)}]")
        rng_state = state.get("rng_state")
        if self.shuffle and rng_state is None:
            raise ValueError("DataLoader.load_state_dict: a shuffling loader needs rng_state")
        if rng_state is not None:
            if self.rng is None:
                self.rng = as_rng(None)
            self.rng.bit_generator.state = copy.deepcopy(rng_state)
        self.epoch = int(state.get("epoch", 0))
        self._position = position
        self._epoch_rng_state = copy.deepcopy(rng_state) if rng_state is not None else {}
        self._active = False

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.dataset)} examples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})")

