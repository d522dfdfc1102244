"""Recurrent cells and layers: composites of affine maps, σ, tanh and the fused time loops.

A recurrent network is a dynamical system unrolled in time: one cell applied at every step,

    h_t = cell(x_t, h_{t−1}; θ),      t = 1..T,

and backpropagation through time is the chain rule along that unrolled graph. The cells below
are the gate equations as the textbooks write them (one step, built from primitives); the layer
functions compute the same recurrence for a whole sequence with one GEMM for the input
projection of all steps and one fused node for the loop (``tc.ops.rnn``: ``rnn_scan``,
``lstm_scan``, ``gru_scan``). Tests check the layers against a loop of these cells.

Shapes: x (T, B, I) time-major; h, c (B, H); W_ih (kH, I), W_hh (kH, H), biases (kH,) with
k = 1 (RNN), 4 (LSTM, gates i f g o), 3 (GRU, gates r z n) — PyTorch's layout, so weights
transfer one to one. ``mask`` (T, B) booleans: false marks padding (the state is carried
through a padded step and its output is 0).
"""

from __future__ import annotations

from ..ops import affine, flip, relu, sigmoid, tanh
from ..ops._util import cast_like, shape_of
from ..ops.rnn import gru_scan, lstm_scan, rnn_scan


def _proj(x, w, b):
    return affine(x, w, b)


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """Elman cell: h′ = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), φ = tanh or relu."""
    a = _proj(x, w_ih, b_ih) + _proj(h, w_hh, b_hh)
    if nonlinearity == "tanh":
        return tanh(a)
    if nonlinearity == "relu":
        return relu(a)
    raise ValueError(f"rnn_cell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate):

        i = σ(W_i x + U_i h + b_i)        input gate
        f = σ(W_f x + U_f h + b_f)        forget gate
        g = tanh(W_g x + U_g h + b_g)     candidate
        o = σ(W_o x + U_o h + b_o)        output gate
        c′ = f ⊙ c + i ⊙ g,   h′ = o ⊙ tanh(c′)

    The additive path c → c′ (∂c′/∂c = diag(f)) is what lets gradients survive many steps.
    Returns (h′, c′).
    """
    H = shape_of(h)[-1]
    a = _proj(x, w_ih, b_ih) + _proj(h, w_hh, b_hh)
    i = sigmoid(a[..., :H])
    f = sigmoid(a[..., H:2 * H])
    g = tanh(a[..., 2 * H:3 * H])
    o = sigmoid(a[..., 3 * H:])
    c2 = f * c + i * g
    return o * tanh(c2), c2


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """GRU cell (Cho et al. 2014), PyTorch's variant (the reset gate multiplies U_n h + b_hn):

        r = σ(W_r x + b_ir + U_r h + b_hr)          reset gate
        z = σ(W_z x + b_iz + U_z h + b_hz)          update gate
        n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn))  candidate
        h′ = (1 − z) ⊙ n + z ⊙ h
    """
    H = shape_of(h)[-1]
    xa = _proj(x, w_ih, b_ih)
    ha = _proj(h, w_hh, b_hh)
    r = sigmoid(xa[..., :H] + ha[..., :H])
    z = sigmoid(xa[..., H:2 * H] + ha[..., H:2 * H])
    n = tanh(xa[..., 2 * H:] + r * ha[..., 2 * H:])
    return (1 - z) * n + z * h


def _bias(b_ih, b_hh):
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh


def _zero_padding(out, mask):
    return out if mask is None else out * cast_like(mask[..., None], out)


def rnn(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", mask=None):
    """One Elman layer over x (T, B, I): returns (outputs (T, B, H), h_T (B, H))."""
    hs = rnn_scan(_proj(x, w_ih, _bias(b_ih, b_hh)), h0, w_hh, nonlinearity=nonlinearity,
                  mask=mask)
    return _zero_padding(hs, mask), hs[-1]


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, mask=None):
    """One LSTM layer over x (T, B, I): returns (outputs (T, B, H), (h_T, c_T))."""
    hs, cs = lstm_scan(_proj(x, w_ih, _bias(b_ih, b_hh)), h0, c0, w_hh, mask=mask)
    return _zero_padding(hs, mask), (hs[-1], cs[-1])


def gru(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, mask=None):
    """One GRU layer over x (T, B, I): returns (outputs (T, B, H), h_T (B, H))."""
    if b_hh is None:
        b_hh = _zeros_bias(w_hh)
    hs = gru_scan(_proj(x, w_ih, b_ih), h0, w_hh, b_hh, mask=mask)
    return _zero_padding(hs, mask), hs[-1]


def _zeros_bias(w):
    from ..ops._util import data_of

    d = data_of(w)
    return d[:, 0] * 0


def reverse_time(x, mask=None):
    """x reversed along time (axis 0). With a prefix mask (padding at the end) the reversed
    sequence starts with its padding, through which the scans carry h₀ unchanged: the reverse
    direction of a bidirectional layer then starts at each sequence's last real step."""
    return flip(x, axis=0), (None if mask is None else mask[::-1])


__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru", "reverse_time"]
