"""Augmentations: shapes, dtypes and labels preserved; reproducible by seed; what each does."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc.data.augment import (
    Compose,
    Cutout,
    GaussianNoise,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
)

X = np.random.default_rng(0).random((6, 2, 10, 10)).astype(np.float32)
Y = np.arange(6)

MAKERS = [
    lambda r: RandomCrop(10, padding=2, rng=r),
    lambda r: RandomHorizontalFlip(0.5, rng=r),
    lambda r: RandomAffine(15, translate=0.1, scale=(0.9, 1.1), rng=r),
    lambda r: RandomAffine(15, order=0, rng=r),
    lambda r: GaussianNoise(0.1, rng=r),
    lambda r: Cutout(4, rng=r),
    lambda r: Compose([RandomCrop(10, 2), RandomHorizontalFlip(), RandomAffine(10),
                       GaussianNoise(0.05), Cutout(3)], rng=r),
]


@pytest.mark.parametrize("make", MAKERS)
def test_shape_dtype_labels_preserved_and_seeded(make):
    x0 = X.copy()
    out, y = make(7)(X, Y)
    assert out.shape == X.shape and out.dtype == X.dtype
    assert y is Y and np.array_equal(y, np.arange(6))
    np.testing.assert_array_equal(X, x0)  # input untouched
    again, _ = make(7)(X, Y)
    np.testing.assert_array_equal(out, again)  # same seed, same batch
    other = make(8)(X)
    assert not np.array_equal(out, other)  # different seed, different batch
    assert make(7)(X[:, 0]).shape == X[:, 0].shape  # (N, H, W) works too


def test_random_crop_is_a_translation_of_the_padded_image():
    out = RandomCrop(10, padding=2, rng=0)(X)
    for n in range(len(X)):
        padded = np.pad(X[n], ((0, 0), (2, 2), (2, 2)))
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(padded[:, i:i + 10, j:j + 10], out[n])]
        assert hits


def test_flip_probabilities():
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(X), X[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(X), X)


def test_affine_identity_rotation_translation_scale():
    np.testing.assert_allclose(RandomAffine(0)(X), X, atol=1e-6)
    img = np.zeros((2, 1, 7, 7), np.float32)
    img[:, 0, 1, 3], img[:, 0, 2, 3] = 1.0, 0.5  # an arrow pointing up from the centre
    for order in (0, 1):  # exact angles: both samplers agree with np.rot90 (counter-clockwise)
        np.testing.assert_allclose(RandomAffine((90, 90), order=order)(img),
                                   np.rot90(img, 1, axes=(2, 3)), atol=1e-6)
        np.testing.assert_allclose(RandomAffine((-90, -90), order=order)(img),
                                   np.rot90(img, -1, axes=(2, 3)), atol=1e-6)
    shifted = RandomAffine(0, translate=0.5, rng=0)(img)
    assert shifted.sum() <= img.sum() + 1e-6  # bilinear translation only moves/loses mass
    big = RandomAffine(0, scale=(2.0, 2.0), order=0)(img)
    assert big[0, 0, 3, 3] == 0.0 and big[0, 0, 1, 3] == 0.5  # distance to centre doubled
    with pytest.raises(ValueError, match="degrees"):
        RandomAffine((10, -10))


def test_noise_statistics_and_cutout_area():
    z = np.zeros((200, 1, 16, 16), np.float32)
    n = GaussianNoise(0.5, rng=0)(z)
    assert abs(n.std() - 0.5) < 0.01 and abs(n.mean()) < 0.01
    ones = np.ones((50, 1, 16, 16), np.float32)
    c = Cutout(4, rng=0)(ones)
    holes = (c == 0).sum(axis=(1, 2, 3))
    assert holes.max() == 16 and holes.min() >= 4  # full square, or cut at a border


def test_tensor_in_tensor_out_and_integer_images():
    out = RandomCrop(10, padding=1, rng=0)(tc.tensor(X))
    assert isinstance(out, tc.Tensor) and out.shape == X.shape
    u8 = (X * 255).astype(np.uint8)
    assert GaussianNoise(20.0, rng=0)(u8).dtype == np.uint8
    assert RandomAffine(10, rng=0)(u8).dtype == np.uint8


def test_bad_input():
    with pytest.raises(ValueError, match="augment"):
        RandomCrop(3)(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="RandomCrop"):
        RandomCrop(20, padding=1)(X)
    with pytest.raises(ValueError):
        RandomHorizontalFlip(1.5)
