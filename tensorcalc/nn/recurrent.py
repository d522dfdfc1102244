"""Recurrent layers as users know them from PyTorch: RNNCell/RNN, LSTMCell/LSTM, GRUCell/GRU.

Cells take one step; layers take a whole sequence (multi-layer, dropout between layers,
bidirectional, ``batch_first``, initial states in and final states out, variable lengths).
Parameter names and layouts follow PyTorch (``weight_ih_l0``, ``weight_hh_l0_reverse``, gates
stacked along the first axis), initialised U(−1/√H, 1/√H) from ``rng``. The math is in
:mod:`tensorcalc.functional.rnn` (the gate equations) and :mod:`tensorcalc.ops.rnn` (the fused
time loops and their derivatives).

Variable-length batches: pass ``lengths`` (B,) or ``mask`` (T, B) (batch-first: (B, T)); padding
must come after each sequence's real steps. Padded steps leave the state unchanged and give
output 0, so each sequence's results equal those of running it alone.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, ops
from ..functional.dropout import dropout as _dropout
from ..functional.rnn import gru as _gru
from ..functional.rnn import gru_cell as _gru_cell
from ..functional.rnn import lstm as _lstm
from ..functional.rnn import lstm_cell as _lstm_cell
from ..functional.rnn import reverse_time as _reverse_time
from ..functional.rnn import rnn as _rnn
from ..functional.rnn import rnn_cell as _rnn_cell
from ..ops._util import data_of, shape_of
from . import init
from .module import Module, Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _uniform(shape, bound, dtype, rng):
    p = Parameter(np.empty(shape, dtype=dtype))
    init.uniform_(p, -bound, bound, rng=rng)
    return p


class _CellBase(Module):
    def __init__(self, input_size, hidden_size, bias, k, rng, dtype):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"{type(self).__name__}: sizes must be positive, got input_size="
                             f"{input_size}, hidden_size={hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        rng = backend.as_rng(rng)
        dtype = dtype or backend.get_default_dtype()
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = _uniform((k * hidden_size, input_size), bound, dtype, rng)
        self.weight_hh = _uniform((k * hidden_size, hidden_size), bound, dtype, rng)
        if bias:
            self.bias_ih = _uniform((k * hidden_size,), bound, dtype, rng)
            self.bias_hh = _uniform((k * hidden_size,), bound, dtype, rng)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def _zeros(self, x):
        xd = data_of(x)
        return backend.array_module(xd).zeros(shape_of(x)[:-1] + (self.hidden_size,),
                                              dtype=data_of(self.weight_hh).dtype)

    def _check(self, x):
        s = shape_of(x)
        if not s or s[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: x must be (..., {self.input_size}), got "
                             f"shape {s}")

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(_CellBase):
    """h′ = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), φ = tanh (default) or relu. x (B, I), h (B, H)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", rng=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, 1, rng, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, x, h=None):
        self._check(x)
        h = self._zeros(x) if h is None else h
        return _rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                          self.nonlinearity)


class LSTMCell(_CellBase):
    """One LSTM step (gate equations in :func:`tensorcalc.functional.rnn.lstm_cell`):
    ``h′, c′ = cell(x, (h, c))``; the state defaults to zeros."""

    def __init__(self, input_size, hidden_size, bias=True, rng=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, rng, dtype)

    def forward(self, x, state=None):
        self._check(x)
        if state is None:
            state = (self._zeros(x), self._zeros(x))
        h, c = state
        return _lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(_CellBase):
    """One GRU step (gate equations in :func:`tensorcalc.functional.rnn.gru_cell`)."""

    def __init__(self, input_size, hidden_size, bias=True, rng=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, rng, dtype)

    def forward(self, x, h=None):
        self._check(x)
        h = self._zeros(x) if h is None else h
        return _gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


def lengths_to_mask(lengths, T):
    """(B,) lengths -> (T, B) booleans, true at real steps t < length."""
    lengths = np.asarray(data_of(lengths))
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be (B,), got shape {lengths.shape}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [1, T={T}], got {lengths.min()}..{lengths.max()}")
    return np.arange(T)[:, None] < lengths[None, :]


class _RNNBase(Module):
    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"{name}: input_size, hidden_size and num_layers must be positive, "
                             f"got {input_size}, {hidden_size}, {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must lie in [0, 1), got {dropout}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        rng = backend.as_rng(rng)
        self.rng = rng  # dropout masks between layers
        dtype = dtype or backend.get_default_dtype()
        k = _GATES[mode]
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * self.num_directions
            for d in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                setattr(self, "weight_ih" + sfx, _uniform((k * hidden_size, n_in), bound, dtype,
                                                          rng))
                setattr(self, "weight_hh" + sfx, _uniform((k * hidden_size, hidden_size), bound,
                                                          dtype, rng))
                if bias:
                    setattr(self, "bias_ih" + sfx, _uniform((k * hidden_size,), bound, dtype,
                                                            rng))
                    setattr(self, "bias_hh" + sfx, _uniform((k * hidden_size,), bound, dtype,
                                                            rng))

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def _params(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        g = lambda n: getattr(self, n + sfx)  # noqa: E731
        return (g("weight_ih"), g("weight_hh"),
                g("bias_ih") if self.bias else None, g("bias_hh") if self.bias else None)

    def _prepare(self, x, lengths, mask):
        name = type(self).__name__
        s = shape_of(x)
        if len(s) != 3 or s[-1] != self.input_size:
            order = "(B, T, " if self.batch_first else "(T, B, "
            raise ValueError(f"{name}: x must be {order}{self.input_size}), got shape {s}")
        if self.batch_first:
            x = ops.swapaxes(x, 0, 1)
        T, B = shape_of(x)[:2]
        if lengths is not None and mask is not None:
            raise ValueError(f"{name}: pass lengths or mask, not both")
        if lengths is not None:
            mask = lengths_to_mask(lengths, T)
        elif mask is not None:
            mask = np.asarray(data_of(mask), dtype=bool)
            if self.batch_first:
                mask = mask.T
            if mask.shape != (T, B):
                raise ValueError(f"{name}: mask must be (T, B) = {(T, B)}, got {mask.shape}")
            if self.bidirectional and (mask[1:] & ~mask[:-1]).any():
                raise ValueError(f"{name}: a bidirectional layer needs padding at the end of "
                                 "each sequence (mask true then false along time)")
        if mask is not None:
            xd = data_of(x)
            mask = backend.array_module(xd).asarray(mask)
        return x, mask

    def _state0(self, x, hx, who):
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        B = shape_of(x)[1]
        if hx is None:
            z = backend.array_module(data_of(x)).zeros((L * D, B, H),
                                                       dtype=data_of(self.weight_hh_l0).dtype)
            return z
        if shape_of(hx) != (L * D, B, H):
            raise ValueError(f"{type(self).__name__}: {who} must be (num_layers·directions, B, "
                             f"H) = {(L * D, B, H)}, got {shape_of(hx)}")
        return hx

    def _run(self, x, states, mask):
        """Layers × directions; ``states`` a list (one per state kind) of (L·D, B, H)."""
        finals = [[] for _ in states]
        out = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                out = _dropout(out, self.dropout, True, self.rng)
            outs = []
            for d in range(self.num_directions):
                idx = layer * self.num_directions + d
                s0 = [st[idx] for st in states]
                inp, m = (out, mask) if d == 0 else _reverse_time(out, mask)
                y, fin = self._cell_layer(inp, s0, m, layer, d)
                if d == 1:
                    y = ops.flip(y, axis=0)
                outs.append(y)
                for k, f in enumerate(fin):
                    finals[k].append(f)
            out = outs[0] if len(outs) == 1 else ops.concat(outs, axis=-1)
        return out, [ops.stack(f, axis=0) for f in finals]

    def _finish(self, out):
        return ops.swapaxes(out, 0, 1) if self.batch_first else out


class RNN(_RNNBase):
    """Elman RNN layer(s): h_t = φ(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh), φ = tanh or relu.

    ``out, h_n = rnn(x, h0=None, lengths=None, mask=None)``: x (T, B, I) (or (B, T, I) with
    ``batch_first``), out (T, B, D·H) — the last layer's states, both directions concatenated —
    and h_n (L·D, B, H) the final states of every layer and direction.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, rng=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional, rng,
                         dtype)
        self.nonlinearity = nonlinearity

    def _cell_layer(self, x, s0, mask, layer, d):
        y, h = _rnn(x, s0[0], *self._params(layer, d), nonlinearity=self.nonlinearity,
                     mask=mask)
        return y, (h,)

    def forward(self, x, h0=None, lengths=None, mask=None):
        x, mask = self._prepare(x, lengths, mask)
        out, (hn,) = self._run(x, [self._state0(x, h0, "h0")], mask)
        return self._finish(out), hn


class LSTM(_RNNBase):
    """LSTM layer(s) (gate equations in :func:`tensorcalc.functional.rnn.lstm_cell`).

    ``out, (h_n, c_n) = lstm(x, state=None, lengths=None, mask=None)`` with ``state`` = (h0, c0),
    each (L·D, B, H). One GEMM projects the inputs of all steps; one fused node
    (:class:`tensorcalc.ops.rnn.LstmScan`) runs the recurrence with one GEMM per step.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, rng=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rng, dtype)

    def _cell_layer(self, x, s0, mask, layer, d):
        y, (h, c) = _lstm(x, s0[0], s0[1], *self._params(layer, d), mask=mask)
        return y, (h, c)

    def forward(self, x, state=None, lengths=None, mask=None):
        x, mask = self._prepare(x, lengths, mask)
        h0, c0 = (None, None) if state is None else state
        states = [self._state0(x, h0, "h0"), self._state0(x, c0, "c0")]
        out, (hn, cn) = self._run(x, states, mask)
        return self._finish(out), (hn, cn)


class GRU(_RNNBase):
    """GRU layer(s) (gate equations in :func:`tensorcalc.functional.rnn.gru_cell`).

    ``out, h_n = gru(x, h0=None, lengths=None, mask=None)``; shapes as :class:`RNN`.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, rng=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rng, dtype)

    def _cell_layer(self, x, s0, mask, layer, d):
        y, h = _gru(x, s0[0], *self._params(layer, d), mask=mask)
        return y, (h,)

    def forward(self, x, h0=None, lengths=None, mask=None):
        x, mask = self._prepare(x, lengths, mask)
        out, (hn,) = self._run(x, [self._state0(x, h0, "h0")], mask)
        return self._finish(out), hn


__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "lengths_to_mask"]
