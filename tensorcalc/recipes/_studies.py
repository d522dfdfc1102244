"""Shared pieces of the mathematical studies (saddle-escape, logistic-newton, mle, ...): a
placeholder data declaration for studies that make their own data, a report, and metrics."""

from __future__ import annotations

import os

import numpy as np

from ..train import report as R
from ..train.pipeline import write_json
from . import Data, RunResult


def synthetic_data(name: str, description: str) -> Data:
    """A study that draws its own numbers still declares a (tiny) data set for the pipeline."""
    x = np.zeros((2, 1), dtype=np.float32)
    y = np.zeros(2, dtype=np.float32)
    return Data(name=name, task="regression", train=(x, y), test=(x, y),
                description=description, title=name)


def finish(run_dir, cfg, title, subtitle, cards, blocks, test, seconds=0.0, extra=None):
    """Write report.html (cards, then blocks: ("section", text) / ("figure", png, caption) /
    ("table", rows, header, caption) / ("text", text)) and metrics.json; return a RunResult."""
    rep = R.HTMLReport(title, subtitle)
    rep.cards(cards)
    for b in blocks:
        getattr(rep, b[0])(*b[1:])
    rep.section("Settings")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    write_json(os.path.join(run_dir, "metrics.json"), {"test": test, **(extra or {})})
    return RunResult(run_dir=run_dir, test=test, report=report, train_seconds=seconds,
                     config=cfg, extra=extra or {})


def print_table(header, rows):
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3e}" if (v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5)) else f"{v:.4f}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(b[j]) for b in body)) for j, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for b in body:
        print("  ".join(v.rjust(w) for v, w in zip(b, widths, strict=True)))
