"""DQN: Q-learning with a deep network, experience replay and a target network.

The Q-network Q_θ(s, ·) is fitted to the Bellman optimality target on minibatches of replayed
transitions (s, a, r, s′, d), d = 1 when s′ is terminal (Mnih et al. 2015):

    y = r + γ (1 − d) max_a′ Q_θ⁻(s′, a′)                          (DQN)
    y = r + γ (1 − d) Q_θ⁻(s′, argmax_a′ Q_θ(s′, a′))               (Double DQN, van Hasselt 2016)
    L(θ) = mean_i ℓ(Q_θ(sᵢ, aᵢ) − yᵢ),   ℓ = Huber (δ = 1) or ½-free squared error

y is a constant (no gradient flows into the target network θ⁻), which is refreshed from θ by a
hard copy every ``target_update`` environment steps or by Polyak averaging
θ⁻ ← τ θ + (1 − τ) θ⁻ after every update. Actions are ε-greedy with ε following a schedule
of the environment step (linear from 1 to ``final_eps`` over ``exploration_fraction`` of the
run, as rl-baselines3-zoo and CleanRL do).

:class:`DQNStep` is one *environment step* on the :class:`~tensorcalc.train.loop.Loop` (the
Loop counts ``steps=`` environment steps; the step trains ``gradient_steps`` times every
``train_freq`` steps once ``learning_starts`` transitions are stored). It owns the Q-network,
the target network, the optimiser and a Generator (exploration and replay sampling); a
checkpoint adds the replay buffer, the environment's state (its physics state, time-limit
counter and random generator) and the running episode — so a run killed anywhere, even
mid-episode, and resumed from its last checkpoint ends bit-identical to one never interrupted.

Evaluation (``Loop(val_data=EvalEpisodes(10))``) plays greedy episodes (ε = 0) on fresh copies
of the environment seeded ``eval_seed, eval_seed + 1, ...``: the figures are ``return`` (the
mean undiscounted return), ``return_std``, ``return_min`` and ``length`` — reported apart from
the ε-greedy training-episode returns (``train_return``), as RL papers do.
"""

from __future__ import annotations

import numpy as np

from ..autodiff.mode import no_grad
from ..backend import as_rng
from ..functional import mse_loss, smooth_l1_loss
from ..optim import clip_grad_norm_
from ..tensor import Tensor
from ..train.steps import Step
from .buffers import ReplayBuffer
from .schedules import LinearSchedule

__all__ = ["DQNStep", "EvalEpisodes", "evaluate_policy", "env_state", "set_env_state",
           "hard_update", "soft_update", "greedy_actions", "moving_average"]


class EvalEpisodes:
    """What a DQN evaluation plays: ``episodes`` greedy episodes, seeded ``seed + i``."""

    def __init__(self, episodes: int = 10, seed: int = 10_000):
        if episodes < 1:
            raise ValueError(f"EvalEpisodes: episodes must be >= 1, got {episodes}")
        self.episodes, self.seed = int(episodes), int(seed)


def hard_update(target, source) -> None:
    """θ⁻ ← θ (in place, parameter by parameter)."""
    for pt, p in zip(target.parameters(), source.parameters(), strict=True):
        np.copyto(pt.data, p.data)


def soft_update(target, source, tau: float) -> None:
    """Polyak averaging θ⁻ ← τ θ + (1 − τ) θ⁻."""
    for pt, p in zip(target.parameters(), source.parameters(), strict=True):
        pt.data *= 1.0 - tau
        pt.data += tau * p.data


def greedy_actions(q_net, obs) -> np.ndarray:
    """argmax_a Q(s, a) for a batch of observations (no graph)."""
    with no_grad():
        return q_net(Tensor(np.asarray(obs, dtype=np.float32))).data.argmax(axis=1)


def evaluate_policy(q_net, make_env, episodes: int = 10, seed: int = 10_000,
                    record: int | None = None) -> dict:
    """Play ``episodes`` greedy episodes in lockstep (one batched forward per time step) on
    environments from ``make_env()`` reset with seeds ``seed + i``. Returns ``returns`` and
    ``lengths`` arrays (and with ``record=i`` the observations of episode i, (T+1, obs_dim))."""
    envs = [make_env() for _ in range(episodes)]
    obs = np.stack([np.asarray(e.reset(seed=seed + i)[0], dtype=np.float32)
                    for i, e in enumerate(envs)])
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    alive = np.ones(episodes, dtype=bool)
    trace = [obs[record].copy()] if record is not None else None
    was = q_net.training
    q_net.eval()
    try:
        while alive.any():
            idx = np.flatnonzero(alive)
            acts = greedy_actions(q_net, obs[idx])
            for j, i in enumerate(idx):
                o, r, term, trunc, _ = envs[i].step(int(acts[j]))
                obs[i] = o
                returns[i] += r
                lengths[i] += 1
                if term or trunc:
                    alive[i] = False
            if record is not None and record in idx:
                trace.append(obs[record].copy())
    finally:
        q_net.train(was)
        for e in envs:
            e.close()
    out = {"returns": returns, "lengths": lengths}
    if record is not None:
        out["trajectory"] = np.stack(trace)
    return out


# ---------------------------------------------------------------------- environment state
def _wrappers(env):
    e = env
    while e is not None:
        yield e
        e = getattr(e, "env", None)


def env_state(env) -> tuple[dict, dict]:
    """(arrays, meta) holding what a gymnasium environment needs to continue exactly: the
    unwrapped env's ``state`` array (classic control) or ``s``/``lastaction`` (toy text),
    ``steps_beyond_terminated``, its ``np_random`` state, and every wrapper's time-limit
    counter."""
    u = env.unwrapped
    arrays, meta = {}, {}
    if getattr(u, "state", None) is not None:
        arrays["state"] = np.array(u.state, dtype=np.float64)
    for k in ("s", "lastaction", "steps_beyond_terminated"):
        if hasattr(u, k):
            v = getattr(u, k)
            meta[k] = None if v is None else int(v)
    meta["np_random"] = u.np_random.bit_generator.state
    meta["elapsed"] = [getattr(w, "_elapsed_steps", None) for w in _wrappers(env)]
    return arrays, meta


def set_env_state(env, arrays: dict, meta: dict) -> None:
    """Restore :func:`env_state` into an environment of the same kind (already reset once)."""
    u = env.unwrapped
    if "state" in arrays:
        old = getattr(u, "state", None)
        st = np.array(arrays["state"], dtype=np.float64)
        u.state = tuple(st.tolist()) if isinstance(old, tuple) else st
    for k in ("s", "lastaction", "steps_beyond_terminated"):
        if k in meta:
            setattr(u, k, meta[k])
    u.np_random.bit_generator.state = meta["np_random"]
    for w, n in zip(_wrappers(env), meta.get("elapsed") or [], strict=False):
        if n is not None:
            w._elapsed_steps = n


# ---------------------------------------------------------------------- the step
class DQNStep(Step):
    """One environment step of DQN, with replay, target network and ε-greedy exploration
    (module docstring). Give ``make_env`` (a function returning a fresh gymnasium
    environment), the Q-network and a second network of the same architecture for the target
    (its weights are overwritten with the Q-network's at the start).

    Args:
        make_env: ``() -> gymnasium.Env`` (training uses one, evaluation fresh ones).
        q_net: the online network (observations (N, obs_dim) → Q-values (N, |A|)).
        target_net: a network of the same architecture (its weights are overwritten).
        optimizer: over ``q_net.parameters()``.
        total_steps: the run's length in environment steps (sets the ε schedule).
        buffer_size, batch_size, gamma, learning_starts, train_freq, gradient_steps: as in
            rl-baselines3-zoo / Stable-Baselines3.
        target_update: hard-copy θ⁻ ← θ every this many environment steps (when ``tau`` = 1).
        tau: Polyak coefficient; < 1 averages after every gradient step instead.
        exploration_fraction, initial_eps, final_eps: ε falls linearly from ``initial_eps`` to
            ``final_eps`` over ``exploration_fraction · total_steps`` steps.
        loss: "huber" (smooth L1, δ = 1) or "mse".
        max_grad_norm: clip the gradient's global norm (None: no clipping).
        double: Double DQN targets.
        seed: seeds the Generator (exploration, replay) and the environment's first reset.
    """

    guarded = ("loss",)

    def __init__(self, make_env, q_net, target_net, optimizer, *, total_steps: int,
                 buffer_size: int = 100_000, batch_size: int = 64, gamma: float = 0.99,
                 learning_starts: int = 1000, train_freq: int = 4, gradient_steps: int = 1,
                 target_update: int = 1000, tau: float = 1.0,
                 exploration_fraction: float = 0.1, initial_eps: float = 1.0,
                 final_eps: float = 0.05, loss: str = "huber",
                 max_grad_norm: float | None = 10.0, double: bool = False, seed: int = 0,
                 scheduler=None):
        super().__init__()
        if loss not in ("huber", "mse"):
            raise ValueError(f"DQNStep: loss must be 'huber' or 'mse', got {loss!r}")
        for k, v in (("batch_size", batch_size), ("train_freq", train_freq),
                     ("gradient_steps", gradient_steps), ("target_update", target_update),
                     ("buffer_size", buffer_size), ("total_steps", total_steps)):
            if int(v) != v or v < 1:
                raise ValueError(f"DQNStep: {k} must be an integer >= 1, got {v!r}")
        if not 0 < tau <= 1:
            raise ValueError(f"DQNStep: tau must be in (0, 1], got {tau}")
        if not 0 <= gamma <= 1:
            raise ValueError(f"DQNStep: gamma must be in [0, 1], got {gamma}")
        self.make_env = make_env
        self.env = make_env()
        space = self.env.observation_space
        if not hasattr(self.env.action_space, "n"):
            raise ValueError("DQNStep: DQN needs a discrete action space, got "
                             f"{self.env.action_space}")
        self.n_actions = int(self.env.action_space.n)
        self.q_net, self.target_net, self.optimizer = q_net, target_net, optimizer
        self.modules = {"q_net": q_net, "target_net": target_net}
        self.optimizers = {"optimizer": optimizer}
        self.schedules = {"scheduler": scheduler} if scheduler is not None else {}
        self.rng = as_rng(seed)
        self.seed = int(seed)
        self.buffer = ReplayBuffer(buffer_size, space.shape)
        self.batch_size, self.gamma = int(batch_size), float(gamma)
        self.learning_starts, self.train_freq = int(learning_starts), int(train_freq)
        self.gradient_steps, self.target_update, self.tau = (int(gradient_steps),
                                                             int(target_update), float(tau))
        self.epsilon = LinearSchedule(initial_eps, final_eps,
                                      exploration_fraction * total_steps)
        self.loss_fn = smooth_l1_loss if loss == "huber" else mse_loss
        self.max_grad_norm = max_grad_norm
        self.double = bool(double)
        self._eye = np.eye(self.n_actions, dtype=np.float32)
        hard_update(target_net, q_net)
        self.t = 0                      # environment steps taken
        self.updates = 0                # gradient steps taken
        obs, _ = self.env.reset(seed=self.seed)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.ep_return, self.ep_length = 0.0, 0
        self.episodes: list = []        # (env step at the end, return, length) per episode
        self._period = self._new_period()

    @property
    def rngs(self) -> dict:
        return {"step": self.rng}

    @staticmethod
    def _new_period() -> dict:
        return {"loss": 0.0, "updates": 0, "returns": [], "lengths": [], "q": 0.0}

    # ---------------------------------------------------------------- one environment step
    def act(self, obs) -> int:
        """ε-greedy action at the current step."""
        if self.rng.random() < self.epsilon(self.t):
            return int(self.rng.integers(self.n_actions))
        return int(greedy_actions(self.q_net, obs[None])[0])

    def step(self, batch=None) -> dict:
        a = self.act(self.obs)
        obs2, r, term, trunc, _ = self.env.step(a)
        obs2 = np.asarray(obs2, dtype=np.float32)
        self.buffer.add(self.obs, a, r, obs2, term)
        self.t += 1
        self.ep_return += float(r)
        self.ep_length += 1
        if term or trunc:
            self.episodes.append((self.t, self.ep_return, self.ep_length))
            self._period["returns"].append(self.ep_return)
            self._period["lengths"].append(self.ep_length)
            self.ep_return, self.ep_length = 0.0, 0
            obs2, _ = self.env.reset()
            obs2 = np.asarray(obs2, dtype=np.float32)
        self.obs = obs2
        figs = {}
        if self.t > self.learning_starts and self.t % self.train_freq == 0:
            total = 0.0
            for _ in range(self.gradient_steps):
                total += self.update()
            figs["loss"] = total / self.gradient_steps
        if self.tau >= 1.0 and self.t % self.target_update == 0:
            hard_update(self.target_net, self.q_net)
        return figs

    def targets(self, b: dict) -> np.ndarray:
        """y = r + γ(1 − d)·Q_θ⁻(s′, a*) with a* the target's (DQN) or the online net's
        (Double DQN) greedy action — constants, computed without a graph."""
        with no_grad():
            nxt = Tensor(b["next_obs"])
            q_next = self.target_net(nxt).data
            if self.double:
                a_star = self.q_net(nxt).data.argmax(axis=1)
                v_next = q_next[np.arange(len(a_star)), a_star]
            else:
                v_next = q_next.max(axis=1)
        return (b["reward"] + self.gamma * (1.0 - b["terminated"]) * v_next).astype(np.float32)

    def update(self) -> float:
        """One gradient step on a replayed minibatch; returns the loss."""
        b = self.buffer.sample(self.batch_size, self.rng)
        y = self.targets(b)
        q = self.q_net(Tensor(b["obs"]))
        q_sa = (q * self._eye[b["action"]]).sum(axis=1)   # Q_θ(sᵢ, aᵢ): a one-hot contraction
        loss = self.loss_fn(q_sa, Tensor(y))
        value = self.check_finite("loss", float(loss.item()))
        opt = self.optimizer
        opt.zero_grad()
        loss.backward()
        self.after_backward("q_net")
        if self.max_grad_norm:
            clip_grad_norm_(self.q_net.parameters(), self.max_grad_norm)
        opt.step()
        self.after_update("q_net")
        self.updates += 1
        if self.tau < 1.0:
            soft_update(self.target_net, self.q_net, self.tau)
        p = self._period
        p["loss"] += value
        p["updates"] += 1
        p["q"] += float(q_sa.data.mean())
        return value

    # ---------------------------------------------------------------- figures
    def start_period(self) -> None:
        self._period = self._new_period()

    def period_figures(self, running: dict) -> dict:
        p = self._period
        rets = p["returns"]
        out = {"loss": p["loss"] / p["updates"] if p["updates"] else float("nan"),
               "q": p["q"] / p["updates"] if p["updates"] else float("nan"),
               "return": float(np.mean(rets)) if rets else float("nan"),
               "episodes": len(rets), "epsilon": self.epsilon(self.t),
               "env_steps": self.t, "updates": self.updates}
        return out

    def evaluate(self, data) -> dict:
        spec = data if isinstance(data, EvalEpisodes) else EvalEpisodes(int(data))
        res = evaluate_policy(self.q_net, self.make_env, spec.episodes, spec.seed)
        r = res["returns"]
        return {"return": float(r.mean()), "return_std": float(r.std()),
                "return_min": float(r.min()), "length": float(res["lengths"].mean())}

    # ---------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict:
        out = self.buffer.state_arrays()
        arrays, _ = env_state(self.env)
        out.update({f"env.{k}": v for k, v in arrays.items()})
        out["obs"] = self.obs
        out["episodes"] = np.array(self.episodes, dtype=np.float64).reshape(-1, 3)
        return out

    def load_state_arrays(self, arrays: dict) -> None:
        self.buffer.load_state_arrays(arrays)
        self._env_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("env.")}
        self.obs = np.asarray(arrays["obs"], dtype=np.float32)
        self.episodes = [(int(t), float(r), int(n)) for t, r, n in arrays["episodes"]]

    def state_meta(self) -> dict:
        _, env_meta = env_state(self.env)
        return {"t": self.t, "updates": self.updates, "ep_return": self.ep_return,
                "ep_length": self.ep_length, "env": env_meta, "period": self._period}

    def load_state_meta(self, meta: dict) -> None:
        self.t, self.updates = int(meta["t"]), int(meta["updates"])
        self.ep_return, self.ep_length = float(meta["ep_return"]), int(meta["ep_length"])
        set_env_state(self.env, getattr(self, "_env_arrays", {}), meta["env"])
        p = dict(meta.get("period") or self._new_period())
        p["returns"], p["lengths"] = list(p["returns"]), list(p["lengths"])
        self._period = p

    # ---------------------------------------------------------------- helpers
    def episode_table(self) -> np.ndarray:
        """(k, 3) array: the environment step at which each training episode ended, its
        return and its length."""
        return np.array(self.episodes, dtype=np.float64).reshape(-1, 3)


def moving_average(x, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (same length as ``x``)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)

