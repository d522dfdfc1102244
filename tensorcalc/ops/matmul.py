"""Matrix product (batched, broadcasting over leading axes)."""

from __future__ import annotations

from ..autodiff.function import Bilinear, primitive
from ._util import public, shape_of
from .shape import expand_dims, squeeze


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
        # Operators and .mT work on raw arrays (numpy, at C speed) and on Tensors (recorded).
        gx = g @ y.mT if needs[0] else None
        gy = x.mT @ g if needs[1] else None
        return gx, gy


@public(method=True)
def matmul(x, y):
    """x @ y. 1-D operands are promoted (a vector on the left is a row, on the right a column)
    and the added axis removed again, as in numpy."""
    sx, sy = shape_of(x), shape_of(y)
    if len(sx) >= 2 and len(sy) >= 2 and sx[-1] == sy[-2]:
        return Matmul.apply(x, y)  # the common case, no promotion
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
