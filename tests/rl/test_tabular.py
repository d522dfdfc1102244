"""Tabular Q-learning and SARSA judged against the exact optimum, schedules, and the replay
buffer's seeded, resumable sampling."""

import warnings

import numpy as np
import pytest

from tensorcalc.rl import ReplayBuffer
from tensorcalc.rl.mdp import MDP, value_iteration
from tensorcalc.rl.schedules import ExponentialSchedule, LinearSchedule
from tensorcalc.rl.tabular import q_learning, run_episodes, sarsa

gym = pytest.importorskip("gymnasium")
warnings.filterwarnings("ignore", category=DeprecationWarning)


def test_q_learning_and_sarsa_find_the_optimum_of_a_deterministic_lake():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    m = MDP.from_gym(env, 0.95)
    best = m.success_rate(value_iteration(m).policy, 100)
    assert best == 1.0
    for learn in (q_learning, sarsa):
        res = learn(env, 400, gamma=0.95, alpha=0.5, seed=0)
        pol = np.append(res.policy, 0)  # the absorbing state's action is irrelevant
        assert m.success_rate(pol, 100) == 1.0, res.method
        assert run_episodes(env, res.policy, 20, seed=1).mean() == 1.0
        assert res.epsilons[0] == 1.0 and res.epsilons[-1] < 0.1
        assert res.returns[-50:].mean() > res.returns[:50].mean()


def test_q_learning_converges_towards_q_star_on_the_slippery_lake():
    env = gym.make("FrozenLake-v1")
    m = MDP.from_gym(env, 0.99)
    opt = value_iteration(m)
    res = q_learning(env, 3000, gamma=0.99, alpha=0.2, seed=0)
    err0 = np.abs(opt.q[:16]).max()  # Q = 0 to start
    err = np.abs(res.q - opt.q[:16])[res.extra["visits"] > 100].max()
    assert err < 0.5 * err0
    assert m.success_rate(np.append(res.policy, 0), 100) > 0.5


def test_seeded_runs_repeat():
    env = gym.make("FrozenLake-v1")
    a = q_learning(env, 50, seed=4)
    b = q_learning(env, 50, seed=4)
    c = q_learning(env, 50, seed=5)
    assert np.array_equal(a.q, b.q) and not np.array_equal(a.q, c.q)


def test_schedules():
    s = LinearSchedule(1.0, 0.04, 8000)
    assert s(0) == 1.0 and s(4000) == pytest.approx(0.52) and s(8000) == s(10**6) == 0.04
    e = ExponentialSchedule(1.0, 0.01, 0.5)
    assert e(1) == pytest.approx(0.5) and e(100) == 0.01
    with pytest.raises(ValueError):
        q_learning(gym.make("FrozenLake-v1"), 0)


def test_replay_buffer_ring_sampling_and_resume():
    buf = ReplayBuffer(5, (2,))
    for i in range(7):
        buf.add([i, i], i % 2, float(i), [i + 1, i + 1], i == 6)
    assert len(buf) == 5 and buf.pos == 2
    assert sorted(buf.reward.tolist()) == [2, 3, 4, 5, 6]  # the two oldest were overwritten
    rng = np.random.default_rng(0)
    b = buf.sample(4, rng)
    assert b["obs"].shape == (4, 2) and b["action"].dtype == np.int64
    np.testing.assert_array_equal(b["next_obs"], b["obs"] + 1)
    assert set(b["terminated"][b["reward"] == 6]) <= {1.0}
    # a restored buffer and Generator draw the same batches
    state, gstate = buf.state_arrays(), rng.bit_generator.state
    first = [buf.sample(3, rng)["reward"] for _ in range(3)]
    other = ReplayBuffer(5, (2,))
    other.load_state_arrays(state)
    rng2 = np.random.default_rng(99)
    rng2.bit_generator.state = gstate
    assert all(np.array_equal(x, other.sample(3, rng2)["reward"]) for x in first)
    with pytest.raises(ValueError, match="holds 5"):
        ReplayBuffer(6, (2,)).load_state_arrays(state)
    part = ReplayBuffer(10, (2,))
    part.add([0, 0], 0, 1.0, [1, 1], False)
    assert part.state_arrays()["buffer.obs"].shape == (1, 2)  # only the filled part is saved
