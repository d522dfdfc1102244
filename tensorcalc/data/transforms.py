"""Transforms: callables on NumPy arrays, composable with :class:`Compose`.

Convention: transforms are *batch-first* — axis 0 indexes examples — so a loader applies them
to a whole batch in one vectorised call. (:class:`~tensorcalc.data.TensorDataset` runs them on a
batch of one for a single example, so ``D[i]`` and ``D[[i]]`` agree.) Elementwise transforms do
not care; :class:`Flatten` keeps axis 0, :class:`OneHot` appends a class axis.

Floats come out in the default dtype (float32) unless asked otherwise; a float32 input is never
upcast.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_default_dtype

__all__ = ["Transform", "Compose", "ToFloat", "Normalize", "OneHot", "Flatten", "Lambda"]


def _float_dtype(x: np.ndarray, dtype) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    return x.dtype if x.dtype.kind == "f" else get_default_dtype()


class Transform:
    """Base class: ``t(x) -> array``; ``t1 + t2`` is ``Compose([t1, t2])``."""

    def __call__(self, x):  # pragma: no cover - abstract
        raise NotImplementedError  # abstract: subclasses define it

    def __add__(self, other):
        return Compose([self, other])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Function composition: ``Compose([f1, f2, f3])(x) = f3(f2(f1(x)))``."""

    def __init__(self, transforms):
        self.transforms = []
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")
            self.transforms.extend(t.transforms if isinstance(t, Compose) else [t])

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


class Lambda(Transform):
    """Any function of an array as a transform: ``Lambda(f)(x) = f(x)``."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"Lambda: {fn!r} is not callable")
        self.fn = fn

    def __call__(self, x):
        return self.fn(np.asarray(x))


class ToFloat(Transform):
    """Cast to float and scale: ``y = scale · x`` (default ``scale = 1/255``: bytes -> [0, 1]).

    Integer input becomes ``dtype`` (default: the default float dtype, float32); float input
    keeps its dtype unless ``dtype`` is given.
    """

    def __init__(self, scale: float = 1.0 / 255.0, dtype=None):
        self.scale = float(scale)
        self.dtype = None if dtype is None else np.dtype(dtype)

    def __call__(self, x):
        x = np.asarray(x)
        y = x.astype(_float_dtype(x, self.dtype), copy=True)
        if self.scale != 1.0:
            y *= self.scale  # a Python float: the dtype of y is kept
        return y


class Normalize(Transform):
    """Standardise: ``y = (x − μ) / σ`` with μ, σ broadcast against x (scalars or arrays).

    Per-channel statistics of images (N, C, H, W) are given with shape (C, 1, 1); per-feature
    statistics of (N, D) data with shape (D,). :meth:`fit` estimates them from training data.
    Integer input is first cast to float32 (the default float dtype); float input keeps its
    dtype. ``inverse(y) = σ·y + μ``.
    """

    def __init__(self, mean, std, eps: float = 0.0):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if np.any(self.std + eps <= 0) or not np.all(np.isfinite(self.std)):
            raise ValueError(f"Normalize: std must be positive and finite, got {std!r}")
        self.eps = float(eps)

    @classmethod
    def fit(cls, x, axis=0, eps: float = 1e-8, min_std: float = 1e-8):
        """μ and σ of ``x`` over ``axis`` (keeping the other axes); σ < min_std is set to 1 so
        constant features pass through centred instead of blowing up."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=axis)
        std = x.std(axis=axis)
        std = np.where(std < min_std, 1.0, std)
        return cls(mean, std)

    def _stats(self, dtype):
        return self.mean.astype(dtype), (self.std + self.eps).astype(dtype)

    def __call__(self, x):
        x = np.asarray(x)
        dtype = _float_dtype(x, None)
        mean, std = self._stats(dtype)
        try:
            return ((x.astype(dtype, copy=False) - mean) / std).astype(dtype, copy=False)
        except ValueError as e:
            raise ValueError(f"Normalize: mean {self.mean.shape} / std {self.std.shape} do not "
                             f"broadcast against x of shape {x.shape}") from e

    def inverse(self, y):
        y = np.asarray(y)
        mean, std = self._stats(_float_dtype(y, None))
        return y * std + mean

    def __repr__(self) -> str:
        def show(a):
            return f"{a.item():.4g}" if a.size == 1 else f"array{a.shape}"
        return f"Normalize(mean={show(self.mean)}, std={show(self.std)})"


class OneHot(Transform):
    """One-hot encoding: ``y[..., c] = 1 if x[...] == c else 0`` for c = 0..K−1 (K classes).

    Integer labels of shape S become an array of shape S + (K,) in ``dtype`` (default float32).
    A label outside [0, K) raises ValueError naming it.
    """

    def __init__(self, num_classes: int, dtype=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise ValueError(f"OneHot: num_classes must be a positive integer, got "
                             f"{num_classes!r}")
        self.num_classes = int(num_classes)
        self.dtype = None if dtype is None else np.dtype(dtype)

    def __call__(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "iub":
            if x.dtype.kind == "f" and np.all(x == np.round(x)):
                x = x.astype(np.int64)
            else:
                raise ValueError(f"OneHot: expected integer class labels, got dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() >= self.num_classes):
            bad = x[(x < 0) | (x >= self.num_classes)].flat[0]
            raise ValueError(f"OneHot: label {bad} outside [0, {self.num_classes})")
        dtype = self.dtype or get_default_dtype()
        return (x[..., None] == np.arange(self.num_classes)).astype(dtype)


class Flatten(Transform):
    """Reshape (N, d_1, ..., d_k) -> (N, d_1·...·d_k): flatten every axis from ``start_axis``."""

    def __init__(self, start_axis: int = 1):
        self.start_axis = int(start_axis)

    def __call__(self, x):
        x = np.asarray(x)
        if x.ndim < self.start_axis:
            raise ValueError(f"Flatten: start_axis {self.start_axis} needs at least that many "
                             f"axes, got x of shape {x.shape}")
        return x.reshape(x.shape[: self.start_axis] + (-1,))
