"""A GPT-style character transformer (decoder-only, causal; Radford et al. 2018, nanoGPT):

    x_0 = E[ids] + P[positions]
    x_l = x_{l−1} + SA(LN(x_{l−1})) ;  x_l ← x_l + MLP(LN(x_l))       (pre-norm blocks, GELU)
    p(x_{t+1} | x_{≤t}) = softmax(W LN(x_L))_t

Self-attention is causal: position t sees positions ≤ t only. Sampling uses a key/value cache
per block, so generating n characters projects each character once (O(n) block steps instead
of re-running the whole prefix every step, O(n²)). ``forward(ids, state=None)`` returns
(logits, None) so the char-lstm tools (window losses) apply unchanged.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autodiff.mode import no_grad
from ..nn import (
    Embedding,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    Module,
    ModuleList,
    TransformerEncoderLayer,
)
from ..nn.dropout import Dropout


class CharGPT(Module):
    def __init__(self, vocab_size: int, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 block_size: int = 64, dropout: float = 0.0, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.vocab_size, self.block_size = vocab_size, block_size
        self.tok = Embedding(vocab_size, n_embd, rng=rng)
        self.pos = LearnedPositionalEmbedding(block_size, n_embd, rng=rng)
        self.drop = Dropout(dropout, rng=rng)
        self.blocks = ModuleList([
            TransformerEncoderLayer(n_embd, n_head, 4 * n_embd, dropout, activation="gelu",
                                    batch_first=True, norm_first=True, rng=rng)
            for _ in range(n_layer)])
        self.ln_f = LayerNorm(n_embd)
        self.head = Linear(n_embd, vocab_size, rng=rng)

    def forward(self, ids, state=None, caches=None, offset: int = 0):
        """ids (B, T) → (logits (B, T, V), None). ``caches`` (one dict per block) and
        ``offset`` (the number of cached positions) run incremental decoding."""
        T = ids.shape[1]
        if offset + T > self.block_size:
            raise ValueError(f"CharGPT: positions up to {offset + T} exceed the block size "
                             f"{self.block_size}")
        x = self.drop(self.pos(self.tok(ids), offset=offset))
        for i, b in enumerate(self.blocks):
            x = b(x, is_causal=True, cache=None if caches is None else caches[i])
        return self.head(self.ln_f(x)), None

    def sample(self, prompt_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
               rng=None, use_cache: bool = True) -> np.ndarray:
        """``length`` ids drawn from softmax(logits / temperature) (top-k when given) after
        ``prompt_ids``. With the cache each new id costs one position per block; when the
        context fills the block, the cache is rebuilt from the last block/2 ids (a sliding
        window, as nanoGPT crops the context). ``use_cache=False`` recomputes the whole window
        every step (the reference the cache is tested against)."""
        if temperature <= 0:
            raise ValueError(f"sample: temperature must be positive, got {temperature}")
        rng = backend.as_rng(rng)
        was = self.training
        self.eval()
        ctx = [int(i) for i in np.asarray(prompt_ids).ravel()]
        out = []
        try:
            with no_grad():
                caches, n_cached = None, 0
                for _ in range(length):
                    if not use_cache:
                        window = ctx[-self.block_size:]
                        z = self(np.array([window]))[0]
                    elif caches is None or n_cached >= self.block_size:
                        keep = self.block_size // 2 if caches is not None else self.block_size
                        window = ctx[-keep:]
                        caches = [{} for _ in self.blocks]
                        z = self(np.array([window]), caches=caches)[0]
                        n_cached = len(window)
                    else:
                        z = self(np.array([ctx[-1:]]), caches=caches, offset=n_cached)[0]
                        n_cached += 1
                    z = np.asarray(z.data[0, -1], dtype=np.float64) / temperature
                    if top_k is not None and top_k < len(z):
                        cut = np.partition(z, -top_k)[-top_k]
                        z = np.where(z >= cut, z, -np.inf)
                    p = np.exp(z - z.max())
                    p /= p.sum()
                    nxt = int(rng.choice(len(p), p=p))
                    out.append(nxt)
                    ctx.append(nxt)
        finally:
            self.train(was)
        return np.array(out, dtype=np.int64)


__all__ = ["CharGPT"]
