"""Attention layers and transformers: masks, padding invariance, per-head formula, KV cache.

The composites themselves (every mask kind, first and second derivatives) are in tests/op_db.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import nn

E, H = 8, 2


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_causal_no_position_sees_the_future():
    m = nn.MultiheadAttention(E, H, batch_first=True, rng=0).double()
    x = _x(2, 6, E)
    y0, _ = m(x, x, x, is_causal=True)
    x2 = x.copy()
    x2[:, 4:] += _x(2, 2, E, seed=1)  # perturb positions 4 and 5
    y1, _ = m(x2, x2, x2, is_causal=True)
    np.testing.assert_allclose(y0.data[:, :4], y1.data[:, :4], rtol=0, atol=1e-12)
    assert np.abs(y0.data[:, 4:] - y1.data[:, 4:]).max() > 1e-3


def test_mha_matches_per_head_formula_and_weights():
    m = nn.MultiheadAttention(E, H, batch_first=False, rng=3).double()
    q, kv = _x(3, 2, E), _x(5, 2, E, seed=1)  # (L, B, E)
    y, w = m(q, kv, kv)
    Wi, bi = m.in_proj_weight.data, m.in_proj_bias.data
    Wo, bo = m.out_proj.weight.data, m.out_proj.bias.data
    d = E // H
    qb, kb = q.transpose(1, 0, 2), kv.transpose(1, 0, 2)
    Q, K = qb @ Wi[:E].T + bi[:E], kb @ Wi[E:2 * E].T + bi[E:2 * E]
    V = kb @ Wi[2 * E:].T + bi[2 * E:]
    heads, ws = [], []
    for h in range(H):
        s = slice(h * d, (h + 1) * d)
        e = Q[..., s] @ K[..., s].transpose(0, 2, 1) / np.sqrt(d)
        a = np.exp(e - e.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        heads.append(a @ V[..., s])
        ws.append(a)
    ref = (np.concatenate(heads, -1) @ Wo.T + bo).transpose(1, 0, 2)
    np.testing.assert_allclose(y.data, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.data, np.mean(ws, axis=0), rtol=1e-10, atol=1e-12)


def _pad(x, n):
    return np.concatenate([x, _x(x.shape[0], n, x.shape[2], seed=9) * 5], axis=1)


def test_padding_never_changes_a_result_encoder_and_decoder():
    """A batch of one against the same sentence padded (with garbage) inside a batch of two."""
    model = tc.nn.Transformer(E, H, 2, 2, 16, 0.0, batch_first=True, norm_first=False,
                              rng=0).double()
    src, tgt = _x(1, 4, E), _x(1, 3, E, seed=2)
    other_src, other_tgt = _x(1, 6, E, seed=3), _x(1, 5, E, seed=4)
    y1 = model(src, tgt, tgt_is_causal=True).data
    S = np.concatenate([_pad(src, 2), other_src])
    T = np.concatenate([_pad(tgt, 2), other_tgt])
    spm = np.array([[0, 0, 0, 0, 1, 1], [0] * 6], dtype=bool)
    tpm = np.array([[0, 0, 0, 1, 1], [0] * 5], dtype=bool)
    y2 = model(S, T, src_key_padding_mask=spm, tgt_key_padding_mask=tpm,
               memory_key_padding_mask=spm, tgt_is_causal=True).data
    np.testing.assert_allclose(y2[0, :3], y1[0], rtol=1e-10, atol=1e-12)


def test_padding_invariance_additive_attention_layer():
    att = nn.AdditiveAttention(6, E, 5, rng=1).double()
    q, k = _x(1, 6), _x(1, 4, E, seed=1)
    c1, w1 = att(q, k)
    K = np.concatenate([_pad(k, 3), _x(1, 7, E, seed=2)])
    Q = np.concatenate([q, _x(1, 6, seed=5)])
    kpm = np.array([[0, 0, 0, 0, 1, 1, 1], [0] * 7], dtype=bool)
    c2, w2 = att(Q, K, key_padding_mask=kpm)
    np.testing.assert_allclose(c2.data[0], c1.data[0], rtol=1e-12, atol=1e-13)
    assert np.all(w2.data[0, 4:] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_gradcheck(norm_first):
    layer = nn.TransformerEncoderLayer(4, 2, 6, 0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_first, rng=0).double()
    x = _x(2, 3, 4)
    kpm = np.array([[0, 0, 1], [0, 0, 0]], dtype=bool)

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(x, src_key_padding_mask=kpm, is_causal=True)

    rep = tc.gradcheck_module(Masked(), x, loss_fn=lambda y: (y * y).sum())
    assert rep.ok, rep.failure_message()
    assert len(rep.rows) > 10


def test_kv_cache_equals_full_recomputation():
    layer = nn.TransformerEncoderLayer(E, H, 16, 0.0, batch_first=True, norm_first=True,
                                       rng=2).double()
    x = _x(2, 7, E)
    full = layer(x, is_causal=True).data
    cache = {}
    steps = [layer(x[:, :3], is_causal=True, cache=cache).data]  # a prompt of 3, then one by one
    for t in range(3, 7):
        steps.append(layer(x[:, t:t + 1], is_causal=True, cache=cache).data)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-10, atol=1e-12)
    assert cache["k"].shape == (2, H, 7, E // H)


def test_positional_encodings():
    pe = nn.SinusoidalPositionalEncoding(6, max_len=10).double()
    y = pe(np.zeros((1, 4, 6)), offset=2).data[0]
    p, i = 3, 1  # row 3 is position 2 + 3 = 5
    assert np.isclose(y[p, 2 * i], np.sin(5 / 10000 ** (2 * i / 6)))
    assert np.isclose(y[p, 2 * i + 1], np.cos(5 / 10000 ** (2 * i / 6)))
    lp = nn.LearnedPositionalEmbedding(10, 6, rng=0)
    out = lp(tc.tensor(np.zeros((2, 3, 6), dtype=np.float32)), offset=1)
    np.testing.assert_array_equal(out.data[1], lp.weight.data[1:4])
    with pytest.raises(ValueError, match="max_len"):
        lp(np.zeros((1, 11, 6), dtype=np.float32))
    out.sum().backward()
    g = np.asarray(lp.weight.grad.data if hasattr(lp.weight.grad, 'data') else lp.weight.grad)
    assert g[0].sum() == 0 and np.all(g[1:4] == 2)


def test_mha_errors_and_float32():
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    m = nn.MultiheadAttention(E, H, rng=0)
    y, w = m(np.zeros((3, 2, E), np.float32), np.zeros((3, 2, E), np.float32),
             np.zeros((3, 2, E), np.float32), need_weights=False)
    assert y.dtype == np.float32 and w is None and y.shape == (3, 2, E)
