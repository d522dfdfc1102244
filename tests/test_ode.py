"""ODE solvers, odeint's two gradient modes (through the solver, adjoint), ODEBlock."""

import tracemalloc

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc.functional.ode import ODEError, ODEStats

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def exact(y0, t):
    """y(t) = y0 expm(A t) for the row-vector system dy/dt = y A (a damped rotation)."""
    c, s = np.cos(2 * t), np.sin(2 * t)
    return np.exp(-0.1 * t) * (y0 @ np.array([[c, s], [-s, c]]))


def linear(t, y):
    return y @ tc.tensor(A)


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_methods_converge_at_their_order(method, order):
    y0 = np.array([2.0, 0.0])
    errs = []
    for h in (0.02, 0.01):
        ys = tc.odeint(linear, y0, [0.0, 2.0], method=method, step_size=h)
        errs.append(np.abs(ys.data[-1] - exact(y0, 2.0)).max())
    assert np.log2(errs[0] / errs[1]) == pytest.approx(order, abs=0.3)


def test_dopri5_meets_its_tolerance_and_counts_evaluations():
    y0 = np.array([2.0, 0.0])
    ts = np.linspace(0, 10, 21)
    ref = np.stack([exact(y0, t) for t in ts])
    errs = []
    for tol in (1e-5, 1e-9):
        s = ODEStats()
        ys = tc.odeint(linear, y0, ts, method="dopri5", rtol=tol, atol=tol, stats=s)
        errs.append(np.abs(ys.data - ref).max())
        # 6 new stages per attempted step (FSAL), + f(t0) + one probe for the first step
        assert s.nfe_forward == 6 * (s.steps_forward + s.rejected) + 2
        assert ys.shape == (21, 2) and ys.dtype == np.float64
    assert errs[0] < 1e-3 and errs[1] < 1e-7 and errs[1] < errs[0] / 100


def test_solving_backwards_in_time_inverts_the_forward_solve():
    y0 = np.array([[2.0, 0.0], [0.5, -1.0]])
    y1 = tc.odeint(linear, y0, [0.0, 3.0], rtol=1e-10, atol=1e-12).data[-1]
    back = tc.odeint(linear, y1, [3.0, 0.0], rtol=1e-10, atol=1e-12).data[-1]
    np.testing.assert_allclose(back, y0, atol=1e-8)


def test_float32_stays_float32():
    ys = tc.odeint(lambda t, y: -y, np.ones(3, np.float32), [0.0, 1.0], method="rk4",
                   step_size=0.1)
    assert ys.dtype == np.float32
    np.testing.assert_allclose(ys.data[-1], np.exp(-1.0), rtol=1e-5)


def spiral_setup():
    rng = np.random.default_rng(0)
    f = tc.models.SpiralDynamics(rng=rng).double()
    y0 = tc.tensor(np.array([[2.0, 0.0], [1.5, 0.3]]), requires_grad=True)
    ts = np.linspace(0.0, 2.5, 11)
    target = tc.tensor(rng.normal(size=(11, 2, 2)))
    return f, y0, ts, target


def test_adjoint_equals_backprop_through_the_solver_on_the_spiral():
    f, y0, ts, target = spiral_setup()
    params = list(f.parameters())
    grads, stats = {}, {}
    for adjoint in (False, True):
        s = ODEStats()
        ys = tc.odeint(f, y0, ts, adjoint=adjoint, rtol=1e-10, atol=1e-12, stats=s)
        loss = ((ys - target) ** 2).mean()
        grads[adjoint] = [g.data for g in tc.gradients(loss, [y0, *params])]
        stats[adjoint] = s
    for a, b in zip(grads[False], grads[True], strict=True):
        assert np.linalg.norm(a - b) <= 1e-6 * np.linalg.norm(a)
    assert stats[True].nfe_forward == stats[False].nfe_forward
    assert stats[True].nfe_backward > 0 and stats[False].nfe_backward == 0


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradcheck_through_odeint(adjoint):
    ts = [0.0, 0.4, 1.0]

    def fn(y0, w):
        ys = tc.odeint(lambda t, y: tc.tanh(y @ w), y0, ts, method="dopri5", rtol=1e-11,
                       atol=1e-12, adjoint=adjoint, params=[w])
        return (ys * ys).sum()

    rng = np.random.default_rng(1)
    tc.gradcheck(fn, rng.normal(size=(3, 2)), rng.normal(size=(2, 2)), atol=1e-6, rtol=1e-5,
                 check_forward=not adjoint)


def test_adjoint_refuses_second_derivatives_with_a_clear_message():
    w = tc.tensor(np.eye(2), requires_grad=True)
    ys = tc.odeint(lambda t, y: y @ w, np.ones((1, 2)), [0.0, 1.0], adjoint=True, params=[w],
                   method="rk4")
    with pytest.raises(NotImplementedError, match="adjoint=False"):
        tc.gradients(ys.sum(), [w], create_graph=True)


def _peak_bytes(adjoint, n_steps):
    rng = np.random.default_rng(0)
    lin = tc.nn.Linear(64, 64, rng=rng).double()
    f = lambda t, y: tc.tanh(lin(y))
    y0 = tc.tensor(rng.normal(size=(64, 64)), requires_grad=True)
    tracemalloc.start()
    tracemalloc.reset_peak()
    ys = tc.odeint(f, y0, [0.0, 1.0], method="rk4", step_size=1.0 / n_steps, adjoint=adjoint,
                   params=list(lin.parameters()))
    ys[-1].sum().backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_adjoint_memory_does_not_grow_with_the_number_of_steps():
    a10, a100 = _peak_bytes(True, 10), _peak_bytes(True, 100)
    b10, b100 = _peak_bytes(False, 10), _peak_bytes(False, 100)
    assert a100 <= 1.1 * a10, (a10, a100)
    assert b100 > 5 * b10, (b10, b100)     # the tape holds every stage of every step
    assert a100 < b100 / 10


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="method"):
        tc.odeint(linear, np.ones(2), [0.0, 1.0], method="rk45")
    with pytest.raises(ValueError, match="strictly"):
        tc.odeint(linear, np.ones(2), [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="y's shape"):
        tc.odeint(lambda t, y: y.sum(), np.ones(2), [0.0, 1.0])
    with pytest.raises(ODEError, match="max_steps"):
        tc.odeint(linear, np.ones(2), [0.0, 100.0], max_steps=5)


def test_odeblock_trains_and_counts_nfe():
    rng = np.random.default_rng(0)
    block = tc.nn.ODEBlock(tc.models.SpiralDynamics(hidden=16, rng=rng), rtol=1e-5, atol=1e-6)
    head = tc.nn.Linear(2, 1, rng=rng)
    x = rng.normal(size=(32, 2)).astype(np.float32) * 0.5
    y = (x[:, :1] * 2.0).astype(np.float32)
    params = list(block.parameters()) + list(head.parameters())
    opt = tc.optim.Adam(params, lr=3e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = tc.functional.mse_loss(head(block(tc.tensor(x))), tc.tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert block.stats.nfe_forward > 0 and block.stats.nfe_backward > 0
    assert all(p.grad is not None for p in block.parameters())
    with pytest.raises(ValueError, match="method"):
        tc.nn.ODEBlock(tc.models.SpiralDynamics(), method="bogus")


def test_odenet_shapes_and_parameter_budget():
    m = tc.models.ODENet(rng=np.random.default_rng(0), method="rk4", step_size=0.5)
    out = m(tc.tensor(np.zeros((2, 1, 28, 28), np.float32)))
    assert out.shape == (2, 10)
    assert m.num_parameters() <= 250_000


def test_backward_nfe_on_the_demo_is_at_most_the_forward():
    # ode-spiral's setting (20 windows of 10 outputs, Δt = 0.025, rtol 1e-5, atol 1e-7, the
    # demo's MLP at initialisation): both solves take one step per output interval. Forward:
    # f(t₀) + the initial-step probe + 9 × 6 stages (FSAL). Backward: the adjoint a jumps by
    # ∂L/∂y(tᵢ) at each output time, so every interval starts with a fresh first stage; that
    # stage is the reverse pass of the graph of f the forward kept at tᵢ (no evaluation of f),
    # and the first step size is the forward's last: 9 × 6. docs/math/ode.md, "Backward NFE
    # against forward NFE".
    rng = np.random.default_rng(0)
    f = tc.models.SpiralDynamics(2, 50, rng=rng)
    for lin in (f.fc1, f.fc2):
        lin.weight.data[...] = rng.normal(0.0, 0.1, lin.weight.shape)
        lin.bias.data[...] = 0.0
    angle = rng.uniform(0, 2 * np.pi, 20)
    y0 = tc.tensor((np.stack([np.cos(angle), np.sin(angle)], 1) * 1.2).astype(np.float32))
    s = ODEStats()
    ys = tc.odeint(f, y0, np.arange(10) * 0.025, rtol=1e-5, atol=1e-7, adjoint=True, stats=s)
    tc.gradients(ys.sum(), list(f.parameters()))
    assert (s.steps_forward, s.steps_backward, s.rejected) == (9, 9, 0)
    assert s.nfe_forward == 1 + 1 + 9 * 6
    assert s.nfe_backward == 9 * 6 <= s.nfe_forward
    assert s.reused_backward == 9


def test_kept_output_graphs_survive_rejected_steps_and_time_dependence():
    # A time-dependent f with a sharp burst just before an output time: the controller rejects
    # a step landing on t = 0.5 and retries it; the graph kept at each output must be the
    # accepted step's (f sees a y that requires grad only in the kept evaluations).
    rng = np.random.default_rng(3)
    w = tc.tensor(rng.normal(size=(2, 2)), requires_grad=True)
    y0 = tc.tensor(rng.normal(size=(3, 2)), requires_grad=True)
    kept = []

    def f(t, y):
        if y.requires_grad:
            kept.append(t)
        return tc.tanh(y @ w) * float(1.0 + 30.0 * np.exp(-((t - 0.48) / 0.01) ** 2))

    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    grads = {}
    for adjoint in (False, True):
        s = ODEStats()
        kept.clear()
        ys = tc.odeint(f, y0, ts, rtol=1e-8, atol=1e-10, adjoint=adjoint, params=[w], stats=s)
        if adjoint:
            assert sorted(kept) == [0.25, 0.5, 0.5, 0.75, 1.0]  # the landing on 0.5 retried
        grads[adjoint] = [g.data for g in tc.gradients((ys ** 2).sum(), [y0, w])]
    assert s.reused_backward == len(ts) - 1
    for a, b in zip(grads[False], grads[True], strict=True):
        assert np.linalg.norm(a - b) <= 1e-6 * np.linalg.norm(a)
    kept.clear()
    with tc.no_grad():  # no backward can follow: nothing is recorded or kept
        tc.odeint(f, y0, ts, rtol=1e-8, atol=1e-10, adjoint=True, params=[w])
    assert kept == []
