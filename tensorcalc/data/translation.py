"""English–Spanish sentence pairs for translation (the shipped ``en_es_pairs.tsv.gz``).

21,571 pairs derived from the World English Bible and the Reina-Valera 1909 (public domain; see
``files/PROVENANCE.md`` and the shared data README for how they were aligned). Each pair carries
its verse reference, so the split is by **whole books** (parallel passages would otherwise leak
between train and test):

    test:        ECC LAM JAS 1JN RUT JON HAB ZEP MAL
    validation:  EST PHP COL GAL
    train:       the other 51 books

Tokenisation (the same for training and BLEU): lowercase, then
``re.findall(r"\\w+(?:['’]\\w+)*|[^\\w\\s]")`` — words with inner apostrophes, each punctuation
mark its own token. A word vocabulary keeps the tokens seen at least ``min_count`` times in the
training split; the rest map to ``<unk>``.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter

import numpy as np

from .datasets import data_file

TEST_BOOKS = ("ECC", "LAM", "JAS", "1JN", "RUT", "JON", "HAB", "ZEP", "MAL")
VAL_BOOKS = ("EST", "PHP", "COL", "GAL")
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercased words (inner apostrophes kept) and punctuation marks as separate tokens."""
    return _TOKEN.findall(text.lower())


def load_pairs() -> list[tuple[str, str, str]]:
    """All pairs as (english, spanish, reference), in Bible order."""
    with data_file("en_es_pairs.tsv.gz").open("rb") as f, gzip.open(f, "rt",
                                                                    encoding="utf-8") as g:
        rows = [line.rstrip("\n").split("\t") for line in g if line.strip()]
    return [(r[0], r[1], r[2]) for r in rows]


def book_split(pairs=None) -> dict[str, list[tuple[str, str, str]]]:
    """{"train", "validation", "test"}: the pairs of each split, by whole books (see above)."""
    pairs = load_pairs() if pairs is None else pairs
    out = {"train": [], "validation": [], "test": []}
    for p in pairs:
        book = p[2].split()[0]
        key = "test" if book in TEST_BOOKS else "validation" if book in VAL_BOOKS else "train"
        out[key].append(p)
    return out


class WordVocab:
    """Token ↔ id with the four specials first (<pad> 0, <unk> 1, <bos> 2, <eos> 3)."""

    def __init__(self, tokens):
        self.itos = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences, min_count: int = 2) -> WordVocab:
        """Tokens seen ≥ ``min_count`` times in the tokenised ``sentences``, most frequent first
        (ties alphabetically)."""
        c = Counter(t for s in sentences for t in s)
        return cls(sorted((t for t, n in c.items() if n >= min_count), key=lambda t: (-c[t], t)))

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, eos: bool = True) -> list[int]:
        ids = [self.stoi.get(t, UNK) for t in tokens]
        return ids + [EOS] if eos else ids

    def decode(self, ids) -> list[str]:
        """Tokens up to the first <eos> (specials other than <unk> dropped)."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i])
        return out


def pad_batch(seqs, pad: int = PAD) -> tuple[np.ndarray, np.ndarray]:
    """(ids (B, T) int64 padded with ``pad``, lengths (B,))."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.full((len(seqs), int(lengths.max())), pad, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def corpus_bleu(hypotheses, references) -> float:
    """Corpus BLEU-4 with brevity penalty (sacrebleu, ``tokenize="none"``) on token lists that
    are already tokenised as :func:`tokenize` does (lowercased, punctuation split off)."""
    import sacrebleu

    hyp = [" ".join(h) for h in hypotheses]
    ref = [" ".join(r) for r in references]
    # force: the text is tokenised on purpose (no detokenisation warning per evaluation)
    return float(sacrebleu.corpus_bleu(hyp, [ref], tokenize="none", force=True).score)


__all__ = ["tokenize", "load_pairs", "book_split", "WordVocab", "pad_batch", "corpus_bleu",
           "TEST_BOOKS", "VAL_BOOKS", "PAD", "UNK", "BOS", "EOS"]
