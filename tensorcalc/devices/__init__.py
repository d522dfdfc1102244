"""Devices: where a Tensor's array lives, and random draws made on that device.

A device is a name: ``"cpu"`` (NumPy), ``"cuda"`` (CuPy; alias ``"gpu"``) or ``"standin"`` (a CPU
array module with CuPy's rules, :mod:`tensorcalc.devices.standin`, so CI catches host leaks).
``tensorcalc.backend`` maps names to array modules (``get_xp``) and arrays to names
(``device_of``); ``Tensor.to``, ``Module.to`` and ``device=`` on creation functions use it.

Random draws on a device
------------------------
Randomness stays explicit: a ``numpy.random.Generator`` (or an int seed) is passed, and its state
is what a checkpoint saves — on every device, so a checkpoint is device-independent. On the CPU
the draws are the Generator's own (bit-identical to before devices existed). On another device one
64-bit key is taken from the Generator per call and the numbers are made *on the device* by a
counter-based hash, so no mask or noise array ever crosses the bus:

    zᵢ = splitmix64(key + i·φ),  φ = 0x9E3779B97F4A7C15,   uᵢ = (zᵢ >> 11) · 2⁻⁵³ ∈ [0, 1)

(splitmix64: z ← (z ⊕ z≫30)·0xBF58476D1CE4E5B9, z ← (z ⊕ z≫27)·0x94D049BB133111EB, z ⊕ z≫31 —
Steele, Lea & Flood 2014; it passes BigCrush as a counter-based generator). Normals come from
Box–Muller on pairs of uniforms. The same key gives the same numbers on CUDA and on the stand-in.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import as_rng, canonical_device, device_of, get_xp, to_device, to_numpy

_PHI = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _bits(xp, key: int, n: int):
    """n pseudo-random uint64 words from a 64-bit key, made with ``xp`` (on its device)."""
    u64 = xp.uint64
    z = xp.arange(n, dtype=u64) * u64(_PHI) + u64(key)
    z = (z ^ (z >> u64(30))) * u64(_M1)
    z = (z ^ (z >> u64(27))) * u64(_M2)
    return z ^ (z >> u64(31))


def _key(rng) -> int:
    return int(as_rng(rng).integers(0, 2**63, dtype=np.int64))


def random(rng, shape, xp, dtype=np.float64):
    """U[0, 1) draws of ``shape`` on ``xp``'s device (see the module docstring)."""
    dtype = np.dtype(dtype)
    if xp is np:
        return as_rng(rng).random(shape, dtype=dtype if dtype == np.float32 else np.float64)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape)
    u = (_bits(xp, _key(rng), n) >> xp.uint64(11)).astype(xp.float64) * (2.0 ** -53)
    return u.astype(dtype).reshape(shape)


def uniform(rng, low, high, shape, xp, dtype=np.float64):
    """U[low, high) draws on ``xp``'s device."""
    if xp is np:
        return as_rng(rng).uniform(low, high, shape).astype(dtype, copy=False)
    return (low + (high - low) * random(rng, shape, xp, np.float64)).astype(dtype)


def standard_normal(rng, shape, xp, dtype=np.float64):
    """N(0, 1) draws on ``xp``'s device (Box–Muller off the device's uniforms)."""
    if xp is np:
        return as_rng(rng).standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape)
    m = (n + 1) // 2
    u = random(rng, (2, m), xp, np.float64)
    r = xp.sqrt(-2.0 * xp.log1p(-u[0]))  # 1 − u ∈ (0, 1]: log is finite
    t = (2.0 * math.pi) * u[1]
    z = xp.concatenate([r * xp.cos(t), r * xp.sin(t)])[:n]
    return z.astype(dtype).reshape(shape)


def is_available(device) -> bool:
    """Whether ``device`` can be used here ('cuda' needs CuPy and a visible GPU)."""
    try:
        get_xp(device)
        return True
    except (RuntimeError, ValueError):
        return False


# Objects holding per-parameter arrays (optimisers) register here, so that Module.to(device)
# can move their state with the parameters: ``follower.params_moved(params, device)``.
import weakref  # noqa: E402

_FOLLOWERS: weakref.WeakSet = weakref.WeakSet()


def follow_parameters(obj) -> None:
    """Register ``obj`` (with a ``params_moved(params, device)`` method) to be told when
    parameters move between devices."""
    _FOLLOWERS.add(obj)


def parameters_moved(params, device) -> None:
    """Tell every registered follower that ``params`` now live on ``device``."""
    for f in list(_FOLLOWERS):
        f.params_moved(params, device)


__all__ = ["follow_parameters", "parameters_moved", "canonical_device", "device_of", "get_xp",
           "to_device", "to_numpy", "random", "uniform", "standard_normal", "is_available"]
