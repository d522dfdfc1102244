"""Vision transformer (Dosovitskiy et al., 2021), small enough for 28×28 digits:

    patches: the image cut into (H/p)·(W/p) patches of p×p pixels, each flattened and mapped
             linearly to d dimensions (a p×p convolution with stride p, written as a reshape
             and one matmul);
    x_0 = [cls; patches] + P        (a learned class token and learned positions)
    x_L = L pre-norm encoder blocks (self-attention + GELU MLP), no mask
    logits = W LN(x_L)[cls]

``attention_maps(x)`` returns the last block's attention from the class token to each patch
(averaged over heads), as an (N, H/p, W/p) map.
"""

from __future__ import annotations

import numpy as np

from .. import backend, ops
from ..autodiff.mode import no_grad
from ..nn import (
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    Module,
    ModuleList,
    Parameter,
    TransformerEncoderLayer,
)


def patchify(x, p):
    """(N, C, H, W) → (N, (H/p)(W/p), C·p·p): non-overlapping p×p patches, row-major."""
    N, C, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"ViT: image {H}×{W} is not divisible into {p}×{p} patches")
    t = ops.reshape(x, (N, C, H // p, p, W // p, p))
    t = ops.transpose(t, (0, 2, 4, 1, 3, 5))
    return ops.reshape(t, (N, (H // p) * (W // p), C * p * p))


class ViT(Module):
    def __init__(self, image_size: int = 28, patch: int = 7, in_channels: int = 1,
                 num_classes: int = 10, dim: int = 64, depth: int = 4, heads: int = 4,
                 mlp_dim: int = 128, dropout: float = 0.0, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        self.patch, self.grid = patch, image_size // patch
        n = self.grid * self.grid
        self.embed = Linear(in_channels * patch * patch, dim, rng=rng)
        self.cls = Parameter((rng.standard_normal((1, 1, dim)) * 0.02).astype(
            backend.get_default_dtype()))
        self.pos = LearnedPositionalEmbedding(n + 1, dim, rng=rng)
        self.blocks = ModuleList([
            TransformerEncoderLayer(dim, heads, mlp_dim, dropout, activation="gelu",
                                    batch_first=True, norm_first=True, rng=rng)
            for _ in range(depth)])
        self.norm = LayerNorm(dim)
        self.head = Linear(dim, num_classes, rng=rng)

    def tokens(self, x):
        x = self.embed(patchify(x, self.patch))
        cls = ops.broadcast_to(self.cls, (x.shape[0], 1, x.shape[2]))
        return self.pos(ops.concat([cls, x], axis=1))

    def forward(self, x):
        if len(x.shape) == 3:
            x = ops.expand_dims(x, 1)
        h = self.tokens(x)
        for b in self.blocks:
            h = b(h)
        return self.head(self.norm(h)[:, 0])

    def attention_maps(self, x) -> np.ndarray:
        """Class-token attention to the patches in the last block: (N, grid, grid)."""
        was = self.training
        self.eval()
        try:
            with no_grad():
                if len(x.shape) == 3:
                    x = x[:, None]
                h = self.tokens(x)
                for b in self.blocks[:-1]:
                    h = b(h)
                last = self.blocks[-1]
                z = last.norm1(h)
                _, w = last.self_attn(z, z, z, need_weights=True)
                a = np.asarray(w.data)[:, 0, 1:]
        finally:
            self.train(was)
        return a.reshape(-1, self.grid, self.grid)


__all__ = ["ViT", "patchify"]
