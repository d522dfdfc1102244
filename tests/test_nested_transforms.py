"""Every transform nested in every other, with and without closures, against closed forms.

Inner: a derivative of order k (1: grad, vjp, jvp, jacobian in both modes; 2: hessian, hvp) with
respect to y of the elementwise f(x, y) = sin(x)·y³, evaluated at y = x. With the closure over x
("closure"), h(x) = ∂ₖf/∂yᵏ (x, x): h₁ = 3x² sin x, h₂ = 6x sin x. Without it ("total"), the
inner function is g(y) = f(y, y) = y³ sin y and h = g⁽ᵏ⁾. The outer transform then takes the
first (grad, vjp, jvp, jacobian) or second (hessian, hvp) derivative of h. Perturbation
confusion — the inner transform differentiating the outer's variable too — gives other numbers.
"""

import numpy as np
import pytest

import tensorcalc as tc

X = np.array([0.7, -1.3])
ONES = np.ones(2)


def f(x, y):
    return tc.sin(x) * y ** 3


# h and its derivatives, closed forms: CLOSURE[k][m] = d^m/dx^m [∂ᵏf/∂yᵏ (x, y)|_{y=x}]
s, c = np.sin, np.cos
CLOSURE = {
    1: [lambda x: 3 * x**2 * s(x),
        lambda x: 3 * x**2 * c(x) + 6 * x * s(x),
        lambda x: -3 * x**2 * s(x) + 12 * x * c(x) + 6 * s(x)],
    2: [lambda x: 6 * x * s(x),
        lambda x: 6 * x * c(x) + 6 * s(x),
        lambda x: -6 * x * s(x) + 12 * c(x)],
}
# g(y) = y³ sin y and its derivatives
G = [lambda y: y**3 * s(y),
     lambda y: 3 * y**2 * s(y) + y**3 * c(y),
     lambda y: 6 * y * s(y) + 6 * y**2 * c(y) - y**3 * s(y),
     lambda y: 6 * s(y) + 18 * y * c(y) - 9 * y**2 * s(y) - y**3 * c(y),
     lambda y: 24 * c(y) - 36 * y * s(y) - 12 * y**2 * c(y) + y**3 * s(y)]


def _vec(e, y):
    """The elementwise derivative of the vector function e at y, by each first-order route."""
    return {
        "grad": lambda: tc.grad(lambda v: e(v).sum())(y),
        "vjp": lambda: tc.vjp(e, y)[1](tc.ones(2, dtype=np.float64))[0],
        "jvp": lambda: tc.jvp(e, (y,), (ONES,))[1],
        "jac-rev": lambda: tc.jacobian(e, mode="reverse")(y) @ ONES,
        "jac-fwd": lambda: tc.jacobian(e, mode="forward")(y) @ ONES,
    }


INNER = {"grad": 1, "vjp": 1, "jvp": 1, "jac-rev": 1, "jac-fwd": 1, "hessian": 2, "hvp": 2}
OUTER = {"grad": 1, "vjp": 1, "jvp": 1, "jac-rev": 1, "jac-fwd": 1, "hessian": 2, "hvp": 2}


def inner(kind, e, y):
    """∂ᵏ/∂yᵏ of the elementwise e at y (as a vector), by transform ``kind``."""
    if kind in ("hessian", "hvp"):
        scalar = lambda v: e(v).sum()  # noqa: E731
        if kind == "hessian":
            return tc.hessian(scalar)(y) @ ONES
        return tc.hvp(scalar, (y,), (ONES,))[1]
    return _vec(e, y)[kind]()


def outer(kind, h, x):
    """dᵐ/dxᵐ of the elementwise h at x (as a vector) by transform ``kind``."""
    if kind == "hessian":
        return tc.hessian(lambda v: h(v).sum())(x) @ ONES
    if kind == "hvp":
        return tc.hvp(lambda v: h(v).sum(), (x,), (ONES,))[1]
    return _vec(h, x)[kind]()


@pytest.mark.parametrize("closure", [True, False], ids=["closure", "total"])
@pytest.mark.parametrize("out_kind", list(OUTER))
@pytest.mark.parametrize("in_kind", list(INNER))
def test_nested(in_kind, out_kind, closure):
    k, m = INNER[in_kind], OUTER[out_kind]
    if closure:
        h = lambda x: inner(in_kind, lambda y: f(x, y), x)  # noqa: E731
        want_h, want = CLOSURE[k][0](X), CLOSURE[k][m](X)
    else:
        h = lambda x: inner(in_kind, lambda y: f(y, y), x)  # noqa: E731
        want_h, want = G[k](X), G[k + m](X)
    np.testing.assert_allclose(h(X).numpy(), want_h, rtol=1e-10, atol=1e-12)
    got = outer(out_kind, h, X)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_issue_reproductions():
    f1 = lambda x: tc.grad(lambda y: x * y)(x)  # noqa: E731
    val, g = tc.value_and_grad(f1)(np.array(3.0))
    assert float(val) == 3.0 and float(g) == 1.0
    J = tc.jacobian(lambda a: tc.jacobian(lambda b: b * b * a)(a))(np.array([1.0, 2.0]))
    np.testing.assert_allclose(np.diagonal(np.diagonal(J.numpy())), [4.0, 8.0])
    # jvp over grad: d/dx [∂(x·y²)/∂y at y=x] = d/dx 2x² = 4x
    g2 = lambda x: tc.grad(lambda y: x * y * y)(x)  # noqa: E731
    _, t = tc.jvp(g2, (np.array(3.0),), (np.array(1.0),))
    assert float(t) == 12.0


def test_inner_transform_of_a_constant_closure_stays_differentiable():
    # the inner argument is a constant, but the closure is the outer variable
    f1 = lambda x: tc.grad(lambda y: (x * y ** 2).sum())(np.array([1.0, 2.0])).sum()  # noqa
    # ∂/∂y Σ x y² = 2 x y; summed at y = (1, 2): 2x(1 + 2) = 6x -> derivative 6
    assert float(tc.grad(f1)(np.array(5.0))) == 6.0


def test_gradient_penalty_trains_parameters():
    # WGAN-GP's shape: a gradient inside a loss, differentiated again w.r.t. parameters
    w = tc.tensor(np.array(1.5), requires_grad=True)
    x = np.array([1.0, 2.0])
    pen = (tc.grad(lambda v: (w * v ** 2).sum())(x) ** 2).sum()   # Σ (2 w x)² = 4 w² Σ x²
    pen.backward()
    assert float(w.grad) == pytest.approx(8 * 1.5 * 5.0)


def test_grad_of_gradients_does_not_walk_past_the_variable():
    # a gradient w.r.t. an intermediate tensor neither frees nor differentiates what made it
    x = tc.tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = tc.exp(x)
    y = (h * h).sum()
    (gh,) = [tc.gradients(y, h)]
    np.testing.assert_allclose(gh.numpy(), 2 * np.exp([1.0, 2.0]))
    assert x.grad is None
    y2 = (h * 3).sum()
    y2.backward()            # h's graph is intact
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.exp([1.0, 2.0]))
