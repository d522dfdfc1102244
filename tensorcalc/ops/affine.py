"""The affine map of a dense layer, fused: one GEMM forward, two GEMMs and a sum backward.

A primitive by DESIGN §2 rule (3): composed as ``x @ W.T + b`` the weight's cotangent comes out of
the transpose op as a strided view of Ȳᵀ X, and every optimiser update then walks memory with a
stride; fused, W̄ = Ȳᵀ X is produced directly by BLAS in W's own layout, and b̄ needs no
broadcast bookkeeping.
"""

from __future__ import annotations

from ..autodiff.function import Function, primitive
from ..backend import xp_of
from ..devices.cpu_gemm import dense_grads_side_by_side, gemm_bias, weight_grad_split
from ..tensor import Tensor
from ._util import public, shape_of, sum_axes


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
        y = gemm_bias(xp, x2, w, b)  # the bias inside the GEMM, where that applies
        if y is None:
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
        x2 = (x if len(x.shape) == 2 else x.reshape(-1, n_in)) if needs[1] else None
        arrays = not isinstance(g2, Tensor)

        def bias_sum():  # arrays: 1ᵀ ȳ as a GEMV on NumPy and GPUs (~2-3x a column sum)
            return sum_axes(xp_of((g2,)), g2, (0,)) if arrays else g2.sum(axis=0)

        gx = gw = gb = None
        both = None
        if arrays and needs[0] and needs[1]:
            both = dense_grads_side_by_side(g2, x2, w, bias_sum if needs[2] else None)
        if both is not None:
            gx, gw, gb = both
        else:
            if needs[0]:
                gx = g2 @ w
            if needs[1]:
                gw = weight_grad_split(g2, x2) if arrays else None
                if gw is None:
                    gw = g2.mT @ x2
        if gx is not None and gx.shape != x.shape:
            gx = gx.reshape(x.shape)
        if needs[2] and gb is None:
            gb = bias_sum()
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
