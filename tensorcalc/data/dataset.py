"""Datasets: an indexable collection of examples.

A *dataset* is a finite sequence of examples ``D = (d_0, ..., d_{N-1})`` with ``len(D) = N`` and
``D[i] = d_i``. An *array-backed* dataset also answers ``D[idx]`` for an integer index array
``idx`` with the whole batch at once (``D[idx] = (d_{idx_0}, ..., d_{idx_{B-1}})`` stacked along a
new leading axis); the :class:`~tensorcalc.data.DataLoader` uses that to build a batch with one
fancy-indexing call per array instead of a Python loop over examples.

Everything here is NumPy: Tensors appear only where a user asks for them
(``DataLoader(..., as_tensor=True)``).
"""

from __future__ import annotations

import numpy as np

from ..backend import to_numpy

__all__ = ["Dataset", "TensorDataset", "ArrayDataset", "Subset", "as_array"]


def as_array(x, name: str = "array") -> np.ndarray:
    """A NumPy array from an array, a Tensor (its ``.data``), a CuPy array or a nested list."""
    data = getattr(x, "data", None)
    if data is not None and not isinstance(x, np.ndarray) and hasattr(x, "requires_grad"):
        x = data  # a tensorcalc Tensor
    a = to_numpy(x)
    if a.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got an object array")
    return a


class Dataset:
    """Abstract dataset: subclasses define ``__len__`` and ``__getitem__(i)``.

    ``__getitem__`` returns one example: an array, a tuple of arrays (e.g. ``(x_i, y_i)``) or a
    dict of arrays. A subclass that can index whole batches with an integer array sets the class
    attribute ``batch_indexable = True`` and then ``__getitem__(idx)`` with a 1-D int array must
    return the already stacked batch (same structure, leading axis ``len(idx)``).
    """

    batch_indexable = False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __len__")  # abstract

    def __getitem__(self, i):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")  # abstract

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def _apply(fn, a, single: bool):
    """Apply a batch-first transform; for one example, through a batch of one."""
    if fn is None:
        return a
    return fn(a[None])[0] if single else fn(a)


class TensorDataset(Dataset):
    """Examples ``d_i = (a_0[i], a_1[i], ...)`` (or ``{k: a_k[i]}``) from arrays sharing axis 0.

    ``TensorDataset(x, y)`` yields tuples ``(x[i], y[i])``; ``TensorDataset(image=x, label=y)``
    yields dicts; ``TensorDataset(x)`` yields 1-tuples ``(x[i],)``. All arrays must have the same
    length N along axis 0. Tensors are accepted and stored as their NumPy data.

    ``transforms`` maps a position (or key) to a *batch-first* transform (see
    :mod:`tensorcalc.data.transforms`), e.g. ``TensorDataset(x, y, transforms={0: ToFloat()})``.
    A transform is applied to whole batches in the loader's fast path; for a single example
    ``D[i]`` it runs on a batch of one, so both give the same numbers.
    """

    batch_indexable = True

    def __init__(self, *arrays, transforms=None, **named):
        if arrays and named:
            raise TypeError("TensorDataset: pass arrays either positionally or by name, not both")
        if not arrays and not named:
            raise TypeError("TensorDataset: needs at least one array")
        self.keys = tuple(named) if named else None
        items = named.items() if named else ((str(k), a) for k, a in enumerate(arrays))
        self.arrays = tuple(as_array(a, f"TensorDataset[{k}]") for k, a in items)
        names = self.keys if self.keys else tuple(range(len(self.arrays)))
        for k, a in zip(names, self.arrays, strict=True):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: array {k!r} is a scalar; need a leading axis")
        n = {a.shape[0] for a in self.arrays}
        if len(n) != 1:
            shapes = ", ".join(f"{k!r}: {a.shape}" for k, a in zip(names, self.arrays, strict=True))
            raise ValueError(
                f"TensorDataset: all arrays need the same length along axis 0, got {shapes}"
            )
        self._n = n.pop()
        transforms = dict(transforms or {})
        for k in transforms:
            if k not in names:
                raise KeyError(f"TensorDataset: transform for {k!r}, but arrays are {names}")
        self.transforms = tuple(transforms.get(k) for k in names)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        single = isinstance(i, (int, np.integer))
        if single and not -self._n <= i < self._n:
            raise IndexError(f"TensorDataset: index {i} out of range for {self._n} examples")
        pairs = zip(self.arrays, self.transforms, strict=True)
        out = tuple(_apply(t, a[i], single) for a, t in pairs)
        if self.keys is not None:
            return dict(zip(self.keys, out, strict=True))
        return out

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.shape} {a.dtype}" for a in self.arrays)
        return f"TensorDataset(n={self._n}: {shapes})"


class ArrayDataset(TensorDataset):
    """A single array as a dataset: ``D[i] = a[i]`` (no tuple around it)."""

    def __init__(self, array, transform=None):
        super().__init__(array, transforms={0: transform} if transform else None)

    def __getitem__(self, i):
        return super().__getitem__(i)[0]


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``: ``S[j] = D[indices[j]]``.

    Array-backed when ``dataset`` is, so loaders over folds and splits keep the fast path.
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: indices out of range for a dataset of {n} examples")
        self.batch_indexable = getattr(dataset, "batch_indexable", False)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            return self.dataset[int(self.indices[i])]
        return self.dataset[self.indices[i]]
