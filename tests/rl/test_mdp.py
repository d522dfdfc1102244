"""Finite MDPs solved exactly: Bellman residuals, linear-solve vs iterative evaluation, value
vs policy vs Q-value iteration, and the optimum of FrozenLake and Taxi."""

import warnings

import numpy as np
import pytest

from tensorcalc.rl.mdp import (
    MDP,
    iterative_policy_evaluation,
    plot_grid_values,
    policy_evaluation,
    policy_iteration,
    q_value_iteration,
    value_iteration,
)

gym = pytest.importorskip("gymnasium")
warnings.filterwarnings("ignore", category=DeprecationWarning)


def random_mdp(S=12, A=3, gamma=0.9, seed=0):
    rng = np.random.default_rng(seed)
    P = rng.random((S, A, S)) ** 3
    P /= P.sum(axis=2, keepdims=True)
    return MDP(P, rng.normal(size=(S, A)), gamma)


@pytest.fixture(scope="module")
def lakes():
    return {n: MDP.from_gym(gym.make(n), 0.99) for n in ("FrozenLake-v1", "FrozenLake8x8-v1",
                                                          "Taxi-v4")}


def test_bellman_residuals_of_every_solver(lakes):
    for m in [random_mdp(), random_mdp(gamma=0.99, seed=1), *lakes.values()]:
        for sol in (value_iteration(m), policy_iteration(m), q_value_iteration(m)):
            assert m.bellman_residual(sol.v) <= 1e-8, (m.name, sol.method)
            np.testing.assert_allclose(sol.q.max(axis=1), sol.v, atol=1e-8)


def test_linear_solve_equals_iterative_evaluation():
    m = random_mdp(gamma=0.95)
    rng = np.random.default_rng(3)
    det = rng.integers(0, m.n_actions, m.n_states)
    stoch = rng.random((m.n_states, m.n_actions))
    stoch /= stoch.sum(axis=1, keepdims=True)
    for pi in (det, stoch):
        v = policy_evaluation(m, pi)
        vi, k = iterative_policy_evaluation(m, pi, tol=1e-13)
        np.testing.assert_allclose(v, vi, atol=1e-10)
        assert k > 10 and m.bellman_residual(v, pi) <= 1e-10
        # the Bellman expectation equation itself: v = r_π + γ P_π v
        P_pi, r_pi = m.induced(pi)
        np.testing.assert_allclose(v, r_pi + m.gamma * P_pi @ v, atol=1e-12)


def test_value_and_policy_iteration_agree(lakes):
    for m in [random_mdp(seed=5), *lakes.values()]:
        vi, pi = value_iteration(m), policy_iteration(m)
        np.testing.assert_allclose(vi.v, pi.v, atol=1e-7)
        # policies may differ only between tied actions: each is optimal
        np.testing.assert_allclose(policy_evaluation(m, vi.policy), pi.v, atol=1e-7)


def test_optimum_of_frozenlake_and_taxi(lakes):
    fl4, fl8, taxi = lakes["FrozenLake-v1"], lakes["FrozenLake8x8-v1"], lakes["Taxi-v4"]
    p4, p8, pt = policy_iteration(fl4), policy_iteration(fl8), policy_iteration(taxi)
    assert p4.iterations == 7
    assert fl4.success_rate(p4.policy, 100) == pytest.approx(0.740, abs=1e-3)
    assert fl8.success_rate(p8.policy, 200) == pytest.approx(0.863, abs=1e-3)
    vt = value_iteration(taxi)
    assert (vt.iterations, pt.iterations) == (19, 17)
    assert taxi.expected_return(pt.policy, 200) == pytest.approx(7.93, abs=1e-6)
    # a worse policy scores lower by the same exact evaluation
    assert fl4.success_rate(np.zeros(fl4.n_states, int), 100) < 0.1


def test_from_gym_table_is_a_proper_mdp(lakes):
    m = lakes["FrozenLake-v1"]
    assert m.P.shape == (17, 4, 17) and m.absorbing == 16
    np.testing.assert_allclose(m.P.sum(axis=2), 1.0)
    assert m.mu0[0] == 1.0  # FrozenLake starts at S
    assert m.R[14, 2] == pytest.approx(1 / 3)  # right of the goal's neighbour: ⅓ slips in


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="gamma"):
        MDP(np.ones((2, 1, 2)) / 2, np.zeros((2, 1)), 1.0)
    with pytest.raises(ValueError, match="probability"):
        MDP(np.ones((2, 1, 2)), np.zeros((2, 1)), 0.5)
    with pytest.raises(ValueError, match="R must"):
        MDP(np.ones((2, 1, 2)) / 2, np.zeros((3,)), 0.5)


def test_grid_plot(tmp_path, lakes):
    m = lakes["FrozenLake-v1"]
    sol = value_iteration(m)
    path = plot_grid_values(m, sol.v, sol.policy, str(tmp_path / "v.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_tc_rl_namespace_loads_dqn_on_first_use():
    import subprocess
    import sys

    code = ("import sys, tensorcalc as tc; assert 'tensorcalc.rl.dqn' not in sys.modules; "
            "assert tc.rl.DQNStep is tc.rl.dqn.DQNStep; print(tc.rl.MDP.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "MDP", out.stderr[-500:]
