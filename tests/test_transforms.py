"""Transforms against closed forms."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tensorcalc as tc

RNG = np.random.default_rng(0)


def test_hessian_of_quadratic_form_is_A_plus_At():
    A = RNG.standard_normal((4, 4))
    x = RNG.standard_normal(4)
    H = tc.hessian(lambda x: x @ (tc.tensor(A, dtype=np.float64) @ x))(x)
    np.testing.assert_allclose(H.numpy(), A + A.T, atol=1e-12)


def test_jacobian_of_linear_map_is_its_matrix_both_modes():
    M = RNG.standard_normal((3, 5))
    x = RNG.standard_normal(5)
    f = lambda x: tc.tensor(M, dtype=np.float64) @ x
    np.testing.assert_allclose(tc.jacobian(f)(x).numpy(), M, atol=1e-12)
    np.testing.assert_allclose(tc.jacobian(f, mode="forward")(x).numpy(), M, atol=1e-12)


def test_hvp_equals_hessian_times_v():
    f = lambda x: (tc.tanh(x) ** 3).sum() + (x[0] * x[1] * x[2])
    x = RNG.standard_normal(3)
    v = RNG.standard_normal(3)
    H = tc.hessian(f)(x).numpy()
    g, hv = tc.hvp(f, (x,), (v,))
    np.testing.assert_allclose(hv.numpy(), H @ v, atol=1e-12)
    np.testing.assert_allclose(g.numpy(), tc.grad(f)(x).numpy(), atol=1e-12)


def test_grad_argnums_and_has_aux_and_value_and_grad():
    f = lambda a, b: ((a * b).sum(), {"note": 1})
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    (ga, gb), aux = tc.grad(f, argnums=(0, 1), has_aux=True)(a, b)
    np.testing.assert_allclose(ga.numpy(), b)
    np.testing.assert_allclose(gb.numpy(), a)
    assert aux == {"note": 1}
    val, g = tc.value_and_grad(lambda a: (a**2).sum())(a)
    assert val.item() == 5.0 and g.numpy().tolist() == [2.0, 4.0]


def test_vjp_and_jvp_agree_with_jacobian():
    f = lambda x: tc.sin(x) * x.sum()
    x = RNG.standard_normal(4)
    J = tc.jacobian(f)(x).numpy()
    u, v = RNG.standard_normal(4), RNG.standard_normal(4)
    out, pull = tc.vjp(f, x)
    (xbar,) = pull(u)
    np.testing.assert_allclose(xbar.numpy(), J.T @ u, atol=1e-12)
    out2, ydot = tc.jvp(f, (x,), (v,))
    np.testing.assert_allclose(ydot.numpy(), J @ v, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), out2.numpy())


def test_hessian_of_logsumexp_is_diag_p_minus_ppT():
    x = RNG.standard_normal(5)
    p = np.exp(x - np.log(np.exp(x).sum()))
    H = tc.hessian(lambda x: tc.logsumexp(x))(x).numpy()
    np.testing.assert_allclose(H, np.diag(p) - np.outer(p, p), atol=1e-12)


def test_gradcheck_reports_the_failing_input():
    import pytest

    from tensorcalc.autodiff.function import Elementwise

    class BadSquare(Elementwise):  # deliberately wrong derivative, not registered
        name = "bad_square"

        @staticmethod
        def forward(xp, x):
            return x * x

        @staticmethod
        def derivative(y, x):
            return 3 * x

    with pytest.raises(tc.GradcheckError, match=r"input 1 \(shape \(3,\)\)"):
        tc.gradcheck(lambda a, b: a * BadSquare.apply(b), np.ones(3), np.ones(3))
    report = tc.gradcheck(lambda a: a * a, np.ones(3))
    assert report.ok and "vjp" in str(report)


shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**32 - 1))
def test_binary_ops_broadcast_and_differentiate_for_any_shapes(sh, seed):
    rng = np.random.default_rng(seed)
    (s1, s2), out = sh.input_shapes, sh.result_shape
    a, b = rng.standard_normal(s1), rng.uniform(0.5, 2.0, s2)
    for f, ref in ((tc.add, np.add), (tc.mul, np.multiply), (tc.div, np.divide),
                   (tc.maximum, np.maximum)):
        y = f(tc.tensor(a, dtype=np.float64), tc.tensor(b, dtype=np.float64))
        assert y.shape == out
        np.testing.assert_allclose(y.numpy(), ref(a, b))
        tc.gradcheck(f, a, b, directions=1)


@settings(max_examples=25, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), st.integers(0, 2**32 - 1))
def test_reductions_for_any_shape_and_axis(shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    axis = int(rng.integers(0, len(shape)))
    for f in (tc.sum, tc.logsumexp, tc.max, tc.mean):
        tc.gradcheck(lambda x, f=f: f(x, axis=axis), a, directions=1)
