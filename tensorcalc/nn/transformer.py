"""Transformer layers (Vaswani et al., 2017) with PyTorch's arguments.

Post-norm (the original; ``norm_first=False``):   x ← LN(x + Drop(SA(x)));  x ← LN(x + Drop(FF(x)))
Pre-norm (GPT-2, ViT; ``norm_first=True``):       x ← x + Drop(SA(LN(x)));  x ← x + Drop(FF(LN(x)))

with FF(x) = W₂ Drop(act(W₁ x + b₁)) + b₂, act = ReLU or GELU. The decoder layer adds a
cross-attention block on the encoder's output (the memory) between the two.
"""

from __future__ import annotations

import copy

from .. import backend
from ..functional.activations import gelu, relu
from .attention import MultiheadAttention
from .container import ModuleList
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .normalization import LayerNorm

_ACT = {"relu": relu, "gelu": gelu}


def _act(name):
    if callable(name):
        return name
    if name not in _ACT:
        raise ValueError(f"Transformer: activation must be 'relu' or 'gelu', got {name!r}")
    return _ACT[name]


class _FeedForward(Module):
    def __init__(self, d_model, dim_feedforward, dropout, activation, bias, rng, dtype):
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, rng=rng, dtype=dtype)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, rng=rng, dtype=dtype)
        self.dropout = Dropout(dropout, rng=rng)
        self.act = _act(activation)

    def forward(self, x):
        return self.linear2(self.dropout(self.act(self.linear1(x))))


class TransformerEncoderLayer(Module):
    """Self-attention + feed-forward, each with a residual and layer norm (post- or pre-norm).

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``; src (L, B, E),
    or (B, L, E) with ``batch_first``. Masks as :class:`MultiheadAttention`.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 rng=None, dtype=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.norm_first = norm_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first, rng=rng,
                                            dtype=dtype)
        self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation, bias, rng, dtype)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, dtype=dtype)
        self.dropout1 = Dropout(dropout, rng=rng)
        self.dropout2 = Dropout(dropout, rng=rng)

    def _sa(self, x, mask, kpm, is_causal, cache=None):
        y, _ = self.self_attn(x, x, x, key_padding_mask=kpm, attn_mask=mask, need_weights=False,
                              is_causal=is_causal, cache=cache)
        return self.dropout1(y)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False,
                cache=None):
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal, cache)
            x = x + self.dropout2(self.ff(self.norm2(x)))
        else:
            x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal, cache))
            x = self.norm2(x + self.dropout2(self.ff(x)))
        return x


class TransformerDecoderLayer(Module):
    """Masked self-attention, cross-attention on the memory, feed-forward; residuals and layer
    norms (post- or pre-norm).

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False)``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation="relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 rng=None, dtype=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.norm_first = norm_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first, rng=rng,
                                            dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first,
                                                 rng=rng, dtype=dtype)
        self.ff = _FeedForward(d_model, dim_feedforward, dropout, activation, bias, rng, dtype)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, dtype=dtype)
        self.norm3 = LayerNorm(d_model, layer_norm_eps, dtype=dtype)
        self.dropout1 = Dropout(dropout, rng=rng)
        self.dropout2 = Dropout(dropout, rng=rng)
        self.dropout3 = Dropout(dropout, rng=rng)

    def _sa(self, x, mask, kpm, is_causal, cache):
        y, _ = self.self_attn(x, x, x, key_padding_mask=kpm, attn_mask=mask, need_weights=False,
                              is_causal=is_causal, cache=cache)
        return self.dropout1(y)

    def _ca(self, x, mem, mask, kpm):
        y, _ = self.multihead_attn(x, mem, mem, key_padding_mask=kpm, attn_mask=mask,
                                   need_weights=False)
        return self.dropout2(y)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, cache=None):
        x = tgt
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal, cache)
            x = x + self._ca(self.norm2(x), memory, memory_mask, memory_key_padding_mask)
            x = x + self.dropout3(self.ff(self.norm3(x)))
        else:
            x = self.norm1(x + self._sa(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal, cache))
            x = self.norm2(x + self._ca(x, memory, memory_mask, memory_key_padding_mask))
            x = self.norm3(x + self.dropout3(self.ff(x)))
        return x


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (deep copies, as PyTorch), then ``norm``."""

    def __init__(self, encoder_layer, num_layers: int, norm=None):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        for layer in self.layers:
            x = layer(x, mask, src_key_padding_mask, is_causal)
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer``, then ``norm``."""

    def __init__(self, decoder_layer, num_layers: int, norm=None):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(decoder_layer) for _ in range(num_layers)])
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, caches=None):
        x = tgt
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                      memory_key_padding_mask, tgt_is_causal,
                      None if caches is None else caches[i])
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """Encoder–decoder transformer (PyTorch's ``nn.Transformer`` arguments); each layer is
    initialised from ``rng`` independently. ``forward(src, tgt, src_mask, tgt_mask,
    memory_mask, src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask,
    tgt_is_causal)``. With ``norm_first`` a final layer norm closes each stack (as PyTorch)."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, rng=None, dtype=None):
        super().__init__()
        rng = backend.as_rng(rng)
        kw = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                  layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first,
                  bias=bias, rng=rng, dtype=dtype)
        self.encoder = TransformerEncoder(TransformerEncoderLayer(d_model, nhead, **kw), 0,
                                          LayerNorm(d_model, layer_norm_eps, dtype=dtype))
        self.encoder.layers = ModuleList([TransformerEncoderLayer(d_model, nhead, **kw)
                                          for _ in range(num_encoder_layers)])
        self.decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, **kw), 0,
                                          LayerNorm(d_model, layer_norm_eps, dtype=dtype))
        self.decoder.layers = ModuleList([TransformerDecoderLayer(d_model, nhead, **kw)
                                          for _ in range(num_decoder_layers)])
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def encode(self, src, src_mask=None, src_key_padding_mask=None):
        return self.encoder(src, src_mask, src_key_padding_mask)

    def decode(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
               memory_key_padding_mask=None, tgt_is_causal=False, caches=None):
        return self.decoder(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                            memory_key_padding_mask, tgt_is_causal, caches)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False):
        memory = self.encode(src, src_mask, src_key_padding_mask)
        return self.decode(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                           memory_key_padding_mask, tgt_is_causal)


__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerDecoder", "Transformer"]
