"""Finite Markov decision processes solved exactly.

A finite MDP is (S, A, P, R, γ): states s ∈ {0..S−1}, actions a ∈ {0..A−1}, transition
probabilities P[s, a, s′] = Pr(s′ | s, a), expected rewards R[s, a] = E[r | s, a] and a discount
γ ∈ [0, 1). For a policy π (deterministic: an action per state; stochastic: π[s, a])

    P_π[s, s′] = Σ_a π(a|s) P[s, a, s′],      r_π[s] = Σ_a π(a|s) R[s, a]

and its value v_π = r_π + γ P_π v_π (the Bellman expectation equation) is one linear solve,

    v_π = (I − γ P_π)⁻¹ r_π .

The optimal values satisfy the Bellman optimality equations

    v*(s) = max_a [R(s, a) + γ Σ_s′ P(s, a, s′) v*(s′)],     Q*(s, a) = R(s, a) + γ P v*,

whose right-hand side T is a γ-contraction in the sup norm: value iteration v ← T v converges
geometrically from any start; policy iteration (evaluate exactly, act greedily) reaches the
optimal policy in finitely many improvements. The greedy policy of Q* is optimal.

Episodic environments (gymnasium's toy text) end on a terminal transition; :meth:`MDP.from_gym`
sends every terminal transition to one absorbing state (index ``S``: P = 1 to itself, R = 0), so
the value of what follows the end is exactly 0 and the usual equations hold unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MDP", "Solution", "value_iteration", "policy_iteration", "q_value_iteration",
           "policy_evaluation", "iterative_policy_evaluation", "greedy_policy",
           "plot_grid_values"]


class MDP:
    """A finite MDP (P, R, γ) with an optional initial distribution ``mu0``.

    Args:
        P: (S, A, S) transition probabilities; each P[s, a, :] sums to 1.
        R: (S, A) expected immediate rewards (or (S, A, S) rewards r(s, a, s′), averaged
            under P).
        gamma: the discount γ ∈ [0, 1).
        mu0: (S,) initial-state distribution (default: uniform over the non-absorbing states).
        absorbing: index of the absorbing end state added by :meth:`from_gym`, or None.
        desc: the grid (a 2-D array of characters) of a grid world, for plots.
    """

    def __init__(self, P, R, gamma: float, mu0=None, absorbing: int | None = None,
                 desc=None, name: str = "", success=None):
        P = np.asarray(P, dtype=np.float64)
        R = np.asarray(R, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"MDP: P must have shape (S, A, S), got {P.shape}")
        S, A, _ = P.shape
        if R.shape == (S, A, S):
            R = (P * R).sum(axis=2)
        if R.shape != (S, A):
            raise ValueError(f"MDP: R must have shape (S, A) = {(S, A)} or (S, A, S), got "
                             f"{R.shape}")
        if not np.allclose(P.sum(axis=2), 1.0, atol=1e-9) or (P < 0).any():
            raise ValueError("MDP: every P[s, a, :] must be a probability vector")
        if not 0 <= gamma < 1:
            raise ValueError(f"MDP: gamma must be in [0, 1), got {gamma}")
        self.P, self.R, self.gamma = P, R, float(gamma)
        self.absorbing = absorbing
        if mu0 is None:
            mu0 = np.ones(S)
            if absorbing is not None:
                mu0[absorbing] = 0
            mu0 /= mu0.sum()
        self.mu0 = np.asarray(mu0, dtype=np.float64)
        self.desc = desc
        self.name = name
        #: (S, A) probability that taking a in s ends the episode with a positive reward
        #: (reaching the goal); None when unknown
        self.success = None if success is None else np.asarray(success, dtype=np.float64)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    @classmethod
    def from_gym(cls, env, gamma: float = 0.99) -> MDP:
        """The MDP of a gymnasium toy-text environment (FrozenLake, Taxi, CliffWalking) from
        its table ``env.unwrapped.P[s][a] = [(p, s′, r, terminated), ...]``. Terminal
        transitions lead to an absorbing state appended at index S."""
        u = getattr(env, "unwrapped", env)
        table = u.P
        S = len(table)
        A = len(table[0])
        P = np.zeros((S + 1, A, S + 1))
        R = np.zeros((S + 1, A))
        win = np.zeros((S + 1, A))
        for s in range(S):
            for a in range(A):
                for p, s2, r, done in table[s][a]:
                    P[s, a, S if done else s2] += p
                    R[s, a] += p * r
                    if done and r > 0:
                        win[s, a] += p
        P[S, :, S] = 1.0
        mu0 = np.zeros(S + 1)
        isd = getattr(u, "initial_state_distrib", None)
        if isd is None:
            isd = getattr(u, "isd", None)
        if isd is not None:
            mu0[:S] = np.asarray(isd, dtype=np.float64)
        else:
            mu0[:S] = 1.0 / S
        mu0 /= mu0.sum()
        desc = getattr(u, "desc", None)
        name = getattr(getattr(env, "spec", None), "id", "") or type(u).__name__
        return cls(P, R, gamma, mu0=mu0, absorbing=S, desc=desc, name=name, success=win)

    # ------------------------------------------------------------------ policies
    def policy_matrix(self, policy) -> np.ndarray:
        """π as an (S, A) matrix of probabilities (from an action per state, or as given)."""
        pi = np.asarray(policy)
        if pi.ndim == 1:
            if pi.shape[0] != self.n_states:
                raise ValueError(f"policy: one action per state ({self.n_states}), got "
                                 f"{pi.shape[0]}")
            out = np.zeros((self.n_states, self.n_actions))
            out[np.arange(self.n_states), pi.astype(np.int64)] = 1.0
            return out
        if pi.shape != (self.n_states, self.n_actions):
            raise ValueError(f"policy: expected (S,) actions or (S, A) = "
                             f"{(self.n_states, self.n_actions)} probabilities, got {pi.shape}")
        return pi.astype(np.float64)

    def induced(self, policy) -> tuple[np.ndarray, np.ndarray]:
        """(P_π, r_π): the Markov chain and reward vector a policy induces."""
        pi = self.policy_matrix(policy)
        return np.einsum("sa,sat->st", pi, self.P), (pi * self.R).sum(axis=1)

    def q_from_v(self, v) -> np.ndarray:
        """Q(s, a) = R(s, a) + γ Σ_s′ P(s, a, s′) v(s′)."""
        return self.R + self.gamma * (self.P @ v)

    def bellman_optimality(self, v) -> np.ndarray:
        """(T v)(s) = max_a Q(s, a)."""
        return self.q_from_v(v).max(axis=1)

    def bellman_residual(self, v, policy=None) -> float:
        """‖T v − v‖∞ (optimality operator), or ‖T_π v − v‖∞ for a given policy."""
        v = np.asarray(v, dtype=np.float64)
        if policy is None:
            return float(np.abs(self.bellman_optimality(v) - v).max())
        P_pi, r_pi = self.induced(policy)
        return float(np.abs(r_pi + self.gamma * P_pi @ v - v).max())

    # ------------------------------------------------------------------ episodic figures
    def expected_return(self, policy, horizon: int, mu0=None, rewards=None) -> float:
        """The exact expected *undiscounted* return of ``policy`` over episodes cut at
        ``horizon`` steps (gymnasium's time limit), from ``mu0`` (default the MDP's):
        v₀ = 0, v_k = r_π + P_π v_{k−1}, return μ₀ᵀ v_H (``rewards``: another (S, A) table)."""
        P_pi, r_pi = self.induced(policy)
        if rewards is not None:
            r_pi = (self.policy_matrix(policy) * rewards).sum(axis=1)
        v = np.zeros(self.n_states)
        for _ in range(int(horizon)):
            v = r_pi + P_pi @ v
        return float((self.mu0 if mu0 is None else mu0) @ v)

    def success_rate(self, policy, horizon: int) -> float:
        """Probability that an episode of ``policy`` ends with a positive reward (reaches
        FrozenLake's goal) within ``horizon`` steps — exact, by the same recursion."""
        if self.success is None:
            raise ValueError("success_rate: this MDP does not know its goal transitions "
                             "(build it with MDP.from_gym)")
        return self.expected_return(policy, horizon, rewards=self.success)


@dataclass
class Solution:
    """The result of a solver: values ``v`` (S,), action values ``q`` (S, A), a greedy
    ``policy`` (S,), the number of ``iterations`` and the sup-norm change per iteration."""

    v: np.ndarray
    q: np.ndarray
    policy: np.ndarray
    iterations: int
    history: list = field(default_factory=list)
    method: str = ""


def greedy_policy(q, tol: float = 1e-12, previous=None) -> np.ndarray:
    """argmax_a Q(s, a) per state; ties (within ``tol``) keep ``previous``'s action when given,
    else the first maximiser (so policy iteration cannot cycle between tied actions)."""
    q = np.asarray(q)
    best = q.argmax(axis=1)
    if previous is not None:
        prev = np.asarray(previous)
        keep = q[np.arange(len(q)), prev] >= q[np.arange(len(q)), best] - tol
        best = np.where(keep, prev, best)
    return best


def policy_evaluation(mdp: MDP, policy) -> np.ndarray:
    """v_π = (I − γ P_π)⁻¹ r_π by one linear solve (LU; I − γP_π is nonsingular for γ < 1)."""
    P_pi, r_pi = mdp.induced(policy)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P_pi, r_pi)


def iterative_policy_evaluation(mdp: MDP, policy, tol: float = 1e-12,
                                max_iter: int = 1_000_000) -> tuple[np.ndarray, int]:
    """v ← r_π + γ P_π v from v = 0 until the change is ≤ ``tol``: (v, iterations)."""
    P_pi, r_pi = mdp.induced(policy)
    v = np.zeros(mdp.n_states)
    for k in range(1, max_iter + 1):
        nv = r_pi + mdp.gamma * P_pi @ v
        if np.abs(nv - v).max() <= tol:
            return nv, k
        v = nv
    raise RuntimeError(f"iterative_policy_evaluation: no convergence in {max_iter} iterations")


def value_iteration(mdp: MDP, tol: float = 1e-10, max_iter: int = 1_000_000,
                    v0=None) -> Solution:
    """v ← T v until ‖v_{k+1} − v_k‖∞ ≤ ``tol`` (then ‖T v − v‖∞ ≤ γ·tol)."""
    v = np.zeros(mdp.n_states) if v0 is None else np.asarray(v0, dtype=np.float64).copy()
    hist = []
    for k in range(1, max_iter + 1):
        nv = mdp.bellman_optimality(v)
        delta = float(np.abs(nv - v).max())
        hist.append(delta)
        v = nv
        if delta <= tol:
            q = mdp.q_from_v(v)
            return Solution(v, q, greedy_policy(q), k, hist, "value iteration")
    raise RuntimeError(f"value_iteration: no convergence in {max_iter} iterations")


def q_value_iteration(mdp: MDP, tol: float = 1e-10, max_iter: int = 1_000_000) -> Solution:
    """Q ← R + γ P max_a′ Q(·, a′) until the change is ≤ ``tol``."""
    q = np.zeros((mdp.n_states, mdp.n_actions))
    hist = []
    for k in range(1, max_iter + 1):
        nq = mdp.R + mdp.gamma * (mdp.P @ q.max(axis=1))
        delta = float(np.abs(nq - q).max())
        hist.append(delta)
        q = nq
        if delta <= tol:
            return Solution(q.max(axis=1), q, greedy_policy(q), k, hist, "Q-value iteration")
    raise RuntimeError(f"q_value_iteration: no convergence in {max_iter} iterations")


def policy_iteration(mdp: MDP, policy0=None, max_iter: int = 10_000) -> Solution:
    """Evaluate π exactly (:func:`policy_evaluation`), improve it greedily, until it is
    stable. ``iterations`` counts evaluations (the last one confirms stability)."""
    pi = np.zeros(mdp.n_states, dtype=np.int64) if policy0 is None else np.asarray(policy0)
    hist = []
    for k in range(1, max_iter + 1):
        v = policy_evaluation(mdp, pi)
        q = mdp.q_from_v(v)
        new = greedy_policy(q, tol=1e-10, previous=pi)
        changed = int((new != pi).sum())
        hist.append(changed)
        if changed == 0:
            return Solution(v, q, pi, k, hist, "policy iteration")
        pi = new
    raise RuntimeError(f"policy_iteration: no convergence in {max_iter} iterations")


# ---------------------------------------------------------------------- figures
_ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # FrozenLake: left, down, right, up


def plot_grid_values(mdp: MDP, v, policy, path: str, title: str = "",
                     arrows: dict | None = None) -> str:
    """A grid world's value function as a heat map, with the policy as arrows and the tiles'
    letters (S start, F frozen, H hole, G goal); ``arrows[a] = (dx, dy)`` in grid units (default
    FrozenLake's action order: left, down, right, up)."""
    from ..train.report import new_figure, save_figure

    if mdp.desc is None:
        raise ValueError("plot_grid_values: the MDP has no grid (desc)")
    desc = np.asarray(mdp.desc).astype(str)
    rows, cols = desc.shape
    n = rows * cols
    grid = np.asarray(v)[:n].reshape(rows, cols)
    arrows = arrows or _ARROWS
    size = max(3.2, 0.55 * cols + 1.6)
    fig = new_figure(size + 0.8, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="v(s)")
    for r in range(rows):
        for c in range(cols):
            s = r * cols + c
            ch = desc[r, c]
            if ch in "HG":
                ax.text(c, r, ch, ha="center", va="center", fontsize=11, weight="bold",
                        color="white" if ch == "H" else "black")
                continue
            dx, dy = arrows[int(policy[s])]
            ax.annotate("", xy=(c + 0.32 * dx, r + 0.32 * dy),
                        xytext=(c - 0.32 * dx, r - 0.32 * dy),
                        arrowprops=dict(arrowstyle="->", color="white", lw=1.6))
            if ch == "S":
                ax.text(c - 0.38, r - 0.3, "S", fontsize=8, color="white")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{mdp.name}: optimal values and policy")
    return save_figure(fig, path)
