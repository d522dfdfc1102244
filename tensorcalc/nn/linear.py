"""Affine layers and shape helpers: Linear, Identity, Flatten, Embedding."""

from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from ..functional.linear import bilinear as _bilinear
from ..functional.linear import embedding as _embedding
from ..functional.linear import linear as _linear
from ..ops._util import shape_of
from . import init
from .module import Module, Parameter


class Identity(Module):
    """y = x (a placeholder layer; ignores constructor arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge axes start_axis..end_axis into one: (N, C, H, W) -> (N, C·H·W) by default."""

    def __init__(self, start_axis: int = 1, end_axis: int = -1):
        super().__init__()
        self.start_axis = start_axis
        self.end_axis = end_axis

    def forward(self, x):
        s = shape_of(x)
        n = len(s)
        a, b = self.start_axis % n, self.end_axis % n
        if a > b:
            raise ValueError(f"Flatten({self.start_axis}, {self.end_axis}): start after end "
                             f"for x of shape {s}")
        return ops.reshape(x, s[:a] + (math.prod(s[a:b + 1]),) + s[b + 1:])

    def extra_repr(self):
        return f"start_axis={self.start_axis}, end_axis={self.end_axis}"


class Linear(Module):
    """Fully connected layer: y = x Wᵀ + b for x (..., in_features).

    ``weight`` W has shape (out_features, in_features) and ``bias`` b shape (out_features,):
    y[..., j] = Σ_k W[j, k]·x[..., k] + b[j], so **w[j, k] is the weight from input k to
    neuron j** and b[j] the bias of neuron j. Initialised W, b ~ U(−1/√in, 1/√in) (He uniform
    with a = √5, as PyTorch) from ``rng``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None,
                 dtype=None):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear: feature sizes must be positive, got {in_features} -> "
                             f"{out_features}")
        self.in_features = in_features
        self.out_features = out_features
        rng = backend.as_rng(rng)
        dtype = dtype or backend.get_default_dtype()
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5.0), rng=rng)
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = Parameter(np.empty((out_features,), dtype=dtype))
            init.uniform_(self.bias, -bound, bound, rng=rng)
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        try:  # F.linear checks the shapes once; a mismatch is re-worded in the layer's terms
            return _linear(x, self.weight, self.bias)
        except ValueError:
            s = shape_of(x)
            if not s or s[-1] != self.in_features:
                raise ValueError(f"Linear({self.in_features} -> {self.out_features}): "
                                 f"x[..., {self.in_features}] expected, got {tuple(s)}") from None
            raise

    def extra_repr(self):
        return f"{self.in_features} -> {self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """y[..., o] = x₁ᵀ W[o] x₂ + b[o] with W (out, in1, in2); W, b ~ U(−1/√in1, 1/√in1)."""

    def __init__(self, in1_features, in2_features, out_features, bias=True, rng=None,
                 dtype=None):
        super().__init__()
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        rng = backend.as_rng(rng)
        dtype = dtype or backend.get_default_dtype()
        bound = 1.0 / math.sqrt(in1_features)
        self.weight = Parameter(np.empty((out_features, in1_features, in2_features),
                                                 dtype=dtype))
        init.uniform_(self.weight, -bound, bound, rng=rng)
        if bias:
            self.bias = Parameter(np.empty((out_features,), dtype=dtype))
            init.uniform_(self.bias, -bound, bound, rng=rng)
        else:
            self.register_parameter("bias", None)

    def forward(self, x1, x2):
        return _bilinear(x1, x2, self.weight, self.bias)

    def extra_repr(self):
        return (f"({self.in1_features}, {self.in2_features}) -> {self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """Lookup table: y[..., :] = W[indices[...], :], W (num_embeddings, embedding_dim)
    ~ N(0, 1). Equivalent to one_hot(indices) @ W. Row ``padding_idx`` (if given) starts at 0,
    is returned as zeros and gets no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, rng=None,
                 dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} outside the table of "
                                 f"{num_embeddings} rows")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        dtype = dtype or backend.get_default_dtype()
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype=dtype))
        init.normal_(self.weight, rng=rng)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, indices):
        return _embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


__all__ = ["Identity", "Flatten", "Linear", "Bilinear", "Embedding"]
