"""Experience replay: a fixed-capacity ring of transitions (s, a, r, s′, terminated).

Sampling uniformly from the last N transitions breaks the correlation of consecutive steps and
reuses each one many times (Lin 1992; Mnih et al. 2015). The buffer is plain arrays, so a
checkpoint stores it bit-exact (:meth:`ReplayBuffer.state_arrays`) and a resumed run samples
exactly the batches an uninterrupted one would — sampling draws from a Generator the caller
owns (and checkpoints).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions with observations of shape ``obs_shape``.

    ``add`` writes one transition (overwriting the oldest when full); ``sample(n, rng)``
    returns a dict of n transitions drawn uniformly with replacement: ``obs`` (n, *obs_shape),
    ``action`` (n,) int64, ``reward`` (n,) float32, ``next_obs``, ``terminated`` (n,) float32
    (1 where s′ is terminal: no bootstrap; a time-limit truncation stores 0).
    """

    def __init__(self, capacity: int, obs_shape, obs_dtype=np.float32):
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_shape = tuple(obs_shape)
        self.obs = np.zeros((capacity,) + self.obs_shape, dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.action = np.zeros(capacity, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.pos = 0        # where the next transition goes
        self.size = 0       # transitions held

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.action[i] = action
        self.reward[i] = reward
        self.terminated[i] = terminated
        self.pos = (i + 1) % self.capacity
        if self.size < self.capacity:
            self.size += 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        if self.size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty")
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": self.obs[idx], "action": self.action[idx], "reward": self.reward[idx],
                "next_obs": self.next_obs[idx], "terminated": self.terminated[idx]}

    # ------------------------------------------------------------------ checkpoints
    _FIELDS = ("obs", "next_obs", "action", "reward", "terminated")

    def state_arrays(self, prefix: str = "buffer.") -> dict:
        """The filled part of every array plus ``[pos, size, capacity]``, bit-exact."""
        n = self.size
        out = {prefix + k: getattr(self, k)[:n] for k in self._FIELDS}
        out[prefix + "index"] = np.array([self.pos, self.size, self.capacity], dtype=np.int64)
        return out

    def load_state_arrays(self, arrays: dict, prefix: str = "buffer.") -> None:
        key = prefix + "index"
        if key not in arrays:
            raise ValueError("ReplayBuffer: the checkpoint holds no replay buffer "
                             f"({key!r} missing)")
        pos, size, cap = (int(v) for v in arrays[key])
        if cap != self.capacity:
            raise ValueError(f"ReplayBuffer: the checkpoint's buffer holds {cap} transitions, "
                             f"this one {self.capacity}")
        for k in self._FIELDS:
            a = np.asarray(arrays[prefix + k])
            mine = getattr(self, k)
            if a.shape != (size,) + mine.shape[1:]:
                raise ValueError(f"ReplayBuffer: saved {k} has shape {a.shape}, expected "
                                 f"{(size,) + mine.shape[1:]}")
            mine[:size] = a
            mine[size:] = 0
        self.pos, self.size = pos, size
