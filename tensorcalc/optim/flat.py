"""Parameters ↔ one flat vector θ ∈ ℝⁿ, n = Σ numel(pᵢ).

Second-order and line-search methods (L-BFGS, Newton-CG, Lanczos for the Hessian spectrum) and
the allreduce of data-parallel training think of a model's parameters as one vector. Two ways:

* :func:`parameters_to_vector` / :func:`vector_to_parameters` — copies (PyTorch's names).
* :class:`FlatParameters` — **views**: it moves every parameter's storage into one contiguous
  buffer and rebinds each ``p.data`` to its slice, so ``flat.vector`` *is* θ (no copy): writing
  into it changes the model, and an optimiser's in-place update of a parameter shows in it.
  Gradients get the same treatment on request (:meth:`FlatParameters.grad_vector`), so one
  allreduce of a few large buffers replaces one call per parameter.

Layout: parameters in the given order, each flattened in C order; ``offsets[i]`` is where
parameter i starts. ``unflatten(v)`` splits any vector of length n back into parameter-shaped
views of it.
"""

from __future__ import annotations

import math

from ..backend import array_module
from ..tensor import Tensor

__all__ = ["FlatParameters", "parameters_to_vector", "vector_to_parameters"]


def _params(params) -> list:
    ps = list(params)
    for i, p in enumerate(ps):
        if not isinstance(p, Tensor):
            raise TypeError(f"flat: parameter {i} is a {type(p).__name__}, not a Tensor")
    if not ps:
        raise ValueError("flat: no parameters")
    dtypes = {p.dtype for p in ps}
    if len(dtypes) > 1:
        raise TypeError(f"flat: parameters of several dtypes {sorted(map(str, dtypes))}; "
                        "one flat vector needs one dtype")
    return ps


def parameters_to_vector(params):
    """θ: the parameters concatenated into one new 1-D array (a copy)."""
    ps = _params(params)
    xp = array_module(ps[0].data)
    return xp.concatenate([p.data.reshape(-1) for p in ps])


def vector_to_parameters(vec, params) -> None:
    """Copy θ back into the parameters (in place; graphs that saved them will notice)."""
    ps = _params(params)
    vec = vec.data if isinstance(vec, Tensor) else vec
    n = sum(p.size for p in ps)
    if vec.shape != (n,):
        raise ValueError(f"vector_to_parameters: vector of shape {tuple(vec.shape)}, the "
                         f"parameters need ({n},)")
    k = 0
    for p in ps:
        p.data[...] = vec[k:k + p.size].reshape(p.shape)
        p._bump()
        k += p.size


class FlatParameters:
    """The parameters as views of one contiguous vector (see the module docstring).

    >>> flat = FlatParameters(model.parameters())
    >>> theta = flat.vector          # shares memory with every parameter
    >>> g = flat.grad_vector()       # ∂L/∂θ after backward (zeros where a grad is None)
    """

    def __init__(self, params):
        self.params = _params(params)
        self.shapes = [tuple(p.shape) for p in self.params]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.offsets = []
        k = 0
        for n in self.sizes:
            self.offsets.append(k)
            k += n
        self.numel = k
        xp = array_module(self.params[0].data)
        self.vector = xp.empty(k, dtype=self.params[0].dtype)
        for p, off, n in zip(self.params, self.offsets, self.sizes, strict=True):
            view = self.vector[off:off + n].reshape(p.shape)
            view[...] = p.data
            p.data = view          # the parameter now lives inside the flat buffer
        self._grad = None

    def unflatten(self, vec) -> list:
        """Parameter-shaped views of a length-n vector."""
        vec = vec.data if isinstance(vec, Tensor) else vec
        if vec.shape != (self.numel,):
            raise ValueError(f"FlatParameters.unflatten: vector of shape {tuple(vec.shape)}, "
                             f"expected ({self.numel},)")
        return [vec[o:o + n].reshape(s)
                for o, n, s in zip(self.offsets, self.sizes, self.shapes, strict=True)]

    def assign(self, vec) -> None:
        """θ ← vec (in place, through the shared buffer)."""
        vec = vec.data if isinstance(vec, Tensor) else vec
        if vec.shape != (self.numel,):
            raise ValueError(f"FlatParameters.assign: vector of shape {tuple(vec.shape)}, "
                             f"expected ({self.numel},)")
        self.vector[...] = vec
        for p in self.params:
            p._bump()

    def grad_vector(self):
        """∂L/∂θ as one vector, zeros where a parameter has no gradient.

        The gradients are moved into one buffer (each ``p.grad`` becomes a view of it), so the
        returned vector is shared with them: averaging it in place (an allreduce) averages the
        parameters' gradients."""
        xp = array_module(self.vector)
        if self._grad is None:
            self._grad = xp.zeros(self.numel, dtype=self.vector.dtype)
        buf = self._grad
        for p, o, n in zip(self.params, self.offsets, self.sizes, strict=True):
            view = buf[o:o + n].reshape(p.shape)
            g = p.grad
            if g is None:
                view[...] = 0
                p.grad = Tensor._wrap(view, None, 0)
            elif g.data is not view:
                view[...] = g.data
                p.grad = Tensor._wrap(view, None, 0)
        return buf

    def set_grad_vector(self, vec) -> None:
        """Write ∂L/∂θ from one vector into the parameters' ``.grad``."""
        self.grad_vector()
        vec = vec.data if isinstance(vec, Tensor) else vec
        if vec.shape != (self.numel,):
            raise ValueError(f"FlatParameters.set_grad_vector: vector of shape "
                             f"{tuple(vec.shape)}, expected ({self.numel},)")
        self._grad[...] = vec
