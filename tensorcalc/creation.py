"""Creating tensors: from data, constant fills, ranges, and random draws from an explicit rng."""

from __future__ import annotations

import numpy as np

from . import backend
from . import devices as _dev
from .tensor import Tensor


def _xp(device):
    return np if device is None else backend.get_xp(device)


def _dtype(dtype):
    return backend.get_default_dtype() if dtype is None else np.dtype(dtype)


def tensor(data, dtype=None, requires_grad=False, device=None) -> Tensor:
    """A Tensor from a list, number, array or Tensor (float data becomes the default dtype)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def as_tensor(x, dtype=None) -> Tensor:
    """``x`` if it already is a Tensor (of that dtype), else a new Tensor sharing its data."""
    if isinstance(x, Tensor) and (dtype is None or x.dtype == np.dtype(dtype)):
        return x
    return Tensor(x, dtype=dtype)


def _make(fn, shape, dtype, requires_grad, device, *args):
    xp = backend.get_xp(device or "cpu")
    if isinstance(shape, int):
        shape = (shape,)
    return Tensor(fn(xp)(tuple(shape), *args, dtype=_dtype(dtype)), requires_grad=requires_grad)


def zeros(shape, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _make(lambda xp: xp.zeros, shape, dtype, requires_grad, device)


def ones(shape, dtype=None, requires_grad=False, device=None) -> Tensor:
    return _make(lambda xp: xp.ones, shape, dtype, requires_grad, device)


def full(shape, value, dtype=None, requires_grad=False, device=None) -> Tensor:
    xp = backend.get_xp(device or "cpu")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return Tensor(xp.full(shape, value, dtype=_dtype(dtype)), requires_grad=requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    xp = backend.get_xp(device or "cpu")
    return Tensor(xp.eye(n, m, dtype=_dtype(dtype)), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None) -> Tensor:
    """Integers (or floats, if any argument is a float or dtype says so) in [start, stop)."""
    xp = backend.get_xp(device or "cpu")
    if stop is None:
        start, stop = 0, start
    if dtype is None and any(isinstance(v, float) for v in (start, stop, step)):
        dtype = backend.get_default_dtype()
    return Tensor(xp.arange(start, stop, step, dtype=dtype))


def linspace(start, stop, num=50, dtype=None, device=None) -> Tensor:
    xp = backend.get_xp(device or "cpu")
    return Tensor(xp.linspace(start, stop, num, dtype=_dtype(dtype)))


def _like(fn):
    def f(x, dtype=None, requires_grad=False):
        data = x.data if isinstance(x, Tensor) else x
        if not hasattr(data, "dtype"):
            data = np.asarray(data)
        xp = backend.array_module(data)
        return Tensor(fn(xp, data, dtype or data.dtype), requires_grad=requires_grad)

    return f


zeros_like = _like(lambda xp, d, dt: xp.zeros_like(d, dtype=dt))
ones_like = _like(lambda xp, d, dt: xp.ones_like(d, dtype=dt))


def full_like(x, value, dtype=None, requires_grad=False) -> Tensor:
    data = x.data if isinstance(x, Tensor) else x
    if not hasattr(data, "dtype"):
        data = np.asarray(data)
    xp = backend.array_module(data)
    return Tensor(xp.full_like(data, value, dtype=dtype or data.dtype),
                  requires_grad=requires_grad)


def randn(*shape, rng=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Standard normal draws from an explicit ``rng`` (Generator or seed), made on ``device``
    (see tensorcalc.devices: on the CPU the Generator's own draws)."""
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = tuple(shape[0])
    return Tensor(_dev.standard_normal(rng, shape, _xp(device), _dtype(dtype)),
                  requires_grad=requires_grad)


def normal(shape, mean=0.0, std=1.0, rng=None, dtype=None, requires_grad=False,
           device=None) -> Tensor:
    """N(mean, std²) draws from an explicit ``rng``, made on ``device``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    xp = _xp(device)
    if xp is np:
        return Tensor(backend.as_rng(rng).normal(mean, std, shape).astype(_dtype(dtype)),
                      requires_grad=requires_grad)
    z = _dev.standard_normal(rng, shape, xp, np.float64)
    return Tensor((mean + std * z).astype(_dtype(dtype)), requires_grad=requires_grad)


def rand(*shape, rng=None, dtype=None, requires_grad=False, device=None) -> Tensor:
    """Uniform [0, 1) draws from an explicit ``rng``, made on ``device``."""
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = tuple(shape[0])
    return Tensor(_dev.random(rng, shape, _xp(device), np.float64).astype(_dtype(dtype)),
                  requires_grad=requires_grad)


def uniform(shape, low=0.0, high=1.0, rng=None, dtype=None, requires_grad=False,
            device=None) -> Tensor:
    """U[low, high) draws from an explicit ``rng``, made on ``device``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return Tensor(_dev.uniform(rng, low, high, shape, _xp(device), _dtype(dtype)),
                  requires_grad=requires_grad)
