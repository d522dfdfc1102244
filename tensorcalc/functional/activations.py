"""Activation functions: composites of primitives (no derivative code here).

Each docstring gives the function and its derivative; the derivative the library uses is the
chain rule over the primitives named in the body. At a kink the subgradient is stated: a mask
``[x > 0]`` means the derivative at exactly 0 is the left one.

Piecewise functions are written with ``where`` on a mask taken from the data. Both branches
are computed, so every branch is made finite everywhere (``expm1`` only sees x ≤ 0) — an
unselected ``inf`` would otherwise turn into ``0 · inf = nan`` in the backward pass.
"""

from __future__ import annotations

import math

from .. import ops
from ..ops._util import data_of, ndim_of, shape_of
from .basic import log_softmax, softmax

_SQRT_2_PI = math.sqrt(2.0 / math.pi)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def sigmoid(x):
    """Logistic sigmoid σ(x) = 1 / (1 + e⁻ˣ);  σ′(x) = σ(x)(1 − σ(x)).  (Overflow-free.)"""
    return ops.sigmoid(x)


def tanh(x):
    """tanh(x) = (eˣ − e⁻ˣ) / (eˣ + e⁻ˣ);  tanh′(x) = 1 − tanh²(x)."""
    return ops.tanh(x)


def relu(x):
    """ReLU(x) = max(x, 0);  ReLU′(x) = [x > 0]  (subgradient 0 at x = 0)."""
    return ops.relu(x)


def _pos(x):
    return data_of(x) > 0


def leaky_relu(x, negative_slope=0.01):
    """LeakyReLU(x) = x for x > 0, a·x otherwise;  derivative 1 for x > 0, a for x ≤ 0
    (the primitive ops.leaky_relu)."""
    return ops.leaky_relu(x, negative_slope)


def prelu(x, weight):
    """PReLU(x) = x for x > 0, a_c·x otherwise, with a learnable slope a per channel.

    ``weight`` has one entry (shared) or C entries for the channel axis 1 of x (N, C, ...).
    ∂y/∂x = 1 for x > 0, a_c for x ≤ 0;  ∂y/∂a_c = Σ over channel c of x·[x ≤ 0].
    """
    sw = shape_of(weight)
    n = 1
    for s in sw:
        n *= s
    if n != 1:
        sx = shape_of(x)
        if len(sw) != 1 or len(sx) < 2 or sx[1] != sw[0]:
            raise ValueError(
                f"prelu: {n} slopes need x of shape (N, {n}, ...) (channels on axis 1), got x of "
                f"shape {sx}"
            )
        weight = ops.reshape(weight, (sw[0],) + (1,) * (len(sx) - 2))
    elif len(sw) > ndim_of(x):
        weight = ops.reshape(weight, ())
    return ops.where(_pos(x), x, x * weight)


def _neg_part(x, mask):
    """x where x ≤ 0 and 0 elsewhere: keeps exp of the unselected branch finite."""
    return ops.where(mask, 0.0, x)


def elu(x, alpha=1.0):
    """ELU(x) = x for x > 0, α(eˣ − 1) otherwise;  derivative 1 for x > 0, α·eˣ for x ≤ 0."""
    m = _pos(x)
    e = ops.expm1(_neg_part(x, m))
    return ops.where(m, x, e if alpha == 1.0 else e * alpha)


def selu(x):
    """SELU(x) = λ·ELU(x, α) with λ ≈ 1.0507, α ≈ 1.6733 (self-normalising constants);
    derivative λ for x > 0, λα·eˣ for x ≤ 0."""
    m = _pos(x)
    return ops.where(m, x * SELU_SCALE, ops.expm1(_neg_part(x, m)) * (SELU_SCALE * SELU_ALPHA))


def celu(x, alpha=1.0):
    """CELU(x) = x for x > 0, α(exp(x/α) − 1) otherwise;  derivative 1 for x > 0, exp(x/α)
    for x ≤ 0 (continuously differentiable for every α)."""
    if alpha == 0:
        raise ValueError("celu: alpha must be non-zero")
    m = _pos(x)
    return ops.where(m, x, ops.expm1(_neg_part(x, m) * (1.0 / alpha)) * alpha)


def gelu(x, approximate="none"):
    """GELU(x) = x·Φ(x) with Φ the standard normal CDF.

    approximate='none':  Φ(x) = ½(1 + erf(x/√2));  GELU′(x) = Φ(x) + x·φ(x), φ the normal pdf
                         (the primitive ops.gelu: one chunked kernel each way).
    approximate='tanh':  Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))).
    """
    if approximate == "none":
        return ops.gelu(x)
    if approximate == "tanh":
        inner = x * ((x * x) * (0.044715 * _SQRT_2_PI) + _SQRT_2_PI)
        return x * (ops.tanh(inner) * 0.5 + 0.5)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(x):
    """SiLU / swish: x·σ(x);  derivative σ(x)(1 + x(1 − σ(x)))."""
    return x * ops.sigmoid(x)


swish = silu


def mish(x):
    """Mish(x) = x·tanh(softplus(x));  derivative tanh(sp) + x·σ(x)(1 − tanh²(sp)), sp =
    softplus(x)."""
    return x * ops.tanh(ops.softplus(x))


def softplus(x, beta=1.0):
    """softplus(x) = (1/β)·log(1 + exp(βx));  derivative σ(βx). Stable for every finite x."""
    if beta == 1.0:
        return ops.softplus(x)
    return ops.softplus(x * beta) * (1.0 / beta)


def log_sigmoid(x):
    """log σ(x) = −softplus(−x);  derivative 1 − σ(x) = σ(−x). Stable for every finite x."""
    return -ops.softplus(-x)


def softsign(x):
    """softsign(x) = x / (1 + |x|);  derivative 1 / (1 + |x|)²."""
    return x / (ops.abs(x) + 1.0)


def _clamp(x, lo, hi):
    """Clamp into [lo, hi] with derivative [lo < x < hi] (0 at the bounds), one primitive:
    where(inside, x, clip(x)) with the clipped values a constant."""
    d = data_of(x)
    inside = (d > lo) & (d < hi)
    return ops.where(inside, x, d.clip(lo, hi))


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    """Hardtanh(x) = clip(x, min_val, max_val);  derivative [min_val < x < max_val] (0 at the
    bounds)."""
    if min_val > max_val:
        raise ValueError(f"hard_tanh: min_val={min_val} is greater than max_val={max_val}")
    return _clamp(x, min_val, max_val)


def relu6(x):
    """ReLU6(x) = min(max(x, 0), 6);  derivative [0 < x < 6] (0 at both kinks)."""
    return _clamp(x, 0.0, 6.0)


def hard_sigmoid(x):
    """Hardsigmoid(x) = clip(x/6 + ½, 0, 1);  derivative 1/6 for −3 < x < 3, 0 otherwise
    (0 at ±3)."""
    return _clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def hard_swish(x):
    """Hardswish(x) = x·hardsigmoid(x);  derivative hardsigmoid(x) + x·[−3 < x < 3]/6."""
    return x * hard_sigmoid(x)


__all__ = [
    "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu",
    "swish", "mish", "softplus", "log_sigmoid", "softsign", "hard_tanh", "relu6",
    "hard_sigmoid", "hard_swish", "softmax", "log_softmax", "SELU_ALPHA", "SELU_SCALE",
]
