"""Dense-layer GEMMs on the CPU (NumPy + SciPy's BLAS) where one plain ``x @ Wᵀ`` call leaves
speed behind: ops.affine calls these and takes its plain path where they return None.

- :func:`gemm_bias`: the forward's bias inside the GEMM (no separate pass over y); at T > 1
  in row pieces on the kernel pool, each filling its own rows first;
- :func:`dense_grads_side_by_side`: x̄ and W̄ as two single-threaded GEMMs at once (T = 2);
- :func:`weight_grad_split`: a small W̄ over many rows split over the rows (GEMM's K) on the
  kernel pool, where OpenBLAS's own threading barely scales (:func:`tn_over_rows`, also
  the 1×1 convolution's W̄).
"""

from __future__ import annotations

import numpy as np

from ..backend import chunk_ranges, kernel_threads, parallel_chunks, register_scipy_blas

# outputs (rows × out) from which the bias goes into the GEMM: below, NumPy's matmul and an add
# (SciPy's wrapper costs a few µs a call; a 128 × 256 layer already gains ~10 %)
_GEMM_BIAS_MIN = 1 << 14
# multiply-adds below which one threaded GEMM is as fast as pieces on the kernel pool
_POOL_MIN_MACS = 1 << 22


def gemm_bias(xp, x2, w, b):
    """y = x2 Wᵀ + b as one BLAS call, or None where it does not apply: y is first filled with
    b's rows, then ?gemm accumulates the product into it (β = 1). The add of b is then no extra
    pass over y: BLAS writes C once either way (with β = 0 it first zeroes it). For NumPy, 2-D
    C-contiguous x2, W and b of one float dtype, and outputs of at least _GEMM_BIAS_MIN values.
    In BLAS's column-major view, yᵀ (out, rows) = W (out, in) · x2ᵀ (in, rows), W given
    transposed: Wᵀ, x2ᵀ and yᵀ are Fortran-ordered views of the C-ordered arrays (no copy)."""
    if b is None or getattr(xp, "__name__", "") != "numpy" or x2.ndim != 2 \
            or x2.shape[0] * w.shape[0] < _GEMM_BIAS_MIN or x2.dtype.char not in "fd" \
            or not (x2.dtype == w.dtype == b.dtype) or not x2.flags.c_contiguous \
            or not w.flags.c_contiguous:
        return None
    y = _gemm_bias_pool(x2, w, b)
    if y is not None:
        return y
    gemm = _GEMM.get(x2.dtype.char)
    if gemm is None:
        from scipy.linalg import blas

        register_scipy_blas()  # its threads follow the library's settings (serial regions)
        gemm = _GEMM[x2.dtype.char] = blas.get_blas_funcs("gemm", dtype=x2.dtype)
    y = xp.empty((x2.shape[0], w.shape[0]), dtype=x2.dtype)
    y[...] = b
    return gemm(1.0, w.T, x2.T, beta=1.0, c=y.T, trans_a=1, overwrite_c=1).T


_GEMM = {}


def _gemm_bias_pool(x2, w, b):
    """gemm_bias at T = backend.kernel_threads() > 1: the rows in T pieces on the kernel pool,
    each piece filling its rows of y with b and then one single-threaded GEMM (β = 1) over
    them, compiled (devices/cpu_jit.gemm_bias_rows_kernel), or None (T = 1, fewer than
    _POOL_MIN_MACS multiply-adds, no compiled kernel). One threaded GEMM after a serial fill
    left the fill — a pass over fresh memory, ~0.12 ms a (2048, 128) output inside a
    transformer step — to one core, and woke SciPy's OpenBLAS workers, a second thread pool
    beside NumPy's. Each value is the same GEMM's dot product either way, but BLAS's blocking
    (the order of the sum over K) may differ with the piece's rows: the result is the same
    bits at every run with the same T."""
    rows, n_in = x2.shape
    macs = rows * n_in * w.shape[0]
    t = kernel_threads()
    if macs < _POOL_MIN_MACS or t <= 1:
        return None
    from . import cpu_jit

    k = cpu_jit.gemm_bias_rows_kernel(x2.dtype) if cpu_jit.usable(np, x2.dtype) else None
    if k is None:
        return None
    y = np.empty((rows, w.shape[0]), dtype=x2.dtype)
    from . import cpu_jobs

    if b.flags.c_contiguous and cpu_jobs.submit(  # the same pieces, as a compiled job
            "gemm_bias", x2.dtype.char == "d",
            [x2.ctypes.data, w.ctypes.data, b.ctypes.data, y.ctypes.data, rows, n_in,
             w.shape[0]], chunk_ranges(rows, cost=macs, min_size=_POOL_MIN_MACS,
                                       piece=macs // t), serial_blas=True)[0]:
        return y
    parallel_chunks(rows, lambda lo, hi: k(x2, w, b, y, lo, hi), cost=macs,
                    min_size=_POOL_MIN_MACS, serial_blas=True, piece=macs // t)
    return y


def dense_grads_side_by_side(g2, x2, w, bias_sum=None):
    """(x̄, W̄, b̄) = (ȳ W, ȳᵀ x, ``bias_sum()`` or None) as two single-threaded GEMMs at once,
    one on the calling thread and one on the kernel pool, or None where that does not apply:
    NumPy arrays, T = 2 kernel threads, at least _POOL_MIN_MACS multiply-adds each. The two
    products have the same multiply-adds (rows·out·in), so the halves balance; neither GEMM is
    split, so there is no partial sum to add and each is the same call (the same bits) as the
    serial one. ``bias_sum`` (b̄ = Σ_rows ȳ, a GEMV: a tenth of a GEMM's time) runs after x̄
    in the same piece instead of alone after both."""
    if not isinstance(g2, np.ndarray) or not isinstance(x2, np.ndarray) \
            or not isinstance(w, np.ndarray) or kernel_threads() != 2 \
            or g2.shape[0] * w.size < _POOL_MIN_MACS:
        return None

    grads = _dense_grads_compiled(g2, x2, w, bias_sum is not None)
    if grads is not None:
        return grads

    def piece(lo, hi):
        if lo == 1:
            return g2.T @ x2
        return g2 @ w, None if bias_sum is None else bias_sum()

    (gx, gb), gw = parallel_chunks(2, piece, cost=2 * g2.shape[0] * w.size,
                                   min_size=_POOL_MIN_MACS, serial_blas=True)
    return gx, gw, gb


def _dense_grads_compiled(g2, x2, w, has_bias):
    """dense_grads_side_by_side with x̄ and b̄ as a compiled job (devices/cpu_jobs
    ``dense_xgrad``), which the pool thread takes without the GIL, while this thread computes
    W̄ = ȳᵀ x with NumPy; or None: no compiled kernels, or arrays that are not C-contiguous and
    of one float dtype. (W̄ stays NumPy's: SciPy's OpenBLAS 0.3.30, which the compiled kernels
    call, runs this transposed product ~10 % slower than NumPy's 0.3.31.) b̄ is then the
    kernel's column sum instead of the GEMV."""
    from . import cpu_jit

    dt = w.dtype
    if not (g2.dtype == x2.dtype == dt) or not cpu_jit.usable(np, dt) \
            or not (g2.flags.c_contiguous and w.flags.c_contiguous):
        return None
    m, n = g2.shape
    k = w.shape[1]
    gx = np.empty((m, k), dtype=dt)
    gb = np.empty(n, dtype=dt)
    from . import cpu_jobs

    done, gw = cpu_jobs.submit("dense_xgrad", dt.char == "d",
                               [g2.ctypes.data, w.ctypes.data, gx.ctypes.data, gb.ctypes.data,
                                m, k, n, has_bias], [(0, 1)], serial_blas=True,
                               alongside=lambda: g2.T @ x2)
    if not done:
        return None
    return gx, gw, (gb if has_bias else None)


def weight_grad_split(g2, x2):
    """W̄ = Σ_rows ȳᵀ x split over the rows (GEMM's K) into T pieces on the kernel pool, each a
    single-threaded GEMM, the T partial (out, in) sums then added in order; or None where
    that does not apply. For NumPy arrays, T = backend.kernel_threads() > 1, and a small W̄
    over many rows (out·in ≤ 256², rows ≥ 4·max(out, in)): OpenBLAS threads such a product
    over W̄'s own rows and columns, which barely scales (a 128 × 128 W̄ over 2048 rows: 507 →
    409 µs on two threads; split over the rows 310 µs; PyTorch/MKL 245). The pieces depend on
    T only, so the sums are the same bits at every run with the same thread count."""
    rows, n_out = g2.shape
    n_in = x2.shape[1]
    if not isinstance(g2, np.ndarray) or not isinstance(x2, np.ndarray) \
            or n_out * n_in > _SPLIT_K_MAX_OUT or rows < 4 * max(n_out, n_in):
        return None
    t = kernel_threads()
    if t <= 1:
        return None
    cost = rows * n_out * n_in
    return tn_over_rows(g2, x2, cost=cost, min_size=_POOL_MIN_MACS, piece=cost // t)


def tn_over_rows(a, b, *, cost, min_size, piece=None):
    """Σ_rows aᵀ b (a (M, K), b (M, N): a small result, a long sum) over the kernel pool:
    pieces of rows, a single-threaded GEMM each (backend.parallel_chunks, serial_blas), the
    pieces' products then added in order — the same bits at every run with the same thread
    count. Below ``min_size`` (of ``cost``) or at T = 1: one product."""
    parts = parallel_chunks(a.shape[0], lambda lo, hi: a[lo:hi].T @ b[lo:hi], cost=cost,
                            min_size=min_size, serial_blas=True, piece=piece)
    out = parts[0]
    for p in parts[1:]:
        out += p
    return out


_SPLIT_K_MAX_OUT = 256 * 256
