"""Grad mode and anomaly mode: global switches read on the hot path of ``Function.apply``."""

from __future__ import annotations

import contextlib


class _Mode:
    __slots__ = ("grad", "anomaly", "inplace_epoch")

    def __init__(self):
        self.grad = True
        self.anomaly = False
        # Bumped by every in-place change of a Tensor. A node records the epoch it was made in;
        # backward checks the version counters of its inputs only if the epoch has moved since.
        self.inplace_epoch = 0


state = _Mode()


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
    """Context manager (and decorator) that stops recording: ops return Tensors with no graph."""
    return _grad(False)


def enable_grad():
    """Context manager that turns recording back on inside a ``no_grad`` block."""
    return _grad(True)


def set_grad_enabled(enabled: bool):
    return _grad(bool(enabled))


@contextlib.contextmanager
def detect_anomaly():
    """Check every forward result and every gradient for NaN/Inf; raise naming the first op.

    Slow (one ``isfinite`` pass per op); meant for debugging a run that produced NaNs.
    """
    prev = state.anomaly
    state.anomaly = True
    try:
        yield
    finally:
        state.anomaly = prev
