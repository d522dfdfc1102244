"""Reductions: sum (Linear), max/min (ties share the gradient equally), logsumexp (stable),
and the fused reductions of deep learning: softmax, standardisation (layer / batch norm)."""

from __future__ import annotations

import math

from ..autodiff.function import Function, Linear, primitive
from ..autodiff.mode import state as _grad_mode
from ..backend import (
    EW_PIECE,
    PARALLEL_MIN,
    kernel_threads,
    parallel_chunks,
    single_thread_blas,
    xp_of,
)
from ..devices import cpu_jit as _jit
from ..devices import cuda as _cuda
from ..tensor import Tensor
from ._util import (
    cast_like,
    check_residual,
    data_of,
    ndim_of,
    norm_axis,
    public,
    shape_of,
    sum_axes,
)
from .arithmetic import pow as ops_pow
from .elementwise import Relu, exp, log
from .shape import BroadcastTo, reshape


def _keep(g, x_shape, axis, keepdims):
    """Re-insert reduced axes as size 1 so ``g`` broadcasts against x."""
    if keepdims or len(axis) == len(x_shape):  # a full reduction broadcasts from ()
        return g
    shape = tuple(1 if i in axis else n for i, n in enumerate(x_shape))
    return g.reshape(shape)  # ndarray.reshape or Tensor.reshape (recorded)


@primitive
class Sum(Linear):
    """Sum over axes.

    Forward:  y = Σ_axis x
    VJP:      x̄ = broadcast_to(ȳ with axis kept, x.shape)
    JVP:      ẏ = Σ_axis ẋ
    """

    @staticmethod
    def forward(xp, x, *, axis, keepdims=False):
        # sums over outer memory axes as GEMVs (ops._util.sum_axes, devices/gemv_sum.py)
        return sum_axes(xp, x, axis, keepdims)

    @staticmethod
    def vjp(g, y, x, *, needs, axis, keepdims=False):
        return (BroadcastTo.apply(_keep(g, x.shape, axis, keepdims), shape=x.shape),)


@public(method=True)
def sum(x, axis=None, keepdims=False):  # noqa: A001 - the math name
    """Σ over ``axis`` (None: all)."""
    return Sum.apply(x, axis=norm_axis(axis, ndim_of(x), "sum"), keepdims=keepdims)


class _Extremum(Function):
    """max/min over axes: the gradient flows to the arg-extremum; k tied entries get 1/k each."""

    @classmethod
    def _weights(cls, y, x, axis, keepdims):
        yk = _keep(y, x.shape, axis, keepdims)
        m = cast_like(x == yk, x)
        return m / Sum.apply(m, axis=axis, keepdims=True)

    @classmethod
    def vjp(cls, g, y, x, *, needs, axis, keepdims=False):
        return (_keep(g, x.shape, axis, keepdims) * cls._weights(y, x, axis, keepdims),)

    @classmethod
    def jvp(cls, dxs, y, x, *, axis, keepdims=False):
        return Sum.apply(dxs[0] * cls._weights(y, x, axis, keepdims), axis=axis,
                         keepdims=keepdims)


@primitive
class Max(_Extremum):
    """Maximum over axes; k tied maxima share the gradient equally (1/k each).

    Forward:  y = max_axis x
    VJP:      x̄ = ȳ ⊙ [x = y] / #[x = y]
    JVP:      ẏ = Σ_axis ẋ ⊙ [x = y] / #[x = y]
    """

    @staticmethod
    def forward(xp, x, *, axis, keepdims=False):
        return x.max(axis=axis, keepdims=keepdims)


@public(method=True)
def max(x, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axis``; ties share the gradient."""
    ax = norm_axis(axis, ndim_of(x), "max")
    _nonempty(x, ax, "max")
    return Max.apply(x, axis=ax, keepdims=keepdims)


@primitive
class Min(_Extremum):
    """Minimum over axes; k tied minima share the gradient equally (1/k each).

    Forward:  y = min_axis x
    VJP:      x̄ = ȳ ⊙ [x = y] / #[x = y]
    JVP:      ẏ = Σ_axis ẋ ⊙ [x = y] / #[x = y]
    """

    @staticmethod
    def forward(xp, x, *, axis, keepdims=False):
        return x.min(axis=axis, keepdims=keepdims)


@public(method=True)
def min(x, axis=None, keepdims=False):  # noqa: A001
    """Minimum over ``axis``; ties share the gradient."""
    ax = norm_axis(axis, ndim_of(x), "min")
    _nonempty(x, ax, "min")
    return Min.apply(x, axis=ax, keepdims=keepdims)


def _softmax(x, axis, want_lse=False):
    """softmax(x) along ``axis`` (kept), and lse(x) if asked; accurate in float32 at any logits.

    exp(x − lse) would lose digits when lse is large (its float32 rounding, ~1e-3 at 1e4, lands
    in the exponent); e = exp(x − m) with the exact max m, then e / Σe, does not. m is a constant
    (softmax is invariant to it), so the rules stay exact under create_graph.
    """
    m = data_of(x).max(axis=axis, keepdims=True)
    xp = xp_of((m,))
    if _cuda.uses(xp):  # no host synchronisation on a GPU
        m = _cuda.finite_or_zero(m)
    elif not xp.isfinite(m).all():
        m = xp.where(xp.isfinite(m), m, 0)
    e = exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    return e / s, ((log(s) + m) if want_lse else None)


@primitive
class Logsumexp(Function):
    """log Σ exp over axes, computed with the max shifted out (finite for large inputs).

    Forward:  y = m + log Σ_axis exp(x − m),  m = max_axis x
    VJP:      x̄ = ȳ ⊙ softmax(x)            (softmax(x) = exp(x − y), max-shifted)
    JVP:      ẏ = Σ_axis ẋ ⊙ softmax(x)
    """

    @staticmethod
    def forward(xp, x, *, axis, keepdims=False):
        m = x.max(axis=axis, keepdims=True)
        if _cuda.uses(xp):  # no host synchronisation on a GPU
            m = _cuda.finite_or_zero(m)
        elif not xp.isfinite(m).all():  # an all −inf (or inf) slice: shift by 0 instead
            m = xp.where(xp.isfinite(m), m, 0)
        e = xp.exp(x - m)
        y = xp.log(e.sum(axis=axis, keepdims=True))
        y += m
        return y if keepdims else y.squeeze(axis)

    @staticmethod
    def vjp(g, y, x, *, needs, axis, keepdims=False):
        return (_keep(g, x.shape, axis, keepdims) * _softmax(x, axis)[0],)

    @staticmethod
    def jvp(dxs, y, x, *, axis, keepdims=False):
        return Sum.apply(dxs[0] * _softmax(x, axis)[0], axis=axis, keepdims=keepdims)


@public(method=True)
def logsumexp(x, axis=None, keepdims=False):
    """log Σ exp(x) over ``axis``, stable for large |x|."""
    ax = norm_axis(axis, ndim_of(x), "logsumexp")
    _nonempty(x, ax, "logsumexp")
    return Logsumexp.apply(x, axis=ax, keepdims=keepdims)


@primitive
class SoftmaxCrossEntropy(Function):
    """Cross-entropy of logits z against target weights q along ``axis``, fused.

    Forward:  ℓ = Σ_axis q ⊙ (lse(z) − z)      (= −Σ q ⊙ log softmax(z); lse max-shifted)
    VJP:      z̄ = ℓ̄ ⊙ ((Σ_axis q) softmax(z) − q),  q̄ = ℓ̄ ⊙ (lse(z) − z)
    JVP:      ℓ̇ = Σ_axis ż ⊙ ((Σ_axis q) softmax(z) − q) + Σ_axis q̇ ⊙ (lse(z) − z)

    A primitive by DESIGN §2 rule (3): the composite logsumexp − z, ⊙ q, Σ is four nodes where
    this is one, and the tiny-MLP benchmark is bound by per-node overhead. lse is recomputed in
    the rules (one cheap reduction) rather than stored.
    """

    @staticmethod
    def forward(xp, z, q, *, axis):
        m = z.max(axis=axis, keepdims=True)
        if _cuda.uses(xp):  # no host synchronisation on a GPU
            m = _cuda.finite_or_zero(m)
        elif not xp.isfinite(m).all():
            m = xp.where(xp.isfinite(m), m, 0)
        d = z - m  # log-softmax = d − log Σ exp d
        d -= xp.log(xp.exp(d).sum(axis=axis, keepdims=True))
        d *= q
        return -d.sum(axis=axis)

    @staticmethod
    def vjp(g, y, z, q, *, needs, axis):
        p, lse = _softmax(z, (axis,), want_lse=needs[1])
        gk = g.reshape(g.shape[:axis] + (1,) + g.shape[axis:])
        gz = gk * (q.sum(axis=axis, keepdims=True) * p - q) if needs[0] else None
        gq = gk * (lse - z) if needs[1] else None
        return gz, gq

    @staticmethod
    def jvp(dxs, y, z, q, *, axis):
        dz, dq = dxs
        p, lse = _softmax(z, (axis,), want_lse=dq is not None)
        out = None
        if dz is not None:
            out = (dz * (q.sum(axis=axis, keepdims=True) * p - q)).sum(axis=axis)
        if dq is not None:
            t = (dq * (lse - z)).sum(axis=axis)
            out = t if out is None else out + t
        return out


@public
def softmax_cross_entropy(z, q, axis=-1):
    """ℓ = −Σ_axis q ⊙ log softmax(z): per-example cross-entropy of logits ``z`` against target
    probabilities (or weights) ``q`` of the same shape; stable for any finite logits."""
    sz, sq = shape_of(z), shape_of(q)
    if sz != sq:
        raise ValueError(f"softmax_cross_entropy: z {sz} and q {sq} must have the same shape")
    ax = norm_axis(axis, len(sz), "softmax_cross_entropy")[0]
    return SoftmaxCrossEntropy.apply(z, q, axis=ax)


def _count(shape, axis):
    return math.prod(shape[a] for a in axis)


def _inv_std(x, axis, eps):
    """(σ² + ε)^(−½) over ``axis`` (kept), σ² the biased variance; arrays or Tensors."""
    r = 1.0 / _count(x.shape, axis)
    d = x - x.sum(axis=axis, keepdims=True) * r
    return ((d * d).sum(axis=axis, keepdims=True) * r + eps) ** -0.5


@primitive
class Standardize(Function):
    """Standardisation over axes (the core of layer, batch, group and instance norm), fused.

    Forward:  y = (x − μ)/√(σ² + ε),  μ, σ² the mean and biased variance over ``axis`` (n values)
    VJP:      x̄ = (ȳ − mean_axis ȳ − y ⊙ mean_axis(ȳ ⊙ y)) / √(σ² + ε)
    JVP:      ẏ = (ẋ − mean_axis ẋ − y ⊙ mean_axis(ẋ ⊙ y)) / √(σ² + ε)

    The Jacobian (I − 11ᵀ/n − y yᵀ/n)/√(σ² + ε) is symmetric, so both rules are one formula.
    A primitive by DESIGN §2 rule (3): the composite (mean, subtract, square, mean, add ε,
    power −½, multiply) is seven nodes and ~20 passes each way; this is five passes forward and
    ~11 back. 1/√(σ² + ε) is recomputed from x in the rules (a few cheap passes, and exact under
    create_graph) rather than stored. A constant slice gives y = 0 and the finite
    x̄ = (ȳ − mean ȳ)/√ε (ε > 0).
    """

    @staticmethod
    def forward(xp, x, *, axis, eps):
        if _trailing(xp, x, axis) and _par_rows(xp, x):
            return _standardize_rows(xp, x, axis, eps)
        mean = _row_mean if _trailing(xp, x, axis) else _axis_mean
        d = x - mean(xp, x, axis)
        v = xp.multiply(d, d)
        inv = _rsqrt_eps(xp, mean(xp, v, axis), eps)
        d *= inv
        return d

    @staticmethod
    def _pull(t, y, x, axis, eps):
        if not (isinstance(t, Tensor) or isinstance(y, Tensor) or isinstance(x, Tensor)):
            return _standardize_pull(xp_of((x,)), t, y, x, axis, eps)
        r = 1.0 / _count(x.shape, axis)
        m1 = t.sum(axis=axis, keepdims=True) * r
        m2 = (t * y).sum(axis=axis, keepdims=True) * r
        return (t - m1 - y * m2) * _inv_std(x, axis, eps)

    @staticmethod
    def vjp(g, y, x, *, needs, axis, eps):
        return (Standardize._pull(g, y, x, axis, eps),)

    @staticmethod
    def jvp(dxs, y, x, *, axis, eps):
        return Standardize._pull(dxs[0], y, x, axis, eps)


def _trailing(xp, x, axis):
    """The axes are the trailing ones of a C-contiguous NumPy array: means are GEMVs."""
    return (getattr(xp, "__name__", "") == "numpy" and x.flags.c_contiguous
            and axis == tuple(range(x.ndim - len(axis), x.ndim)))


def _row_mean(xp, x, axis):
    """Mean over the trailing axes (kept) as one GEMV with a vector of 1/n: BLAS runs it ~4×
    faster than NumPy's reduction over short rows."""
    n = _count(x.shape, axis)
    m = _gemv(x.reshape(-1, n), xp.full(n, 1.0 / n, dtype=x.dtype))
    return m.reshape(x.shape[:x.ndim - len(axis)] + (1,) * len(axis))


def _gemv(a, v):
    """a @ v for the row sums and means, with BLAS at one thread where it would use more:
    waking its sleeping workers for a GEMV costs more than they save (a 2048×128 layer norm
    forward at 2 threads 470 µs with threaded GEMVs, 303 µs without). Small ones (which BLAS
    runs on one thread anyway) skip the thread check, ~1 µs."""
    if a.size >= _GEMV_THREADED and kernel_threads() > 1:
        with single_thread_blas():
            return a @ v
    return a @ v


_GEMV_THREADED = 1 << 14


def _axis_mean(xp, x, axis):
    return x.mean(axis=axis, keepdims=True)


def _standardize_pull(xp, t, y, x, axis, eps):
    """The rule on arrays, with the temporaries reused: (t − m₁ − y·m₂)·(σ² + ε)^(−½)."""
    mean = _row_mean if _trailing(xp, x, axis) and t.flags.c_contiguous \
        and y.flags.c_contiguous else _axis_mean
    d = x - mean(xp, x, axis)
    d *= d
    inv = _rsqrt_eps(xp, mean(xp, d, axis), eps)
    ty = xp.multiply(t, y, out=d)
    m2 = mean(xp, ty, axis)
    xp.multiply(y, m2, out=d)
    out = t - mean(xp, t, axis)
    out -= d
    out *= inv
    return out


@public
def standardize(x, axis=-1, eps=1e-5):
    """(x − μ)/√(σ² + ε) with μ and the biased σ² over ``axis`` (kept): layer norm without its
    affine map over the trailing axes, batch norm over (0, 2, ...)."""
    ax = norm_axis(axis, ndim_of(x), "standardize")
    _nonempty(x, ax, "standardize")
    if eps < 0:
        raise ValueError(f"standardize: eps must be non-negative, got {eps}")
    return Standardize.apply(x, axis=ax, eps=float(eps))


@primitive
class LayerNorm(Function):
    """Layer normalisation with its affine map, fused: standardise over the trailing axes that
    γ and β span, then scale and shift.

    Forward:  y = γ ⊙ x̂ + β,  x̂ = (x − μ)/√(σ² + ε),  μ, σ² over the trailing axes (biased)
    VJP:      x̄ = (ĝ − mean ĝ − x̂ ⊙ mean(ĝ ⊙ x̂))/√(σ² + ε),  ĝ = ȳ ⊙ γ;  γ̄ = Σ_lead ȳ ⊙ x̂;
              β̄ = Σ_lead ȳ
    JVP:      ẏ = γ ⊙ (ẋ − mean ẋ − x̂ ⊙ mean(ẋ ⊙ x̂))/√(σ² + ε) + γ̇ ⊙ x̂ + β̇

    The x-part is standardize's rule applied to ĝ (its Jacobian is symmetric). A primitive by
    DESIGN §2 rule (3): standardize, multiply and add are three nodes, and their rules take ~3×
    the passes; the means and the Σ_lead are GEMVs with a vector of ones on NumPy. With
    ``keep`` (set by the wrapper when the result will be differentiated; NumPy, C-contiguous x)
    the forward writes y, x̂ and the per-row 1/√(σ² + ε) into one buffer whose head is y, and
    the array rule reads them back (7 passes instead of 11: no second centring, squaring and
    scaling); otherwise, and under create_graph, x̂ and 1/√(σ² + ε) are recomputed from x.
    With numba (devices/cpu_jit.py) both rules on C-contiguous NumPy floats are one compiled
    pass per row, the same formulas.
    """

    @staticmethod
    def forward(xp, x, w, b, *, eps, keep=False):
        axis = tuple(range(x.ndim - w.ndim, x.ndim))
        same = w.dtype == b.dtype == x.dtype
        if same and _trailing(xp, x, axis) and _jit.applies(xp, x, w, b):
            x2 = x.reshape(-1, w.size)
            return _jit.layer_norm_forward(x2, w.reshape(-1), b.reshape(-1), eps,
                                           keep).reshape(x.shape)
        if same and _trailing(xp, x, axis) and (keep or _par_rows(xp, x)):
            return _standardize_rows(xp, x, axis, eps, w, b, keep=keep)
        y = Standardize.forward(xp, x, axis=axis, eps=eps)
        y *= w
        y += b
        return y

    @staticmethod
    def vjp(g, y, x, w, b, *, needs, eps, keep=False):
        axis = tuple(range(len(x.shape) - len(w.shape), len(x.shape)))
        lead = tuple(range(len(x.shape) - len(w.shape)))
        if not any(isinstance(a, Tensor) for a in (g, y, x, w, b)):
            xp = xp_of((x,))
            if _trailing(xp, x, axis) and g.flags.c_contiguous and g.dtype == x.dtype:
                saved = _ln_saved(y, x.size // w.size) if keep else None
                if saved is not None:
                    return _layer_norm_pull_saved(xp, g, w, *saved, needs)
                return _layer_norm_pull(xp, g, x, w, eps, axis, needs)
        xhat = Standardize.apply(x, axis=axis, eps=eps)
        gx = Standardize._pull(g * w, xhat, x, axis, eps) if needs[0] else None
        gw = (g * xhat).sum(axis=lead) if needs[1] else None
        gb = g.sum(axis=lead) if needs[2] else None
        return gx, gw, gb

    @staticmethod
    def jvp(dxs, y, x, w, b, *, eps, keep=False):
        dx, dw, db = dxs
        axis = tuple(range(len(x.shape) - len(w.shape), len(x.shape)))
        xhat = Standardize.apply(x, axis=axis, eps=eps)
        out = None if dx is None else Standardize._pull(dx, xhat, x, axis, eps) * w
        if dw is not None:
            out = dw * xhat if out is None else out + dw * xhat
        if db is not None:
            out = db if out is None else out + db
        return out


def _ln_saved(y, rows):
    """(x̂ (rows, n), 1/√(σ² + ε) (rows, 1)) kept by LayerNorm's forward with ``keep``: y is the
    head of a flat buffer [y, x̂, inv] (see _standardize_rows), else None."""
    buf = getattr(y, "base", None)
    if buf is None or buf.ndim != 1 or buf.dtype != y.dtype or not buf.flags.c_contiguous:
        return None
    size = y.size
    if buf.size != 2 * size + rows or \
            buf.__array_interface__["data"][0] != y.__array_interface__["data"][0]:
        return None
    return buf[size:2 * size].reshape(rows, size // rows), buf[2 * size:].reshape(rows, 1)


def _layer_norm_pull_saved(xp, g, w, xh, inv, needs):
    """LayerNorm's rule from x̂ and 1/√(σ² + ε) (kept by the forward, or recomputed by
    _layer_norm_pull): γ̄ = Σ_rows ȳ ⊙ x̂, β̄ = Σ_rows ȳ,
    x̄ = (ĝ − mean ĝ − x̂ ⊙ mean(ĝ ⊙ x̂)) ⊙ inv with ĝ = ȳ ⊙ γ; means and Σ_rows are GEMVs."""
    rows, n = xh.shape
    g2 = g.reshape(rows, n)
    if _jit.applies(xp, g2, w, xh, inv):
        gx, gw, gb = _jit.layer_norm_backward(g2, w.reshape(-1), xh, inv.reshape(-1), needs)
        return (None if gx is None else gx.reshape(g.shape),
                None if gw is None else gw.reshape(w.shape),
                None if gb is None else gb.reshape(w.shape))
    gw = gb = gx = None
    t = xp.empty_like(xh)
    if needs[1]:
        xp.multiply(g2, xh, out=t)
        gw = sum_axes(xp, t, (0,)).reshape(w.shape)
    if needs[2]:
        gb = sum_axes(xp, g2, (0,)).reshape(w.shape)
    if needs[0]:
        u = g2 * w.reshape(-1)  # ĝ
        xp.multiply(u, xh, out=t)
        m2 = _row_mean(xp, t, (1,))
        u -= _row_mean(xp, u, (1,))
        xp.multiply(xh, m2, out=t)
        u -= t
        u *= inv
        gx = u.reshape(g.shape)
    return gx, gw, gb


def _layer_norm_pull(xp, g, x, w, eps, axis, needs):
    """LayerNorm's rule on C-contiguous NumPy arrays without kept statistics: x̂ and
    1/√(σ² + ε) recomputed from x (GEMV means), then _layer_norm_pull_saved."""
    x2 = x.reshape(-1, w.size)
    d = x2 - _row_mean(xp, x2, (1,))
    inv = _rsqrt_eps(xp, _row_mean(xp, d * d, (1,)), eps)
    d *= inv  # x̂
    return _layer_norm_pull_saved(xp, g, w, d, inv, needs)


@public
def layer_norm(x, w, b, eps=1e-5):
    """γ ⊙ (x − μ)/√(σ² + ε) + β over the trailing axes of x that γ and β (same shape) span;
    the primitive behind F.layer_norm with both affine parameters."""
    sx, sw = shape_of(x), shape_of(w)
    k = len(sw)
    if k == 0 or len(sx) < k or sx[len(sx) - k:] != sw or shape_of(b) != sw:
        raise ValueError(f"layer_norm: x (..., {', '.join(map(str, sw))}) and β of γ's shape "
                         f"{sw} expected, got x {sx}, β {shape_of(b)}")
    _nonempty(x, tuple(range(len(sx) - k, len(sx))), "layer_norm")
    keep = _grad_mode.grad and any(isinstance(v, Tensor) and v._rg for v in (x, w, b))
    if keep:
        return LayerNorm.apply(x, w, b, eps=float(eps), keep=True)
    return LayerNorm.apply(x, w, b, eps=float(eps))


@primitive
class BatchNorm(Function):
    """Batch normalisation in training mode with its affine map, fused: per channel c of
    x (N, C, ...), statistics over the n values of every other axis A.

    Forward:  μ = mean_A x,  σ² = mean_A (x − μ)²  (biased),  x̂ = (x − μ)·s,  s = (σ² + ε)^(−½),
              y = γ ⊙ x̂ + β;  outputs (y, μ, σ²) — μ and σ² for the running statistics
    VJP:      β̄ = Σ_A ȳ,  γ̄ = Σ_A ȳ ⊙ x̂,
              x̄ = γs ⊙ (ȳ − β̄/n − x̂ ⊙ γ̄/n) + μ̄/n + 2 σ̄² ⊙ (x − μ)/n
    JVP:      μ̇ = mean_A ẋ,  σ̇² = 2 mean_A (x − μ) ẋ,
              ẏ = γs ⊙ (ẋ − μ̇ − x̂ ⊙ s σ̇²/2) + γ̇ ⊙ x̂ + β̇

    (x̄ is standardize's symmetric rule applied to γ ⊙ ȳ, plus the paths through the two
    statistic outputs.) A primitive by DESIGN §2 rule (3): the composite (mean, subtract,
    square, mean, add ε, power −½, multiply, multiply, add) is nine nodes whose reverse pass
    materialises a full-size array per node and sums four of them back to (C,); here the
    forward is four passes and two channel sums, the VJP five passes and two sums (GEMVs over
    the memory, channels-last or not: ops._util.sum_axes), about half the time of the composite
    (64×16×28×28: 3.0 vs 5.7 ms forward + backward). A constant channel gives x̂ = 0, x̄ = 0.
    With numba, channels-last NumPy input (a conv output) takes compiled kernels instead
    (devices/cpu_jit.py: three passes forward, two back, the same per-channel factors).

    ``relu=True`` fuses the ReLU that follows batch norm in most CNNs (conv → BN → ReLU):
    y = max(γ ⊙ x̂ + β, 0), and the rules above take ȳ ⊙ [y > 0] for ȳ (ReLU's subgradient
    0 at 0). With the compiled kernels the max and the mask ride in passes that run anyway; a
    separate ReLU node would read and write the whole tensor once forward and once backward.

    A fourth operand r (x's shape), the *residual*, is added before the ReLU: y = γ ⊙ x̂ + β + r
    (with ``relu``: max(·, 0)) — the end of a ResNet block, relu(BN(conv(h)) + shortcut(x)).
    Its cotangent is r̄ = ȳ (⊙ [y > 0]), which the compiled backward writes in the pass that
    forms x̄; the add and the ReLU then cost no pass of their own either way.
    """

    @staticmethod
    def forward(xp, x, w, b, r=None, *, eps, relu=False):
        x2 = _cl_rows(x)
        r2 = None if r is None else _cl_rows(r)
        if x2 is not None and _jit.applies(xp, x2, w, b) and \
                (r is None or (r2 is not None and _jit.applies(xp, r2, x2))):
            y2, mu, var = _jit.batch_norm_forward(x2, w, b, eps, relu, r2)  # compiled kernels
            n_, c_, h_, w_ = x.shape
            return y2.reshape(n_, h_, w_, c_).transpose(0, 3, 1, 2), mu, var
        axes, n, bs = _bn_geometry(x.shape)
        mu = _bn_sum(xp, x, axes) / n
        d = xp.empty_like(x)  # (x's memory order: channels-last stays so)
        _per_channel(xp, xp.subtract, x, mu, bs, d)
        t = xp.multiply(d, d)
        var = _bn_sum(xp, t, axes) / n
        a = w * _rsqrt_eps(xp, var, eps)
        _per_channel(xp, xp.multiply, d, a, bs, d)
        _per_channel(xp, xp.add, d, b, bs, d)
        if r is not None:
            d += r
        if relu:
            xp.maximum(d, 0, out=d)
        return d, mu, var

    @staticmethod
    def vjp(g, y, x, w, b, r=None, *, needs, eps, relu=False):
        gy, gmu, gvar = g
        mu, var = y[1], y[2]
        res = r is not None
        if any(isinstance(v, Tensor) for v in (gy, gmu, gvar, x, w, b, mu, var)):
            if relu:
                gy = gy * (data_of(y[0]) > 0)  # a constant mask: relu″ = 0
            out = _bn_pull_graph(gy, gmu, gvar, x, w, mu, var, eps, needs)
            return out + ((gy if needs[3] else None),) if res else out
        xp = xp_of((x,))
        axes, n, bs = _bn_geometry(x.shape)
        s = _rsqrt_eps(xp, var, eps)
        x2, g2 = _cl_rows(x), _cl_rows(gy)
        if x2 is not None and g2 is None and gy.ndim == 4 and _jit.usable(xp, gy.dtype):
            # ȳ in another layout than x (global average pooling's broadcast is NCHW): one copy
            # into channels-last rows, so that the compiled passes apply (the last ResNet
            # block's batch norms, 64×64×7×7: the NumPy rule took ~1 ms)
            g2 = xp.ascontiguousarray(gy.transpose(0, 2, 3, 1)).reshape(-1, gy.shape[1])
        y2 = _cl_rows(y[0]) if relu else None
        compiled = x2 is not None and g2 is not None and _jit.applies(xp, x2, g2, w, mu) \
            and (not relu or (y2 is not None and _jit.applies(xp, y2, g2)))
        if relu and not compiled:  # ReLU's rule first (its own fast paths), then batch norm's
            gy = Relu.vjp(gy, y[0], y[0], needs=(True,))[0]
        gr = gy if res and needs[3] and not (relu and compiled) else None  # r̄ = ȳ (masked)
        if compiled:  # channels-last: the two sums in one compiled pass (ReLU's mask in it)
            gb, gw = _jit.batch_norm_backward_sums(g2, x2, mu, y2)
            gw *= s
        else:
            d = _per_channel(xp, xp.subtract, x, mu, bs, xp.empty_like(x))
            t = xp.multiply(gy, d)
            gb = _bn_sum(xp, gy, axes)
            gw = _bn_sum(xp, t, axes) * s  # Σ ȳ ⊙ x̂
        gx = None
        if needs[0]:
            a = w * s
            # x̄ = a ȳ + k1 (x − μ) + k0, with every per-channel factor folded first
            k1 = -a * s * gw / n + 2.0 * gvar / n
            k0 = -a * gb / n + gmu / n
            if compiled:
                n_, c_, h_, w_ = x.shape
                keep = res and relu and needs[3]  # the masked ȳ is r̄: written in this pass
                gx2, gm2 = _jit.batch_norm_backward_apply(g2, x2, mu, a, k1, k0, y2, keep)
                gx = gx2.reshape(n_, h_, w_, c_).transpose(0, 3, 1, 2)
                if keep:
                    gr = gm2.reshape(n_, h_, w_, c_).transpose(0, 3, 1, 2)
            else:
                gx = _per_channel(xp, xp.multiply, gy, a, bs, xp.empty_like(gy))
                _per_channel(xp, xp.multiply, d, k1, bs, t)
                gx += t
                _per_channel(xp, xp.add, gx, k0, bs, gx)
        if res and needs[3] and gr is None:  # compiled, relu, no x̄ wanted: the mask alone
            gr = Relu.vjp(gy, y[0], y[0], needs=(True,))[0]
        out = (gx, (gw if needs[1] else None), (gb if needs[2] else None))
        return out + (gr,) if res else out

    @staticmethod
    def jvp(dxs, y, x, w, b, r=None, *, eps, relu=False):
        dx, dw, db = dxs[:3]
        dr = dxs[3] if r is not None else None
        mu, var = y[1], y[2]
        axes, n, bs = _bn_geometry(shape_of(x))
        s = reshape(ops_pow(var + eps, -0.5), bs)
        d = x - reshape(mu, bs)
        xhat = d * s
        dmu = dvar = dy = None
        if dx is not None:
            dmu = sum(dx, axis=axes) / n
            dvar = sum(d * dx, axis=axes) * (2.0 / n)
            dy = (dx - reshape(dmu, bs) - xhat * s * reshape(dvar, bs) * 0.5) * (s * reshape(w, bs))
        if dw is not None:
            t = xhat * reshape(dw, bs)
            dy = t if dy is None else dy + t
        if db is not None:
            t = BroadcastTo.apply(reshape(db, bs), shape=tuple(shape_of(x)))
            dy = t if dy is None else dy + t
        if dr is not None:
            dy = dr if dy is None else dy + dr
        if dy is None:
            dy = xhat * 0.0
        if relu:
            dy = dy * (data_of(y[0]) > 0)
        if dmu is None:
            dmu = mu * 0.0
            dvar = var * 0.0
        return dy, dmu, dvar


_TILE = 4096  # values per inner loop of _per_channel's tiled rows


def _cl_rows(a):
    """a (N, C, H, W) in channels-last memory as its (N·H·W, C) view, else None."""
    if a.ndim != 4:
        return None
    t = a.transpose(0, 2, 3, 1)
    return t.reshape(-1, a.shape[1]) if t.flags.c_contiguous else None


def _per_channel(xp, fn, a, v, bs, out):
    """out ← fn(a, v per channel) for a (N, C, ...), v (C,) — NumPy ufunc ``fn``. With
    channels-last memory and few channels NumPy's broadcast runs one inner loop of C values per
    pixel (64×16×28×28: x − μ 350 µs); there the (pixels, C) view is cut into rows of ~4k values
    with v tiled to match (184 µs). The same operation on every value, so the same bits."""
    C = a.shape[1] if a.ndim > 1 else 0
    if getattr(xp, "__name__", "") == "numpy" and 1 < C < 64:
        a2, o2 = _cl_rows(a), _cl_rows(out)
        if a2 is not None and o2 is not None:
            k = _TILE // C  # (C < 64; NB: max is the module's own op here)
            rows = a2.shape[0]
            main = rows - rows % k
            v1 = v.reshape(-1)
            if main:
                fn(a2[:main].reshape(-1, k * C), xp.tile(v1, k),
                   out=o2[:main].reshape(-1, k * C))
            if main < rows:
                fn(a2[main:], v1, out=o2[main:])
            return out
    return fn(a, v.reshape(bs), out=out)


def _bn_geometry(shape):
    """(the statistics' axes, values per channel n, the (C, 1, ...) broadcast shape)."""
    axes = (0,) + tuple(range(2, len(shape)))
    n = 1
    for a in axes:
        n *= shape[a]
    return axes, n, (shape[1],) + (1,) * (len(shape) - 2)


def _bn_sum(xp, t, axes):
    """Σ over the statistics' axes in two stages, the batch first and then the rest, each a
    GEMV over the memory (ops._util.sum_axes): one long run of n additions would round like
    √n·ε (1.3e-5 relative for 64×28×28 in float32), two runs of N and H·W like (√N + √HW)·ε."""
    if len(axes) > 1:
        return sum_axes(xp, sum_axes(xp, t, (0,)), tuple(a - 1 for a in axes[1:]))
    return sum_axes(xp, t, axes)


def _rsqrt_eps(xp, var, eps, out=None):
    """(σ² + ε)^(−½) of the variance array ``var``, in its dtype: into ``out`` (which may be
    ``var`` itself), else a new array."""
    s = xp.add(var, eps, out=out)
    xp.sqrt(s, out=s)
    return xp.divide(1.0, s, out=s)


def _bn_pull_graph(gy, gmu, gvar, x, w, mu, var, eps, needs):
    """BatchNorm's VJP on Tensors (create_graph): the same formula as recorded operations, so
    higher derivatives come from those."""
    axes, n, bs = _bn_geometry(shape_of(x))
    s = ops_pow(var + eps, -0.5)
    d = x - reshape(mu, bs)
    xhat = d * reshape(s, bs)
    gb = sum(gy, axis=axes)
    gw = sum(gy * xhat, axis=axes)
    gx = None
    if needs[0]:
        a = reshape(w * s, bs)
        gx = a * (gy - reshape(gb, bs) / n - xhat * reshape(gw, bs) / n) \
            + reshape(gmu, bs) / n + d * reshape(gvar, bs) * (2.0 / n)
    return gx, (gw if needs[1] else None), (gb if needs[2] else None)


@public
def batch_norm(x, w, b, eps=1e-5, relu=False, residual=None):
    """Training-mode batch normalisation of x (N, C, ...) over every axis but the channels,
    with γ = ``w`` and β = ``b`` (C,): returns (y, μ, σ²), the batch mean and biased variance
    per channel beside y (the primitive behind F.batch_norm in training mode). ``residual``
    (x's shape): y = γ x̂ + β + residual; ``relu``: y is max(·, 0) — the ReLU (and the add)
    fused (see BatchNorm)."""
    sx = shape_of(x)
    if len(sx) < 2 or shape_of(w) != (sx[1],) or shape_of(b) != (sx[1],):
        raise ValueError(f"batch_norm: x (N, C, ...) and γ, β of shape (C,) expected, got x "
                         f"{sx}, γ {shape_of(w)}, β {shape_of(b)}")
    check_residual("batch_norm", x, residual)
    if _bn_geometry(sx)[1] <= 1:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got x "
                         f"of shape {sx}")
    args = (x, w, b) if residual is None else (x, w, b, residual)
    if relu:
        return BatchNorm.apply(*args, eps=float(eps), relu=True)
    return BatchNorm.apply(*args, eps=float(eps))


@primitive
class Softmax(Function):
    """Softmax along one axis, over the entries a boolean ``mask`` allows (all by default).

    Forward:  y = exp(x − m) / Σ_axis exp(x − m),  m = max_axis x  (masked-out entries: y = 0)
    VJP:      x̄ = y ⊙ (ȳ − Σ_axis ȳ ⊙ y)
    JVP:      ẏ = y ⊙ (ẋ − Σ_axis ẋ ⊙ y)

    A primitive by DESIGN §2 rule (3): composed as exp(log_softmax) it is eight nodes and a
    softmax recomputed in logsumexp's rule; here five passes forward (six with a mask) and four
    back. ``mask`` (keyword, broadcastable to x, True = allowed) is attention's: a masked entry
    gets y = 0 and x̄ = 0 whatever its score, and a slice with no allowed entry gets y = 0 (not
    0/0). The max shift m is a constant (softmax is invariant to it), so the rules are exact.
    With numba, float32 over the last axis (boolean masks included) and the array rule run as
    compiled row kernels (devices/cpu_jit.py), the same formulas.
    """

    @staticmethod
    def forward(xp, x, *, axis, mask=None):
        if axis == x.ndim - 1 and x.dtype.char == "f" and x.size and _jit.applies(xp, x):
            m2 = None if mask is None else _mask_rows(xp, mask, x.shape)
            if mask is None or m2 is not None:
                return _jit.softmax32(x.reshape(-1, x.shape[-1]), m2).reshape(x.shape)
        if axis == x.ndim - 1 and _par_rows(xp, x):
            return _softmax_rows(xp, x, mask)
        if mask is None:
            z = x - _finite_max(xp, x, axis)
        else:
            z = xp.where(mask, x, -math.inf)
            z -= _finite_max(xp, z, axis)
        e = xp.exp(z, out=z)
        s = _row_sum(xp, e) if axis == e.ndim - 1 else e.sum(axis=axis, keepdims=True)
        if mask is not None:
            s = xp.where(s > 0, s, 1)  # no allowed entry: 0/1 = 0
        e /= s
        return e

    @staticmethod
    def vjp(g, y, x, *, needs, axis, mask=None):
        if (axis == len(x.shape) - 1 and not isinstance(g, Tensor) and not isinstance(y, Tensor)
                and g.shape == y.shape):
            xp = xp_of((y,))
            if y.size and _jit.applies(xp, g, y):
                n = y.shape[-1]
                return (_jit.softmax_pull(g.reshape(-1, n), y.reshape(-1, n)).reshape(y.shape),)
            # (its two single passes lose on the pool below ~2M values: 524k at 2 threads
            # 0.74-0.79x of one thread)
            if _par_rows(xp, y) and y.size >= _PULL_ROW_MIN and g.flags.c_contiguous \
                    and g.dtype == y.dtype:
                return (_softmax_pull_rows(xp, g, y),)
            t = xp.multiply(g, y)
            s = _row_sum(xp, t)
            xp.subtract(g, s, out=t)
            t *= y
            return (t,)
        return ((g - (g * y).sum(axis=axis, keepdims=True)) * y,)

    @staticmethod
    def jvp(dxs, y, x, *, axis, mask=None):
        dx = dxs[0]
        return (dx - (dx * y).sum(axis=axis, keepdims=True)) * y


# ---- row-parallel forms (backend.parallel_chunks; only with T > 1 kernel threads and big
# C-contiguous NumPy arrays). Each is the serial code with its elementwise passes and row maxima
# split over row ranges and its GEMVs (row sums, means) kept whole: a GEMV's value for a row
# depends on how its rows are blocked, an elementwise pass's or a max's never, so the bits are
# those of the serial path (tests/test_parallel_kernels.py). The GEMVs use BLAS's own threads.


# Row forms pay less than the one-phase elementwise kernels (two or three dispatches around the
# GEMVs): a 2048x128 layer norm (262k values) was 1.15-1.24x slower with 2 threads, softmax on
# 8192x64 (524k) 0.70-0.88x faster (wall clock, load 0.7-0.9, OpenBLAS threads not spinning).
_ROW_MIN = 4 * PARALLEL_MIN
_PULL_ROW_MIN = 4 * _ROW_MIN


def _par_rows(xp, x):
    return (getattr(xp, "__name__", "") == "numpy" and x.size >= _ROW_MIN
            and x.ndim >= 1 and x.flags.c_contiguous and kernel_threads() > 1)


def _mask_rows(xp, mask, shape):
    """A boolean softmax mask as C-contiguous (mrows, n) rows for devices/cpu_jit.softmax32:
    row r of x (flattened to rows of its last axis) is masked by row r % mrows. An (..., L, n)
    mask with ones before it (attention's causal mask) is used as it is; other broadcasts are
    materialised. None for non-boolean masks (the NumPy path takes them)."""
    if getattr(getattr(mask, "dtype", None), "char", "") != "?":
        return None
    n = shape[-1]
    if (mask.ndim >= 2 and mask.shape[-1] == n and mask.shape[-2] == shape[-2]
            and all(d == 1 for d in mask.shape[:-2]) and mask.flags.c_contiguous):
        return mask.reshape(-1, n)
    return xp.ascontiguousarray(xp.broadcast_to(mask, shape)).reshape(-1, n)


def _softmax_rows(xp, x, mask):
    n = x.shape[-1]
    x2 = x.reshape(-1, n)
    m2 = None if mask is None else xp.broadcast_to(mask, x.shape).reshape(-1, n)
    z = xp.empty_like(x2)

    def shift_exp(a, b):
        xa = x2[a:b] if m2 is None else xp.where(m2[a:b], x2[a:b], -math.inf)
        za = z[a:b]
        xp.subtract(xa, _finite_max(xp, xa, 1), out=za)
        xp.exp(za, out=za)

    parallel_chunks(z.shape[0], shift_exp, cost=z.size, piece=EW_PIECE)
    s = _row_sum(xp, z)
    if mask is not None:
        s = xp.where(s > 0, s, 1)
    parallel_chunks(z.shape[0], lambda a, b: xp.divide(z[a:b], s[a:b], out=z[a:b]),
                    cost=z.size, piece=EW_PIECE)
    return z.reshape(x.shape)


def _softmax_pull_rows(xp, g, y):
    n = y.shape[-1]
    g2, y2 = g.reshape(-1, n), y.reshape(-1, n)
    t = xp.empty_like(y2)
    rows = y2.shape[0]
    parallel_chunks(rows, lambda a, b: xp.multiply(g2[a:b], y2[a:b], out=t[a:b]), cost=t.size,
                    piece=EW_PIECE)
    s = _row_sum(xp, t)

    def finish(a, b):
        xp.subtract(g2[a:b], s[a:b], out=t[a:b])
        t[a:b] *= y2[a:b]

    parallel_chunks(rows, finish, cost=t.size, piece=EW_PIECE)
    return t.reshape(y.shape)


def _standardize_rows(xp, x, axis, eps, w=None, b=None, keep=False):
    """Standardize.forward (and LayerNorm's γ, β) over the trailing ``axis`` of a C-contiguous
    NumPy array, row-parallel; the serial code's values. ``keep`` (with w, b): y, x̂ and the
    per-row 1/√(σ² + ε) in one flat buffer, y its head (read back by _ln_saved)."""
    n = _count(x.shape, axis)
    x2 = x.reshape(-1, n)
    rows = x2.shape[0]
    mu = _row_mean(xp, x2, (1,))
    if keep:
        buf = xp.empty(2 * x.size + rows, dtype=x.dtype)
        v = buf[:x.size].reshape(rows, n)  # y's place, scratch until the last pass
        d = buf[x.size:2 * x.size].reshape(rows, n)  # x̂
    else:
        d = xp.empty_like(x2)
        v = xp.empty_like(x2)

    def center(a, c):
        xp.subtract(x2[a:c], mu[a:c], out=d[a:c])
        xp.multiply(d[a:c], d[a:c], out=v[a:c])

    parallel_chunks(rows, center, cost=x.size, piece=EW_PIECE, min_size=_ROW_MIN)
    inv = _row_mean(xp, v, (1,))  # 1/√(σ² + ε) (with keep: in the buffer's tail)
    inv = _rsqrt_eps(xp, inv, eps, out=buf[2 * x.size:].reshape(rows, 1) if keep else inv)
    w1 = None if w is None else w.reshape(-1)
    b1 = None if b is None else b.reshape(-1)

    def scale(a, c):
        da = d[a:c]
        da *= inv[a:c]
        if keep:
            ya = v[a:c]
            xp.multiply(da, w1, out=ya)
            ya += b1
        elif w1 is not None:
            da *= w1
            da += b1

    parallel_chunks(rows, scale, cost=x.size, piece=EW_PIECE, min_size=_ROW_MIN)
    return (v if keep else d).reshape(x.shape)


def _row_sum(xp, x):
    """Σ over the last axis (kept); a GEMV with a vector of ones for C-contiguous NumPy arrays
    (~4× NumPy's reduction over short rows)."""
    if getattr(xp, "__name__", "") == "numpy" and x.flags.c_contiguous and x.size:
        n = x.shape[-1]
        return _gemv(x.reshape(-1, n), xp.ones(n, dtype=x.dtype)).reshape(x.shape[:-1] + (1,))
    return x.sum(axis=-1, keepdims=True)


def _finite_max(xp, x, axis):
    """max over ``axis`` (kept), with non-finite maxima (an all −∞ slice) replaced by 0."""
    m = x.max(axis=axis, keepdims=True)
    if _cuda.uses(xp):  # no host synchronisation on a GPU
        return _cuda.finite_or_zero(m)
    if not xp.isfinite(m).all():
        m = xp.where(xp.isfinite(m), m, 0)
    return m


def softmax(x, axis=-1, mask=None):
    """exp(x) / Σ_axis exp(x) along one ``axis``, stable for any finite logits; with ``mask``
    (boolean, broadcastable to x, True = allowed) over the allowed entries only. (tc.softmax is
    functional.basic's wrapper of this primitive.)"""
    ax = norm_axis(axis, ndim_of(x), "softmax")
    if len(ax) != 1:
        raise ValueError(f"softmax: one axis expected, got {axis}")
    _nonempty(x, ax, "softmax")
    if mask is not None:
        xp = xp_of((data_of(x),))
        mask = xp.asarray(data_of(mask))
        if mask.dtype != bool:
            raise TypeError(f"softmax: mask must be boolean (True = allowed), got {mask.dtype}")
    return Softmax.apply(x, axis=ax[0], mask=mask)


def _nonempty(x, axis, who):
    s = shape_of(x)
    if any(s[a] == 0 for a in axis):
        raise ValueError(f"{who}: reduction over an empty axis (shape {s})")
