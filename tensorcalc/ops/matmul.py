"""Matrix product (batched, broadcasting over leading axes)."""

from __future__ import annotations

from ..autodiff.function import Bilinear, primitive
from ._util import shape_of
from .shape import Transpose, expand_dims, squeeze


def _mT(a):
    n = len(a.shape)
    axes = tuple(range(n - 2)) + (n - 1, n - 2)
    return Transpose.apply(a, axes=axes)


@primitive
class Matmul(Bilinear):
    """Matrix product over the last two axes; leading (batch) axes broadcast.

    Forward:  Z = X Y
    VJP:      X̄ = sum_to(Z̄ Yᵀ, X.shape),  Ȳ = sum_to(Xᵀ Z̄, Y.shape)
    JVP:      Ż = Ẋ Y + X Ẏ
    """

    broadcasts = True

    @staticmethod
    def forward(xp, x, y):
        return xp.matmul(x, y)

    @staticmethod
    def vjp(g, z, x, y, *, needs):
        gx = Matmul.apply(g, _mT(y)) if needs[0] else None
        gy = Matmul.apply(_mT(x), g) if needs[1] else None
        return gx, gy


def matmul(x, y):
    """x @ y. 1-D operands are promoted (a vector on the left is a row, on the right a column)
    and the added axis removed again, as in numpy."""
    sx, sy = shape_of(x), shape_of(y)
    if not sx or not sy:
        raise ValueError(f"matmul: operands must have at least 1 dim, got {sx} @ {sy}")
    xv, yv = len(sx) == 1, len(sy) == 1
    if xv:
        x, sx = expand_dims(x, 0), (1,) + sx
    if yv:
        y, sy = expand_dims(y, -1), sy + (1,)
    if sx[-1] != sy[-2]:
        ox = sx[1:] if xv else sx
        oy = sy[:-1] if yv else sy
        raise ValueError(
            f"matmul: x[..., {sy[-2]}] @ W[{sy[-2]}, {sy[-1]}] needs x's last axis to be "
            f"{sy[-2]}, got x of shape {tuple(ox)} and W of shape {tuple(oy)}"
        )
    z = Matmul.apply(x, y)
    if xv:
        z = squeeze(z, -2)
    if yv:
        z = squeeze(z, -1)
    return z
