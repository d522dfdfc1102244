"""char-ngram — the count baseline a neural character model must beat, on char-lstm's split.

An n-gram model predicts a character from the n − 1 before it, by counting in the training text
(the first 90 % of the shipped Shakespeare) with add-k smoothing:

    p(x | c) = (N(c, x) + k) / (N(c) + k·V),     V = 77 characters,

and is scored like the neural models: the mean −log p(x_t | x_{t−n+1..t−1}) in nats per character
over the whole validation text (the last 10 %; its first n − 1 characters have no full context
and are skipped). The table reports n = 1..``max_n`` for each k of ``ks``; k is not fitted on the
validation text — every k is shown.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from . import Recipe, RunResult, register
from ._common import write_markdown_report
from .char_lstm import _data, shakespeare_split

LN2 = math.log(2.0)


def _keys(ids, n, V):
    """Integer codes of every n-gram (ids[t−n+1..t]) in ``ids``: Σ_j ids[t−j]·V^j."""
    k = np.zeros(len(ids) - n + 1, dtype=np.int64)
    for j in range(n):
        k = k * V + ids[j:len(ids) - n + 1 + j]
    return k


def _counts(keys, queries):
    """How often each query code occurs among ``keys``."""
    u, c = np.unique(keys, return_counts=True)
    pos = np.searchsorted(u, queries)
    pos = np.minimum(pos, len(u) - 1)
    return np.where(u[pos] == queries, c[pos], 0)


def ngram_nats(train, val, n, V, ks):
    """Validation nats/char of the add-k n-gram model, for each k in ``ks``."""
    joint = _counts(_keys(train, n, V), _keys(val, n, V))
    if n == 1:
        ctx = np.full(len(joint), len(train), dtype=np.int64)
    else:
        ctx = _counts(_keys(train[:-1], n - 1, V), _keys(val[:-1], n - 1, V))
    return {k: float(-np.mean(np.log((joint + k) / (ctx + k * V)))) for k in ks}


def _run(cfg, run_dir, quiet=False, progress=None):
    vocab, tr, va = shakespeare_split()
    V = len(vocab)
    ks = [float(k) for k in cfg["ks"].split(",")]
    rows = {}
    for n in range(1, cfg["max_n"] + 1):
        rows[n] = ngram_nats(tr, va, n, V, ks)
        if not quiet:
            best = min(rows[n].items(), key=lambda kv: kv[1])
            print(f"{n}-gram: " + "  ".join(f"k={k:g}: {v:.4f}" for k, v in rows[n].items())
                  + f"   (best {best[1]:.4f} nats = {best[1] / LN2:.3f} bpc at k={best[0]:g})",
                  flush=True)
    best_n = min(rows, key=lambda n: min(rows[n].values()))
    best_k, best = min(rows[best_n].items(), key=lambda kv: kv[1])
    test = {"val_nats": best, "val_bpc": best / LN2, "n": best_n, "k": best_k,
            "table": {str(n): {str(k): v for k, v in r.items()} for n, r in rows.items()}}
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"test": test}, f, indent=1)
    lines = ["# char-ngram on Shakespeare (validation nats/char, whole validation text)", "",
             "| n | " + " | ".join(f"k = {k:g}" for k in ks) + " |",
             "|---|" + "---|" * len(ks)]
    for n, r in rows.items():
        lines.append(f"| {n} | " + " | ".join(f"{v:.4f}" for v in r.values()) + " |")
    lines += ["", f"Best: {best_n}-gram, k = {best_k:g}: {best:.4f} nats/char = "
              f"{best / LN2:.4f} bits/char.", ""]
    report = write_markdown_report(run_dir, lines)
    return RunResult(run_dir=run_dir, test=test, report=report, config=cfg)


register(Recipe(
    name="char-ngram",
    description="character n-gram counts with add-k smoothing (the baseline for char-lstm)",
    defaults={"max_n": 5, "ks": "0.01,0.05,0.1,0.5,1", "epochs": 1},
    data=_data, run=_run,
    help={"max_n": "largest n (context of n − 1 characters)",
          "ks": "add-k smoothing constants, comma-separated"},
))
