"""Synthetic data sets for the statistical-learning recipes (all take an explicit ``rng``).

Features come out float32 (``dtype=`` to change), class labels int64. Every generator is a
function of its arguments and the rng alone.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import as_rng, get_default_dtype

__all__ = ["make_linear", "make_moons", "make_spirals", "make_blobs"]


def _check_n(n, who, minimum=1):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{who}: n must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _check_noise(noise, who):
    if not noise >= 0:
        raise ValueError(f"{who}: noise must be >= 0, got {noise!r}")
    return float(noise)


def _dtype(dtype):
    return np.dtype(dtype) if dtype is not None else get_default_dtype()


def make_linear(n: int = 200, d: int = 1, noise: float = 0.1, rng=None, dtype=None):
    """Linear regression data: ``y = X w + b + ε``.

    ``X_ij ~ N(0, 1)``, ``w_j ~ N(0, 1)``, ``b ~ N(0, 1)``, ``ε_i ~ N(0, noise²)``.
    Returns ``(X (n, d), y (n,), true_w (d,), true_b float)``. The least-squares estimate
    converges to (w, b) as n grows; its error covariance is noise²·(XᵀX)⁻¹.
    """
    n = _check_n(n, "make_linear")
    d = _check_n(d, "make_linear: d")
    noise = _check_noise(noise, "make_linear")
    rng, dtype = as_rng(rng), _dtype(dtype)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d)
    b = float(rng.standard_normal())
    y = X @ w + b + noise * rng.standard_normal(n)
    return X.astype(dtype), y.astype(dtype), w.astype(dtype), b


def make_moons(n: int = 200, noise: float = 0.1, rng=None, dtype=None):
    """Two interleaving half circles (binary classification that is not linearly separable).

    Class 0: ``(cos t, sin t)``, class 1: ``(1 − cos t, ½ − sin t)``, t uniform on [0, π]
    (⌈n/2⌉ and ⌊n/2⌋ points), plus isotropic Gaussian noise of std ``noise``; rows shuffled.
    Returns ``(X (n, 2), y (n,) int64)``.
    """
    n = _check_n(n, "make_moons", 2)
    noise = _check_noise(noise, "make_moons")
    rng, dtype = as_rng(rng), _dtype(dtype)
    n0 = (n + 1) // 2
    t0 = np.linspace(0.0, math.pi, n0)
    t1 = np.linspace(0.0, math.pi, n - n0)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n - n0, np.int64)])
    X = X + noise * rng.standard_normal(X.shape)
    perm = rng.permutation(n)
    return X[perm].astype(dtype), y[perm]


def make_spirals(n: int = 300, classes: int = 3, noise: float = 0.2, rng=None, dtype=None,
                 turns: float = 0.75):
    """K interleaved spiral arms in the plane, one class per arm.

    Arm k has radius r ∈ [0, 1] (evenly spaced) and angle θ = 2πk/K + 2π·turns·r + noise·ε,
    ε ~ N(0, 1); the point is ``r·(sin θ, cos θ)``. n points are shared as evenly as possible
    among the K arms; rows shuffled. Returns ``(X (n, 2), y (n,) int64)``.
    """
    n = _check_n(n, "make_spirals")
    classes = _check_n(classes, "make_spirals: classes")
    noise = _check_noise(noise, "make_spirals")
    rng, dtype = as_rng(rng), _dtype(dtype)
    sizes = [n // classes + (k < n % classes) for k in range(classes)]
    xs, ys = [], []
    for k, m in enumerate(sizes):
        r = np.linspace(0.0, 1.0, m)
        theta = 2 * math.pi * k / classes + 2 * math.pi * turns * r
        theta = theta + noise * rng.standard_normal(m)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], 1))
        ys.append(np.full(m, k, np.int64))
    X, y = np.concatenate(xs), np.concatenate(ys)
    perm = rng.permutation(n)
    return X[perm].astype(dtype), y[perm]


def make_blobs(n: int = 300, centers=3, std: float = 1.0, rng=None, dim: int = 2, dtype=None,
               box: float = 10.0, return_centers: bool = False):
    """Isotropic Gaussian clusters: ``x ~ N(μ_k, std²·I)`` for the point's class k.

    ``centers`` is either K (centres drawn uniformly in [−box, box]^dim) or a (K, dim) array of
    centres. n points are shared as evenly as possible among the clusters; rows shuffled.
    Returns ``(X (n, dim), y (n,) int64)`` and, with ``return_centers``, the (K, dim) centres.
    """
    n = _check_n(n, "make_blobs")
    if not std >= 0:
        raise ValueError(f"make_blobs: std must be >= 0, got {std!r}")
    rng, dtype = as_rng(rng), _dtype(dtype)
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        k = _check_n(centers, "make_blobs: centers")
        mu = rng.uniform(-box, box, size=(k, _check_n(dim, "make_blobs: dim")))
    else:
        mu = np.asarray(centers, dtype=np.float64)
        if mu.ndim != 2 or len(mu) == 0:
            raise ValueError(f"make_blobs: centers must be an int or a (K, dim) array, got shape "
                             f"{mu.shape}")
        k = len(mu)
    y = np.repeat(np.arange(k, dtype=np.int64), [n // k + (j < n % k) for j in range(k)])
    X = mu[y] + float(std) * rng.standard_normal((n, mu.shape[1]))
    perm = rng.permutation(n)
    out = (X[perm].astype(dtype), y[perm])
    return out + (mu.astype(dtype),) if return_centers else out
