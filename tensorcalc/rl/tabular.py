"""Tabular temporal-difference control: Q-learning and SARSA with ε-greedy exploration.

Both learn Q(s, a) from sampled transitions (s, a, r, s′) with a step size α:

    Q-learning (off-policy):  Q(s,a) ← Q(s,a) + α [r + γ max_a′ Q(s′,a′) − Q(s,a)]
    SARSA (on-policy):        Q(s,a) ← Q(s,a) + α [r + γ Q(s′,a′) − Q(s,a)],  a′ ~ ε-greedy

with the bootstrap term dropped at a terminal s′ (a time-limit truncation keeps it: the
state is not terminal, the episode was only cut). Q-learning converges to Q* when every pair is
visited infinitely often and Σα = ∞, Σα² < ∞ (Watkins & Dayan 1992): the per-pair step size
α_n = α₀ / (1 + n(s,a))^ω with ½ < ω ≤ 1 satisfies both; ω = 0 is the usual constant α.

Results are judged against the exact optimum of :mod:`tensorcalc.rl.mdp` (the greedy policy's
exact expected return / success rate) and by greedy episodes in the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import as_rng
from .schedules import ExponentialSchedule, LinearSchedule, as_schedule

__all__ = ["q_learning", "sarsa", "TabularResult", "epsilon_greedy", "run_episodes",
           "LinearSchedule", "ExponentialSchedule"]


@dataclass
class TabularResult:
    """Learned ``q`` (S, A), its greedy ``policy``, and per training episode the return,
    the length and ε."""

    q: np.ndarray
    policy: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    epsilons: np.ndarray
    method: str = ""
    extra: dict = field(default_factory=dict)


def epsilon_greedy(q_row: np.ndarray, eps: float, rng: np.random.Generator) -> int:
    """A uniformly random action with probability ε, else argmax_a Q(s, a) (ties broken at
    random, so an all-zero table does not always pick action 0)."""
    if rng.random() < eps:
        return int(rng.integers(len(q_row)))
    best = np.flatnonzero(q_row == q_row.max())
    return int(best[0] if len(best) == 1 else best[rng.integers(len(best))])


def _td_control(env, episodes: int, *, on_policy: bool, gamma: float, alpha: float,
                alpha_power: float, epsilon, seed, q0, max_steps: int | None,
                progress=None) -> TabularResult:
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = as_rng(seed)
    S, A = int(env.observation_space.n), int(env.action_space.n)
    q = np.zeros((S, A)) if q0 is None else np.array(q0, dtype=np.float64)
    visits = np.zeros((S, A))
    eps_of = as_schedule(epsilon)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    epsilons = np.zeros(episodes)
    env_seed = int(rng.integers(2**31))
    for ep in range(episodes):
        eps = eps_of(ep)
        epsilons[ep] = eps
        s, _ = env.reset(seed=env_seed if ep == 0 else None)
        a = epsilon_greedy(q[s], eps, rng)
        total, t = 0.0, 0
        while True:
            s2, r, terminated, truncated, _ = env.step(a)
            total += r
            t += 1
            a2 = epsilon_greedy(q[s2], eps, rng)
            if terminated:
                target = r
            elif on_policy:
                target = r + gamma * q[s2, a2]
            else:
                target = r + gamma * q[s2].max()
            visits[s, a] += 1
            step = alpha / visits[s, a] ** alpha_power if alpha_power else alpha
            q[s, a] += step * (target - q[s, a])
            if terminated or truncated or (max_steps and t >= max_steps):
                break
            s, a = s2, a2
        returns[ep], lengths[ep] = total, t
        if progress is not None:
            progress(ep + 1, total)
    pol = q.argmax(axis=1)
    return TabularResult(q, pol, returns, lengths, epsilons,
                         "SARSA" if on_policy else "Q-learning", {"visits": visits})


def q_learning(env, episodes: int, *, gamma: float = 0.99, alpha: float = 0.1,
               alpha_power: float = 0.0, epsilon=None, seed=0, q0=None,
               max_steps: int | None = None, progress=None) -> TabularResult:
    """Q-learning for ``episodes`` episodes of a gymnasium environment with discrete
    observations (FrozenLake, Taxi). ``epsilon``: a number or schedule of the episode index
    (default linear 1 → 0.05 over half the episodes); ``alpha_power`` ω > 0 gives the per-pair
    step size α/n(s,a)^ω; ``seed`` drives exploration and the environment's first reset;
    ``progress(episode, return)`` is called after each episode."""
    if epsilon is None:
        epsilon = LinearSchedule(1.0, 0.05, episodes / 2)
    return _td_control(env, episodes, on_policy=False, gamma=gamma, alpha=alpha,
                       alpha_power=alpha_power, epsilon=epsilon, seed=seed, q0=q0,
                       max_steps=max_steps, progress=progress)


def sarsa(env, episodes: int, *, gamma: float = 0.99, alpha: float = 0.1,
          alpha_power: float = 0.0, epsilon=None, seed=0, q0=None,
          max_steps: int | None = None, progress=None) -> TabularResult:
    """SARSA (on-policy TD control); arguments as :func:`q_learning`."""
    if epsilon is None:
        epsilon = LinearSchedule(1.0, 0.05, episodes / 2)
    return _td_control(env, episodes, on_policy=True, gamma=gamma, alpha=alpha,
                       alpha_power=alpha_power, epsilon=epsilon, seed=seed, q0=q0,
                       max_steps=max_steps, progress=progress)


def run_episodes(env, policy, episodes: int, seed=0) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes following ``policy`` (an action per
    state, or a function of the observation), the environment seeded once with ``seed``."""
    act = policy if callable(policy) else (lambda s, p=np.asarray(policy): int(p[s]))
    out = np.zeros(episodes)
    for ep in range(episodes):
        s, _ = env.reset(seed=int(seed) if ep == 0 else None)
        total = 0.0
        while True:
            s, r, terminated, truncated, _ = env.step(act(s))
            total += r
            if terminated or truncated:
                break
        out[ep] = total
    return out
