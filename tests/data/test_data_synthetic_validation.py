"""Synthetic data sets and the validation helpers."""

import numpy as np
import pytest

from tensorcalc.data import (
    check_finite,
    check_labels,
    make_blobs,
    make_linear,
    make_moons,
    make_spirals,
)


def test_make_linear_recovers_weights():
    X, y, w, b = make_linear(2000, 3, noise=0.1, rng=0)
    assert X.shape == (2000, 3) and y.shape == (2000,) and w.shape == (3,)
    assert X.dtype == np.float32 and y.dtype == np.float32
    A = np.hstack([X, np.ones((2000, 1), np.float32)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)
    np.testing.assert_allclose(coef[:3], w, atol=0.02)
    assert abs(coef[3] - b) < 0.02
    resid = y - (X @ w + b)
    assert 0.08 < resid.std() < 0.12                    # the requested noise level
    X2, *_ = make_linear(2000, 3, noise=0.1, rng=0)
    np.testing.assert_array_equal(X, X2)


def test_make_moons():
    X, y = make_moons(301, noise=0.0, rng=1)
    assert X.shape == (301, 2) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [151, 150]
    r0 = np.linalg.norm(X[y == 0], axis=1)
    r1 = np.linalg.norm(X[y == 1] - [1.0, 0.5], axis=1)
    np.testing.assert_allclose(r0, 1.0, atol=1e-6)    # on the unit circle without noise
    np.testing.assert_allclose(r1, 1.0, atol=1e-6)
    Xn, _ = make_moons(301, noise=0.2, rng=1)
    assert not np.allclose(Xn, X)


def test_make_spirals():
    X, y = make_spirals(301, classes=3, noise=0.1, rng=2)
    assert X.shape == (301, 2) and np.bincount(y).tolist() == [101, 100, 100]
    assert np.linalg.norm(X, axis=1).max() <= 1.0 + 1e-6


def test_make_blobs():
    X, y, centers = make_blobs(600, centers=4, std=0.5, rng=3, return_centers=True)
    assert X.shape == (600, 2) and centers.shape == (4, 2)
    assert np.bincount(y).tolist() == [150] * 4
    for k in range(4):
        np.testing.assert_allclose(X[y == k].mean(0), centers[k], atol=0.15)
        assert np.all((0.4 < X[y == k].std(0)) & (X[y == k].std(0) < 0.6))
    X2, y2 = make_blobs(10, centers=[[0, 0], [5, 5], [9, 9]], std=0.0, rng=0)
    np.testing.assert_allclose(X2, np.array([[0, 0], [5, 5], [9, 9]])[y2])


def test_synthetic_bad_input():
    with pytest.raises(ValueError, match="make_moons: n"):
        make_moons(0)
    with pytest.raises(ValueError, match="noise"):
        make_linear(10, 2, noise=-1)


def test_check_finite_names_data_set_and_row():
    x = np.zeros((30, 4), np.float32)
    assert check_finite(x, "mnist10k") is x
    x[17, 2] = np.nan
    x[21, 0] = np.inf
    with pytest.raises(ValueError, match=r"^mnist10k: row 17 contains NaN/Inf.*2 of 30 rows"):
        check_finite(x, "mnist10k")
    check_finite(np.arange(5), "ints")                   # integers are always finite
    with pytest.raises(ValueError, match="row 3"):
        check_finite(np.array([0.0, 1.0, 2.0, -np.inf]), "v")


def test_check_labels():
    y = np.array([0, 3, 9, 2])
    assert check_labels(y, 10, "mnist10k") is y
    with pytest.raises(ValueError, match=r"mnist10k: label 10 at row 2 is out of range \[0, 10\)"):
        check_labels(np.array([0, 1, 10, 11]), 10, "mnist10k")
    with pytest.raises(ValueError, match="label -1 at row 0"):
        check_labels(np.array([-1, 1]), 10, "d")
    check_labels(np.array([1.0, 2.0]), 3, "floats")      # whole-number floats are fine
    with pytest.raises(ValueError, match="row 1 is not a whole number"):
        check_labels(np.array([1.0, 2.5]), 3, "floats")
    with pytest.raises(ValueError, match="integer class labels"):
        check_labels(np.array(["a"]), 3, "strings")
