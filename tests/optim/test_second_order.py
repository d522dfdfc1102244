"""Second-order optimisers: steps by hand from their docstring equations, convergence, errors."""

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import optim


def _param(values):
    p = tc.tensor(np.asarray(values, dtype=np.float64))
    p.requires_grad = True
    return p


def _logistic_problem(n=200, d=5, seed=0, c=1.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d)
    y = (x @ w_true + 0.5 * rng.standard_normal(n) > 0).astype(np.float64)
    w = _param(np.zeros(d))
    b = _param(np.zeros(1))
    xt = tc.tensor(x)

    def loss():
        z = xt @ w + b
        # Σ log(1 + e^{−s z}) + ½‖w‖²/C  (scikit-learn's objective with L2, C)
        nll = tc.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
        return nll + (w * w).sum() * (0.5 / c)

    return w, b, loss


def _grad_norm(loss, params):
    gs = tc.gradients(loss(), params)
    return float(np.sqrt(sum(float((g.data ** 2).sum()) for g in gs)))


def test_newton_two_steps_by_hand():
    # f(x) = Σ (eˣ − 2x): g = eˣ − 2, H = diag(eˣ); Newton: x ← x − (eˣ − 2)/eˣ
    x0 = np.array([0.3, -1.0, 2.0])
    p = _param(x0)
    opt = optim.Newton([p])
    expect = x0.copy()
    for _ in range(2):
        opt.step(lambda: (tc.exp(p) - 2 * p).sum())
        expect = expect - (np.exp(expect) - 2) / np.exp(expect)
        np.testing.assert_allclose(p.data, expect, rtol=1e-12, atol=1e-14)


def test_newton_damping_and_quadratic_one_step():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 4))
    a = a @ a.T + 4 * np.eye(4)
    b = rng.standard_normal(4)
    p = _param(np.zeros(4))
    at = tc.tensor(a)
    f = lambda: 0.5 * (p * (at @ p)).sum() - (p * b).sum()  # noqa: E731
    optim.Newton([p]).step(f)
    np.testing.assert_allclose(p.data, np.linalg.solve(a, b), rtol=1e-10)
    q = _param(np.zeros(4))
    f2 = lambda: 0.5 * (q * (at @ q)).sum() - (q * b).sum()  # noqa: E731
    optim.Newton([q], damping=2.0).step(f2)
    np.testing.assert_allclose(q.data, np.linalg.solve(a + 2 * np.eye(4), b), rtol=1e-10)


def test_newton_indefinite_names_the_problem():
    p = _param([0.1, 0.2])
    opt = optim.Newton([p])
    with pytest.raises(optim.NotPositiveDefiniteError, match="not positive definite.*damping >"):
        opt.step(lambda: 0.5 * p[0] ** 2 - 0.5 * p[1] ** 2)
    np.testing.assert_array_equal(p.data, [0.1, 0.2])   # nothing changed


def test_newton_irls_quadratic_convergence():
    w, b, loss = _logistic_problem()
    opt = optim.Newton([w, b])
    norms = []
    for _ in range(10):
        opt.step(loss)
        norms.append(_grad_norm(loss, [w, b]))
        if norms[-1] < 1e-8:
            break
    assert norms[-1] < 1e-8 and len(norms) <= 10
    # quadratic: once small, the next norm is about the square of the previous
    k = next(i for i, g in enumerate(norms) if g < 1e-2)
    assert norms[k + 1] < 10 * norms[k] ** 2 + 1e-12


def test_newton_cg_matches_newton_and_truncates():
    w, b, loss = _logistic_problem(seed=3)
    opt = optim.NewtonCG([w, b], damping=0.0)
    for _ in range(15):
        opt.step(loss)
    w2, b2, loss2 = _logistic_problem(seed=3)
    nt = optim.Newton([w2, b2])
    for _ in range(10):
        nt.step(loss2)
    np.testing.assert_allclose(w.data, w2.data, rtol=1e-6, atol=1e-8)
    assert _grad_norm(loss, [w, b]) < 1e-6
    st = opt.state[w]
    assert st["cg_iters"] <= 6 and st["cg_reason"] in ("residual", "relative progress")


def test_newton_cg_negative_curvature_descends_and_damping_adapts():
    p = _param([0.5, 1e-3])
    f = lambda: 0.5 * p[0] ** 2 - 0.5 * p[1] ** 2 + 0.25 * p[1] ** 4  # noqa: E731
    opt = optim.NewtonCG([p], damping=1e-3)
    before = float(f().data)
    for _ in range(30):
        opt.step(f)
    assert float(f().data) < before
    np.testing.assert_allclose(abs(p.data[1]), 1.0, atol=1e-5)   # reached a minimum y = ±1
    np.testing.assert_allclose(p.data[0], 0.0, atol=1e-5)


def _rosenbrock_closure(p, opt):
    def closure():
        opt.zero_grad()
        loss = (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
        loss.backward()
        return loss
    return closure


def test_lbfgs_strong_wolfe_rosenbrock():
    p = _param([-1.5, 2.0])
    opt = optim.LBFGS([p], max_iter=200, line_search_fn="strong_wolfe",
                      tolerance_grad=1e-12, tolerance_change=1e-14)
    opt.step(_rosenbrock_closure(p, opt))
    np.testing.assert_allclose(p.data, [1.0, 1.0], atol=1e-7)
    assert opt.state[p]["n_iter"] < 80


def test_lbfgs_first_steps_by_hand():
    # on f = ½ Σ aᵢ xᵢ², the first direction is −g and the first step is min(1, 1/‖g‖₁)·lr
    a = np.array([1.0, 4.0])
    p = _param([0.2, 0.1])
    opt = optim.LBFGS([p], lr=1.0, max_iter=2, max_eval=10)
    g0 = a * np.array([0.2, 0.1])
    x1 = np.array([0.2, 0.1]) - min(1, 1 / np.abs(g0).sum()) * g0
    g1 = a * x1
    s, y = x1 - np.array([0.2, 0.1]), g1 - g0
    rho = 1 / (y @ s)
    alpha = rho * (s @ -g1)
    q = -g1 - alpha * y
    r = q * (s @ y) / (y @ y)
    r = r + s * (alpha - rho * (y @ r))
    x2 = x1 + r

    def closure():
        opt.zero_grad()
        loss = 0.5 * (tc.tensor(a) * p * p).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(p.data, x2, rtol=1e-12)


def test_lbfgs_needs_backward_in_closure():
    p = _param([1.0])
    opt = optim.LBFGS([p])
    with pytest.raises(RuntimeError, match="must call loss.backward"):
        opt.step(lambda: (p * p).sum())


def _exp_fit():
    t = np.linspace(0, 2, 20)
    y = 2.0 * np.exp(-1.3 * t)
    theta = _param([1.0, -0.5])
    tt = tc.tensor(t)
    return theta, lambda: theta[0] * tc.exp(theta[1] * tt) - y


@pytest.mark.parametrize("cls", [optim.GaussNewton, optim.LevenbergMarquardt])
def test_gauss_newton_zero_residual_converges(cls):
    theta, r = _exp_fit()
    opt = cls([theta]) if cls is optim.LevenbergMarquardt else cls([theta], damping=1e-8)
    for _ in range(30):
        opt.step(r)
    np.testing.assert_allclose(theta.data, [2.0, -1.3], rtol=1e-9)


def test_gauss_newton_step_by_hand_and_cg_path():
    theta, r = _exp_fit()
    t = np.linspace(0, 2, 20)
    a, k = 1.0, -0.5
    res = a * np.exp(k * t) - 2.0 * np.exp(-1.3 * t)
    jac = np.stack([np.exp(k * t), a * t * np.exp(k * t)], axis=1)
    expect = np.array([a, k]) - np.linalg.solve(jac.T @ jac, jac.T @ res)
    optim.GaussNewton([theta]).step(r)
    np.testing.assert_allclose(theta.data, expect, rtol=1e-10)
    theta2, r2 = _exp_fit()
    optim.GaussNewton([theta2], dense_max=0).step(r2)     # matrix-free CG on Jᵀ(J v)
    np.testing.assert_allclose(theta2.data, expect, rtol=1e-8)


def test_levenberg_marquardt_rosenbrock_residuals():
    p = _param([-1.2, 1.0])
    opt = optim.LevenbergMarquardt([p], damping=1.0)
    for _ in range(100):
        opt.step(lambda: tc.stack([10 * (p[1] - p[0] ** 2), 1 - p[0]]))
    np.testing.assert_allclose(p.data, [1.0, 1.0], atol=1e-8)


def _saddle(p):
    return 0.5 * p[0] ** 2 - 0.5 * p[1] ** 2 + 0.25 * p[1] ** 4


def test_perturbed_gd_escapes_where_gd_cannot():
    for cls, kw in ((optim.SGD, {}), (optim.PerturbedGD, {"radius": 1e-3, "g_thres": 1e-3,
                                                          "t_thres": 20, "rng": 0})):
        p = _param([1.0, 0.0])
        opt = cls([p], lr=0.1, **kw)
        for _ in range(300):
            opt.zero_grad()
            _saddle(p).backward()
            opt.step()
        if cls is optim.SGD:
            assert p.data[1] == 0.0 and abs(p.data[0]) < 1e-10   # stuck at the saddle
        else:
            # at a minimum y = ±1 (kicked again by r there, as Jin et al.'s PGD is)
            assert abs(abs(p.data[1]) - 1) < 1e-2
            kicks = opt.state[p]["kicks"]
            assert kicks[0] > 50          # only once ‖∇f‖ ≤ g_thres, then ≥ t_thres apart
            assert all(b - a > 20 for a, b in zip(kicks, kicks[1:], strict=False))


def test_lbfgs_matches_scikit_learn_multinomial_logistic():
    """Issue 14 target: multinomial logistic regression on the 8×8 digits with C = 1 — the
    objective Σ −log softmax(xW + b)_y + ½‖W‖² matches scikit-learn's lbfgs to 1e-6 relative,
    in a similar number of iterations."""
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is a test dependency (dev)")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    n = len(y)

    def objective(w, b):
        z = x @ w + b
        z = z - z.max(1, keepdims=True)
        return float((np.log(np.exp(z).sum(1)) - z[np.arange(n), y]).sum() + 0.5 * (w ** 2).sum())

    with threadpool_limits(1):   # BLAS threads on a shared machine make both 100x slower
        clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=2000, tol=1e-8).fit(x, y)
        w = _param(np.zeros((64, 10)))
        b = _param(np.zeros(10))
        xt = tc.tensor(x)
        opt = optim.LBFGS([w, b], max_iter=1000, line_search_fn="strong_wolfe", history_size=10,
                          tolerance_grad=1e-5, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            loss = (tc.functional.cross_entropy(xt @ w + b, y, reduction="sum")
                    + 0.5 * (w * w).sum())
            loss.backward()
            return loss

        opt.step(closure)
    ref = objective(clf.coef_.T, clf.intercept_)
    ours = objective(w.data, b.data)
    its_ref, its = int(clf.n_iter_[0]), opt.state[w]["n_iter"]
    print(f"objective: scikit-learn {ref:.10f} in {its_ref} iterations, tensorcalc {ours:.10f} "
          f"in {its} iterations ({sklearn.__version__})")
    assert abs(ours - ref) <= 1e-6 * abs(ref)
    assert its <= 2 * its_ref


@pytest.mark.parametrize("through_file", [False, True])
def test_lbfgs_state_round_trip_resumes_bit_identically(tmp_path, through_file):
    from tensorcalc.serialization import load_state, save_state

    def make():
        p = _param([-1.5, 2.0])
        opt = optim.LBFGS([p], max_iter=3, history_size=4, line_search_fn="strong_wolfe")
        return p, opt

    p, opt = make()
    for _ in range(4):
        opt.step(_rosenbrock_closure(p, opt))
    expect = p.data.copy()
    p, opt = make()
    for _ in range(2):
        opt.step(_rosenbrock_closure(p, opt))
    q, opt2 = make()
    if through_file:
        path = save_state(str(tmp_path / "ck"), modules={}, optimizers={"opt": opt},
                          arrays={"p": p.data})
        load_state(path, optimizers={"opt": opt2})
    else:
        opt2.load_state_dict(opt.state_dict())
    q.data[...] = p.data
    for _ in range(2):
        opt2.step(_rosenbrock_closure(q, opt2))
    np.testing.assert_array_equal(q.data, expect)
    with pytest.raises(ValueError, match="one vector of length 3"):
        optim.LBFGS([_param([1.0, 2.0, 3.0])]).load_state_dict(opt.state_dict())
