"""Run logs: a live progress bar, a CSV of the per-epoch history, TensorBoard event files.

* :class:`ProgressBar` — a ``tqdm`` bar over an epoch's batches showing the running loss and
  metrics; silent when ``quiet`` or when stderr is not a terminal (CI logs stay clean).
* :class:`CSVLog` — ``history.csv``: one row per epoch (epoch, step, lr, seconds, train_* and
  val_* figures). Rewritten whole from the history on every epoch, so a resumed run's file holds
  exactly the epochs the checkpoint knows about.
* :class:`TensorBoardLog` — ``tb/`` event files via ``tensorboardX.SummaryWriter``: per-step
  training loss and learning rate, per-epoch figures. A resumed run purges the events written
  after its checkpoint's step (``purge_step``) so the curves do not fork.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys

__all__ = ["ProgressBar", "CSVLog", "TensorBoardLog", "format_metrics", "stderr_is_tty"]


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4f}"
    return str(v)


def format_metrics(d: dict, keys=None) -> str:
    """``"loss 0.1234  acc 0.9710"`` from a dict of figures (optionally only ``keys``)."""
    keys = keys if keys is not None else list(d)
    return "  ".join(f"{k} {_fmt(d[k])}" for k in keys if k in d)


_BAR = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}"


class ProgressBar:
    """A per-epoch tqdm bar with live postfix figures; a no-op when disabled."""

    def __init__(self, enabled: bool | None = None, quiet: bool = False):
        self.enabled = (not quiet) and (stderr_is_tty() if enabled is None else enabled)
        self._bar = None

    def start(self, total: int, desc: str, initial: int = 0):
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        cols = shutil.get_terminal_size((100, 20)).columns or 100
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=True,
                         ncols=min(cols, 130), file=sys.stderr, bar_format=_BAR)

    def update(self, n: int = 1, **figures):
        if self._bar is None:
            return
        self._bar.update(n)
        if figures:
            self._bar.set_postfix({k: _fmt(v) for k, v in figures.items()}, refresh=False)

    def close(self, **figures):
        if self._bar is None:
            return
        if figures:
            self._bar.set_postfix({k: _fmt(v) for k, v in figures.items()}, refresh=True)
        self._bar.close()
        self._bar = None


class CSVLog:
    """``history.csv``: the list of per-epoch dicts, written atomically (temp file + rename)."""

    def __init__(self, path: str):
        self.path = path

    def write(self, history: list[dict]) -> None:
        keys: list[str] = []
        for row in history:
            for k in row:
                if k not in keys:
                    keys.append(k)
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            for row in history:
                w.writerow({k: row.get(k, "") for k in keys})
        os.replace(tmp, self.path)


def read_history(path: str) -> list[dict]:
    """The rows of a ``history.csv`` with numbers parsed back to int / float."""
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            d = {}
            for k, v in row.items():
                if v == "" or v is None:
                    continue
                try:
                    d[k] = int(v)
                except ValueError:
                    try:
                        d[k] = float(v)
                    except ValueError:
                        d[k] = v
            out.append(d)
    return out


class TensorBoardLog:
    """Scalars to TensorBoard event files in ``log_dir`` (``tensorboard --logdir runs``)."""

    def __init__(self, log_dir: str, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=log_dir, purge_step=purge_step, flush_secs=10)

    def scalars(self, figures: dict, step: int, prefix: str = "") -> None:
        for k, v in figures.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(prefix + k, v, step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
