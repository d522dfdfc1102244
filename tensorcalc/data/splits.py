"""Train / validation / test splits and k-fold cross-validation indices.

Hold-out split: a random subset T ⊂ {0..N-1} of size n_test is the test set, the rest trains.
Stratified: with classes c of sizes N_c, the test set takes n_c examples of class c where n_c is
N_c·n_test/N rounded by the largest-remainder method, so Σ_c n_c = n_test exactly and every
class proportion in the test set is within 1/n_test of its proportion in the data.

k-fold: {0..N-1} is partitioned into k disjoint folds F_1..F_k (sizes ⌊N/k⌋ or ⌈N/k⌉); round j
validates on F_j and trains on the rest, so each index is validated exactly once. Stratified
k-fold deals each class (shuffled) round-robin over the folds, so per-fold class counts differ
by at most one between folds.
"""

from __future__ import annotations

import numpy as np

from ..backend import as_rng
from .dataset import as_array

__all__ = ["train_test_split", "train_val_test_split", "kfold_indices", "split_count"]


def split_count(n: int, size, what: str = "test_size") -> int:
    """Number of examples a size means: a fraction in (0, 1) -> round(size·n), an int -> itself."""
    if isinstance(size, bool):
        raise TypeError(f"{what}: expected a fraction or a count, got {size!r}")
    if isinstance(size, (int, np.integer)):
        k = int(size)
    elif isinstance(size, (float, np.floating)):
        if not 0.0 <= size < 1.0:
            raise ValueError(f"{what}: a fraction must lie in [0, 1), got {size}")
        k = int(round(float(size) * n))
    else:
        raise TypeError(f"{what}: expected a fraction or a count, got {type(size).__name__}")
    if not 0 <= k <= n:
        raise ValueError(f"{what}: {k} examples requested from {n}")
    return k


def _labels(stratify, n: int, who: str) -> np.ndarray:
    y = as_array(stratify, f"{who}: stratify")
    if y.shape[:1] != (n,) or y.ndim != 1:
        raise ValueError(f"{who}: stratify needs one label per example, shape ({n},), got "
                         f"{y.shape}")
    return y


def _stratified_take(y: np.ndarray, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Pick k indices with class proportions of y (largest remainder); return (taken, rest)."""
    n = len(y)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = counts * k / n
    take = np.floor(quota).astype(np.int64)
    short = k - int(take.sum())
    if short:
        # largest fractional parts first; ties broken at random, reproducibly
        frac = quota - take
        order = np.lexsort((rng.random(len(classes)), -frac))
        take[order[:short]] += 1
    taken, rest = [], []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        members = members[rng.permutation(len(members))]
        taken.append(members[: take[c]])
        rest.append(members[take[c]:])
    taken, rest = np.concatenate(taken), np.concatenate(rest)
    return taken[rng.permutation(len(taken))], rest[rng.permutation(len(rest))]


def _n_and_arrays(args, who):
    if len(args) == 1 and isinstance(args[0], (int, np.integer)) and not isinstance(args[0], bool):
        return int(args[0]), None
    if not args:
        raise TypeError(f"{who}: pass a number of examples n or one or more arrays")
    arrays = [as_array(a, who) for a in args]
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{who}: arrays of different lengths {[a.shape for a in arrays]}")
    return lengths.pop(), arrays


def _indices_split(n, sizes, rng, stratify, who):
    """Carve len(sizes) parts (in order) off a permutation of range(n); the rest comes last."""
    rng = as_rng(rng)
    y = _labels(stratify, n, who) if stratify is not None else None
    parts, pool = [], np.arange(n)
    for k in sizes:
        if y is None:
            perm = pool[rng.permutation(len(pool))]
            parts.append(perm[:k])
            pool = perm[k:]
        else:
            taken, rest = _stratified_take(y[pool], k, rng)
            parts.append(pool[taken])
            pool = pool[rest]
    return pool, parts


def train_test_split(*arrays, test_size=0.25, rng=None, stratify=None):
    """Random hold-out split.

    ``train_test_split(n, test_size=...)`` returns index arrays ``(train_idx, test_idx)``;
    ``train_test_split(x, y, test_size=...)`` returns ``(x_train, x_test, y_train, y_test)``
    (one train/test pair per array, in order). ``test_size`` is a fraction in [0, 1) or a count.
    ``stratify`` is a label array: the test set then keeps the class proportions (module doc).
    The split is a function of ``rng`` (Generator or int seed) alone.
    """
    n, data = _n_and_arrays(arrays, "train_test_split")
    k = split_count(n, test_size)
    train, (test,) = _indices_split(n, [k], rng, stratify, "train_test_split")
    if data is None:
        return train, test
    out = []
    for a in data:
        out += [a[train], a[test]]
    return tuple(out)


def train_val_test_split(*arrays, val_size=0.1, test_size=0.2, rng=None, stratify=None):
    """Random three-way split; sizes are fractions of the whole data set (or counts).

    The test set is drawn first, then the validation set from what is left, so for a given rng
    the test set does not depend on ``val_size``. Returns ``(train_idx, val_idx, test_idx)`` for
    ``n``, or ``(a_train, a_val, a_test, b_train, ...)`` for arrays.
    """
    n, data = _n_and_arrays(arrays, "train_val_test_split")
    k_test = split_count(n, test_size, "test_size")
    k_val = split_count(n, val_size, "val_size")
    if k_test + k_val > n:
        raise ValueError(f"train_val_test_split: test ({k_test}) + val ({k_val}) exceed the "
                         f"{n} examples")
    train, (test, val) = _indices_split(n, [k_test, k_val], rng, stratify,
                                        "train_val_test_split")
    if data is None:
        return train, val, test
    out = []
    for a in data:
        out += [a[train], a[val], a[test]]
    return tuple(out)


def kfold_indices(n, k: int = 5, rng=None, shuffle: bool = True, stratify=None):
    """k-fold cross-validation: a list of k pairs ``(train_idx, val_idx)``.

    The validation sets partition range(n): every index is validated in exactly one fold, and
    ``train_idx`` is the complement of ``val_idx``. Without shuffling the folds are contiguous
    blocks; with ``stratify`` (labels) each fold keeps the class proportions (module doc).
    ``n`` may also be an array, whose length is used.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        n = len(n)
    n = int(n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ValueError(f"kfold_indices: k must be an integer in [2, n={n}], got {k!r}")
    rng = as_rng(rng) if shuffle else None
    fold_of = np.empty(n, dtype=np.int64)
    if stratify is None:
        order = rng.permutation(n) if shuffle else np.arange(n)
        for j, block in enumerate(np.array_split(order, k)):
            fold_of[block] = j
    else:
        y = _labels(stratify, n, "kfold_indices")
        _, inverse = np.unique(y, return_inverse=True)
        # members of each class together (shuffled within the class), then dealt round-robin
        if shuffle:
            within = rng.permutation(n)
            order = within[np.argsort(inverse[within], kind="stable")]
        else:
            order = np.argsort(inverse, kind="stable")
        fold_of[order] = np.arange(n) % k
    everything = np.arange(n)
    folds = []
    for j in range(k):
        folds.append((everything[fold_of != j], everything[fold_of == j]))
    return folds
