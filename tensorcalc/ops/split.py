"""Split: one tensor cut into consecutive pieces along an axis, as one multi-output primitive."""

from __future__ import annotations

from ..autodiff.function import Function, primitive
from ._util import norm_axis, public, shape_of
from .shape import concat


@primitive
class Split(Function):
    """Cut x into consecutive pieces of ``sizes`` along ``axis`` (several outputs, all views).

    Forward:  (y₁, …, y_k) = (x[…, o₀:o₁, …], …, x[…, o_{k−1}:o_k, …]),  oᵢ = n₁ + … + nᵢ
    VJP:      x̄ = [ȳ₁ | ȳ₂ | … | ȳ_k] along axis     (a missing ȳᵢ is zero)
    JVP:      (ẏ₁, …, ẏ_k) = split(ẋ)

    The transpose of concat. As k getitems the backward is k full-size zero arrays, k scatters
    and k − 1 additions; here it is one concatenation (e.g. the W_Q, W_K, W_V rows of attention's
    in_proj_weight).
    """

    views = True

    @staticmethod
    def forward(xp, x, *, axis, sizes):
        lead = (slice(None),) * axis
        out, off = [], 0
        for n in sizes:
            out.append(x[lead + (slice(off, off + n),)])
            off += n
        return tuple(out)

    @staticmethod
    def vjp(g, y, x, *, needs, axis, sizes):
        return (concat(list(g), axis=axis),)

    @staticmethod
    def jvp(dxs, y, x, *, axis, sizes):
        return Split.apply(dxs[0], axis=axis, sizes=sizes)


@public
def split_sizes(x, sizes, axis=0):
    """Pieces of ``sizes`` (summing to the axis length) along ``axis``, as views; their
    gradient is one concatenation (F.split is the getitem composite)."""
    s = shape_of(x)
    axis = norm_axis(axis, len(s), "split_sizes")[0]
    sizes = tuple(int(n) for n in sizes)
    if not sizes or any(n < 0 for n in sizes) or sum(sizes) != s[axis]:
        raise ValueError(f"split_sizes: sizes {sizes} must be non-negative and sum to axis "
                         f"{axis}'s length {s[axis]} (x of shape {s})")
    return Split.apply(x, axis=axis, sizes=sizes)
