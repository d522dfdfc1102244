"""Initialisers (statistics, seeds, gains, orthogonality) and regularisation helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
import tensorcalc.nn as nn
from tensorcalc.nn import init


def _w(*shape):
    return nn.Parameter(np.empty(shape, np.float32))


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swishy")


@pytest.mark.parametrize("name,fn,var", [
    ("xavier_uniform", lambda t, r: init.xavier_uniform_(t, rng=r), 2 / (400 + 200)),
    ("xavier_normal", lambda t, r: init.xavier_normal_(t, gain=2.0, rng=r), 4 * 2 / 600),
    ("kaiming_uniform", lambda t, r: init.kaiming_uniform_(t, nonlinearity="relu", rng=r),
     2 / 400),
    ("kaiming_normal_out", lambda t, r: init.kaiming_normal_(
        t, mode="fan_out", nonlinearity="relu", rng=r), 2 / 200),
    ("normal", lambda t, r: init.normal_(t, 0.0, 0.3, rng=r), 0.09),
    ("uniform", lambda t, r: init.uniform_(t, -1, 1, rng=r), 1 / 3),
    ("trunc_normal", lambda t, r: init.trunc_normal_(t, std=1.0, a=-1, b=1, rng=r), 0.2911),
])
def test_variance_preserving_scales(name, fn, var):
    t = _w(200, 400)
    out = fn(t, 0)
    assert out is t and t.dtype == np.float32
    assert np.var(t.numpy()) == pytest.approx(var, rel=0.03)
    assert abs(np.mean(t.numpy())) < 0.02 * math.sqrt(var) * 10
    again = fn(_w(200, 400), 0)
    np.testing.assert_array_equal(again.numpy(), t.numpy())  # same seed, same weights


def test_uniform_bounds_and_fans_for_conv_shapes():
    t = _w(8, 4, 3, 3)  # fan_in = 36, fan_out = 72
    init.kaiming_uniform_(t, a=0, nonlinearity="relu", rng=1)
    assert np.abs(t.numpy()).max() <= math.sqrt(3) * math.sqrt(2) / 6
    init.xavier_uniform_(t, rng=1)
    assert np.abs(t.numpy()).max() <= math.sqrt(6 / (36 + 72))
    with pytest.raises(ValueError, match="at least 2 axes"):
        init.xavier_uniform_(_w(5))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(_w(3, 3), mode="fan_avg")


def test_constant_fills_and_orthogonal():
    t = _w(3, 4)
    assert np.all(init.zeros_(t).numpy() == 0) and np.all(init.ones_(t).numpy() == 1)
    assert np.all(init.constant_(t, 2.5).numpy() == 2.5)
    q = init.orthogonal_(nn.Parameter(np.empty((6, 4))), gain=2.0, rng=0).numpy()
    np.testing.assert_allclose(q.T @ q, 4 * np.eye(4), atol=1e-12)
    q = init.orthogonal_(nn.Parameter(np.empty((3, 5))), rng=0).numpy()
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(init.eye_(_w(2, 3)).numpy(), np.eye(2, 3))


def test_l1_l2_penalties_values_and_gradients():
    net = nn.Sequential(nn.Linear(3, 2, rng=0), nn.Linear(2, 1, rng=1))
    ps = list(net.parameters())
    l2 = F.l2_penalty(net)
    assert l2.item() == pytest.approx(sum(float((p.numpy() ** 2).sum()) for p in ps), rel=1e-6)
    grads = tc.gradients(l2, ps)
    for p, g in zip(ps, grads, strict=True):
        np.testing.assert_allclose(g.numpy(), 2 * p.numpy(), rtol=1e-6)
    l1 = F.l1_penalty(ps)
    grads = tc.gradients(l1, ps)
    for p, g in zip(ps, grads, strict=True):
        np.testing.assert_array_equal(g.numpy(), np.sign(p.numpy()))
    with pytest.raises(ValueError, match="no parameters"):
        F.l2_penalty([])


def test_max_norm_projects_rows_only():
    lin = nn.Linear(4, 3, rng=0)
    with tc.no_grad():
        lin.weight.copy_(np.array([[3.0, 4.0, 0, 0], [0.1, 0, 0, 0], [0, 0, 6.0, 8.0]]))
        lin.bias.copy_(np.array([10.0, 10.0, 10.0]))
    largest = F.max_norm_(lin, 2.0)
    assert largest == pytest.approx(10.0)
    norms = np.linalg.norm(lin.weight.numpy(), axis=1)
    np.testing.assert_allclose(norms, [2.0, 0.1, 2.0], rtol=1e-5)
    np.testing.assert_allclose(lin.weight.numpy()[0], [1.2, 1.6, 0, 0], rtol=1e-5)  # direction
    np.testing.assert_array_equal(lin.bias.numpy(), [10, 10, 10])  # biases untouched
    with pytest.raises(ValueError, match="positive"):
        F.max_norm_(lin, 0.0)


def test_dropout_statistics_and_arguments():
    x = tc.ones((400, 250))
    y = F.dropout(x, 0.25, rng=0).numpy()
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert (y == 0).mean() == pytest.approx(0.25, abs=0.01)
    assert y.mean() == pytest.approx(1.0, abs=0.01)  # inverted dropout keeps the mean
    np.testing.assert_array_equal(F.dropout(x, 0.25, rng=0).numpy(), y)  # same seed, same mask
    assert F.dropout(x, 0.25, training=False) is x
    assert np.all(F.dropout(x, 1.0).numpy() == 0)
    with pytest.raises(ValueError, match=r"dropout: p must be a probability in \[0, 1\]"):
        F.dropout(x, 1.5)
    z = F.dropout2d(tc.ones((50, 40, 3, 3)), 0.5, rng=1).numpy()
    per_channel = z.reshape(50, 40, 9)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))  # whole channels together
