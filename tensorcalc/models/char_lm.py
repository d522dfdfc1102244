"""A character language model: embedding → recurrent layers (LSTM, GRU or RNN) → logits.

    e_t = E[x_t],   (h_t, state) = RNN(e_{1..t}),   p(x_{t+1} | x_{≤t}) = softmax(W h_t + b)

trained by minimising the cross-entropy −log p(x_{t+1}) per character (nats; / ln 2 gives bits
per character). ``forward(ids (B, T), state)`` returns (logits (B, T, V), state): the state is
carried across chunks by truncated BPTT and across characters while sampling (:meth:`sample`).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autodiff.mode import no_grad
from ..nn import GRU, LSTM, RNN, Embedding, Linear, Module
from ..nn.dropout import Dropout

CELLS = ("lstm", "gru", "rnn")


class CharLM(Module):
    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 256, layers: int = 2,
                 cell: str = "lstm", dropout: float = 0.0, rng=None):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"CharLM: cell must be one of {', '.join(CELLS)}, got {cell!r}")
        rng = backend.as_rng(rng)
        self.cell = cell
        self.vocab_size = vocab_size
        self.embed = Embedding(vocab_size, embed, rng=rng)
        kind = {"lstm": LSTM, "gru": GRU, "rnn": RNN}[cell]
        self.rnn = kind(embed, hidden, num_layers=layers, batch_first=True, dropout=dropout,
                        rng=rng)
        self.drop = Dropout(dropout, rng=rng)
        self.head = Linear(hidden, vocab_size, rng=rng)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embed(ids), state)
        return self.head(self.drop(out)), state

    @staticmethod
    def detach_state(state):
        """The state as constants: truncated BPTT stops the chain rule at the chunk border."""
        if state is None:
            return None
        if isinstance(state, tuple):
            return tuple(s.detach() for s in state)
        return state.detach()

    def sample(self, prompt_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
               rng=None) -> np.ndarray:
        """``length`` ids drawn one at a time from softmax(logits / temperature) (restricted to
        the ``top_k`` most likely when given), after reading ``prompt_ids``. Deterministic for
        a seed (``rng``)."""
        if temperature <= 0:
            raise ValueError(f"sample: temperature must be positive, got {temperature}")
        rng = backend.as_rng(rng)
        was = self.training
        self.eval()
        out = []
        try:
            with no_grad():
                ids = np.asarray(prompt_ids, dtype=np.int64)[None, :]
                logits, state = self(ids)
                z = np.asarray(logits.data[0, -1], dtype=np.float64)
                for _ in range(length):
                    z = z / temperature
                    if top_k is not None and top_k < len(z):
                        cut = np.partition(z, -top_k)[-top_k]
                        z = np.where(z >= cut, z, -np.inf)
                    p = np.exp(z - z.max())
                    p /= p.sum()
                    nxt = int(rng.choice(len(p), p=p))
                    out.append(nxt)
                    logits, state = self(np.array([[nxt]]), state)
                    z = np.asarray(logits.data[0, -1], dtype=np.float64)
        finally:
            self.train(was)
        return np.array(out, dtype=np.int64)


__all__ = ["CharLM", "CELLS"]
