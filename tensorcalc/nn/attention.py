"""Attention layers: MultiheadAttention, additive (Bahdanau) attention, positional encodings.

The math is in :mod:`tensorcalc.functional.attention`; these layers hold the parameters.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from ..functional.attention import additive_attention, multi_head_attention
from ..ops._util import shape_of
from . import init
from .dropout import Dropout
from .linear import Linear
from .module import Module, Parameter


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's arguments (F.multi_head_attention has the equations).

    ``MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False)``;
    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False, cache=None)`` → (out, weights or None).
    Inputs are (L, B, E), or (B, L, E) with ``batch_first``. ``key_padding_mask`` (B, Lk):
    True = padding; ``attn_mask`` (Lq, Lk) or (B·H, Lq, Lk): boolean True = not allowed, or
    additive float. Parameters: ``in_proj_weight`` (3E, E) Xavier-uniform, ``in_proj_bias``
    (3E,) zeros, ``out_proj`` Linear(E, E) with zero bias — PyTorch's layout and names, so a
    PyTorch state dict loads. ``cache`` (a dict, batch-first internal layout) keeps projected
    keys and values for incremental decoding.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, rng=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by "
                             f"num_heads {num_heads}")
        rng = backend.as_rng(rng)
        dtype = dtype or backend.get_default_dtype()
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.rng = rng
        self.in_proj_weight = Parameter(np.zeros((3 * embed_dim, embed_dim), dtype=dtype))
        init.xavier_uniform_(self.in_proj_weight, rng=rng)
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * embed_dim, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, rng=rng, dtype=dtype)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False, cache=None):
        if len(shape_of(query)) != 3:
            raise ValueError(f"MultiheadAttention: query must be 3-D ({'(B, L, E)' if self.batch_first else '(L, B, E)'}), "  # noqa: E501
                             f"got {shape_of(query)}")
        if not self.batch_first:
            same_kv = key is value
            self_attn = query is key and same_kv
            query = ops.swapaxes(query, 0, 1)
            key = query if self_attn else ops.swapaxes(key, 0, 1)
            value = key if same_kv else ops.swapaxes(value, 0, 1)
        out, w = multi_head_attention(
            query, key, value, self.num_heads, self.in_proj_weight, self.in_proj_bias,
            self.out_proj.weight, self.out_proj.bias, key_padding_mask=key_padding_mask,
            attn_mask=attn_mask, need_weights=need_weights,
            average_attn_weights=average_attn_weights, is_causal=is_causal,
            dropout_p=self.dropout, training=self.training, rng=self.rng, cache=cache)
        if not self.batch_first:
            out = ops.swapaxes(out, 0, 1)
        return out, w

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")


class AdditiveAttention(Module):
    """Bahdanau attention e_ij = vᵀ tanh(W_q q_i + W_k k_j) over keys that are also the values
    (F.additive_attention). ``forward(query (B, dq) or (B, Lq, dq), keys (B, Lk, dk),
    key_padding_mask=None, projected_keys=None)`` → (context, weights); :meth:`project_keys`
    precomputes W_k k once per source sentence."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int, rng=None, dtype=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.w_query = Linear(query_dim, attn_dim, bias=False, rng=rng, dtype=dtype).weight
        self.w_key = Linear(key_dim, attn_dim, bias=False, rng=rng, dtype=dtype).weight
        dtype = dtype or backend.get_default_dtype()
        b = 1.0 / math.sqrt(attn_dim)
        self.v = Parameter(rng.uniform(-b, b, attn_dim).astype(dtype))

    def project_keys(self, keys):
        return ops.matmul(keys, ops.swapaxes(self.w_key, 0, 1))

    def forward(self, query, keys, key_padding_mask=None, projected_keys=None):
        single = len(shape_of(query)) == 2
        q = ops.expand_dims(query, 1) if single else query
        c, w = additive_attention(q, keys, keys, self.w_query, self.w_key, self.v,
                                  key_padding_mask, projected_keys)
        if single:
            c, w = ops.squeeze(c, 1), ops.squeeze(w, 1)
        return c, w


def sinusoidal_table(max_len: int, d_model: int, dtype="float32") -> np.ndarray:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)) (Vaswani 2017)."""
    pos = np.arange(max_len)[:, None]
    div = np.exp(np.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)[:, :d_model // 2]
    return pe.astype(dtype)


class SinusoidalPositionalEncoding(Module):
    """x + PE[offset : offset + L] with the fixed sinusoidal table (a buffer, not learned), then
    dropout. x (B, L, d) with ``batch_first`` (the default here), else (L, B, d). ``offset``
    shifts the positions (incremental decoding)."""

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0,
                 batch_first: bool = True, rng=None, dtype=None):
        super().__init__()
        self.batch_first = batch_first
        self.register_buffer("pe", sinusoidal_table(max_len, d_model,
                                                    dtype or backend.get_default_dtype()),
                             persistent=False)
        self.drop = Dropout(dropout, rng=rng)

    def forward(self, x, offset: int = 0):
        s = shape_of(x)
        L = s[1] if self.batch_first else s[0]
        pe = self.pe[offset:offset + L]
        if shape_of(pe)[0] != L:
            raise ValueError(f"SinusoidalPositionalEncoding: positions {offset}..{offset + L - 1} "
                             f"exceed max_len {shape_of(self.pe)[0]}")
        return self.drop(x + (pe if self.batch_first else ops.expand_dims(pe, 1)))


class LearnedPositionalEmbedding(Module):
    """x + P[offset : offset + L] with a learned table P (max_len, d) ~ N(0, 0.02²) (GPT-2).
    x (B, L, d) with ``batch_first`` (the default), else (L, B, d)."""

    def __init__(self, max_len: int, d_model: int, batch_first: bool = True, std: float = 0.02,
                 rng=None, dtype=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.batch_first = batch_first
        self.weight = Parameter((rng.standard_normal((max_len, d_model)) * std).astype(
            dtype or backend.get_default_dtype()))

    def forward(self, x, offset: int = 0):
        s = shape_of(x)
        L = s[1] if self.batch_first else s[0]
        if offset + L > shape_of(self.weight)[0]:
            raise ValueError(f"LearnedPositionalEmbedding: positions {offset}..{offset + L - 1} "
                             f"exceed max_len {shape_of(self.weight)[0]}")
        p = self.weight[offset:offset + L]
        return x + (p if self.batch_first else ops.expand_dims(p, 1))


__all__ = ["MultiheadAttention", "AdditiveAttention", "SinusoidalPositionalEncoding",
           "LearnedPositionalEmbedding", "sinusoidal_table"]
