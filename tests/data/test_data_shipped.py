"""The shipped data sets: MNIST-10k and Shakespeare; CharVocab."""

import numpy as np
import pytest

from tensorcalc.data import (
    MNIST10K_CLASS_COUNTS,
    CharVocab,
    load_mnist10k,
    load_shakespeare,
    mnist10k_split,
)

COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def test_mnist10k_shapes_dtypes_counts():
    x, y = load_mnist10k()
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == COUNTS == list(MNIST10K_CLASS_COUNTS)
    assert x.max() == 255 and x.min() == 0
    # real digits: mostly background, a few percent of ink per image
    ink = (x > 127).mean(axis=(1, 2))
    assert 0.02 < ink.mean() < 0.4 and ink.min() > 0


def test_mnist10k_split_standard():
    s = mnist10k_split()
    (xtr, ytr), (xte, yte) = s.train, s.test
    assert ytr.shape == (8000,)
    assert s.val is None
    assert xtr.shape == (8000, 28, 28) and xte.shape == (2000, 28, 28)
    assert xte.dtype == np.uint8
    idx = np.concatenate([s.indices["train"], s.indices["test"]])
    assert len(np.unique(idx)) == 10000
    # stratified: each digit has its share of the 2,000 (within one image)
    expected = np.array(COUNTS) * 2000 / 10000
    assert np.all(np.abs(np.bincount(yte, minlength=10) - expected) < 1)
    # deterministic
    s2 = mnist10k_split()
    np.testing.assert_array_equal(s.indices["test"], s2.indices["test"])
    np.testing.assert_array_equal(s2.test[0], xte)


def test_mnist10k_split_with_val_keeps_the_test_set():
    s = mnist10k_split(val_size=1000)
    assert [len(p[1]) for p in (s.train, s.val, s.test)] == [7000, 1000, 2000]
    base = mnist10k_split()
    np.testing.assert_array_equal(np.sort(s.indices["test"]), np.sort(base.indices["test"]))
    assert len(np.intersect1d(s.indices["val"], s.indices["test"])) == 0
    other = mnist10k_split(seed=1)
    assert not np.array_equal(np.sort(other.indices["test"]), np.sort(base.indices["test"]))


def test_shakespeare_and_char_vocab():
    text = load_shakespeare()
    assert isinstance(text, str) and 4_700_000 < len(text) < 4_900_000
    assert text.startswith("THESEUS:")
    vocab = CharVocab.from_text(text)
    assert 60 < len(vocab) < 100
    ids = vocab.encode(text)
    assert ids.shape == (len(text),) and ids.dtype == np.int64
    assert ids.min() == 0 and ids.max() == len(vocab) - 1
    assert vocab.decode(ids[:5000]) == text[:5000]
    assert vocab.decode(vocab.encode("ROMEO:")) == "ROMEO:"
    assert CharVocab.from_dict(vocab.to_dict()) == vocab


def test_char_vocab_unknown():
    v = CharVocab("abc")
    np.testing.assert_array_equal(v.encode("cab"), [2, 0, 1])
    with pytest.raises(ValueError, match=r"'z' at position 1"):
        v.encode("az")
    with pytest.raises(ValueError, match="outside"):
        v.decode([0, 3])
    u = CharVocab("abc?", unk="?")
    assert u.decode(u.encode("a€z")) == "a??"
