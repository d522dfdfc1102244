"""Matrix product (batched, broadcasting over leading axes)."""

from __future__ import annotations

from ..autodiff.function import Bilinear, primitive
from ..backend import chunk_ranges, parallel_chunks, xp_of
from ..devices import cpu_jobs as _jobs
from ..tensor import Tensor
from ._util import public, shape_of
from .shape import expand_dims, squeeze


@primitive
class Matmul(Bilinear):
    """Matrix product over the last two axes; leading (batch) axes broadcast.

    Forward:  Z = X Y
    VJP:      X̄ = sum_to(Z̄ Yᵀ, X.shape),  Ȳ = sum_to(Xᵀ Z̄, Y.shape)
    JVP:      Ż = Ẋ Y + X Ẏ

    Memory order (NumPy): a result with the shape of an operand that is a permuted view (the
    heads (B, H, L, d) of a (B, L, H, d) projection) is written in that operand's memory order,
    and so is a cotangent in its primal's: attention's context then reshapes back to (B, L, E)
    as a view, and Q̄, K̄, V̄ reach their projections without a transposing copy. Only the layout
    differs; each matrix is the same BLAS product.
    """

    broadcasts = True

    @staticmethod
    def forward(xp, x, y):
        return _batched(xp, x, y, like=y)

    @staticmethod
    def vjp(g, z, x, y, *, needs):
        # Operators and .mT work on raw arrays (numpy, at C speed) and on Tensors (recorded).
        if isinstance(g, Tensor) or isinstance(x, Tensor) or isinstance(y, Tensor):
            gx = g @ y.mT if needs[0] else None
            gy = x.mT @ g if needs[1] else None
            return gx, gy
        xp = xp_of((g,))
        gx = _batched(xp, g, y.mT, like=x) if needs[0] else None
        gy = None
        if needs[1]:
            if _rows_fastest(y.mT) and not _rows_fastest(y):
                gy = _batched(xp, g.mT, x, like=y.mT).mT  # Ȳᵀ = Z̄ᵀ X in Yᵀ's own order
            else:
                gy = _batched(xp, x.mT, g, like=y)
        return gx, gy


# multiply-adds below which one thread wins: attention's QKᵀ and AV at 2 threads, 12 × 4 heads
# of 64×32×64 (6.3M) 340 µs serial vs 351-372 pooled; 32 × 4 heads (16.8M) 862 vs 650-678
_BMM_MIN = 1 << 23
_BMM_PIECE = 1 << 21  # multiply-adds per piece at least (each piece's small GEMMs take the GIL)
# the same as a compiled job (devices/cpu_jobs.batched_matmul: no GIL on the pool thread):
# 4.2M multiply-adds 61 µs on 1 thread and on 2, 8.4M 120 → 90 µs (hot data)
_BMM_JOB_MIN = 1 << 22
_BMM_JOB_PIECE = 1 << 20


def _rows_fastest(a):
    """True when a's last axis has unit stride and is its fastest axis in memory: a batch of
    row-major matrices, possibly a permuted view, whose matrices BLAS takes as they are."""
    st = a.strides
    return a.ndim >= 3 and st[-1] == a.itemsize and all(abs(s) >= st[-1] for s in st[:-1])


def _batched(xp, a, b, like=None):
    """a @ b; on NumPy with T > 1 kernel threads a big batched product (leading axis ≥ 2 on
    both) runs its batch in pieces over the kernel pool, each a single-threaded GEMM per matrix
    (backend.parallel_chunks, serial_blas): the many small GEMMs of attention scale with the
    threads where one threaded BLAS call per matrix would not. The same values as one call.

    ``like``: an array with the result's shape whose memory order the result takes when it is
    a permuted batch of row-major matrices (Matmul's docstring); otherwise C order."""
    if getattr(xp, "__name__", "") != "numpy" or a.ndim < 3 or a.ndim != b.ndim \
            or a.shape[0] != b.shape[0] or a.shape[0] < 2:
        return xp.matmul(a, b)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    lead = xp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    macs = m * k * n
    for d in lead:
        macs *= d
    shape, dtype = lead + (m, n), xp.result_type(a, b)
    if like is not None and like.shape == shape and not like.flags.c_contiguous \
            and _rows_fastest(like):
        out = xp.empty_like(like, dtype=dtype, order="K")
    else:
        out = xp.empty(shape, dtype=dtype)  # (serial: one call into it)
    ranges = chunk_ranges(a.shape[0], min_size=_BMM_JOB_MIN, cost=macs, piece=_BMM_JOB_PIECE)
    if len(ranges) == 1 or not _jobs.batched_matmul(a, b, out, ranges):
        parallel_chunks(a.shape[0], lambda lo, hi: xp.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi]),
                        min_size=_BMM_MIN, cost=macs, serial_blas=True, piece=_BMM_PIECE)
    return out


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
