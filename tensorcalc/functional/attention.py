"""Attention as composites of primitives (no derivative code here).

Every attention is the same three steps over queries q_i, keys k_j and values v_j:

    e_ij = score(q_i, k_j)                    (a compatibility, one per query-key pair)
    α_ij = exp(e_ij) / Σ_j′ exp(e_ij′)        (softmax over the keys j; masked keys get α = 0)
    c_i  = Σ_j α_ij v_j                       (the context: a convex combination of the values)

and differ only in the score:

    additive (Bahdanau et al., 2015):   e_ij = vᵀ tanh(W_q q_i + W_k k_j)
    dot (Luong et al., 2015):           e_ij = q_iᵀ k_j
    general (Luong et al., 2015):       e_ij = q_iᵀ W k_j
    scaled dot product (Vaswani 2017):  e_ij = q_iᵀ k_j / √d

The derivative is the chain rule over matmul, tanh and the (stable) softmax: with
ᾱ_ij = c̄_i · v_j, the softmax pullback is ē_ij = α_ij (ᾱ_ij − Σ_j′ α_ij′ ᾱ_ij′).

Masks. A *boolean* mask marks which query-key pairs exist; an *additive* (float) mask is added
to the scores (0 keeps, −∞ removes, anything else biases). Two conventions are in use, as in
PyTorch, and each function says which it takes:

- ``scaled_dot_product_attention(attn_mask=...)``: True = **may attend** (F.sdpa's convention);
- ``key_padding_mask`` everywhere, and ``nn.MultiheadAttention(attn_mask=...)``: True = **masked
  out** (padding / not allowed; nn.MultiheadAttention's convention).

A removed pair is masked inside the softmax primitive (``ops.reduce.softmax(mask=...)``): its
weight is exactly 0 and its score gets no gradient; a query whose every key is removed gets α = 0
and a zero context, with zero gradients — never a NaN. An additive mask is clamped at −10³⁰ (not
−∞, so no ∞ − ∞ enters the chain rule). Padding therefore never changes a result: the padded keys
contribute exactly 0 to every sum.
"""

from __future__ import annotations

import math

from .. import ops
from ..backend import array_module
from ..ops._util import data_of, shape_of
from ..ops.reduce import softmax as _softmax
from .dropout import dropout

NEG = -1e30  # the floor of an additive mask (finite: exp(NEG − max) = 0 exactly, no ∞ − ∞)


def _xp(x):
    return array_module(data_of(x))


def causal_mask(lq, lk=None, offset=None):
    """Boolean (lq, lk) mask, True where query i may see key j: j ≤ i + offset (no position sees
    the future). ``offset`` defaults to lk − lq (queries are the last lq of lk positions, as
    when generating with a key/value cache)."""
    import numpy as np

    lk = lq if lk is None else lk
    offset = lk - lq if offset is None else offset
    return np.arange(lk)[None, :] <= np.arange(lq)[:, None] + offset


def _allowed(like, lq, lk, attn_mask=None, key_padding_mask=None, is_causal=False,
             mask_true_allows=True):
    """(allowed boolean array broadcastable to (..., lq, lk) or None, additive float mask or
    None) from the mask arguments, on the device of ``like``."""
    xp = _xp(like)
    allowed, additive = None, None
    if attn_mask is not None:
        m = xp.asarray(data_of(attn_mask))
        if m.dtype == bool:
            allowed = m if mask_true_allows else ~m
        else:
            additive = xp.maximum(m, NEG).astype(data_of(like).dtype)
    if key_padding_mask is not None:
        kp = xp.asarray(data_of(key_padding_mask))
        if kp.dtype != bool:
            raise TypeError(f"attention: key_padding_mask must be boolean (True = padding), got "
                            f"{kp.dtype}")
        if kp.shape[-1] != lk:
            raise ValueError(f"attention: key_padding_mask (B, {lk}) expected for {lk} keys, "
                             f"got {kp.shape}")
        # (B, lk) -> (B, 1, ..., 1, lk): broadcast over heads and queries
        nd = len(shape_of(like)) - 1  # score dims before the key axis, minus the batch axis
        keep = (~kp).reshape(kp.shape[:1] + (1,) * (nd - 1) + (lk,))
        allowed = keep if allowed is None else allowed & keep
    if is_causal:
        c = xp.asarray(causal_mask(lq, lk))
        allowed = c if allowed is None else allowed & c
    return allowed, additive


def attend(scores, values, allowed=None, additive=None, dropout_p=0.0, training=True, rng=None):
    """α = softmax over the last axis of ``scores`` (with the masks), then c = α v.

    ``scores`` (..., Lq, Lk), ``values`` (..., Lk, dv); ``allowed`` boolean broadcastable to the
    scores (True = the pair exists), ``additive`` a float mask added to them. Returns (c, α),
    c (..., Lq, dv). Queries with no allowed key get α = 0 and c = 0.
    """
    if additive is not None:
        scores = scores + additive
    w = _softmax(scores, axis=-1, mask=allowed)  # one primitive: removed pairs and dead rows 0
    if dropout_p > 0.0 and training:
        w = dropout(w, dropout_p, True, rng)
    return ops.matmul(w, values), w


def _check_qkv(who, q, k, v, dq=None, dk=None):
    sq, sk, sv_ = shape_of(q), shape_of(k), shape_of(v)
    if len(sk) < 2 or len(sv_) < 2 or sk[-2] != sv_[-2]:
        raise ValueError(f"{who}: keys (..., Lk, dk) and values (..., Lk, dv) need the same "
                         f"length Lk, got keys {sk} and values {sv_}")
    if dq is not None and (not sq or sq[-1] != dq):
        raise ValueError(f"{who}: queries (..., Lq, {dq}) expected, got {sq}")
    if dk is not None and sk[-1] != dk:
        raise ValueError(f"{who}: keys (..., Lk, {dk}) expected, got {sk}")
    return sq, sk


def scaled_dot_product_attention(q, k, v, attn_mask=None, key_padding_mask=None,
                                 is_causal=False, dropout_p=0.0, training=True, rng=None,
                                 scale=None, need_weights=False):
    """Scaled dot-product attention (Vaswani et al., 2017):

        A = softmax(Q Kᵀ / √d + M),   out = A V

    Q (..., Lq, d), K (..., Lk, d), V (..., Lk, dv) → out (..., Lq, dv). ``scale`` replaces
    1/√d. Masks: ``attn_mask`` boolean (True = **may attend**, as F.scaled_dot_product_attention)
    or additive float, broadcastable to (..., Lq, Lk); ``key_padding_mask`` (B, Lk) boolean with
    True = padding (B is the first axis); ``is_causal``: query i sees keys j ≤ i + Lk − Lq.
    Dropout (``dropout_p``, ``rng``) acts on A in training. With ``need_weights`` returns
    (out, A).
    """
    sq, sk = _check_qkv("scaled_dot_product_attention", q, k, v)
    if sq[-1] != sk[-1]:
        raise ValueError(f"scaled_dot_product_attention: Q (..., Lq, d) and K (..., Lk, d) need "
                         f"the same d, got Q {sq} and K {sk}")
    s = 1.0 / math.sqrt(sq[-1]) if scale is None else float(scale)
    scores = ops.matmul(q * s, ops.swapaxes(k, -1, -2))
    allowed, additive = _allowed(scores, sq[-2], sk[-2], attn_mask, key_padding_mask, is_causal)
    out, w = attend(scores, v, allowed, additive, dropout_p, training, rng)
    return (out, w) if need_weights else out


def dot_attention(query, keys, values, key_padding_mask=None):
    """Luong's dot attention: e_ij = q_iᵀ k_j, α = softmax_j(e), c_i = Σ_j α_ij v_j.

    query (..., Lq, d), keys (..., Lk, d), values (..., Lk, dv); ``key_padding_mask`` (B, Lk)
    True = padding. Returns (context (..., Lq, dv), weights (..., Lq, Lk)).
    """
    sq, sk = _check_qkv("dot_attention", query, keys, values)
    if sq[-1] != sk[-1]:
        raise ValueError(f"dot_attention: query (..., d) and keys (..., d) need the same d, got "
                         f"{sq} and {sk}")
    scores = ops.matmul(query, ops.swapaxes(keys, -1, -2))
    allowed, _ = _allowed(scores, sq[-2], sk[-2], None, key_padding_mask)
    return attend(scores, values, allowed)


def general_attention(query, keys, values, weight, key_padding_mask=None):
    """Luong's general (bilinear) attention: e_ij = q_iᵀ W k_j with W (dq, dk).

    query (..., Lq, dq), keys (..., Lk, dk), values (..., Lk, dv). Returns (context, weights).
    """
    sw = shape_of(weight)
    if len(sw) != 2:
        raise ValueError(f"general_attention: W (dq, dk) expected, got {sw}")
    sq, sk = _check_qkv("general_attention", query, keys, values, sw[0], sw[1])
    scores = ops.matmul(ops.matmul(query, weight), ops.swapaxes(keys, -1, -2))
    allowed, _ = _allowed(scores, sq[-2], sk[-2], None, key_padding_mask)
    return attend(scores, values, allowed)


def additive_attention(query, keys, values, w_query, w_key, v, key_padding_mask=None,
                       projected_keys=None):
    """Bahdanau's additive attention: e_ij = vᵀ tanh(W_q q_i + W_k k_j), α = softmax_j(e),
    c_i = Σ_j α_ij v_j.

    query (..., Lq, dq), keys (..., Lk, dk), values (..., Lk, dv), W_q (A, dq), W_k (A, dk),
    v (A,). ``projected_keys`` = keys W_kᵀ (..., Lk, A) may be passed when the same keys are
    attended by many queries (a decoder step after step): it is then not recomputed.
    Returns (context (..., Lq, dv), weights (..., Lq, Lk)).
    """
    sa = shape_of(w_query)
    if len(sa) != 2 or shape_of(w_key)[:1] != sa[:1] or shape_of(v) != sa[:1]:
        raise ValueError(f"additive_attention: W_q (A, dq), W_k (A, dk) and v (A,) expected, "
                         f"got {sa}, {shape_of(w_key)}, {shape_of(v)}")
    sq, sk = _check_qkv("additive_attention", query, keys, values, sa[1],
                        shape_of(w_key)[1])
    pk = ops.matmul(keys, ops.swapaxes(w_key, 0, 1)) if projected_keys is None \
        else projected_keys
    pq = ops.matmul(query, ops.swapaxes(w_query, 0, 1))
    # (..., Lq, 1, A) + (..., 1, Lk, A) -> (..., Lq, Lk, A) -> · v -> (..., Lq, Lk)
    h = ops.tanh(ops.expand_dims(pq, -2) + ops.expand_dims(pk, -3))
    scores = ops.squeeze(ops.matmul(h, ops.expand_dims(v, -1)), -1)
    allowed, _ = _allowed(scores, sq[-2], sk[-2], None, key_padding_mask)
    return attend(scores, values, allowed)


def multi_head_attention(query, key, value, num_heads, in_proj_weight, in_proj_bias,
                         out_proj_weight, out_proj_bias, key_padding_mask=None, attn_mask=None,
                         need_weights=True, average_attn_weights=True, is_causal=False,
                         dropout_p=0.0, training=True, rng=None, cache=None):
    """Multi-head attention on batch-first inputs (Vaswani et al., 2017):

        Q = X_q W_Qᵀ + b_Q,  K = X_k W_Kᵀ + b_K,  V = X_v W_Vᵀ + b_V   ([W_Q; W_K; W_V] = W_in)
        head_h = softmax(Q_h K_hᵀ / √d_h + M) V_h     (Q_h: columns h·d_h … (h+1)·d_h − 1)
        out = concat(head_1, …, head_H) W_Oᵀ + b_O

    query (B, Lq, E), key/value (B, Lk, E); W_in (3E, E), b_in (3E,), W_O (E, E), b_O (E,).
    Masks as nn.MultiheadAttention: ``attn_mask`` (Lq, Lk) or (B·H, Lq, Lk), boolean with
    True = **not allowed**, or additive float; ``key_padding_mask`` (B, Lk), True = padding.

    ``cache``: a dict for incremental decoding; the projected keys and values (B, H, L, d_h) of
    earlier calls are kept under "k" and "v" and the new ones appended, so generating n tokens
    projects each token once (O(n) steps instead of O(n²) recomputation). Causal masking then
    lets each new query see every cached key and the new keys up to itself.

    Returns (out (B, Lq, E), weights (B, Lq, Lk) averaged over heads, (B, H, Lq, Lk), or None).
    """
    sq, sk = shape_of(query), shape_of(key)
    E = sq[-1]
    if len(sq) != 3 or len(sk) != 3 or sk[-1] != E or shape_of(value) != sk:
        raise ValueError(f"multi_head_attention: query (B, Lq, {E}), key and value (B, Lk, {E}) "
                         f"expected, got {sq}, {sk}, {shape_of(value)}")
    if E % num_heads:
        raise ValueError(f"multi_head_attention: embed_dim {E} is not divisible by num_heads "
                         f"{num_heads}")
    B, Lq, H = sq[0], sq[1], num_heads
    d = E // H
    from .linear import linear

    # Three GEMMs with the rows of W_in (one split: views forward, one concatenation back), not
    # one (B, L, 3E) GEMM split afterwards: as fast, and the backward has no full-size scatter
    # of Q̄, K̄, V̄ into a zero (B, L, 3E). The 1/√d of the scores is folded into W_Q and b_Q:
    # an (E, E) product, not a (B, L, E) one.
    scale = 1.0 / math.sqrt(d)
    wq, wk, wv = ops.split_sizes(in_proj_weight, (E, E, E))
    bq = bk = bv = None
    if in_proj_bias is not None:
        bq, bk, bv = ops.split_sizes(in_proj_bias, (E, E, E))
        bq = bq * scale

    def heads(x, w, b):
        s = shape_of(x)
        return ops.transpose(ops.reshape(linear(x, w, b), (s[0], s[1], H, d)), (0, 2, 1, 3))

    q = heads(query, wq * scale, bq)                                  # (B, H, L, d), scaled
    k = heads(key, wk, bk)
    v = heads(value, wv, bv)
    if cache is not None:
        if "k" in cache:
            k = ops.concat([cache["k"], k], axis=2)
            v = ops.concat([cache["v"], v], axis=2)
        cache["k"], cache["v"] = k, v
    Lk = shape_of(k)[2]
    scores = ops.matmul(q, ops.swapaxes(k, -1, -2))                  # (B, H, Lq, Lk)
    am = attn_mask
    if am is not None:
        ad = data_of(am)
        if ad.ndim == 3:  # (B·H, Lq, Lk) -> (B, H, Lq, Lk)
            am = _xp(scores).asarray(ad).reshape(B, H, ad.shape[1], ad.shape[2])
    allowed, additive = _allowed(scores, Lq, Lk, am, key_padding_mask, is_causal,
                                 mask_true_allows=False)
    ctx, w = attend(scores, v, allowed, additive, dropout_p, training, rng)
    ctx = ops.reshape(ops.transpose(ctx, (0, 2, 1, 3)), (B, Lq, E))
    out = linear(ctx, out_proj_weight, out_proj_bias)
    if not need_weights:
        return out, None
    if average_attn_weights:
        w = ops.sum(w, axis=1) * (1.0 / H)
    return out, w


__all__ = ["scaled_dot_product_attention", "dot_attention", "general_attention",
           "additive_attention", "multi_head_attention", "attend", "causal_mask"]
