"""Unary elementwise primitives: each writes f′ once; VJP and JVP follow from Elementwise."""

from __future__ import annotations

import math

from ..autodiff.function import Elementwise, primitive
from ..autodiff.mode import state as _grad_mode
from ..backend import EW_PIECE, kernel_threads, parallel_chunks, piece_count, special, xp_of
from ..devices import cpu_jit as _jit
from ..devices import cuda as _cuda
from ..tensor import Tensor
from . import arithmetic as _arith
from ._util import cast_like, public


@primitive
class Exp(Elementwise):
    """Exponential, elementwise.

    Forward:  y = exp(x)
    VJP:      x̄ = ȳ ⊙ y
    JVP:      ẏ = ẋ ⊙ y
    """

    @staticmethod
    def forward(xp, x):
        return xp.exp(x)

    @staticmethod
    def derivative(y, x):
        return y


@public(method=True)
def exp(x):
    """Elementwise exp(x)."""
    return Exp.apply(x)


@primitive
class Log(Elementwise):
    """Natural logarithm, elementwise (x > 0).

    Forward:  y = log(x)
    VJP:      x̄ = ȳ / x
    JVP:      ẏ = ẋ / x
    """

    @staticmethod
    def forward(xp, x):
        return xp.log(x)

    @staticmethod
    def derivative(y, x):
        return 1 / x


@public(method=True)
def log(x):
    """Elementwise natural log."""
    return Log.apply(x)


@primitive
class Log1p(Elementwise):
    """log(1 + x), accurate for small x (x > −1).

    Forward:  y = log(1 + x)
    VJP:      x̄ = ȳ / (1 + x)
    JVP:      ẏ = ẋ / (1 + x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.log1p(x)

    @staticmethod
    def derivative(y, x):
        return 1 / (1 + x)


@public(method=True)
def log1p(x):
    """Elementwise log(1 + x)."""
    return Log1p.apply(x)


@primitive
class Expm1(Elementwise):
    """exp(x) − 1, accurate for small x.

    Forward:  y = exp(x) − 1
    VJP:      x̄ = ȳ ⊙ (y + 1)
    JVP:      ẏ = ẋ ⊙ (y + 1)
    """

    @staticmethod
    def forward(xp, x):
        return xp.expm1(x)

    @staticmethod
    def derivative(y, x):
        return y + 1


@public(method=True)
def expm1(x):
    """Elementwise exp(x) − 1."""
    return Expm1.apply(x)


@primitive
class Sqrt(Elementwise):
    """Square root, elementwise (x ≥ 0; the derivative is infinite at 0).

    Forward:  y = √x
    VJP:      x̄ = ȳ / (2y)
    JVP:      ẏ = ẋ / (2y)
    """

    @staticmethod
    def forward(xp, x):
        return xp.sqrt(x)

    @staticmethod
    def derivative(y, x):
        return 0.5 / y


@public(method=True)
def sqrt(x):
    """Elementwise √x."""
    return Sqrt.apply(x)


@primitive
class Abs(Elementwise):
    """Absolute value, elementwise; subgradient sign(0) = 0.

    Forward:  y = |x|
    VJP:      x̄ = ȳ ⊙ sign(x)
    JVP:      ẏ = ẋ ⊙ sign(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.abs(x)

    @staticmethod
    def derivative(y, x):
        return cast_like(x > 0, y) - cast_like(x < 0, y)


@public(method=True)
def abs(x):  # noqa: A001 - the math name
    """Elementwise |x|."""
    return Abs.apply(x)


@primitive
class Sin(Elementwise):
    """Sine, elementwise.

    Forward:  y = sin(x)
    VJP:      x̄ = ȳ ⊙ cos(x)
    JVP:      ẏ = ẋ ⊙ cos(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.sin(x)

    @staticmethod
    def derivative(y, x):
        return cos(x)


@public(method=True)
def sin(x):
    """Elementwise sine."""
    return Sin.apply(x)


@primitive
class Cos(Elementwise):
    """Cosine, elementwise.

    Forward:  y = cos(x)
    VJP:      x̄ = −ȳ ⊙ sin(x)
    JVP:      ẏ = −ẋ ⊙ sin(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.cos(x)

    @staticmethod
    def derivative(y, x):
        return -sin(x)


@public(method=True)
def cos(x):
    """Elementwise cosine."""
    return Cos.apply(x)


@primitive
class Tanh(Elementwise):
    """Hyperbolic tangent, elementwise.

    Forward:  y = tanh(x)
    VJP:      x̄ = ȳ ⊙ (1 − y²)
    JVP:      ẏ = ẋ ⊙ (1 − y²)
    """

    @staticmethod
    def forward(xp, x):
        return xp.tanh(x)

    @staticmethod
    def derivative(y, x):
        return 1 - y * y


@public(method=True)
def tanh(x):
    """Elementwise hyperbolic tangent."""
    return Tanh.apply(x)


@primitive
class Sigmoid(Elementwise):
    """Logistic sigmoid, computed as exp(−softplus(−x)) so no exp can overflow.

    Forward:  y = 1 / (1 + exp(−x))
    VJP:      x̄ = ȳ ⊙ y(1 − y)
    JVP:      ẏ = ẋ ⊙ y(1 − y)
    """

    @staticmethod
    def forward(xp, x):
        return xp.exp(-xp.logaddexp(0, -x))

    @staticmethod
    def derivative(y, x):
        return y * (1 - y)


@public(method=True)
def sigmoid(x):
    """Elementwise logistic sigmoid (overflow-free)."""
    return Sigmoid.apply(x)


@primitive
class Relu(Elementwise):
    """Rectified linear unit; subgradient relu′(0) = 0.

    Forward:  y = max(x, 0)
    VJP:      x̄ = ȳ ⊙ [x > 0]
    JVP:      ẏ = ẋ ⊙ [x > 0]

    With numba both array rules are one compiled pass (devices/cpu_jit.py): the forward at
    copying speed (NumPy's maximum(x, 0) is ~4x slower), the VJP with no boolean temporary.
    """

    @staticmethod
    def forward(xp, x):
        if x.size >= _JIT_EW_MIN and _jit.usable(xp, x.dtype):
            y = _jit.relu(x)
            if y is not None:
                return y
        return xp.maximum(x, 0)

    @staticmethod
    def derivative(y, x):
        return x > 0  # a boolean mask: ȳ ⊙ mask keeps ȳ's dtype and carries no graph

    @classmethod
    def vjp(cls, g, y, x, *, needs):
        if _cuda.on_cuda(g) and _cuda.on_cuda(x):  # on a GPU: ȳ ⊙ [x > 0] in one kernel
            return (_cuda.relu_grad(g, x),)
        if not isinstance(g, Tensor) and g.size >= _JIT_EW_MIN \
                and _jit.usable(xp_of((g,)), g.dtype):  # one compiled pass, no boolean temporary
            gx = _jit.relu_grad(g, x)
            if gx is not None:
                return (gx,)
        return (g * (x > 0),)


@public(method=True)
def relu(x):
    """Elementwise max(x, 0)."""
    return Relu.apply(x)


@primitive
class LeakyRelu(Elementwise):
    """Leaky ReLU with slope a (keyword ``negative_slope``); subgradient a at 0.

    Forward:  y = x for x > 0,  a·x for x ≤ 0
    VJP:      x̄ = ȳ ⊙ ([x > 0] + a·[x ≤ 0])
    JVP:      ẏ = ẋ ⊙ ([x > 0] + a·[x ≤ 0])

    A primitive by DESIGN §2 rule (3): as where(x > 0, x, a·x) it is three nodes and a mask
    each way. For 0 < a ≤ 1 the forward is max(x, a·x) (min for a > 1): two passes.
    """

    @staticmethod
    def forward(xp, x, *, negative_slope):
        if x.size >= _JIT_EW_MIN and _jit.usable(xp, x.dtype):
            y = _jit.leaky_relu(x, negative_slope)  # one compiled pass
            if y is not None:
                return y
        if _par_flat(xp, x):  # T > 1 kernel threads: the same passes on row ranges
            y = xp.empty_like(x)
            xf, yf = x.reshape(-1), y.reshape(-1)
            parallel_chunks(xf.size, lambda s, e: LeakyRelu._fwd(xp, xf[s:e], negative_slope,
                                                                  yf[s:e]), min_size=_PAR_MIN,
                            piece=EW_PIECE)
            return y
        return LeakyRelu._fwd(xp, x, negative_slope)

    @staticmethod
    def _fwd(xp, x, a, out=None):
        if out is not None:  # the same passes, written into out
            if a == 0:
                return xp.maximum(x, 0, out=out)
            if a > 0:
                xp.multiply(x, a, out=out)
                return (xp.maximum if a <= 1 else xp.minimum)(x, out, out=out)
            out[...] = LeakyRelu._fwd(xp, x, a)
            return out
        if a == 0:
            return xp.maximum(x, 0)  # (x·0 would be NaN at ±∞)
        ax = x * a
        if 0 < a <= 1:
            return xp.maximum(x, ax)
        if a > 1:
            return xp.minimum(x, ax)
        return xp.where(x > 0, x, ax)

    @staticmethod
    def derivative(y, x, *, negative_slope):
        a = negative_slope
        return cast_like(x > 0, x) * (1.0 - a) + a  # a constant: no graph under create_graph

    @classmethod
    def vjp(cls, g, y, x, *, needs, negative_slope):
        if isinstance(g, Tensor) or isinstance(x, Tensor) or g.shape != x.shape:
            return (g * cls.derivative(y, x, negative_slope=negative_slope),)
        xp = xp_of((x,))
        if g.size >= _JIT_EW_MIN and _jit.usable(xp, g.dtype) and g.dtype == x.dtype:
            gx = _jit.relu_grad(g, x, negative_slope)  # one compiled pass, any two layouts
            if gx is not None:
                return (gx,)
        if _par_flat(xp, x) and g.flags.c_contiguous and g.dtype == x.dtype:
            out = xp.empty_like(x)
            xf, gf, of = x.reshape(-1), g.reshape(-1), out.reshape(-1)

            def pull(s, e):
                of[s:e] = xp.where(xf[s:e] > 0, gf[s:e], gf[s:e] * negative_slope)

            parallel_chunks(xf.size, pull, min_size=_PAR_MIN, piece=EW_PIECE)
            return (out,)
        return (xp.where(x > 0, g, g * negative_slope),)


@public
def leaky_relu(x, negative_slope=0.01):
    """Elementwise x for x > 0, ``negative_slope``·x otherwise."""
    return LeakyRelu.apply(x, negative_slope=float(negative_slope))


@primitive
class Softplus(Elementwise):
    """Softplus, computed as logaddexp(0, x): finite for every finite x.

    Forward:  y = log(1 + exp(x))
    VJP:      x̄ = ȳ ⊙ σ(x)
    JVP:      ẏ = ẋ ⊙ σ(x)
    """

    @staticmethod
    def forward(xp, x):
        return xp.logaddexp(0, x)

    @staticmethod
    def derivative(y, x):
        return sigmoid(x)


@public(method=True)
def softplus(x):
    """Elementwise log(1 + exp(x)) (stable)."""
    return Softplus.apply(x)


@primitive
class Erf(Elementwise):
    """Gauss error function, elementwise.

    Forward:  y = erf(x) = (2/√π) ∫₀ˣ exp(−t²) dt
    VJP:      x̄ = ȳ ⊙ (2/√π) exp(−x²)
    JVP:      ẏ = ẋ ⊙ (2/√π) exp(−x²)
    """

    @staticmethod
    def forward(xp, x):
        if _fast32(xp, x):
            return _chunked(xp, _erf32_chunk, (x,))[0]
        return special(xp).erf(x)

    @staticmethod
    def derivative(y, x):
        return (2 / math.sqrt(math.pi)) * exp(-(x * x))


@public(method=True)
def erf(x):
    """Elementwise error function."""
    return Erf.apply(x)


# ---------------------------------------------------------------- float32 erf / GELU kernels
#
# scipy.special.erf evaluates float32 through its float64 scalar routine (~15 ms per million
# values here, against ~0.5 ms for np.exp). For float32 on the CPU, erf is instead
#
#     erf(z) ≈ tanh(z · g(z²))   (z clamped to ±14.1; erf is exactly ±1 beyond |z| = 4.3),
#
# with g a degree-6 polynomial fitted to artanh(erf(z))/z (weighted least squares, relative
# error near 0 and absolute elsewhere; docs/math/fast_erf.md). tanh is one fast, accurate NumPy
# ufunc and saturates to exactly ±1, so this is ~16 passes where a rational P/Q with the
# same accuracy needs ~22 and a clamp. Measured in float32: |error| ≤ 2e-7 on the real line,
# relative ≤ 3.1e-7 for |z| < 1 (tests/test_fast_kernels.py bounds both against scipy in
# float64 on a dense grid). Each pass runs on chunks of _CHUNK values with scratch buffers
# (out=), so the passes stay in cache instead of streaming megabytes each. float64 (gradient
# checks) and other devices use scipy / cupyx.

_ERF_G = (1.1283793091681624, 0.10276876478415371, -0.00019119867129981715,
          -0.0006206267675275061, 8.810085789184369e-05, -5.7680951158483374e-06,
          1.4882023881462297e-07)  # g(u) = Σ_k G_k u^k, u = z², fitted on 0 ≤ z ≤ 4.3
# The clamp: g is increasing on [0, 14.2] and w(z) ≥ 12 for z ≥ 4.3, so erf is exactly ±1
# beyond 4.3 (NumPy's float32 tanh is ±1 from |w| ≥ 10). Clamping as far out as 14.1 changes no
# value and lets the GELU kernels reuse the clamped x for φ(x), which underflows to 0 there.
_JIT_EW_MIN = 1 << 12  # values: below, the call into a compiled kernel costs more than it saves
_ERF_ZMAX = 14.1
_CHUNK = 1 << 16
_PAR_MIN = 1 << 17  # two chunks at least: below, one thread wins (measured, fast_erf.md)
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_XMIN = -1e4  # Φ(−1e4) = 0 in any float, so x·Φ(x) → 0 (not −∞·0) as x → −∞
_XBIG = 1e4  # φ(±1e4) = 0 in any float, so x·φ(x) → 0 as |x| → ∞


def _fast32(xp, x):
    """The chunked float32 kernels apply: NumPy arrays of float32."""
    return getattr(xp, "__name__", "") == "numpy" and x.dtype.char == "f"


def _par_flat(xp, x):
    """A big C-contiguous NumPy array and T > 1 kernel threads (backend.parallel_chunks)."""
    return (getattr(xp, "__name__", "") == "numpy" and x.size >= _PAR_MIN
            and x.flags.c_contiguous and kernel_threads() > 1)


def _chunked(xp, kernel, xs, nout=1):
    """Outputs (nout, *x.shape) of kernel(xs...) elementwise over same-shape arrays ``xs``,
    evaluated chunk by chunk with shared scratch buffers."""
    flats = [xp.ascontiguousarray(a).reshape(-1) for a in xs]
    x = xs[0]
    n = flats[0].size
    out = xp.empty((nout, n), dtype=x.dtype)
    m = max(1, min(n, _CHUNK))
    t = kernel_threads() if n >= _PAR_MIN else 1
    if t > 1:  # over the pool: one chunk per piece, as long as backend.EW_PIECE asks (each
        # ufunc call takes the GIL back; 64k chunks scaled 0.8-1.3x on 2 threads, these 1.7-2x)
        m = max(m, -(-n // piece_count(n, t, EW_PIECE)))

    def run(lo, hi):  # chunks [lo, hi) of the grid of m, with their own scratch
        bufs = [xp.empty(m, dtype=x.dtype) for _ in range(3)]
        for s in range(lo, hi, m):
            e = min(hi, s + m)
            k = e - s
            kernel(xp, *(f[s:e] for f in flats), *(out[i, s:e] for i in range(nout)),
                   *(b[:k] for b in bufs))

    # with T > 1 kernel threads, whole chunks go to the pool (backend.parallel_chunks); each
    # value is computed elementwise, so it is the same whatever the grid
    parallel_chunks(n, run, align=m, min_size=_PAR_MIN)
    return out.reshape((nout,) + x.shape)


def _scaled(a):
    """Coefficients (highest degree first) of w(x) = a·x·g(a²x²), so erf(a·x) = tanh(w), and
    the clamp on x."""
    n = len(_ERF_G)
    return tuple(a * _ERF_G[k] * a ** (2 * k) for k in range(n - 1, -1, -1)), _ERF_ZMAX / a


_ERF_1 = _scaled(1.0)  # erf(x)
_ERF_CDF = _scaled(_SQRT1_2)  # erf(x/√2) = 2Φ(x) − 1


def _erf_kernel(xp, x, out, t, x2, coefs):
    """out ← erf(a·x) for float32 x (coefs = _scaled(a)); t, x2 are scratch."""
    cw, lim = coefs
    f = x.dtype.type
    xp.clip(x, f(-lim), f(lim), out=t)
    xp.multiply(t, t, out=x2)
    xp.multiply(x2, f(cw[0]), out=out)
    out += f(cw[1])
    for c in cw[2:]:
        out *= x2
        out += f(c)
    out *= t
    return xp.tanh(out, out=out)


def _erf32_chunk(xp, x, out, t, x2, q):
    _erf_kernel(xp, x, out, t, x2, _ERF_1)


def _cdf32_into(xp, x, out, t, x2, q):
    """out ← Φ(x) = ½ + ½ erf(x/√2), float32."""
    _erf_kernel(xp, x, out, t, x2, _ERF_CDF)
    out *= x.dtype.type(0.5)
    out += x.dtype.type(0.5)


def _gelu32_chunk(xp, x, y, t, x2, q):
    """y ← x·Φ(x), float32."""
    _cdf32_into(xp, x, q, t, x2, None)
    f = x.dtype.type
    xp.clip(x, f(_XMIN), f(math.inf), out=t)  # (clip: a faster ufunc than maximum)
    xp.multiply(t, q, out=y)


def _gelu_keep32_chunk(xp, x, y, d, t, x2, q):
    """y ← x·Φ(x) and d ← GELU′(x) = Φ + x·φ(x), float32, sharing Φ and the clamped x."""
    _cdf32_into(xp, x, q, t, x2, None)
    _add_x_pdf(xp, x, q, d, t, x2)
    f = x.dtype.type
    xp.clip(x, f(_XMIN), f(math.inf), out=t)
    xp.multiply(t, q, out=y)


def _add_x_pdf(xp, x, cdf, out, t, x2):
    """out ← cdf + x·φ(x), float32, right after _cdf32_into: t is x clamped to ±20 and x2 = t²
    (φ(±20) underflows to 0, so x·φ is exactly 0 beyond, and at ±∞, not ∞·0)."""
    f = x.dtype.type
    x2 *= f(-0.5)
    xp.exp(x2, out=x2)
    x2 *= t
    x2 *= f(_INV_SQRT_2PI)
    xp.add(cdf, x2, out=out)


def _gelu_grad32_chunk(xp, x, out, t, x2, q):
    """out ← GELU′(x) = Φ(x) + x·φ(x), float32."""
    _cdf32_into(xp, x, out, t, x2, None)
    _add_x_pdf(xp, x, out, out, t, x2)


def _saved_grad(y):
    """GELU′(x) kept by Gelu's float32 forward (keep=True): y is row 0 of a (2, ...) buffer
    whose row 1 is GELU′(x)."""
    b = getattr(y, "base", None)  # the buffer that owns the memory, of shape (2, n)
    if b is None or b.dtype != y.dtype or b.size != 2 * y.size or not b.flags.c_contiguous:
        return None
    if b.__array_interface__["data"][0] != y.__array_interface__["data"][0]:
        return None
    return b.reshape((2,) + y.shape)[1]


def _normal_cdf(xp, x):
    """Φ(x) = ½ erfc(−x/√2) (accurate in both tails) off the float32 fast path."""
    return special(xp).ndtr(x)


@primitive
class Gelu(Elementwise):
    """Gaussian error linear unit (exact): x times the standard normal CDF Φ, elementwise.

    Forward:  y = x·Φ(x),  Φ(x) = ½(1 + erf(x/√2))
    VJP:      x̄ = ȳ ⊙ (Φ(x) + x·φ(x)),  φ(x) = exp(−x²/2)/√(2π)
    JVP:      ẏ = ẋ ⊙ (Φ(x) + x·φ(x))

    A primitive by DESIGN §2 rule (3): composed as x·(½ erf(x/√2) + ½) it is five passes and
    scipy's float32 erf, ~15× slower than one chunked kernel (see the erf kernels above). With
    ``keep`` (set by the wrapper when the result will be differentiated) the float32 forward
    also writes f′(x) = Φ + x·φ, reusing Φ and x² from the same chunk, into a (2, ...) buffer
    whose row 0 is y: the ordinary backward is then one product ȳ ⊙ f′ instead of a second
    erf. Elsewhere (float64, Tensors under create_graph) f′ is the primitive gelu_grad. The
    limits: y → 0 and f′ → 0 as x → −∞; y → x and f′ → 1 as x → +∞. With numba the float32
    kernel is compiled (devices/cpu_jit.py; docs/math/fast_erf.md).
    """

    @staticmethod
    def forward(xp, x, *, keep=False):
        if _fast32(xp, x):
            if _jit.applies(xp, x):
                return _jit.gelu32(x, 1 if keep else 0)[0]
            if keep:
                return _chunked(xp, _gelu_keep32_chunk, (x,), nout=2)[0]
            return _chunked(xp, _gelu32_chunk, (x,))[0]
        return xp.maximum(x, _XMIN) * _normal_cdf(xp, x)

    @staticmethod
    def derivative(y, x, *, keep=False):
        return GeluGrad.apply(x)

    @classmethod
    def vjp(cls, g, y, x, *, needs, keep=False):
        if keep and not isinstance(g, Tensor) and g.shape == x.shape and g.dtype == x.dtype:
            d = _saved_grad(y)
            if d is not None:
                return (_arith._times(g, d),)
        return (g * GeluGrad.apply(x),)


@public
def gelu(x):
    """Elementwise exact GELU x·Φ(x) (F.gelu takes the tanh approximation too)."""
    keep = isinstance(x, Tensor) and x._rg and _grad_mode.grad
    return Gelu.apply(x, keep=keep) if keep else Gelu.apply(x)


@primitive
class GeluGrad(Elementwise):
    """The derivative of the exact GELU, elementwise (a primitive so that GELU's VJP is one
    chunked kernel and still differentiable again).

    Forward:  y = Φ(x) + x·φ(x)
    VJP:      x̄ = ȳ ⊙ φ(x)(2 − x²)
    JVP:      ẏ = ẋ ⊙ φ(x)(2 − x²)
    """

    @staticmethod
    def forward(xp, x):
        if _fast32(xp, x):
            if _jit.applies(xp, x):
                return _jit.gelu32(x, 2)[0]
            return _chunked(xp, _gelu_grad32_chunk, (x,))[0]
        xc = xp.clip(x, -_XBIG, _XBIG)
        return _normal_cdf(xp, x) + xc * (xp.exp(xc * xc * -0.5) * _INV_SQRT_2PI)

    @staticmethod
    def derivative(y, x):
        # x² capped at 1e4 (φ is 0 there in any float): 0·(2 − ∞) would make f″(±∞) a NaN
        x2 = _arith.minimum(x * x, 1e4)
        return exp(x2 * -0.5) * ((2 - x2) * _INV_SQRT_2PI)


@public
def gelu_grad(x):
    """Elementwise GELU′(x) = Φ(x) + x·φ(x)."""
    return GeluGrad.apply(x)


@primitive
class Atan(Elementwise):
    """Inverse tangent, elementwise; y ∈ (−π/2, π/2), and f′ → 0 as |x| → ∞.

    Forward:  y = atan(x)
    VJP:      x̄ = ȳ / (1 + x²)
    JVP:      ẏ = ẋ / (1 + x²)
    """

    @staticmethod
    def forward(xp, x):
        return xp.arctan(x)

    @staticmethod
    def derivative(y, x):
        return 1 / (1 + x * x)  # x² = inf at huge |x| gives exactly 0, the limit


@public(method=True)
def atan(x):
    """Elementwise inverse tangent."""
    return Atan.apply(x)
