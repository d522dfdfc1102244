"""Initialisers: fill a tensor in place from an explicit ``rng`` (Generator or int seed).

The variance-preserving schemes pick the scale so that activations (Xavier/Glorot: forward
and backward together) or their second moments through a rectifier (Kaiming/He) keep their
size from layer to layer. Fans of a weight of shape (out, in, k₁, k₂, ...):
fan_in = in·k₁k₂..., fan_out = out·k₁k₂... Draws are made in float64 and cast, so a seed gives
the same weights in float32 and float64.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module, as_rng, special
from ..tensor import Tensor


def _data(t):
    return t.data if isinstance(t, Tensor) else t


def _fill(t, values):
    d = _data(t)
    xp = array_module(d)
    d[...] = xp.asarray(values).astype(d.dtype, copy=False)
    if isinstance(t, Tensor):
        t._version += 1
    return t


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The gain g with Var(f(x)) ≈ g⁻²·Var(x)-compensation for a nonlinearity f:
    linear/conv/identity/sigmoid 1, tanh 5/3, relu √2, leaky_relu √(2/(1 + a²)) (a = param,
    default 0.01), selu 3/4."""
    simple = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "conv1d": 1.0, "conv2d": 1.0,
              "conv3d": 1.0, "conv_transpose1d": 1.0, "conv_transpose2d": 1.0,
              "conv_transpose3d": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 0.75}
    if nonlinearity in simple:
        return simple[nonlinearity]
    if nonlinearity == "leaky_relu":
        a = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + a * a))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of "
                     f"{sorted(simple) + ['leaky_relu']}")


def _calculate_fan_in_and_fan_out(t):
    shape = tuple(_data(t).shape)
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a tensor with at least 2 axes, got "
                         f"shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(t, mode):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")


def zeros_(t):
    """t ← 0."""
    return _fill(t, np.zeros(_data(t).shape))


def ones_(t):
    """t ← 1."""
    return _fill(t, np.ones(_data(t).shape))


def constant_(t, value):
    """t ← value."""
    return _fill(t, np.full(_data(t).shape, value))


def uniform_(t, a=0.0, b=1.0, rng=None):
    """tᵢ ~ U(a, b) independently."""
    return _fill(t, as_rng(rng).uniform(a, b, _data(t).shape))


def normal_(t, mean=0.0, std=1.0, rng=None):
    """tᵢ ~ N(mean, std²) independently."""
    return _fill(t, as_rng(rng).normal(mean, std, _data(t).shape))


def trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0, rng=None):
    """tᵢ ~ N(mean, std²) conditioned on a ≤ tᵢ ≤ b (inverse-CDF sampling)."""
    sp = special(np)
    lo, hi = sp.ndtr((a - mean) / std), sp.ndtr((b - mean) / std)
    u = as_rng(rng).uniform(lo, hi, _data(t).shape)
    return _fill(t, np.clip(mean + std * sp.ndtri(u), a, b))


def xavier_uniform_(t, gain=1.0, rng=None):
    """Glorot/Xavier uniform: tᵢ ~ U(−a, a), a = gain·√(6 / (fan_in + fan_out)), so
    Var = gain²·2/(fan_in + fan_out)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -a, a, rng)


def xavier_normal_(t, gain=1.0, rng=None):
    """Glorot/Xavier normal: tᵢ ~ N(0, σ²), σ = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He/Kaiming uniform: tᵢ ~ U(−b, b), b = √3·gain/√fan, gain = calculate_gain(
    nonlinearity, a) (a = negative slope of a leaky ReLU). mode 'fan_in' keeps forward
    activations' variance, 'fan_out' the backward gradients'."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    b = math.sqrt(3.0) * std
    return uniform_(t, -b, b, rng)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He/Kaiming normal: tᵢ ~ N(0, σ²), σ = gain/√fan (see kaiming_uniform_)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t, mode))
    return normal_(t, 0.0, std, rng)


def orthogonal_(t, gain=1.0, rng=None):
    """A (semi-)orthogonal matrix times ``gain``: for t reshaped to (rows, cols), Q of the QR
    decomposition of a Gaussian matrix with signs fixed by diag(R) (Haar-distributed); QᵀQ = I
    when rows ≥ cols, QQᵀ = I otherwise (Saxe et al., 2014)."""
    shape = tuple(_data(t).shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal_: needs a tensor with at least 2 axes, got shape {shape}")
    rows = shape[0]
    cols = math.prod(shape[1:])
    m = as_rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(m)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(t, gain * q.reshape(shape))


def eye_(t):
    """The identity matrix (a 2-D tensor; rectangular allowed)."""
    shape = tuple(_data(t).shape)
    if len(shape) != 2:
        raise ValueError(f"eye_: needs a 2-D tensor, got shape {shape}")
    return _fill(t, np.eye(*shape))


__all__ = ["calculate_gain", "zeros_", "ones_", "constant_", "uniform_", "normal_",
           "trunc_normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
           "kaiming_normal_", "orthogonal_", "eye_"]
