"""Activation functions as modules (formulas and derivatives: tensorcalc.functional)."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..functional import activations as A
from ..functional import basic as B
from .module import Module, Parameter


class _Elementwise(Module):
    _fn = None

    def forward(self, x):
        return type(self)._fn(x)


def _simple(name, fn, doc):
    cls = type(name, (_Elementwise,), {"_fn": staticmethod(fn), "__doc__": doc})
    return cls


ReLU = _simple("ReLU", A.relu, "ReLU(x) = max(x, 0); derivative [x > 0].")
Sigmoid = _simple("Sigmoid", A.sigmoid, "σ(x) = 1/(1 + e⁻ˣ); derivative σ(1 − σ).")
Tanh = _simple("Tanh", A.tanh, "tanh(x); derivative 1 − tanh².")
SELU = _simple("SELU", A.selu, "SELU(x) = λ·ELU(x, α), λ ≈ 1.0507, α ≈ 1.6733.")
SiLU = _simple("SiLU", A.silu, "SiLU / swish: x·σ(x); derivative σ(x)(1 + x(1 − σ(x))).")
Swish = SiLU
Mish = _simple("Mish", A.mish, "Mish(x) = x·tanh(softplus(x)).")
Softsign = _simple("Softsign", A.softsign, "x/(1 + |x|); derivative 1/(1 + |x|)².")
Hardsigmoid = _simple("Hardsigmoid", A.hard_sigmoid,
                      "clip(x/6 + ½, 0, 1); derivative 1/6 on (−3, 3), else 0.")
Hardswish = _simple("Hardswish", A.hard_swish, "x·hardsigmoid(x).")
ReLU6 = _simple("ReLU6", A.relu6, "min(max(x, 0), 6); derivative [0 < x < 6].")
LogSigmoid = _simple("LogSigmoid", A.log_sigmoid, "log σ(x) = −softplus(−x).")


class LeakyReLU(Module):
    """x for x > 0, a·x otherwise (a = negative_slope); derivative 1 or a."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return A.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class PReLU(Module):
    """x for x > 0, a_c·x otherwise, with learnable slopes ``weight`` (num_parameters,):
    one shared slope or one per channel (axis 1). Initialised to ``init``."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        dtype = dtype or backend.get_default_dtype()
        self.weight = Parameter(np.full((num_parameters,), init, dtype=dtype))

    def forward(self, x):
        return A.prelu(x, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """x for x > 0, α(eˣ − 1) otherwise; derivative 1 or α·eˣ."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return A.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class CELU(Module):
    """x for x > 0, α(exp(x/α) − 1) otherwise."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return A.celu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class GELU(Module):
    """x·Φ(x) (approximate='none', erf) or its tanh approximation (approximate='tanh')."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return A.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """(1/β)·log(1 + exp(βx)); derivative σ(βx)."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return A.softplus(x, self.beta)

    def extra_repr(self):
        return f"beta={self.beta}"


class Hardtanh(Module):
    """clip(x, min_val, max_val); derivative [min_val < x < max_val]."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val={min_val} > max_val={max_val}")
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return A.hard_tanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"


class Softmax(Module):
    """softmax(x)ᵢ = exp(xᵢ)/Σⱼ exp(xⱼ) along ``axis``; Jacobian diag(s) − s sᵀ."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return B.softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Module):
    """log softmax(x) = x − logsumexp(x) along ``axis``; Jacobian I − 1 softmax(x)ᵀ."""

    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return B.log_softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


__all__ = ["ReLU", "Sigmoid", "Tanh", "SELU", "SiLU", "Swish", "Mish", "Softsign",
           "Hardsigmoid", "Hardswish", "ReLU6", "LogSigmoid", "LeakyReLU", "PReLU", "ELU", "CELU",
           "GELU", "Softplus", "Hardtanh", "Softmax", "LogSoftmax"]
