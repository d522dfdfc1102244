"""Dropout (inverted): a random mask, a constant of the graph, multiplied in."""

from __future__ import annotations

from ..backend import array_module
from ..devices import random as _random
from ..ops._util import data_of, shape_of


def _mask(shape, p, dtype, rng, xp):
    # drawn on x's device (tensorcalc.devices.random): no mask crosses the bus; on the CPU the
    # Generator's own draws, as always
    keep = 1.0 - p
    u = _random(rng, shape, xp, "float32" if dtype == "float32" else "float64")
    m = (u < keep).astype(dtype)
    m *= 1.0 / keep
    return m


def _check_p(p, who):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: p must be a probability in [0, 1], got {p}")


def dropout(x, p=0.5, training=True, rng=None):
    """Inverted dropout: y = x ⊙ m / (1 − p),  mᵢ ~ Bernoulli(1 − p) independently.

    E[y] = x, so nothing changes at evaluation time (training=False returns x). The mask is a
    constant: ∂y/∂x = m / (1 − p). ``rng`` is a numpy Generator or an int seed (explicit
    randomness; the same seed gives the same mask). p = 1 drops everything.
    """
    _check_p(p, "dropout")
    if not training or p == 0.0:
        return x
    xd = data_of(x)
    if p == 1.0:
        return x * 0.0
    return x * _mask(xd.shape, p, xd.dtype, rng, array_module(xd))


def dropout2d(x, p=0.5, training=True, rng=None):
    """Channel (spatial) dropout for x (N, C, ...): whole channels are zeroed together,
    y = x ⊙ m_{n,c} / (1 − p) with one Bernoulli(1 − p) draw per (sample, channel)."""
    _check_p(p, "dropout2d")
    sx = shape_of(x)
    if len(sx) < 2:
        raise ValueError(f"dropout2d: x must be (N, C, ...), got {sx}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    xd = data_of(x)
    shape = sx[:2] + (1,) * (len(sx) - 2)
    return x * _mask(shape, p, xd.dtype, rng, array_module(xd))


__all__ = ["dropout", "dropout2d"]
