"""Compiled CPU kernels (numba, optional) for the primitives NumPy runs as many passes — layer
norm, GELU and GELU′, softmax, the LSTM and GRU steps, batch norm (channels-last), ReLU, leaky
ReLU and their rules, tiling max pooling, the unfold (im2col) copies and the fold (col2im:
transposed convolutions, a convolution's x̄): a fast path for NumPy float arrays, beside
devices/cuda.py's kernels for CuPy (issue 19 allows a JIT library for this).

Each kernel computes the mathematics of the NumPy rule next to its primitive, which stays the
reference: it is what runs where numba is not installed, with ``TENSORCALC_JIT=0``, on other
devices and for Tensors under create_graph, and the op suite and tests/test_jit_kernels.py
check the two against each other and against the generic numerical checks.

Why compiled: a layer norm over 768 × 128 float32 values is 5 NumPy passes forward and 7
backward (~360 µs together; PyTorch's fused kernels 143 µs); one row at a time in registers it is
two reads and two writes (~100 µs). The cost: numba + llvmlite (~210 MB installed, the
``tensorcalc[fast]`` extra, installed by the Makefile) and a compile on a kernel's first call
(~1-2 s, cached on disk by numba after that).

Floating point. ``fastmath`` is limited to reassociation and contraction (so the row sums
vectorise and a·b + c may be one FMA); NaN and ±inf keep NumPy's IEEE meaning (no 'nnan' or
'ninf' flags). Row sums are therefore summed in a different order than NumPy's: the values
agree to rounding, not bit for bit, with the NumPy path. Exponentials and tanh are the
helpers _exp_le0 and _tanh32 (≤ 2 ulp), written so that a loop over values vectorises:
numba's np.exp / np.tanh are a call per value.

Vectorisation, learnt the hard way (each measured: a loop that stays scalar runs 3-10x
slower): a loop should write one array (more, and the compiler's run-time checks that the
arrays do not overlap exceed its limit), not read and write one row at two offsets, run over
``range(n)`` from 0 (a variable start keeps numba's negative-index check), and take a float
maximum as an integer one on ordered bits (a float maximum with NaN semantics does not
vectorise).

Determinism. Every row is computed by one call, in one order, whichever thread runs it; column
sums (layer norm's γ̄, β̄, batch norm's statistics) are accumulated per fixed block of rows and
the blocks then added in order, so results are the same bits at any kernel thread count.
"""

from __future__ import annotations

import os

import numpy as np

from ..backend import SMALL_GEMM, kernel_threads, parallel_chunks, scipy_blas_small_kernels

_STATE = {"on": os.environ.get("TENSORCALC_JIT", "1").lower() not in ("0", "off", "false", "no"),
          "numba": None, "why": None, "kernels": {}, "wide": False}
_FASTMATH = {"reassoc", "contract"}
_BLOCK = 64  # rows per partial column sum (backward): fixed, so sums do not depend on T
# elements: below, one call on this thread. A pool thread that spins between calls
# (backend._KernelPool) starts in ~30 µs on the 2-core VM measured; when it had to be woken
# (~50-140 µs) only calls from 1M values paid (a 768 × 512 layer norm: 122 µs on one thread,
# 212 µs split over two). From 256k with the spinning pool, A/B at 2 threads: LeNet −2 to −5 %,
# resnet −5 %, vgg −4 %, inception −3 %, transformer block −4 % (128k: no further gain).
_ROW_PAR_MIN = 1 << 18
_PIECE = 1 << 19
# the kernels with an exponential per value (GELU, softmax: ~1 ns a value) pay from 256k
# (a 32×4×64×64 softmax at 2 threads: the transformer block's step 23.9 → 23.0 ms)
_HEAVY_PAR_MIN = 1 << 18
# elementwise pieces start at multiples of this: each then runs in whole vector iterations,
# with the scalar remainder loop only at the array's end, as on one thread (the same bits)
_VEC_ALIGN = 64


def _numba():
    """The numba module, imported on first use (~0.2 s), or None (and _STATE['why'])."""
    if _STATE["numba"] is None and _STATE["why"] is None:
        try:
            import numba
        except Exception as e:  # noqa: BLE001 - any import failure means: no fast path
            _STATE["why"] = f"numba not importable: {e}"
        else:
            _prefer_wide_vectors(numba)
            _STATE["numba"] = numba
    return _STATE["numba"]


# CPUs (LLVM's names) whose 512-bit vector instructions run without a clock penalty, for which
# LLVM's tuning still asks its vectoriser for 256-bit vectors
_WIDE_CPUS = {"sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
              "diamondrapids", "znver4", "znver5"}


def _prefer_wide_vectors(numba):
    """On an AVX-512 CPU of _WIDE_CPUS, have numba's vectoriser use 512-bit vectors (16 float32
    a register): LLVM's x86 tuning prefers 256-bit vectors on every AVX-512 CPU (on Skylake-X
    the wide units lower the clock), which keeps the loops here at 8 values an instruction.
    Measured on an Emerald Rapids core: the GELU kernel 1.70 → 1.09 ms per 1M float32 values
    (y and GELU′), a transformer block step −0.6 ms. The setting is numba's target features
    (numba.config.CPU_FEATURES, ``-prefer-256-bit`` added to the host's): it applies to
    everything numba compiles in this process, so it is made only where numba has compiled
    nothing yet, and never over the user's NUMBA_CPU_NAME / NUMBA_CPU_FEATURES;
    ``TENSORCALC_JIT_WIDE=0`` turns it off. numba's disk cache keys kernels by the features,
    so the cached 256-bit and 512-bit forms do not mix."""
    if os.environ.get("TENSORCALC_JIT_WIDE", "1") == "0":
        return
    try:
        cfg = numba.config
        if cfg.CPU_FEATURES is not None or cfg.CPU_NAME is not None or not cfg.ENABLE_AVX:
            return
        from numba.core.registry import cpu_target

        if "_toplevel_target_context" in vars(cpu_target):
            return  # numba has compiled before: its code generator is fixed
        import llvmlite.binding as ll

        if ll.get_host_cpu_name() not in _WIDE_CPUS:
            return
        feats = ll.get_host_cpu_features().flatten()
        if "+avx512f" in feats.split(","):
            cfg.CPU_FEATURES = feats + ",-prefer-256-bit"
            _STATE["wide"] = True
    except Exception:  # noqa: BLE001 - numba's internals moved: keep its defaults
        return


def enabled() -> bool:
    """The compiled kernels are used: numba is importable and TENSORCALC_JIT is not 0."""
    return _STATE["on"] and _numba() is not None


def set_enabled(flag: bool) -> bool:
    """Turn the compiled kernels on or off (tests compare both paths); returns the old value."""
    old = _STATE["on"]
    _STATE["on"] = bool(flag)
    return old


def usable(xp, dtype) -> bool:
    """The kernels take NumPy arrays of this dtype (float32 or float64); layouts are checked by
    the kernel's own wrapper."""
    return (_STATE["on"] and getattr(xp, "__name__", "") == "numpy" and dtype.char in "fd"
            and _numba() is not None)


def applies(xp, *arrays) -> bool:
    """The kernels take these arrays: NumPy, C-contiguous, all float32 or all float64."""
    dt = arrays[0].dtype
    return (all(a.dtype == dt and a.flags.c_contiguous for a in arrays)
            and usable(xp, dt))


def _kernel(name):
    k = _STATE["kernels"].get(name)
    if k is None:
        nb = _numba()
        _compile_helpers(nb)
        for glob, callee in _CALLEES.get(name, ()):  # it calls other kernels: bind them
            globals()[glob] = _kernel(callee)
        # error_model="numpy": x/0 is ±inf or NaN as in NumPy (numba's default raises, and its
        # check keeps a loop with a division from vectorising); the BLAS-calling kernels
        # (_BLAS_KERNELS) without fastmath: their sums stay in the NumPy path's order
        k = nb.njit(cache=True, nogil=True, error_model="numpy",
                    fastmath=False if name in _BLAS_KERNELS else _FASTMATH)(_SOURCES[name])
        _STATE["kernels"][name] = k
    return k


def _compile_helpers(nb):
    """Replace the module's helper functions (_bits_f32, _f32_bits, _exp_le0, _tanh32, _xgemm,
    _blas_args, _gemm_cols: Python functions, so the kernels' source also runs uncompiled) by
    their compiled forms, which the kernels then call: the bit casts as numba intrinsics (one
    LLVM bitcast each), SciPy's ?gemm as external functions called by symbol name."""
    g = globals()
    if "helpers" in _STATE:
        return
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def cast(src, dst, lltype):
        @intrinsic
        def bitcast(typingctx, v):
            if v != src:
                return None
            return dst(src), lambda context, builder, sig, args: builder.bitcast(args[0],
                                                                                 lltype)
        return bitcast

    g["_bits_f32"] = cast(types.int32, types.float32, ir.FloatType())
    g["_f32_bits"] = cast(types.float32, types.int32, ir.IntType(32))
    g["_exp_le0"] = nb.njit(inline="always", fastmath=_FASTMATH, error_model="numpy")(
        _exp_le0_py)
    g["_tanh32"] = nb.njit(inline="always", fastmath=_FASTMATH, error_model="numpy")(
        _tanh32_py)
    sig = types.void(*([types.intp] * 13))
    g["_sgemm_ext"] = types.ExternalFunction(_GEMM_SYMBOLS["s"], sig)
    g["_dgemm_ext"] = types.ExternalFunction(_GEMM_SYMBOLS["d"], sig)
    g["_xgemm"] = nb.njit(inline="always")(_xgemm_py)
    g["_blas_args"] = nb.njit(cache=True, nogil=True)(_blas_args_py)
    g["_gemm_cols"] = nb.njit(cache=True, nogil=True)(_gemm_cols_py)
    _STATE["helpers"] = True


# ------------------------------------------------------------------------------ layer norm
def _ln_forward_rows(x, w, b, c, y, xh, inv, keep):
    """Rows of y = γ ⊙ (x − μ)·(σ² + ε)^(−½) + β, μ and σ² (biased) over each row; with keep
    also x̂ and the per-row (σ² + ε)^(−½). c = [1/n, ε, 1] in x's dtype (a Python number in
    the arithmetic would promote float32 to float64)."""
    rows, n = x.shape
    rn, eps, one = c[0], c[1], c[2]
    for r in range(rows):
        s = x[r, 0]
        for j in range(1, n):
            s += x[r, j]
        m = s * rn
        d = x[r, 0] - m
        v = d * d
        for j in range(1, n):
            d = x[r, j] - m
            v += d * d
        iv = one / np.sqrt(v * rn + eps)
        # without keep, x̂ goes through one scratch row: the same code, the same bits
        q = r if keep else 0
        if keep:
            inv[r] = iv
        for j in range(n):
            xh[q, j] = (x[r, j] - m) * iv
        for j in range(n):
            y[r, j] = xh[q, j] * w[j] + b[j]


def _ln_backward_rows(g, w, xh, inv, c, gx, pw, pb, first, need_x, need_wb):
    """Rows of x̄ = (ĝ − mean ĝ − x̂ ⊙ mean(ĝ ⊙ x̂))·inv with ĝ = ȳ ⊙ γ, and the partial column
    sums Σ ȳ ⊙ x̂ (into pw) and Σ ȳ (into pb) of each block of _BLOCK rows (row r of this
    piece is global row first + r; pw, pb start at this piece's first block, zeroed);
    c = [1/n] in g's dtype."""
    rows, n = g.shape
    rn = c[0]
    blk0 = first // _BLOCK
    for r in range(rows):
        if need_wb:
            k = (first + r) // _BLOCK - blk0
            for j in range(n):
                pb[k, j] += g[r, j]
                pw[k, j] += g[r, j] * xh[r, j]
        if need_x:
            m1 = g[r, 0] * w[0]
            m2 = m1 * xh[r, 0]
            for j in range(1, n):
                u = g[r, j] * w[j]
                m1 += u
                m2 += u * xh[r, j]
            m1 = m1 * rn
            m2 = m2 * rn
            iv = inv[r]
            for j in range(n):
                gx[r, j] = (g[r, j] * w[j] - m1 - xh[r, j] * m2) * iv


# ----------------------------------------------------------------- the vectorising exponential
# e^a for a ≤ 0 in float32, written so a loop over values vectorises (numba's np.exp is a call
# per value): e^a = 2^k·p(r), k = rint(a·log₂e), r = a − k·ln 2 (in two parts, |r| ≤ ln 2 / 2),
# p the degree-6 Taylor polynomial (relative error ≤ 1.2e-7 there), and 2^k made from its
# exponent bits ((k + 127) << 23 read as a float: _bits_f32, a bit cast compiled as one
# instruction). Arguments below −87 (where e^a is under float32's smallest normal) give
# exactly 0; a NaN gives NaN (k is clamped first: converting a NaN to an integer is undefined).
_EXP_MIN = -87.0


def _bits_f32(i):
    """The float32 whose bits are the int32 i (compiled: a bit cast)."""
    return np.array([i], dtype=np.int32).view(np.float32)[0]


def _f32_bits(v):
    """The int32 bits of the float32 v (compiled: a bit cast)."""
    return np.array([v], dtype=np.float32).view(np.int32)[0]


def _exp_le0_py(a, log2e, ln2hi, ln2lo, half, one, bias, emin, p6, p5, p4, p3, zero):
    """e^a for float32 a ≤ 0 (the constants of _exp_consts, float32 scalars)."""
    b = emin if a < emin else a
    k = np.rint(b * log2e)
    k = k if k == k else zero  # NaN → 0 (the result stays NaN through r)
    r = b - k * ln2hi - k * ln2lo
    p = one + r * (one + r * (half + r * (p3 + r * (p4 + r * (p5 + r * p6)))))
    e = p * _bits_f32(np.int32(np.int32(k + bias) << 23))
    return zero if a < emin else e


_exp_le0 = _exp_le0_py  # (compiled by _compile_helpers)
_EXP_C = None


def _exp_consts():
    """[log₂e, ln2 hi, ln2 lo, ½, 1, 127, −87, 1/6!, 1/5!, 1/4!, 1/3!, 0, −∞] as float32: the
    exponential's constants (a Python number in the arithmetic would promote to float64)."""
    global _EXP_C
    if _EXP_C is None:
        _EXP_C = np.array([1 / np.log(2.0), 0.693145751953125, 1.428606765330187045e-06, 0.5,
                           1.0, 127.0, _EXP_MIN, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.0,
                           -np.inf], dtype=np.float32)
    return _EXP_C


def _tanh32_py(x, e, t):
    """tanh x for float32 x (≤ 2 ulp, ~1.2e-7 relative to a correctly rounded tanh): the odd
    Taylor polynomial through x¹¹ for |x| < 0.4, else sign(x)·(1 − e^(−2|x|))/(1 + e^(−2|x|))
    with _exp_le0 (no cancellation there: e^(−2|x|) ≤ 0.45); ±1 exactly from |x| = 43.5 (the
    exponential underflows), NaN for NaN. ``e``: the tuple of _exp_le0's constants,
    ``t`` = (2, 0.4, then the Taylor coefficients of x³ … x¹¹), float32."""
    ax = abs(x)
    u = x * x
    two, lim, c3, c5, c7, c9, c11 = t
    p = x + x * u * (c3 + u * (c5 + u * (c7 + u * (c9 + u * c11))))
    q = _exp_le0(-two * ax, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10],
                 e[11])
    one = e[4]
    r = (one - q) / (one + q)
    r = -r if x < e[11] else r
    return p if ax < lim else r


_tanh32 = _tanh32_py  # (compiled by _compile_helpers)
_TANH_C = None


def _tanh_consts():
    """(_exp_le0's constants, _tanh32's), as tuples of float32 scalars (for the kernels)."""
    global _TANH_C
    if _TANH_C is None:
        c = _exp_consts()
        f = np.float32
        e = tuple(f(v) for v in c[:12])  # log₂e, ln 2 (hi, lo), ½, 1, 127, −87, p6..p3, 0
        t = (f(2.0), f(0.4), f(-1 / 3), f(2 / 15), f(-17 / 315), f(62 / 2835),
             f(-1382 / 155925))
        _TANH_C = (e, t)
    return _TANH_C


# ------------------------------------------------------------------------------------ GELU
# GELU (exact) in float32 from the same erf as ops.elementwise's NumPy kernels, erf(z) =
# tanh(z·g(z²)) (docs/math/fast_erf.md), with tanh|w| = (1 − e^(−2|w|))/(1 + e^(−2|w|)) and
# φ(x) = e^(−x²/2)/√(2π), both exponentials _exp_le0: one pass, every value in registers.
def _gelu_rows(x, y, d, c, mode):
    """mode 0: y = x·Φ(x); 1: y and d = GELU′(x) = Φ(x) + x·φ(x); 2: d only (into d).
    c: [erf coefficients (7, highest first), clamp, x_min, 1/√(2π), 2] + _exp_consts() as
    float32."""
    c0, c1, c2, c3, c4, c5, c6 = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    lim, xmin, isq, two = c[7], c[8], c[9], c[10]
    log2e, ln2hi, ln2lo, half, one, bias, emin = c[11], c[12], c[13], c[14], c[15], c[16], \
        c[17]
    p6, p5, p4, p3, zero = c[18], c[19], c[20], c[21], c[22]
    n = x.size
    # one loop per mode: a branch on mode inside a loop would keep it scalar
    if mode == 0:
        for i in range(n):
            xi = x[i]
            t = lim if xi > lim else xi
            t = -lim if t < -lim else t
            u = t * t
            w = ((((((c0 * u + c1) * u + c2) * u + c3) * u + c4) * u + c5) * u + c6) * t
            ea = _exp_le0(-two * abs(w), log2e, ln2hi, ln2lo, half, one, bias, emin, p6, p5,
                          p4, p3, zero)
            th = (one - ea) / (one + ea)
            cdf = half + half * (-th if t < zero else th)
            y[i] = (xmin if xi < xmin else xi) * cdf
    if mode == 1:
        for i in range(n):
            xi = x[i]
            t = lim if xi > lim else xi
            t = -lim if t < -lim else t
            u = t * t
            w = ((((((c0 * u + c1) * u + c2) * u + c3) * u + c4) * u + c5) * u + c6) * t
            ea = _exp_le0(-two * abs(w), log2e, ln2hi, ln2lo, half, one, bias, emin, p6, p5,
                          p4, p3, zero)
            th = (one - ea) / (one + ea)
            cdf = half + half * (-th if t < zero else th)
            phi = _exp_le0(-half * u, log2e, ln2hi, ln2lo, half, one, bias, emin, p6, p5, p4,
                           p3, zero)
            y[i] = (xmin if xi < xmin else xi) * cdf
            d[i] = cdf + t * phi * isq
    if mode == 2:
        for i in range(n):
            xi = x[i]
            t = lim if xi > lim else xi
            t = -lim if t < -lim else t
            u = t * t
            w = ((((((c0 * u + c1) * u + c2) * u + c3) * u + c4) * u + c5) * u + c6) * t
            ea = _exp_le0(-two * abs(w), log2e, ln2hi, ln2lo, half, one, bias, emin, p6, p5,
                          p4, p3, zero)
            th = (one - ea) / (one + ea)
            cdf = half + half * (-th if t < zero else th)
            phi = _exp_le0(-half * u, log2e, ln2hi, ln2lo, half, one, bias, emin, p6, p5, p4,
                           p3, zero)
            d[i] = cdf + t * phi * isq


def gelu32(x, mode):
    """GELU of a C-contiguous float32 array: mode 0 → y, 1 → (2, ...) buffer [y, GELU′],
    2 → GELU′ (the layouts of ops.elementwise's _chunked)."""
    from ..ops.elementwise import _ERF_CDF, _INV_SQRT_2PI, _XMIN

    c = _STATE.get("gelu_consts")
    if c is None:
        cw, lim = _ERF_CDF
        c = np.concatenate([np.array(list(cw) + [lim, _XMIN, _INV_SQRT_2PI, 2.0],
                                     dtype=np.float32), _exp_consts()])
        _STATE["gelu_consts"] = c
    xf = x.reshape(-1)
    n = xf.size
    out = np.empty((2 if mode == 1 else 1, n), dtype=np.float32)
    y, d = out[0], out[-1]
    k = _kernel("gelu")
    _jobs().job_or_chunks(
        "gelu", (xf, y, d, c), [xf.ctypes.data, y.ctypes.data, d.ctypes.data, c.ctypes.data, n,
                                c.size, mode], n,
        lambda a, b: k(xf[a:b], y[a:b], d[a:b], c, mode), cost=n, min_size=_HEAVY_PAR_MIN,
        piece=_HEAVY_PAR_MIN // 2, align=_VEC_ALIGN, job_min=_jobs().JOB_MIN)
    return out.reshape((out.shape[0],) + x.shape)


# --------------------------------------------------------------------------------- softmax
# Softmax over the last axis of float32 rows, with attention's boolean mask (True = allowed),
# with _exp_le0: after the max shift every argument is ≤ 0. The row's maximum is taken on the
# floats' bits as ordered integers (o(b) = b ^ ((b >> 31) & 0x7fffffff) orders finite floats
# and ±∞ as signed integers, +NaN above +∞, −NaN below −∞): an integer maximum vectorises,
# a float one with NaN semantics does not. A row whose maximum is not finite (+∞, +NaN, or
# every allowed entry −∞), or whose sum comes out NaN (a −NaN entry), takes the reference's
# path: shift 0 and NumPy's exp (∞/∞ is NaN; an all −∞ row is 0/0 = NaN unmasked, 0 masked).
def _softmax_rows_k(x, mask, mrows, masked, y, c):
    """y = softmax of each row of x over the entries mask[r % mrows] allows (all if not
    masked); a row with none allowed is 0. c = _exp_consts()."""
    log2e, ln2hi, ln2lo, half, one, bias, emin = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    p6, p5, p4, p3, zero, ninf = c[7], c[8], c[9], c[10], c[11], c[12]
    low = np.int32(0x7fffffff)
    s31 = np.int32(31)
    b = _f32_bits(ninf)
    oninf = b ^ ((b >> s31) & low)  # o(−∞): the maximum of no entry
    rows, n = x.shape
    for r in range(rows):
        xr = x[r]
        yr = y[r]
        mr = mask[r % mrows]
        mi = oninf
        if masked:  # (loops without a test of `masked` inside: those do not vectorise)
            for j in range(n):
                b = _f32_bits(xr[j])
                b ^= (b >> s31) & low
                b = b if mr[j] else oninf
                mi = b if b > mi else mi
        else:
            for j in range(n):
                b = _f32_bits(xr[j])
                b ^= (b >> s31) & low
                mi = b if b > mi else mi
        m = _bits_f32(np.int32(mi ^ ((mi >> s31) & low)))
        ssum = zero
        if np.isfinite(m):
            if masked:
                for j in range(n):
                    e = _exp_le0(xr[j] - m, log2e, ln2hi, ln2lo, half, one, bias, emin, p6,
                                 p5, p4, p3, zero)
                    e = e if mr[j] else zero
                    yr[j] = e
                    ssum += e
            else:
                for j in range(n):
                    e = _exp_le0(xr[j] - m, log2e, ln2hi, ln2lo, half, one, bias, emin, p6,
                                 p5, p4, p3, zero)
                    yr[j] = e
                    ssum += e
        if not np.isfinite(m) or ssum != ssum:  # the reference's path
            ssum = zero
            for j in range(n):
                e = np.exp(xr[j]) if (mr[j] or not masked) else zero
                yr[j] = e
                ssum += e
        if masked and ssum == zero:
            ssum = one  # no allowed entry: 0/1 = 0
        for j in range(n):
            yr[j] = yr[j] / ssum


def _softmax_pull_k(g, y, gx):
    """x̄ = y ⊙ (ȳ − Σ ȳ ⊙ y) per row."""
    rows, n = g.shape
    for r in range(rows):
        gr = g[r]
        yr = y[r]
        s = gr[0] * yr[0]
        for j in range(1, n):
            s += gr[j] * yr[j]
        o = gx[r]
        for j in range(n):
            o[j] = (gr[j] - s) * yr[j]


def softmax32(x2, mask2):
    """Softmax of the rows of a C-contiguous float32 (rows, n) array; mask2 None or a
    C-contiguous boolean (mrows, n) whose row r % mrows masks row r (mrows divides rows)."""
    rows, n = x2.shape
    y = np.empty_like(x2)
    masked = mask2 is not None
    m = mask2 if masked else np.ones((1, n), dtype=np.bool_)
    mrows = m.shape[0]
    k = _kernel("softmax")
    c = _exp_consts()

    def run(a, b):
        k(x2[a:b], m, mrows, masked, y[a:b], c)

    # rows of the piece start at a: the mask row is (a + r) % mrows, so pieces start at
    # multiples of mrows
    _jobs().job_or_chunks(
        "softmax", (x2, y, c), [x2.ctypes.data, m.ctypes.data, y.ctypes.data, c.ctypes.data,
                                rows, n, mrows, masked, c.size], rows, run, cost=x2.size,
        min_size=_HEAVY_PAR_MIN, piece=_HEAVY_PAR_MIN // 2, align=mrows, job_min=_jobs().JOB_MIN)
    return y


def softmax_pull(g2, y2):
    """Softmax's rule on C-contiguous (rows, n) arrays of one float dtype."""
    gx = np.empty_like(g2)
    k = _kernel("softmax_pull")
    rows, n = g2.shape
    _jobs().job_or_chunks(
        "softmax_pull", (g2, y2, gx), [g2.ctypes.data, y2.ctypes.data, gx.ctypes.data, rows, n],
        rows, lambda a, b: k(g2[a:b], y2[a:b], gx[a:b]), cost=g2.size, min_size=_ROW_PAR_MIN,
        piece=_PIECE, job_min=_jobs().JOB_MIN)
    return gx


# ------------------------------------------------------------------------------------ LSTM
# The elementwise part of one LSTM step (ops/rnn.LstmScan), forward and backward, as one pass
# over the (B, H) cells in float32 (_tanh32 for tanh, σ(z) = ½ tanh(z/2) + ½ as the NumPy
# rule): a NumPy step is ~10 calls on (B, 4H) arrays, whose fixed costs dominate at the sizes
# of a recurrent layer (B = 32, H = 128: ~60 µs a step beside a 40 µs GEMM). The step's GEMM
# stays NumPy's (the wrappers below), the time loop Python's.
def _lstm_fwd_k(a, z, cp, g, cn, hn, e, t):
    """Gates G = [σ σ tanh σ](a + z) into g (B, 4H), cn = f⊙cp + i⊙g, hn = o⊙tanh cn; a =
    h W_hhᵀ of the step (B, 4H), z its projected inputs. (Loops that each write one array:
    with more, the compiler's checks that the arrays do not overlap exceed its limit and the
    loop stays scalar.)"""
    B, H4 = a.shape
    H = H4 // 4
    half = e[3]
    for b in range(B):
        ab, zb, gb = a[b], z[b], g[b]
        cpb, cnb, hnb = cp[b], cn[b], hn[b]
        for j in range(H4):
            gb[j] = ab[j] + zb[j]
        for j in range(2 * H):
            gb[j] = half * _tanh32(half * gb[j], e, t) + half  # i, f
        for j in range(H):  # (range(0, n) with offsets: a loop from a variable start keeps
            gb[2 * H + j] = _tanh32(gb[2 * H + j], e, t)  # g       numba's negative-index
        for j in range(H):  # check and stays scalar)
            gb[3 * H + j] = half * _tanh32(half * gb[3 * H + j], e, t) + half  # o
        for j in range(H):
            cnb[j] = gb[H + j] * cpb[j] + gb[j] * gb[2 * H + j]
        for j in range(H):
            hnb[j] = gb[3 * H + j] * _tanh32(cnb[j], e, t)


def _lstm_bwd_k(gh_in, gc_in, g, c, cp, ga, gc_out, e, t):
    """One step of the backward recurrence: h̃ = gh_in (h̄ₜ + āₜ₊₁W), c̃ = gc_in (c̄ₜ + c̃ₜ₊₁⊙fₜ₊₁)
    + h̃⊙o⊙(1 − tanh²cₜ); āₜ = [c̃⊙g⊙i(1−i), c̃⊙cₜ₋₁⊙f(1−f), c̃⊙i⊙(1−g²), h̃⊙tanh cₜ⊙o(1−o)]
    into ga (B, 4H), and c̃⊙f into gc_out. g: the step's gates, c = cₜ, cp = cₜ₋₁. (One
    written array per loop, as above: c̃ goes through gc_out, tanh cₜ through ga's o block.)"""
    B, H4 = g.shape
    H = H4 // 4
    one = e[4]
    for b in range(B):
        hb, cb_, gb, csb, cpb = gh_in[b], gc_in[b], g[b], c[b], cp[b]
        ab, gcb = ga[b], gc_out[b]
        for j in range(H):
            ab[3 * H + j] = _tanh32(csb[j], e, t)
        for j in range(H):
            tc = ab[3 * H + j]
            gcb[j] = cb_[j] + hb[j] * ((one - tc * tc) * gb[3 * H + j])  # c̃
        for j in range(H):
            o = gb[3 * H + j]
            ab[3 * H + j] = (ab[3 * H + j] * ((one - o) * o)) * hb[j]
        for j in range(H):
            i = gb[j]
            ab[j] = (gb[2 * H + j] * ((one - i) * i)) * gcb[j]
        for j in range(H):
            f = gb[H + j]
            ab[H + j] = (cpb[j] * ((one - f) * f)) * gcb[j]
        for j in range(H):
            gg = gb[2 * H + j]
            ab[2 * H + j] = (gb[j] * (one - gg * gg)) * gcb[j]
        for j in range(H):
            gcb[j] = gcb[j] * gb[H + j]


def _over_batch(B, T, macs_per_row_step, loop):
    """Run ``loop(b0, b1)`` — a recurrence's whole time loop for batch rows b0 … b1 − 1 —
    over the kernel pool: the rows of a recurrence are independent, so T threads each run all
    the steps for their own rows, every step's GEMM single-threaded (a step's GEMM is too small
    to split: 32 × 128 by 128 × 512 ran no faster on OpenBLAS's two threads). One piece per
    thread, from 8 rows each; the results are the same bits at every run with the same thread
    count.

    With the compiled ``*_scan`` kernels (LSTM, GRU) a piece's loop is one call, the GIL released:
    each step's GEMM is SciPy's ?gemm (_xgemm, by its registered symbol), in blocks of output
    columns that OpenBLAS's small-matrix kernels take (no packing of W at every step:
    _small_block), then the step kernel. T 32, B 32, H 128, one thread: forward 2.20 → 1.52 ms
    and backward 1.97 → 1.49 ms against the Python loop of NumPy calls; on two threads as
    Python loops the threads took turns on the GIL at every step (forward 2.19 → 2.48 ms).
    Without them (numba without a usable SciPy BLAS) the loop is Python's, with NumPy's GEMM."""
    cost = B * T * macs_per_row_step
    parallel_chunks(B, loop, cost=cost, min_size=_SCAN_PAR_MIN, serial_blas=True,
                    piece=max(1, cost // kernel_threads()), align=8)


_SCAN_PAR_MIN = 1 << 22  # multiply-adds of the steps' GEMMs (an LSTM T32 B32 H128: 67M)


def _small_block(rows, k, n):
    """Output columns per GEMM call of a recurrent step (rows × k by k × n) so that each call
    fits OpenBLAS's small-matrix kernels (rows·cols·k ≤ backend.SMALL_GEMM): a multiple of 32
    (measured: blocks of 43 columns lost a quarter of the gain of 32), at most n; n (one call)
    where those kernels are not the fast ones (backend.scipy_blas_small_kernels)."""
    if not scipy_blas_small_kernels():
        return int(n)
    return int(min(n, max(32, (SMALL_GEMM // max(1, rows * k)) // 32 * 32)))


def lstm_forward(zs, h0, c0, w):
    """LstmScan's forward for float32 NumPy arrays without a mask: (hs, cs, gates)."""
    T, B, H4 = zs.shape
    H = H4 // 4
    hs = np.empty((T, B, H), dtype=zs.dtype)
    cs = np.empty((T, B, H), dtype=zs.dtype)
    gates = np.empty((T, B, H4), dtype=zs.dtype)
    k = _kernel("lstm_fwd")
    e, t = _tanh_consts()
    wt = np.ascontiguousarray(w.T)  # (a step's h Wᵀ with Wᵀ a transposed view: 1.5x slower)
    h0, c0 = np.ascontiguousarray(h0), np.ascontiguousarray(c0)

    scan = _blas_kernel("lstm_fwd_scan", zs.dtype)

    def loop(b0, b1):
        a = np.empty((b1 - b0, H4), dtype=zs.dtype)
        if scan is not None:  # the time loop as one compiled call (see _over_batch)
            scan(zs, h0, c0, wt, hs, cs, gates, a, b0, b1, _small_block(b1 - b0, H, H4), e, t)
            return
        h, c = h0[b0:b1], c0[b0:b1]
        for s in range(T):
            np.matmul(h, wt, out=a)
            k(a, zs[s, b0:b1], c, gates[s, b0:b1], cs[s, b0:b1], hs[s, b0:b1], e, t)
            h, c = hs[s, b0:b1], cs[s, b0:b1]

    _over_batch(B, T, H4 * H, loop)
    return hs, cs, gates


def lstm_backward(ghs, gcs, hs, cs, gates, h0, c0, w, need_w):
    """LstmScan's VJP for float32 NumPy arrays without a mask and with ḡ = 0 for the gates:
    (z̄s, h̄₀, c̄₀, W̄ or None)."""
    T, B, H = hs.shape
    ga = np.empty((T, B, 4 * H), dtype=hs.dtype)
    gh = np.empty((B, H), dtype=hs.dtype)
    gc0 = np.empty((B, H), dtype=hs.dtype)
    k = _kernel("lstm_bwd")
    e, t = _tanh_consts()
    c0 = np.ascontiguousarray(c0)

    scan = _blas_kernel("lstm_bwd_scan", hs.dtype)

    def loop(b0, b1):
        n = b1 - b0
        ghr = gh[b0:b1]
        ghr[...] = 0
        gc = [np.zeros((n, H), dtype=hs.dtype), np.empty((n, H), dtype=hs.dtype)]
        hin = np.empty((n, H), dtype=hs.dtype)
        cin = np.empty((n, H), dtype=hs.dtype)
        if scan is not None:  # the time loop as one compiled call (see _over_batch)
            scan(ghs, gcs, gates, cs, c0, w, ga, gh, gc0, hin, cin, gc[0], gc[1], b0, b1,
                 _small_block(n, 4 * H, H), e, t)
            return
        for s in range(T - 1, -1, -1):
            np.add(ghs[s, b0:b1], ghr, out=hin)
            np.add(gcs[s, b0:b1], gc[0], out=cin)
            k(hin, cin, gates[s, b0:b1], cs[s, b0:b1], cs[s - 1, b0:b1] if s else c0[b0:b1],
              ga[s, b0:b1], gc[1], e, t)
            gc.reverse()
            np.matmul(ga[s, b0:b1], w, out=ghr)
        gc0[b0:b1] = gc[0]

    _over_batch(B, T, 4 * H * H, loop)
    gw = None
    if need_w:  # W̄ = Σₜ āₜᵀ hₜ₋₁, with h₀ for t = 1
        gw = ga[0].T @ h0
        if T > 1:
            gw += ga[1:].reshape((T - 1) * B, 4 * H).T @ hs[:-1].reshape((T - 1) * B, H)
    return ga, gh, gc0, gw


def _xgemm_py(dbl, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc):
    """SciPy's ?gemm (``dbl``: dgemm, else sgemm) called through the symbols _blas_kernel
    registers for it (scipy.linalg.cython_blas's Fortran interface, every argument a pointer;
    compiled: an external call by name, so the kernels that call it are cached on disk)."""
    if dbl:
        _dgemm_ext(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc)
    else:
        _sgemm_ext(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc)


_xgemm = _xgemm_py  # (compiled by _compile_helpers)
_sgemm_ext = _dgemm_ext = None  # (numba external functions, _compile_helpers)
_GEMM_SYMBOLS = {"s": "tensorcalc_scipy_sgemm", "d": "tensorcalc_scipy_dgemm"}


def _gemm_cols_py(dbl, ints, ip, sp, cp, a, b, c, n, blk, isz):
    """C ← A·B (column-major, ``ints`` = [m, n, k = ldb, lda = ldc] as the time loops set it
    up with _blas_args) in blocks of ``blk`` of C's n rows — a recurrent step's output
    columns — so that each call fits OpenBLAS's small-matrix kernels (_small_block); a, b, c
    are the matrices' addresses."""
    for j in range(0, n, blk):
        ints[0] = min(blk, n - j)
        _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, a + j * isz, ip + 12, b, ip + 8, sp + isz,
             c + j * isz, ip + 12)


_gemm_cols = _gemm_cols_py  # (compiled by _compile_helpers)
# the step kernels the compiled time loops call (bound by _kernel before a loop compiles)
_lstm_fwd_step = _lstm_bwd_step = _gru_fwd_step = _gru_bwd_step = None
# the kernels that a kernel calls (a time loop its step, a chunk kernel its copy), as the
# module globals they are bound to by _kernel before the caller compiles
_unfold_few_c = _unfold_nhwc_c = None
_CALLEES = {"few_conv": [("_unfold_few_c", "unfold_few")],
            "few_wgrad": [("_unfold_few_c", "unfold_few")],
            "nhwc_wgrad": [("_unfold_nhwc_c", "unfold_nhwc")],
            "lstm_fwd_scan": [("_lstm_fwd_step", "lstm_fwd")],
            "lstm_bwd_scan": [("_lstm_bwd_step", "lstm_bwd")],
            "gru_fwd_scan": [("_gru_fwd_step", "gru_fwd")],
            "gru_bwd_scan": [("_gru_bwd_step", "gru_bwd")]}


def _lstm_fwd_scan_k(dbl, zs, h0, c0, wt, hs, cs, gates, a, b0, b1, blk, e, t):
    """lstm_forward's time loop for batch rows b0 … b1 − 1 in one call: each step a ← h Wᵀ
    (SciPy's ?gemm through _xgemm; column-major aᵀ (4H, n) = Wᵀᵀ (4H, H) hᵀ
    (H, n), both as stored, in blocks of ``blk`` gate columns) and then the step kernel."""
    T = zs.shape[0]
    H, H4 = wt.shape
    isz = wt.itemsize
    # [m, n, k = ldb, lda = ldc]: blocks of blk gate columns (OpenBLAS's small-matrix
    # kernels: no packing of W at every step)
    ints, ip, sp, cp = _blas_args(wt, False, blk, b1 - b0, H, H4)
    for s in range(T):
        hp = h0[b0:b1] if s == 0 else hs[s - 1, b0:b1]
        cprev = c0[b0:b1] if s == 0 else cs[s - 1, b0:b1]
        _gemm_cols(dbl, ints, ip, sp, cp, wt.ctypes.data, hp.ctypes.data, a.ctypes.data, H4,
                   blk, isz)
        _lstm_fwd_step(a, zs[s, b0:b1], cprev, gates[s, b0:b1], cs[s, b0:b1], hs[s, b0:b1], e, t)


def _lstm_bwd_scan_k(dbl, ghs, gcs, gates, cs, c0, w, ga, gh, gc0, hin, cin, gca, gcb, b0, b1,
                     blk, e, t):
    """lstm_backward's time loop for batch rows b0 … b1 − 1 in one call: h̃ and c̃'s inputs
    summed into hin, cin, the step kernel, then h̄ ← ā W (column-major h̄ᵀ (H, n) = Wᵀ (H, 4H)
    āᵀ (4H, n), as stored, in blocks of ``blk``). gh[b0:b1] and gca start at zero."""
    T = gates.shape[0]
    H4, H = w.shape
    n = b1 - b0
    isz = w.itemsize
    # [m, n, k = ldb, lda = ldc]: blocks of blk columns of h̄ (small-matrix kernels)
    ints, ip, sp, cp = _blas_args(w, False, blk, n, H4, H)
    ghr = gh[b0:b1]
    for s in range(T - 1, -1, -1):
        for r in range(n):
            for j in range(H):
                hin[r, j] = ghs[s, b0 + r, j] + ghr[r, j]
                cin[r, j] = gcs[s, b0 + r, j] + gca[r, j]
        cprev = c0[b0:b1] if s == 0 else cs[s - 1, b0:b1]
        _lstm_bwd_step(hin, cin, gates[s, b0:b1], cs[s, b0:b1], cprev, ga[s, b0:b1], gcb, e, t)
        gca, gcb = gcb, gca
        _gemm_cols(dbl, ints, ip, sp, cp, w.ctypes.data, ga[s, b0:b1].ctypes.data,
                   ghr.ctypes.data, H, blk, isz)
    for r in range(n):
        for j in range(H):
            gc0[b0 + r, j] = gca[r, j]


# ------------------------------------------------------------------------------------- GRU
# The same for ops/rnn.GruScan: gates r, u = σ(x + a + b), n = tanh(x_n + r⊙(a_n + b_n)) with
# a = hₜ₋₁W_hhᵀ the step's GEMM (NumPy's); scratch s (4, B, H) per step holds r, u, n, h̃.
def _gru_fwd_k(x, a, b, hp, s, hn, e, t):
    """hn = (hp − n)⊙u + n for the step's projected inputs x (B, 3H), a = hp W_hhᵀ (B, 3H),
    bias b (3H,); scratch s (4, B, H). (A loop writes one row and reads others: reading and
    writing one row at two offsets keeps a loop scalar.)"""
    B, H3 = x.shape
    H = H3 // 3
    half = e[3]
    for r in range(B):
        xr, ar, hpr, hnr, rr, ur = x[r], a[r], hp[r], hn[r], s[0, r], s[1, r]
        for j in range(H):
            rr[j] = half * _tanh32(half * (xr[j] + (ar[j] + b[j])), e, t) + half
        for j in range(H):
            ur[j] = half * _tanh32(half * (xr[H + j] + (ar[H + j] + b[H + j])), e, t) + half
        for j in range(H):
            hnr[j] = _tanh32(rr[j] * (ar[2 * H + j] + b[2 * H + j]) + xr[2 * H + j], e, t)  # n
        for j in range(H):
            hnr[j] = (hpr[j] - hnr[j]) * ur[j] + hnr[j]


def _gru_bwd_k(gy, ghm, ghu, x, a, b, hp, s, gx, ga, ghu_out, e, t):
    """One backward step: h̃ = gy + ghm + ghu (h̄ₜ + āₜ₊₁W + h̃ₜ₊₁⊙uₜ₊₁), the gates recomputed
    from x, a = hₜ₋₁W_hhᵀ, b as forward; x̄ₜ = h̃⊙[(1−u)(1−n²)(a_n + b_n) r(1−r),
    (hₜ₋₁ − n) u(1−u), (1−u)(1−n²)] into gx, āₜ = x̄ₜ⊙[1, 1, r] into ga, h̃⊙u into ghu_out;
    scratch s (4, B, H): r, u, n, h̃."""
    B, H3 = x.shape
    H = H3 // 3
    half, one = e[3], e[4]
    for r in range(B):
        xr, ar, hpr = x[r], a[r], hp[r]
        rr, ur, nr, hr = s[0, r], s[1, r], s[2, r], s[3, r]
        gxr, gar, gor = gx[r], ga[r], ghu_out[r]
        for j in range(H):
            rr[j] = half * _tanh32(half * (xr[j] + (ar[j] + b[j])), e, t) + half
        for j in range(H):
            ur[j] = half * _tanh32(half * (xr[H + j] + (ar[H + j] + b[H + j])), e, t) + half
        for j in range(H):
            nr[j] = _tanh32(rr[j] * (ar[2 * H + j] + b[2 * H + j]) + xr[2 * H + j], e, t)
        gyr, gmr, gur = gy[r], ghm[r], ghu[r]
        for j in range(H):
            hr[j] = gyr[j] + gmr[j] + gur[j]  # h̃
        for j in range(H):
            n = nr[j]
            gxr[2 * H + j] = hr[j] * ((one - ur[j]) * (one - n * n))
        for j in range(H):
            n, q = nr[j], rr[j]
            gxr[j] = hr[j] * (((one - ur[j]) * (one - n * n)) * (ar[2 * H + j] + b[2 * H + j])
                              * ((one - q) * q))
        for j in range(H):
            u = ur[j]
            gxr[H + j] = hr[j] * ((hpr[j] - nr[j]) * ((one - u) * u))
        for j in range(H):
            gar[j] = gxr[j]
        for j in range(H):
            gar[H + j] = gxr[H + j]
        for j in range(H):
            gar[2 * H + j] = gxr[2 * H + j] * rr[j]
        for j in range(H):
            gor[j] = hr[j] * ur[j]


def _gru_fwd_scan_k(dbl, xs, h0, wt, b, hs, a, sc, b0, b1, blk, e, t):
    """gru_forward's time loop for batch rows b0 … b1 − 1 in one call (as _lstm_fwd_scan_k:
    a ← h W_hhᵀ in blocks of blk columns, then the step kernel)."""
    T = xs.shape[0]
    H, H3 = wt.shape
    isz = wt.itemsize
    ints, ip, sp, cp = _blas_args(wt, False, blk, b1 - b0, H, H3)
    for s in range(T):
        hp = h0[b0:b1] if s == 0 else hs[s - 1, b0:b1]
        _gemm_cols(dbl, ints, ip, sp, cp, wt.ctypes.data, hp.ctypes.data, a.ctypes.data, H3,
                   blk, isz)
        _gru_fwd_step(xs[s, b0:b1], a, b, hp, sc, hs[s, b0:b1], e, t)


def _gru_bwd_scan_k(dbl, gy, xs, A, b, hs, h0, w, gx, ga, gh, sc, ghm, ghu_a, ghu_b, gyc, b0,
                    b1, blk, e, t):
    """gru_backward's time loop for batch rows b0 … b1 − 1 in one call: the step kernel, then
    h̄'s GEMM part ā W_hh in blocks of blk columns (as _lstm_bwd_scan_k); at the end
    h̄₀ = ā₁W + h̃₁⊙u₁ into gh. ghm and ghu_a start at zero."""
    T = xs.shape[0]
    H3, H = w.shape
    n = b1 - b0
    isz = w.itemsize
    ints, ip, sp, cp = _blas_args(w, False, blk, n, H3, H)
    for s in range(T - 1, -1, -1):
        for r in range(n):
            for j in range(H):
                gyc[r, j] = gy[s, b0 + r, j]
        hp = h0[b0:b1] if s == 0 else hs[s - 1, b0:b1]
        _gru_bwd_step(gyc, ghm, ghu_a, xs[s, b0:b1], A[s, b0:b1], b, hp, sc, gx[s, b0:b1],
             ga[s, b0:b1], ghu_b, e, t)
        ghu_a, ghu_b = ghu_b, ghu_a
        _gemm_cols(dbl, ints, ip, sp, cp, w.ctypes.data, ga[s, b0:b1].ctypes.data,
                   ghm.ctypes.data, H, blk, isz)
    for r in range(n):
        for j in range(H):
            gh[b0 + r, j] = ghm[r, j] + ghu_a[r, j]


def gru_forward(xs, h0, w, b):
    """GruScan's forward for float32 NumPy arrays without a mask: hs (T, B, H)."""
    T, B, H3 = xs.shape
    H = H3 // 3
    hs = np.empty((T, B, H), dtype=xs.dtype)
    k = _kernel("gru_fwd")
    e, t = _tanh_consts()
    wt = np.ascontiguousarray(w.T)  # (as lstm_forward)
    h0 = np.ascontiguousarray(h0)

    scan = _blas_kernel("gru_fwd_scan", xs.dtype)

    def loop(b0, b1):
        a = np.empty((b1 - b0, H3), dtype=xs.dtype)
        sc = np.empty((4, b1 - b0, H), dtype=xs.dtype)
        if scan is not None:  # the time loop as one compiled call (see _over_batch)
            scan(xs, h0, wt, b, hs, a, sc, b0, b1, _small_block(b1 - b0, H, H3), e, t)
            return
        h = h0[b0:b1]
        for s in range(T):
            np.matmul(h, wt, out=a)
            k(xs[s, b0:b1], a, b, h, sc, hs[s, b0:b1], e, t)
            h = hs[s, b0:b1]

    _over_batch(B, T, H3 * H, loop)
    return hs


def gru_backward(gy, xs, h0, w, b, hs, needs):
    """GruScan's VJP for float32 NumPy arrays without a mask: (x̄s, h̄₀, W̄, b̄), None where
    not needed (x̄s and h̄₀ are always formed: they carry the recurrence)."""
    T, B, H3 = xs.shape
    H = H3 // 3
    h0 = np.ascontiguousarray(h0)
    A = np.empty((T, B, H3), dtype=xs.dtype)  # hₜ₋₁W_hhᵀ for every step: two GEMMs
    np.matmul(h0, w.T, out=A[0])
    if T > 1:
        np.matmul(hs[:-1].reshape((T - 1) * B, H), w.T, out=A[1:].reshape((T - 1) * B, H3))
    gx = np.empty((T, B, H3), dtype=xs.dtype)
    ga = np.empty((T, B, H3), dtype=xs.dtype)
    gh = np.empty((B, H), dtype=xs.dtype)
    k = _kernel("gru_bwd")
    e, t = _tanh_consts()

    scan = _blas_kernel("gru_bwd_scan", xs.dtype)

    def loop(b0, b1):
        n = b1 - b0
        sc = np.empty((4, n, H), dtype=xs.dtype)
        ghm = np.zeros((n, H), dtype=xs.dtype)
        ghu = [np.zeros((n, H), dtype=xs.dtype), np.empty((n, H), dtype=xs.dtype)]
        gyc = np.empty((n, H), dtype=xs.dtype)
        if scan is not None:  # the time loop as one compiled call (see _over_batch)
            scan(gy, xs, A, b, hs, h0, w, gx, ga, gh, sc, ghm, ghu[0], ghu[1], gyc, b0, b1,
                 _small_block(n, H3, H), e, t)
            return
        for s in range(T - 1, -1, -1):
            gyc[...] = gy[s, b0:b1]
            k(gyc, ghm, ghu[0], xs[s, b0:b1], A[s, b0:b1], b,
              hs[s - 1, b0:b1] if s else h0[b0:b1], sc, gx[s, b0:b1], ga[s, b0:b1], ghu[1], e,
              t)
            ghu.reverse()
            np.matmul(ga[s, b0:b1], w, out=ghm)
        np.add(ghm, ghu[0], out=gh[b0:b1])  # h̄₀ = ā₁W + h̃₁⊙u₁

    _over_batch(B, T, H3 * H, loop)
    gw = gb = None
    if needs[2]:
        gw = ga[0].T @ h0
        if T > 1:
            gw += ga[1:].reshape((T - 1) * B, H3).T @ hs[:-1].reshape((T - 1) * B, H)
    if needs[3]:
        gb = ga.reshape(T * B, H3).sum(axis=0)
    return gx, gh, gw, gb


# ------------------------------------------------------------------------------ batch norm
# Batch norm in training mode on channels-last memory, as (P, C) rows (P = N·H·W pixels): the
# per-channel sums run along the rows with the C channels in the vector lanes. Sums are taken
# per block of _BN_BLOCK rows and the blocks then added in order (two stages, as the NumPy
# path's batch-then-pixels GEMVs: rounding like (√256 + √blocks)·ε, and the same bits at any
# thread count).
_BN_BLOCK = 256


def _bn_sums_k(x, mu, part, first, centred):
    """part[k, c] += x[p, c] (centred: (x[p, c] − μ[c])²) for the rows of block k."""
    rows, C = x.shape
    b0 = first // _BN_BLOCK
    for r in range(rows):
        k = (first + r) // _BN_BLOCK - b0
        pr = part[k]
        xr = x[r]
        if centred:
            for c in range(C):
                d = xr[c] - mu[c]
                pr[c] += d * d
        else:
            for c in range(C):
                pr[c] += xr[c]


def _bn_grad_sums_k(g, x, mu, pb, pt, first, y, k01, relu):
    """pb[k, c] += ȳ[p, c], pt[k, c] += ȳ[p, c]·(x[p, c] − μ[c]) for the rows of block k; with
    ``relu`` ȳ is first masked by the output, ȳ·[y > 0] (a product, k01 = [0, 1] in the dtype,
    so NaN·0 stays NaN as in ReLU's rule)."""
    rows, C = g.shape
    b0 = first // _BN_BLOCK
    zero, one = k01[0], k01[1]
    for r in range(rows):
        k = (first + r) // _BN_BLOCK - b0
        br = pb[k]
        tr = pt[k]
        gr = g[r]
        xr = x[r]
        if relu:
            yr = y[r]
            for c in range(C):
                gv = gr[c] * (one if yr[c] > zero else zero)
                br[c] += gv
                tr[c] += gv * (xr[c] - mu[c])
        else:
            for c in range(C):
                br[c] += gr[c]
                tr[c] += gr[c] * (xr[c] - mu[c])


def _bn_affine_k(x, mu, a, b, y, k01, relu, r, res):
    """y[p, c] = (x[p, c] − μ[c])·a[c] + b[c]; with ``res`` + r[p, c] (a residual added, as
    ResNet's skip connection); with ``relu`` max(·, 0) (NaN stays NaN, as NumPy's maximum;
    k01 = [0, 1] in the dtype)."""
    rows, C = x.shape
    zero = k01[0]
    for p in range(rows):
        xr = x[p]
        yr = y[p]
        if res:
            rr = r[p]
            if relu:
                for c in range(C):
                    v = (xr[c] - mu[c]) * a[c] + b[c] + rr[c]
                    yr[c] = zero if v <= zero else v
            else:
                for c in range(C):
                    yr[c] = (xr[c] - mu[c]) * a[c] + b[c] + rr[c]
        elif relu:
            for c in range(C):
                v = (xr[c] - mu[c]) * a[c] + b[c]
                yr[c] = zero if v <= zero else v
        else:
            for c in range(C):
                yr[c] = (xr[c] - mu[c]) * a[c] + b[c]


def _bn_grad_k(g, x, mu, a, k1, k0, gx, y, k01, relu, gm, keep):
    """x̄[p, c] = a[c]·ȳ[p, c] + k1[c]·(x[p, c] − μ[c]) + k0[c]; with ``relu`` ȳ·[y > 0] for ȳ
    (as in _bn_grad_sums_k), and with ``keep`` that masked ȳ also written to gm (the
    residual's cotangent)."""
    rows, C = g.shape
    zero, one = k01[0], k01[1]
    for r in range(rows):
        gr = g[r]
        xr = x[r]
        o = gx[r]
        if relu:
            yr = y[r]
            if keep:  # two short loops: the mask into gm, then x̄ from it
                mr = gm[r]
                for c in range(C):
                    mr[c] = gr[c] * (one if yr[c] > zero else zero)
                for c in range(C):
                    o[c] = a[c] * mr[c] + k1[c] * (xr[c] - mu[c]) + k0[c]
            else:
                for c in range(C):
                    gv = gr[c] * (one if yr[c] > zero else zero)
                    o[c] = a[c] * gv + k1[c] * (xr[c] - mu[c]) + k0[c]
        else:
            for c in range(C):
                o[c] = a[c] * gr[c] + k1[c] * (xr[c] - mu[c]) + k0[c]


def _bn_blocks(rows, C, dtype, fn, nparts, job=None):
    """Per-block partial sums of fn(a, b, parts...) over the rows, in block order; ``job``:
    (name, arrays, fields(parts)) of its compiled job (devices/cpu_jobs)."""
    nblk = -(-rows // _BN_BLOCK)
    parts = [np.zeros((nblk, C), dtype=dtype) for _ in range(nparts)]

    def run(a, b):
        fn(a, b, *(p[a // _BN_BLOCK:] for p in parts))

    if job is None:
        parallel_chunks(rows, run, cost=rows * C, min_size=_ROW_PAR_MIN, align=_BN_BLOCK,
                        piece=_PIECE)
    else:
        name, arrays, fields = job
        _jobs().job_or_chunks(name, tuple(arrays) + tuple(parts), fields(parts), rows, run,
                              cost=rows * C, min_size=_ROW_PAR_MIN, align=_BN_BLOCK,
                              piece=_PIECE)
    return [p.sum(axis=0) for p in parts]


def _rows_run(rows, C, fn, job=None):
    """fn(a, b) over the rows' pieces; ``job``: (name, arrays, fields) of its compiled job."""
    if job is None:
        parallel_chunks(rows, fn, cost=rows * C, min_size=_ROW_PAR_MIN, piece=_PIECE)
    else:
        _jobs().job_or_chunks(*job, rows, fn, cost=rows * C, min_size=_ROW_PAR_MIN,
                              piece=_PIECE)


def _jobs():
    from . import cpu_jobs

    return cpu_jobs


def _addrs(*arrays):
    return [a.ctypes.data for a in arrays]


def batch_norm_forward(x2, w, b, eps, relu=False, r2=None):
    """Training-mode batch norm of (P, C) rows: (y rows, μ, σ²), as ops.reduce.BatchNorm; with
    the rows ``r2`` of a residual y = γ x̂ + β + r, and with ``relu`` max(·, 0), in the same
    pass."""
    rows, C = x2.shape
    ks, ka = _kernel("bn_sums"), _kernel("bn_affine")
    zero = np.zeros(C, dtype=x2.dtype)
    nblk = -(-rows // _BN_BLOCK)

    def sums(m, centred):
        return ("bn_sums", (x2, m), lambda p: _addrs(x2, m, p[0]) + [rows, C, nblk, centred])

    (s,) = _bn_blocks(rows, C, x2.dtype, lambda a, c, p: ks(x2[a:c], zero, p, a, False), 1,
                      sums(zero, False))
    mu = s / rows
    (v,) = _bn_blocks(rows, C, x2.dtype, lambda a, c, p: ks(x2[a:c], mu, p, a, True), 1,
                      sums(mu, True))
    var = v / rows
    aa = w * (1 / np.sqrt(var + eps))
    y = np.empty_like(x2)
    k01 = np.array([0, 1], dtype=x2.dtype)
    res = r2 is not None
    rr = r2 if res else x2
    _rows_run(rows, C, lambda a, c: ka(x2[a:c], mu, aa, b, y[a:c], k01, bool(relu), rr[a:c],
                                       res),
              ("bn_affine", (x2, mu, aa, b, y, k01, rr),
               _addrs(x2, mu, aa, b, y, k01, rr) + [rows, C, relu, res]))
    return y, mu, var


def batch_norm_backward_sums(g2, x2, mu, y2=None):
    """(Σ_rows ȳ, Σ_rows ȳ ⊙ (x − μ)) per channel; with the output rows ``y2`` (batch norm
    with ReLU) ȳ ⊙ [y > 0] for ȳ."""
    rows, C = g2.shape
    k = _kernel("bn_grad_sums")
    relu = y2 is not None
    yy = y2 if relu else x2
    k01 = np.array([0, 1], dtype=g2.dtype)
    nblk = -(-rows // _BN_BLOCK)
    gb, t = _bn_blocks(rows, C, g2.dtype,
                       lambda a, c, pb, pt: k(g2[a:c], x2[a:c], mu, pb, pt, a, yy[a:c], k01,
                                              relu), 2,
                       ("bn_grad_sums", (g2, x2, mu, yy, k01),
                        lambda p: _addrs(g2, x2, mu, p[0], p[1], yy, k01) + [rows, C, nblk,
                                                                             relu]))
    return gb, t


def batch_norm_backward_apply(g2, x2, mu, a, k1, k0, y2=None, keep=False):
    """(x̄, m): x̄ = a ȳ + k1 (x − μ) + k0 per channel, as (P, C) rows (ȳ ⊙ [y > 0] with
    ``y2``); m is that masked ȳ with ``keep`` (and ``y2``), else None."""
    rows, C = g2.shape
    gx = np.empty_like(g2)
    k = _kernel("bn_grad")
    relu = y2 is not None
    keep = bool(keep and relu)
    gm = np.empty_like(g2) if keep else gx
    yy = y2 if relu else x2
    k01 = np.array([0, 1], dtype=g2.dtype)
    _rows_run(rows, C, lambda s, e: k(g2[s:e], x2[s:e], mu, a, k1, k0, gx[s:e], yy[s:e], k01,
                                      relu, gm[s:e], keep),
              ("bn_grad", (g2, x2, mu, a, k1, k0, gx, yy, k01, gm),
               _addrs(g2, x2, mu, a, k1, k0, gx, yy, k01, gm) + [rows, C, relu, keep]))
    return gx, (gm if keep else None)


# ----------------------------------------------------------------------------------- ReLU′
def _relu_grad_k(g, x, c, out):
    """out = ȳ·(1 if x > 0 else a) elementwise, c = [0, 1, a] in their dtype (a product, not a
    select: for ReLU (a = 0) NaN·0 and ∞·0 are NaN, as in the NumPy rule ȳ ⊙ [x > 0]; for a
    leaky slope it is the select where(x > 0, ȳ, a·ȳ) bit for bit)."""
    zero, one, a = c[0], c[1], c[2]
    for i in range(g.size):
        out[i] = g[i] * (one if x[i] > zero else a)


def _relu_grad4_k(g, x, c, out):
    """The same on 4-D (N, H, W, C) arrays of any strides (x̄ and x channels-last views, ȳ in
    another layout), looping in out's C-order: where ȳ's memory differs from x's, one of them
    is read with a stride — still one pass, against NumPy's ~5 ns a value there."""
    zero, one, a = c[0], c[1], c[2]
    N, H, W, C = x.shape
    for n in range(N):
        for h in range(H):
            for w in range(W):
                gr, xr, orow = g[n, h, w], x[n, h, w], out[n, h, w]
                for k in range(C):
                    orow[k] = gr[k] * (one if xr[k] > zero else a)


def _relu_k(x, c, out):
    """out = max(x, 0) elementwise, NaN kept (NumPy's maximum: max(−0, 0) = +0, NaN stays);
    c = [0] in x's dtype."""
    zero = c[0]
    for i in range(x.size):
        v = x[i]
        out[i] = v if (v > zero or v != v) else zero


def _leaky_k(x, c, out):
    """out = x for x > 0, a·x otherwise (c = [0, a], 0 < a ≤ 1): NumPy's max(x, a·x) bit for
    bit (−0 stays −0, NaN stays NaN)."""
    zero, a = c[0], c[1]
    for i in range(x.size):
        v = x[i]
        out[i] = v if v > zero else v * a


def leaky_relu(x, slope):
    """max(x, a·x) for 0 < a ≤ 1 (leaky ReLU), x C-contiguous or channels-last (4-D), in x's
    layout; None otherwise. One pass instead of NumPy's two."""
    pair = _flat_pair(x, x)
    if pair is None or not 0 < slope <= 1:
        return None
    xf, _, out, res = pair
    k = _kernel("leaky")
    c = np.array([0, slope], dtype=x.dtype)
    _rows_run(xf.size, 1, lambda a, b: k(xf[a:b], c, out[a:b]),
              ("leaky", (xf, c, out), _addrs(xf, c, out) + [xf.size, c.size]))
    return res


def relu(x):
    """max(x, 0) for x C-contiguous or channels-last (4-D), in x's layout; None otherwise.
    One pass at copying speed: NumPy 2.4's maximum(x, 0) runs at ~1/4 of it (590k float32
    values: 217 µs against a 51 µs copy)."""
    pair = _flat_pair(x, x)
    if pair is None:
        return None
    xf, _, out, res = pair
    k = _kernel("relu")
    c = np.zeros(1, dtype=x.dtype)
    _rows_run(xf.size, 1, lambda a, b: k(xf[a:b], c, out[a:b]),
              ("relu", (xf, c, out), _addrs(xf, c, out) + [xf.size, c.size]))
    return res


def _flat_pair(g, x):
    """(g, x, out) as flat views over their memory and out's array in g's layout, for g, x of
    one shape, dtype and layout (C-contiguous, or channels-last 4-D); else None."""
    if g.shape != x.shape or g.dtype != x.dtype:
        return None
    if g.flags.c_contiguous and x.flags.c_contiguous:
        out = np.empty_like(g)
        return g.reshape(-1), x.reshape(-1), out.reshape(-1), out
    if g.ndim == 4:
        gt, xt = g.transpose(0, 2, 3, 1), x.transpose(0, 2, 3, 1)
        if gt.flags.c_contiguous and xt.flags.c_contiguous:
            out = np.empty_like(gt)
            return gt.reshape(-1), xt.reshape(-1), out.reshape(-1), out.transpose(0, 3, 1, 2)
    return None


def relu_grad(g, x, slope=0.0):
    """ȳ ⊙ (1 if x > 0 else slope) (ReLU's rule, or leaky ReLU's) for g, x of one shape and
    dtype: one pass where both share a layout (C-contiguous or channels-last); for 4-D arrays
    in different layouts (ȳ from a flatten, or a view into a padded buffer) a strided pass with
    the result in x's channels-last layout (where x is channels-last); None otherwise."""
    c = np.array([0, 1, slope], dtype=g.dtype)
    pair = _flat_pair(g, x)
    if pair is not None:
        gf, xf, out, res = pair
        k = _kernel("relu_grad")
        _rows_run(gf.size, 1, lambda a, b: k(gf[a:b], xf[a:b], c, out[a:b]),
                  ("relu_grad", (gf, xf, c, out), _addrs(gf, xf, c, out) + [gf.size, c.size]))
        return res
    if g.ndim != 4 or g.shape != x.shape or g.dtype != x.dtype:
        return None
    xt = x.transpose(0, 2, 3, 1)
    if not xt.flags.c_contiguous:
        return None
    gt = g.transpose(0, 2, 3, 1)
    out = np.empty_like(xt)
    k = _kernel("relu_grad4")
    _rows_run(xt.shape[0], xt[0].size, lambda a, b: k(gt[a:b], xt[a:b], c, out[a:b]))
    return out.transpose(0, 3, 1, 2)


# ------------------------------------------------------------------------------ max pooling
# Max pooling whose windows tile channels-last x exactly (stride = kernel, no padding or
# dilation: LeNet's and VGG's 2×2 pools), the C channels in the vector lanes.
def _maxpool_k(x, y, kh, kw, acc):
    """y[n, a, b, c] = max over the window's x[n, a·kh + i, b·kw + j, c] (NaN propagates, as
    NumPy's maximum). One output row (n, a) at a time: its W_out·C maxima are formed in the
    scratch row ``acc`` from whole input rows, then copied to y (64×16×24×24, 2×2: 235 → 139 µs
    against one small view of x and y per window and offset)."""
    N, ho, wo, C = y.shape
    H, W = x.shape[1], x.shape[2]
    x2 = x.reshape(N * H, W * C)
    y2 = y.reshape(N * ho, wo * C)
    for r in range(N * ho):
        n = r // ho
        a = r - n * ho
        for i in range(kh):
            xr = x2[n * H + a * kh + i]
            for j in range(kw):
                if i == 0 and j == 0:
                    for b in range(wo):
                        for c in range(C):
                            acc[b * C + c] = xr[b * kw * C + c]
                else:
                    for b in range(wo):
                        ib = (b * kw + j) * C
                        for c in range(C):
                            v = xr[ib + c]
                            m = acc[b * C + c]
                            acc[b * C + c] = v if (v > m or v != v) else m
        yr = y2[r]
        for t in range(wo * C):
            yr[t] = acc[t]


def _maxpool_grad_k(x, y, g, gx, kh, kw, k01, cnt, q):
    """x̄ = [x = y]·(ȳ / k) at each window entry, k = the window's tie count (products, as the
    NumPy rule: ȳ = ±∞ gives NaN off the maxima, a NaN window NaN). k01 = [0, 1] in the
    dtype; cnt, q: scratch of W_out·C (one output row (n, a) at a time, as _maxpool_k)."""
    zero, one = k01[0], k01[1]
    N, ho, wo, C = y.shape
    H, W = x.shape[1], x.shape[2]
    x2 = x.reshape(N * H, W * C)
    o2 = gx.reshape(N * H, W * C)
    y2 = y.reshape(N * ho, wo * C)
    g2 = g.reshape(N * ho, wo * C)
    for r in range(N * ho):
        n = r // ho
        a = r - n * ho
        yr = y2[r]
        gr = g2[r]
        for t in range(wo * C):
            cnt[t] = zero
        for i in range(kh):
            xr = x2[n * H + a * kh + i]
            for j in range(kw):
                for b in range(wo):
                    ib = (b * kw + j) * C
                    for c in range(C):
                        cnt[b * C + c] += one if xr[ib + c] == yr[b * C + c] else zero
        for t in range(wo * C):
            q[t] = gr[t] / cnt[t]
        for i in range(kh):
            xr = x2[n * H + a * kh + i]
            orow = o2[n * H + a * kh + i]
            for j in range(kw):
                for b in range(wo):
                    ib = (b * kw + j) * C
                    for c in range(C):
                        orow[ib + c] = (one if xr[ib + c] == yr[b * C + c] else zero) \
                            * q[b * C + c]


def max_pool_tiles(xl, kernel):
    """Max pooling of channels-last xl (N, H, W, C), C-contiguous, by windows that tile it:
    y (N, H/kh, W/kw, C)."""
    kh, kw = kernel
    n, h, w, c = xl.shape
    y = np.empty((n, h // kh, w // kw, c), dtype=xl.dtype)
    k = _kernel("maxpool")
    _rows_run(n, xl[0].size, lambda a, b: k(xl[a:b], y[a:b], kh, kw,
                                           np.empty(y.shape[2] * c, dtype=y.dtype)))
    return y


def max_pool_tiles_grad(xl, yl, gl, kernel):
    """x̄ (N, H, W, C) of max_pool_tiles from x, y and ȳ (all C-contiguous channels-last)."""
    kh, kw = kernel
    gx = np.empty_like(xl)
    k = _kernel("maxpool_grad")
    k01 = np.array([0, 1], dtype=gl.dtype)
    m = yl.shape[2] * xl.shape[3]  # W_out·C

    def run(a, b):
        k(xl[a:b], yl[a:b], gl[a:b], gx[a:b], kh, kw, k01, np.empty(m, gl.dtype),
          np.empty(m, gl.dtype))

    _rows_run(xl.shape[0], xl[0].size, run)
    return gx


def _unfold_few_k(x, lo, cols, sh, sw, dh, dw, p0, q0):
    """The few-channel unfold of x (N, C, H, W): cols[n, i, j, c, a, b] = x[lo + n, c,
    a·sh + i·dh − p0, b·sw + j·dw − q0], 0 outside x (cols: (B, kh, kw, C, H_out, W_out), whose
    runs are W_out long)."""
    B, kh, kw, C, ho, wo = cols.shape
    H, W = x.shape[2], x.shape[3]
    zero = cols.dtype.type(0)
    for n in range(B):
        for i in range(kh):
            for j in range(kw):
                for c in range(C):
                    for a in range(ho):
                        hh = a * sh + i * dh - p0
                        d = cols[n, i, j, c, a]
                        if 0 <= hh < H:
                            s = x[lo + n, c, hh]
                            for b in range(wo):
                                ww = b * sw + j * dw - q0
                                d[b] = s[ww] if 0 <= ww < W else zero
                        else:
                            for b in range(wo):
                                d[b] = zero


def _unfold_nhwc_k(x, lo, cols, sh, sw, dh, dw, p0, q0):
    """The channels-last unfold (im2col) of x (N, H, W, C), C-contiguous: cols[n, a, b, i, j,
    c] = x[lo + n, a·sh + i·dh − p0, b·sw + j·dw − q0, c], 0 outside x (cols: (B, H_out,
    W_out, kh, kw, C), C-contiguous). Without padding and dilation along W every window row is
    one run of kw·C contiguous values (a loop without branches: 1.5x faster); otherwise C
    values at a time, zeros outside x."""
    B, ho, wo, kh, kw, C = cols.shape
    H, W = x.shape[1], x.shape[2]
    run = kw * C
    zero = cols.dtype.type(0)
    xf = x.reshape(-1)
    cf = cols.reshape(B * ho * wo * kh, run)
    r = 0
    if p0 == 0 and q0 == 0 and dw == 1 and (ho - 1) * sh + (kh - 1) * dh < H \
            and (wo - 1) * sw + kw <= W:
        for n in range(B):
            for a in range(ho):
                for b in range(wo):
                    for i in range(kh):
                        s = (((lo + n) * H + a * sh + i * dh) * W + b * sw) * C
                        src = xf[s:s + run]
                        dst = cf[r]
                        for t in range(run):
                            dst[t] = src[t]
                        r += 1
        return
    for n in range(B):
        for a in range(ho):
            for b in range(wo):
                for i in range(kh):
                    hh = a * sh + i * dh - p0
                    dst = cf[r]
                    r += 1
                    for j in range(kw):  # (written out, as in _row_z_k: a shared helper
                        # took array slices and their reference counts per pixel: Z 5x slower)
                        ww = b * sw + j * dw - q0
                        seg = dst[j * C:(j + 1) * C]
                        if 0 <= hh < H and 0 <= ww < W:
                            s = (((lo + n) * H + hh) * W + ww) * C
                            src = xf[s:s + C]
                            for c in range(C):
                                seg[c] = src[c]
                        else:
                            for c in range(C):
                                seg[c] = zero


def _row_z_k(x, lo, z, kw, p0, q0, wp):
    """The kernel-row columns Z of samples lo … lo + B − 1 of channels-last x (N, H, W, C),
    C-contiguous (ops.windows._row_conv): z[n, r] = the kw·C values from grid pixel r on of the
    flat image x padded (p0 rows above, q0 columns left, W_p = wp wide, zeros below): pixel
    r + j is (row, column) = divmod(r + j, W_p), so a window that runs past its row's end reads
    the next row's first pixels, as the strided view of the padded copy does. A window inside
    one row of x is one run of kw·C contiguous values."""
    B, R, kwc = z.shape
    H, W, C = x.shape[1], x.shape[2], x.shape[3]
    zero = z.dtype.type(0)
    xf = x.reshape(-1)
    for n in range(B):
        zn = z[n]
        for r in range(R):
            rp = r // wp
            h = rp - p0
            w0 = r - rp * wp - q0
            dst = zn[r]
            if 0 <= h < H and w0 >= 0 and w0 + kw <= W:
                s = ((lo + n) * H + h) * W * C + w0 * C
                src = xf[s:s + kwc]
                for t in range(kwc):
                    dst[t] = src[t]
            else:
                for j in range(kw):
                    q = r + j
                    rq = q // wp
                    hh = rq - p0
                    ww = q - rq * wp - q0
                    seg = dst[j * C:(j + 1) * C]
                    if 0 <= hh < H and 0 <= ww < W:
                        s = (((lo + n) * H + hh) * W + ww) * C
                        src = xf[s:s + C]
                        for c in range(C):
                            seg[c] = src[c]
                    else:
                        for c in range(C):
                            seg[c] = zero


def _fold_add_k(t, buf, lo, sh, sw, dh, dw):
    """col2im's sums: buf[lo + n, a·sh + i·dh, b·sw + j·dw, c] += t[n, a, b, i, j, c] for the
    columns t (B, H_out, W_out, kh, kw, C) of samples lo … lo + B − 1 into the channels-last
    (padded) x̄ buf. Each entry of buf adds its terms in the order of (a, b, i, j)."""
    B, ho, wo, kh, kw, C = t.shape
    for n in range(B):
        for a in range(ho):
            for b in range(wo):
                for i in range(kh):
                    r = buf[lo + n, a * sh + i * dh]
                    for j in range(kw):
                        dst = r[b * sw + j * dw]
                        src = t[n, a, b, i, j]
                        for c in range(C):
                            dst[c] += src[c]


_BLAS_KERNELS = {"row_conv", "row_wgrad", "gemm_rows", "gemm_bias_rows", "few_conv",
                 "few_wgrad", "nhwc_wgrad", "lstm_fwd_scan",
                 "lstm_bwd_scan", "gru_fwd_scan", "gru_bwd_scan"}
_SOURCES = {"ln_forward": _ln_forward_rows, "ln_backward": _ln_backward_rows,
            "gelu": _gelu_rows, "softmax": _softmax_rows_k, "softmax_pull": _softmax_pull_k,
            "lstm_fwd": _lstm_fwd_k, "lstm_bwd": _lstm_bwd_k, "gru_fwd": _gru_fwd_k,
            "gru_bwd": _gru_bwd_k, "lstm_fwd_scan": _lstm_fwd_scan_k,
            "lstm_bwd_scan": _lstm_bwd_scan_k, "gru_fwd_scan": _gru_fwd_scan_k,
            "gru_bwd_scan": _gru_bwd_scan_k,
            "bn_sums": _bn_sums_k, "bn_grad_sums": _bn_grad_sums_k, "bn_affine": _bn_affine_k,
            "bn_grad": _bn_grad_k, "relu_grad": _relu_grad_k, "relu_grad4": _relu_grad4_k,
            "relu": _relu_k, "leaky": _leaky_k,
            "maxpool": _maxpool_k,
            "maxpool_grad": _maxpool_grad_k, "fold_add": _fold_add_k,
            "unfold_few": _unfold_few_k, "unfold_nhwc": _unfold_nhwc_k,
            "row_z": _row_z_k}


def unfold_few_into(x, lo, cols, stride, padding, dilation):
    """Fill ``cols`` (B, kh, kw, C, H_out, W_out), C-contiguous, with the windows of samples
    lo … lo + B − 1 of x (N, C, H, W), any strides, zero padding included; return it. The
    few-channel unfold's copy (ops.windows), compiled: NumPy copies the strided view in runs of
    W_out values (LeNet's first layer, 16 samples: 55 → 39 µs alone, ~80 → 40 µs beside the
    other thread's GEMMs), and needs a padded copy of x first where there is padding."""
    (sh, sw), (dh, dw), ((p0, _), (q0, _)) = stride, dilation, padding
    _kernel("unfold_few")(x, lo, cols, sh, sw, dh, dw, p0, q0)
    return cols


def unfold_nhwc_into(xh, lo, cols, stride, padding, dilation):
    """Fill ``cols`` (B, H_out, W_out, kh, kw, C), C-contiguous, with the windows of samples
    lo … lo + B − 1 of channels-last xh (N, H, W, C), C-contiguous, zero padding included;
    return it. The implicit GEMM's column copy (ops.windows._column_chunks), compiled: NumPy
    copies the strided 6-D view at ~16 GB/s (LeNet's second layer, 16 samples: 81 → 49 µs) and
    needs a padded copy of x first where there is padding."""
    (sh, sw), (dh, dw), ((p0, _), (q0, _)) = stride, dilation, padding
    _kernel("unfold_nhwc")(xh, lo, cols, sh, sw, dh, dw, p0, q0)
    return cols


def row_z_into(xh, lo, z, kw, padding, wp):
    """Fill the kernel-row columns ``z`` (B, H_p·W_p, kw·C) of samples lo … lo + B − 1 of
    channels-last xh (N, H, W, C), C-contiguous (ops.windows._row_z_chunks); return it. One
    pass over x, padding included: NumPy needed a padded copy of x and then a strided copy
    of it (16 → 16 at 28×28, 12 samples: see _row_z_chunks)."""
    (p0, _), (q0, _) = padding
    _kernel("row_z")(xh, lo, z, kw, p0, q0, wp)
    return z


def fold_add(t6, buf, lo, stride, dilation):
    """Add the columns t6 (B, H_out, W_out, kh, kw, C), C-contiguous, of samples lo … lo + B − 1
    into their windows of buf (N, H_pad, W_pad, C), C-contiguous, in place: the fold (col2im) of
    a convolution's input gradient (ops.windows._conv_input_grad). One call, this thread."""
    _kernel("fold_add")(t6, buf, lo, stride[0], stride[1], dilation[0], dilation[1])


def fold_samples(t6, buf, stride, dilation):
    """fold_add of all N samples of t6 into buf (N, H_pad, W_pad, C): ops.windows.Fold's
    forward; samples split over the kernel pool from 1M values (each x̄ entry is summed within
    its own sample, so the bits do not depend on T)."""
    _rows_run(t6.shape[0], t6[0].size,
              lambda a, b: fold_add(t6[a:b], buf, a, stride, dilation),
              ("fold_add", (t6, buf), _addrs(t6, buf) + list(t6.shape[:6]) + list(buf.shape[1:3])
               + [stride[0], stride[1], dilation[0], dilation[1]]))


def layer_norm_forward(x2, w, b, eps, keep):
    """LayerNorm's forward over the rows of x2 (rows, n). Returns y (rows, n); with ``keep`` y
    is the head of one flat buffer [y, x̂, inv] (the layout ops.reduce._ln_saved reads)."""
    rows, n = x2.shape
    dt = x2.dtype
    if keep:
        buf = np.empty(2 * x2.size + rows, dtype=dt)
        y = buf[:x2.size].reshape(rows, n)
        xh = buf[x2.size:2 * x2.size].reshape(rows, n)
        inv = buf[2 * x2.size:]
    else:
        y = np.empty_like(x2)
        xh, inv = None, np.empty(rows, dtype=dt)  # (inv unused; x̂ through a per-piece row)
    k = _kernel("ln_forward")
    consts = np.array([1.0 / n, eps, 1.0], dtype=dt)

    def run(a, c):
        k(x2[a:c], w, b, consts, y[a:c], xh[a:c] if keep else np.empty((1, n), dtype=dt),
          inv[a:c], keep)

    _jobs().job_or_chunks(
        "ln_forward", (x2, w, b, consts, y, inv), [
            x2.ctypes.data, w.ctypes.data, b.ctypes.data, consts.ctypes.data, y.ctypes.data,
            xh.ctypes.data if keep else 0, inv.ctypes.data, rows, n, keep], rows, run,
        cost=x2.size, min_size=_ROW_PAR_MIN, piece=_PIECE, job_min=_jobs().JOB_MIN)
    return y


def layer_norm_backward(g2, w, xh, inv, needs):
    """LayerNorm's rule from the kept x̂ (rows, n) and inv (rows,): (x̄, γ̄, β̄), None where
    not needed."""
    rows, n = g2.shape
    need_x, need_wb = bool(needs[0]), bool(needs[1] or needs[2])
    gx = np.empty_like(g2) if need_x else g2
    nblk = -(-rows // _BLOCK)
    pw = np.zeros((nblk, n), dtype=g2.dtype) if need_wb else g2[:1]
    pb = np.zeros((nblk, n), dtype=g2.dtype) if need_wb else g2[:1]
    k = _kernel("ln_backward")
    consts = np.array([1.0 / n], dtype=g2.dtype)

    def run(a, c):
        b0 = a // _BLOCK if need_wb else 0
        k(g2[a:c], w, xh[a:c], inv[a:c], consts, gx[a:c] if need_x else gx, pw[b0:], pb[b0:],
          a, need_x, need_wb)

    _jobs().job_or_chunks(
        "ln_backward", (g2, w, xh, inv, consts, gx, pw, pb), [
            g2.ctypes.data, w.ctypes.data, xh.ctypes.data, inv.ctypes.data, consts.ctypes.data,
            gx.ctypes.data, pw.ctypes.data, pb.ctypes.data, rows, n, pw.shape[0], need_x,
            need_wb], rows, run, cost=g2.size, min_size=_ROW_PAR_MIN, align=_BLOCK,
        piece=_PIECE, job_min=_jobs().JOB_MIN)
    gw = pw.sum(axis=0) if needs[1] else None
    gb = pb.sum(axis=0) if needs[2] else None
    return (gx if need_x else None), gw, gb



# ------------------------------------------------------------------------------ pool waiting
def spin_waiter():
    """devices/_spin.py (its compiled waits, loaded) for backend's kernel pool, or None (no
    numba, TENSORCALC_JIT=0, or no ``sched_yield`` to link): the pool then blocks."""
    if not _STATE["on"] or _numba() is None:
        return None
    if "spin" not in _STATE["kernels"]:
        try:
            from . import _spin as mod

            one = np.zeros(1, dtype=np.int64)
            slot = np.zeros(8, dtype=np.int64)  # compile or load now: an error means no spinning
            mod.add_then_serve(one, 0, slot, 0, 0)
            mod.publish(slot, 0, 0, 0)
            mod.run_pieces_then_wait(slot, 1, 0)
            mod.add_then_spin_until(one, 0, 0, 0)
        except Exception:  # noqa: BLE001 - no spinning: the pool blocks, as before
            mod = None
        _STATE["kernels"]["spin"] = mod
    return _STATE["kernels"]["spin"]


# ----------------------------------------------------------------- kernel-row convolution
def _blas_args_py(like, trans_b, i0, i1, i2, i3):
    """BLAS's Fortran arguments in one buffer, and pointers into it: (ints, ip, sp, cp) with
    ints = [i0, i1, i2, i3] (int32, pointed to by ip; the caller changes the entries that vary),
    sp → [1, 0] in like's dtype (α; β = 0 or 1) and cp → b"NN" or b"NT" (B transposed). The
    scalars and characters live in the same buffer as ints, a view of it: the caller's use of
    ints keeps their memory alive (a separate array that is no longer used would be freed at
    its last use, under the pointer)."""
    isz = like.itemsize
    buf = np.zeros(16 + 2 * isz + 8, dtype=np.uint8)
    ints = buf[:16].view(np.int32)
    ints[0] = i0
    ints[1] = i1
    ints[2] = i2
    ints[3] = i3
    scal = buf[16:16 + 2 * isz].view(like.dtype)
    scal[0] = 1
    chars = buf[16 + 2 * isz:]
    chars[0] = 78  # "N"
    chars[1] = 84 if trans_b else 78  # "T" / "N"
    return ints, ints.ctypes.data, scal.ctypes.data, chars.ctypes.data


_blas_args = _blas_args_py  # (compiled by _compile_helpers)


def _row_conv_k(dbl, wk, z, k, grid, y4, a, bias, has_bias, wp, step):
    """The chunk step of ops.windows._row_conv, calling ``gemm`` (BLAS's ?gemm through its
    Fortran interface: every argument a pointer; the arguments from _blas_args). For each
    sample s < k of a chunk: grid ← Σ_i Z_s[i·W_p :] W_i (kh GEMMs, the first
    with β = 0, the rest with β = 1; in BLAS's column-major view the grid's (H_out·W_p, O)
    rows are the matrix C (O, H_out·W_p), W_i's (kw·C, O) rows are A (O, kw·C) and Z's rows
    are B (kw·C, H_out·W_p)), in blocks of ``step`` grid rows (OpenBLAS's small-matrix
    kernels: backend.SMALL_GEMM), then y4[a + s] ← the first W_out columns of each
    grid row (+ bias)."""
    kh, kk, o = wk.shape
    ho, wo = y4.shape[1], y4.shape[2]
    isz = wk.itemsize
    rows = ho * wp
    ints, ip, sp, cp = _blas_args(wk, False, o, 0, kk, 0)
    g3 = grid.reshape(ho, wp, o)
    for s in range(k):
        zs = z[s]
        for r0 in range(0, rows, step):
            ints[1] = min(step, rows - r0)
            for i in range(kh):
                _xgemm(dbl, cp, cp, ip, ip + 4, ip + 8, sp, wk[i].ctypes.data, ip,
                     zs[i * wp + r0:].ctypes.data, ip + 8, sp + (isz if i == 0 else 0),
                     grid[r0:].ctypes.data, ip)
        ys = y4[a + s]
        for h in range(ho):
            for w in range(wo):
                src = g3[h, w]
                dst = ys[h, w]
                if has_bias:
                    for c in range(o):
                        dst[c] = src[c] + bias[c]
                else:
                    for c in range(o):
                        dst[c] = src[c]


def _row_wgrad_k(dbl, z, k, g4, a, grid, gw, gb, has_bias, wp, step):
    """W̄'s chunk step of ops.windows._row_conv_weight_grad, calling ``gemm`` as above. For
    each sample s < k of a chunk: ȳ[a + s] placed on the grid's first W_out columns
    (the others stay 0; gb += Σ ȳ with ``has_bias``), then gw_i += gridᵀ Z_s[i·W_p :] for
    each kernel row i (β = 1; column-major: C = gw_i (O, kw·C) = A (O, H_out·W_p) Bᵀ with
    B = Z's rows (kw·C, H_out·W_p)), the sum in blocks of ``step`` grid rows."""
    kh, kk, o = gw.shape
    ho, wo = g4.shape[1], g4.shape[2]
    rows = ho * wp
    ints, ip, sp, cp = _blas_args(gw, True, o, kk, 0, 0)
    g3 = grid.reshape(ho, wp, o)
    for s in range(k):
        gs = g4[a + s]
        for h in range(ho):
            for w in range(wo):
                src = gs[h, w]
                dst = g3[h, w]
                for c in range(o):
                    dst[c] = src[c]
                if has_bias:
                    for c in range(o):
                        gb[c] += src[c]
        zs = z[s]
        for r0 in range(0, rows, step):
            ints[2] = min(step, rows - r0)
            for i in range(kh):
                _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, grid[r0:].ctypes.data, ip,
                     zs[i * wp + r0:].ctypes.data, ip + 4, sp, gw[i].ctypes.data, ip)


def _gemm_rows_k(dbl, a, b, out, step, tn, bias, has_bias):
    """Products in blocks of rows, calling ``gemm`` as above: a (M, K), b, out C-contiguous,
    ``step`` rows of a (and b) a call:
    without ``tn``, out (M, N) ← a @ b (b (K, N)), block by block (column-major: out_blockᵀ
    (N, M_b) = bᵀ (N, K) a_blockᵀ (K, M_b)); with ``has_bias``, out ← a @ b + bias (N,): each
    block's rows are filled with the bias just before its GEMM adds into them (β = 1), instead
    of a pass over out afterwards. With ``tn``, out (K, N) ← aᵀ b (b (M, N)), the
    blocks' products accumulated in order by BLAS (β = 0 for the first, then 1;
    column-major: outᵀ (N, K) = b_blockᵀ (N, M_b) a_block (M_b, K), B transposed)."""
    m, k = a.shape
    n = b.shape[1]
    isz = a.itemsize
    # BLAS's m (and the leading dimension of A = b and C = out), its n (K with tn, else
    # the block's rows), its k (K without tn, else the block's rows), B = a's leading one
    ints, ip, sp, cp = _blas_args(a, tn, n, k, k, k)
    for s in range(0, m, step):
        if tn:
            ints[2] = min(step, m - s)
            _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, b[s:].ctypes.data, ip,
                 a[s:].ctypes.data, ip + 12, sp + (isz if s == 0 else 0), out.ctypes.data, ip)
        else:
            rows = min(step, m - s)
            ints[1] = rows
            if has_bias:
                for r in range(s, s + rows):
                    o = out[r]
                    for j in range(n):
                        o[j] = bias[j]
            _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, b.ctypes.data, ip, a[s:].ctypes.data,
                 ip + 12, sp + (0 if has_bias else isz), out[s:].ctypes.data, ip)


def _gemm_bias_rows_k(dbl, x, w, b, y, r0, r1):
    """The dense layer's forward on rows r0 … r1 − 1, calling ``gemm`` as above: y's rows ← b,
    then y[r0:r1] += x[r0:r1] Wᵀ (β = 1) — x (M, K), W (N, K), b (N,), y (M, N), all
    C-contiguous. The rows are filled just before the GEMM reads them, by the thread that
    runs it (devices/cpu_gemm.gemm_bias's pieces). Column-major: y_blockᵀ (N, M_b) =
    Wᵀ (N, K, W given transposed) x_blockᵀ (K, M_b)."""
    k = x.shape[1]
    n = w.shape[0]
    for r in range(r0, r1):
        yr = y[r]
        for j in range(n):
            yr[j] = b[j]
    # ints: BLAS's m = N (= ldc), n = the block's rows, k = K (= lda = ldb)
    ints, ip, sp, cp = _blas_args(x, True, n, r1 - r0, k, k)
    _xgemm(dbl, cp + 1, cp, ip, ip + 4, ip + 8, sp, w.ctypes.data, ip + 8, x[r0:].ctypes.data,
           ip + 8, sp, y[r0:].ctypes.data, ip)


def _few_conv_k(dbl, x, lo, cols, wt, bias, has_bias, y, sh, sw, dh, dw, p0, q0):
    """A few-channel convolution's forward for samples lo … lo + B − 1 in one call (the GIL
    released once, not at each NumPy step): cols (B, kh, kw, C, H_out, W_out) ← their windows
    (_unfold_few_k), then for each sample s its rows of y (N·L, O), C-contiguous, ← bias and
    += cols_sᵀ Wt (BLAS, β = 1; Wt (K, O) the weights in (i, j, c) order; in BLAS's
    column-major view y_s is C (O, L), Wt is A (O, K) and cols_s (K, L) is Bᵀ, stored (L, K)).
    The same product per sample as the NumPy path's batched matmul, the bias added into it
    instead of by a pass over y afterwards (LeNet's first layer: 47 µs a chunk of 16)."""
    _unfold_few_c(x, lo, cols, sh, sw, dh, dw, p0, q0)
    B, kh, kw, C, ho, wo = cols.shape
    K, L = kh * kw * C, ho * wo
    o = wt.shape[1]
    isz = wt.itemsize
    ints, ip, sp, cp = _blas_args(wt, True, o, L, K, L)
    c3 = cols.reshape(B, K, L)
    for s in range(B):
        ys = y[(lo + s) * L:(lo + s + 1) * L]
        if has_bias:
            for r in range(L):
                yr = ys[r]
                for j in range(o):
                    yr[j] = bias[j]
        _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, wt.ctypes.data, ip, c3[s].ctypes.data,
             ip + 12, sp + (0 if has_bias else isz), ys.ctypes.data, ip)


def _few_wgrad_k(dbl, x, lo, cols, g, gw, gb, ones, has_bias, sh, sw, dh, dw, p0, q0):
    """A few-channel convolution's W̄ (and b̄) for samples lo … lo + B − 1 in one call, added
    into gw (K, O) and gb (O,): cols ← their windows (_unfold_few_k), then for each sample s
    gw += cols_s g_s (BLAS, β = 1; g (N·L, O) the rows of ȳ; in BLAS's column-major view gw is
    C (O, K), g_s is A (O, L) and cols_s (K, L) is B (L, K)) and gb += g_sᵀ 1 (the same call
    with B = ``ones`` (L,))."""
    _unfold_few_c(x, lo, cols, sh, sw, dh, dw, p0, q0)
    B, kh, kw, C, ho, wo = cols.shape
    K, L = kh * kw * C, ho * wo
    o = gw.shape[1]
    ints, ip, sp, cp = _blas_args(gw, False, o, K, L, L)
    ints1, ip1, sp1, cp1 = _blas_args(gw, False, o, 1, L, L)
    c3 = cols.reshape(B, K, L)
    for s in range(B):
        gs = g[(lo + s) * L:(lo + s + 1) * L]
        _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, gs.ctypes.data, ip, c3[s].ctypes.data,
             ip + 12, sp, gw.ctypes.data, ip)
        if has_bias:
            _xgemm(dbl, cp1, cp1 + 1, ip1, ip1 + 4, ip1 + 8, sp1, gs.ctypes.data, ip1,
                 ones.ctypes.data, ip1 + 12, sp1, gb.ctypes.data, ip1)


def few_wgrad_kernel(dtype):
    """``kernel(x, lo, cols, g, gw, gb, ones, has_bias, sh, sw, dh, dw, p0, q0)``: a few-channel
    convolution's W̄ (and b̄) chunk with the GIL released (see ops.windows._few_channel_wgrad),
    or None (see :func:`row_conv_kernel`)."""
    return _blas_kernel("few_wgrad", dtype)


def _nhwc_wgrad_k(dbl, xh, lo, cols, g, gw, gb, ones, has_bias, step, sh, sw, dh, dw, p0, q0):
    """An implicit-GEMM convolution's W̄ (and b̄) for samples lo … lo + B − 1 in one call,
    added into gw (K, O) and gb (O,): cols ← their windows (_unfold_nhwc_k), then gw +=
    colsᵀ g_rows in blocks of ``step`` rows (β = 1; column-major: gwᵀ (O, K) += g_blockᵀ
    (O, M_b) cols_block (M_b, K), as _gemm_rows_k's tn) and gb += g_rowsᵀ 1 (the same call
    with B = ``ones``)."""
    _unfold_nhwc_c(xh, lo, cols, sh, sw, dh, dw, p0, q0)
    B, ho, wo, kh, kw, C = cols.shape
    L, K = ho * wo, kh * kw * C
    m = B * L
    o = gw.shape[1]
    a = cols.reshape(m, K)
    gr = g[lo * L:(lo + B) * L]
    ints, ip, sp, cp = _blas_args(a, True, o, K, K, K)
    for s in range(0, m, step):
        ints[2] = min(step, m - s)
        _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, gr[s:].ctypes.data, ip,
             a[s:].ctypes.data, ip + 12, sp, gw.ctypes.data, ip)
    if has_bias:
        ints1, ip1, sp1, cp1 = _blas_args(gw, False, o, 1, m, m)
        _xgemm(dbl, cp1, cp1 + 1, ip1, ip1 + 4, ip1 + 8, sp1, gr.ctypes.data, ip1,
             ones.ctypes.data, ip1 + 12, sp1, gb.ctypes.data, ip1)


def nhwc_wgrad_kernel(dtype):
    """``kernel(xh, lo, cols, g, gw, gb, ones, has_bias, step, sh, sw, dh, dw, p0, q0)``: an
    implicit-GEMM convolution's W̄ (and b̄) chunk with the GIL released
    (ops.windows._nhwc_wgrad), or None (see :func:`row_conv_kernel`)."""
    return _blas_kernel("nhwc_wgrad", dtype)


def few_conv_kernel(dtype):
    """``kernel(x, lo, cols, wt, bias, has_bias, y, sh, sw, dh, dw, p0, q0)``: a few-channel
    convolution's forward chunk with the GIL released (see ops.windows._few_channel_conv), or
    None (see :func:`row_conv_kernel`)."""
    return _blas_kernel("few_conv", dtype)


def gemm_bias_rows_kernel(dtype):
    """``kernel(x, w, b, y, r0, r1)``: y[r0:r1] ← x[r0:r1] Wᵀ + b with the GIL released (see
    devices/cpu_gemm.gemm_bias), or None (see :func:`row_conv_kernel`)."""
    return _blas_kernel("gemm_bias_rows", dtype)


def gemm_rows_kernel(dtype):
    """``kernel(a, b, out, step, tn, bias, has_bias)``: a @ b (+ bias) or aᵀ b in blocks of
    rows, with the GIL released (see ops.windows._matmul_rows), or None (see
    :func:`row_conv_kernel`)."""
    return _blas_kernel("gemm_rows", dtype)


def _register_gemm_symbols():
    """Make SciPy's sgemm and dgemm (scipy.linalg.cython_blas) callable by the names the
    compiled kernels use (llvmlite's symbol table, this process's addresses); raises where
    SciPy or numba cannot give them."""
    if _STATE.get("gemm_symbols"):
        return
    import llvmlite.binding as ll
    from numba.extending import get_cython_function_address

    from ..backend import register_scipy_blas

    register_scipy_blas()
    for ch, sym in _GEMM_SYMBOLS.items():
        ll.add_symbol(sym, get_cython_function_address("scipy.linalg.cython_blas", ch + "gemm"))
    _STATE["gemm_symbols"] = True


def _blas_kernel(name, dtype):
    """The compiled kernel ``name`` (one of _BLAS_KERNELS: its first argument says float64)
    with that argument bound for ``dtype``: it calls SciPy's ?gemm (scipy.linalg.cython_blas, a
    public interface) by a symbol name registered for this process (_register_gemm_symbols),
    with the GIL released, so it is cached on disk like the other kernels; or None: no numba,
    or a numba or SciPy that cannot make the call — the first use per dtype checks the blocked
    product on a 3×2 by 2×2 product against NumPy."""
    ch = np.dtype(dtype).char
    key = name + "_" + ch
    if name != "gemm_rows" and _blas_kernel("gemm_rows", dtype) is None:
        _STATE["kernels"][key] = None
    if key not in _STATE["kernels"]:
        fn = None
        try:
            import functools

            _register_gemm_symbols()
            fn = functools.partial(_kernel(name), ch == "d")
            if name == "gemm_rows":
                a = np.arange(1, 7, dtype=dtype).reshape(3, 2)
                b = np.arange(1, 5, dtype=dtype).reshape(2, 2)
                out = np.zeros((3, 2), dtype=dtype)
                fn(a, b, out, 2, False, b[0], False)
                if not np.array_equal(out, a @ b):
                    fn = None
        except Exception:  # noqa: BLE001 - no compiled form: the caller's fallback runs
            fn = None
        _STATE["kernels"][key] = fn
    return _STATE["kernels"][key]


def row_wgrad_kernel(dtype):
    """W̄'s compiled chunk step (see :func:`row_conv_kernel`), or None."""
    return _blas_kernel("row_wgrad", dtype)


def row_conv_kernel(dtype):
    """The compiled chunk step of ops.windows._row_conv for float32/float64, calling the GEMM
    of SciPy's BLAS (scipy.linalg.cython_blas, a public interface) with the GIL released, or
    None (no numba, or no BLAS pointer). Cached on disk (see _blas_kernel)."""
    return _blas_kernel("row_conv", dtype)


def _dense_xgrad_k(dbl, g2, w, gx, gb, has_bias):
    """The dense layer's x̄ = ȳ W and (``has_bias``) b̄ = Σ_rows ȳ, calling ``gemm`` as above —
    ȳ (M, N), W (N, K), x̄ (M, K), b̄ (N,), all C-contiguous. Column-major: x̄ᵀ (K, M) =
    Wᵀ (K, N, W as stored) ȳᵀ (N, M, ȳ as stored). b̄ is summed row after row (a vectorised
    loop over its N columns: NumPy's order for a column sum of a C-ordered array)."""
    m, n = g2.shape
    k = w.shape[1]
    ints, ip, sp, cp = _blas_args(w, False, k, m, n, 0)
    _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, w.ctypes.data, ip, g2.ctypes.data, ip + 8,
           sp + w.itemsize, gx.ctypes.data, ip)
    if has_bias:
        for j in range(n):
            gb[j] = 0
        for r in range(m):
            gr = g2[r]
            for j in range(n):
                gb[j] += gr[j]


_SOURCES.update({"few_conv": _few_conv_k, "few_wgrad": _few_wgrad_k,
                 "nhwc_wgrad": _nhwc_wgrad_k, "row_conv": _row_conv_k,
                 "row_wgrad": _row_wgrad_k, "gemm_rows": _gemm_rows_k,
                 "gemm_bias_rows": _gemm_bias_rows_k, "dense_xgrad": _dense_xgrad_k})
_BLAS_KERNELS.update(("dense_xgrad", "bmm"))


def _binary_k(op, x, y, out):
    """out = x + y (op 0), x − y (1) or x ⊙ y (2), flat arrays of one length: each value one
    IEEE operation, the bits of NumPy's ufunc (ops._util.parallel_binary's compiled pieces)."""
    n = x.size
    if op == 0:
        for i in range(n):
            out[i] = x[i] + y[i]
    elif op == 1:
        for i in range(n):
            out[i] = x[i] - y[i]
    else:
        for i in range(n):
            out[i] = x[i] * y[i]


_SOURCES["binary"] = _binary_k


def _bmm_k(dbl, a, b, c, g, lo, hi):
    """C[i, h] = A[i, h] B[i, h] for i = lo … hi − 1 and h < H, calling ``gemm`` as above, on
    the raw addresses a, b, c; g (int64) = [H, m, k, n, then for A, B and C each: the byte
    strides of the two leading axes and the leading dimension (elements), and for A and B
    whether the matrix is stored transposed (its columns unit-stride)]: indices A 4-7, B 8-11,
    C 12-14. C's rows are unit-stride. Column-major: Cᵀ (n, m) = op(B)ᵀ (n, k) op(A)ᵀ (k, m):
    a matrix stored row by row is its own transpose there ("N"), one stored by columns is not
    ("T")."""
    hh, m, k, n = g[0], g[1], g[2], g[3]
    buf = np.zeros(56, dtype=np.uint8)
    ints = buf[:24].view(np.int32)  # BLAS's m, n, k, lda, ldb, ldc
    ints[0] = n
    ints[1] = m
    ints[2] = k
    ints[3] = g[10]
    ints[4] = g[6]
    ints[5] = g[14]
    chars = buf[24:26]
    chars[0] = 84 if g[11] else 78  # op(B)ᵀ: "T" / "N"
    chars[1] = 84 if g[7] else 78  # op(A)ᵀ
    s64 = buf[32:48].view(np.float64)  # α = 1, β = 0 in either dtype
    s32 = buf[48:56].view(np.float32)
    s64[0] = 1
    s32[0] = 1
    isz = 8 if dbl else 4
    ip, cp = ints.ctypes.data, chars.ctypes.data
    sp = s64.ctypes.data if dbl else s32.ctypes.data
    for i in range(lo, hi):
        for h in range(hh):
            _xgemm(dbl, cp, cp + 1, ip, ip + 4, ip + 8, sp, b + i * g[8] + h * g[9], ip + 12,
                   a + i * g[4] + h * g[5], ip + 16, sp + isz, c + i * g[12] + h * g[13],
                   ip + 20)


_SOURCES["bmm"] = _bmm_k
