"""Hold-out splits and k-fold indices."""

import numpy as np
import pytest

from tensorcalc.data import kfold_indices, train_test_split, train_val_test_split


def _labels(n=503, seed=0):
    # unbalanced classes: proportions 0.5 / 0.3 / 0.15 / 0.05
    return np.random.default_rng(seed).choice(4, size=n, p=[0.5, 0.3, 0.15, 0.05])


def test_train_test_split_indices_partition_and_determinism():
    tr, te = train_test_split(100, test_size=0.2, rng=0)
    assert len(te) == 20 and len(tr) == 80
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(100))
    tr2, te2 = train_test_split(100, test_size=0.2, rng=0)
    np.testing.assert_array_equal(te, te2)
    _, te3 = train_test_split(100, test_size=0.2, rng=1)
    assert set(te.tolist()) != set(te3.tolist())


def test_train_test_split_arrays():
    x = np.arange(50).reshape(25, 2)
    y = np.arange(25)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=5, rng=3)
    assert x_tr.shape == (20, 2) and x_te.shape == (5, 2)
    np.testing.assert_array_equal(x_te[:, 0] // 2, y_te)   # rows stay paired
    with pytest.raises(ValueError, match="different lengths"):
        train_test_split(x, y[:-1], test_size=5)


def test_stratified_split_keeps_class_proportions():
    y = _labels()
    n_test = 101
    tr, te = train_test_split(len(y), test_size=n_test, rng=0, stratify=y)
    assert len(te) == n_test
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(y)))
    p_all = np.bincount(y, minlength=4) / len(y)
    p_test = np.bincount(y[te], minlength=4) / n_test
    assert np.all(np.abs(p_test - p_all) <= 1.0 / n_test + 1e-12)


def test_train_val_test_split():
    y = _labels(400)
    tr, va, te = train_val_test_split(400, val_size=0.15, test_size=0.25, rng=2, stratify=y)
    assert (len(tr), len(va), len(te)) == (240, 60, 100)
    allidx = np.concatenate([tr, va, te])
    assert len(np.unique(allidx)) == 400
    p_all = np.bincount(y, minlength=4) / 400
    for part in (va, te):
        assert np.all(np.abs(np.bincount(y[part], minlength=4) / len(part) - p_all)
                      <= 1.0 / len(part) + 1e-12)
    # the test set does not depend on the validation size
    _, _, te2 = train_val_test_split(400, val_size=0.05, test_size=0.25, rng=2, stratify=y)
    np.testing.assert_array_equal(np.sort(te), np.sort(te2))
    with pytest.raises(ValueError, match="exceed"):
        train_val_test_split(10, val_size=6, test_size=5)


@pytest.mark.parametrize("bad", [1.0, -0.1, 101, "x"])
def test_bad_sizes(bad):
    with pytest.raises((ValueError, TypeError), match="test_size"):
        train_test_split(100, test_size=bad)


@pytest.mark.parametrize("n,k", [(10, 2), (23, 5), (100, 10), (7, 7)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_kfold_each_index_validated_exactly_once(n, k, shuffle):
    folds = kfold_indices(n, k, rng=0, shuffle=shuffle)
    assert len(folds) == k
    counts = np.zeros(n, int)
    for tr, va in folds:
        counts[va] += 1
        assert len(np.intersect1d(tr, va)) == 0
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(n))
        assert len(va) in (n // k, -(-n // k))
    np.testing.assert_array_equal(counts, 1)


def test_kfold_shuffle_and_determinism():
    a = kfold_indices(30, 3, rng=4)
    b = kfold_indices(30, 3, rng=4)
    for (ta, va), (tb, vb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(va, vb)
        np.testing.assert_array_equal(ta, tb)
    contiguous = kfold_indices(30, 3, shuffle=False)
    np.testing.assert_array_equal(contiguous[0][1], np.arange(10))
    assert not np.array_equal(a[0][1], np.arange(10))


def test_stratified_kfold():
    y = _labels(203)
    k = 5
    folds = kfold_indices(len(y), k, rng=1, stratify=y)
    counts = np.zeros(len(y), int)
    per_fold = []
    for _, va in folds:
        counts[va] += 1
        per_fold.append(np.bincount(y[va], minlength=4))
    np.testing.assert_array_equal(counts, 1)
    per_fold = np.array(per_fold)
    assert (per_fold.max(0) - per_fold.min(0)).max() <= 1      # per-class counts within one
    sizes = per_fold.sum(1)
    assert sizes.max() - sizes.min() <= 1


def test_kfold_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        kfold_indices(5, 1)
    with pytest.raises(ValueError, match="k must be"):
        kfold_indices(5, 6)
