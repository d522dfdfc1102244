"""Hessian tools against the exact dense Hessian of a small trained MLP (891 parameters)."""

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import optim
from tensorcalc.diagnostics import curvature as C


@pytest.fixture(scope="module")
def mlp_hessian():
    rng = np.random.default_rng(0)
    model = tc.nn.Sequential(tc.nn.Linear(8, 24, rng=0, dtype="float64"), tc.nn.Tanh(),
                             tc.nn.Linear(24, 24, rng=1, dtype="float64"), tc.nn.Tanh(),
                             tc.nn.Linear(24, 3, rng=2, dtype="float64"))
    x = rng.standard_normal((256, 8))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    flip = rng.random(256) < 0.2
    y[flip] = rng.integers(0, 3, flip.sum())
    ps = list(model.parameters())
    opt = optim.LBFGS(ps, max_iter=30, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = tc.functional.cross_entropy(model(tc.tensor(x)), y)
        loss.backward()
        return loss

    opt.step(closure)      # a trained network: curvature where it matters
    op = C.HessianOperator.for_model(model, tc.functional.cross_entropy, x, y)
    h = C.dense_hessian(op)
    return model, x, y, op, h, np.linalg.eigvalsh(h)


def test_dense_hessian_matches_engine_hessian_on_a_small_problem():
    w = tc.tensor(np.array([0.3, -0.7, 1.1]))
    w.requires_grad = True
    f = lambda: (tc.tanh(w) ** 3).sum() + w[0] * w[1] * w[2]  # noqa: E731
    op = C.HessianOperator([w], f)
    exact = tc.hessian(lambda v: (tc.tanh(v) ** 3).sum() + v[0] * v[1] * v[2])(w.data)
    np.testing.assert_allclose(C.dense_hessian(op), exact.data if hasattr(exact, "data") else
                               exact, rtol=1e-12, atol=1e-12)


def test_top_eigenvalues_power_and_lanczos_within_1_percent(mlp_hessian):
    *_, op, h, w = mlp_hessian
    assert op.n <= 2000
    top = w[::-1][:3]
    power, vecs, _ = C.top_eigenvalues(op, k=3, tol=1e-7)
    np.testing.assert_allclose(power, top, rtol=1e-2)
    np.testing.assert_allclose(C.lanczos_eigenvalues(op, k=3), top, rtol=1e-2)
    # the eigenvector really is one: ‖H u − λ u‖ small
    u = vecs[:, 0]
    assert np.linalg.norm(h @ u - power[0] * u) < 1e-2 * power[0]


def test_trace_within_1_percent_and_hutchinson_unbiased(mlp_hessian):
    *_, op, h, w = mlp_hessian
    exact = float(np.trace(h))
    est, _ = C.hutchinson_trace(op, samples=300, method="hutch++")
    assert abs(est - exact) <= 1e-2 * abs(exact)
    est, se = C.hutchinson_trace(op, samples=200)   # plain Hutchinson: within 4 standard errors
    assert abs(est - exact) <= 4 * se and se < 0.1 * abs(exact)


def test_slq_density_moments_within_1_percent(mlp_hessian):
    *_, op, h, w = mlp_hessian
    nodes, weights = C.spectral_density(op, n_vectors=10, m=40, deflate=100, power_iters=0)
    assert abs(weights.sum() - 1) < 1e-12
    for k in (1, 2):
        exact = float(np.mean(w ** k))
        assert abs(C.density_moments(nodes, weights, k) - exact) <= 1e-2 * abs(exact), k
    grid = np.linspace(w.min() - 1, w.max() + 1, 4001)
    dens = C.density_on_grid(nodes, weights, grid, sigma=0.05)
    assert abs(np.trapezoid(dens, grid) - 1) < 1e-3      # a probability density


def test_dataset_operator_is_the_mean_of_batches(mlp_hessian):
    model, x, y, op, h, _ = mlp_hessian
    batched = C.HessianOperator.for_model(model, tc.functional.cross_entropy, x, y,
                                          batch_size=100)          # 100 + 100 + 56
    v = np.random.default_rng(5).standard_normal(op.n)
    np.testing.assert_allclose(batched.matvec(v), h @ v, rtol=1e-9, atol=1e-12)


def test_sharpness_callback_reports_lambda_max_and_2_over_lr(mlp_hessian):
    model, x, y, op, h, w = mlp_hessian
    cb = C.SharpnessCallback(model.parameters(),
                             lambda: tc.functional.cross_entropy(model(tc.tensor(x)), y),
                             tol=1e-6, max_iter=200)

    class Trainer:
        lr = 0.1

    logs = {}
    cb.on_epoch_end(Trainer(), 1, logs)
    assert logs["2/lr"] == pytest.approx(20.0)
    assert logs["sharpness"] == pytest.approx(w[-1], rel=1e-3)
    assert cb.state_dict()["history"][0]["epoch"] == 1


def test_sharpness_callback_in_a_loop_logs_every_epoch():
    from tensorcalc.data import DataLoader, TensorDataset
    from tensorcalc.train.loop import Loop
    from tensorcalc.train.steps import SupervisedStep

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = tc.nn.Sequential(tc.nn.Linear(4, 8, rng=0), tc.nn.Tanh(), tc.nn.Linear(8, 2, rng=1))
    step = SupervisedStep(model, tc.functional.cross_entropy,
                          tc.optim.SGD(model.parameters(), lr=0.5))
    loss = lambda: tc.functional.cross_entropy(model(tc.tensor(x)), y)  # noqa: E731
    cb = C.SharpnessCallback(model.parameters(), loss)
    hist = Loop(step, DataLoader(TensorDataset(x, y), batch_size=64), epochs=2, callbacks=[cb],
                quiet=True, tensorboard=False).run()
    assert [r["2/lr"] for r in hist] == [4.0, 4.0]
    exact = np.linalg.eigvalsh(C.dense_hessian(C.HessianOperator(model.parameters(), loss)))
    assert hist[-1]["sharpness"] == pytest.approx(exact[-1], rel=1e-2)


def test_hessian_operator_on_the_standin_device_matches_cpu():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 3))
    y = rng.integers(0, 2, 16)

    def make():
        return tc.nn.Sequential(tc.nn.Linear(3, 5, rng=0, dtype="float64"), tc.nn.Tanh(),
                                tc.nn.Linear(5, 2, rng=1, dtype="float64"))

    cpu = C.HessianOperator.for_model(make(), tc.functional.cross_entropy, x, y)
    dev = C.HessianOperator.for_model(make().to("standin"), tc.functional.cross_entropy, x, y)
    v = rng.standard_normal(cpu.n)
    np.testing.assert_allclose(dev.matvec(v), cpu.matvec(v), rtol=1e-12)
    np.testing.assert_allclose(C.top_eigenvalues(dev, k=1)[0], C.top_eigenvalues(cpu, k=1)[0],
                               rtol=1e-9)
