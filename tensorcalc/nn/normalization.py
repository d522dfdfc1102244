"""Normalisation layers: BatchNorm1d/2d (running statistics), LayerNorm, GroupNorm."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..functional import normalization as _N  # the module, not a function
from .module import Module, Parameter


class _BatchNorm(Module):
    _ndims = ()  # allowed input ndims
    _shape_text = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=None,
                 relu: bool = False):
        super().__init__()
        self.num_features = num_features
        self.relu = bool(relu)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = dtype or backend.get_default_dtype()
        if affine:
            self.weight = Parameter(np.ones((num_features,), dtype=dtype))
            self.bias = Parameter(np.zeros((num_features,), dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros((num_features,), dtype=dtype))
            self.register_buffer("running_var", np.ones((num_features,), dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):

        """Running mean 0, running variance 1, batch count 0."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def forward(self, x, residual=None):
        s = x.shape
        if len(s) not in self._ndims or s[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): x of shape "
                             f"{self._shape_text.format(C=self.num_features)} expected, got "
                             f"{tuple(s)}")
        use_batch = self.training or not self.track_running_stats
        m = self.momentum
        rm = rv = None
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if m is None:  # cumulative moving average
                m = 1.0 / float(self.num_batches_tracked.data)
            rm, rv = self.running_mean, self.running_var
        elif not use_batch:
            rm, rv = self.running_mean, self.running_var
        return _N.batch_norm(x, rm, rv, self.weight, self.bias, use_batch,
                             0.0 if m is None else m, self.eps, relu=self.relu,
                             residual=residual)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}"
                + (", relu=True" if self.relu else ""))


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of x (N, C) or (N, C, L) per channel C (see F.batch_norm):
    training mode uses the batch's mean and biased variance and updates the running estimates
    r ← (1 − momentum)·r + momentum·batch value (unbiased variance; momentum=None: cumulative
    average); eval mode uses the running estimates. γ = ``weight`` (ones), β = ``bias``
    (zeros). ``relu=True`` returns relu(y), fused into the batch-norm primitive in training
    (one module for the conv → BN → ReLU of most CNNs, and one pass less each way).
    ``bn(x, residual=r)`` adds r (x's shape) before the ReLU, fused too: relu(BN(x) + r), the
    end of a ResNet block."""

    _ndims = (2, 3)
    _shape_text = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images x (N, C, H, W) per channel (see BatchNorm1d)."""

    _ndims = (4,)
    _shape_text = "(N, {C}, H, W)"


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes of each sample:
    y = γ ⊙ (x − μ)/√(σ² + ε) + β (see F.layer_norm); γ ones, β zeros."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=None):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape = ns
        self.eps = eps
        dtype = dtype or backend.get_default_dtype()
        if elementwise_affine:
            self.weight = Parameter(np.ones(ns, dtype=dtype))
            if bias:
                self.bias = Parameter(np.zeros(ns, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return _N.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, affine={self.weight is not None}"


class GroupNorm(Module):
    """Group normalisation of x (N, C, ...) with C split into ``num_groups`` (F.group_norm)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: {num_channels} channels do not split into "
                             f"{num_groups} groups")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        dtype = dtype or backend.get_default_dtype()
        if affine:
            self.weight = Parameter(np.ones((num_channels,), dtype=dtype))
            self.bias = Parameter(np.zeros((num_channels,), dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return _N.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm"]
