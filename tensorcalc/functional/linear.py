"""Affine map: y = x Wᵀ + b (matmul, then add)."""

from __future__ import annotations

from .. import ops
from ..ops._util import shape_of
from ..ops.affine import Affine
from ._dtypes import operand


def linear(x, weight, bias=None):
    """y = x Wᵀ + b for x (..., in), W (out, in), b (out,):  y[..., j] = Σ_k x[..., k]·W[j, k]
    + b[j], so W[j, k] is the weight from input k to output neuron j.

    ∂y/∂x = W, X̄ = Ȳ W;  W̄ = Ȳᵀ X (summed over the leading axes);  b̄ = Σ Ȳ over them.
    Inputs with more than two axes are flattened to (−1, in) so one GEMM does the work: the
    fused primitive ``Affine`` (W̄ comes out of BLAS in W's own layout). The shapes are checked
    once, here (the hot path of every dense layer); x of another dtype is cast to W's, complex
    x is rejected (see ``functional._dtypes``).
    """
    sx, sw = shape_of(x), shape_of(weight)
    if len(sw) != 2 or not sx or sx[-1] != sw[1] or (
            bias is not None and shape_of(bias) != sw[:1]):
        _linear_error(sx, sw, bias)
    return Affine.apply(operand(x, weight, "linear"), weight, bias)


def _linear_error(sx, sw, bias):
    if len(sw) != 2:
        raise ValueError(f"linear: weight must be (out, in), got shape {sw}")
    n_in = sw[1]
    if not sx or sx[-1] != n_in:
        raise ValueError(
            f"linear: x[..., {n_in}] @ Wᵀ[{n_in}, {sw[0]}] needs x's last axis to be {n_in}, "
            f"got x of shape {sx}"
        )
    raise ValueError(f"linear: bias must have shape ({sw[0]},), got {shape_of(bias)}")


def bilinear(x1, x2, weight, bias=None):
    """y[..., o] = Σ_{i,j} x₁[..., i]·W[o, i, j]·x₂[..., j] + b[o] for W (out, in1, in2).
    x₁, x₂ of another dtype are cast to W's; complex is rejected."""
    s1, s2, sw = shape_of(x1), shape_of(x2), shape_of(weight)
    if len(sw) != 3 or s1[-1:] != sw[1:2] or s2[-1:] != sw[2:3] or s1[:-1] != s2[:-1]:
        raise ValueError(f"bilinear: x1 (..., {sw[1] if len(sw) == 3 else '?'}) and x2 (..., "
                         f"{sw[2] if len(sw) == 3 else '?'}) with W (out, in1, in2) expected, got "
                         f"x1 {s1}, x2 {s2}, W {sw}")
    x1, x2 = operand(x1, weight, "bilinear", "x1"), operand(x2, weight, "bilinear", "x2")
    # (..., 1, 1, in1) @ (out, in1, in2) -> (..., out, 1, in2); then · x2 over in2
    t = ops.matmul(ops.expand_dims(ops.expand_dims(x1, -2), -3), weight)
    y = ops.sum(ops.squeeze(t, -2) * ops.expand_dims(x2, -2), axis=-1)
    return y if bias is None else y + bias


def embedding(indices, weight, padding_idx=None):
    """Row lookup: y[..., :] = W[indices[...], :] for integer indices of any shape.

    Equivalent to one_hot(indices) @ W; the gradient scatters-adds ȳ into the looked-up rows.
    Rows at ``padding_idx`` are returned as zeros and receive no gradient.
    """
    from ..ops._util import data_of

    idx = data_of(indices)
    sw = shape_of(weight)
    if len(sw) != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got {sw}")
    if getattr(idx, "dtype", None) is None or idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got "
                        f"{getattr(idx, 'dtype', type(idx).__name__)}")
    if idx.size and (idx.min() < 0 or idx.max() >= sw[0]):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise IndexError(f"embedding: index {bad} is outside [0, {sw[0]}) for a table of "
                         f"{sw[0]} rows")
    y = ops.take(weight, idx, axis=0)
    if padding_idx is not None:
        keep = (idx != padding_idx)[..., None].astype(data_of(weight).dtype)
        y = y * keep
    return y


__all__ = ["linear", "bilinear", "embedding"]
