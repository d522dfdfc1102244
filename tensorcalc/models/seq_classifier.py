"""A sequence classifier: a recurrent layer reads the input step by step; its final state is
classified by a dense layer. For images read row by row (sequential MNIST: 28 steps of 28
pixels) the model sees one row at a time and must remember the digit's shape in its state.
"""

from __future__ import annotations

from .. import backend, ops
from ..nn import GRU, LSTM, RNN, Linear, Module
from ..ops._util import shape_of


class SeqClassifier(Module):
    """logits = W h_T + b, h_T the last layer's final state (both directions concatenated)."""

    def __init__(self, input_size: int, hidden: int, num_classes: int, layers: int = 1,
                 cell: str = "lstm", bidirectional: bool = False, rng=None):
        super().__init__()
        rng = backend.as_rng(rng)
        kind = {"lstm": LSTM, "gru": GRU, "rnn": RNN}.get(cell)
        if kind is None:
            raise ValueError(f"SeqClassifier: cell must be lstm, gru or rnn, got {cell!r}")
        self.input_size = input_size
        self.rnn = kind(input_size, hidden, num_layers=layers, batch_first=True,
                        bidirectional=bidirectional, rng=rng)
        d = 2 if bidirectional else 1
        self.head = Linear(d * hidden, num_classes, rng=rng)

    def forward(self, x):
        s = shape_of(x)
        x = ops.reshape(x, (s[0], -1, self.input_size))  # (N, 1, 28, 28) -> (N, 28 rows, 28)
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state  # (L·D, N, H)
        d = 2 if self.rnn.bidirectional else 1
        last = h[-d:]
        feats = last[0] if d == 1 else ops.concat([last[0], last[1]], axis=-1)
        return self.head(feats)


__all__ = ["SeqClassifier"]
