"""The affine map of a dense layer, fused: one GEMM forward, two GEMMs and a sum backward.

A primitive by DESIGN §2 rule (3): composed as ``x @ W.T + b`` the weight's cotangent comes out of
the transpose op as a strided view of Ȳᵀ X, and every optimiser update then walks memory with a
stride; fused, W̄ = Ȳᵀ X is produced directly by BLAS in W's own layout, and b̄ needs no
broadcast bookkeeping.
"""

from __future__ import annotations

from ..autodiff.function import Function, primitive
from ..backend import xp_of
from ..devices import cuda as _cuda
from ..tensor import Tensor
from ._util import public, shape_of


def _rows_gemv(g):
    """Σ over the rows of g as a GEMV: a C-contiguous 2-D NumPy array (not a Tensor)."""
    xp = xp_of((g,)) if not isinstance(g, Tensor) else None
    return (xp is not None and getattr(xp, "__name__", "") == "numpy" and g.ndim == 2
            and g.flags.c_contiguous and g.shape[0] > 0)


@primitive
class Affine(Function):
    """Dense layer y = x Wᵀ + b for x (..., in), W (out, in), b (out,) or None.

    Forward:  y = x Wᵀ + b            (y[..., j] = Σₖ x[..., k] W[j, k] + b[j])
    VJP:      x̄ = ȳ W,  W̄ = Σ_rows ȳᵀ x,  b̄ = Σ_rows ȳ
    JVP:      ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ
    """

    @staticmethod
    def forward(xp, x, w, b=None):
        n_in = w.shape[1]
        x2 = x if x.ndim <= 2 else x.reshape(-1, n_in)
        y = xp.matmul(x2, w.T)
        if b is not None:
            if b.dtype == y.dtype:
                y += b  # y is a fresh GEMM output: add in place
            else:
                y = y + b
        return y if x.ndim <= 2 else y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def vjp(g, y, x, w, b=None, *, needs):
        # Operators, .mT, .reshape and .sum work on raw arrays (numpy) and Tensors (recorded).
        n_out, n_in = w.shape
        g2 = g if len(g.shape) == 2 else g.reshape(-1, n_out)
        gx = gw = gb = None
        if needs[0]:
            gx = g2 @ w
            if gx.shape != x.shape:
                gx = gx.reshape(x.shape)
        if needs[1]:
            x2 = x if len(x.shape) == 2 else x.reshape(-1, n_in)
            gw = g2.mT @ x2
        if needs[2]:
            gb = _cuda.reduce_sum(g2, (0,)) if _cuda.on_cuda(g2) else None  # GPU: one GEMV
            if gb is None and _rows_gemv(g2):  # NumPy: 1ᵀ ȳ as a GEMV, ~2-3x its column sum
                gb = xp_of((g2,)).ones(g2.shape[0], dtype=g2.dtype) @ g2
            if gb is None:
                gb = g2.sum(axis=0)
        return gx, gw, gb

    @staticmethod
    def jvp(dxs, y, x, w, b=None):
        dx, dw, db = dxs
        out = None
        if dx is not None:
            out = Affine.apply(dx, w, None)
        if dw is not None:
            t = Affine.apply(x, dw, None)
            out = t if out is None else out + t
        if db is not None:
            out = db if out is None else out + db
        return out


@public
def affine(x, w, b=None):
    """y = x Wᵀ + b (the dense layer), checked: x (..., in), W (out, in), b (out,)."""
    sx, sw = shape_of(x), shape_of(w)
    if len(sw) != 2:
        raise ValueError(f"affine: W must be (out, in), got shape {sw}")
    if not sx or sx[-1] != sw[1]:
        raise ValueError(
            f"affine: x[..., {sw[1]}] @ Wᵀ[{sw[1]}, {sw[0]}] needs x's last axis to be {sw[1]}, "
            f"got x of shape {sx}"
        )
    if b is not None and shape_of(b) != (sw[0],):
        raise ValueError(f"affine: b must have shape ({sw[0]},), got {shape_of(b)}")
    return Affine.apply(x, w, b)
