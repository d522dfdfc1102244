"""Recurrent cells and layers: gradients, agreement with the gate equations step by step,
shapes, padding invariance, truncated BPTT, long sequences, sampling."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

RNG = np.random.default_rng(0)


def _arr(*shape, scale=1.0):
    return RNG.normal(size=shape) * scale


# ----------------------------------------------------------------------------- cells: gradients
@pytest.mark.parametrize("cell", [RNNCell(3, 4, rng=0, dtype="float64"),
                                  RNNCell(3, 4, nonlinearity="relu", rng=1, dtype="float64"),
                                  GRUCell(3, 4, rng=2, dtype="float64")])
def test_cell_gradcheck_input_state_params(cell):
    x, h = _arr(2, 3), _arr(2, 4)
    rep = tc.gradcheck_module(cell, x, h, loss_fn=lambda out: (out * out).sum())
    assert rep.ok


def test_lstm_cell_gradcheck_as_function_of_input_state_params():
    cell = LSTMCell(3, 4, rng=0, dtype="float64")
    x, h, c = _arr(2, 3), _arr(2, 4), _arr(2, 4)
    f = lambda x, h, c, *ps: sum(((o * o).sum() for o in  # noqa: E731
                                  F.lstm_cell(x, h, c, *ps)), tc.tensor(0.0))
    params = [np.asarray(p.data) for _, p in cell.named_parameters()]
    assert tc.gradcheck(f, x, h, c, *params).ok


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_layer_gradcheck_with_mask(kind):
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
    m = cls(3, 2, num_layers=2, bidirectional=True, rng=3, dtype="float64")
    x = _arr(4, 2, 3)
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], bool)

    params = [np.asarray(p.data) for _, p in m.named_parameters()]
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ps):
        out, _ = tc.nn.functional_call(m, dict(zip(names, ps, strict=True)), x, mask=mask)
        return (out * out).sum()
    assert tc.gradcheck(f, x, *params).ok


# ----------------------------------------------------- layers equal a loop of the gate equations
def _loop(kind, m, x, layer_in=None):
    """Direct per-step loop with the cells (single layer, one direction)."""
    w = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]
    T, B, _ = x.shape
    H = m.hidden_size
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    outs = []
    for t in range(T):
        if kind == "lstm":
            h, c = F.lstm_cell(x[t], h, c, *w)
        elif kind == "gru":
            h = F.gru_cell(x[t], h, *w)
        else:
            h = F.rnn_cell(x[t], h, *w, nonlinearity=m.nonlinearity)
        outs.append(np.asarray(h.data))
        h = np.asarray(h.data)
        c = np.asarray(c.data) if kind == "lstm" else c
    return np.stack(outs)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_layer_equals_direct_loop_of_cells(kind):
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
    m = cls(3, 5, rng=4, dtype="float64")
    x = _arr(7, 2, 3)
    out, _ = m(x)
    np.testing.assert_allclose(out.data, _loop(kind, m, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_shapes_multilayer_bidirectional_batch_first(cls):
    m = cls(3, 4, num_layers=3, bidirectional=True, batch_first=True, rng=0)
    out, st = m(_arr(2, 6, 3).astype(np.float32))
    assert out.shape == (2, 6, 8) and out.dtype == np.float32
    hs = st if cls is not LSTM else st[0]
    assert hs.shape == (6, 2, 4)
    if cls is LSTM:
        assert st[1].shape == (6, 2, 4)
    # the last layer's final forward state is the output at the last step (forward half)
    np.testing.assert_allclose(hs.data[-2], out.data[:, -1, :4], rtol=1e-6)
    # the reverse direction's final state is its output at step 0 (reverse half)
    np.testing.assert_allclose(hs.data[-1], out.data[:, 0, 4:], rtol=1e-6)


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_padding_invariance_batch_of_one_vs_padded_batch(cls):
    m = cls(3, 4, num_layers=2, bidirectional=True, rng=5, dtype="float64")
    lengths = [6, 3, 1]
    x = _arr(6, 3, 3)
    x[3:, 1] = 99.0  # padding content must not matter
    x[1:, 2] = -50.0
    out, st = m(x, lengths=lengths)
    for b, n in enumerate(lengths):
        o1, s1 = m(x[:n, b:b + 1])
        np.testing.assert_allclose(out.data[:n, b], o1.data[:, 0], rtol=1e-10, atol=1e-12)
        assert np.all(out.data[n:, b] == 0)
        a, a1 = (st[0], s1[0]) if cls is LSTM else (st, s1)
        np.testing.assert_allclose(a.data[:, b], a1.data[:, 0], rtol=1e-10, atol=1e-12)


def test_initial_state_in_final_state_out_chain():
    """Running T steps at once = running two halves with the state handed over."""
    m = LSTM(3, 4, num_layers=2, rng=6, dtype="float64")
    x = _arr(8, 2, 3)
    out, st = m(x)
    o1, s1 = m(x[:5])
    o2, s2 = m(x[5:], s1)
    np.testing.assert_allclose(np.concatenate([o1.data, o2.data]), out.data, rtol=1e-12)
    np.testing.assert_allclose(s2[1].data, st[1].data, rtol=1e-12)


def test_truncated_bptt_state_carry_detached():
    m = GRU(2, 3, rng=7, dtype="float64")
    x = _arr(6, 1, 2)
    _, s1 = m(x[:3])
    s1 = s1.detach()
    out, _ = m(x[3:], s1)
    out.sum().backward()
    full, _ = m(x)
    np.testing.assert_allclose(out.data, full.data[3:], rtol=1e-12)
    assert m.weight_hh_l0.grad is not None and s1.grad is None


def test_ten_thousand_step_backward():
    m = LSTM(2, 3, rng=8)
    x = tc.tensor(_arr(10_000, 1, 2).astype(np.float32), requires_grad=True)
    out, (h, c) = m(x)
    h.sum().backward()
    g = np.asarray(x.grad.data)
    assert g.shape == (10_000, 1, 2) and np.isfinite(g).all()
    assert np.abs(g[-1]).sum() > 0


def test_scan_hessian_vector_product_through_lstm():
    """The fused rules run on Tensors with create_graph: second order works."""
    z, h0, c0, w = _arr(3, 1, 8), _arr(1, 2), _arr(1, 2), _arr(8, 2)

    def f(w):
        hs, cs = tc.lstm_scan(z, h0, c0, w)
        return (hs * hs).sum() + cs.sum()
    v = _arr(8, 2)
    _, hv = tc.hvp(f, (w,), (v,))
    eps = 1e-5
    g = tc.grad(f)
    fd = (np.asarray(g(w + eps * v)) - np.asarray(g(w - eps * v))) / (2 * eps)
    np.testing.assert_allclose(np.asarray(hv[0] if isinstance(hv, tuple) else hv), fd,
                               rtol=1e-5, atol=1e-7)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"LSTM: x must be \(T, B, 3\)"):
        LSTM(3, 4)(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="padding at the end"):
        GRU(3, 4, bidirectional=True)(np.zeros((3, 2, 3), np.float32),
                                      mask=np.array([[0, 1], [1, 1], [1, 1]], bool))
    with pytest.raises(ValueError, match="h0 must be"):
        RNN(3, 4)(np.zeros((3, 2, 3), np.float32), np.zeros((1, 3, 4), np.float32))


# ------------------------------------------------------------------ char LM sampling
def test_generation_is_deterministic_for_a_seed():
    from tensorcalc.models.char_lm import CharLM

    lm = CharLM(11, 4, 8, 1, rng=0)
    a = lm.sample([1, 2, 3], 30, temperature=0.8, top_k=5, rng=123)
    b = lm.sample([1, 2, 3], 30, temperature=0.8, top_k=5, rng=123)
    c = lm.sample([1, 2, 3], 30, temperature=0.8, top_k=5, rng=124)
    assert a.shape == (30,) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 11
