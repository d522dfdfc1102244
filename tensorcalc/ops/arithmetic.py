"""Arithmetic with broadcasting, and the binary elementwise primitives."""

from __future__ import annotations

from ..autodiff.function import Bilinear, Elementwise, Linear, primitive
from ..tensor import Tensor
from ._util import cast_like, parallel_binary, public
from .elementwise import log


@primitive
class Add(Linear):
    """Sum of two tensors, broadcasting.

    Forward:  z = x + y
    VJP:      x̄ = sum_to(z̄, x.shape),  ȳ = sum_to(z̄, y.shape)
    JVP:      ż = ẋ + ẏ
    """

    broadcasts = True

    @staticmethod
    def forward(xp, x, y):
        z = parallel_binary("add", x, y)  # big arrays at T > 1: over the kernel pool
        return x + y if z is None else z

    @staticmethod
    def vjp(g, z, x, y, *, needs):
        return g, g

    @staticmethod
    def jvp(dxs, z, x, y):
        dx, dy = dxs
        return dx if dy is None else dy if dx is None else dx + dy


@public
def add(x, y):
    """x + y, broadcasting."""
    return Add.apply(x, y)


@primitive
class Sub(Linear):
    """Difference of two tensors, broadcasting.

    Forward:  z = x − y
    VJP:      x̄ = sum_to(z̄, x.shape),  ȳ = −sum_to(z̄, y.shape)
    JVP:      ż = ẋ − ẏ
    """

    broadcasts = True

    @staticmethod
    def forward(xp, x, y):
        z = parallel_binary("subtract", x, y)
        return x - y if z is None else z

    @staticmethod
    def vjp(g, z, x, y, *, needs):
        return g, (-g if needs[1] else None)

    @staticmethod
    def jvp(dxs, z, x, y):
        dx, dy = dxs
        return -dy if dx is None else dx if dy is None else dx - dy


@public
def sub(x, y):
    """x − y, broadcasting."""
    return Sub.apply(x, y)


@primitive
class Neg(Linear):
    """Negation, elementwise.

    Forward:  y = −x
    VJP:      x̄ = −ȳ
    JVP:      ẏ = −ẋ
    """

    @staticmethod
    def forward(xp, x):
        return -x

    @staticmethod
    def vjp(g, y, x, *, needs):
        return (-g,)


@public
def neg(x):
    """−x."""
    return Neg.apply(x)


@primitive
class Mul(Bilinear):
    """Elementwise (Hadamard) product, broadcasting.

    Forward:  z = x ⊙ y
    VJP:      x̄ = sum_to(z̄ ⊙ y, x.shape),  ȳ = sum_to(z̄ ⊙ x, y.shape)
    JVP:      ż = ẋ ⊙ y + x ⊙ ẏ
    """

    broadcasts = True

    @staticmethod
    def forward(xp, x, y):
        z = parallel_binary("multiply", x, y)
        return x * y if z is None else z

    @staticmethod
    def vjp(g, z, x, y, *, needs):
        return (_times(g, y) if needs[0] else None), (_times(g, x) if needs[1] else None)


def _times(g, a):
    """g ⊙ a (Tensors recorded; big arrays over the kernel pool, see parallel_binary)."""
    z = parallel_binary("multiply", g, a)
    return g * a if z is None else z


@public
def mul(x, y):
    """x ⊙ y, broadcasting."""
    return Mul.apply(x, y)


@primitive
class Div(Elementwise):
    """Elementwise quotient, broadcasting.

    Forward:  z = x / y
    VJP:      x̄ = sum_to(z̄ / y, x.shape),  ȳ = −sum_to(z̄ ⊙ z / y, y.shape)
    JVP:      ż = ẋ / y − ẏ ⊙ z / y
    """

    @staticmethod
    def forward(xp, x, y):
        return x / y

    @staticmethod
    def derivative(z, x, y):
        return 1 / y, -z / y


@public
def div(x, y):
    """x / y, broadcasting."""
    return Div.apply(x, y)


@primitive
class Maximum(Elementwise):
    """Elementwise maximum, broadcasting; at a tie the gradient is shared equally.

    Forward:  z = max(x, y)
    VJP:      x̄ = z̄ ⊙ ([x > y] + ½[x = y]),  ȳ = z̄ ⊙ ([y > x] + ½[x = y])
    JVP:      ż = ẋ ⊙ ([x > y] + ½[x = y]) + ẏ ⊙ ([y > x] + ½[x = y])
    """

    @staticmethod
    def forward(xp, x, y):
        return xp.maximum(x, y)

    @staticmethod
    def derivative(z, x, y):
        tie = 0.5 * cast_like(x == y, z)
        return cast_like(x > y, z) + tie, cast_like(y > x, z) + tie


@public(method=True)
def maximum(x, y):
    """Elementwise max(x, y); ties share the gradient."""
    return Maximum.apply(x, y)


@primitive
class Minimum(Elementwise):
    """Elementwise minimum, broadcasting; at a tie the gradient is shared equally.

    Forward:  z = min(x, y)
    VJP:      x̄ = z̄ ⊙ ([x < y] + ½[x = y]),  ȳ = z̄ ⊙ ([y < x] + ½[x = y])
    JVP:      ż = ẋ ⊙ ([x < y] + ½[x = y]) + ẏ ⊙ ([y < x] + ½[x = y])
    """

    @staticmethod
    def forward(xp, x, y):
        return xp.minimum(x, y)

    @staticmethod
    def derivative(z, x, y):
        tie = 0.5 * cast_like(x == y, z)
        return cast_like(x < y, z) + tie, cast_like(y < x, z) + tie


@public(method=True)
def minimum(x, y):
    """Elementwise min(x, y); ties share the gradient."""
    return Minimum.apply(x, y)


@primitive
class Pow(Elementwise):
    """Elementwise power with a tensor exponent (x ≥ 0 where ∂/∂y is needed).

    Forward:  z = x ** y
    VJP:      x̄ = z̄ ⊙ y ⊙ x ** (y − 1),  ȳ = z̄ ⊙ z ⊙ log x
    JVP:      ż = ẋ ⊙ y ⊙ x ** (y − 1) + ẏ ⊙ z ⊙ log x

    Limits (the values at the edge points, as JAX takes them):
    * y = 0: ∂z/∂x = 0 for every x, x = 0 included (z ≡ 1 there), never 0·x⁻¹ = 0·∞;
    * x = 0: ∂z/∂y = 0 — for y > 0 it is the limit z log x = x^y log x → 0 (0·log 0 = 0);
      at y ≤ 0, where no derivative exists, 0 as well (log x is read as 0 there);
    * x = 0, 0 < y < 1: ∂z/∂x = +∞ (the true one-sided derivative); y = 1: 1; y > 1: 0.
    """

    @staticmethod
    def forward(xp, x, y):
        return x**y

    @staticmethod
    def derivative(z, x, y):
        # constant masks keep 0·∞ out: y·x^(y − 1 + [y = 0]) is exactly 0 at y = 0, and
        # log(x + [x = 0]) is 0 at x = 0
        dx = y * x ** (y - 1 + cast_like(y == 0, z))
        dy = z * log(x + cast_like(x == 0, z))
        return dx, dy


@public
def pow(x, y):  # noqa: A001 - the math name
    """x ** y; a Python number exponent is a constant, a tensor exponent is differentiable."""
    if isinstance(y, (int, float)) and not isinstance(y, bool):
        return PowScalar.apply(x, p=y)
    return Pow.apply(x, y)


@primitive
class PowScalar(Elementwise):
    """Elementwise power with a constant exponent p (keyword).

    Forward:  y = x ** p
    VJP:      x̄ = ȳ ⊙ p x ** (p − 1)
    JVP:      ẏ = ẋ ⊙ p x ** (p − 1)

    Limits at x = 0: p = 0 gives 0 (y ≡ 1, never 0·0⁻¹ = 0·∞ = NaN); p = 1 gives 1; p > 1
    gives 0; 0 < p < 1 gives +∞ and p < 0 gives ∓∞ (the true derivatives there).
    """

    @staticmethod
    def forward(xp, x, *, p):
        return x**p

    @staticmethod
    def derivative(y, x, *, p):
        if p == 0:
            return 0.0  # y ≡ 1
        if p == 2:
            return 2 * x
        return p * x ** (p - 1)


@primitive
class Where(Linear):
    """Select elementwise from x where ``mask`` is true, else from y (broadcasting).

    Forward:  z = mask ? x : y
    VJP:      x̄ = sum_to(mask ? z̄ : 0, x.shape),  ȳ = sum_to(mask ? 0 : z̄, y.shape)
    JVP:      ż = mask ? ẋ : ẏ
    """

    broadcasts = True

    @staticmethod
    def forward(xp, x, y, *, mask):
        return xp.where(mask, x, y)

    @staticmethod
    def vjp(g, z, x, y, *, needs, mask):
        gx = where(mask, g, 0.0) if needs[0] else None
        gy = where(mask, 0.0, g) if needs[1] else None
        return gx, gy


@public
def where(mask, x, y):
    """mask ? x : y, elementwise with broadcasting (the boolean mask is not differentiated)."""
    from ._util import data_of

    return Where.apply(x, y, mask=data_of(mask))


@primitive
class Cast(Linear):
    """Change of dtype (a copy); the gradient is cast back.

    Forward:  y = x.astype(dtype)
    VJP:      x̄ = ȳ.astype(x.dtype)
    JVP:      ẏ = ẋ.astype(dtype)
    """

    @staticmethod
    def forward(xp, x, *, dtype):
        return x.astype(dtype)

    @staticmethod
    def vjp(g, y, x, *, needs, dtype):
        return (Cast.apply(g, dtype=x.dtype),)


@public
def cast(x, dtype):
    """x as ``dtype``: differentiable between float dtypes; to int/bool it leaves the graph."""
    from ..backend import as_dtype
    from ._util import data_of

    dtype = as_dtype(dtype)
    xd = data_of(x)
    if xd.dtype == dtype:
        return x
    if xd.dtype.kind in "fc" and dtype.kind in "fc":
        return Cast.apply(x, dtype=dtype)
    out = xd.astype(dtype)
    return Tensor._wrap(out, None, 0) if isinstance(x, Tensor) else out
