"""Transforms: each callable on arrays, composable."""

import numpy as np
import pytest

from tensorcalc.data import Compose, Flatten, Lambda, Normalize, OneHot, ToFloat


def test_to_float():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    y = ToFloat()(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.0, 0.2, 1.0]], rtol=1e-6)
    z = ToFloat(scale=2.0, dtype=np.float64)(x)
    assert z.dtype == np.float64 and z[0, 2] == 510.0
    f32 = np.ones(3, np.float32)
    assert ToFloat(scale=0.5)(f32).dtype == np.float32           # never upcast float32
    assert f32[0] == 1.0                                          # input untouched


def test_normalize_and_fit():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((500, 3)) * [1.0, 2.0, 5.0] + [0.0, -1.0, 3.0]).astype(np.float32)
    t = Normalize.fit(x)
    y = t(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(t.inverse(y), x, atol=1e-4)
    n = Normalize(0.5, 0.25)(np.array([0.5, 1.0], np.float32))
    np.testing.assert_allclose(n, [0.0, 2.0])
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(0.0, 0.0)
    with pytest.raises(ValueError, match="broadcast"):
        Normalize(np.zeros(3), np.ones(3))(np.zeros((2, 4), np.float32))
    # constant feature: passes through centred instead of dividing by zero
    c = Normalize.fit(np.ones((4, 2)))(np.ones((4, 2)))
    assert np.all(np.isfinite(c)) and np.all(c == 0)


def test_one_hot():
    y = np.array([2, 0, 1])
    oh = OneHot(3)(y)
    assert oh.shape == (3, 3) and oh.dtype == np.float32
    np.testing.assert_array_equal(oh.argmax(1), y)
    np.testing.assert_array_equal(oh.sum(1), 1)
    assert OneHot(4)(np.zeros((2, 5), int)).shape == (2, 5, 4)
    with pytest.raises(ValueError, match="label 3 outside"):
        OneHot(3)(np.array([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        OneHot(3)(np.array([0.5]))


def test_flatten():
    x = np.zeros((4, 28, 28))
    assert Flatten()(x).shape == (4, 784)
    assert Flatten(start_axis=2)(np.zeros((2, 3, 4, 5))).shape == (2, 3, 20)


def test_compose():
    pipe = Compose([ToFloat(), Flatten(), Normalize(0.5, 0.5)])
    x = np.full((2, 2, 2), 255, np.uint8)
    y = pipe(x)
    assert y.shape == (2, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, 1.0)
    assert len(ToFloat() + Flatten() + Lambda(lambda a: a * 2)) == 3
    assert len(Compose([pipe, OneHot(2)])) == 4     # nested pipelines are flattened
    with pytest.raises(TypeError, match="not callable"):
        Compose([1])
