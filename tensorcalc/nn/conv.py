"""Convolution and pooling layers (parameters + the composites of functional/conv.py, pool.py).

(BatchNorm2d and Dropout2d live in nn/normalization.py and nn/dropout.py.)
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..functional.conv import conv1d as _conv1d
from ..functional.conv import conv2d as _conv2d
from ..functional.conv import conv_transpose2d as _conv_transpose2d
from ..functional.fftconv import conv2d_fft as _conv2d_fft
from ..functional.pool import adaptive_avg_pool2d as _adaptive_avg_pool2d
from ..functional.pool import avg_pool2d as _avg_pool2d
from ..functional.pool import global_avg_pool2d as _global_avg_pool2d
from ..functional.pool import max_pool2d as _max_pool2d
from ..ops._util import shape_of
from ..ops.windows import _pair, norm_padding
from . import init
from .module import Module, Parameter


def _tuple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


class _ConvNd(Module):
    """Shared constructor: W ~ U(−1/√fan_in, 1/√fan_in) (He uniform with a = √5, as PyTorch),
    fan_in = C_in/groups · Π kernel; the same bound for the bias."""

    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f"{name}: channel counts must be positive, got {in_channels} -> "
                             f"{out_channels}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        k = _tuple(kernel_size, self._nd)
        if len(k) != self._nd or min(k) < 1:
            raise ValueError(f"{name}: kernel_size must be {self._nd} positive ints, got "
                             f"{kernel_size!r}")
        if self._nd == 2:  # validate stride / padding / dilation now, not at the first call
            _pair(stride, "stride", name, 1)
            dil = _pair(dilation, "dilation", name, 1)
            if not (self._transposed and isinstance(padding, str)):
                norm_padding(padding, name, k, dil)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        rng = backend.as_rng(rng)
        dtype = dtype or backend.get_default_dtype()
        if self._transposed:
            shape = (in_channels, out_channels // groups) + k
        else:
            shape = (out_channels, in_channels // groups) + k
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5.0), rng=rng)
        if bias:
            fan_in = shape[1] * math.prod(k)
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(np.empty((out_channels,), dtype=dtype))
            init.uniform_(self.bias, -bound, bound, rng=rng)
        else:
            self.register_parameter("bias", None)

    def _check(self, x, ndim, layout):
        s = shape_of(x)
        name = type(self).__name__
        if len(s) != ndim:
            raise ValueError(f"{name}: expected input of shape {layout}, got {tuple(s)}")
        if s[1] != self.in_channels:
            raise ValueError(
                f"{name}({self.in_channels} -> {self.out_channels}, kernel {self.kernel_size}): "
                f"input {tuple(s)} has {s[1]} channels, expected {self.in_channels}"
            )

    def extra_repr(self):
        r = (f"{self.in_channels} -> {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding!r}")
        if self.dilation != 1:
            r += f", dilation={self.dilation}"
        if self.groups != 1:
            r += f", groups={self.groups}"
        return r + f", bias={self.bias is not None}"


class Conv2d(_ConvNd):
    """2-D convolution layer, x (N, C_in, H, W) -> (N, C_out, H_out, W_out):

        y[n, o] = b[o] + Σ_{c ∈ group(o)} W[o, c] ⋆ x[n, c]   (⋆ cross-correlation)
        H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1

    W has shape (C_out, C_in/groups, kh, kw). ``padding``: int, pair, ((t, b), (l, r)),
    'same' or 'valid'. ``algorithm='fft'`` uses the FFT convolution (stride 1, dilation 1,
    groups 1), the same function computed by the convolution theorem.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, rng=None, dtype=None, algorithm="direct"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, rng, dtype)
        if algorithm not in ("direct", "fft"):
            raise ValueError(f"Conv2d: algorithm must be 'direct' or 'fft', got {algorithm!r}")
        if algorithm == "fft" and (stride not in (1, (1, 1)) or dilation not in (1, (1, 1))
                                   or groups != 1):
            raise ValueError("Conv2d: algorithm='fft' supports stride 1, dilation 1, groups 1 only")
        self.algorithm = algorithm

    def forward(self, x):
        self._check(x, 4, "(N, C, H, W)")
        try:
            if self.algorithm == "fft":
                return _conv2d_fft(x, self.weight, self.bias, self.padding)
            return _conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                           self.groups)
        except ValueError as e:
            raise ValueError(str(e).replace("conv2d", f"Conv2d({self.extra_repr()})", 1)) \
                from None


class Conv1d(_ConvNd):
    """1-D convolution layer, x (N, C_in, L) -> (N, C_out, L_out), W (C_out, C_in/groups, k):
    y[n, o, t] = b[o] + Σ_{c, j} x_pad[n, c, t·s + j·d] W[o, c, j],
    L_out = ⌊(L + 2p − d(k − 1) − 1)/s⌋ + 1."""

    _nd = 1

    def forward(self, x):
        self._check(x, 3, "(N, C, L)")
        try:
            return _conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                           self.groups)
        except ValueError as e:
            raise ValueError(str(e).replace("conv1d", f"Conv1d({self.extra_repr()})", 1)) \
                from None


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution (the adjoint of Conv2d w.r.t. its input; "deconvolution"),
    x (N, C_in, H, W) -> (N, C_out, H_out, W_out), W (C_in, C_out/groups, kh, kw):

        H_out = (H − 1)s − 2p + d(k − 1) + output_padding + 1
    """

    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, groups=1, bias=True, rng=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, rng, dtype)
        self.output_padding = output_padding

    def forward(self, x):
        self._check(x, 4, "(N, C, H, W)")
        return _conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                 self.output_padding, self.dilation, self.groups)


class MaxPool2d(Module):
    """Max pooling over (kh × kw) windows (stride defaults to the kernel): y = max of each
    window; the gradient goes to the window's maximum (ties share it equally)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation = padding, dilation

    def forward(self, x):
        return _max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Average pooling over (kh × kw) windows (stride defaults to the kernel)."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.count_include_pad = padding, count_include_pad

    def forward(self, x):
        return _avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                           self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed (oh, ow): window i covers [⌊i·H/oh⌋, ⌈(i+1)·H/oh⌉)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return _adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the mean of each feature map (``keepdims``: (N, C, 1, 1))."""

    def __init__(self, keepdims=False):
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x):
        return _global_avg_pool2d(x, self.keepdims)


__all__ = ["Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "GlobalAvgPool2d"]
