"""The one table of op specs: every primitive and every composite gets a line here.

A spec names the function under test (taking Tensors / arrays positionally; keyword variants in
``kwargs``), a NumPy reference, sample input shapes, the input domain, kinks to keep a margin
from, and how far to differentiate. ``tests/test_op_suite.py`` runs the generic checks of
DESIGN.md §4 over every spec. Non-contiguous views of ≥2-D inputs are added automatically.

``covers`` lists the registered primitives the spec exercises; every primitive in the registry
must be covered by some spec (a contract test checks it). ``special`` lists the op's edge points
(0, ±inf, ties, kinks, huge logits) with the documented value and gradient limits; every
primitive has them in its own spec (the one named after it, or whose ``covers`` starts with it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    special: list = field(default_factory=list)  # edge points: Special(...) entries, see sv()


FINITE = "finite"  # an expected value or gradient that must be finite (its exact value aside)
INF = np.inf
LOG2 = float(np.log(2.0))
HALF_PI = float(np.pi / 2)


@dataclass
class Special:
    """One edge point of an op (DESIGN §4.7, like JAX's special-values tests): the inputs, the
    keyword arguments, the documented forward ``value`` (one per output for several outputs)
    and the documented gradient of Σ outputs w.r.t. each input (``grads``, the VJP of ȳ = 1).
    Each expected entry is an array (±inf allowed: a documented infinite limit) or FINITE.
    The generic suite also pushes a tangent of ones through each input (JVP): never a NaN, and
    ⟨1, J·1⟩ = ⟨Jᵀ·1, 1⟩ wherever the gradient is finite. Run in float64 and float32."""

    inputs: tuple
    kw: dict
    value: object
    grads: tuple


def sv(*inputs, value, grads, **kw):
    """A Special: positional inputs (lists or arrays, as float64), keyword args, expectations."""
    return Special(tuple(np.asarray(a, dtype=np.float64) for a in inputs), kw, value, grads)


S = OpSpec  # short alias for the table


def _rk4_map(m):
    """One classical RK4 step of dy/dt = y a with h·a = m: I + m + m²/2 + m³/6 + m⁴/24."""
    eye = np.eye(len(m))
    return eye + m @ (eye + m @ (eye / 2 + m @ (eye / 6 + m / 24)))


def _np_scan(kind, xs, h0, c0, w, b, nonlinearity="tanh", mask=None):
    """Per-step NumPy loop of the rnn/lstm/gru recurrences (gate equations as in ops/rnn.py);
    a masked step (false) carries the state."""
    sig = sps.expit
    h, c, H = h0, c0, h0.shape[-1]
    hs, cs, gs = [], [], []
    for t in range(xs.shape[0]):
        if kind == "rnn":
            a = xs[t] + h @ w.T
            hn, cn = (np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)), None
        elif kind in ("lstm", "lstm_gates"):
            a = xs[t] + h @ w.T
            i, f, g, o = sig(a[:, :H]), sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), \
                sig(a[:, 3 * H:])
            cn = f * c + i * g
            hn = o * np.tanh(cn)
            gs.append(np.concatenate([i, f, g, o], axis=-1))
        else:
            a = h @ w.T + b
            r = sig(xs[t][:, :H] + a[:, :H])
            u = sig(xs[t][:, H:2 * H] + a[:, H:2 * H])
            n = np.tanh(xs[t][:, 2 * H:] + r * a[:, 2 * H:])
            hn, cn = (1 - u) * n + u * h, None
        if mask is not None:
            m = mask[t][:, None]
            hn = np.where(m, hn, h)
            cn = None if cn is None else np.where(m, cn, c)
        h, c = hn, cn
        hs.append(h)
        cs.append(c)
    if kind == "lstm_gates":
        return np.stack(hs), np.stack(cs), np.stack(gs)
    return (np.stack(hs), np.stack(cs)) if kind == "lstm" else np.stack(hs)


_LstmScan = tc.ops.rnn.LstmScan  # all three outputs, the gate activations included
_SCAN_MASK = np.array([[1, 0], [1, 0], [1, 0], [0, 0]], dtype=bool)  # (T=4, B=2)
_ATT_BOOL = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 1]], dtype=bool)  # may attend
_ATT_KPM = np.array([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)  # (B=2, Lk=5), True = pad
_ATT_DEAD = _ATT_BOOL.copy()
_ATT_DEAD[1] = False  # query 1 sees no key: zero output, zero gradient

# Broadcasting pairs, scalars and size-1 axes used by the binary ops.
BIN_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((5,), ())]
UN_SHAPES = [((3, 4),), ((),), ((2, 1, 3),)]


def _pos(lo=0.2, hi=2.0):
    def g(rng, shapes, kw):
        return [rng.uniform(lo, hi, s) for s in shapes]

    return g


OPS: list[OpSpec] = [
    # ------------------------------------------------------------------ arithmetic
    S("add", tc.add, np.add, BIN_SHAPES, covers=("add",),
      special=[sv([INF, 0.0, -INF], [1.0, 0.0, 2.0], value=[INF, 0.0, -INF],
                  grads=([1, 1, 1], [1, 1, 1]))]),
    S("sub", tc.sub, np.subtract, BIN_SHAPES, covers=("sub",),
      special=[sv([INF, 0.0], [1.0, 0.0], value=[INF, 0.0], grads=([1, 1], [-1, -1]))]),
    S("mul", tc.mul, np.multiply, BIN_SHAPES, covers=("mul",),
      special=[sv([INF, 0.0], [2.0, 5.0], value=[INF, 0.0], grads=([2, 5], [INF, 0]))]),
    S("div", tc.div, np.divide, BIN_SHAPES, covers=("div",),
      gen=lambda rng, shapes, kw: [rng.uniform(-2, 2, shapes[0]),
                                   rng.choice([-1, 1], shapes[1])
                                   * rng.uniform(0.5, 2, shapes[1])],
      special=[sv([1.0, 0.0, 1.0], [0.0, INF, -INF], value=[INF, 0.0, -0.0],
                  grads=([INF, 0, -0.0], [-INF, 0, 0]))]),
    S("neg", tc.neg, np.negative, UN_SHAPES, covers=("neg",),
      special=[sv([INF, 0.0], value=[-INF, 0.0], grads=([-1, -1],))]),
    S("maximum", tc.maximum, np.maximum, BIN_SHAPES, covers=("maximum",),
      special=[sv([1.0, INF, -INF, 2.0], [1.0, 1.0, -INF, -INF], value=[1.0, INF, -INF, 2.0],
                  grads=([0.5, 1, 0.5, 1], [0.5, 0, 0.5, 0]))]),
    S("minimum", tc.minimum, np.minimum, BIN_SHAPES, covers=("minimum",),
      special=[sv([1.0, INF, -INF, 2.0], [1.0, 1.0, -INF, INF], value=[1.0, 1.0, -INF, 2.0],
                  grads=([0.5, 0, 0.5, 1], [0.5, 1, 0.5, 0]))]),
    S("pow", tc.pow, np.power, [((3, 4), (3, 4)), ((3, 4), ())], covers=("pow",),
      gen=lambda rng, shapes, kw: [rng.uniform(0.5, 2, shapes[0]), rng.uniform(-2, 2, shapes[1])],
      special=[sv([0.0, 0.0, 0.0, 0.0, 2.0], [2.0, 1.0, 0.5, 0.0, 0.0], value=[0, 0, 0, 1, 1],
                  grads=([0, 1, INF, 0, 0], [0, 0, 0, 0, LOG2]))]),
    S("pow_scalar", lambda x, p: tc.pow(x, p), lambda x, p: x**p, UN_SHAPES,
      kwargs=[{"p": 2}, {"p": 3}, {"p": 0.5}, {"p": -1.5}], gen=_pos(0.3, 2.0),
      covers=("pow_scalar",),
      special=[sv([0.0, INF, 2.0], p=0, value=[1, 1, 1], grads=([0, 0, 0],)),
               sv([0.0, INF], p=2, value=[0, INF], grads=([0, INF],)),
               sv([0.0, 4.0], p=0.5, value=[0, 2], grads=([INF, 0.25],)),
               sv([0.0], p=1, value=[0], grads=([1],)),
               sv([0.0], p=-1, value=[INF], grads=([-INF],))]),
    S("where", lambda x, y, mask: tc.where(mask, x, y),
      lambda x, y, mask: np.where(mask, x, y), [((3, 4), (3, 4)), ((3, 4), (4,))],
      kwargs=[{"mask": np.array([[True, False, True, False]] * 3)}], covers=("where",),
      special=[sv([INF, 1.0], [2.0, -INF], mask=np.array([False, True]), value=[2, 1],
                  grads=([0, 1], [1, 0]))]),
    S("cast", lambda x: tc.cast(tc.cast(x, np.float32), np.float64),
      lambda x: x.astype(np.float32).astype(np.float64), UN_SHAPES, covers=("cast",),
      gen=lambda rng, shapes, kw: [rng.uniform(-2, 2, s).astype(np.float32) for s in shapes],
      rtol=1e-4, atol=1e-5, eps=0.25, adjoint_tol=1e-6, keeps_dtype=False,
      special=[sv([INF, -INF, 0.0], value=[INF, -INF, 0], grads=([1, 1, 1],))]),
    # ------------------------------------------------------------------ elementwise
    S("exp", tc.exp, np.exp, UN_SHAPES, covers=("exp",),
      special=[sv([0.0, -INF, 800.0, -800.0], value=[1, 0, INF, 0], grads=([1, 0, INF, 0],))]),
    S("log", tc.log, np.log, UN_SHAPES, gen=_pos(), covers=("log",),
      special=[sv([0.0, INF, 1.0], value=[-INF, INF, 0], grads=([INF, 0, 1],))]),
    S("log1p", tc.log1p, np.log1p, UN_SHAPES, domain=(-0.5, 2), covers=("log1p",),
      special=[sv([-1.0, 0.0, INF], value=[-INF, 0, INF], grads=([INF, 1, 0],))]),
    S("expm1", tc.expm1, np.expm1, UN_SHAPES, covers=("expm1",),
      special=[sv([0.0, -INF, 800.0], value=[0, -1, INF], grads=([1, 0, INF],))]),
    S("sqrt", tc.sqrt, np.sqrt, UN_SHAPES, gen=_pos(), covers=("sqrt",),
      special=[sv([0.0, INF, 4.0], value=[0, INF, 2], grads=([INF, 0, 0.25],))]),
    S("abs", tc.abs, np.abs, UN_SHAPES, kinks=(0.0,), covers=("abs",),
      special=[sv([0.0, -0.0, INF, -INF], value=[0, 0, INF, INF], grads=([0, 0, 1, -1],))]),
    S("sin", tc.sin, np.sin, UN_SHAPES, covers=("sin",),
      special=[sv([0.0, HALF_PI], value=[0, 1], grads=([1, 0],))]),
    S("cos", tc.cos, np.cos, UN_SHAPES, covers=("cos",),
      special=[sv([0.0, HALF_PI], value=[1, 0], grads=([0, -1],))]),
    S("tanh", tc.tanh, np.tanh, UN_SHAPES, covers=("tanh",),
      special=[sv([0.0, INF, -INF, 1000.0], value=[0, 1, -1, 1], grads=([1, 0, 0, 0],))]),
    S("sigmoid", tc.sigmoid, sps.expit, UN_SHAPES, domain=(-6, 6), covers=("sigmoid",),
      special=[sv([0.0, INF, -INF, 1000.0, -1000.0], value=[0.5, 1, 0, 1, 0],
                  grads=([0.25, 0, 0, 0, 0],))]),
    S("relu", tc.relu, lambda x: np.maximum(x, 0), UN_SHAPES, kinks=(0.0,), covers=("relu",),
      special=[sv([0.0, -0.0, INF, -INF], value=[0, 0, INF, 0], grads=([0, 0, 1, 0],))]),
    S("softplus", tc.softplus, lambda x: np.logaddexp(0, x), UN_SHAPES, domain=(-6, 6),
      covers=("softplus",),
      special=[sv([0.0, INF, -INF, 1000.0, -1000.0], value=[LOG2, INF, 0, 1000, 0],
                  grads=([0.5, 1, 0, 1, 0],))]),
    S("atan", tc.atan, np.arctan, UN_SHAPES, covers=("atan",),
      special=[sv([0.0, INF, -INF, 1e200], value=[0, HALF_PI, -HALF_PI, HALF_PI],
                  grads=([1, 0, 0, 0],))]),
    S("erf", tc.erf, sps.erf, UN_SHAPES, covers=("erf",),
      special=[sv([0.0, INF, -INF], value=[0, 1, -1], grads=([2 / np.sqrt(np.pi), 0, 0],))]),
    # ------------------------------------------------------------------ reductions
    S("sum_scalar", tc.sum, np.sum, [((),)], covers=("sum",)),
    S("sum", tc.sum, np.sum, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}, {"axis": -1, "keepdims": True}], covers=("sum",),
      special=[sv([INF, 1.0], value=INF, grads=([1, 1],)),
               sv([[0.0, -INF]], axis=1, value=[-INF], grads=([[1, 1]],))]),
    S("sum_axes", tc.sum, np.sum, [((2, 3, 4),)], kwargs=[{"axis": (0, 2)}], covers=("sum",)),
    S("max", tc.max, np.max, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 1}, {"axis": (0, 1), "keepdims": True}], covers=("max",),
      special=[sv([[1.0, 1.0, 0.0], [INF, 2.0, INF]], axis=1, value=[1, INF],
                  grads=([[0.5, 0.5, 0], [0.5, 0, 0.5]],))]),
    S("min", tc.min, np.min, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}, {"axis": -1, "keepdims": True}], covers=("min",),
      special=[sv([[1.0, 1.0, 0.0], [-INF, 2.0, -INF]], axis=1, value=[0, -INF],
                  grads=([[0, 0, 1], [0.5, 0, 0.5]],))]),
    S("logsumexp", tc.logsumexp, sps.logsumexp, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 1}, {"axis": -1, "keepdims": True}], covers=("logsumexp",),
      special=[sv([[1000.0, 1000.0], [-INF, 0.0], [1e4, -1e4]], axis=1,
                  value=[1000 + LOG2, 0, 1e4], grads=([[0.5, 0.5], [0, 1], [1, 0]],))]),
    S("softmax_cross_entropy", tc.softmax_cross_entropy,
      lambda z, q, axis=-1: -(q * sps.log_softmax(z, axis)).sum(axis),
      [((4, 5), (4, 5)), ((2, 3, 4), (2, 3, 4))], kwargs=[{}, {"axis": 1}],
      covers=("softmax_cross_entropy",),
      special=[sv([[1000.0, -1000.0], [0.0, 0.0]], [[0.0, 1.0], [0.5, 0.5]], value=[2000, LOG2],
                  grads=([[1, -1], [0, 0]], [[0, 2000], [LOG2, LOG2]]))]),
    # ------------------------------------------------------------------ matmul
    S("matmul", tc.matmul, np.matmul,
      [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 3)),
       ((3, 4), (4,)), ((4,), (4,))], covers=("matmul", "transpose", "expand_dims", "squeeze"),
      special=[sv([[INF, 0.0]], [[1.0], [0.0]], value=[[INF]], grads=([[1, 0]], [[INF], [0]]))]),
    S("affine", tc.affine, lambda x, w, b=None: x @ w.T + (0 if b is None else b),
      [((5, 3), (4, 3), (4,)), ((2, 5, 3), (4, 3), (4,)), ((3,), (4, 3), (4,))],
      covers=("affine",),
      special=[sv([[INF, 0.0]], [[1.0, 0.0]], [0.0], value=[[INF]],
                  grads=([[1, 0]], [[INF, 0]], [1])),
               sv([[0.0, 0.0]], [[1.0, 2.0]], [3.0], value=[[3]],
                  grads=([[1, 2]], [[0, 0]], [1]))]),
    S("affine_nobias", tc.affine, lambda x, w: x @ w.T, [((5, 3), (4, 3))], covers=("affine",)),
    # ------------------------------------------------------------------ shape
    S("reshape", tc.reshape, np.reshape, [((3, 4),), ((2, 3, 2),)],
      kwargs=[{"shape": (4, 3)}, {"shape": (-1,)}, {"shape": (2, 6)}], covers=("reshape",),
      special=[sv([INF, -INF, 0.0, 1.0], shape=(2, 2), value=[[INF, -INF], [0, 1]],
                  grads=([1, 1, 1, 1],))]),
    S("transpose", tc.transpose, np.transpose, [((3, 4),), ((2, 3, 4),)][1:],
      kwargs=[{}, {"axes": (1, 0, 2)}, {"axes": (2, 0, 1)}], covers=("transpose",),
      special=[sv([[INF, 0.0, -INF]], value=[[INF], [0], [-INF]], grads=([[1, 1, 1]],))]),
    S("broadcast_to", tc.broadcast_to, np.broadcast_to, [((3, 1),), ((4,),)],
      kwargs=[{"shape": (2, 3, 4)}], covers=("broadcast_to", "sum_to"),
      special=[sv([INF], shape=(3,), value=[INF, INF, INF], grads=([3],))]),
    S("sum_to", tc.sum_to, lambda x, shape: np.sum(x, axis=0).sum(axis=1, keepdims=True),
      [((2, 3, 4),)], kwargs=[{"shape": (3, 1)}], covers=("sum_to", "broadcast_to"),
      special=[sv([[INF, 1.0], [2.0, 3.0]], shape=(2,), value=[INF, 4],
                  grads=([[1, 1], [1, 1]],))]),
    S("expand_dims", tc.expand_dims, np.expand_dims, [((3, 4),)],
      kwargs=[{"axis": 0}, {"axis": -1}, {"axis": (0, 2)}], covers=("expand_dims",),
      special=[sv([INF, 0.0], axis=0, value=[[INF, 0]], grads=([1, 1],))]),
    S("squeeze", tc.squeeze, np.squeeze, [((3, 1, 4, 1),)],
      kwargs=[{}, {"axis": 1}, {"axis": (1, 3)}], covers=("squeeze",),
      special=[sv([[INF, 0.0]], value=[INF, 0], grads=([[1, 1]],))]),
    S("concat", lambda *xs, axis: tc.concat(xs, axis=axis),
      lambda *xs, axis: np.concatenate(xs, axis=axis),
      [((2, 3), (4, 3)), ((2, 3), (1, 3), (3, 3))], kwargs=[{"axis": 0}], covers=("concat",),
      special=[sv([INF], [-INF, 0.0], axis=0, value=[INF, -INF, 0], grads=([1], [1, 1]))]),
    S("concat1", lambda *xs, axis: tc.concat(xs, axis=axis),
      lambda *xs, axis: np.concatenate(xs, axis=axis), [((2, 3), (2, 1))],
      kwargs=[{"axis": 1}, {"axis": -1}], covers=("concat",)),
    S("stack", lambda *xs, axis: tc.stack(xs, axis=axis), lambda *xs, axis: np.stack(xs, axis),
      [((2, 3), (2, 3), (2, 3))], kwargs=[{"axis": 0}, {"axis": 1}, {"axis": -1}],
      covers=("stack",),
      special=[sv([INF], [-INF], axis=0, value=[[INF], [-INF]], grads=([1], [1]))]),
    S("pad", tc.pad, lambda x, pad_width, value=0.0: np.pad(x, pad_width, constant_values=value),
      [((2, 3),)], kwargs=[{"pad_width": 1}, {"pad_width": ((0, 1), (2, 0)), "value": 1.5}],
      covers=("pad",),
      special=[sv([INF], pad_width=1, value=[0, INF, 0], grads=([1],))]),
    S("flip", tc.flip, np.flip, [((3, 4),)], kwargs=[{}, {"axis": 0}, {"axis": (1,)}],
      covers=("flip",),
      special=[sv([INF, 0.0], value=[0, INF], grads=([1, 1],))]),
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
      covers=("get_item", "scatter_add"),
      special=[sv([INF, 1.0, 2.0], index=(np.array([0, 0, 2]),), value=[INF, INF, 2],
                  grads=([2, 0, 1],))]),
    S("scatter_add", tc.scatter_add,
      lambda x, index, shape: _np_scatter(x, index, shape), [((4, 3),)],
      kwargs=[{"index": (np.array([0, 2, 0, 1]),), "shape": (3, 3)}], covers=("scatter_add",),
      special=[sv([INF, 1.0], index=(np.array([0, 0]),), shape=(2,), value=[INF, 0],
                  grads=([1, 1],))]),
    S("take", tc.take, lambda x, indices, axis: np.take(x, indices, axis), [((5, 3),)],
      kwargs=[{"indices": np.array([[0, 4], [4, 1]]), "axis": 0},
              {"indices": np.array([2, 0, 2]), "axis": 1}], covers=("take", "scatter_add"),
      special=[sv([INF, 1.0], indices=np.array([1, 1, 0]), axis=0, value=[1, 1, INF],
                  grads=([1, 2],))]),
    # ------------------------------------------------------------------ composites
    S("mean", tc.mean, np.mean, [((3, 4),)],
      kwargs=[{}, {"axis": 0}, {"axis": 1, "keepdims": True}]),
    S("var", tc.var, np.var, [((3, 4),)], kwargs=[{}, {"axis": 0}, {"axis": 1, "ddof": 1}],
      special=[sv([[2.0, 2.0]], axis=1, value=[0], grads=([[0, 0]],))]),
    S("std", tc.std, np.std, [((3, 4),)], kwargs=[{}, {"axis": 1}],
      special=[sv([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], axis=1, value=[0, 0],
                  grads=(np.zeros((2, 3)),)),
               sv([[1.0, 1.0, 1.0]], axis=1, ddof=1, value=[0], grads=(np.zeros((1, 3)),)),
               sv([[0.1, 0.1, 0.1]], axis=1, value=FINITE, grads=(FINITE,))]),
    S("clip", tc.clip, lambda x, lo, hi: np.clip(x, lo, hi), [((3, 4),)],
      kwargs=[{"lo": -0.5, "hi": 0.7}], kinks=(-0.5, 0.7)),
    S("softmax", tc.softmax, lambda x, axis=-1: sps.softmax(x, axis), [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}],
      special=[sv([[1e4, 0.0, -1e4]], value=[[1, 0, 0]], grads=([[0, 0, 0]],))]),
    S("log_softmax", tc.log_softmax, lambda x, axis=-1: sps.log_softmax(x, axis),
      [((3, 4),)], kwargs=[{}, {"axis": 0}],
      special=[sv([[1e4, 0.0, -1e4]], value=[[0, -1e4, -2e4]], grads=([[-2, 1, 1]],))]),
    # ==== windows: unfold/fold, conv, pool (CNN work) — add specs below this line ====
    # references: the direct loops of tests/cnn/refs.py (same signatures as the functions)
    S("unfold", tc.ops.unfold, __import__("cnn.refs").refs.unfold, [((2, 3, 5, 4),)],
      kwargs=[{"kernel": 2}, {"kernel": (2, 3), "stride": 2}, {"kernel": 2, "padding": 1},
              {"kernel": (3, 2), "stride": (1, 2), "padding": ((1, 0), (0, 1)),
               "dilation": (2, 1)}, {"kernel": 1}, {"kernel": 2, "stride": 2}],
      covers=("unfold", "fold"), order=1,
      special=[sv([[[[INF, 0.0], [0.0, -INF]]]], kernel=2, value=[[[INF, 0, 0, -INF]]],
                  grads=(np.ones((1, 1, 2, 2)),))]),
    S("unfold_few_channels", tc.ops.unfold, __import__("cnn.refs").refs.unfold, [((2, 1, 4, 9),)],
      kwargs=[{"kernel": (2, 3)}, {"kernel": 2, "stride": (1, 2), "padding": 1, "dilation": 2}],
      covers=("unfold",), order=1),
    S("fold", tc.ops.fold, __import__("cnn.refs").refs.fold, [((2, 12, 12),)],
      kwargs=[{"output_size": (4, 5), "kernel": 2},
              {"output_size": (5, 6), "kernel": (2, 2), "stride": 2, "padding": 1}],
      covers=("fold", "unfold"), order=1,
      special=[sv([[[INF, 0.0, 0.0, -INF]]], output_size=(2, 2), kernel=2,
                  value=[[[[INF, 0], [0, -INF]]]], grads=(np.ones((1, 1, 4)),))]),
    S("fold_dilated", tc.ops.fold, __import__("cnn.refs").refs.fold, [((2, 15, 12),)],
      kwargs=[{"output_size": (6, 4), "kernel": (3, 2), "stride": (2, 1), "dilation": (1, 2),
               "padding": ((1, 0), (1, 2))}], covers=("fold",), order=1),
    S("fold_nonoverlap", tc.ops.fold, __import__("cnn.refs").refs.fold, [((2, 6, 8),)],
      kwargs=[{"output_size": (4, 7), "kernel": 2, "stride": 2}], covers=("fold",), order=1),
    S("conv2d", tc.functional.conv2d, __import__("cnn.refs").refs.conv2d,
      [((2, 3, 5, 4), (4, 3, 2, 3)), ((2, 3, 5, 4), (4, 3, 2, 3), (4,))],
      kwargs=[{}, {"stride": 2, "padding": 1}, {"padding": "same"},
              {"dilation": (2, 1), "padding": (1, 0), "stride": (1, 2)}],
      covers=("unfold", "matmul", "reshape", "transpose")),
    S("conv2d_primitive", tc.ops.windows.conv2d, __import__("cnn.refs").refs.conv2d,
      [((2, 3, 5, 4), (4, 3, 2, 3)), ((2, 1, 6, 7), (3, 1, 3, 3)), ((2, 3, 5, 5), (2, 3, 1, 1)),
       ((2, 3, 5, 4), (4, 3, 2, 3), (4,)), ((2, 1, 6, 7), (3, 1, 3, 3), (3,))],
      kwargs=[{}, {"stride": 2, "padding": 1}, {"padding": ((1, 0), (2, 1))},
              {"dilation": (2, 1), "padding": (1, 0), "stride": (1, 2)}, {"stride": (2, 1)}],
      covers=("conv2d", "unfold", "fold", "matmul", "reshape", "transpose"),
      special=[sv([[[[INF, 0.0]]]], [[[[1.0]]]], value=[[[[INF, 0]]]],
                  grads=([[[[1, 1]]]], [[[[INF]]]])),
               sv([[[[INF, 0.0]]]], [[[[1.0]]]], [-1.0], value=[[[[INF, -1]]]],
                  grads=([[[[1, 1]]]], [[[[INF]]]], [2]))]),
    S("conv2d_groups", tc.functional.conv2d, __import__("cnn.refs").refs.conv2d,
      [((2, 4, 5, 4), (6, 2, 3, 2), (6,))],
      kwargs=[{"groups": 2}, {"groups": 2, "stride": 2, "padding": 1, "dilation": (1, 2)}]),
    S("conv2d_depthwise", tc.functional.conv2d, __import__("cnn.refs").refs.conv2d,
      [((2, 3, 4, 4), (6, 1, 3, 3))], kwargs=[{"groups": 3, "padding": 1}]),
    S("conv1d", tc.functional.conv1d, __import__("cnn.refs").refs.conv1d,
      [((2, 3, 7), (4, 3, 3), (4,))],
      kwargs=[{}, {"stride": 2, "padding": 1}, {"dilation": 2, "padding": "same"}]),
    S("conv_transpose2d", tc.functional.conv_transpose2d,
      __import__("cnn.refs").refs.conv_transpose2d,
      [((2, 3, 3, 4), (3, 2, 3, 2)), ((2, 3, 3, 4), (3, 2, 3, 2), (2,))],
      kwargs=[{}, {"stride": 2, "padding": 1, "output_padding": 1},
              {"stride": (2, 1), "dilation": (1, 2), "padding": (0, 1)}], covers=("fold",)),
    S("conv_transpose2d_groups", tc.functional.conv_transpose2d,
      __import__("cnn.refs").refs.conv_transpose2d, [((2, 4, 3, 3), (4, 2, 2, 3))],
      kwargs=[{"groups": 2, "stride": 2}]),
    S("conv2d_fft", tc.functional.conv2d_fft, __import__("cnn.refs").refs.conv2d,
      [((2, 3, 5, 6), (4, 3, 3, 2)), ((1, 2, 4, 4), (3, 2, 4, 4), (3,))],
      kwargs=[{}, {"padding": 1}, {"padding": "same"}], covers=("rfft2", "irfft2")),
    S("max_pool2d", tc.functional.max_pool2d, __import__("cnn.refs").refs.max_pool2d,
      [((2, 3, 6, 5),)],
      kwargs=[{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
              {"kernel_size": 2, "stride": 1, "dilation": 2}, {"kernel_size": (2, 3)}],
      covers=("max", "pad", "unfold")),
    S("max_pool2d_primitive", tc.ops.windows.max_pool2d, __import__("cnn.refs").refs.max_pool2d,
      [((2, 3, 6, 5),), ((2, 1, 5, 5),)],
      kwargs=[{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1},
              {"kernel_size": 3, "stride": 2, "padding": 1},
              {"kernel_size": (2, 3), "stride": (1, 2), "dilation": (2, 1), "padding": (1, 0)}],
      covers=("max_pool2d", "unfold", "fold"),
      # ties share the cotangent (1/k each); an infinite maximum is a maximum like any other
      special=[sv([[[[1.0, 1.0], [0.0, -INF]]]], kernel_size=2, value=[[[[1.0]]]],
                  grads=([[[[0.5, 0.5], [0, 0]]]],)),
               sv([[[[INF, 0.0, -INF], [2.0, 2.0, 1.0]]]], kernel_size=2, stride=1,
                  value=[[[[INF, 2.0]]]], grads=([[[[1, 0, 0], [0, 1, 0]]]],))]),
    S("max_pool2d_primitive_channels_last",
      lambda x, **k: tc.ops.windows.max_pool2d(tc.transpose(x, (0, 3, 1, 2)), **k),
      lambda x, **k: __import__("cnn.refs").refs.max_pool2d(x.transpose(0, 3, 1, 2), **k),
      [((2, 5, 6, 4),)],
      kwargs=[{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1}],
      covers=("max_pool2d",)),
    S("max_pool2d_channels_last",
      lambda x, **k: tc.functional.max_pool2d(tc.transpose(x, (0, 3, 1, 2)), **k),
      lambda x, **k: __import__("cnn.refs").refs.max_pool2d(x.transpose(0, 3, 1, 2), **k),
      [((2, 4, 6, 3),)], kwargs=[{"kernel_size": 2}]),
    S("avg_pool2d", tc.functional.avg_pool2d, __import__("cnn.refs").refs.avg_pool2d,
      [((2, 3, 6, 5),)],
      kwargs=[{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
              {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}]),
    S("adaptive_avg_pool2d", tc.functional.adaptive_avg_pool2d,
      __import__("cnn.refs").refs.adaptive_avg_pool2d, [((2, 3, 6, 5),)],
      kwargs=[{"output_size": (2, 3)}, {"output_size": 1}, {"output_size": (3, 5)},
              {"output_size": (4, 2)}]),
    S("global_avg_pool2d", tc.functional.global_avg_pool2d,
      __import__("cnn.refs").refs.global_avg_pool2d, [((2, 3, 4, 5),)],
      kwargs=[{}, {"keepdims": True}]),
    S("rfft2", tc.ops.rfft2, __import__("cnn.refs").refs.dft2, [((2, 4, 5),), ((3, 4),)],
      kwargs=[{"s": (4, 5)}, {"s": (5, 8)}, {"s": (6, 7)}], covers=("rfft2", "irfft2"),
      special=[sv([[1.0, 0.0], [0.0, 0.0]], s=(2, 2), value=[[[1, 1], [1, 1]], [[0, 0], [0, 0]]],
                  grads=(FINITE,))]),
    S("irfft2", tc.ops.irfft2, __import__("cnn.refs").refs.idft2,
      [((2, 2, 4, 4),), ((3, 2, 4, 4),)],
      kwargs=[{"s": (4, 6)}, {"s": (4, 7)}], covers=("irfft2", "rfft2"),
      special=[sv(np.zeros((2, 2, 2)), s=(2, 2), value=np.zeros((2, 2)), grads=(FINITE,))]),
    # ==== linalg (eigh, solve, inv, slogdet, cholesky, norm) — add specs below this line ====
    S("eigh", lambda a: _eigh_invariant(*tc.linalg.eigh(a)),
      lambda a: _eigh_invariant(*np.linalg.eigh(a)), [((3, 3),), ((2, 4, 4),)],
      gen=lambda rng, shapes, kw: [_sym_separated(rng, s) for s in shapes], covers=("eigh",),
      special=[sv(np.eye(2), value=([1, 1], FINITE, FINITE), grads=(FINITE,))]),
    S("eigvalsh", tc.linalg.eigvalsh, np.linalg.eigvalsh, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_sym_separated(rng, s) for s in shapes], covers=("eigh",),
      special=[sv(np.eye(3), value=[1, 1, 1], grads=(np.eye(3),))]),
    S("solve", tc.linalg.solve, np.linalg.solve,
      [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 2)), ((2, 3, 3), (3,)),
       ((2, 3, 3), (3, 1)), ((3, 3), (2, 3, 2))],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0]),
                                   rng.uniform(-2, 2, shapes[1])], covers=("solve",),
      special=[sv(2 * np.eye(2), [0.0, 0.0], value=[0, 0], grads=([[0, 0], [0, 0]], [0.5, 0.5]))]),
    S("inv", tc.linalg.inv, np.linalg.inv, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0])], covers=("inv",),
      special=[sv([[2.0, 0.0], [0.0, 4.0]], value=[[0.5, 0], [0, 0.25]],
                  grads=([[-0.25, -0.125], [-0.125, -0.0625]],))]),
    S("slogdet", tc.linalg.slogdet, lambda a: tuple(np.linalg.slogdet(a)),
      [((3, 3),), ((2, 3, 3),), ((2, 2),)],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0], flip=True)],
      covers=("slogdet", "inv"),
      special=[sv([[-2.0, 0.0], [0.0, 1.0]], value=(-1, LOG2), grads=([[-0.5, 0], [0, 1]],))]),
    S("det", tc.linalg.det, np.linalg.det, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_well_cond(rng, shapes[0], flip=True)],
      covers=("slogdet", "inv")),
    S("cholesky", tc.linalg.cholesky, np.linalg.cholesky, [((3, 3),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_spd(rng, shapes[0])], covers=("cholesky", "inv"),
      special=[sv(np.eye(2), value=np.eye(2), grads=([[0.5, 0.5], [0.5, 0.5]],))]),
    S("svd", lambda a: _svd_invariant(*tc.linalg.svd(a)),
      lambda a: _svd_invariant(*np.linalg.svd(a, full_matrices=False)),
      [((4, 3),), ((3, 4),), ((2, 3, 3),)],
      gen=lambda rng, shapes, kw: [_sv_separated(rng, s) for s in shapes], covers=("svd",),
      special=[sv(np.eye(2), value=([1, 1], FINITE, FINITE, np.eye(2)), grads=(FINITE,)),
               sv([[3.0, 0.0], [0.0, 2.0], [0.0, 0.0]], value=([3, 2], FINITE, FINITE, FINITE),
                  grads=(FINITE,))]),
    S("norm_vec", tc.linalg.norm, np.linalg.norm, [((5,),)],
      kwargs=[{}, {"ord": 2}, {"ord": 1}, {"ord": np.inf}, {"keepdims": True}],
      kinks=(0.0,), margin=0.05,
      special=[sv([0.0, 0.0, 0.0], value=0, grads=([0, 0, 0],)),
               sv([0.0, 0.0], ord=1, value=0, grads=([0, 0],))]),
    S("norm_axis", tc.linalg.norm, np.linalg.norm, [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 1}, {"axis": 0, "keepdims": True}, {"axis": -1, "ord": 1},
              {"axis": (-2, -1)}], kinks=(0.0,), margin=0.05),
    S("norm_mat", tc.linalg.norm, np.linalg.norm, [((3, 4),), ((4, 3),)],
      kwargs=[{"ord": "fro"}, {"ord": 1}, {"ord": np.inf}, {"ord": 2},
              {"ord": 2, "keepdims": True, "axis": (1, 0)}], kinks=(0.0,), margin=0.05,
      covers=("eigh",)),
    # ==== nn functional: activations, losses, norms, dropout — add specs below this line ====
    S("F.sigmoid", tc.functional.sigmoid, sps.expit, UN_SHAPES, domain=(-6, 6)),
    S("F.tanh", tc.functional.tanh, np.tanh, UN_SHAPES),
    S("F.relu", tc.functional.relu, lambda x: np.maximum(x, 0), UN_SHAPES, kinks=(0.0,)),
    S("leaky_relu", tc.functional.leaky_relu,
      lambda x, negative_slope=0.01: np.where(x > 0, x, negative_slope * x), UN_SHAPES,
      kwargs=[{}, {"negative_slope": 0.2}], kinks=(0.0,)),
    S("prelu", tc.functional.prelu, lambda x, w: _nn_prelu(x, w),
      [((2, 3, 4), (3,)), ((3, 4), (1,)), ((3, 4), (4,)), ((), ())], kinks=(0.0,)),
    S("elu", tc.functional.elu,
      lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))), UN_SHAPES,
      kwargs=[{}, {"alpha": 0.5}], kinks=(0.0,), covers=("expm1", "where")),
    S("selu", tc.functional.selu,
      lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(
          np.minimum(x, 0))), UN_SHAPES, kinks=(0.0,)),
    S("celu", tc.functional.celu,
      lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / alpha)),
      UN_SHAPES, kwargs=[{}, {"alpha": 2.0}], kinks=(0.0,)),
    S("gelu", tc.functional.gelu, lambda x, approximate="none": _nn_gelu(x, approximate),
      UN_SHAPES, domain=(-3, 3), kwargs=[{}, {"approximate": "tanh"}]),
    S("silu", tc.functional.silu, lambda x: x * sps.expit(x), UN_SHAPES, domain=(-4, 4)),
    S("mish", tc.functional.mish, lambda x: x * np.tanh(np.logaddexp(0, x)), UN_SHAPES,
      domain=(-4, 4)),
    S("F.softplus", tc.functional.softplus,
      lambda x, beta=1.0: np.logaddexp(0, beta * x) / beta, UN_SHAPES, domain=(-4, 4),
      kwargs=[{}, {"beta": 2.0}]),
    S("log_sigmoid", tc.functional.log_sigmoid, lambda x: -np.logaddexp(0, -x), UN_SHAPES,
      domain=(-5, 5)),
    S("softsign", tc.functional.softsign, lambda x: x / (1 + np.abs(x)), UN_SHAPES, kinks=(0.0,)),
    S("hard_tanh", tc.functional.hard_tanh,
      lambda x, min_val=-1.0, max_val=1.0: np.clip(x, min_val, max_val), UN_SHAPES,
      kwargs=[{}, {"min_val": -0.5, "max_val": 1.5}], kinks=(-1.0, 1.0, -0.5, 1.5)),
    S("relu6", tc.functional.relu6, lambda x: np.clip(x, 0, 6), UN_SHAPES, domain=(-2, 8),
      kinks=(0.0, 6.0)),
    S("hard_sigmoid", tc.functional.hard_sigmoid, lambda x: np.clip(x / 6 + 0.5, 0, 1),
      UN_SHAPES, domain=(-5, 5), kinks=(-3.0, 3.0)),
    S("hard_swish", tc.functional.hard_swish, lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
      UN_SHAPES, domain=(-5, 5), kinks=(-3.0, 3.0)),
    S("F.softmax", tc.functional.softmax, lambda x, axis=-1: sps.softmax(x, axis),
      [((2, 3, 4),)], kwargs=[{"axis": 1}]),
    S("F.log_softmax", tc.functional.log_softmax, lambda x, axis=-1: sps.log_softmax(x, axis),
      [((2, 3, 4),)], kwargs=[{"axis": 1}]),
    # -- ODE solvers (functional/ode.py): RK4 through its steps on dy/dt = y a; on a linear
    # system one step is y ← y R(ha), R the degree-4 Taylor polynomial of the exponential
    S("odeint_rk4", lambda y0, a: tc.odeint(lambda t, y: y @ a, y0, [0.0, 0.25, 0.5],
                                            method="rk4", step_size=0.025),
      lambda y0, a: np.stack([y0 @ np.linalg.matrix_power(_rk4_map(a * 0.025), k)
                              for k in (0, 10, 20)]),
      [((3, 2), (2, 2))], domain=(-1.0, 1.0)),
    # -- linear, embedding
    S("linear", tc.functional.linear, lambda x, w, b: x @ w.T + b,
      [((3, 4), (5, 4), (5,)), ((2, 3, 4), (5, 4), (5,)), ((4,), (5, 4), (5,))]),
    S("linear_nobias", lambda x, w: tc.functional.linear(x, w), lambda x, w: x @ w.T,
      [((3, 4), (2, 4))]),
    S("bilinear", tc.functional.bilinear,
      lambda x1, x2, w, b: np.einsum("ni,oij,nj->no", x1, w, x2) + b,
      [((3, 2), (3, 4), (5, 2, 4), (5,))]),
    S("embedding", lambda w, indices, padding_idx=None: tc.functional.embedding(
        indices, w, padding_idx), lambda w, indices, padding_idx=None: _nn_embedding(
        w, indices, padding_idx), [((5, 3),)],
      kwargs=[{"indices": np.array([[0, 4], [4, 1]])},
              {"indices": np.array([2, 0, 2]), "padding_idx": 0}]),
    # -- losses
    S("mse_loss", tc.functional.mse_loss,
      lambda x, t, reduction="mean": _nn_reduce((x - t) ** 2, reduction),
      [((3, 4), (3, 4)), ((5,), (5,))],
      kwargs=[{}, {"reduction": "sum"}, {"reduction": "none"}]),
    S("l1_loss", tc.functional.l1_loss,
      lambda x, t, reduction="mean": _nn_reduce(np.abs(x - t), reduction), [((3, 4), (3, 4))],
      kwargs=[{}, {"reduction": "none"}]),
    S("huber_loss", tc.functional.huber_loss,
      lambda x, t, reduction="mean", delta=1.0: _nn_reduce(_nn_huber(x - t, delta), reduction),
      [((3, 4), (3, 4))], kwargs=[{}, {"delta": 0.5, "reduction": "sum"}]),
    S("smooth_l1_loss", tc.functional.smooth_l1_loss,
      lambda x, t, reduction="mean", beta=1.0: _nn_reduce(
          _nn_huber(x - t, beta) / beta if beta else np.abs(x - t), reduction),
      [((3, 4), (3, 4))], kwargs=[{}, {"beta": 0.5}, {"beta": 0.0}]),
    S("gaussian_nll_loss", tc.functional.gaussian_nll_loss,
      lambda x, t, v, full=False: np.mean(0.5 * (np.log(v) + (x - t) ** 2 / v))
      + (0.5 * np.log(2 * np.pi) if full else 0.0), [((3, 4), (3, 4), (3, 4)),
                                                      ((3, 4), (3, 4), (3, 1))],
      kwargs=[{}, {"full": True}],
      gen=lambda rng, shapes, kw: [rng.uniform(-2, 2, shapes[0]), rng.uniform(-2, 2, shapes[1]),
                                   rng.uniform(0.3, 2, shapes[2])]),
    S("poisson_nll_loss", tc.functional.poisson_nll_loss,
      lambda x, t, **kw: _nn_poisson(x, t, **kw),
      [((3, 4), (3, 4))], kwargs=[{}, {"log_input": False}, {"full": True}],
      gen=lambda rng, shapes, kw: [rng.uniform(0.2, 2, shapes[0]), rng.uniform(0, 4, shapes[1])]),
    S("binary_cross_entropy", tc.functional.binary_cross_entropy,
      lambda p, t, weight=None, reduction="mean": _nn_reduce(
          -(t * np.log(p) + (1 - t) * np.log1p(-p)) * (1 if weight is None else weight),
          reduction), [((3, 4), (3, 4))],
      kwargs=[{}, {"reduction": "none"}, {"weight": np.array([0.5, 1.0, 2.0, 1.5])}],
      gen=lambda rng, shapes, kw: [rng.uniform(0.05, 0.95, shapes[0]),
                                   rng.uniform(0, 1, shapes[1])]),
    S("bce_with_logits", tc.functional.binary_cross_entropy_with_logits,
      lambda z, t, weight=None, pos_weight=None, reduction="mean": _nn_reduce(
          -((1 if pos_weight is None else pos_weight) * t * np.log(sps.expit(z))
            + (1 - t) * np.log(sps.expit(-z))) * (1 if weight is None else weight), reduction),
      [((3, 4), (3, 4))],
      kwargs=[{}, {"pos_weight": np.array([1.0, 2.0, 0.5, 3.0])}, {"reduction": "sum"},
              {"weight": np.array([[0.5], [1.0], [2.0]]), "reduction": "none"}],
      gen=lambda rng, shapes, kw: [rng.uniform(-4, 4, shapes[0]), rng.uniform(0, 1, shapes[1])]),
    S("cross_entropy", tc.functional.cross_entropy, lambda z, **kw: _nn_cross_entropy(z, **kw),
      [((4, 5),)],
      kwargs=[{"target": np.array([0, 3, 4, 3])},
              {"target": np.array([0, 3, 4, 3]), "weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0])},
              {"target": np.array([0, 3, 4, 3]), "label_smoothing": 0.1},
              {"target": np.array([2, 1, 4, 0]), "weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0]),
               "label_smoothing": 0.2, "reduction": "sum"},
              {"target": np.array([2, 1, 4, 0]), "reduction": "none"},
              {"target": np.array([2, 1, 4, 1]), "ignore_index": 1,
               "weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0])}],
      special=[sv([[1.0, 2.0], [3.0, 4.0]], target=np.array([1, 1]), ignore_index=1, value=0,
                  grads=(np.zeros((2, 2)),)),
               sv([[1.0, 2.0], [3.0, 4.0]], target=np.array([1, 1]), ignore_index=1,
                  label_smoothing=0.1, value=0, grads=(np.zeros((2, 2)),)),
               sv([[1e4, -1e4]], target=np.array([1]), value=2e4, grads=([[1, -1]],))]),
    S("cross_entropy_nd", tc.functional.cross_entropy, lambda z, **kw: _nn_cross_entropy(z, **kw),
      [((2, 3, 4),)], kwargs=[{"target": np.array([[0, 2, 1, 2], [1, 1, 0, 2]])},
                              {"target": np.array([[0, 2, 1, 2], [1, 1, 0, 2]]),
                               "reduction": "none", "label_smoothing": 0.3}]),
    S("cross_entropy_probs", tc.functional.cross_entropy,
      lambda z, q, **kw: _nn_cross_entropy(z, q, **kw), [((4, 5), (4, 5)), ((2, 3, 4), (2, 3, 4))],
      kwargs=[{}, {"label_smoothing": 0.1, "reduction": "sum"}],
      gen=lambda rng, shapes, kw: [rng.uniform(-2, 2, shapes[0]),
                                   sps.softmax(rng.uniform(-2, 2, shapes[1]), axis=1)]),
    S("nll_loss", tc.functional.nll_loss, lambda z, **kw: _nn_nll(z, **kw), [((4, 5),)],
      kwargs=[{"target": np.array([0, 3, 4, 3])},
              {"target": np.array([0, 3, 4, 3]), "weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0])},
              {"target": np.array([0, 3, 4, 3]), "reduction": "none"}],
      special=[sv([[-1.0, -2.0], [-3.0, -4.0]], target=np.array([0, 0]), ignore_index=0, value=0,
                  grads=(np.zeros((2, 2)),)),
               sv([[-1.0, -2.0]], target=np.array([1]), weight=np.array([1.0, 0.0]), value=0,
                  grads=(np.zeros((1, 2)),))]),
    S("kl_div", tc.functional.kl_div, lambda x, t, **kw: _nn_kl(x, t, **kw), [((3, 4), (3, 4))],
      kwargs=[{}, {"reduction": "batchmean"}, {"log_target": True}, {"reduction": "none"}],
      gen=lambda rng, shapes, kw: [rng.uniform(-3, 0, shapes[0]),
                                   (np.log if kw.get("log_target") else (lambda a: a))(
                                       rng.uniform(0.05, 1, shapes[1]))]),
    S("hinge_embedding_loss", tc.functional.hinge_embedding_loss,
      lambda x, target, margin=1.0, reduction="mean": _nn_reduce(
          np.where(target == 1, x, np.maximum(0, margin - x)), reduction), [((3, 4),)],
      kwargs=[{"target": np.array([[1, -1, -1, 1]] * 3)},
              {"target": np.array([[1, -1, -1, 1]] * 3), "margin": 0.5, "reduction": "sum"}],
      kinks=(1.0, 0.5)),
    S("multi_margin_loss", tc.functional.multi_margin_loss, lambda x, **kw: _nn_multi_margin(
        x, **kw), [((4, 5),)],
      kwargs=[{"target": np.array([0, 3, 4, 3])}, {"target": np.array([0, 3, 4, 3]), "p": 2},
              {"target": np.array([1, 3, 2, 3]), "weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0]),
               "margin": 0.5, "reduction": "none"}]),
    S("cosine_embedding_loss", tc.functional.cosine_embedding_loss,
      lambda x1, x2, target, margin=0.0: _nn_cosine_emb(x1, x2, target, margin),
      [((4, 3), (4, 3))], kwargs=[{"target": np.array([1, -1, -1, 1])},
                                  {"target": np.array([1, -1, -1, 1]), "margin": 0.1}]),
    # -- normalisation, dropout, penalties
    S("batch_norm", lambda x, w, b: tc.functional.batch_norm(x, None, None, w, b, training=True),
      lambda x, w, b: _nn_batch_norm(x, w, b), [((4, 3), (3,), (3,)), ((2, 3, 4), (3,), (3,))]),
    S("batch_norm_eval", lambda x, w, b, rm, rv: tc.functional.batch_norm(
        x, rm, rv, w, b, training=False), lambda x, w, b, rm, rv: _nn_batch_norm(
        x, w, b, rm, rv), [((4, 3), (3,), (3,))],
      kwargs=[{"rm": np.array([0.1, -0.2, 0.3]), "rv": np.array([0.5, 1.5, 2.0])}]),
    S("layer_norm", lambda x, w, b: tc.functional.layer_norm(x, w.shape, w, b),
      lambda x, w, b: _nn_layer_norm(x, w, b), [((2, 3, 4), (4,), (4,)),
                                                 ((2, 3, 4), (3, 4), (3, 4))]),
    S("group_norm", lambda x, w, b: tc.functional.group_norm(x, 2, w, b),
      lambda x, w, b: _nn_group_norm(x, 2, w, b), [((2, 4, 3), (4,), (4,))]),
    S("dropout", lambda x, p, rng: tc.functional.dropout(x, p, True, rng),
      lambda x, p, rng: x * (np.random.default_rng(rng).random(x.shape) < 1 - p) / (1 - p),
      [((3, 4),), ((2, 1, 3),)], kwargs=[{"p": 0.3, "rng": 0}, {"p": 0.0, "rng": 1}]),
    S("dropout2d", lambda x, p, rng: tc.functional.dropout2d(x, p, True, rng),
      lambda x, p, rng: x * (np.random.default_rng(rng).random(x.shape[:2] + (1,)) < 1 - p)
      / (1 - p), [((3, 4, 2),)], kwargs=[{"p": 0.5, "rng": 3}]),
    S("l1_penalty", lambda *ps: tc.functional.l1_penalty(ps),
      lambda *ps: sum(np.abs(p).sum() for p in ps), [((3, 4), (4,))], kinks=(0.0,)),
    S("l2_penalty", lambda *ps: tc.functional.l2_penalty(ps),
      lambda *ps: sum((p ** 2).sum() for p in ps), [((3, 4), (4,))]),
    # -- user rules: tc.custom_vjp and tc.checkpoint go through the same checks (their JVP is
    #    the transposed VJP; higher order recomputes the residuals on the traced inputs)
    S("custom_vjp", lambda x, y: _custom_mul_exp(x, y), lambda x, y: x * np.exp(y),
      BIN_SHAPES[:1] + [((2, 3), (2, 3))], covers=("custom_vjp",)),
    S("checkpoint", lambda x: tc.checkpoint(lambda v: tc.tanh(v) * v, x),
      lambda x: np.tanh(x) * x, UN_SHAPES, covers=("custom_vjp",)),
    # -- recurrences (ops/rnn.py): whole-sequence fused loops vs a per-step NumPy loop; the
    #    mask variant has a padded tail and a fully padded sequence
    S("rnn_scan", tc.rnn_scan, lambda x, h, w, **kw: _np_scan("rnn", x, h, None, w, None, **kw),
      [((4, 2, 3), (2, 3), (3, 3))],
      kwargs=[{}, {"nonlinearity": "relu"}, {"mask": _SCAN_MASK}], covers=("rnn_scan",),
      special=[sv([[[INF]]], [[0.0]], [[1.0]], value=[[[1.0]]],
                  grads=([[[0.0]]], [[0.0]], [[0.0]]))]),
    S("lstm_scan", tc.lstm_scan, lambda z, h, c, w, **kw: _np_scan("lstm", z, h, c, w, None, **kw),
      [((4, 2, 8), (2, 2), (2, 2), (8, 2))],
      kwargs=[{}, {"mask": _SCAN_MASK}], covers=("lstm_scan",),
      special=[sv([[[1e4, -1e4, 1e4, 1e4]]], [[0.0]], [[5.0]], [[1.0], [1.0], [1.0], [1.0]],
                  value=([[[float(np.tanh(1.0))]]], [[[1.0]]]),
                  grads=(FINITE, FINITE, [[0.0]], FINITE))]),
    S("lstm_scan_gates", lambda z, h, c, w, **kw: _LstmScan.apply(z, h, c, w, **kw),
      lambda z, h, c, w, **kw: _np_scan("lstm_gates", z, h, c, w, None, **kw),
      [((3, 2, 8), (2, 2), (2, 2), (8, 2))], kwargs=[{}, {"mask": _SCAN_MASK[:3]}],
      covers=("lstm_scan",)),
    # the cells (functional/rnn.py composites) as functions of (x, state, *params)
    S("rnn_cell", lambda x, h, wi, wh, bi, bh, **kw: tc.functional.rnn_cell(x, h, wi, wh, bi, bh,
                                                                            **kw),
      lambda x, h, wi, wh, bi, bh, **kw: _np_scan("rnn", (x @ wi.T + bi + bh)[None], h, None,
                                                  wh, None, **kw)[0],
      [((2, 3), (2, 4), (4, 3), (4, 4), (4,), (4,))], kwargs=[{}, {"nonlinearity": "relu"}]),
    S("lstm_cell", tc.functional.lstm_cell,
      lambda x, h, c, wi, wh, bi, bh: tuple(
          o[0] for o in _np_scan("lstm", (x @ wi.T + bi + bh)[None], h, c, wh, None)),
      [((2, 3), (2, 2), (2, 2), (8, 3), (8, 2), (8,), (8,))]),
    S("gru_cell", tc.functional.gru_cell,
      lambda x, h, wi, wh, bi, bh: _np_scan("gru", (x @ wi.T + bi)[None], h, None, wh, bh)[0],
      [((2, 3), (2, 2), (6, 3), (6, 2), (6,), (6,))]),
    S("gru_scan", tc.gru_scan, lambda x, h, w, b, **kw: _np_scan("gru", x, h, None, w, b, **kw),
      [((4, 2, 6), (2, 2), (6, 2), (6,))],
      kwargs=[{}, {"mask": _SCAN_MASK}], covers=("gru_scan",),
      special=[sv([[[1e4, -1e4, 1e4]]], [[0.5]], [[1.0], [1.0], [1.0]], [0.0, 0.0, 0.0],
                  value=[[[1.0]]], grads=(FINITE, FINITE, FINITE, FINITE))]),
    # -- attention (functional/attention.py composites): every mask kind, against NumPy
    S("scaled_dot_product_attention", tc.functional.scaled_dot_product_attention,
      lambda q, k, v, **kw: _np_sdpa(q, k, v, **kw), [((2, 3, 4), (2, 5, 4), (2, 5, 3))],
      kwargs=[{}, {"is_causal": True}, {"attn_mask": _ATT_BOOL},
              {"attn_mask": np.where(_ATT_BOOL, 0.0, -np.inf)},
              {"key_padding_mask": _ATT_KPM}, {"attn_mask": _ATT_DEAD}, {"scale": 0.3}],
      special=[sv([[[1e4, -1e4]]], [[[1.0, 0.0], [-1.0, 0.0]]], [[[2.0], [3.0]]], value=[[[2.0]]],
                  grads=(FINITE, FINITE, [[[1.0], [0.0]]]))]),
    S("dot_attention", tc.functional.dot_attention,
      lambda q, k, v, **kw: _np_luong(q, k, v, None, **kw), [((2, 3, 4), (2, 5, 4), (2, 5, 3))],
      kwargs=[{}, {"key_padding_mask": _ATT_KPM}]),
    S("general_attention", tc.functional.general_attention,
      lambda q, k, v, w, **kw: _np_luong(q, k, v, w, **kw),
      [((2, 3, 4), (2, 5, 2), (2, 5, 3), (4, 2))], kwargs=[{}, {"key_padding_mask": _ATT_KPM}]),
    S("additive_attention", tc.functional.additive_attention,
      lambda q, k, v, wq, wk, a, **kw: _np_additive(q, k, v, wq, wk, a, **kw),
      [((2, 1, 4), (2, 5, 3), (2, 5, 3), (6, 4), (6, 3), (6,))],
      kwargs=[{}, {"key_padding_mask": _ATT_KPM}]),
    S("multi_head_attention", lambda q, k, v, wi, bi, wo, bo, **kw: tc.functional.
      multi_head_attention(q, k, v, 2, wi, bi, wo, bo, **kw)[0],
      lambda q, k, v, wi, bi, wo, bo, **kw: _np_mha(q, k, v, 2, wi, bi, wo, bo, **kw),
      [((2, 3, 4), (2, 5, 4), (2, 5, 4), (12, 4), (12,), (4, 4), (4,))],
      kwargs=[{}, {"key_padding_mask": _ATT_KPM}, {"attn_mask": ~_ATT_BOOL}]),
    # -- fused transformer primitives (issue 11): exact GELU and its derivative
    S("ops.gelu", tc.gelu, lambda x: x * sps.ndtr(x), UN_SHAPES, domain=(-4, 4),
      covers=("gelu", "gelu_grad"),
      special=[sv([0.0, INF, -INF, 1e4, -1e4, -40.0], value=[0, INF, 0, 1e4, 0, 0],
                  grads=([0.5, 1, 0, 1, 0, 0],))]),
    S("gelu_grad", tc.gelu_grad,
      lambda x: sps.ndtr(x) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi), UN_SHAPES,
      domain=(-4, 4), covers=("gelu_grad",),
      special=[sv([0.0, 40.0, -40.0, INF, -INF], value=[0.5, 1, 0, 1, 0],
                  grads=([2 / np.sqrt(2 * np.pi), 0, 0, 0, 0],))]),
    # standardisation (layer / batch / group norm's core) over trailing, leading and split axes
    S("standardize", tc.standardize, lambda x, axis=-1, eps=1e-5: _np_standardize(x, axis, eps),
      [((3, 4),), ((2, 3, 4),)], kwargs=[{}, {"axis": (0,)}], covers=("standardize",),
      special=[sv([[1.0, 1.0, 1.0], [1e4, -1e4, 0.0], [0.0, 0.0, 3.0]], axis=1,
                  value=FINITE, grads=(np.zeros((3, 3)),))]),
    S("standardize_axes", tc.standardize,
      lambda x, axis=-1, eps=1e-5: _np_standardize(x, axis, eps), [((2, 3, 4),)],
      kwargs=[{"axis": (0, 2)}, {"axis": (1, 2), "eps": 0.1}], covers=("standardize",)),
    S("ops.leaky_relu", tc.leaky_relu, lambda x, negative_slope=0.01: np.where(
        x > 0, x, negative_slope * x), UN_SHAPES,
      kwargs=[{}, {"negative_slope": 0.2}, {"negative_slope": 1.5}, {"negative_slope": -0.3},
              {"negative_slope": 0.0}], kinks=(0.0,), covers=("leaky_relu",),
      special=[sv([0.0, -0.0, INF, -INF, 2.0], negative_slope=0.2, value=[0, 0, INF, -INF, 2],
                  grads=([0.2, 0.2, 1, 0.2, 1],)),
               sv([INF, -INF, -1.0], negative_slope=0.0, value=[INF, 0, 0], grads=([1, 0, 0],))]),
    S("ops.layer_norm", tc.layer_norm, lambda x, w, b: _nn_layer_norm(x, w, b),
      [((2, 3, 4), (4,), (4,)), ((2, 3, 4), (3, 4), (3, 4)), ((4,), (4,), (4,))],
      covers=("layer_norm",),
      special=[sv([[1.0, 1.0, 1.0], [1e4, -1e4, 0.0]], [2.0, 3.0, 4.0], [0.5, 0.0, -1.0],
                  value=FINITE, grads=(FINITE, FINITE, [2.0, 2.0, 2.0]))]),
    S("ops.batch_norm", tc.batch_norm, lambda x, w, b: _nn_batch_norm_stats(x, w, b),
      [((4, 3, 2, 2), (3,), (3,)), ((5, 2), (2,), (2,)), ((3, 2, 5), (2,), (2,))],
      covers=("batch_norm",),
      special=[sv([[1.0, 1e4], [1.0, -1e4], [1.0, 0.0]], [2.0, 3.0], [0.5, -1.0],
                  value=(FINITE, [1.0, 0.0], FINITE), grads=(FINITE, FINITE, [3.0, 3.0]))]),
    S("ops.batch_norm_relu", lambda x, w, b: tc.batch_norm(x, w, b, relu=True),
      lambda x, w, b: _nn_batch_norm_stats(x, w, b, relu=True),
      [((4, 3, 2, 2), (3,), (3,)), ((5, 2), (2,), (2,)), ((3, 2, 5), (2,), (2,))],
      covers=("batch_norm",)),
    # the residual (a ResNet block's shortcut) added before the ReLU, or alone
    S("ops.batch_norm_residual_relu",
      lambda x, w, b, r: tc.batch_norm(x, w, b, relu=True, residual=r),
      lambda x, w, b, r: _nn_batch_norm_stats(x, w, b, relu=True, residual=r),
      [((4, 3, 2, 2), (3,), (3,), (4, 3, 2, 2)), ((5, 2), (2,), (2,), (5, 2))],
      covers=("batch_norm",)),
    S("ops.batch_norm_residual", lambda x, w, b, r: tc.batch_norm(x, w, b, residual=r),
      lambda x, w, b, r: _nn_batch_norm_stats(x, w, b, residual=r),
      [((4, 3, 2, 2), (3,), (3,), (4, 3, 2, 2))], covers=("batch_norm",)),
    S("split_sizes", lambda x, **kw: tc.split_sizes(x, **kw),
      lambda x, sizes, axis=0: tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis)),
      [((6, 2),), ((6, 3, 2),)], kwargs=[{"sizes": (1, 2, 3)}, {"sizes": (4, 0, 2)}],
      covers=("split",),
      special=[sv([[INF, 0.0], [-INF, 1.0]], sizes=(1, 1), value=([[INF, 0]], [[-INF, 1]]),
                  grads=([[1, 1], [1, 1]],))]),
    S("split_sizes_axis1", lambda x, **kw: tc.split_sizes(x, **kw),
      lambda x, sizes, axis=0: tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis)),
      [((2, 5, 3),)], kwargs=[{"sizes": (2, 3), "axis": 1}], covers=("split",)),
    # fused softmax; the mask (True = allowed) has a fully masked row (all-zero weights)
    S("ops.softmax", tc.ops.reduce.softmax,
      lambda x, axis=-1, mask=None: _np_masked_softmax(x, axis, mask), [((3, 4),), ((2, 3, 4),)],
      kwargs=[{}, {"axis": 0}, {"mask": np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]],
                                                 dtype=bool)}], covers=("softmax",),
      special=[sv([[1e4, 0.0, -1e4], [0.0, -INF, 0.0]], value=[[1, 0, 0], [0.5, 0, 0.5]],
                  grads=(np.zeros((2, 3)),)),
               sv([[0.0, 7.0, 1e30], [1.0, 2.0, 3.0]], mask=np.array([[1, 0, 0], [0, 0, 0]], bool),
                  value=[[1, 0, 0], [0, 0, 0]], grads=(np.zeros((2, 3)),))]),
]


def _np_masked_softmax(x, axis, mask):
    if mask is None:
        return sps.softmax(x, axis)
    e = np.where(mask, np.exp(x - x.max(axis, keepdims=True)), 0.0)
    s = e.sum(axis, keepdims=True)
    return e / np.where(s > 0, s, 1.0)


def _np_standardize(x, axis, eps):
    ax = tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    return (x - x.mean(ax, keepdims=True)) / np.sqrt(x.var(ax, keepdims=True) + eps)


@tc.custom_vjp
def _custom_mul_exp(x, y):
    """z = x ⊙ eʸ with a hand-written rule: x̄ = z̄ ⊙ eʸ, ȳ = z̄ ⊙ z."""
    return x * tc.exp(y)


def _cme_fwd(x, y):
    e = tc.exp(y)
    return x * e, (x, e)


def _cme_bwd(res, g):
    x, e = res
    return g * e, g * x * e


_custom_mul_exp.defvjp(_cme_fwd, _cme_bwd)


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


def _sv_separated(rng, shape):
    """(…, m, n) with singular values about 1, 2, 3, … (well separated, none near 0)."""
    m, n = shape[-2:]
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal(shape[:-2] + (m, k)))
    v, _ = np.linalg.qr(rng.standard_normal(shape[:-2] + (n, k)))
    s = np.arange(k, 0, -1) + rng.uniform(-0.15, 0.15, shape[:-2] + (k,))
    return (u * s[..., None, :]) @ np.swapaxes(v, -1, -2)


def _svd_invariant(u, s, vh):
    """Sign-invariant functions of the singular vectors: U ⊙ U, Vh ⊙ Vh, and U Vh (each pair
    (uᵢ, vᵢ) flips together)."""
    return s, u * u, vh * vh, u @ vh


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


# ---------------------------------------------------------------- nn functional references (NumPy)


def _nn_reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](loss)


def _nn_prelu(x, w):
    if w.size > 1:
        w = w.reshape((w.size,) + (1,) * (x.ndim - 2))
    elif x.ndim == 0:
        w = w.reshape(())
    return np.where(x > 0, x, w * x)


def _nn_gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + sps.erf(x / np.sqrt(2)))


def _nn_embedding(w, indices, padding_idx):
    y = w[indices]
    if padding_idx is not None:
        y = y * (indices != padding_idx)[..., None]
    return y


def _nn_huber(d, delta):
    a = np.abs(d)
    return np.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))


def _nn_poisson(x, t, log_input=True, full=False):
    loss = np.exp(x) - t * x if log_input else x - t * np.log(x + 1e-8)
    if full:
        s = np.where(t > 1, t, 1.0)
        loss = loss + np.where(t > 1, s * np.log(s) - s + 0.5 * np.log(2 * np.pi * s), 0)
    return loss.mean()


def _nn_cross_entropy(z, target, weight=None, label_smoothing=0.0, reduction="mean",
                      ignore_index=None):
    """PyTorch's definition, written out with explicit loops over samples."""
    logp = sps.log_softmax(z, axis=1 if z.ndim > 1 else 0)
    zc = np.moveaxis(logp, 1, -1).reshape(-1, z.shape[1])  # (samples, C)
    C = z.shape[1]
    w = np.ones(C) if weight is None else weight
    if target.dtype.kind == "f":
        q = np.moveaxis(target, 1, -1).reshape(-1, C)
        q = q * (1 - label_smoothing) + label_smoothing / C
        losses = -(q * w * zc).sum(axis=1)
        out = losses.reshape(np.moveaxis(z, 1, -1).shape[:-1])
        return _nn_reduce(out, reduction)
    t = target.reshape(-1)
    losses, denom = [], 0.0
    for i, c in enumerate(t):
        if ignore_index is not None and c == ignore_index:
            losses.append(0.0)
            continue
        nll = -w[c] * zc[i, c]
        smooth = -(w * zc[i]).sum() / C
        losses.append((1 - label_smoothing) * nll + label_smoothing * smooth)
        denom += w[c]
    losses = np.array(losses).reshape(target.shape)
    if reduction == "mean":
        return losses.sum() / denom
    return _nn_reduce(losses, reduction)


def _nn_nll(x, target, weight=None, reduction="mean"):
    w = np.ones(x.shape[1]) if weight is None else weight
    losses = np.array([-w[c] * x[i, c] for i, c in enumerate(target)])
    if reduction == "mean":
        return losses.sum() / w[target].sum()
    return _nn_reduce(losses, reduction)


def _nn_kl(x, t, reduction="mean", log_target=False):
    loss = np.exp(t) * (t - x) if log_target else t * (np.log(t) - x)
    if reduction == "batchmean":
        return loss.sum() / x.shape[0]
    return _nn_reduce(loss, reduction)


def _nn_multi_margin(x, target, p=1, margin=1.0, weight=None, reduction="mean"):
    n, C = x.shape
    w = np.ones(C) if weight is None else weight
    out = np.zeros(n)
    for i in range(n):
        y = target[i]
        for j in range(C):
            if j != y:
                out[i] += w[y] * max(0.0, margin - x[i, y] + x[i, j]) ** p / C
    return _nn_reduce(out, reduction)


def _nn_cosine_emb(x1, x2, target, margin):
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1**2).sum(-1) + 1e-12) * ((x2**2).sum(-1) + 1e-12))
    return np.mean(np.where(target == 1, 1 - cos, np.maximum(0, cos - margin)))


def _nn_batch_norm(x, w, b, rm=None, rv=None, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if rm is None:
        mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    else:
        mu, var = rm.reshape(shape), rv.reshape(shape)
    return (x - mu) / np.sqrt(var + eps) * w.reshape(shape) + b.reshape(shape)


def _nn_layer_norm(x, w, b, eps=1e-5):
    axes = tuple(range(x.ndim - w.ndim, x.ndim))
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _nn_batch_norm_stats(x, w, b, eps=1e-5, relu=False, residual=None):
    """ops.batch_norm's three outputs: y, and the batch mean and biased variance per channel
    (``residual``: y + residual; ``relu``: y = max(y, 0))."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mu, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w.reshape(shape) + b.reshape(shape)
    if residual is not None:
        y = y + residual
    return (np.maximum(y, 0) if relu else y), mu.reshape(-1), var.reshape(-1)


def _nn_group_norm(x, g, w, b, eps=1e-5):
    n, c = x.shape[:2]
    xg = x.reshape(n, g, -1)
    y = (xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + eps)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return y.reshape(x.shape) * w.reshape(shape) + b.reshape(shape)


# ---------------------------------------------------------------- attention references (NumPy)


def _np_attend(e, v, allowed=None, weights=False):
    """softmax over the allowed keys (none allowed: zero weights), then the weighted values."""
    if allowed is not None:
        allowed = np.broadcast_to(allowed, e.shape)
        e = np.where(allowed, e, -np.inf)
    m = np.max(e, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    p = np.exp(e - m)
    z = p.sum(-1, keepdims=True)
    a = np.where(z > 0, p / np.where(z > 0, z, 1.0), 0.0)
    return (a @ v, a) if weights else a @ v


def _np_kpm(kpm, nd):
    return None if kpm is None else (~kpm).reshape(kpm.shape[:1] + (1,) * (nd - 1) + kpm.shape[1:])


def _np_sdpa(q, k, v, attn_mask=None, key_padding_mask=None, is_causal=False, scale=None):
    e = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    allowed = np.ones(e.shape, dtype=bool)
    if attn_mask is not None and attn_mask.dtype == bool:
        allowed &= attn_mask
    elif attn_mask is not None:
        e = e + attn_mask
        allowed &= np.isfinite(attn_mask)
    if key_padding_mask is not None:
        allowed &= _np_kpm(key_padding_mask, e.ndim - 1)
    if is_causal:
        lq, lk = e.shape[-2:]
        allowed &= np.arange(lk)[None, :] <= np.arange(lq)[:, None] + lk - lq
    return _np_attend(e, v, allowed)


def _np_luong(q, k, v, w, key_padding_mask=None):
    e = (q if w is None else q @ w) @ np.swapaxes(k, -1, -2)
    return _np_attend(e, v, _np_kpm(key_padding_mask, e.ndim - 1), weights=True)


def _np_additive(q, k, v, wq, wk, a, key_padding_mask=None):
    e = np.tanh((q @ wq.T)[..., :, None, :] + (k @ wk.T)[..., None, :, :]) @ a
    return _np_attend(e, v, _np_kpm(key_padding_mask, e.ndim - 1), weights=True)


def _np_mha(q, k, v, h, wi, bi, wo, bo, key_padding_mask=None, attn_mask=None):
    """Per head, by the definition: head_h = softmax(Q_h K_hᵀ/√d) V_h, concatenated, projected."""
    E = q.shape[-1]
    d = E // h
    Q, K, V = q @ wi[:E].T + bi[:E], k @ wi[E:2 * E].T + bi[E:2 * E], v @ wi[2 * E:].T + bi[2 * E:]
    heads = []
    for i in range(h):
        s = slice(i * d, (i + 1) * d)
        e = Q[..., s] @ np.swapaxes(K[..., s], -1, -2) / np.sqrt(d)
        allowed = np.ones(e.shape, dtype=bool)
        if key_padding_mask is not None:
            allowed &= _np_kpm(key_padding_mask, e.ndim - 1)
        if attn_mask is not None:
            allowed &= ~attn_mask
        heads.append(_np_attend(e, V[..., s], allowed))
    return np.concatenate(heads, axis=-1) @ wo.T + bo
