"""Unary elementwise primitives: each writes f′ once; VJP and JVP follow from Elementwise."""

from __future__ import annotations

import math

from ..autodiff.function import Elementwise, primitive
from ..backend import special
from ..devices import cuda as _cuda
from ._util import cast_like, public


@primitive
class Exp(Elementwise):
    """Exponential, elementwise.

    Forward:  y = exp(x)
    VJP:      x̄ = ȳ ⊙ y
    JVP:      ẏ = ẋ ⊙ y
    """

    @staticmethod
    def forward(xp, x):
        return xp.exp(x)

    @staticmethod
    def derivative(y, x):
        return y


@public(method=True)
def exp(x):
    """Elementwise exp(x)."""
    return Exp.apply(x)


@primitive
class Log(Elementwise):
    """Natural logarithm, elementwise (x > 0).

    Forward:  y = log(x)
    VJP:      x̄ = ȳ / x
    JVP:      ẏ = ẋ / x
    """

    @staticmethod
    def forward(xp, x):
        return xp.log(x)

    @staticmethod
    def derivative(y, x):
        return 1 / x


@public(method=True)
def log(x):
    """Elementwise natural log."""
    return Log.apply(x)


@primitive
class Log1p(Elementwise):
    """log(1 + x), accurate for small x (x > −1).

    Forward:  y = log(1 + x)
    VJP:      x̄ = ȳ / (1 + x)
    JVP:      ẏ = ẋ / (1 + x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.log1p(x)

    @staticmethod
    def derivative(y, x):
        return 1 / (1 + x)


@public(method=True)
def log1p(x):
    """Elementwise log(1 + x)."""
    return Log1p.apply(x)


@primitive
class Expm1(Elementwise):
    """exp(x) − 1, accurate for small x.

    Forward:  y = exp(x) − 1
    VJP:      x̄ = ȳ ⊙ (y + 1)
    JVP:      ẏ = ẋ ⊙ (y + 1)
    """

    @staticmethod
    def forward(xp, x):
        return xp.expm1(x)

    @staticmethod
    def derivative(y, x):
        return y + 1


@public(method=True)
def expm1(x):
    """Elementwise exp(x) − 1."""
    return Expm1.apply(x)


@primitive
class Sqrt(Elementwise):
    """Square root, elementwise (x ≥ 0; the derivative is infinite at 0).

    Forward:  y = √x
    VJP:      x̄ = ȳ / (2y)
    JVP:      ẏ = ẋ / (2y)
    """

    @staticmethod
    def forward(xp, x):
        return xp.sqrt(x)

    @staticmethod
    def derivative(y, x):
        return 0.5 / y


@public(method=True)
def sqrt(x):
    """Elementwise √x."""
    return Sqrt.apply(x)


@primitive
class Abs(Elementwise):
    """Absolute value, elementwise; subgradient sign(0) = 0.

    Forward:  y = |x|
    VJP:      x̄ = ȳ ⊙ sign(x)
    JVP:      ẏ = ẋ ⊙ sign(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.abs(x)

    @staticmethod
    def derivative(y, x):
        return cast_like(x > 0, y) - cast_like(x < 0, y)


@public(method=True)
def abs(x):  # noqa: A001 - the math name
    """Elementwise |x|."""
    return Abs.apply(x)


@primitive
class Sin(Elementwise):
    """Sine, elementwise.

    Forward:  y = sin(x)
    VJP:      x̄ = ȳ ⊙ cos(x)
    JVP:      ẏ = ẋ ⊙ cos(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.sin(x)

    @staticmethod
    def derivative(y, x):
        return cos(x)


@public(method=True)
def sin(x):
    """Elementwise sine."""
    return Sin.apply(x)


@primitive
class Cos(Elementwise):
    """Cosine, elementwise.

    Forward:  y = cos(x)
    VJP:      x̄ = −ȳ ⊙ sin(x)
    JVP:      ẏ = −ẋ ⊙ sin(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.cos(x)

    @staticmethod
    def derivative(y, x):
        return -sin(x)


@public(method=True)
def cos(x):
    """Elementwise cosine."""
    return Cos.apply(x)


@primitive
class Tanh(Elementwise):
    """Hyperbolic tangent, elementwise.

    Forward:  y = tanh(x)
    VJP:      x̄ = ȳ ⊙ (1 − y²)
    JVP:      ẏ = ẋ ⊙ (1 − y²)
    """

    @staticmethod
    def forward(xp, x):
        return xp.tanh(x)

    @staticmethod
    def derivative(y, x):
        return 1 - y * y


@public(method=True)
def tanh(x):
    """Elementwise hyperbolic tangent."""
    return Tanh.apply(x)


@primitive
class Sigmoid(Elementwise):
    """Logistic sigmoid, computed as exp(−softplus(−x)) so no exp can overflow.

    Forward:  y = 1 / (1 + exp(−x))
    VJP:      x̄ = ȳ ⊙ y(1 − y)
    JVP:      ẏ = ẋ ⊙ y(1 − y)
    """

    @staticmethod
    def forward(xp, x):
        return xp.exp(-xp.logaddexp(0, -x))

    @staticmethod
    def derivative(y, x):
        return y * (1 - y)


@public(method=True)
def sigmoid(x):
    """Elementwise logistic sigmoid (overflow-free)."""
    return Sigmoid.apply(x)


@primitive
class Relu(Elementwise):
    """Rectified linear unit; subgradient relu′(0) = 0.

    Forward:  y = max(x, 0)
    VJP:      x̄ = ȳ ⊙ [x > 0]
    JVP:      ẏ = ẋ ⊙ [x > 0]
    """

    @staticmethod
    def forward(xp, x):
        return xp.maximum(x, 0)

    @staticmethod
    def derivative(y, x):
        return x > 0  # a boolean mask: ȳ ⊙ mask keeps ȳ's dtype and carries no graph

    @classmethod
    def vjp(cls, g, y, x, *, needs):
        if _cuda.on_cuda(g) and _cuda.on_cuda(x):  # on a GPU: ȳ ⊙ [x > 0] in one kernel
            return (_cuda.relu_grad(g, x),)
        return (g * (x > 0),)


@public(method=True)
def relu(x):
    """Elementwise max(x, 0)."""
    return Relu.apply(x)


@primitive
class Softplus(Elementwise):
    """Softplus, computed as logaddexp(0, x): finite for every finite x.

    Forward:  y = log(1 + exp(x))
    VJP:      x̄ = ȳ ⊙ σ(x)
    JVP:      ẏ = ẋ ⊙ σ(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.logaddexp(0, x)

    @staticmethod
    def derivative(y, x):
        return sigmoid(x)


@public(method=True)
def softplus(x):
    """Elementwise log(1 + exp(x)) (stable)."""
    return Softplus.apply(x)


@primitive
class Erf(Elementwise):
    """Gauss error function, elementwise.

    Forward:  y = erf(x) = (2/√π) ∫₀ˣ exp(−t²) dt
    VJP:      x̄ = ȳ ⊙ (2/√π) exp(−x²)
    JVP:      ẏ = ẋ ⊙ (2/√π) exp(−x²)
    """

    @staticmethod
    def forward(xp, x):
        return special(xp).erf(x)

    @staticmethod
    def derivative(y, x):
        return (2 / math.sqrt(math.pi)) * exp(-(x * x))


@public(method=True)
def erf(x):
    """Elementwise error function."""
    return Erf.apply(x)


@primitive
class Atan(Elementwise):
    """Inverse tangent, elementwise; y ∈ (−π/2, π/2), and f′ → 0 as |x| → ∞.

    Forward:  y = atan(x)
    VJP:      x̄ = ȳ / (1 + x²)
    JVP:      ẏ = ẋ / (1 + x²)
    """

    @staticmethod
    def forward(xp, x):
        return xp.arctan(x)

    @staticmethod
    def derivative(y, x):
        return 1 / (1 + x * x)  # x² = inf at huge |x| gives exactly 0, the limit


@public(method=True)
def atan(x):
    """Elementwise inverse tangent."""
    return Atan.apply(x)
