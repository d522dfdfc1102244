"""Optimisers: two steps against their docstring equations, convergence, groups, validation, state.

The references below are written from the class docstrings, out of place in float64 NumPy, and
never call the library; the library's run takes its gradients from autodiff (loss.backward()).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import optim

# The test problem: L(θ) = Σ ½ c θ² + d θ (elementwise c > 0), so ∇L = c θ + d.
RNG = np.random.default_rng(0)
THETA0 = RNG.normal(size=(3, 4))
C = RNG.uniform(0.5, 2.0, size=(3, 4))
D = RNG.normal(size=(3, 4))


def grad_fn(theta):
    return C * theta + D


# ---------------------------------------------------------------------- references (from docs)
def sgd_ref(theta, steps, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
            nesterov=False):
    b = None
    for _ in range(steps):
        g = grad_fn(theta) + weight_decay * theta
        if momentum != 0:
            b = g if b is None else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        theta = theta - lr * g
    return theta


def adagrad_ref(theta, steps, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                initial_accumulator_value=0.0, eps=1e-10):
    s = np.full_like(theta, initial_accumulator_value)
    for t in range(1, steps + 1):
        clr = lr / (1 + (t - 1) * lr_decay)
        g = grad_fn(theta) + weight_decay * theta
        s = s + g * g
        theta = theta - clr * g / (np.sqrt(s) + eps)
    return theta


def rmsprop_ref(theta, steps, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False):
    v = np.zeros_like(theta)
    gbar = np.zeros_like(theta)
    b = np.zeros_like(theta)
    for _ in range(steps):
        g = grad_fn(theta) + weight_decay * theta
        v = alpha * v + (1 - alpha) * g * g
        vt = v
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            vt = v - gbar ** 2
        if momentum > 0:
            b = momentum * b + g / (np.sqrt(vt) + eps)
            theta = theta - lr * b
        else:
            theta = theta - lr * g / (np.sqrt(vt) + eps)
    return theta


def adadelta_ref(theta, steps, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    v = np.zeros_like(theta)
    u = np.zeros_like(theta)
    for _ in range(steps):
        g = grad_fn(theta) + weight_decay * theta
        v = rho * v + (1 - rho) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta ** 2
        theta = theta - lr * delta
    return theta


def adam_ref(theta, steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             amsgrad=False, decoupled=False):
    b1, b2 = betas
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    vhat = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        if decoupled:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vhat = np.maximum(vhat, v) if amsgrad else v
        theta = theta - (lr / (1 - b1 ** t)) * m / (np.sqrt(vhat) / math.sqrt(1 - b2 ** t) + eps)
    return theta


def adamw_ref(theta, steps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
              amsgrad=False):
    return adam_ref(theta, steps, lr, betas, eps, weight_decay, amsgrad, decoupled=True)


def nadam_ref(theta, steps, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              momentum_decay=4e-3, decoupled_weight_decay=False):
    b1, b2 = betas
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    prod = 1.0
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        if decoupled_weight_decay:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        prod_t = prod * mu
        prod_next = prod_t * mu_next
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        d = np.sqrt(v / (1 - b2 ** t)) + eps
        theta = (theta - lr * (1 - mu) / (1 - prod_t) * g / d
                 - lr * mu_next / (1 - prod_next) * m / d)
        prod = prod_t
    return theta


CASES = [
    (optim.SGD, sgd_ref, dict(lr=0.1)),
    (optim.SGD, sgd_ref, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, sgd_ref, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    (optim.SGD, sgd_ref, dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.05)),
    (optim.Adagrad, adagrad_ref, dict(lr=0.3)),
    (optim.Adagrad, adagrad_ref, dict(lr=0.3, lr_decay=0.5, weight_decay=0.1,
                                      initial_accumulator_value=0.2, eps=1e-3)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.05)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.05, alpha=0.9, centered=True)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.05, alpha=0.8, momentum=0.7, weight_decay=0.1,
                                      eps=1e-3)),
    (optim.RMSprop, rmsprop_ref, dict(lr=0.05, alpha=0.8, momentum=0.7, centered=True)),
    (optim.Adadelta, adadelta_ref, dict()),
    (optim.Adadelta, adadelta_ref, dict(lr=0.5, rho=0.7, eps=1e-3, weight_decay=0.2)),
    (optim.Adam, adam_ref, dict(lr=0.1)),
    (optim.Adam, adam_ref, dict(lr=0.1, betas=(0.8, 0.5), eps=1e-3, weight_decay=0.1)),
    (optim.Adam, adam_ref, dict(lr=0.5, betas=(0.8, 0.5), amsgrad=True)),
    (optim.AdamW, adamw_ref, dict(lr=0.1)),
    (optim.AdamW, adamw_ref, dict(lr=0.5, betas=(0.8, 0.5), weight_decay=0.3, amsgrad=True)),
    (optim.NAdam, nadam_ref, dict(lr=0.1)),
    (optim.NAdam, nadam_ref, dict(lr=0.1, betas=(0.8, 0.9), weight_decay=0.1,
                                  momentum_decay=0.1)),
    (optim.NAdam, nadam_ref, dict(lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}"
       for c, _, kw in CASES]


def run_lib(cls, kw, steps, dtype=np.float64):
    p = tc.Tensor(THETA0.astype(dtype), requires_grad=True)
    c, d = tc.tensor(C.astype(dtype)), tc.tensor(D.astype(dtype))
    opt = cls([p], **kw)
    for _ in range(steps):
        opt.zero_grad()
        loss = (0.5 * c * p * p + d * p).sum()
        loss.backward()
        opt.step()
    return p, opt


@pytest.mark.parametrize("cls,ref,kw", CASES, ids=IDS)
def test_two_steps_match_the_docstring_equations(cls, ref, kw):
    p, _ = run_lib(cls, kw, 2)
    expect = ref(THETA0.copy(), 2, **kw)
    assert not np.allclose(expect, THETA0, atol=1e-3), "the reference must actually move"
    np.testing.assert_allclose(p.data, expect, rtol=1e-12, atol=1e-14)
    # and one step alone (catches a wrong first step that a second one might hide)
    p1, _ = run_lib(cls, kw, 1)
    np.testing.assert_allclose(p1.data, ref(THETA0.copy(), 1, **kw), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls,ref,kw", CASES, ids=IDS)
def test_float32_stays_float32(cls, ref, kw):
    p, opt = run_lib(cls, kw, 2, np.float32)
    assert p.dtype == np.float32
    for v in opt.state[p].values():
        if isinstance(v, np.ndarray):
            assert v.dtype == np.float32
    np.testing.assert_allclose(p.data, ref(THETA0.copy(), 2, **kw), rtol=2e-4, atol=2e-5)


def test_the_references_are_sensitive_to_each_option():
    # amsgrad / centered / nesterov / decoupled must change two steps, or the cases above
    # would not test them
    t = THETA0.copy()
    pairs = [
        (adam_ref(t, 2, lr=0.5, betas=(0.8, 0.5)), adam_ref(t, 2, lr=0.5, betas=(0.8, 0.5),
                                                            amsgrad=True)),
        (rmsprop_ref(t, 2, lr=0.05, alpha=0.9), rmsprop_ref(t, 2, lr=0.05, alpha=0.9,
                                                            centered=True)),
        (sgd_ref(t, 2, lr=0.1, momentum=0.8), sgd_ref(t, 2, lr=0.1, momentum=0.8, nesterov=True)),
        (nadam_ref(t, 2, lr=0.1, weight_decay=0.1),
         nadam_ref(t, 2, lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)),
        (adam_ref(t, 2, lr=0.1, weight_decay=0.3), adamw_ref(t, 2, lr=0.1, weight_decay=0.3)),
    ]
    for a, b in pairs:
        assert not np.allclose(a, b, rtol=1e-6)


def test_gradient_is_not_modified_and_version_bumps():
    p = tc.Tensor(THETA0.copy(), requires_grad=True)
    g = RNG.normal(size=THETA0.shape)
    p.grad = tc.Tensor(g.copy())
    opt = optim.Adam([p], lr=0.1, weight_decay=0.5)
    v0 = p._version
    opt.step()
    np.testing.assert_array_equal(p.grad.data, g)
    assert p._version == v0 + 1


def test_step_after_graph_used_parameter_is_detected():
    p = tc.Tensor(THETA0.copy(), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    y = (p * p).sum()
    p.grad = tc.ones_like(p)
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_read_only_broadcast_gradients_are_handled():
    a = tc.Tensor(np.ones(3), requires_grad=True)
    b = tc.Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()  # both grads: one shared read-only broadcast view
    opt = optim.SGD([a, b], lr=0.5, momentum=0.9)
    opt.step()
    np.testing.assert_allclose(a.data, 0.5)
    np.testing.assert_allclose(b.data, 0.5)


def test_params_without_grad_are_skipped_and_zero_grad():
    p = tc.Tensor(THETA0.copy(), requires_grad=True)
    q = tc.Tensor(THETA0.copy(), requires_grad=True)
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = tc.ones_like(p)
    opt.step()
    assert not np.array_equal(p.data, THETA0)
    np.testing.assert_array_equal(q.data, THETA0)
    assert q not in opt.state
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.data, 0)
    opt.zero_grad()
    assert p.grad is None


def test_closure_is_evaluated_and_returned():
    p = tc.Tensor(THETA0.copy(), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with tc.no_grad():  # the closure re-enables recording
        loss = opt.step(closure)
    assert math.isclose(loss.item(), float((THETA0 ** 2).sum()))
    np.testing.assert_allclose(p.data, THETA0 * 0.8)


# ---------------------------------------------------------------------- convergence
def _quadratic(n=6, seed=1):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = q @ np.diag(np.linspace(1.0, 10.0, n)) @ q.T
    b = rng.normal(size=n)
    return A, b, np.linalg.solve(A, b)


QUAD = [
    (optim.SGD, dict(lr=0.1), 300),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True), 300),
    (optim.Adagrad, dict(lr=0.5), 2000),
    (optim.RMSprop, dict(lr=0.01, alpha=0.999), 3000),
    (optim.RMSprop, dict(lr=0.001, centered=True, alpha=0.999), 3000),
    (optim.Adadelta, dict(lr=0.1), 2000),
    (optim.Adam, dict(lr=0.01), 2000),
    (optim.Adam, dict(lr=0.01, amsgrad=True), 2000),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.0), 2000),
    (optim.NAdam, dict(lr=0.005), 2000),
]


@pytest.mark.parametrize("cls,kw,steps", QUAD, ids=[f"{c.__name__}-{kw}" for c, kw, _ in QUAD])
def test_converges_on_a_convex_quadratic(cls, kw, steps):
    """f(θ) = ½ θᵀAθ − bᵀθ with A SPD (eigenvalues 1..10); minimiser A⁻¹b."""
    A, b, x_star = _quadratic()
    p = tc.Tensor(np.zeros_like(b), requires_grad=True)
    opt = cls([p], **kw)
    for _ in range(steps):
        p.grad = tc.Tensor(A @ p.data - b)
        opt.step()
    assert np.linalg.norm(p.data - x_star) < 1e-3


def _rosen_grad(v):
    x, y = v
    return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


ROSEN = [  # (class, hyperparameters, steps, tolerance on ‖θ − (1, 1)‖)
    (optim.SGD, dict(lr=1e-3, momentum=0.9), 5000, 1e-4),
    (optim.SGD, dict(lr=1e-3, momentum=0.9, nesterov=True), 5000, 1e-4),
    (optim.Adagrad, dict(lr=0.5), 10000, 1e-3),
    (optim.RMSprop, dict(lr=1e-3), 10000, 2e-3),
    (optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.5), 5000, 1e-3),
    (optim.Adadelta, dict(lr=0.05), 10000, 2e-2),
    (optim.Adam, dict(lr=1e-2), 5000, 1e-3),
    (optim.Adam, dict(lr=2e-2, amsgrad=True), 10000, 1e-3),
    (optim.AdamW, dict(lr=1e-2, weight_decay=0.0), 5000, 1e-3),
    (optim.NAdam, dict(lr=5e-3), 10000, 2e-3),
]


@pytest.mark.parametrize("cls,kw,steps,tol", ROSEN,
                         ids=[f"{c.__name__}-{kw}" for c, kw, _, _ in ROSEN])
def test_converges_on_rosenbrock(cls, kw, steps, tol):
    """f(x, y) = (1 − x)² + 100 (y − x²)² from the standard start (−1.2, 1); minimum (1, 1)."""
    p = tc.Tensor(np.array([-1.2, 1.0]), requires_grad=True)
    opt = cls([p], **kw)
    for _ in range(steps):
        p.grad = tc.Tensor(_rosen_grad(p.data))
        opt.step()
    assert np.linalg.norm(p.data - 1.0) < tol


def test_rosenbrock_through_autodiff():
    """The same problem with the gradient from the engine, in float32 (a short run)."""
    p = tc.Tensor(np.array([-1.2, 1.0], dtype=np.float32), requires_grad=True)
    opt = optim.Adam([p], lr=2e-2)
    f0 = None
    for _ in range(500):
        opt.zero_grad()
        x, y = p[0], p[1]
        f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        f.backward()
        f0 = f.item() if f0 is None else f0
        opt.step()
    x, y = (float(v) for v in p.data)
    assert (1 - x) ** 2 + 100 * (y - x * x) ** 2 < 0.1 * f0
    assert p.dtype == np.float32


# ---------------------------------------------------------------------- parameter groups
def test_parameter_groups_have_their_own_hyperparameters():
    p = tc.Tensor(np.ones(3), requires_grad=True)
    q = tc.Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.0
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    for _ in range(2):
        p.grad = tc.ones_like(p)
        q.grad = tc.ones_like(q)
        opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1 - 0.1)
    np.testing.assert_allclose(q.data, 1 - 0.5 - 0.5 * (0.9 + 1))  # b₂ = 0.9·1 + 1


def test_add_param_group_and_duplicates():
    p = tc.Tensor(np.ones(3), requires_grad=True)
    q = tc.Tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    opt.add_param_group({"params": q, "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one group"):
        opt.add_param_group({"params": [p]})
    with pytest.raises(ValueError, match="twice"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p)
    with pytest.raises(ValueError, match="leaf"):
        optim.SGD([p * 2])
    with pytest.raises(TypeError, match="Tensors"):
        optim.SGD([np.ones(3)])


# ---------------------------------------------------------------------- validation
BAD = [
    (optim.SGD, dict(lr=-0.1), "lr"),
    (optim.SGD, dict(momentum=-0.5), "momentum"),
    (optim.SGD, dict(weight_decay=-1e-4), "weight_decay"),
    (optim.SGD, dict(nesterov=True), "nesterov"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov"),
    (optim.Adam, dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    (optim.Adam, dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (optim.Adam, dict(betas=(0.9,)), "betas"),
    (optim.Adam, dict(eps=-1e-8), "eps"),
    (optim.Adam, dict(lr=float("nan")), "lr"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.NAdam, dict(momentum_decay=-1.0), "momentum_decay"),
    (optim.NAdam, dict(betas=(0.9, 1.5)), "betas"),
    (optim.RMSprop, dict(alpha=1.5), "alpha"),
    (optim.RMSprop, dict(momentum=-0.1), "momentum"),
    (optim.Adagrad, dict(lr_decay=-0.1), "lr_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (optim.Adadelta, dict(rho=1.1), "rho"),
    (optim.Adadelta, dict(lr=-1.0), "lr"),
]


@pytest.mark.parametrize("cls,kw,name", BAD, ids=[f"{c.__name__}-{kw}" for c, kw, _ in BAD])
def test_bad_hyperparameters_raise_naming_the_argument(cls, kw, name):
    p = tc.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match=name):
        cls([p], **kw)


def test_bad_hyperparameter_in_a_group():
    p = tc.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([{"params": [p], "lr": -1.0}])


# ---------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("cls,ref,kw", CASES[::2], ids=IDS[::2])
def test_state_dict_resume_equals_uninterrupted(cls, ref, kw):
    """2 steps, state_dict, a FRESH optimiser loads it, 2 more == 4 steps straight."""
    p4, _ = run_lib(cls, kw, 4)
    p, opt = run_lib(cls, kw, 2)
    sd = opt.state_dict()
    q = tc.Tensor(p.data.copy(), requires_grad=True)
    opt2 = cls([q], lr=123.0)  # hyperparameters come from the state
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kw.get("lr", opt2.param_groups[0]["lr"])
    c, d = tc.tensor(C), tc.tensor(D)
    for _ in range(2):
        opt2.zero_grad()
        (0.5 * c * q * q + d * q).sum().backward()
        opt2.step()
    np.testing.assert_array_equal(q.data, p4.data)


def test_state_dict_is_a_snapshot_and_load_checks():
    p = tc.Tensor(np.ones(3), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = tc.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0]
    assert sd["state"][0]["step"] == 1
    before = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)  # not aliased

    q = tc.Tensor(np.ones(4), requires_grad=True)
    other = optim.Adam([q])
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(sd)
    assert other.state == {}  # nothing changed by the failed load
    two = optim.Adam([{"params": [q]}, {"params": [tc.Tensor(np.ones(1), requires_grad=True)]}])
    with pytest.raises(ValueError, match="groups"):
        two.load_state_dict(sd)
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(bad)


def test_load_state_dict_casts_to_the_parameter_dtype():
    p = tc.Tensor(np.ones(3), requires_grad=True)  # float64
    opt = optim.Adam([p], lr=0.1)
    p.grad = tc.ones_like(p)
    opt.step()
    q = tc.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    opt2 = optim.Adam([q])
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[q]["exp_avg"].dtype == np.float32


def test_repr_lists_groups():
    p = tc.Tensor(np.ones((2, 3)), requires_grad=True)
    r = repr(optim.SGD([p], lr=0.1, momentum=0.9))
    assert "SGD" in r and "6 values" in r and "momentum=0.9" in r


def test_axpy_fast_and_fallback_paths_agree():
    from tensorcalc.optim.base import axpy

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    for y0 in (rng.normal(size=(4, 6)).astype(np.float32),              # BLAS path
               rng.normal(size=(6, 4)).astype(np.float32).T,            # non-contiguous y
               rng.normal(size=(4, 6)).astype(np.float16)):             # no BLAS for float16
        y = y0.copy() if y0.flags.c_contiguous else y0
        expect = y.astype(np.float64) + 0.3 * x.astype(np.float64)
        axpy(0.3, x.astype(y.dtype), y)
        assert y.dtype == y0.dtype
        np.testing.assert_allclose(y, expect, rtol=2e-3 if y.dtype == np.float16 else 1e-6)
    y = np.zeros(3)
    axpy(2.0, np.broadcast_to(np.ones(1), (3,)), y)  # read-only broadcast x
    np.testing.assert_array_equal(y, 2.0)


@pytest.mark.parametrize("cls,ref,kw", CASES[1::4], ids=IDS[1::4])
def test_non_contiguous_parameters_and_gradients(cls, ref, kw):
    """A parameter stored transposed (and a transposed gradient) takes the same steps."""
    p = tc.Tensor(np.ascontiguousarray(THETA0.T).T, requires_grad=True)  # F-ordered
    assert not p.data.flags.c_contiguous
    opt = cls([p], **kw)
    for _ in range(2):
        p.grad = tc.Tensor(np.ascontiguousarray(grad_fn(p.data).T).T)
        opt.step()
    np.testing.assert_allclose(p.data, ref(THETA0.copy(), 2, **kw), rtol=1e-12, atol=1e-14)
