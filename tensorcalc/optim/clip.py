"""Gradient clipping by global norm and by value (in place on ``p.grad``)."""

from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "grad_norm"]


def _with_grads(params, who):
    if isinstance(params, Tensor):
        params = [params]
    out = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: expected Tensors, got {type(p).__name__} at position {i}")
        if p.grad is not None:
            out.append(p)
    return out


def _writable_grads(ps) -> list:
    """The gradient arrays of ``ps``, safe to change in place.

    Gradients from the engine can be read-only broadcast views, or one array shared by several
    leaves (``a + b`` hands both the same cotangent) — scaling that array once per leaf would
    scale it twice. All such gradients get a private copy (installed in ``p.grad``) *before*
    anything is changed.
    """
    seen: set = set()
    out = []
    for p in ps:
        g = p.grad.data
        root = g.base if getattr(g, "base", None) is not None else g
        if not g.flags.writeable or id(root) in seen:
            g = g.copy()
            p.grad = Tensor._wrap(g, None, 0)
        else:
            seen.add(id(root))
        out.append(g)
    return out


def grad_norm(params, norm_type: float = 2.0) -> float:
    """‖(g₁, …, g_n)‖_q — the q-norm of all gradients concatenated (q = ``norm_type``;
    ``inf`` gives max |g|). Parameters without a gradient are skipped."""
    ps = _with_grads(params, "grad_norm")
    q = float(norm_type)
    if not ps:
        return 0.0
    if q == math.inf:
        return max(float(abs(p.grad.data).max()) if p.grad.data.size else 0.0 for p in ps)
    total = 0.0
    for p in ps:
        g = p.grad.data
        xp = backend.array_module(g)
        if q == 2.0:
            r = g.reshape(-1)
            total += float(xp.dot(r, r))  # BLAS, no temporary
        elif q == 1.0:
            total += float(xp.abs(g).sum())
        else:
            total += float((xp.abs(g) ** q).sum())
    if q == 2.0:
        return math.sqrt(total)
    if q == 1.0:
        return total
    return total ** (1.0 / q)


def clip_grad_norm_(params, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, eps: float = 1e-6) -> float:
    """Rescale all gradients together so that their global norm is at most ``max_norm``.

        N = ‖(g₁, …, g_n)‖_q ;   gᵢ ← gᵢ · min(1, c / (N + ε))      (c = max_norm, ε = 1e-6)

    The direction of the full gradient is kept (unlike clipping each coordinate). Returns N, the
    norm *before* clipping (a float), as PyTorch does. A non-finite N raises RuntimeError when
    ``error_if_nonfinite`` (otherwise the gradients become NaN, as in PyTorch).
    """
    if not (isinstance(max_norm, (int, float)) and max_norm >= 0):
        raise ValueError(f"clip_grad_norm_: max_norm must be a number >= 0, got {max_norm!r}")
    ps = _with_grads(params, "clip_grad_norm_")
    total = grad_norm(ps, norm_type)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise RuntimeError(f"clip_grad_norm_: the total {norm_type}-norm of the gradients is "
                               f"{total}; pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + eps)
    if coef < 1.0 or not math.isfinite(total):
        for g in _writable_grads(ps):
            g *= coef
    return total


def clip_grad_value_(params, clip_value: float) -> None:
    """Clip every gradient coordinate to [−c, c]:  gᵢ ← min(max(gᵢ, −c), c)  (c = clip_value)."""
    if not (isinstance(clip_value, (int, float)) and clip_value >= 0):
        raise ValueError(f"clip_grad_value_: clip_value must be a number >= 0, got {clip_value!r}")
    c = float(clip_value)
    for g in _writable_grads(_with_grads(params, "clip_grad_value_")):
        backend.array_module(g).clip(g, -c, c, out=g)
