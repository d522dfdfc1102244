"""Gradient clipping by global norm and by value."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import optim


def params_with_grads(dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(3)
    ps = []
    for shape in [(3, 4), (5,), ()]:
        p = tc.Tensor(rng.normal(size=shape).astype(dtype), requires_grad=True)
        p.grad = tc.Tensor((scale * rng.normal(size=shape)).astype(dtype))
        ps.append(p)
    return ps


def flat(ps):
    return np.concatenate([np.ravel(p.grad.data) for p in ps])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_rescales_to_max_norm(norm_type):
    ps = params_with_grads(scale=5.0)
    g0 = flat(ps)
    ref = np.linalg.norm(g0, ord=norm_type)
    total = optim.clip_grad_norm_(ps, max_norm=1.0, norm_type=norm_type)
    assert math.isclose(total, ref, rel_tol=1e-12)
    g1 = flat(ps)
    assert math.isclose(np.linalg.norm(g1, ord=norm_type), 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(g1, g0 * (1.0 / (ref + 1e-6)), rtol=1e-12)  # direction kept


def test_clip_grad_norm_leaves_small_gradients_alone():
    ps = params_with_grads(scale=0.01)
    g0 = flat(ps)
    total = optim.clip_grad_norm_(ps, max_norm=10.0)
    assert math.isclose(total, np.linalg.norm(g0), rel_tol=1e-12)
    np.testing.assert_array_equal(flat(ps), g0)


def test_clip_grad_norm_float32_and_skips_missing_grads():
    ps = params_with_grads(np.float32, scale=5.0)
    extra = tc.Tensor(np.ones(2, dtype=np.float32), requires_grad=True)  # no grad
    optim.clip_grad_norm_(ps + [extra], 0.5)
    assert all(p.grad.dtype == np.float32 for p in ps)
    assert extra.grad is None
    assert math.isclose(float(np.linalg.norm(flat(ps).astype(np.float64))), 0.5, rel_tol=1e-5)


def test_clip_on_shared_and_read_only_gradients():
    a = tc.Tensor(np.zeros(4), requires_grad=True)
    b = tc.Tensor(np.zeros(4), requires_grad=True)
    (3.0 * (a + b)).sum().backward()  # one cotangent array handed to both leaves
    optim.clip_grad_norm_([a, b], max_norm=1.0)
    # each coordinate scaled exactly once: global norm 3·√8 -> 1
    np.testing.assert_allclose(a.grad.data, 3.0 / (3.0 * math.sqrt(8) + 1e-6))
    np.testing.assert_allclose(b.grad.data, a.grad.data)
    c = tc.Tensor(np.zeros(3), requires_grad=True)
    d = tc.Tensor(np.zeros(3), requires_grad=True)
    (c + d).sum().backward()  # read-only broadcast views
    optim.clip_grad_value_([c, d], 0.25)
    np.testing.assert_allclose(c.grad.data, 0.25)
    np.testing.assert_allclose(d.grad.data, 0.25)


def test_clip_grad_value():
    ps = params_with_grads(scale=2.0)
    g0 = flat(ps)
    optim.clip_grad_value_(ps, 0.5)
    np.testing.assert_array_equal(flat(ps), np.clip(g0, -0.5, 0.5))
    assert (np.abs(g0) > 0.5).any()


def test_nonfinite_and_bad_arguments():
    p = tc.Tensor(np.ones(2), requires_grad=True)
    p.grad = tc.Tensor(np.array([np.inf, 1.0]))
    with pytest.raises(RuntimeError, match="inf"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm_([p], -1.0)
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value_([p], -1.0)
    assert optim.clip_grad_norm_([tc.Tensor(np.ones(2), requires_grad=True)], 1.0) == 0.0
