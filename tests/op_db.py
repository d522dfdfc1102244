"""The one table of op specs: every primitive and every composite gets a line here.

A spec names the function under test (taking Tensors / arrays positionally; keyword variants in
``kwargs``), a NumPy reference, sample input shapes, the input domain, kinks to keep a margin
from, and how far to differentiate. ``tests/test_op_suite.py`` runs the generic checks of
DESIGN.md §4 over every spec. Non-contiguous views of ≥2-D inputs are added automatically.

``covers`` lists the registered primitives the spec exercises; every primitive in the registry
must be covered by some spec (a contract test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.special as sps

import tensorcalc as tc


@dataclass
class OpSpec:
    name: str
    fn: Callable  # (*tensors, **kw) -> Tensor or tuple of Tensors
    ref: Callable | None  # (*arrays, **kw) -> array or tuple (None: no reference check)
    shapes: list  # list of samples; each a tuple of input shapes
    kwargs: list = field(default_factory=lambda: [{}])
    domain: tuple = (-2.0, 2.0)
    kinks: tuple = ()  # values to keep `margin` away from
    margin: float = 1e-2
    order: int = 2  # 1: first derivatives only; 2: also the pullback's derivatives
    covers: tuple = ()  # primitive names exercised
    gen: Callable | None = None  # (rng, shapes, kw) -> list of arrays (overrides domain)
    rtol: float = 1e-5
    atol: float = 1e-6
    eps: float = 1e-6
    adjoint_tol: float = 1e-10  # ⟨u, Jv⟩ vs ⟨Jᵀu, v⟩, relative (no step size involved)
    keeps_dtype: bool = True  # float32 in -> float32 out


S = OpSpec  # short alias for the table

# Broadcasting pairs, scalars and size-1 axes used by the binary ops.
BIN_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5,), ())]
UN_SHAPES = [((3, 4),), ((),), ((2, 1, 3),)]


def _pos(lo=0.2, hi=2.0):
    def g(rng, shapes, kw):
        return [rng.uniform(lo, hi, s) for s in shapes]

    return g


OPS: list[OpSpec] = [
    # ------------------------------------------------------------------ arithmetic
    S("add", tc.add, np.add, BIN_SHAPES, covers=("add",)),
    S("sub", tc.sub, np.subtract, BIN_SHAPES, covers=("sub",)),
    S("mul", tc.mul, np.multiply, BIN_SHAPES, covers=("mul",)),
    S("div", tc.div, np.divide, BIN_SHAPES, covers=("div",),
      gen=lambda rng, shapes, kw: [rng.uniform(-2, 2, shapes[0]),
                                   rng.choice([-1, 1], shapes[1]) * rng.uniform(0.5, 2, shapes[1])]),
    S("neg", tc.neg, np.negative, UN_SHAPES, covers=("neg",)),
    S("maximum", tc.maximum, np.maximum, BIN_SHAPES, covers=("maximum",)),
    S("minimum", tc.minimum, np.minimum, BIN_SHAPES, covers=("minimum",)),
    S("pow", tc.pow, np.power, [((3, 4), (3, 4)), ((3, 4), ())], covers=("pow",),
      gen=lambda rng, shapes, kw: [rng.uniform(0.5, 2, shapes[0]), rng.uniform(-2, 2, shapes[1])]),
    S("pow_scalar", lambda x, p: tc.pow(x, p), lambda x, p: x**p, UN_SHAPES,
      kwargs=[{"p": 2}, {"p": 3}, {"p": 0.5}, {"p": -1.5}], gen=_pos(0.3, 2.0),
      covers=("pow_scalar",)),
    S("where", lambda x, y, mask: tc.where(mask, x, y),
      lambda x, y, mask: np.where(mask, x, y), [((3, 4), (3, 4)), ((3, 4), (4,))],
      kwargs=[{"mask": np.array([[True, False, True, False]] * 3)}], covers=("where",)),
    S("cast", lambda x: tc.cast(tc.cast(x, np.float32), np.float64),
      lambda x: x.astype(np.float32).astype(np.float64), UN_SHAPES, covers=("cast",),
      gen=lambda rng, shapes, kw: [rng.uniform(-2, 2, s).astype(np.float32) for s in shapes],
      rtol=1e-4, atol=1e-5, eps=0.25, adjoint_tol=1e-6, keeps_dtype=False),
    # ------------------------------------------------------------------ elementwise
    S("exp", tc.exp, np.exp, UN_SHAPES, covers=("exp",)),
    S("log", tc.log, np.log, UN_SHAPES, gen=_pos(), covers=("log",)),
    S("log1p", tc.log1p, np.log1p, UN_SHAPES, domain=(-0.5, 2), covers=("log1p",)),
    S("expm1", tc.expm1, np.expm1, UN_SHAPES, covers=("expm1",)),
    S("sqrt", tc.sqrt, np.sqrt, UN_SHAPES, gen=_pos(), covers=("sqrt",)),
    S("abs", tc.abs, np.abs, UN_SHAPES, kinks=(0.0,), covers=("abs",)),
    S("sin", tc.sin, np.sin, UN_SHAPES, covers=("sin",)),
    S("cos", tc.cos, np.cos, UN_SHAPES, covers=("cos",)),
    S("tanh", tc.tanh, np.tanh, UN_SHAPES, covers=("tanh",)),
    S("sigmoid", tc.sigmoid, sps.expit, UN_SHAPES, domain=(-6, 6), covers=("sigmoid",)),
    S("relu", tc.relu, lambda x: np.maximum(x, 0), UN_SHAPES, kinks=(0.0,), covers=("relu",)),
    S("softplus", tc.softplus, lambda x: np.logaddexp(0, x), UN_SHAPES, domain=(-6, 6),
      covers=("softplus",)),
    S("erf", tc.erf, sps.erf, UN_SHAPES, covers=("erf",)),
    # ------------------------------------------------------------------ reductions
    S("sum_scalar", tc.sum, np.sum, [((),)], covers=("sum",)),
    S("sum", tc.sum, np.sum, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}, {"axis": -1, "keepdims": True}], covers=("sum",)),
    S("sum_axes", tc.sum, np.sum, [((2, 3, 4),)], kwargs=[{"axis": (0, 2)}], covers=("sum",)),
    S("max", tc.max, np.max, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 1}, {"axis": (0, 1), "keepdims": True}], covers=("max",)),
    S("min", tc.min, np.min, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}, {"axis": -1, "keepdims": True}], covers=("min",)),
    S("logsumexp", tc.logsumexp, sps.logsumexp, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 1}, {"axis": -1, "keepdims": True}], covers=("logsumexp",)),
    # ------------------------------------------------------------------ matmul
    S("matmul", tc.matmul, np.matmul,
      [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 3)),
       ((3, 4), (4,)), ((4,), (4,))], covers=("matmul", "transpose", "expand_dims", "squeeze")),
    # ------------------------------------------------------------------ shape
    S("reshape", tc.reshape, np.reshape, [((3, 4),), ((2, 3, 2),)],
      kwargs=[{"shape": (4, 3)}, {"shape": (-1,)}, {"shape": (2, 6)}], covers=("reshape",)),
    S("transpose", tc.transpose, np.transpose, [((3, 4),), ((2, 3, 4),)][1:],
      kwargs=[{}, {"axes": (1, 0, 2)}, {"axes": (2, 0, 1)}], covers=("transpose",)),
    S("broadcast_to", tc.broadcast_to, np.broadcast_to, [((3, 1),), ((4,),)],
      kwargs=[{"shape": (2, 3, 4)}], covers=("broadcast_to", "sum_to")),
    S("sum_to", tc.sum_to, lambda x, shape: np.sum(x, axis=0).sum(axis=1, keepdims=True),
      [((2, 3, 4),)], kwargs=[{"shape": (3, 1)}], covers=("sum_to", "broadcast_to")),
    S("expand_dims", tc.expand_dims, np.expand_dims, [((3, 4),)],
      kwargs=[{"axis": 0}, {"axis": -1}, {"axis": (0, 2)}], covers=("expand_dims",)),
    S("squeeze", tc.squeeze, np.squeeze, [((3, 1, 4, 1),)],
      kwargs=[{}, {"axis": 1}, {"axis": (1, 3)}], covers=("squeeze",)),
    S("concat", lambda *xs, axis: tc.concat(xs, axis=axis),
      lambda *xs, axis: np.concatenate(xs, axis=axis),
      [((2, 3), (4, 3)), ((2, 3), (1, 3), (3, 3))], kwargs=[{"axis": 0}], covers=("concat",)),
    S("concat1", lambda *xs, axis: tc.concat(xs, axis=axis),
      lambda *xs, axis: np.concatenate(xs, axis=axis), [((2, 3), (2, 1))],
      kwargs=[{"axis": 1}, {"axis": -1}], covers=("concat",)),
    S("stack", lambda *xs, axis: tc.stack(xs, axis=axis), lambda *xs, axis: np.stack(xs, axis),
      [((2, 3), (2, 3), (2, 3))], kwargs=[{"axis": 0}, {"axis": 1}, {"axis": -1}],
      covers=("stack",)),
    S("pad", tc.pad, lambda x, pad_width, value=0.0: np.pad(x, pad_width, constant_values=value),
      [((2, 3),)], kwargs=[{"pad_width": 1}, {"pad_width": ((0, 1), (2, 0)), "value": 1.5}],
      covers=("pad",)),
    S("flip", tc.flip, np.flip, [((3, 4),)], kwargs=[{}, {"axis": 0}, {"axis": (1,)}],
      covers=("flip",)),
    S("split", lambda x, sections, axis: tuple(tc.split(x, sections, axis)),
      lambda x, sections, axis: tuple(np.split(x, sections, axis)), [((6, 4),)],
      kwargs=[{"sections": 3, "axis": 0}, {"sections": [1, 3], "axis": 1}], covers=("get_item",)),
    # ------------------------------------------------------------------ indexing
    S("getitem_slice", lambda x, index: x[index], lambda x, index: x[index], [((4, 5),)],
      kwargs=[{"index": (slice(1, 3), slice(None, None, 2))}, {"index": (1,)},
              {"index": (Ellipsis, None, 2)}], covers=("get_item", "scatter_add")),
    S("getitem_array", lambda x, index: x[index], lambda x, index: x[index], [((4, 5),)],
      kwargs=[{"index": (np.array([0, 2, 2, 3]),)},
              {"index": (np.array([1, 1]), np.array([0, 4]))},
              {"index": (np.array([[True, False, True, False, True]] * 4),)}],
      covers=("get_item", "scatter_add")),
    S("scatter_add", tc.scatter_add,
      lambda x, index, shape: _np_scatter(x, index, shape), [((4, 3),)],
      kwargs=[{"index": (np.array([0, 2, 0, 1]),), "shape": (3, 3)}], covers=("scatter_add",)),
    S("take", tc.take, lambda x, indices, axis: np.take(x, indices, axis), [((5, 3),)],
      kwargs=[{"indices": np.array([[0, 4], [4, 1]]), "axis": 0},
              {"indices": np.array([2, 0, 2]), "axis": 1}], covers=("take", "scatter_add")),
    # ------------------------------------------------------------------ composites
    S("mean", tc.mean, np.mean, [((3, 4),)], kwargs=[{}, {"axis": 0}, {"axis": 1, "keepdims": True}]),
    S("var", tc.var, np.var, [((3, 4),)], kwargs=[{}, {"axis": 0}, {"axis": 1, "ddof": 1}]),
    S("std", tc.std, np.std, [((3, 4),)], kwargs=[{}, {"axis": 1}]),
    S("clip", tc.clip, lambda x, lo, hi: np.clip(x, lo, hi), [((3, 4),)], kwargs=[{"lo": -0.5, "hi": 0.7}], kinks=(-0.5, 0.7)),
    S("softmax", tc.softmax, lambda x, axis=-1: sps.softmax(x, axis), [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}]),
    S("log_softmax", tc.log_softmax, lambda x, axis=-1: sps.log_softmax(x, axis),
      [((3, 4),)], kwargs=[{}, {"axis": 0}]),
    # ==== windows: unfold/fold, conv, pool (CNN work) — add specs below this line ====
    # ==== linalg (eigh, solve, inv, slogdet, cholesky, norm) — add specs below this line ====
    S("eigh", lambda a: _eigh_invariant(*tc.linalg.eigh(a)),
      lambda a: _eigh_invariant(*np.linalg.eigh(a)), [((3, 3),), ((2, 4, 4),)],
      gen=lambda rng, shapes, kw: [_sym_separated(rng, s) for s in shapes], covers=("eigh",)),
    S("eigvalsh", tc.linalg.eigvalsh, np.linalg.eigvalsh, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_sym_separated(rng, s) for s in shapes], covers=("eigh",)),
    S("solve", tc.linalg.solve, np.linalg.solve,
      [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 2)), ((2, 3, 3), (3,)),
       ((2, 3, 3), (3, 1)), ((3, 3), (2, 3, 2))],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0]),
                                   rng.uniform(-2, 2, shapes[1])], covers=("solve",)),
    S("inv", tc.linalg.inv, np.linalg.inv, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0])], covers=("inv",)),
    S("slogdet", tc.linalg.slogdet, lambda a: tuple(np.linalg.slogdet(a)),
      [((3, 3),), ((2, 3, 3),), ((2, 2),)],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0], flip=True)],
      covers=("slogdet", "inv")),
    S("det", tc.linalg.det, np.linalg.det, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0], flip=True)],
      covers=("slogdet", "inv")),
    S("cholesky", tc.linalg.cholesky, np.linalg.cholesky, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_spd(rng, shapes[0])], covers=("cholesky", "inv")),
    S("norm_vec", tc.linalg.norm, np.linalg.norm, [((5,),)],
      kwargs=[{}, {"ord": 2}, {"ord": 1}, {"ord": np.inf}, {"keepdims": True}],
      kinks=(0.0,), margin=0.05),
    S("norm_axis", tc.linalg.norm, np.linalg.norm, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 1}, {"axis": 0, "keepdims": True}, {"axis": -1, "ord": 1},
              {"axis": (-2, -1)}], kinks=(0.0,), margin=0.05),
    S("norm_mat", tc.linalg.norm, np.linalg.norm, [((3, 4),), ((4, 3),)],
      kwargs=[{"ord": "fro"}, {"ord": 1}, {"ord": np.inf}, {"ord": 2},
              {"ord": 2, "keepdims": True, "axis": (1, 0)}], kinks=(0.0,), margin=0.05,
      covers=("eigh",)),
    # ==== nn functional: activations, losses, norms, dropout — add specs below this line ====
]


def _np_scatter(x, index, shape):
    y = np.zeros(shape, dtype=x.dtype)
    np.add.at(y, index, x)
    return y


# ---------------------------------------------------------------- linalg input generators


def _sym_separated(rng, shape):
    """Symmetric (…, n, n) with eigenvalues at least ~0.7 apart: Q diag(λ) Qᵀ."""
    n = shape[-1]
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    lam = np.arange(n) - (n - 1) / 2 + rng.uniform(-0.15, 0.15, shape[:-1])
    a = (q * lam[..., None, :]) @ np.swapaxes(q, -1, -2)
    return (a + np.swapaxes(a, -1, -2)) / 2


def _eigh_invariant(w, v):
    """Sign-invariant functions of the eigenvectors: v_ij², v_0j v_ij (columns are defined only
    up to sign, so the raw V is not a stable reference)."""
    return w, v * v, v[..., :1, :] * v


def _well_cond(rng, shape, flip=False):
    """Strictly diagonally dominant (…, n, n): uniform(−1, 1) off the diagonal plus n·I. With
    ``flip`` the first row of the first matrix is negated (a negative determinant)."""
    n = shape[-1]
    a = rng.uniform(-1, 1, shape) + n * np.eye(n)
    if flip:
        a.reshape(-1, n, n)[0, 0] *= -1
    return a


def _spd(rng, shape):
    """Symmetric positive definite (…, n, n): R Rᵀ + n·I."""
    n = shape[-1]
    r = rng.uniform(-1, 1, shape)
    a = r @ np.swapaxes(r, -1, -2) + n * np.eye(n)
    return (a + np.swapaxes(a, -1, -2)) / 2
