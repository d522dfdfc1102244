"""Reinforcement learning: Markov decision processes solved exactly, tabular TD control, DQN.

* :mod:`~tensorcalc.rl.mdp` — a finite MDP (P, R, γ) from arrays or a gymnasium toy-text
  table; policy evaluation as one linear solve, value / policy / Q-value iteration, the greedy
  policy, exact episodic returns, value-and-policy plots of grid worlds.
* :mod:`~tensorcalc.rl.tabular` — Q-learning and SARSA with ε-greedy schedules.
* :mod:`~tensorcalc.rl.buffers` — the replay buffer (arrays; seeded sampling; checkpointed).
* :mod:`~tensorcalc.rl.dqn` — :class:`DQNStep` (DQN, Double DQN, dueling heads via
  :class:`tensorcalc.models.dqn.QNetwork`, hard or Polyak target updates) on the Loop, and
  greedy evaluation.

Environments come from ``gymnasium`` (``pip install 'tensorcalc[rl]'``); this package imports
it only where an environment is made.
"""

from . import buffers, mdp, schedules, tabular  # noqa: F401
from .buffers import ReplayBuffer  # noqa: F401
from .mdp import (  # noqa: F401
    MDP,
    Solution,
    greedy_policy,
    iterative_policy_evaluation,
    policy_evaluation,
    policy_iteration,
    q_value_iteration,
    value_iteration,
)
from .schedules import ConstantSchedule, ExponentialSchedule, LinearSchedule  # noqa: F401
from .tabular import q_learning, run_episodes, sarsa  # noqa: F401


def make_env(env_id: str, **kwargs):
    """``gymnasium.make(env_id)``, or a message saying how to install gymnasium."""
    try:
        import gymnasium
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("reinforcement learning needs gymnasium: pip install "
                          "'tensorcalc[rl]' (or pip install gymnasium)") from None
    return gymnasium.make(env_id, **kwargs)


def __getattr__(name):  # DQN pulls in the training stack: load it on first use
    if name in ("dqn", "DQNStep", "EvalEpisodes", "evaluate_policy"):
        import importlib

        dqn = importlib.import_module(f"{__name__}.dqn")
        return dqn if name == "dqn" else getattr(dqn, name)
    raise AttributeError(f"module 'tensorcalc.rl' has no attribute {name!r}")
