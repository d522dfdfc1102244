"""Perturbed gradient descent (Jin, Ge, Netrapalli, Kakade, Jordan 2017): escapes strict saddles."""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import mode as _mode
from ._second_order import FlatProblem, FlatState, flat_params
from .base import Optimizer

__all__ = ["PerturbedGD"]


class PerturbedGD(FlatState, Optimizer):
    """Gradient descent with a random kick near stationary points (Jin et al. 2017, Alg. 1),
    on all parameters as one vector θ ∈ ℝⁿ.

    At step t with gradient g_t (learning rate η, radius r, thresholds g_thres, t_thres):

        if ‖g_t‖ ≤ g_thres and t − t_noise > t_thres:
            θ ← θ + ξ,   ξ ~ Uniform(ball of radius r in ℝⁿ),   t_noise ← t
        θ ← θ − η g_t

    (t_noise starts at −t_thres − 1, so a kick may come at once.) Plain GD started exactly on a
    saddle's stable manifold never leaves it, and started ε away needs ≈ ln(1/ε)/ln(1 + η|λ_min|)
    steps; the kick puts PGD a distance ~r off the manifold, so its escape time no longer
    depends on how close to the saddle it started. The kick is applied with the gradient g_t
    taken before it (as the update above reads). ``rng``: seed or Generator for the kicks.
    State: ``t``, ``t_noise``, ``kicks`` (the steps at which a kick happened).
    """

    def __init__(self, params, lr: float = 1e-2, radius: float = 1e-3, g_thres: float = 1e-3,
                 t_thres: int = 10, rng=None):
        params = flat_params(params, "PerturbedGD")
        super().__init__(params, dict(lr=lr, radius=radius, g_thres=g_thres, t_thres=t_thres))
        for k, v in (("radius", radius), ("g_thres", g_thres), ("t_thres", t_thres)):
            if v < 0:
                raise ValueError(f"PerturbedGD: {k} must be >= 0, got {v!r}")
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.problem = FlatProblem(params)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with _mode.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        pb = self.problem
        st = self.state.setdefault(pb.params[0], {})
        t = st.get("t", 0)
        t_noise = st.get("t_noise", -group["t_thres"] - 1)
        kicks = st.setdefault("kicks", [])
        if all(p.grad is None for p in pb.params):
            return loss
        g = pb.cat([p.grad for p in pb.params])
        theta = pb.get()
        gnorm = math.sqrt(float(g @ g))
        if gnorm <= group["g_thres"] and t - t_noise > group["t_thres"]:
            n = pb.numel
            u = self.rng.standard_normal(n)
            u *= group["radius"] * self.rng.uniform() ** (1.0 / n) / np.linalg.norm(u)
            theta = theta + pb.xp.asarray(u, dtype=pb.dtype)
            t_noise = t
            kicks.append(t)
        pb.set(theta - group["lr"] * g)
        st.update(t=t + 1, t_noise=t_noise, grad_norm=gnorm)
        return loss
