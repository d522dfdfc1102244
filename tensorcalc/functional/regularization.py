"""Regularisation helpers on parameters: L1 / L2 penalties and the max-norm constraint.

Penalties are ordinary composites added to the loss (their gradient comes from autodiff);
max-norm is a projection applied in place after an optimiser step.
"""

from __future__ import annotations

from .. import ops
from ..autodiff.mode import no_grad
from ..backend import array_module
from ..tensor import Tensor


def _params(params):
    if isinstance(params, Tensor):
        return [params]
    if hasattr(params, "parameters") and callable(params.parameters):
        return list(params.parameters())
    return list(params)


def l1_penalty(params):
    """Σ_p Σᵢ |pᵢ| over the given tensors (or a Module's parameters).

    λ·l1_penalty added to a loss is a Laplace prior on the weights (MAP estimation); it pushes
    weights to exactly 0. ∂/∂p = sign(p) (subgradient 0 at 0).
    """
    ps = _params(params)
    if not ps:
        raise ValueError("l1_penalty: no parameters given")
    total = None
    for p in ps:
        s = ops.sum(ops.abs(p))
        total = s if total is None else total + s
    return total


def l2_penalty(params):
    """Σ_p ‖p‖² = Σ_p Σᵢ pᵢ² over the given tensors (or a Module's parameters).

    (λ/2)·l2_penalty added to a loss is a Gaussian prior on the weights (MAP estimation) and,
    for plain SGD, coupled weight decay: its gradient is λ·p. ∂/∂p = 2p.
    """
    ps = _params(params)
    if not ps:
        raise ValueError("l2_penalty: no parameters given")
    total = None
    for p in ps:
        s = ops.sum(ops.pow(p, 2))
        total = s if total is None else total + s
    return total


def max_norm_(params, max_norm, axis=0, eps=1e-7):
    """Max-norm constraint, in place: every unit's weight vector w (the slice along ``axis``,
    e.g. row j of a Linear weight = the weights into neuron j) is projected onto the ball
    ‖w‖₂ ≤ max_norm:  w ← w · min(1, max_norm / (‖w‖₂ + eps)).

    Tensors with fewer than 2 axes (biases) are left alone. Runs under no_grad (a projection
    after the optimiser step, not part of the graph). Returns the largest norm seen before
    the projection.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm_: max_norm must be positive, got {max_norm}")
    largest = 0.0
    with no_grad():
        for p in _params(params):
            d = p.data if isinstance(p, Tensor) else p
            if d.ndim < 2:
                continue
            xp = array_module(d)
            ax = axis % d.ndim
            others = tuple(i for i in range(d.ndim) if i != ax)
            norms = xp.sqrt(xp.sum(d.astype("float64") ** 2, axis=others, keepdims=True))
            largest = max(largest, float(norms.max()))
            scale = xp.minimum(1.0, max_norm / (norms + eps)).astype(d.dtype)
            if isinstance(p, Tensor):
                p.mul_(scale)
            else:
                p *= scale
    return largest


__all__ = ["l1_penalty", "l2_penalty", "max_norm_"]
