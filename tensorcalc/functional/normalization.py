"""Normalisation layers as functions: batch norm, layer norm, group norm.

All standardise with the biased variance: x̂ = (x − μ) / √(σ² + ε), then y = γ ⊙ x̂ + β. The
derivative through μ and σ² (the reason batch norm's gradient is not just γ/σ) is
x̄ = (x̂̄ − mean x̂̄ − x̂ ⊙ mean(x̂̄ ⊙ x̂)) / √(σ² + ε). Layer norm and group norm standardise
over trailing axes with the primitives ``ops.layer_norm`` / ``ops.standardize``, which carry
that rule; batch norm in training mode is the primitive ``ops.batch_norm``, which returns the
batch statistics beside y (for the running averages) and sums over the channels-last memory
of a convolution's output as GEMVs (about half the composite's time forward + backward); in
eval mode it is an affine map of x (composite).

Input dtypes: x of another dtype is cast to the dtype of γ (or of the running statistics);
complex x is rejected (the policy of every layer family, ``functional._dtypes``).
"""

from __future__ import annotations

import math

from .. import ops
from ..backend import xp_of
from ..ops._util import check_residual, data_of, shape_of
from ..tensor import Tensor
from ._dtypes import operand_or_real


def _update_running(buf, stat, momentum):
    """buf ← (1 − m)·buf + m·stat in place (a buffer: never part of the graph)."""
    stat = stat.reshape(shape_of(buf)).astype(data_of(buf).dtype, copy=False)
    if isinstance(buf, Tensor):
        buf.mul_(1.0 - momentum).add_(stat, alpha=momentum)
    else:
        buf *= 1.0 - momentum
        buf += momentum * stat


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=True,
               momentum=0.1, eps=1e-5, relu=False, residual=None):
    """Batch normalisation over every axis but the channel axis 1 of x (N, C, ...):

        training:  μ_c, σ²_c = mean and biased variance of channel c over the batch (and the
                   spatial axes);  y = γ_c (x − μ_c)/√(σ²_c + ε) + β_c. If running statistics
                   are given they are updated in place: r_μ ← (1 − m) r_μ + m μ,
                   r_σ² ← (1 − m) r_σ² + m σ²·n/(n − 1) (unbiased), n values per channel.
        eval:      y = γ_c (x − r_μ,c)/√(r_σ²,c + ε) + β_c, an affine map of x.

    ``weight`` γ and ``bias`` β are (C,) or None. The batch statistics are functions of x, so
    the gradient flows through μ and σ² (Ioffe & Szegedy, 2015). ``residual`` (x's shape):
    returns y + residual; ``relu``: returns relu(y) (relu(y + residual)). In training both are
    fused into the batch-norm primitive: the conv → BN → ReLU of most CNNs, and the end of a
    ResNet block, relu(BN(conv(h)) + shortcut(x)).
    """
    sx = shape_of(x)
    if len(sx) < 2:
        raise ValueError(f"batch_norm: x must be (N, C, ...) with channels on axis 1, got {sx}")
    C = sx[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and shape_of(t) != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},) for x of shape {sx}, "
                             f"got {shape_of(t)}")
    x = operand_or_real(x, (weight, running_mean), "batch_norm")
    bshape = (C,) + (1,) * (len(sx) - 2)
    if training:
        axes = (0,) + tuple(range(2, len(sx)))
        n = math.prod(sx[a] for a in axes)
        if n <= 1:
            raise ValueError(
                f"batch_norm: training needs more than one value per channel, got x of shape "
                f"{sx}; use eval mode or a larger batch"
            )
        xd = data_of(x)
        xp = xp_of((xd,))
        w = weight if weight is not None else xp.ones(C, dtype=xd.dtype)
        b = bias if bias is not None else xp.zeros(C, dtype=xd.dtype)
        y, mu, var = ops.batch_norm(x, w, b, eps=eps, relu=relu,  # the fused primitive
                                    residual=residual)
        if running_mean is not None:
            _update_running(running_mean, data_of(mu), momentum)
        if running_var is not None:
            _update_running(running_var, data_of(var) * (n / (n - 1)), momentum)
        return y
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: eval mode needs running_mean and running_var")
        check_residual("batch_norm", x, residual)  # (training: ops.batch_norm checks it)
        xd = data_of(x)
        rm = data_of(running_mean).astype(xd.dtype, copy=False).reshape(bshape)
        rv = data_of(running_var).astype(xd.dtype, copy=False).reshape(bshape)
        d = x - rm
        inv = (rv + eps) ** -0.5
    scale = inv if weight is None else inv * ops.reshape(weight, bshape)
    y = d * scale
    if bias is not None:
        y = y + ops.reshape(bias, bshape)
    if residual is not None:
        y = y + residual
    return ops.relu(y) if relu else y


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the trailing axes ``normalized_shape`` of each sample:
    y = γ ⊙ (x − μ)/√(σ² + ε) + β, μ and σ² (biased) over those axes; γ, β of that shape.
    Same in training and eval (no running statistics; Ba et al., 2016).
    """
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    sx = shape_of(x)
    k = len(ns)
    if k == 0 or sx[len(sx) - k:] != ns or len(sx) < k:
        raise ValueError(f"layer_norm: x[..., {', '.join(map(str, ns))}] expected (normalised "
                         f"shape {ns}), got x of shape {sx}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and shape_of(t) != ns:
            raise ValueError(f"layer_norm: {name} must have shape {ns}, got {shape_of(t)}")
    x = operand_or_real(x, (weight, bias), "layer_norm")
    if weight is not None and bias is not None:
        return ops.layer_norm(x, weight, bias, eps)  # one fused primitive
    axes = tuple(range(len(sx) - k, len(sx)))
    y = ops.standardize(x, axes, eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation: split the C channels of x (N, C, ...) into G groups and
    standardise each (sample, group) over its channels and spatial axes; then the per-channel
    affine map γ_c x̂ + β_c. G = 1 is layer norm over (C, ...); G = C is instance norm
    (Wu & He, 2018).
    """
    sx = shape_of(x)
    if len(sx) < 2 or sx[1] % num_groups:
        raise ValueError(f"group_norm: x must be (N, C, ...) with C divisible by num_groups="
                         f"{num_groups}, got {sx}")
    C = sx[1]
    x = operand_or_real(x, (weight, bias), "group_norm")
    g = ops.reshape(x, (sx[0], num_groups, C // num_groups) + sx[2:])
    y = ops.reshape(ops.standardize(g, tuple(range(2, len(sx) + 1)), eps), sx)
    bshape = (C,) + (1,) * (len(sx) - 2)
    if weight is not None:
        y = y * ops.reshape(weight, bshape)
    if bias is not None:
        y = y + ops.reshape(bias, bshape)
    return y


__all__ = ["batch_norm", "layer_norm", "group_norm"]
