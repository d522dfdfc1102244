"""Grad mode and anomaly mode, per thread; the in-place epoch, per process.

``state.grad`` and ``state.anomaly`` are read on the hot path of ``Function.apply``. They live in
a ``threading.local`` (as PyTorch's grad mode does): a ``no_grad`` block in one thread — inference
in a server thread, say — never turns recording off in another thread that is training, and
overlapping blocks in different threads cannot leave grad mode off for good. A new thread starts
with grad on and anomaly off.

``versions.inplace_epoch`` is shared by all threads: it is bumped by every in-place change of a
Tensor, and a node recorded in an earlier epoch re-checks its inputs' version counters in backward.
"""

from __future__ import annotations

import contextlib
import threading


class _Mode(threading.local):
    """Per-thread switches (``threading.local``: each thread sees its own attributes)."""

    def __init__(self):
        self.grad = True
        self.anomaly = False
        self.module = None  # the innermost Module whose forward is running (recorded in nodes)


class _Versions:
    __slots__ = ("inplace_epoch",)

    def __init__(self):
        # Bumped by every in-place change of a Tensor. A node records the epoch it was made in;
        # backward checks the version counters of its inputs only if the epoch has moved since.
        self.inplace_epoch = 0


state = _Mode()
versions = _Versions()


def is_grad_enabled() -> bool:
    return state.grad


@contextlib.contextmanager
def _grad(enabled: bool):
    prev = state.grad
    state.grad = enabled
    try:
        yield
    finally:
        state.grad = prev


def no_grad():
    """Context manager (and decorator) that stops recording in this thread: ops return Tensors
    with no graph."""
    return _grad(False)


def enable_grad():
    """Context manager that turns recording back on (in this thread) inside a ``no_grad``
    block."""
    return _grad(True)


def set_grad_enabled(enabled: bool):
    return _grad(bool(enabled))


@contextlib.contextmanager
def detect_anomaly():
    """Check every forward result and every gradient for NaN/Inf; raise naming the first op.

    Slow (one ``isfinite`` pass per op); meant for debugging a run that produced NaNs. Per
    thread, like grad mode.
    """
    prev = state.anomaly
    state.anomaly = True
    try:
        yield
    finally:
        state.anomaly = prev
