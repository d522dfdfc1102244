"""Compiled jobs: the pieces of devices/cpu_jit's kernels as C functions that the kernel
pool's threads run without the GIL (backend.parallel_compiled, devices/_spin.py).

Why. With Python pieces (backend.parallel_chunks) a pool thread must take the GIL to start
its piece, from a caller that holds it while it sets up its own; that hand-off costs 25-40 µs
a call on the 2-vCPU VM measured (benchmarks/RESULTS.md, round 12), so a split only paid from
~0.3 ms of work, and a transformer block's 31 splits a step cost ~1.5 ms at 2 threads. A
compiled job's pieces are numba ``cfunc``\\s; a pool thread that spins for work calls them
directly, and starts within microseconds (round 13: the block's step at 2 threads −9 %, the
char-transformer iteration −14 %).

A job is one kernel's pieces — the same kernel, on the same ranges, as the Python pieces it
replaces, so the same bits: piece i of job ``name`` is ``_<name>_job(desc, i)``, which reads
everything from ``desc``, an int64 array laid out by :func:`_desc`::

    [float64?, at, field 0, field 1, …, pieces (at index ``at``), lo₀, hi₀, lo₁, hi₁, …]

(fields: array addresses and sizes, as the kernel takes them). ``_<name>_job`` picks the
dtype; ``_<name>_body(desc, i, proto)`` rebuilds the arrays (numba.carray, typed by the empty
array ``proto``) and calls the kernel. The caller keeps every array alive until the job
returns (backend.parallel_compiled waits for every piece).

Without numba, with ``TENSORCALC_JIT=0``, at T = 1, or for arrays a job does not take
(dtypes, layouts), the Python pieces run: they stay the reference, and
tests/test_compiled_jobs.py checks each job against them.
"""

from __future__ import annotations

import numpy as np

from ..backend import EW_PIECE, chunk_ranges, parallel_chunks, parallel_compiled
from . import cpu_jit as _jit

_F32 = np.zeros(0, dtype=np.float32)  # dtype witnesses for the bodies (carray's dtype)
_F64 = np.zeros(0, dtype=np.float64)

# values (cost) from which a row kernel's call (GELU, softmax and its rule, layer norm) is
# split as a compiled job: 2 threads against 1 on hot data, µs: layer norm 65k values
# 46 → 38, softmax 65k 62 → 47, GELU 65k 79 → 56; at 32k the same or slower. The
# char-transformer iteration at 2 threads (its 768 × 128 layer norms, 12 × 4 × 64 × 64
# softmax) −5 to −10 %.
JOB_MIN = 1 << 16


def _desc(dbl, fields, ranges):
    at = 2 + len(fields)
    return np.array([int(bool(dbl)), at] + [int(f) for f in fields] + [len(ranges)]
                    + [v for r in ranges for v in r], dtype=np.int64)


# ------------------------------------------------------------- helpers (compiled by _compile)
def _piece_py(desc, i):
    """(fields, lo, hi): the job's fields and piece i's range."""
    at = carray(_i64p(desc), (2,))[1]
    d = carray(_i64p(desc), (at + 3 + 2 * i,))
    return d[2:at], d[at + 1 + 2 * i], d[at + 2 + 2 * i]


def _npieces_py(desc):
    """How many pieces the job has."""
    at = carray(_i64p(desc), (2,))[1]
    return carray(_i64p(desc), (at + 1,))[at]


def _arr_py(addr, shape, proto):
    """The array of ``shape`` (a tuple) and proto's dtype at ``addr``, C-ordered."""
    return carray(_voidp(addr), shape, proto.dtype)


def _is64_py(desc):
    return carray(_i64p(desc), (1,))[0] != 0


_piece = _piece_py
_npieces = _npieces_py
_arr = _arr_py
_is64 = _is64_py
carray = _i64p = _voidp = None  # (numba.carray and the address casts: _compile)


# the kernels the bodies call, and the compiled bodies the jobs call (bound by job_piece)
_k_gemm_bias_rows = _k_dense_xgrad = _k_binary = _k_gelu = _k_softmax = _k_softmax_pull = None
_k_ln_forward = _k_ln_backward = _k_bmm = _k_bn_sums = _k_bn_affine = _k_bn_grad_sums = None
_k_bn_grad = _gemm_bias_c = _dense_xgrad_c = _binary_c = _gelu_c = _softmax_c = None
_softmax_pull_c = _ln_forward_c = _ln_backward_c = _bmm_c = _bn_sums_c = _bn_affine_c = None
_bn_grad_sums_c = _bn_grad_c = _k_row_z = _k_row_conv = _k_row_wgrad = _row_conv_c = None
_row_wgrad_c = _k_relu = _k_leaky = _k_relu_grad = _k_fold_add = _relu_c = _leaky_c = None
_relu_grad_c = _fold_add_c = None


# ------------------------------------------------------------------------------------ bodies
def _gemm_bias_body(desc, i, p):
    """[x, W, b, y, M, K, N] → y[lo:hi] ← x[lo:hi] Wᵀ + b (cpu_jit._gemm_bias_rows_k)."""
    f, lo, hi = _piece(desc, i)
    m, k, n = f[4], f[5], f[6]
    _k_gemm_bias_rows(p.itemsize == 8, _arr(f[0], (m, k), p), _arr(f[1], (n, k), p),
                      _arr(f[2], (n,), p), _arr(f[3], (m, n), p), lo, hi)


def _dense_xgrad_body(desc, i, p):
    """[ȳ, W, x̄, b̄, M, K, N, has bias] → x̄ = ȳ W, b̄ = Σ_rows ȳ (one piece)."""
    f, lo, hi = _piece(desc, i)
    m, k, n = f[4], f[5], f[6]
    _k_dense_xgrad(p.itemsize == 8, _arr(f[0], (m, n), p), _arr(f[1], (n, k), p),
                   _arr(f[2], (m, k), p), _arr(f[3], (n,), p), f[7] != 0)


def _binary_body(desc, i, p):
    """[x, y, out, n, op] → out = x (op) y on the piece's values."""
    f, lo, hi = _piece(desc, i)
    n = f[3]
    _k_binary(f[4], _arr(f[0], (n,), p)[lo:hi], _arr(f[1], (n,), p)[lo:hi],
              _arr(f[2], (n,), p)[lo:hi])


def _gelu_body(desc, i, p):
    """[x, y, GELU′, c, n, nc, mode] (float32) → cpu_jit._gelu_rows on the piece's values."""
    f, lo, hi = _piece(desc, i)
    n = f[4]
    _k_gelu(_arr(f[0], (n,), p)[lo:hi], _arr(f[1], (n,), p)[lo:hi],
            _arr(f[2], (n,), p)[lo:hi], _arr(f[3], (f[5],), p), f[6])


def _softmax_body(desc, i, p):
    """[x, mask, y, c, rows, n, mask rows, masked, nc] (float32) → _softmax_rows_k."""
    f, lo, hi = _piece(desc, i)
    rows, n = f[4], f[5]
    _k_softmax(_arr(f[0], (rows, n), p)[lo:hi], carray(_voidp(f[1]), (f[6], n), np.bool_),
               f[6], f[7] != 0, _arr(f[2], (rows, n), p)[lo:hi], _arr(f[3], (f[8],), p))


def _softmax_pull_body(desc, i, p):
    """[ȳ, y, x̄, rows, n] → _softmax_pull_k on the piece's rows."""
    f, lo, hi = _piece(desc, i)
    rows, n = f[3], f[4]
    _k_softmax_pull(_arr(f[0], (rows, n), p)[lo:hi], _arr(f[1], (rows, n), p)[lo:hi],
                    _arr(f[2], (rows, n), p)[lo:hi])


def _ln_forward_body(desc, i, p):
    """[x, γ, β, c, y, x̂, inv, rows, n, keep] → _ln_forward_rows (without ``keep``, x̂ is a
    (1, n) row of the piece's own, as each Python piece allocates)."""
    f, lo, hi = _piece(desc, i)
    rows, n, keep = f[7], f[8], f[9] != 0
    xh = _arr(f[5], (rows, n), p)[lo:hi] if keep else np.empty((1, n), p.dtype)
    _k_ln_forward(_arr(f[0], (rows, n), p)[lo:hi], _arr(f[1], (n,), p), _arr(f[2], (n,), p),
                  _arr(f[3], (3,), p), _arr(f[4], (rows, n), p)[lo:hi], xh,
                  _arr(f[6], (rows,), p)[lo:hi], keep)


def _ln_backward_body(desc, i, p):
    """[ȳ, γ, x̂, inv, c, x̄, pw, pb, rows, n, blocks, need x̄, need γ̄ β̄] → _ln_backward_rows
    (x̄ whole without need x̄, pw and pb one row without need γ̄ β̄: the Python call's
    placeholders)."""
    f, lo, hi = _piece(desc, i)
    rows, n, nblk, nx, nwb = f[8], f[9], f[10], f[11] != 0, f[12] != 0
    gx = _arr(f[5], (rows, n), p)
    b0 = lo // _jit._BLOCK if nwb else 0
    _k_ln_backward(_arr(f[0], (rows, n), p)[lo:hi], _arr(f[1], (n,), p),
                   _arr(f[2], (rows, n), p)[lo:hi], _arr(f[3], (rows,), p)[lo:hi],
                   _arr(f[4], (1,), p), gx[lo:hi] if nx else gx,
                   _arr(f[6], (nblk, n), p)[b0:], _arr(f[7], (nblk, n), p)[b0:], lo, nx, nwb)


def _bmm_body(desc, i, p):
    """[A, B, C, H, m, k, n, A's, B's and C's strides (cpu_jit._bmm_k's g[4:])] → the
    products of the piece's range of the leading axis."""
    f, lo, hi = _piece(desc, i)
    _k_bmm(p.itemsize == 8, f[0], f[1], f[2], f[3:18], lo, hi)


def _bn_sums_body(desc, i, p):
    """[x, μ, part, rows, C, blocks, centred] → _bn_sums_k on the piece's rows."""
    f, lo, hi = _piece(desc, i)
    rows, c = f[3], f[4]
    _k_bn_sums(_arr(f[0], (rows, c), p)[lo:hi], _arr(f[1], (c,), p),
               _arr(f[2], (f[5], c), p)[lo // _jit._BN_BLOCK:], lo, f[6] != 0)


def _bn_affine_body(desc, i, p):
    """[x, μ, a, b, y, k01, r, rows, C, relu, residual] → _bn_affine_k on the piece's rows."""
    f, lo, hi = _piece(desc, i)
    rows, c = f[7], f[8]
    _k_bn_affine(_arr(f[0], (rows, c), p)[lo:hi], _arr(f[1], (c,), p), _arr(f[2], (c,), p),
                 _arr(f[3], (c,), p), _arr(f[4], (rows, c), p)[lo:hi], _arr(f[5], (2,), p),
                 f[9] != 0, _arr(f[6], (rows, c), p)[lo:hi], f[10] != 0)


def _bn_grad_sums_body(desc, i, p):
    """[ȳ, x, μ, pb, pt, y, k01, rows, C, blocks, relu] → _bn_grad_sums_k on the piece's
    rows."""
    f, lo, hi = _piece(desc, i)
    rows, c, b0 = f[7], f[8], lo // _jit._BN_BLOCK
    _k_bn_grad_sums(_arr(f[0], (rows, c), p)[lo:hi], _arr(f[1], (rows, c), p)[lo:hi],
                    _arr(f[2], (c,), p), _arr(f[3], (f[9], c), p)[b0:],
                    _arr(f[4], (f[9], c), p)[b0:], lo, _arr(f[5], (rows, c), p)[lo:hi],
                    _arr(f[6], (2,), p), f[10] != 0)


def _bn_grad_body(desc, i, p):
    """[ȳ, x, μ, a, k1, k0, x̄, y, k01, m, rows, C, relu, keep] → _bn_grad_k on the piece's
    rows."""
    f, lo, hi = _piece(desc, i)
    rows, c = f[10], f[11]
    _k_bn_grad(_arr(f[0], (rows, c), p)[lo:hi], _arr(f[1], (rows, c), p)[lo:hi],
               _arr(f[2], (c,), p), _arr(f[3], (c,), p), _arr(f[4], (c,), p),
               _arr(f[5], (c,), p), _arr(f[6], (rows, c), p)[lo:hi],
               _arr(f[7], (rows, c), p)[lo:hi], _arr(f[8], (2,), p), f[12] != 0,
               _arr(f[9], (rows, c), p)[lo:hi], f[13] != 0)


def _row_conv_body(desc, i, p):
    """[x (channels-last), W (kh, kw·C, O), y, b, N, H, W, C, kh, kw·C, O, H_out, W_out, H_p,
    W_p, kw, p0, q0, samples a chunk, has bias, GEMM rows a block] → the kernel-row
    convolution's forward on the piece's samples, chunk by chunk: Z (cpu_jit._row_z_k), then
    the kh GEMMs and the bias (_row_conv_k) — ops.windows._row_conv's Python piece."""
    f, lo, hi = _piece(desc, i)
    n, h, w, c, kh, kwc, o = f[4], f[5], f[6], f[7], f[8], f[9], f[10]
    ho, wo, hp, wp, kw, p0, q0, per = f[11], f[12], f[13], f[14], f[15], f[16], f[17], f[18]
    xh = _arr(f[0], (n, h, w, c), p)
    wk = _arr(f[1], (kh, kwc, o), p)
    y4 = _arr(f[2], (n, ho, wo, o), p)
    z = np.empty((min(per, hi - lo), hp * wp, kwc), p.dtype)
    grid = np.empty((ho * wp, o), p.dtype)
    for a in range(lo, hi, per):
        k = min(hi, a + per) - a
        _k_row_z(xh, a, z[:k], kw, p0, q0, wp)
        _k_row_conv(p.itemsize == 8, wk, z, k, grid, y4, a, _arr(f[3], (o,), p), f[19] != 0,
                    wp, f[20])


def _row_wgrad_body(desc, i, p):
    """[x (channels-last), ȳ rows, W̄ parts (pieces, kh, kw·C, O), b̄ parts (pieces, O), N, H, W,
    C, kh, kw·C, O, H_out, W_out, H_p, W_p, kw, p0, q0, samples a chunk, has bias, GEMM rows a
    block] → the piece's W̄ and b̄ sums into its part, chunk by chunk (_row_z_k, _row_wgrad_k)
    — ops.windows._row_conv_weight_grad's Python piece."""
    f, lo, hi = _piece(desc, i)
    n, h, w, c, kh, kwc, o = f[4], f[5], f[6], f[7], f[8], f[9], f[10]
    ho, wo, hp, wp, kw, p0, q0, per = f[11], f[12], f[13], f[14], f[15], f[16], f[17], f[18]
    np_ = _npieces(desc)
    xh = _arr(f[0], (n, h, w, c), p)
    g4 = _arr(f[1], (n, ho, wo, o), p)
    gw = _arr(f[2], (np_, kh, kwc, o), p)[i]
    gb = _arr(f[3], (np_, o), p)[i]
    z = np.empty((min(per, hi - lo), hp * wp, kwc), p.dtype)
    grid = np.zeros((ho * wp, o), p.dtype)
    for a in range(lo, hi, per):
        k = min(hi, a + per) - a
        _k_row_z(xh, a, z[:k], kw, p0, q0, wp)
        _k_row_wgrad(p.itemsize == 8, z, k, g4, a, grid, gw, gb, f[19] != 0, wp, f[20])


def _relu_body(desc, i, p):
    """[x, c, out, n, nc] (flat) → cpu_jit._relu_k on the piece's values."""
    f, lo, hi = _piece(desc, i)
    n = f[3]
    _k_relu(_arr(f[0], (n,), p)[lo:hi], _arr(f[1], (f[4],), p), _arr(f[2], (n,), p)[lo:hi])


def _leaky_body(desc, i, p):
    """[x, c, out, n, nc] (flat) → cpu_jit._leaky_k on the piece's values."""
    f, lo, hi = _piece(desc, i)
    n = f[3]
    _k_leaky(_arr(f[0], (n,), p)[lo:hi], _arr(f[1], (f[4],), p), _arr(f[2], (n,), p)[lo:hi])


def _relu_grad_body(desc, i, p):
    """[ȳ, x, c, out, n, nc] (flat) → cpu_jit._relu_grad_k on the piece's values."""
    f, lo, hi = _piece(desc, i)
    n = f[4]
    _k_relu_grad(_arr(f[0], (n,), p)[lo:hi], _arr(f[1], (n,), p)[lo:hi],
                 _arr(f[2], (f[5],), p), _arr(f[3], (n,), p)[lo:hi])


def _fold_add_body(desc, i, p):
    """[t (N, H_out, W_out, kh, kw, C), x̄ (N, H_p, W_p, C), N, H_out, W_out, kh, kw, C, H_p,
    W_p, sh, sw, dh, dw] → cpu_jit._fold_add_k on the piece's samples."""
    f, lo, hi = _piece(desc, i)
    n, c = f[2], f[7]
    t = _arr(f[0], (n, f[3], f[4], f[5], f[6], c), p)
    _k_fold_add(t[lo:hi], _arr(f[1], (n, f[8], f[9], c), p), lo, f[10], f[11], f[12], f[13])


# ------------------------------------------------------- the C functions (one per job: cfunc)
# Written out, one per job: numba caches a cfunc on disk by its module, name and source; a
# factory's closures were compiled again in every new process (tried: a new cache entry each
# time, as what a closure captures is a new object), and generated source has no file.
def _gemm_bias_job(desc, i):
    if _is64(desc):
        _gemm_bias_c(desc, i, _F64)
    else:
        _gemm_bias_c(desc, i, _F32)


def _dense_xgrad_job(desc, i):
    if _is64(desc):
        _dense_xgrad_c(desc, i, _F64)
    else:
        _dense_xgrad_c(desc, i, _F32)


def _binary_job(desc, i):
    if _is64(desc):
        _binary_c(desc, i, _F64)
    else:
        _binary_c(desc, i, _F32)


def _gelu_job(desc, i):
    _gelu_c(desc, i, _F32)


def _softmax_job(desc, i):
    _softmax_c(desc, i, _F32)


def _softmax_pull_job(desc, i):
    if _is64(desc):
        _softmax_pull_c(desc, i, _F64)
    else:
        _softmax_pull_c(desc, i, _F32)


def _ln_forward_job(desc, i):
    if _is64(desc):
        _ln_forward_c(desc, i, _F64)
    else:
        _ln_forward_c(desc, i, _F32)


def _ln_backward_job(desc, i):
    if _is64(desc):
        _ln_backward_c(desc, i, _F64)
    else:
        _ln_backward_c(desc, i, _F32)


def _bmm_job(desc, i):
    if _is64(desc):
        _bmm_c(desc, i, _F64)
    else:
        _bmm_c(desc, i, _F32)


def _bn_sums_job(desc, i):
    if _is64(desc):
        _bn_sums_c(desc, i, _F64)
    else:
        _bn_sums_c(desc, i, _F32)


def _bn_affine_job(desc, i):
    if _is64(desc):
        _bn_affine_c(desc, i, _F64)
    else:
        _bn_affine_c(desc, i, _F32)


def _bn_grad_sums_job(desc, i):
    if _is64(desc):
        _bn_grad_sums_c(desc, i, _F64)
    else:
        _bn_grad_sums_c(desc, i, _F32)


def _bn_grad_job(desc, i):
    if _is64(desc):
        _bn_grad_c(desc, i, _F64)
    else:
        _bn_grad_c(desc, i, _F32)


def _row_conv_job(desc, i):
    if _is64(desc):
        _row_conv_c(desc, i, _F64)
    else:
        _row_conv_c(desc, i, _F32)


def _row_wgrad_job(desc, i):
    if _is64(desc):
        _row_wgrad_c(desc, i, _F64)
    else:
        _row_wgrad_c(desc, i, _F32)


def _relu_job(desc, i):
    if _is64(desc):
        _relu_c(desc, i, _F64)
    else:
        _relu_c(desc, i, _F32)


def _leaky_job(desc, i):
    if _is64(desc):
        _leaky_c(desc, i, _F64)
    else:
        _leaky_c(desc, i, _F32)


def _relu_grad_job(desc, i):
    if _is64(desc):
        _relu_grad_c(desc, i, _F64)
    else:
        _relu_grad_c(desc, i, _F32)


def _fold_add_job(desc, i):
    if _is64(desc):
        _fold_add_c(desc, i, _F64)
    else:
        _fold_add_c(desc, i, _F32)


# name: (the cfunc's source, its body, the cpu_jit kernels the body calls)
_JOBS = {"gemm_bias": (_gemm_bias_job, _gemm_bias_body, ["gemm_bias_rows"]),
         "dense_xgrad": (_dense_xgrad_job, _dense_xgrad_body, ["dense_xgrad"]),
         "binary": (_binary_job, _binary_body, ["binary"]),
         "gelu": (_gelu_job, _gelu_body, ["gelu"]),
         "softmax": (_softmax_job, _softmax_body, ["softmax"]),
         "softmax_pull": (_softmax_pull_job, _softmax_pull_body, ["softmax_pull"]),
         "ln_forward": (_ln_forward_job, _ln_forward_body, ["ln_forward"]),
         "ln_backward": (_ln_backward_job, _ln_backward_body, ["ln_backward"]),
         "bmm": (_bmm_job, _bmm_body, ["bmm"]),
         "bn_sums": (_bn_sums_job, _bn_sums_body, ["bn_sums"]),
         "bn_affine": (_bn_affine_job, _bn_affine_body, ["bn_affine"]),
         "bn_grad_sums": (_bn_grad_sums_job, _bn_grad_sums_body, ["bn_grad_sums"]),
         "bn_grad": (_bn_grad_job, _bn_grad_body, ["bn_grad"]),
         "row_conv": (_row_conv_job, _row_conv_body, ["row_z", "row_conv"]),
         "row_wgrad": (_row_wgrad_job, _row_wgrad_body, ["row_z", "row_wgrad"]),
         "relu": (_relu_job, _relu_body, ["relu"]),
         "leaky": (_leaky_job, _leaky_body, ["leaky"]),
         "relu_grad": (_relu_grad_job, _relu_grad_body, ["relu_grad"]),
         "fold_add": (_fold_add_job, _fold_add_body, ["fold_add"])}
_BLAS_JOBS = {"gemm_bias", "dense_xgrad", "bmm", "row_conv", "row_wgrad"}
_STATE = {"compiled": False, "fns": {}}


def _compile(nb):
    """carray, the address casts and the helpers, compiled, in this module's globals."""
    if _STATE["compiled"]:
        return
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def cast(to, lltype):
        @intrinsic
        def as_pointer(typingctx, addr):
            return to(types.int64), lambda context, builder, sig, args: builder.inttoptr(
                args[0], lltype)
        return as_pointer

    g = globals()
    g["_i64p"] = cast(types.CPointer(types.int64), ir.IntType(64).as_pointer())
    g["_voidp"] = cast(types.voidptr, ir.IntType(8).as_pointer())
    g["carray"] = nb.carray
    for name in ("_piece", "_npieces", "_arr", "_is64"):
        g[name] = nb.njit(inline="always")(g[name + "_py"])
    _STATE["compiled"] = True


def job_piece(name):
    """The address of job ``name``'s C function (cached on disk by numba, like the kernels),
    or 0: no numba, the kernels off (then nothing is remembered: they may be turned on
    again), or a BLAS kernel that cannot make its call here."""
    if not _jit.enabled():
        return 0
    fns = _STATE["fns"]
    if name not in fns:
        addr = 0
        try:
            if name not in _BLAS_JOBS or _jit._blas_kernel("gemm_rows", np.float32) is not None:
                nb = _jit._numba()
                _compile(nb)
                src, body, kernels = _JOBS[name]
                from numba import types

                g = globals()
                for kernel in kernels:
                    g["_k_" + kernel] = _jit._kernel(kernel)
                g["_" + name + "_c"] = nb.njit(cache=True, nogil=True)(body)
                addr = nb.cfunc(types.void(types.int64, types.int64), cache=True)(src).address
        except Exception:  # noqa: BLE001 - no compiled job: the Python pieces run
            addr = 0
        fns[name] = addr
    return fns[name]


def submit(name, dbl, fields, ranges, *, serial_blas=False, alongside=None):
    """Run job ``name`` over ``ranges`` (backend.parallel_compiled): (True, ``alongside()``'s
    result), or (False, None) where there is no such job (nothing has run)."""
    fn = job_piece(name)
    if not fn:
        return False, None
    out = parallel_compiled(len(ranges), fn, _desc(dbl, fields, ranges),
                            serial_blas=serial_blas, alongside=alongside)
    return True, out


def _takes(dtype, arrays):
    return all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)


def job_or_chunks(name, arrays, fields, n, run, *, job_min=None, **kw):
    """parallel_chunks(n, run, **kw), its pieces run as job ``name`` where there is one, the
    ``arrays`` it reads are C-contiguous in the first one's float dtype, and the call is split
    at all — from ``job_min`` (of ``cost``) where given, instead of ``min_size``: without the
    GIL's hand-off a split pays from smaller calls (JOB_MIN for the kernels with work per
    value; a memory-bound pass keeps its threshold); the Python pieces ``run`` otherwise."""
    dt = arrays[0].dtype
    if dt.char in "fd" and _takes(dt, arrays):
        lowest = kw.get("min_size", JOB_MIN)
        ranges = chunk_ranges(n, min_size=lowest if job_min is None else min(lowest, job_min),
                              **{k: v for k, v in kw.items()
                                 if k not in ("serial_blas", "min_size")})
        if len(ranges) > 1 and submit(name, dt.char == "d", fields, ranges,
                                      serial_blas=kw.get("serial_blas", False))[0]:
            return
    parallel_chunks(n, run, **kw)


# ---------------------------------------------------------------- jobs called from ops and nn
_BINARY_OPS = {"add": 0, "subtract": 1, "multiply": 2}


def binary(op, xf, yf, of, min_size):
    """of = xf (op) yf ("add", "subtract", "multiply"; flat C-contiguous arrays of one float
    dtype; ``of`` may be ``xf``) as a compiled job over the kernel pool, in pieces of whole
    vector iterations, from ``min_size`` values; False where it is not split or there is no
    job (nothing has run)."""
    if not _takes(of.dtype, (xf, yf, of)) or of.dtype.char not in "fd":
        return False
    ranges = chunk_ranges(xf.size, min_size=min_size, piece=EW_PIECE, align=_jit._VEC_ALIGN)
    return len(ranges) > 1 and submit(
        "binary", of.dtype.char == "d",
        [xf.ctypes.data, yf.ctypes.data, of.ctypes.data, xf.size, _BINARY_OPS[op]], ranges)[0]


def batched_matmul(a, b, out, ranges):
    """out = a @ b for 3-D or 4-D NumPy float arrays of one dtype with the same leading axes
    (no broadcasting), each matrix stored by rows or by columns (unit stride), out's by rows,
    over ``ranges`` of the leading axis (a GEMM per matrix, SciPy's BLAS: cpu_jit._bmm_k);
    False where that does not apply (then nothing is written)."""
    dt = out.dtype
    if not (a.dtype == b.dtype == dt) or dt.char not in "fd" or a.ndim not in (3, 4) \
            or a.shape[:-2] != b.shape[:-2] or out.strides[-1] != out.itemsize:
        return False
    g = []
    for x in (a, b, out):
        sr, sc = x.strides[-2] // x.itemsize, x.strides[-1] // x.itemsize
        if sc == 1 and sr >= x.shape[-1]:
            ld, tr = sr, 0
        elif sr == 1 and sc >= x.shape[-2] and x is not out:
            ld, tr = sc, 1
        else:
            return False
        g += [x.strides[0], x.strides[1] if x.ndim == 4 else 0, max(ld, 1)]
        g += [] if x is out else [tr]
    heads = a.shape[1] if a.ndim == 4 else 1
    fields = [a.ctypes.data, b.ctypes.data, out.ctypes.data, heads, a.shape[-2], a.shape[-1],
              b.shape[-1]] + g
    return submit("bmm", dt.char == "d", fields, ranges, serial_blas=True)[0]
