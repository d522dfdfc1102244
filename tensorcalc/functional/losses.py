"""Loss functions: composites of primitives (no derivative code here).

Most losses are the negative log-likelihood of a noise model; each docstring says which. Every
loss takes ``reduction``: 'mean' (average over elements, or over the weights where a class
weight applies), 'sum', or 'none' (the per-element loss).

Targets that are constants (arrays, or Tensors that do not require grad) are cast to the
input's dtype, so a float32 model stays in float32. Complex inputs or targets are rejected with
a named TypeError (``functional._dtypes``). Integer class targets are turned into a
constant coefficient array once per call (a one-hot mask times weights and the reduction's
scale): the loss is then one multiply and one sum over log-probabilities — no scatter in the
forward or backward pass.
"""

from __future__ import annotations

import math

from .. import ops
from ..backend import array_module
from ..ops._util import data_of, shape_of
from ..tensor import Tensor
from ._dtypes import real
from .activations import relu
from .basic import mean

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, who, extra=()):
    if reduction not in _REDUCTIONS + tuple(extra):
        allowed = ", ".join(repr(r) for r in _REDUCTIONS + tuple(extra))
        raise ValueError(f"{who}: reduction must be one of {allowed}, got {reduction!r}")


def _reduce(loss, reduction):
    if reduction == "mean":
        return mean(loss)
    if reduction == "sum":
        return ops.sum(loss)
    return loss


def _is_tensor(x):
    return isinstance(x, Tensor)


def _like(t, x):
    """``t`` as a float operand matching x's dtype (constants are cast; a float Tensor target
    that requires grad keeps its graph through a differentiable cast)."""
    dtype = data_of(x).dtype
    if _is_tensor(t):
        if t.dtype != dtype:
            return ops.cast(t, dtype) if t.dtype.kind == "f" else t.data.astype(dtype)
        return t
    xp = array_module(data_of(x))
    return xp.asarray(t).astype(dtype, copy=False)


def _same_shape(x, t, who, what="target"):
    sx, st = shape_of(x), shape_of(t)
    if sx != st:
        raise ValueError(
            f"{who}: input of shape {sx} and {what} of shape {st} must have the same shape"
        )


def _pointwise(x, target, who):
    real(x, who)
    real(target, who, "target")
    t = _like(target, x)
    _same_shape(x, t, who)
    return t


def _weighted(loss, weight, x):
    return loss if weight is None else loss * _like(weight, x)


# ---------------------------------------------------------------------------- regression


def mse_loss(input, target, reduction="mean"):
    """Mean squared error: ℓ = (x − t)².

    The negative log-likelihood (up to a constant and a factor ½σ⁻²) of t ~ N(x, σ²).
    ∂ℓ/∂x = 2(x − t).
    """
    _check_reduction(reduction, "mse_loss")
    t = _pointwise(input, target, "mse_loss")
    return _reduce(ops.pow(input - t, 2), reduction)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error: ℓ = |x − t|.

    The negative log-likelihood (up to constants) of t ~ Laplace(x, b). ∂ℓ/∂x = sign(x − t),
    subgradient 0 at x = t.
    """
    _check_reduction(reduction, "l1_loss")
    t = _pointwise(input, target, "l1_loss")
    return _reduce(ops.abs(input - t), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """Huber loss: ℓ = ½d² for |d| ≤ δ, δ(|d| − ½δ) otherwise, d = x − t.

    Quadratic near 0, linear in the tails: the negative log-likelihood of a Gaussian with
    Laplace tails (robust regression). ∂ℓ/∂x = d for |d| ≤ δ, δ·sign(d) otherwise (C¹).
    """
    _check_reduction(reduction, "huber_loss")
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    t = _pointwise(input, target, "huber_loss")
    d = input - t
    a = ops.abs(d)
    small = data_of(a) <= delta
    return _reduce(ops.where(small, ops.pow(d, 2) * 0.5, (a - 0.5 * delta) * delta), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Smooth L1: ℓ = ½d²/β for |d| < β, |d| − ½β otherwise, d = x − t (= huber_loss / β).

    ∂ℓ/∂x = d/β for |d| < β, sign(d) otherwise. β = 0 gives the L1 loss.
    """
    _check_reduction(reduction, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    t = _pointwise(input, target, "smooth_l1_loss")
    d = input - t
    a = ops.abs(d)
    small = data_of(a) < beta
    return _reduce(ops.where(small, ops.pow(d, 2) * (0.5 / beta), a - 0.5 * beta), reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian negative log-likelihood with a predicted variance:
    ℓ = ½(log max(σ², ε) + (x − t)² / max(σ², ε)) [+ ½ log 2π if full].

    t ~ N(x, σ²). ``var`` has x's shape or one fewer trailing axis of size 1 (homoscedastic).
    """
    _check_reduction(reduction, "gaussian_nll_loss")
    t = _pointwise(input, target, "gaussian_nll_loss")
    v = _like(var, input)
    vd = data_of(v)
    if (vd < 0).any():
        raise ValueError("gaussian_nll_loss: var has negative entries")
    v = ops.where(vd > eps, v, eps)  # clamp with zero gradient below eps
    loss = (ops.log(v) + ops.pow(input - t, 2) / v) * 0.5
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    """Poisson negative log-likelihood of counts t with rate λ:
    ℓ = λ − t·log λ (+ Stirling's log t! ≈ t log t − t + ½ log 2πt for t > 1 if full).

    log_input=True: input is log λ, ℓ = exp(x) − t·x. Otherwise input is λ and
    ℓ = λ − t·log(λ + ε).
    """
    _check_reduction(reduction, "poisson_nll_loss")
    t = _pointwise(input, target, "poisson_nll_loss")
    if log_input:
        loss = ops.exp(input) - t * input
    else:
        loss = input - t * ops.log(input + eps)
    if full:
        big = data_of(t) > 1
        s = ops.where(big, t, 1.0)
        loss = loss + ops.where(big, s * ops.log(s) - s + ops.log(s * (2 * math.pi)) * 0.5, 0.0)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------------- binary


def _log_clamped(p):
    """max(log p, −100) with no NaN at p = 0 (PyTorch's convention for BCE)."""
    ok = data_of(p) > math.exp(-100)
    return ops.where(ok, ops.log(ops.where(ok, p, 1.0)), -100.0)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy on probabilities p ∈ [0, 1]:
    ℓ = −w·[t log p + (1 − t) log(1 − p)],  each log clamped at −100.

    The negative log-likelihood of t ~ Bernoulli(p). ∂ℓ/∂p = w(p − t) / (p(1 − p)). Prefer
    :func:`binary_cross_entropy_with_logits` on logits: it is stable where p saturates.
    """
    _check_reduction(reduction, "binary_cross_entropy")
    p = data_of(real(input, "binary_cross_entropy"))
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(
            f"binary_cross_entropy: input must be probabilities in [0, 1], got values in "
            f"[{float(p.min()):.4g}, {float(p.max()):.4g}]; for logits use "
            "binary_cross_entropy_with_logits"
        )
    t = _pointwise(input, target, "binary_cross_entropy")
    logp = _log_clamped(input)
    log1mp = _log_clamped(1.0 - input)
    loss = -(log1mp + t * (logp - log1mp))
    return _reduce(_weighted(loss, weight, input), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction="mean"):
    """Binary cross-entropy on logits z (p = σ(z)), stable for any z:
    ℓ = w·[(1 − t)·softplus(z) + c·t·softplus(−z)],   c = pos_weight (default 1).

    The negative log-likelihood of t ~ Bernoulli(σ(z)), since −log σ(z) = softplus(−z) and
    −log(1 − σ(z)) = softplus(z); written this way neither term cancels for saturated logits.
    ∂ℓ/∂z = w·[(1 − t)σ(z) − c·t·σ(−z)]  (= w(σ(z) − t) for c = 1). ``pos_weight`` broadcasts
    along the last axis (one weight per class in multi-label problems).
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    t = _pointwise(input, target, "binary_cross_entropy_with_logits")
    pos = t if pos_weight is None else t * _like(pos_weight, input)
    loss = (1.0 - t) * ops.softplus(input) + pos * ops.softplus(-input)
    return _reduce(_weighted(loss, weight, input), reduction)


# ---------------------------------------------------------------------------- categorical


def _class_axis(x, who):
    sx = shape_of(x)
    if not sx:
        raise ValueError(f"{who}: input must have a class axis, got a scalar")
    return 1 if len(sx) >= 2 else 0


def _class_coefficients(target, sx, caxis, weight, ignore_index, smoothing, dtype, xp, who):
    """For integer targets: the constant Q (shape sx) with loss_i = −Σ_c Q_ic log p_ic, and
    the mean's denominator Σ_i w[t_i] over non-ignored i."""
    t = xp.asarray(data_of(target))
    C = sx[caxis]
    want = sx[:caxis] + sx[caxis + 1:]
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{who}: target must be integer class indices of shape {want} (or class "
            f"probabilities of shape {sx}), got {t.dtype} of shape {tuple(t.shape)}"
        )
    if tuple(t.shape) != want:
        raise ValueError(
            f"{who}: input of shape {sx} (classes on axis {caxis}) needs integer targets of "
            f"shape {want}, got {tuple(t.shape)}"
        )
    valid = None if ignore_index is None else t != ignore_index
    tv = t if valid is None else t[valid]
    if tv.size:
        if hasattr(tv, "get"):  # on a device: one transfer (one host synchronisation), not two
            lo, hi = (int(v) for v in xp.stack((tv.min(), tv.max())).get())
        else:
            lo, hi = int(tv.min()), int(tv.max())
        if lo < 0 or hi >= C:
            bad = lo if lo < 0 else hi
            raise IndexError(
                f"{who}: target class {bad} is outside [0, C) for C = {C} classes "
                f"(input shape {sx})"
            )
    if len(sx) == 2 and valid is None:  # the common (N, C) case: set N entries
        q = xp.zeros(sx, dtype=dtype)
        q[xp.arange(sx[0]), t] = 1.0
    else:
        classes = xp.arange(C).reshape((C,) + (1,) * (len(sx) - caxis - 1))
        onehot = xp.expand_dims(t, caxis) == classes
        if valid is not None:
            onehot &= xp.expand_dims(valid, caxis)
        q = onehot.astype(dtype)
    wshape = (C,) + (1,) * (len(sx) - caxis - 1)
    w = None if weight is None else xp.asarray(data_of(weight)).astype(dtype).reshape(wshape)
    if w is not None:
        if w.size != C:
            raise ValueError(f"{who}: weight must have C = {C} entries, got {w.size}")
        q *= w
    if smoothing:
        # (1 − ε)·w[t]·onehot + (ε/C)·w_c on every non-ignored row
        q *= 1.0 - smoothing
        row = xp.full(want, smoothing / C, dtype=dtype) if valid is None else \
            valid.astype(dtype) * (smoothing / C)
        row = xp.expand_dims(row, caxis)
        q += row * w if w is not None else row
    if w is None:
        denom = float(tv.size)
    else:
        wt = xp.take(w.reshape(-1), xp.where(valid, t, 0) if valid is not None else t)
        if valid is not None:
            wt = wt * valid
        denom = float(wt.sum())
    return q, denom


def _nll_from_coefficients(logp, q, denom, caxis, reduction, owned=False):
    """−Σ q ⊙ logp, reduced; ``owned``: q is a fresh array that may be scaled in place.

    An empty mean (every target ignored, or zero total weight: q = 0 and denom = 0) is 0 with
    gradient 0, not 0/0 = NaN: one such batch must not poison every weight."""
    scale = -1.0 if reduction != "mean" else (-1.0 / denom if denom else 0.0)
    if owned:
        q *= scale
    else:
        q = q * scale
    if reduction == "none":
        return ops.sum(logp * q, axis=caxis)
    return ops.sum(logp * q)


def _ce_from_coefficients(z, q, denom, caxis, reduction, owned=False):
    """Σ q ⊙ (lse(z) − z) through the fused primitive, reduced; q may be scaled in place.
    An empty mean (denom = 0, q = 0) is 0 with gradient 0 (see _nll_from_coefficients)."""
    scale = 1.0 if reduction != "mean" else (1.0 / denom if denom else 0.0)
    if scale != 1.0:
        if owned:
            q *= scale
        else:
            q = q * scale
    loss = ops.softmax_cross_entropy(z, q, axis=caxis)
    return loss if reduction == "none" else ops.sum(loss)


def cross_entropy(input, target, weight=None, ignore_index=None, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of logits z against class targets: ℓᵢ = −Σ_c q_ic·w_c·log softmax(zᵢ)_c.

    The negative log-likelihood of a categorical (multinomial) distribution with probabilities
    softmax(z). ``input`` is (N, C) or (N, C, d₁, ...) with classes on axis 1 (or (C,)).
    ``target`` is either integer class indices of shape (N, d₁, ...) — q is the one-hot of
    the class — or class probabilities of the input's shape. ``weight`` (C,) rescales classes;
    ``label_smoothing`` ε mixes q with the uniform distribution: q ← (1 − ε)q + ε/C. With
    integer targets 'mean' divides by Σᵢ w[tᵢ] (the number of non-ignored targets without
    weights); with probabilities by the number of samples. ``ignore_index`` marks targets
    that contribute nothing; if every target is ignored (or the weights of the targets sum to
    0) the 'mean' is an empty average, taken as 0 with gradient 0 (PyTorch gives NaN, which
    would poison every weight). Computed from log_softmax (max-shifted logsumexp): finite for
    any finite logits (one fused primitive, ``ops.softmax_cross_entropy``).
    ∂ℓᵢ/∂zᵢ = (Σ_c q_c w_c)·softmax(zᵢ) − q⊙w.
    """
    who = "cross_entropy"
    _check_reduction(reduction, who)
    real(input, who)
    real(target, who, "target")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{who}: label_smoothing must be in [0, 1], got {label_smoothing}")
    caxis = _class_axis(input, who)
    sx = shape_of(input)
    xd = data_of(input)
    xp = array_module(xd)
    tdtype = getattr(data_of(target), "dtype", None)
    if tdtype is not None and tdtype.kind == "f":
        q = _like(target, input)
        _same_shape(input, q, who, "probability target")
        C = sx[caxis]
        if label_smoothing:
            q = q * (1.0 - label_smoothing) + label_smoothing / C
        if weight is not None:
            w = xp.asarray(data_of(weight)).astype(xd.dtype)
            if w.size != C:
                raise ValueError(f"{who}: weight must have C = {C} entries, got {w.size}")
            q = q * w.reshape((C,) + (1,) * (len(sx) - caxis - 1))
        n = xd.size // C if C else 0
        return _ce_from_coefficients(input, q, float(n), caxis, reduction)
    q, denom = _class_coefficients(target, sx, caxis, weight, ignore_index, label_smoothing,
                                   xd.dtype, xp, who)
    return _ce_from_coefficients(input, q, denom, caxis, reduction, owned=True)


def nll_loss(input, target, weight=None, ignore_index=None, reduction="mean"):
    """Negative log-likelihood from log-probabilities: ℓᵢ = −w[tᵢ]·input[i, tᵢ].

    ``input`` holds log p (e.g. log_softmax output), classes on axis 1; ``target`` integer
    class indices. 'mean' divides by Σᵢ w[tᵢ] over non-ignored targets; with none left (every
    target ignored, or zero weight) it is 0 with gradient 0, not NaN.
    cross_entropy(z, t) = nll_loss(log_softmax(z), t).
    ∂ℓᵢ/∂input[i, c] = −w[tᵢ]·[c = tᵢ].
    """
    who = "nll_loss"
    _check_reduction(reduction, who)
    real(input, who)
    caxis = _class_axis(input, who)
    xd = data_of(input)
    q, denom = _class_coefficients(target, shape_of(input), caxis, weight, ignore_index, 0.0,
                                   xd.dtype, array_module(xd), who)
    return _nll_from_coefficients(input, q, denom, caxis, reduction, owned=True)


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback–Leibler divergence KL(P ‖ Q) = Σ P (log P − log Q), pointwise
    ℓ = t·(log t − x) with x = log Q (log-probabilities) and t = P (probabilities; 0·log 0 = 0).

    With log_target=True, t is log P and ℓ = exp(t)·(t − x). Minimising it over Q is maximum
    likelihood under samples of P (it differs from cross-entropy by P's entropy).
    reduction='batchmean' divides the sum by the batch size (the mathematical KL per sample);
    'mean' divides by the number of elements. ∂ℓ/∂x = −t (resp. −exp(t)).
    """
    who = "kl_div"
    _check_reduction(reduction, who, ("batchmean",))
    t = _pointwise(input, target, who)
    if log_target:
        loss = ops.exp(t) * (t - input)
    else:
        td = data_of(t)
        pos = td > 0
        if _is_tensor(t) and t.requires_grad:
            tlogt = ops.where(pos, t * ops.log(ops.where(pos, t, 1.0)), 0.0)
        else:
            xp = array_module(td)
            tlogt = xp.where(pos, td * xp.log(xp.where(pos, td, 1)), 0).astype(td.dtype)
        loss = tlogt - t * input
    if reduction == "batchmean":
        n = shape_of(input)[0] if shape_of(input) else 1
        return ops.sum(loss) * (1.0 / n)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------------- margins


def _signs(target, who, like):
    xp = array_module(data_of(like))
    t = xp.asarray(data_of(target))
    if t.size and not bool(((t == 1) | (t == -1)).all()):
        raise ValueError(f"{who}: target must contain only 1 and −1")
    return t


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean"):
    """Hinge embedding loss: ℓ = x for t = 1, max(0, Δ − x) for t = −1 (x a distance).

    Not a likelihood: a margin criterion for learning embeddings. ∂ℓ/∂x = 1 for t = 1,
    −[x < Δ] for t = −1 (subgradient 0 at x = Δ).
    """
    who = "hinge_embedding_loss"
    _check_reduction(reduction, who)
    real(input, who)
    t = _signs(target, who, input)
    _same_shape(input, t, who)
    return _reduce(ops.where(t == 1, input, relu(margin - input)), reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Multi-class hinge loss (Crammer–Singer style, as in SVMs):
    ℓᵢ = (1/C) Σ_{j ≠ yᵢ} w[yᵢ]·max(0, Δ − x[yᵢ] + x[j])ᵖ,  p ∈ {1, 2}.

    Not a likelihood: a margin criterion. Subgradient 0 where Δ − x[yᵢ] + x[j] = 0.
    ``input`` (N, C) or (C,), ``target`` integer classes (N,) or ().
    """
    who = "multi_margin_loss"
    _check_reduction(reduction, who)
    real(input, who)
    if p not in (1, 2):
        raise ValueError(f"{who}: p must be 1 or 2, got {p}")
    sx = shape_of(input)
    if len(sx) not in (1, 2):
        raise ValueError(f"{who}: input must be (N, C) or (C,), got {sx}")
    caxis = len(sx) - 1
    xd = data_of(input)
    xp = array_module(xd)
    onehot, _ = _class_coefficients(target, sx, caxis, None, None, 0.0, xd.dtype, xp, who)
    picked = ops.sum(input * onehot, axis=caxis, keepdims=True)
    h = relu(input - picked + margin)
    if p == 2:
        h = ops.pow(h, 2)
    coef = (1.0 - onehot) * (1.0 / sx[caxis])
    if weight is not None:
        w = xp.asarray(data_of(weight)).astype(xd.dtype)
        coef = coef * xp.sum(onehot * w, axis=caxis, keepdims=True)
    return _reduce(ops.sum(h * coef, axis=caxis), reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean", eps=1e-12):
    """Cosine embedding loss: with cos = ⟨x₁, x₂⟩ / √((‖x₁‖² + ε)(‖x₂‖² + ε)),
    ℓ = 1 − cos for t = 1,  max(0, cos − Δ) for t = −1.

    Not a likelihood: pulls similar pairs together, pushes dissimilar ones below margin Δ.
    Inputs (N, D) with target (N,), or (D,) with a scalar target; subgradient 0 at cos = Δ.
    """
    who = "cosine_embedding_loss"
    _check_reduction(reduction, who)
    real(input1, who, "input1")
    real(input2, who, "input2")
    _same_shape(input1, input2, who, "input2")
    s = shape_of(input1)
    if len(s) not in (1, 2):
        raise ValueError(f"{who}: inputs must be (N, D) or (D,), got {s}")
    t = _signs(target, who, input1)
    if tuple(t.shape) != s[:-1]:
        raise ValueError(f"{who}: inputs of shape {s} need a target of shape {s[:-1]}, got "
                         f"{tuple(t.shape)}")
    dot = ops.sum(input1 * input2, axis=-1)
    n1 = ops.sum(input1 * input1, axis=-1) + eps
    n2 = ops.sum(input2 * input2, axis=-1) + eps
    cos = dot / ops.sqrt(n1 * n2)
    return _reduce(ops.where(t == 1, 1.0 - cos, relu(cos - margin)), reduction)


__all__ = [
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "gaussian_nll_loss",
    "poisson_nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "cross_entropy", "nll_loss", "kl_div", "hinge_embedding_loss", "multi_margin_loss",
    "cosine_embedding_loss",
]
