"""Sequence-to-sequence translation models: a GRU encoder–decoder with Bahdanau attention and a
transformer encoder–decoder, with greedy and beam-search decoding.

GRU + attention (Bahdanau, Cho & Bengio, 2015):

    encoder:  h_1..h_S = BiGRU(E_src[x])                      (B, S, 2H_e), padding masked
    s_0 = tanh(W_init [h→_S; h←_1])                           (the last layer's final states)
    step t:   c_t, α_t = attention(s_{t−1}, h_1..h_S)          e_tj = vᵀ tanh(W_s s + W_h h_j)
              s_t = GRUCell([E_tgt[y_{t−1}]; c_t], s_{t−1})
              p(y_t | y_<t, x) = softmax(W_o [s_t; c_t; E_tgt[y_{t−1}]] + b_o)

trained with teacher forcing (the reference y_{t−1} is fed) by cross-entropy over the
non-padding target tokens.
"""

from __future__ import annotations

import numpy as np

from .. import backend, ops
from ..autodiff.mode import no_grad
from ..data.translation import BOS, EOS, PAD
from ..nn import (
    GRU,
    AdditiveAttention,
    Dropout,
    Embedding,
    GRUCell,
    LearnedPositionalEmbedding,
    Linear,
    Module,
    Transformer,
)


class Seq2SeqAttention(Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int = 128, enc_hidden: int = 128,
                 enc_layers: int = 2, dec_hidden: int = 256, attn_dim: int = 256,
                 dropout: float = 0.2, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.src_embed = Embedding(src_vocab, embed, padding_idx=PAD, rng=rng)
        self.tgt_embed = Embedding(tgt_vocab, embed, padding_idx=PAD, rng=rng)
        self.encoder = GRU(embed, enc_hidden, num_layers=enc_layers, batch_first=True,
                           bidirectional=True, dropout=dropout, rng=rng)
        self.init = Linear(2 * enc_hidden, dec_hidden, rng=rng)
        self.attention = AdditiveAttention(dec_hidden, 2 * enc_hidden, attn_dim, rng=rng)
        self.cell = GRUCell(embed + 2 * enc_hidden, dec_hidden, rng=rng)
        self.out = Linear(dec_hidden + 2 * enc_hidden + embed, tgt_vocab, rng=rng)
        self.drop = Dropout(dropout, rng=rng)
        self.tgt_vocab = tgt_vocab

    def encode(self, src, lengths):
        """(memory (B, S, 2H_e), projected memory, padding mask (B, S), s_0 (B, H_d))."""
        h, hn = self.encoder(self.drop(self.src_embed(src)), lengths=lengths)
        s0 = ops.tanh(self.init(ops.concat([hn[-2], hn[-1]], axis=-1)))
        pad = np.arange(src.shape[1])[None, :] >= np.asarray(lengths)[:, None]
        return h, self.attention.project_keys(h), pad, s0

    def step(self, y_prev, s, enc):
        """One decoder step: (logits (B, V), s_t, α_t (B, S))."""
        h, pk, pad, _ = enc
        e = self.drop(self.tgt_embed(y_prev))
        c, a = self.attention(s, h, key_padding_mask=pad, projected_keys=pk)
        s = self.cell(ops.concat([e, c], axis=-1), s)
        return self.out(self.drop(ops.concat([s, c, e], axis=-1))), s, a

    def forward(self, src, lengths, tgt_in):
        """Teacher forcing: logits (B, T, V) for targets shifted right (``tgt_in`` starts with
        <bos>)."""
        enc = self.encode(src, lengths)
        s, outs = enc[3], []
        for t in range(tgt_in.shape[1]):
            z, s, _ = self.step(tgt_in[:, t], s, enc)
            outs.append(z)
        return ops.stack(outs, axis=1)

    # ------------------------------------------------------------------ decoding
    def greedy(self, src, lengths, max_len: int = 40):
        """Most likely token at each step; returns (ids (B, ≤max_len), attention (B, T, S))."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                enc = self.encode(src, lengths)
                s = enc[3]
                y = np.full(src.shape[0], BOS, dtype=np.int64)
                out, att = [], []
                done = np.zeros(src.shape[0], dtype=bool)
                for _ in range(max_len):
                    z, s, a = self.step(y, s, enc)
                    y = np.asarray(z.data).argmax(-1)
                    out.append(y)
                    att.append(np.asarray(a.data))
                    done |= y == EOS
                    if done.all():
                        break
        finally:
            self.train(was)
        return np.stack(out, 1), np.stack(att, 1)

    def beam(self, src, length, k: int = 4, max_len: int = 40, alpha: float = 1.0):
        """Beam search for one sentence (src (S,)): the k best prefixes by total log-probability
        are extended each step; a finished hypothesis is scored by log p / |y|^alpha (length
        normalised: without it short outputs win). Returns the best ids."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                enc = self.encode(np.asarray(src)[None, :length], np.array([length]))
                h, pk, pad, s = enc
                beams = [([], 0.0)]
                state = s
                finished = []
                for _ in range(max_len):
                    n = len(beams)
                    encn = (ops.broadcast_to(h, (n,) + h.shape[1:]),
                            ops.broadcast_to(pk, (n,) + pk.shape[1:]), np.repeat(pad, n, 0), None)
                    y = np.array([b[0][-1] if b[0] else BOS for b in beams], dtype=np.int64)
                    z, state, _ = self.step(y, state, encn)
                    zd = np.asarray(z.data, dtype=np.float64)
                    lp = zd - zd.max(-1, keepdims=True)
                    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
                    total = np.array([b[1] for b in beams])[:, None] + lp
                    flat = np.argsort(-total, axis=None)[:2 * k]
                    new, rows = [], []
                    for f in flat:
                        i, w = divmod(int(f), lp.shape[1])
                        seq = beams[i][0] + [w]
                        if w == EOS:
                            finished.append((seq, total[i, w] / len(seq) ** alpha))
                        else:
                            new.append((seq, float(total[i, w])))
                            rows.append(i)
                        if len(new) == k:
                            break
                    if len(finished) >= k or not new:
                        break
                    beams = new
                    state = state[np.array(rows)]
                if not finished:
                    finished = [(b[0], b[1] / max(len(b[0]), 1) ** alpha) for b in beams]
                return np.array(max(finished, key=lambda f: f[1])[0], dtype=np.int64)
        finally:
            self.train(was)


class TransformerTranslator(Module):
    """Transformer encoder–decoder (pre-norm, learned positions, shared-nothing embeddings):
    logits = W_o Decoder(E_tgt[y_<t] + P, Encoder(E_src[x] + P)) with causal self-attention."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 128, nhead: int = 4,
                 layers: int = 2, dim_feedforward: int = 256, dropout: float = 0.1,
                 max_len: int = 64, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.src_embed = Embedding(src_vocab, d_model, padding_idx=PAD, rng=rng)
        self.tgt_embed = Embedding(tgt_vocab, d_model, padding_idx=PAD, rng=rng)
        self.src_pos = LearnedPositionalEmbedding(max_len, d_model, rng=rng)
        self.tgt_pos = LearnedPositionalEmbedding(max_len, d_model, rng=rng)
        self.core = Transformer(d_model, nhead, layers, layers, dim_feedforward, dropout,
                                activation="gelu", batch_first=True, norm_first=True, rng=rng)
        self.out = Linear(d_model, tgt_vocab, rng=rng)
        self.scale = float(np.sqrt(d_model))

    def encode(self, src, lengths):
        pad = np.arange(src.shape[1])[None, :] >= np.asarray(lengths)[:, None]
        return self.core.encode(self.src_pos(self.src_embed(src) * self.scale),
                                src_key_padding_mask=pad), pad

    def decode(self, tgt_in, memory, pad, caches=None, offset=0):
        x = self.tgt_pos(self.tgt_embed(tgt_in) * self.scale, offset=offset)
        return self.out(self.core.decode(x, memory, memory_key_padding_mask=pad,
                                         tgt_is_causal=True, caches=caches))

    def forward(self, src, lengths, tgt_in):
        memory, pad = self.encode(src, lengths)
        return self.decode(tgt_in, memory, pad)

    def greedy(self, src, lengths, max_len: int = 40):
        """Greedy decoding with a key/value cache per decoder layer (each step one token)."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                memory, pad = self.encode(src, lengths)
                caches = [{} for _ in self.core.decoder.layers]
                y = np.full((src.shape[0], 1), BOS, dtype=np.int64)
                out, done = [], np.zeros(src.shape[0], dtype=bool)
                for t in range(max_len):
                    z = self.decode(y, memory, pad, caches, offset=t)
                    y = np.asarray(z.data)[:, -1].argmax(-1)[:, None]
                    out.append(y[:, 0])
                    done |= y[:, 0] == EOS
                    if done.all():
                        break
        finally:
            self.train(was)
        return np.stack(out, 1), None


__all__ = ["Seq2SeqAttention", "TransformerTranslator"]
