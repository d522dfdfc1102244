"""Q-networks for DQN: an MLP from an observation to one value per action,

    Q_θ(s, ·) = W_out hₗ + b_out ∈ ℝ^|A|,   hₗ = relu(Wₗ hₗ₋₁ + bₗ),  h₀ = s,

or, with a *dueling* head (Wang et al. 2016), a shared trunk h followed by a state value and
advantages recombined with the mean advantage removed (which makes V and A identifiable):

    Q(s, a) = V(s) + A(s, a) − (1/|A|) Σ_a′ A(s, a′).
"""

from __future__ import annotations

from .. import nn

__all__ = ["QNetwork"]


class QNetwork(nn.Module):
    """Q-values (N, n_actions) of observations (N, obs_dim): ``hidden`` ReLU layers, then a
    linear head (or a dueling head with ``dueling=True``); ``rng`` initialises the weights."""

    def __init__(self, obs_dim: int, n_actions: int, hidden=(256, 256), dueling: bool = False,
                 rng=None):
        super().__init__()
        layers, width = [], obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h, rng=rng), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers) if layers else nn.Identity()
        self.dueling = bool(dueling)
        if self.dueling:
            self.value = nn.Linear(width, 1, rng=rng)
            self.advantage = nn.Linear(width, n_actions, rng=rng)
        else:
            self.head = nn.Linear(width, n_actions, rng=rng)
        self.obs_dim, self.n_actions = obs_dim, n_actions

    def forward(self, x):
        h = self.trunk(x)
        if not self.dueling:
            return self.head(h)
        a = self.advantage(h)
        return self.value(h) + a - a.mean(axis=1, keepdims=True)

    def extra_repr(self):
        return f"obs_dim={self.obs_dim}, n_actions={self.n_actions}, dueling={self.dueling}"
