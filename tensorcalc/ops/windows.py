"""Sliding windows: unfold (im2col) and fold (col2im), a transpose pair of Linear primitives;
the convolution (conv2d) and max pooling (max_pool2d) built on the same windows, primitives for
their speed (DESIGN §2 rule 3; see their docstrings).

Layout (chosen so that a convolution is ONE contiguous GEMM, and documented once here):

    unfold: x (N, C, H, W)  ->  cols (N, L, kh·kw·C),   L = H_out·W_out

Row l = h·W_out + w of ``cols[n]`` is the receptive field of output pixel (h, w), flattened in
the order (i, j, c) — kernel row, kernel column, channel — i.e. *channels fastest*. With the
weight rearranged to W (kh·kw·C, O) the convolution is ``cols.reshape(N·L, K) @ W`` — one GEMM
whose result (N·L, O) is already the output in channels-last (NHWC) memory; the NCHW tensor is a
free transposed view of it. Channels-fastest patches also make the im2col copy fast: in NHWC
memory the kw·C entries of one kernel row of a patch are contiguous.

Output size per spatial axis (floor mode):  H_out = ⌊(H + p₀ + p₁ − d(k − 1) − 1)/s⌋ + 1.

The forward builds a strided view (no Python loop over pixels) and copies it once (for inputs
with few channels, c·kw < W_out, the copy is made in (N, K, L) memory order, whose contiguous runs
are longer, and the (N, L, K) array returned is its transposed view); fold adds
the kh·kw strided slices of the columns into a zero image (a loop over kernel offsets, never over
pixels). Padding is a pair (before, after) per axis, so 'same' works for even kernels too.
"""

from __future__ import annotations

from ..autodiff.function import Function, Linear, primitive
from ..backend import (
    EW_PIECE,
    PARALLEL_MIN,
    SMALL_GEMM,
    chunk_ranges,
    kernel_threads,
    parallel_chunks,
    scipy_blas_small_kernels,
    xp_of,
)
from ..devices import cpu_jit as _jit
from ..devices import cpu_jobs as _jobs
from ..devices import cuda as _cuda
from ..devices.cpu_gemm import tn_over_rows
from ..tensor import Tensor
from ._util import public, shape_of, sum_axes
from .fft import Irfft2, Rfft2, irfft2, rfft2  # noqa: F401  (registered with the window ops)
from .reduce import sum as rsum
from .shape import reshape, transpose


def _as_strided(xp, a, shape, strides):
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def _few_channel_windows(xp, x, kernel, stride, padding, dilation, out_hw):
    """Every window of x (N, C, H, W), zero-padded, as an (N, kh, kw, C, H_out, W_out) strided
    view: the few-channel unfold's order, whose copies run W_out long."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    (p0, p1), (q0, q1) = padding
    n, c, h, w = x.shape
    xq = x
    if p0 or p1 or q0 or q1:
        xq = xp.zeros((n, c, h + p0 + p1, w + q0 + q1), dtype=x.dtype)
        xq[:, :, p0:p0 + h, q0:q0 + w] = x
    bn, bc, bh, bw = xq.strides
    return _as_strided(xp, xq, (n, kh, kw, c) + tuple(out_hw),
                       (bn, dh * bh, dw * bw, bc, sh * bh, sw * bw))


def _nhwc_padded(xp, x, padding):
    """x (N, C, H, W) as a channels-last (N, Hp, Wp, C) array with zero padding.
    Returns (array, fresh): ``fresh`` is False when the array is a view of x's memory."""
    (p0, p1), (q0, q1) = padding
    xh = x.transpose(0, 2, 3, 1)
    if p0 or p1 or q0 or q1:
        n, h, w, c = xh.shape
        buf = xp.zeros((n, h + p0 + p1, w + q0 + q1, c), dtype=x.dtype)
        buf[:, p0:p0 + h, q0:q0 + w, :] = xh
        return buf, True
    if xh.flags.c_contiguous:
        return xh, False
    return xp.ascontiguousarray(xh), True


def out_size(n, k, s, p, d):
    """H_out = ⌊(H + p₀ + p₁ − d(k − 1) − 1)/s⌋ + 1 for one axis (p a (before, after) pair)."""
    return (n + p[0] + p[1] - d * (k - 1) - 1) // s + 1


@primitive
class Unfold(Linear):
    """im2col: every (kh × kw) window of x, flattened channels-fastest; the transpose of fold.

    Forward:  y[n, h·W_out + w, (i·kw + j)·C + c] = x_pad[n, c, h·s₁ + i·d₁, w·s₂ + j·d₂]
    VJP:      x̄ = fold(ȳ)   (each window's cotangent added back where it was read)
    JVP:      ẏ = unfold(ẋ)
    """

    @staticmethod
    def forward(xp, x, *, kernel, stride, padding, dilation):
        if _cuda.uses(xp):  # on a GPU: one gather kernel (devices/cuda.py), same layout
            return _cuda.unfold(x, kernel, stride, padding, dilation)
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        (p0, p1), (q0, q1) = padding
        n, c, h, w = x.shape
        ho = (h + p0 + p1 - dh * (kh - 1) - 1) // sh + 1
        wo = (w + q0 + q1 - dw * (kw - 1) - 1) // sw + 1
        if c * kw < wo:
            # few channels (the first layer): copy in (N, kh, kw, C, H_out, W_out) memory order,
            # whose contiguous runs are W_out long (channels-last runs, kw·C, would be short),
            # and return the (N, L, K) transposed view — same values, only the memory differs
            if _jit.usable(xp, x.dtype):  # compiled copy, padding included (no padded x)
                out = _jit.unfold_few_into(x, 0, xp.empty((n, kh, kw, c, ho, wo),
                                                          dtype=x.dtype), stride, padding,
                                           dilation)
            else:
                out = xp.ascontiguousarray(_few_channel_windows(xp, x, kernel, stride, padding,
                                                                dilation, (ho, wo)))
                if xp.may_share_memory(out, x):
                    out = out.copy()
            return out.reshape(n, kh * kw * c, ho * wo).transpose(0, 2, 1)
        buf, fresh = _nhwc_padded(xp, x, padding)
        bn, bh, bw, bc = buf.strides
        v = _as_strided(xp, buf, (n, ho, wo, kh, kw, c),
                        (bn, sh * bh, sw * bw, dh * bh, dw * bw, bc))
        out = xp.ascontiguousarray(v)
        if not fresh and xp.may_share_memory(out, x):  # 1×1 kernel, stride 1: never alias x
            out = out.copy()
        return out.reshape(n, ho * wo, kh * kw * c)

    @staticmethod
    def vjp(g, y, x, *, needs, kernel, stride, padding, dilation):
        size = tuple(shape_of(x)[2:])
        return (Fold.apply(g, size=size, kernel=kernel, stride=stride, padding=padding,
                           dilation=dilation),)


@public
def unfold(x, kernel, stride=1, padding=0, dilation=1):
    """im2col: x (N, C, H, W) -> cols (N, H_out·W_out, kh·kw·C), patches flattened (i, j, c).

    ``padding``: int, (ph, pw), ((top, bottom), (left, right)), 'same' or 'valid' (zeros).
    """
    k, s, p, d, _ = window_geometry("unfold", shape_of(x), kernel, stride, padding, dilation)
    return Unfold.apply(x, kernel=k, stride=s, padding=p, dilation=d)


@primitive
class Fold(Linear):
    """col2im: scatter-add every window row of cols back into an (N, C, H, W) image (overlaps
    sum, padding is cropped); the transpose of unfold.

    Forward:  y[n, c, h, w] = Σ_{(l, i, j) that read pixel (h, w)} cols[n, l, (i·kw + j)·C + c]
    VJP:      cols̄ = unfold(ȳ)
    JVP:      ẏ = fold(ċols)

    With numba, overlapping windows are summed by a compiled loop over cols (devices/cpu_jit.py)
    instead of a transposing copy and kh·kw strided adds: the DCGAN step's transposed
    convolutions, 8 % of the step at 1 thread.
    """

    @staticmethod
    def forward(xp, cols, *, size, kernel, stride, padding, dilation):
        if _cuda.uses(xp):  # on a GPU: one gather kernel (devices/cuda.py), no atomics
            return _cuda.fold(cols, size, kernel, stride, padding, dilation)
        (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
        (p0, p1), (q0, q1) = padding
        h, w = size
        n, _, k = cols.shape
        c = k // (kh * kw)
        hp, wp = h + p0 + p1, w + q0 + q1
        ho = (hp - dh * (kh - 1) - 1) // sh + 1
        wo = (wp - dw * (kw - 1) - 1) // sw + 1
        c6 = cols.reshape(n, ho, wo, kh, kw, c)
        buf = xp.zeros((n, hp, wp, c), dtype=cols.dtype)
        if (sh, sw) == (kh, kw) and (dh, dw) == (1, 1):
            # non-overlapping windows: fold is a pure rearrangement, one strided assignment
            buf[:, :ho * kh, :wo * kw, :].reshape(n, ho, kh, wo, kw, c)[...] = \
                c6.transpose(0, 1, 3, 2, 4, 5)
        elif _jit.applies(xp, c6, buf):  # compiled: the adds in one pass over cols, no copy
            _jit.fold_samples(c6, buf, stride, dilation)
        else:
            # kernel offsets first (one copy), so each of the kh·kw strided adds below runs over
            # long contiguous (W_out·C) rows instead of C-element snippets: ~1.5x faster
            ct = xp.ascontiguousarray(c6.transpose(3, 4, 0, 1, 2, 5))
            for i in range(kh):
                hs = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                for j in range(kw):
                    buf[:, hs, j * dw:j * dw + sw * (wo - 1) + 1:sw, :] += ct[i, j]
        return buf[:, p0:p0 + h, q0:q0 + w, :].transpose(0, 3, 1, 2)

    @staticmethod
    def vjp(g, y, cols, *, needs, size, kernel, stride, padding, dilation):
        return (Unfold.apply(g, kernel=kernel, stride=stride, padding=padding,
                             dilation=dilation),)


@public
def fold(cols, output_size, kernel, stride=1, padding=0, dilation=1):
    """col2im, the adjoint of :func:`unfold`: cols (N, L, kh·kw·C) -> (N, C, H, W), summing
    overlapping windows. ``output_size`` is (H, W) of the unpadded image."""
    cs = shape_of(cols)
    if len(cs) != 3:
        raise ValueError(f"fold: expected cols of shape (N, L, kh·kw·C), got {cs}")
    h, w = pair(output_size, "output_size", "fold", 1)
    k = pair(kernel, "kernel size", "fold", 1)
    if cs[2] % (k[0] * k[1]):
        raise ValueError(f"fold: the last axis of cols {cs} must be kh·kw·C with kernel {k}")
    c = cs[2] // (k[0] * k[1])
    k, s, p, d, (ho, wo) = window_geometry("fold", (cs[0], c, h, w), k, stride, padding,
                                           dilation)
    if cs[1] != ho * wo:
        raise ValueError(
            f"fold: cols {cs} has L = {cs[1]} windows, but an output of {(h, w)} with kernel {k}, "
            f"stride {s}, padding {p}, dilation {d} has H_out·W_out = {ho}·{wo} = {ho * wo}"
        )
    return Fold.apply(cols, size=(h, w), kernel=k, stride=s, padding=p, dilation=d)


@primitive
class Conv2d(Function):
    """2-D convolution (cross-correlation, one group) of x (N, C, H, W) with W (O, C, kh, kw),
    plus a bias b (O,) or None.

    Forward:  y[n, o, h, w] = b[o] + Σ_{c,i,j} x_pad[n, c, h·s₁ + i·d₁, w·s₂ + j·d₂] W[o, c, i, j]
    VJP:      x̄ = fold(ȳ_rows W_matᵀ),  W̄ = unfold(x)ᵀ ȳ_rows,  b̄ = Σ_rows ȳ_rows  (W_mat (K, O))
    JVP:      ẏ = conv2d(ẋ, W) + conv2d(x, Ẇ) + ḃ

    The forward is unfold + GEMM (the output is NHWC memory, returned as an NCHW view). On the
    CPU the unfold runs a few samples at a time into one reused buffer, so the GEMM reads its
    columns from cache (implicit GEMM). A primitive for its reverse mode: on arrays the input
    gradient is Σ over kernel offsets (i, j) of ȳ_rows W_ij added into the strided window of x̄
    that offset read — kh·kw small GEMMs whose (N, H_out, W_out, C) results are added over long
    contiguous rows — instead of one (N·L, kh·kw·C) product and a col2im over C-element runs
    (2-3x less time); the weight gradient recomputes the columns in cache-sized chunks instead of
    keeping them alive through the step, and b̄ is one GEMV (a NumPy sum over the rows of
    channels-last memory is ~15x slower). On Tensors (create_graph) the same rules are written
    with unfold/fold/matmul, so higher derivatives come from those.
    """

    @staticmethod
    def forward(xp, x, w, b=None, *, stride, padding, dilation):
        o, c, kh, kw = w.shape
        n = x.shape[0]
        ho, wo = out_size(x.shape[2], kh, stride[0], padding[0], dilation[0]), \
            out_size(x.shape[3], kw, stride[1], padding[1], dilation[1])
        wt = w.transpose(2, 3, 1, 0).reshape(kh * kw * c, o)  # rows (i, j, c)
        if b is not None and b.dtype != x.dtype:
            b = b.astype(x.dtype)
        y = None
        if _pointwise(w.shape, padding):  # 1×1: the input's own rows, one GEMM, no unfold
            y = xp.matmul(_pixel_rows(xp, x, stride), wt)
            if b is not None:
                _add_to_rows(xp, y, b)
        elif (y := _few_channel_conv(xp, x, wt, b, (kh, kw), stride, padding, dilation,
                                     (ho, wo))) is not None:
            pass
        elif _row_conv_applies(xp, x, o, (kh, kw), stride, dilation, padding):
            y = _row_conv(xp, x, wt.reshape(kh, kw * c, o), xp.empty((n * ho * wo, o),
                                                                     dtype=x.dtype),
                          padding, b)
        else:  # implicit GEMM: unfold a few samples at a time, in cache
            y = xp.empty((n * ho * wo, o), dtype=x.dtype)

            def gemm(rs, cols):
                if cols.ndim == 2:
                    _matmul_rows(xp, cols, wt, y[rs], b)
                    return
                # few-channel chunks: a GEMM per sample
                xp.matmul(cols, wt, out=y[rs].reshape(cols.shape[0], -1, o))
                if b is not None:
                    _add_to_rows(xp, y[rs], b)

            if _column_chunks(xp, x, (kh, kw), stride, padding, dilation, gemm,
                              few=True) is None:
                y = None
        if y is None:
            cols = Unfold.forward(xp, x, kernel=(kh, kw), stride=stride, padding=padding,
                                  dilation=dilation)
            if cols.flags.c_contiguous:
                y = xp.matmul(cols.reshape(n * ho * wo, -1), wt)
            else:  # (N, K, L) memory (few input channels): N GEMMs on transposed operands
                y = xp.matmul(cols, wt).reshape(n * ho * wo, o)
            if b is not None:
                _add_to_rows(xp, y, b)
        return y.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)

    @staticmethod
    def vjp(g, y, x, w, b=None, *, needs, stride, padding, dilation):
        geo = dict(stride=stride, padding=padding, dilation=dilation)
        if not any(isinstance(v, Tensor) for v in (g, x, w, b)):
            xp = xp_of((g,))
            rows = _rows(xp, g)
            need_b = b is not None and needs[2]
            gw = gb = None
            if needs[1]:  # (b̄ from its chunks too, where W̄ is computed chunk by chunk)
                gw, gb = _conv_weight_grad(xp, rows, x, w.shape, **geo, bias=need_b)
            if need_b and gb is None:
                gb = sum_axes(xp, rows, (0,))  # Σ_rows: one GEMV (ops._util.sum_axes)
            gx = None
            if needs[0] and _pointwise(w.shape, padding):
                gx = _pointwise_input_grad(xp, rows, w, x.shape, g.shape, stride)
            elif needs[0]:
                gx = _conv_input_grad_full(xp, g, w, x.shape, **geo)
                if gx is None:
                    gx = _conv_input_grad(xp, rows, w, x.shape, g.shape, **geo)
            return gx, gw, gb
        o, c, kh, kw = shape_of(w)
        n, _, ho, wo = shape_of(g)
        rows = reshape(transpose(g, (0, 2, 3, 1)), (n * ho * wo, o))
        gx = gw = gb = None
        if needs[0]:
            wmat = reshape(transpose(w, (2, 3, 1, 0)), (kh * kw * c, o))
            cols = reshape(rows @ wmat.mT, (n, ho * wo, kh * kw * c))
            gx = Fold.apply(cols, size=tuple(shape_of(x)[2:]), kernel=(kh, kw), **geo)
        if needs[1]:
            cols = Unfold.apply(x, kernel=(kh, kw), **geo)
            gmat = reshape(cols, (n * ho * wo, kh * kw * c)).mT @ rows  # (K, O)
            gw = transpose(reshape(gmat, (kh, kw, c, o)), (3, 2, 0, 1))
        if b is not None and needs[2]:
            gb = rows.sum(axis=0)
        return gx, gw, gb

    @staticmethod
    def jvp(dxs, y, x, w, b=None, *, stride, padding, dilation):
        dx, dw = dxs[:2]
        db = dxs[2] if len(dxs) > 2 else None
        geo = dict(stride=stride, padding=padding, dilation=dilation)
        out = None
        if dx is not None:
            out = Conv2d.apply(dx, w, **geo)
        if dw is not None:
            t = Conv2d.apply(x, dw, **geo)
            out = t if out is None else out + t
        if db is not None:
            t = reshape(db, (shape_of(db)[0], 1, 1))
            out = t if out is None else out + t
        return out


# OpenBLAS's small-matrix GEMM kernels (its SkylakeX kernels, which backend picks on AVX-512
# CPUs) take products with M·N·K ≤ 100³ without packing the operands: on the narrow products of
# a convolution's chunks they run 15-30 % faster than one large call (1 thread, 4096 rows, 2-core
# Xeon with AVX-512, GFLOP/s one call → blocks: K 144, N 16: 85 → 102; 144, 32: 113 → 143;
# 288, 32: 117 → 139; 32, 400: 114 → 133; 16, 144: 87 → 113; 400, 32 and 288, 64: no change)
_SMALL_GEMM = SMALL_GEMM
_SMALL_GEMM_MIN_ROWS = 64  # (blocks of fewer rows: the calls' own cost eats the gain)


def _small_rows(m, kn):
    """Rows per block for a product of m rows by a (K, N) operand, kn = K·N: near-equal blocks
    of at most 100³/(K·N) rows, or m (one block) where blocks would have fewer than
    _SMALL_GEMM_MIN_ROWS rows or BLAS has no small-matrix kernels
    (backend.scipy_blas_small_kernels)."""
    rows = _SMALL_GEMM // max(1, kn)
    if rows < _SMALL_GEMM_MIN_ROWS or m <= rows or not scipy_blas_small_kernels():
        return m
    blocks = -(-m // rows)
    return -(-m // blocks)


def _blocked(xp, a, b, out, kn):
    """(the compiled blocked-product step, rows per block) for a (M, K) and b, or None where
    one matmul is the better call: one block, not NumPy float arrays of one dtype, not
    C-contiguous (out may be None: allocated C-contiguous), or no compiled step."""
    step = _small_rows(a.shape[0], kn)
    if step >= a.shape[0] or not _jit.usable(xp, a.dtype) or a.dtype != b.dtype \
            or not (a.flags.c_contiguous and b.flags.c_contiguous) \
            or (out is not None and (out.dtype != a.dtype or not out.flags.c_contiguous)):
        return None
    kernel = _jit.gemm_rows_kernel(a.dtype)
    return None if kernel is None else (kernel, step)


def _matmul_rows(xp, a, b, out, bias=None):
    """out (M, N) ← a (M, K) @ b (K, N) (+ bias (N,) on every row): on NumPy float arrays,
    C-contiguous, near-equal blocks of rows with M_block·K·N ≤ 100³ (see _SMALL_GEMM), each a
    call of SciPy's BLAS GEMM from one compiled loop (devices/cpu_jit.py: the GIL released
    throughout — from Python, the blocks' calls took the GIL back one by one, and at 2 threads
    the pool's pieces then lost more than the kernels gained), the bias written into each
    block's rows just before its GEMM adds to them (β = 1: no pass over out afterwards, LeNet's
    second layer −60 µs a step); otherwise one matmul, then the bias added."""
    blk = _blocked(xp, a, b, out, a.shape[1] * b.shape[1])
    if blk is None or (bias is not None and bias.dtype != a.dtype):
        out = xp.matmul(a, b, out=out)
        if bias is not None:
            _add_to_rows(xp, out, bias)
        return out
    has = bias is not None
    blk[0](a, b, out, blk[1], False, bias if has else b[0], has)
    return out


def _matmul_tn_rows(xp, a, b, out=None):
    """out (K, N) ← a (M, K)ᵀ b (M, N) (W̄'s products: a small result, a long sum): as
    :func:`_matmul_rows`, the sum over blocks of rows with M_block·K·N ≤ 100³ accumulated by
    BLAS in block order; otherwise one matmul."""
    blk = _blocked(xp, a, b, out, a.shape[1] * b.shape[1])
    if blk is None:
        return xp.matmul(a.T, b, out=out)
    if out is None:
        out = xp.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
    blk[0](a, b, out, blk[1], True, b[0], False)
    return out


_BIAS_RUN = 256  # values per inner loop of the bias add


def _add_to_rows(xp, y, b):
    """y (R, O), C-contiguous, += b (O,) on every row, in place. NumPy's broadcast add runs an
    inner loop per row, O values long (16 in LeNet's first layer: 147k values in 73 µs); here
    k = 256 // O rows at a time against b tiled k times (23 µs). The same adds, so the same
    bits."""
    r, o = y.shape
    k = _BIAS_RUN // o if o < _BIAS_RUN // 2 else 1
    if k <= 1 or r < 2 * k or not y.flags.c_contiguous:
        y += b
        return
    bulk = (r // k) * k
    yt = y[:bulk].reshape(bulk // k, k * o)
    yt += xp.tile(b, k)
    if bulk < r:
        y[bulk:] += b


def _pointwise(wshape, padding):
    """A 1×1 kernel without padding: a GEMM over the input's (strided) pixels, no unfold."""
    return wshape[2] == wshape[3] == 1 and not any(padding[0] + padding[1])


def _pixel_rows(xp, x, stride):
    """The pixels a 1×1 convolution reads, as (N·H_out·W_out, C) rows (free for a stride-1
    conv output's channels-last memory)."""
    sh, sw = stride
    if (sh, sw) != (1, 1):
        x = x[:, :, ::sh, ::sw]
    r = x.transpose(0, 2, 3, 1)
    if not r.flags.c_contiguous:
        r = xp.ascontiguousarray(r)
    return r.reshape(-1, x.shape[1])


def _pointwise_input_grad(xp, rows, w, xshape, gshape, stride):
    """x̄ of a 1×1 convolution: ȳ_rows W (one GEMM), placed at the pixels it read. With a
    stride, the samples go to the kernel pool: each piece's GEMM and its part of the zero
    image (ResNet's 16 → 32 shortcut at 2 threads: 0.45 ms on one thread)."""
    n, c, h, wd = xshape
    ho, wo = gshape[2:]
    wm = w.reshape(w.shape[0], c)
    if tuple(stride) == (1, 1):
        return (rows @ wm).reshape(n, ho, wo, c).transpose(0, 3, 1, 2)
    buf = xp.empty((n, h, wd, c), dtype=rows.dtype)
    L = ho * wo

    def run(a, b):
        bb = buf[a:b]
        bb[...] = 0
        bb[:, ::stride[0], ::stride[1], :] = (rows[a * L:b * L] @ wm).reshape(b - a, ho, wo, c)

    if _cuda.uses(xp):
        run(0, n)
    else:
        parallel_chunks(n, run, cost=n * h * wd * c, serial_blas=True)
    return buf.transpose(0, 3, 1, 2)


def _pointwise_weight_grad(xp, rows, x, stride):
    """W̄ (C, O) of a 1×1 convolution: Σ_pixels x_rowsᵀ ȳ_rows, a GEMM with a small result and
    a long sum. With T > 1 kernel threads the pixel rows are split over the pool, a
    single-threaded GEMM per piece, and the pieces' products added in order (OpenBLAS's own
    2 threads made the 16 → 32 stride-2 shortcut's W̄ slower than one thread: 0.63 vs 0.35 ms).
    """
    xr = _pixel_rows(xp, x, stride)
    if _cuda.uses(xp):
        return xr.T @ rows
    return tn_over_rows(xr, rows, cost=xr.size + rows.size, min_size=PARALLEL_MIN)


def _rows(xp, g):
    """ȳ (N, O, H_out, W_out) as (N·H_out·W_out, O) rows (free for a conv output's memory)."""
    n, o, ho, wo = g.shape
    r = g.transpose(0, 2, 3, 1)
    if not r.flags.c_contiguous:
        r = xp.ascontiguousarray(r)
    return r.reshape(n * ho * wo, o)


def _conv_input_grad(xp, rows, w, xshape, gshape, *, stride, padding, dilation):
    """x̄ on arrays: for each kernel offset (i, j), ȳ_rows W_ij (N·L, C) is added into the
    strided window of x̄_pad that offset read (channels-last: the adds run over W_out·C rows).

    With numba (devices/cpu_jit.py) the same sums as col2im: the columns ȳ_rows W_matᵀ of a few
    samples at a time (one GEMM of width kh·kw·C, not kh·kw GEMMs of width C), folded into x̄_pad
    by a compiled loop (LeNet's second convolution 2.1 → 1.7 ms, a stride-2 4×4 one 3.8 →
    2.8 ms, 1 thread)."""
    (sh, sw), (dh, dw), ((p0, p1), (q0, q1)) = stride, dilation, padding
    n, _, h, wd = xshape
    o, c, kh, kw = w.shape
    _, _, ho, wo = gshape
    buf = xp.zeros((n, h + p0 + p1, wd + q0 + q1, c), dtype=rows.dtype)
    L = ho * wo
    if _jit.applies(xp, rows, buf) and w.dtype == rows.dtype:
        _fold_input_grad(xp, rows, w, buf, (ho, wo), stride, dilation)
        return buf[:, p0:p0 + h, q0:q0 + wd, :].transpose(0, 3, 1, 2)
    wk = xp.ascontiguousarray(w.transpose(2, 3, 0, 1))  # (kh, kw, O, C)
    # a few samples at a time, so that their x̄ rows stay in cache over the kh·kw adds
    per = _balanced(n, max(1, min(n, _GRAD_CHUNK_BYTES // (buf[0].nbytes + L * c
                                                             * rows.dtype.itemsize))),
                    n * L * c * kh * kw)

    def run(lo, hi):  # samples [lo, hi) (whole chunks; the piece's own product buffer)
        tmp = xp.empty((min(per, hi - lo) * L, c), dtype=rows.dtype)
        for a in range(lo, hi, per):
            b = min(hi, a + per)
            r, t = rows[a * L:b * L], tmp[:(b - a) * L]
            t4 = t.reshape(b - a, ho, wo, c)
            for i in range(kh):
                hs = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                for j in range(kw):
                    xp.matmul(r, wk[i, j], out=t)
                    buf[a:b, hs, j * dw:j * dw + sw * (wo - 1) + 1:sw, :] += t4

    # with T > 1 kernel threads the samples are split over the pool (the serial chunk grid);
    # a GPU's kernels are queued from this thread only
    if _cuda.uses(xp):
        run(0, n)
    else:
        parallel_chunks(n, run, align=per, cost=n * L * c * kh * kw, serial_blas=True)
    return buf[:, p0:p0 + h, q0:q0 + wd, :].transpose(0, 3, 1, 2)


_FOLD_CHUNK_BYTES = 1 << 20  # the columns of a few samples, folded while still in cache


def _fold_input_grad(xp, rows, w, buf, out_hw, stride, dilation):
    """x̄_pad (buf, zeros, channels-last) += col2im of ȳ_rows W_matᵀ with the compiled fold (see
    :func:`_conv_input_grad`): the same sums in another order. Samples go to the kernel pool in
    whole chunks; each x̄ entry is summed within its own sample, so the bits do not depend on
    T."""
    n, c = buf.shape[0], buf.shape[3]
    o, _, kh, kw = w.shape
    ho, wo = out_hw
    L, k = ho * wo, kh * kw * c
    wm = xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(o, k)  # (O, (i, j, c))
    per = _balanced(n, max(1, min(n, _FOLD_CHUNK_BYTES // (L * k * rows.dtype.itemsize))),
                    n * L * k)

    def run(lo, hi):
        tmp = xp.empty((min(per, hi - lo) * L, k), dtype=rows.dtype)
        for a in range(lo, hi, per):
            b = min(hi, a + per)
            t = tmp[:(b - a) * L]
            _matmul_rows(xp, rows[a * L:b * L], wm, t)
            _jit.fold_add(t.reshape(b - a, ho, wo, kh, kw, c), buf, a, stride, dilation)

    parallel_chunks(n, run, align=per, cost=n * L * k, serial_blas=True)


# x̄ as a full correlation pays from 16 input channels (the GEMM's width): 64×16×28×28 with
# 16 output channels, 3×3, 1 / 2 threads: 5.3 / 3.2-4.4 ms per offset, 4.8 / 2.8 ms full;
# 8 channels: 4.2 / 2.9 against 4.1 / 2.2, not clearly better (2026-12-01, 2-core Zen 4)
_FULL_MIN_CHANNELS = 16


def _conv_input_grad_full(xp, g, w, xshape, *, stride, padding, dilation):
    """x̄ of a stride-1 'same' convolution as the convolution of ȳ with the flipped kernel
    (channels swapped), an implicit GEMM like the forward: x̄ lands as contiguous NHWC rows,
    with no zero image and no strided adds. None where the per-offset form is faster (few
    input channels: a narrow GEMM; a 'valid' conv: the full correlation would do more work)."""
    o, c, kh, kw = w.shape
    n, _, h, wd = xshape
    (p0, p1), (q0, q1) = padding
    (dh, dw) = dilation
    full = ((dh * (kh - 1) - p0, dh * (kh - 1) - p1), (dw * (kw - 1) - q0, dw * (kw - 1) - q1))
    if stride != (1, 1) or c < _FULL_MIN_CHANNELS or tuple(g.shape[2:]) != (h, wd) \
            or min(min(a) for a in full) < 0:
        return None
    wf = xp.ascontiguousarray(w.transpose(2, 3, 0, 1)[::-1, ::-1]).reshape(kh * kw * o, c)
    out = xp.empty((n * h * wd, c), dtype=g.dtype)
    if _row_conv_applies(xp, g, c, (kh, kw), (1, 1), dilation, full):
        _row_conv(xp, g, wf.reshape(kh, kw * o, c), out, full)
        return out.reshape(n, h, wd, c).transpose(0, 3, 1, 2)
    if _column_chunks(xp, g, (kh, kw), (1, 1), full, dilation,
                      lambda rs, cols: _matmul_rows(xp, cols, wf, out[rs])) is None:
        return None
    return out.reshape(n, h, wd, c).transpose(0, 3, 1, 2)


def _conv_weight_grad(xp, rows, x, wshape, *, stride, padding, dilation, bias=False):
    """(W̄, b̄ or None) on arrays: W̄ = unfold(x)ᵀ ȳ_rows, the columns recomputed a few samples
    at a time, not kept alive from the forward. With ``bias``, where the columns come in chunks,
    b̄ = Σ_rows ȳ_rows as well, one GEMV with ones per chunk while its rows are in cache and
    on the chunk's own thread (else None: the caller sums the rows; LeNet's first layer at
    2 threads: a 90 µs serial GEMV over 36864 × 16 rows)."""
    o, c, kh, kw = wshape
    k = kh * kw * c
    gb = None
    if _row_conv_applies(xp, x, o, (kh, kw), stride, dilation, padding, grad=True):
        return _row_conv_weight_grad(xp, rows, x, wshape, padding, bias)
    for chunked in (_few_channel_wgrad, _nhwc_wgrad):  # one compiled call a chunk
        got = chunked(xp, rows, x, wshape, stride, padding, dilation, bias)
        if got is not None:
            return got
    if _pointwise(wshape, padding):
        gmat = _pointwise_weight_grad(xp, rows, x, stride)
    else:  # Σ over chunks of their (K, O) products (and with bias, row K: Σ of their rows)
        def prod(rs, cols):
            if cols.ndim == 2:
                if not bias:
                    return _matmul_tn_rows(xp, cols, rows[rs])
                out = xp.empty((k + 1, o), dtype=rows.dtype)
                _matmul_tn_rows(xp, cols, rows[rs], out[:k])
            else:
                p = xp.matmul(cols.transpose(0, 2, 1),
                              rows[rs].reshape(cols.shape[0], -1, o)).sum(axis=0)
                if not bias:
                    return p
                out = xp.empty((k + 1, o), dtype=rows.dtype)
                out[:k] = p
            r = rows[rs]
            xp.matmul(xp.ones(r.shape[0], dtype=rows.dtype), r, out=out[k])
            return out

        gmat = _column_chunks(xp, x, (kh, kw), stride, padding, dilation, prod,
                              accumulate=True, few=True)
        if gmat is not None and bias:
            gmat, gb = gmat[:k], gmat[k]
    if gmat is None:
        cols = Unfold.forward(xp, x, kernel=(kh, kw), stride=stride, padding=padding,
                              dilation=dilation)
        n, L, k = cols.shape
        if cols.flags.c_contiguous:
            gmat = cols.reshape(n * L, k).T @ rows
        else:  # (N, K, L) memory: per-sample products, summed
            gmat = xp.matmul(cols.transpose(0, 2, 1), rows.reshape(n, L, o)).sum(axis=0)
    return xp.ascontiguousarray(gmat.reshape(kh, kw, c, o).transpose(3, 2, 0, 1)), gb


def _balanced(n, per, cost):
    """Samples per chunk: at most ``per``, and with T > 1 kernel threads (and work enough for
    the pool) near-equal chunks, a multiple of T of them, so the pool's pieces come out even
    (n = 64, per = 18, T = 2: four chunks of 16, not 18, 18, 18 and 10)."""
    t = kernel_threads() if cost >= PARALLEL_MIN else 1
    if t <= 1 or n <= 1:
        return per
    m = -(-n // (t * per))  # chunks per thread
    return max(1, -(-n // (t * m)))


_GRAD_CHUNK_BYTES = 1 << 19  # x̄ rows of a few samples (and their ȳ W_ij products)
_FEW_CHANNELS_RUN = 0.75  # below c·kw = this × W_out: Unfold's (N, K, L) copy (longer runs)
_CHUNK_BYTES = 1 << 21  # columns of a few samples at a time: ~2 MB stays in cache for the GEMM
# few-channel chunks ((B, K, L) copies and B GEMMs, pool pieces at T > 1): ~1 MB (LeNet's first
# layer at 2 threads, forward: 16 samples a chunk 0.50 ms, 32 a chunk 0.69 ms, 8 a chunk 0.55 ms)
_FEW_CHUNK_BYTES = 1 << 20


def _column_chunks(xp, x, kernel, stride, padding, dilation, fn, accumulate=False, few=False):
    """Implicit GEMM's driver: ``fn(rows, cols)`` for the unfold of x in chunks of samples,
    results in chunk order. ``cols`` (B·L, kh·kw·C) holds the columns of samples [a, b) in a
    reused buffer, so the GEMM that consumes them reads from cache instead of a (N·L, K) array
    in memory (~1.8x faster for a 16-channel 28×28 layer); ``rows`` is slice(a·L, b·L).

    With numba and channels-last x (a conv output's memory) the copy is compiled and reads x
    itself, padding included (devices/cpu_jit.unfold_nhwc_into: LeNet's second layer 81 → 49 µs
    a chunk of 16 samples; no padded copy of x); otherwise NumPy copies a strided view of the
    padded image.

    With T > 1 kernel threads the samples go to the kernel pool as pieces of whole, near-equal
    chunks (:func:`_balanced`), each piece with its own buffers and single-threaded GEMMs
    (backend.parallel_chunks, serial_blas); a GEMM's rows do not depend on how many rows it is
    given, so the values are the serial ones. ``accumulate``: the sum of the results instead,
    added in place in chunk order within each piece, then over the pieces (at T > 1 its
    rounding differs from T = 1's; it is the same at every run with the same T).

    ``few``: ``fn`` also takes few-channel chunks, ``cols`` then a (B, L, K) view of (B, K, L)
    memory (see below).

    None where the plain unfold is better: GPUs (one gather kernel), and few channels (Unfold's
    (N, K, L) copy, whose runs are W_out long, then N GEMMs) — except, with ``few`` and T > 1
    kernel threads, that same copy and its GEMMs chunk by chunk over the pool (LeNet's first
    convolution at 2 threads: forward 0.82 → 0.50 ms, W̄ 0.56 → 0.42 ms; with numba the
    one-call chunk kernels of _few_channel_conv and _few_channel_wgrad take these layers at
    any T: 0.35 ms and 0.38–0.58 ms there)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, padding[0], dh), out_size(w, kw, sw, padding[1], dw)
    if _cuda.uses(xp):
        return None
    if c * kw < _FEW_CHANNELS_RUN * wo:
        if not few:
            return None
        return _few_channel_chunks(xp, x, kernel, stride, padding, dilation, (ho, wo), fn,
                                   accumulate)
    (p0, p1), (q0, q1) = padding
    xh = x.transpose(0, 2, 3, 1)  # channels-last view (free for a conv output)
    L, k = ho * wo, kh * kw * c
    per = _balanced(n, max(1, min(n, _CHUNK_BYTES // (L * k * x.dtype.itemsize))), n * L * k)
    # compiled: the copy reads channels-last x itself, padding included (no padded copy)
    jit = xh.flags.c_contiguous and _jit.usable(xp, x.dtype)
    padded = not jit and (p0 or p1 or q0 or q1 or not xh.flags.c_contiguous)

    def buffers(count):
        """A piece's own columns, and its padded NHWC image (borders zeroed once)."""
        cols = xp.empty((count, ho, wo, kh, kw, c), dtype=x.dtype)
        pad = xp.zeros((count, h + p0 + p1, w + q0 + q1, c), dtype=x.dtype) if padded else None
        return cols, pad

    def columns(bufs, a, b):
        cols, pad = bufs
        if jit:
            cc = _jit.unfold_nhwc_into(xh, a, cols[:b - a], stride, padding, dilation)
            return cc.reshape((b - a) * L, k)
        if pad is None:
            src = xh[a:b]
        else:
            src = pad[:b - a]
            src[:, p0:p0 + h, q0:q0 + w, :] = xh[a:b]
        bn, bh, bw, bc = src.strides
        cc = cols[:b - a]
        cc[...] = _as_strided(xp, src, (b - a, ho, wo, kh, kw, c),
                              (bn, sh * bh, sw * bw, dh * bh, dw * bw, bc))
        return cc.reshape((b - a) * L, k)

    return _sample_chunks(xp, n, per, L, n * L * k, buffers, columns, fn, accumulate)


def _row_conv_applies(xp, x, o, kernel, stride, dilation, padding, grad=False):
    """The kernel-row form (:func:`_row_conv`, or with ``grad`` W̄'s
    :func:`_row_conv_weight_grad`) is used: NumPy float arrays with the compiled steps, stride
    1, no dilation, not few input channels, and a padded grid that wastes little: W_p/W_out ≤
    1.15 (the forward computes the W_p − W_out extra columns) or, for W̄, ≤ 1.3 (it only reads
    them as zeros). Measured (64 samples, 3×3 'same' unless said; kernel rows against the
    implicit GEMM over im2col columns, both with their GEMMs in OpenBLAS's small-matrix blocks;
    ms at 1 / 2 threads, 2026-12-01, 2-core Xeon with AVX-512):

    ======================  ===========================  ===========================
    C → O at H×W            forward                      W̄
    ======================  ===========================  ===========================
    16 → 16 at 28×28        4.23 → 3.43 / 2.75 → 2.10    4.49 → 4.23 / 2.78 → 2.43
    16 → 32 at 28×28        5.62 → 4.62 / 2.87 → 2.74    6.23 → 5.03 / 3.17 → 2.96
    32 → 32 at 28×28        10.1 → 8.86 / 5.27 → 5.07    10.8 → 9.38 / 6.06 → 5.47
    32 → 32 at 14×14        2.55 → 2.30 / 1.55 → 1.48    2.74 → 2.49 / 1.67 → 1.58
    64 → 32 at 14×14        5.84 → 4.45 / 3.38 → 2.70    6.36 → 4.61 / 3.51 → 2.77
    64 → 64 at 7×7          2.26 → 2.83 / 1.37 → 1.60    2.42 → 2.23 / 1.47 → 1.39
    16 → 32 at 12×12, 5×5   (valid: 1.28 → 1.25 /        1.21 → 1.25 / 0.73 → 0.83
                            0.69 → 0.80)
    ======================  ===========================  ===========================

    x̄ of a 'same' convolution is a forward convolution (of ȳ, C and O swapped): the same
    rule, with the same gains (16 → 32 at 28×28: 7.80 → 6.41 / 4.49 → 3.79). With OpenBLAS's
    AVX2 (Haswell) kernels, which have no small-matrix path, the forward still won on 6 of 8
    layers (16 → 16 at 28×28 6.54 → 5.75 ms; it lost 64 → 32 at 14×14, 9.58 → 10.35, and at
    7×7, which the rule excludes) and W̄ lost: it then takes the implicit GEMM."""
    kh, kw = kernel
    if tuple(stride) != (1, 1) or tuple(dilation) != (1, 1) or kh * kw == 1 \
            or not _jit.usable(xp, x.dtype) or (_jit.row_wgrad_kernel if grad else
                                                _jit.row_conv_kernel)(x.dtype) is None:
        return False
    c, w = x.shape[1], x.shape[3]
    wp = w + padding[1][0] + padding[1][1]
    wo = wp - kw + 1
    if wo < 1 or c * kw < _FEW_CHANNELS_RUN * wo:
        return False  # (few input channels: im2col's (N, K, L) copy and its GEMMs are faster,
        # LeNet's first layer's W̄ at 1 / 2 threads 0.59 / 0.54 ms, kernel rows 1.24 / 0.77)
    if grad and not scipy_blas_small_kernels():
        return False  # (W̄ by kernel rows needs the small-matrix kernels: with OpenBLAS's
        # Haswell kernels it lost on 7 of 8 layers of the table, 32 → 32 at 14×14 5.1 → 5.8 ms)
    return wp <= (1.3 if grad else 1.15) * wo


_ROW_CHUNK_BYTES = 1 << 21  # a chunk's row columns Z (~2 MB, in cache for its GEMMs)


def _row_conv(xp, x, wk, out, padding, bias=None):
    """out (N·H_out·W_out, O) rows ← the stride-1 convolution of x (N, C, H, W) with weights
    wk (kh, kw·C, O) (rows (j, c) of kernel row i), + bias: the *kernel-row* form of implicit
    GEMM, for narrow layers where im2col's copy costs as much as its GEMM.

    In channels-last memory, the kw·C values that kernel row i of the window at output (h, w)
    reads are contiguous: row r = (h + i)·W_p + w of Z, where Z[r] = x_pad_flat[r·C : (r + kw)·C]
    (W_p = W + padding, the padded width). So with Z copied once per chunk (kw·C values a pixel,
    a third of im2col's kh·kw·C for 3×3), the outputs on the padded grid (H_out, W_p) are

        y_grid[q] = Σ_i Z[q + i·W_p] W_i,   q = h·W_p + w,

    kh GEMMs on contiguous row ranges of Z, accumulated in place by BLAS (β = 1, SciPy's GEMM);
    the W_p − W_out columns of each grid row that read across an image row are dropped. The
    same products as the im2col GEMM, summed in another order (values to rounding)."""
    n, c = x.shape[:2]
    kh, kwc, o = wk.shape
    step = _jit.row_conv_kernel(x.dtype)
    wk = xp.ascontiguousarray(wk)
    has_bias = bias is not None
    bias = bias if has_bias else wk[0, 0]

    def make(m, ho, wp):
        return xp.empty((ho * wp, o), dtype=x.dtype)

    def chunk(grid, z, a, k, wp):
        step(wk, z, k, grid, y4, a, bias, has_bias, wp, _small_rows(y4.shape[1] * wp, kwc * o))

    y4 = out.reshape((n,) + _row_grid(x.shape, kh, kwc // c, padding)[2:] + (o,))
    geo = _row_chunking(x, kh, kwc // c, padding)
    if not _row_job(xp, "row_conv", x, kh, kwc // c, padding, o, has_bias,
                    [wk, y4, xp.ascontiguousarray(bias)], geo):
        _row_z_chunks(xp, x, kh, kwc // c, padding, make, chunk, geo)
    return out


def _row_job(xp, name, x, kh, kw, padding, o, has_bias, arrays, geo):
    """The kernel-row chunk loop (_row_z_chunks, its chunking ``geo``) with its pieces as the
    compiled job ``name`` of devices/cpu_jobs ("row_conv": ``arrays`` = [W (kh, kw·C, O),
    y (N, H_out, W_out, O), b]; "row_wgrad": [ȳ rows, W̄ parts, b̄ parts], a part per piece):
    the same chunks, Z and GEMMs, with no GIL taken on the pool thread; False where it does
    not apply (nothing has run)."""
    n, c = x.shape[:2]
    hp, wp, ho, wo, per, ranges = geo
    dt = x.dtype
    if len(ranges) == 1 or any(a.dtype != dt or not a.flags.c_contiguous for a in arrays):
        return False
    xh = xp.ascontiguousarray(x.transpose(0, 2, 3, 1))
    (p0, _), (q0, _) = padding
    fields = [xh.ctypes.data] + [a.ctypes.data for a in arrays] + [
        n, x.shape[2], x.shape[3], c, kh, kw * c, o, ho, wo, hp, wp, kw, p0, q0, per,
        has_bias, _small_rows(ho * wp, kw * c * o)]
    return _jobs.submit(name, dt.char == "d", fields, ranges, serial_blas=True)[0]


def _row_chunking(x, kh, kw, padding):
    """(H_p, W_p, H_out, W_out, samples a chunk, the pool's pieces) of the kernel-row chunk
    loop (_row_z_chunks and its compiled jobs: the same chunks)."""
    n, c = x.shape[:2]
    hp, wp, ho, wo = _row_grid(x.shape, kh, kw, padding)
    kwc = kw * c
    per = _balanced(n, max(1, min(n, _ROW_CHUNK_BYTES // (hp * wp * kwc * x.dtype.itemsize))),
                    n * ho * wo * kh * kwc)
    return hp, wp, ho, wo, per, chunk_ranges(n, align=per, cost=n * ho * wo * kh * kwc)


def _row_grid(xshape, kh, kw, padding):
    """(H_p, W_p, H_out, W_out) of a stride-1 window on x padded."""
    (p0, p1), (q0, q1) = padding
    hp, wp = xshape[2] + p0 + p1, xshape[3] + q0 + q1
    return hp, wp, hp - kh + 1, wp - kw + 1


def _row_z_chunks(xp, x, kh, kw, padding, make, chunk, geo):
    """The kernel-row chunk loop (its chunking ``geo``: :func:`_row_chunking`): samples in
    chunks (whole chunks to the kernel pool's pieces,
    single-threaded BLAS); per piece ``make(m, H_out, W_p)`` (its own state), and per chunk of
    k samples from a, Z (see :func:`_row_conv`) filled and ``chunk(state, z, a, k, W_p)``
    called. Returns the pieces' states in order."""
    n, c = x.shape[:2]
    hp, wp, ho, wo, per, _ = geo
    dt = x.dtype
    # channels-last memory (a conv output's: free); Z is filled from it by one compiled pass
    # that reads the padding as zeros (16 → 16 at 28×28, 12 samples: 0.19 → 0.10 ms against
    # NumPy's padded copy and strided copy of it)
    xh = xp.ascontiguousarray(x.transpose(0, 2, 3, 1))
    kwc = kw * c

    def run(lo, hi):
        z = xp.empty((min(per, hi - lo), hp * wp, kwc), dtype=dt)
        state = make(z.shape[0], ho, wp)
        for a in range(lo, hi, per):
            k = min(hi, a + per) - a
            chunk(state, _jit.row_z_into(xh, a, z[:k], kw, padding, wp), a, k, wp)
        return state

    return parallel_chunks(n, run, align=per, cost=n * ho * wo * kh * kwc, serial_blas=True)


def _row_conv_weight_grad(xp, rows, x, wshape, padding, bias):
    """(W̄, b̄ or None) of a stride-1 convolution in kernel-row form (see :func:`_row_conv`):
    W̄_i = Σ_samples Z[i·W_p : i·W_p + H_out·W_p]ᵀ ȳ_grid, with ȳ placed on the padded grid
    (zeros in the W_p − W_out columns that no window has), kh GEMMs a sample accumulated by
    BLAS; b̄ = Σ_rows ȳ summed while ȳ is placed. Pieces sum their own samples; the pieces'
    sums are then added in order (the same bits at every run with the same T)."""
    o, c, kh, kw = wshape
    n = x.shape[0]
    step = _jit.row_wgrad_kernel(x.dtype)
    _, _, ho, wo = _row_grid(x.shape, kh, kw, padding)
    g4 = rows.reshape(n, ho, wo, o)

    def make(m, ho_, wp):
        return (xp.zeros((ho_ * wp, o), dtype=x.dtype), xp.zeros((kh, kw * c, o), dtype=x.dtype),
                xp.zeros(o, dtype=x.dtype))

    def chunk(state, z, a, k, wp):
        grid, gw, gb = state
        step(z, k, g4, a, grid, gw, gb, bias, wp, _small_rows(ho * wp, kw * c * o))

    geo = _row_chunking(x, kh, kw, padding)
    pieces = len(geo[-1])
    if pieces > 1:
        gws = xp.zeros((pieces, kh, kw * c, o), dtype=x.dtype)  # a part per piece
        gbs = xp.zeros((pieces, o), dtype=x.dtype)
        if _row_job(xp, "row_wgrad", x, kh, kw, padding, o, bias, [rows, gws, gbs], geo):
            return _summed_weight_grad(xp, list(zip(gws, gbs, strict=True)), wshape, bias)
    parts = _row_z_chunks(xp, x, kh, kw, padding, make, chunk, geo)
    return _summed_weight_grad(xp, [p[1:] for p in parts], wshape, bias)


def _sample_chunks(xp, n, per, L, cost, buffers, columns, fn, accumulate):
    """The implicit GEMM's chunk loop: samples [0, n) in chunks of ``per``, whole chunks to the
    kernel pool's pieces (single-threaded GEMMs); ``buffers(count)`` makes a piece's buffers,
    ``columns(bufs, a, b)`` fills and returns the columns of samples [a, b), and the results
    of ``fn(rows, cols)`` come back in chunk order, or summed (``accumulate``: in chunk order
    within each piece, then over the pieces)."""

    def run(lo, hi):
        bufs = buffers(min(per, hi - lo))
        out, acc = [], None
        for a in range(lo, hi, per):
            b = min(hi, a + per)
            r = fn(slice(a * L, b * L), columns(bufs, a, b))
            if not accumulate:
                out.append(r)
            elif acc is None:
                acc = r
            else:
                xp.add(acc, r, out=acc)
        return [acc] if accumulate else out

    parts = parallel_chunks(n, run, align=per, cost=cost, serial_blas=True)
    out = [r for part in parts for r in part]
    if accumulate:
        for r in out[1:]:
            xp.add(out[0], r, out=out[0])
        return out[0]
    return out


def _out_hw(xshape, kernel, stride, padding, dilation):
    return tuple(out_size(xshape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
                 for a in (0, 1))


def _summed_weight_grad(xp, parts, wshape, bias):
    """(W̄ (O, C, kh, kw), b̄ or None) from the pool pieces' partial (W̄ rows (i, j, c) × O, b̄)
    sums, added in piece order (the same bits at every run with the same T)."""
    o, c, kh, kw = wshape
    gw, gb = parts[0]
    for w2, b2 in parts[1:]:
        gw += w2
        gb += b2
    gw = xp.ascontiguousarray(gw.reshape(kh, kw, c, o).transpose(3, 2, 0, 1))
    return gw, (gb if bias else None)


def _few_chunk(xp, x, kernel, out_hw, dtype):
    """Samples a chunk for the few-channel one-call chunk kernels (_few_channel_conv,
    _few_channel_wgrad), or None where they do not apply: a GPU, not few input channels, less
    than PARALLEL_MIN values of columns, the other operand's ``dtype`` not x's (None: not
    usable), not NumPy floats."""
    kh, kw = kernel
    n, c = x.shape[:2]
    ho, wo = out_hw
    L, K = ho * wo, kh * kw * c
    if _cuda.uses(xp) or c * kw >= _FEW_CHANNELS_RUN * wo or n * L * K < PARALLEL_MIN \
            or dtype != x.dtype or not _jit.usable(xp, x.dtype):
        return None
    return _balanced(n, max(1, min(n, _FEW_CHUNK_BYTES // (L * K * x.dtype.itemsize))),
                     n * L * K)


def _nhwc_chunks(xp, x, kernel, out_hw, wdtype):
    """(channels-last x, samples a chunk, K) for the implicit GEMM's one-call chunk kernel
    (_nhwc_wgrad), or None where it does not apply: a GPU, few input channels, x not in
    channels-last memory, not NumPy floats of one dtype."""
    kh, kw = kernel
    n, c = x.shape[:2]
    ho, wo = out_hw
    xh = x.transpose(0, 2, 3, 1)
    if _cuda.uses(xp) or c * kw < _FEW_CHANNELS_RUN * wo or not xh.flags.c_contiguous \
            or wdtype != x.dtype or not _jit.usable(xp, x.dtype):
        return None
    L, k = ho * wo, kh * kw * c
    return xh, _balanced(n, max(1, min(n, _CHUNK_BYTES // (L * k * x.dtype.itemsize))),
                         n * L * k), k


def _nhwc_wgrad(xp, rows, x, wshape, stride, padding, dilation, bias):
    """(W̄, b̄ or None) of an implicit-GEMM convolution, chunk by chunk, each chunk one compiled
    call (devices/cpu_jit.nhwc_wgrad_kernel: the column copy, then W̄ += colsᵀ ȳ_rows in
    blocks of rows and b̄ += Σ ȳ_rows); pieces over the pool at T > 1, their sums added in
    order. None where _nhwc_chunks does not apply."""
    o, c, kh, kw = wshape
    n = x.shape[0]
    out_hw = _out_hw(x.shape, (kh, kw), stride, padding, dilation)
    got = _nhwc_chunks(xp, x, (kh, kw), out_hw, rows.dtype)
    step = _jit.nhwc_wgrad_kernel(x.dtype) if got is not None else None
    if step is None or not rows.flags.c_contiguous:
        return None
    xh, per, k = got
    ho, wo = out_hw
    L = ho * wo
    blk = _small_rows(per * L, k * o)
    ones = xp.ones(per * L, dtype=x.dtype)
    (sh, sw), (dh, dw), ((p0, _), (q0, _)) = stride, dilation, padding

    def run(lo, hi):
        cols = xp.empty((min(per, hi - lo), ho, wo, kh, kw, c), dtype=x.dtype)
        gw, gb = xp.zeros((k, o), dtype=x.dtype), xp.zeros(o, dtype=x.dtype)
        for a in range(lo, hi, per):
            step(xh, a, cols[:min(hi, a + per) - a], rows, gw, gb, ones, bias, blk, sh, sw, dh,
                 dw, p0, q0)
        return gw, gb

    return _summed_weight_grad(xp, parallel_chunks(n, run, align=per, cost=n * L * k,
                                                   serial_blas=True), wshape, bias)


def _few_channel_conv(xp, x, wt, b, kernel, stride, padding, dilation, out_hw):
    """A few-channel convolution's forward (N·L, O) rows, chunk by chunk, each chunk one
    compiled call (devices/cpu_jit.few_conv_kernel: the few-channel copy, then per sample a
    GEMM into y's rows pre-filled with the bias) — the GIL released once a chunk instead of at
    each NumPy step, and no bias pass; chunks over the pool at T > 1. None where it does not
    apply (not few channels, too small for chunks, not NumPy floats of one dtype, no compiled
    kernel): _column_chunks' few-channel path or Unfold then runs."""
    kh, kw = kernel
    n, c = x.shape[:2]
    (ho, wo), o = out_hw, wt.shape[1]
    L, K = ho * wo, kh * kw * c
    per = _few_chunk(xp, x, kernel, out_hw, wt.dtype if b is None or b.dtype == wt.dtype
                     else None)
    step = _jit.few_conv_kernel(x.dtype) if per else None
    if step is None:
        return None
    wt = xp.ascontiguousarray(wt)
    has_bias = b is not None
    bias = xp.ascontiguousarray(b) if has_bias else wt[0]
    y = xp.empty((n * L, o), dtype=x.dtype)
    (sh, sw), (dh, dw), ((p0, _), (q0, _)) = stride, dilation, padding

    def run(lo, hi):
        cols = xp.empty((min(per, hi - lo), kh, kw, c, ho, wo), dtype=x.dtype)
        for a in range(lo, hi, per):
            step(x, a, cols[:min(hi, a + per) - a], wt, bias, has_bias, y, sh, sw, dh, dw, p0,
                 q0)

    parallel_chunks(n, run, align=per, cost=n * L * K, serial_blas=True)
    return y


def _few_channel_wgrad(xp, rows, x, wshape, stride, padding, dilation, bias):
    """(W̄, b̄ or None) of a few-channel convolution, chunk by chunk, each chunk one compiled
    call (devices/cpu_jit.few_wgrad_kernel: the few-channel copy, then per sample a GEMM
    accumulated into the piece's W̄, and one summing ȳ's rows into its b̄); pieces over the
    pool at T > 1, their sums added in order (the same bits at every run with the same T).
    None where _few_channel_conv would not apply."""
    o, c, kh, kw = wshape
    ho, wo = out_hw = _out_hw(x.shape, (kh, kw), stride, padding, dilation)
    L, K = ho * wo, kh * kw * c
    per = _few_chunk(xp, x, (kh, kw), out_hw, rows.dtype if rows.flags.c_contiguous else None)
    step = _jit.few_wgrad_kernel(x.dtype) if per else None
    if step is None:
        return None
    (sh, sw), (dh, dw), ((p0, _), (q0, _)) = stride, dilation, padding
    ones = xp.ones(L, dtype=x.dtype)

    def run(lo, hi):
        cols = xp.empty((min(per, hi - lo), kh, kw, c, ho, wo), dtype=x.dtype)
        gw, gb = xp.zeros((K, o), dtype=x.dtype), xp.zeros(o, dtype=x.dtype)
        for a in range(lo, hi, per):
            step(x, a, cols[:min(hi, a + per) - a], rows, gw, gb, ones, bias, sh, sw, dh, dw, p0,
                 q0)
        return gw, gb

    return _summed_weight_grad(xp, parallel_chunks(x.shape[0], run, align=per,
                                                   cost=x.shape[0] * L * K, serial_blas=True),
                               wshape, bias)


def _few_channel_chunks(xp, x, kernel, stride, padding, dilation, out_hw, fn, accumulate):
    """_column_chunks for few input channels at T > 1 kernel threads (None at T = 1; with the
    compiled kernels _few_channel_conv and _few_channel_wgrad run instead): chunks of samples
    copied in (B, kh, kw, C, H_out, W_out) memory, Unfold's few-channel order, and
    ``fn(rows, cols)`` given the (B, L, K) view. A GEMM per sample, as Unfold's path does, so
    the values are its values (sums: see ``accumulate`` above)."""
    kh, kw = kernel
    n, c = x.shape[:2]
    (ho, wo), K = out_hw, kh * kw * c
    L = ho * wo
    if kernel_threads() <= 1 or n * L * K < PARALLEL_MIN:
        return None
    per = _balanced(n, max(1, min(n, _FEW_CHUNK_BYTES // (L * K * x.dtype.itemsize))),
                    n * L * K)
    if per >= n:
        return None
    if _jit.usable(xp, x.dtype):
        v = None  # the compiled copy reads x itself, padding included (no padded copy of x)
    else:
        v = _few_channel_windows(xp, x, kernel, stride, padding, dilation, out_hw)

    def columns(cols, a, b):
        cc = cols[:b - a]
        if v is None:
            _jit.unfold_few_into(x, a, cc, stride, padding, dilation)
        else:
            cc[...] = v[a:b]
        return cc.reshape(b - a, K, L).transpose(0, 2, 1)

    return _sample_chunks(
        xp, n, per, L, n * L * K,
        lambda count: xp.empty((count, kh, kw, c, ho, wo), dtype=x.dtype), columns, fn,
        accumulate)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1):
    """The one-group convolution primitive: x (N, C, H, W), W (O, C, kh, kw), b (O,) or None ->
    (N, O, H_out, W_out). ``functional.conv2d`` is the checked, general entry point (groups,
    bias, dtype casts) and the public name; this wrapper normalises the window arguments only."""
    xs, ws = shape_of(x), shape_of(w)
    if len(ws) != 4 or len(xs) != 4 or xs[1] != ws[1]:
        raise ValueError(f"conv2d: expected x (N, C, H, W) and W (O, C, kh, kw), got {xs}, {ws}")
    _, s, p, d, _ = window_geometry("conv2d", xs, ws[2:], stride, padding, dilation)
    bias = () if b is None else (b,)  # a missing bias is no operand (as in affine)
    return Conv2d.apply(x, w, *bias, stride=s, padding=p, dilation=d)


@primitive
class MaxPool2d(Function):
    """Max over every (kh × kw) window of x (padding −∞); tied maxima share the cotangent.

    Forward:  y[n, c, h, w] = max_{i,j} x_pad[n, c, h·s₁ + i·d₁, w·s₂ + j·d₂]
    VJP:      x̄_ij += (m_ij / k) ⊙ ȳ for every offset (i, j),  m_ij = [x_ij = y],  k = Σ_ij m_ij
    JVP:      ẏ = Σ_ij (m_ij / k) ⊙ ẋ_ij   (x_ij: the entry at offset (i, j) of every window)

    A primitive by DESIGN §2 rule (3): the composite (pad, unfold, max, and fold back) copies
    every window; here the forward is kh·kw elementwise maxima of strided views of x (in x's
    own memory order, so channels-last stays channels-last) and the VJP kh·kw compares and
    strided adds. The rules on Tensors (create_graph) are written with unfold/fold and constant
    weights m/k, so higher derivatives come from those. With numba, windows that tile
    channels-last x exactly take compiled kernels both ways (devices/cpu_jit.py, the same bits).
    """

    @staticmethod
    def forward(xp, x, *, kernel, stride, padding, dilation):
        cl, a = _spatial(x)
        out = _pooled_size(x.shape, kernel, stride, padding, dilation)
        if cl and _jit_tiles(xp, a, kernel, stride, padding, dilation, out):
            return _jit.max_pool_tiles(a, kernel).transpose(0, 3, 1, 2)
        shape = (a.shape[0],) + ((out + a.shape[3:]) if cl else (a.shape[1],) + out)
        y = xp.empty(shape, dtype=x.dtype)  # in x's memory order (channels-last stays so)

        def run(lo, hi):  # samples [lo, hi)
            buf = _padded(xp, a[lo:hi], cl, padding, -xp.inf)
            yy = y[lo:hi]
            for t, idx in enumerate(_offsets(cl, kernel, stride, dilation, out)):
                if t == 0:
                    yy[...] = buf[idx]
                else:
                    xp.maximum(yy, buf[idx], out=yy)

        _over_samples(xp, x, run, overlap=False)  # (kh·kw streaming maxima: no cache chunks)
        return y.transpose(0, 3, 1, 2) if cl else y

    @staticmethod
    def _masks(xp, x, y, geo):
        """(masks m_ij, k = Σ m_ij) in the spatial layout of x (see _spatial)."""
        cl, a = _spatial(x)
        buf = _padded(xp, a, cl, geo["padding"], -xp.inf)
        yl = y.transpose(0, 2, 3, 1) if cl else y
        masks = [buf[idx] == yl for idx in _offsets(cl, geo["kernel"], geo["stride"],
                                                    geo["dilation"], yl.shape[1:3] if cl
                                                    else yl.shape[2:])]
        if len(masks) < 256:  # count the ties in bytes (a float count would cast every mask)
            k8 = masks[0].astype(xp.uint8)
            for m in masks[1:]:
                k8 += m.view(xp.uint8)
            k = k8.astype(y.dtype)
        else:
            k = sum(m.astype(y.dtype) for m in masks)
        return cl, masks, k

    @staticmethod
    def _weights(x, y, geo):
        """The constant weights m_ij / k as an (N, L, kh·kw, C) array (the unfold layout)."""
        xd, yd = _data(x), _data(y)
        xp = xp_of((xd,))
        cl, masks, k = MaxPool2d._masks(xp, xd, yd, geo)
        n, c = xd.shape[0], xd.shape[1]
        L = yd.shape[2] * yd.shape[3]
        rows = [(m if cl else m.transpose(0, 2, 3, 1)).reshape(n, L, c) for m in masks]
        kk = (k if cl else k.transpose(0, 2, 3, 1)).reshape(n, L, 1, c)
        return xp.stack(rows, axis=2) / kk

    @staticmethod
    def vjp(g, y, x, *, needs, kernel, stride, padding, dilation):
        geo = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
        if not any(isinstance(v, Tensor) for v in (g, y, x)):
            return (_maxpool_grad(xp_of((g,)), g, y, x, geo),)
        n, c, h, w = shape_of(x)
        ho, wo = shape_of(g)[2:]
        wts = MaxPool2d._weights(x, y, geo)
        rows = reshape(transpose(g, (0, 2, 3, 1)), (n, ho * wo, 1, c))
        cols = reshape(wts * rows, (n, ho * wo, kernel[0] * kernel[1] * c))
        return (Fold.apply(cols, size=(h, w), **geo),)

    @staticmethod
    def jvp(dxs, y, x, *, kernel, stride, padding, dilation):
        geo = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation)
        n, c = shape_of(x)[:2]
        ho, wo = shape_of(y)[2:]
        wts = MaxPool2d._weights(x, y, geo)
        cols = reshape(Unfold.apply(dxs[0], **geo), (n, ho * wo, kernel[0] * kernel[1], c))
        dy = rsum(cols * wts, axis=2)  # (N, L, C)
        return transpose(reshape(dy, (n, ho, wo, c)), (0, 3, 1, 2))


def _data(v):
    return v.data if isinstance(v, Tensor) else v


def _jit_tiles(xp, xl, kernel, stride, padding, dilation, out):
    """The compiled pooling applies: channels-last C-contiguous xl (N, H, W, C) whose windows
    tile it exactly (stride = kernel, no padding, no dilation)."""
    return (tuple(stride) == tuple(kernel) and tuple(dilation) == (1, 1)
            and not any(p for pp in padding for p in pp)
            and xl.shape[1:3] == (out[0] * kernel[0], out[1] * kernel[1])
            and _jit.applies(xp, xl))


def _spatial(x):
    """(channels_last, x as an array whose spatial axes are contiguous-ish): the (N, H, W, C)
    view when x's memory is channels-last (a conv output), else x itself (N, C, H, W)."""
    st = x.strides
    if x.shape[1] > 1 and st[1] < st[3]:
        return True, x.transpose(0, 2, 3, 1)
    return False, x


def _sp_index(cl, hs, ws):
    return (slice(None), hs, ws, slice(None)) if cl else (slice(None), slice(None), hs, ws)


def _padded(xp, a, cl, padding, value):
    (p0, p1), (q0, q1) = padding
    if not (p0 or p1 or q0 or q1):
        return a
    shape = list(a.shape)
    ax = 1 if cl else 2
    h, w = shape[ax], shape[ax + 1]
    shape[ax] += p0 + p1
    shape[ax + 1] += q0 + q1
    buf = xp.full(shape, value, dtype=a.dtype)
    buf[_sp_index(cl, slice(p0, p0 + h), slice(q0, q0 + w))] = a
    return buf


def _pooled_size(xshape, kernel, stride, padding, dilation):
    return tuple(out_size(xshape[2 + a], kernel[a], stride[a], padding[a], dilation[a])
                 for a in (0, 1))


def _offsets(cl, kernel, stride, dilation, out):
    """Index tuples of the kh·kw strided views: offset (i, j) of every window."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    for i in range(kh):
        hs = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
        for j in range(kw):
            yield _sp_index(cl, hs, slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def _maxpool_grad(xp, g, y, x, geo):
    """x̄ on arrays: kh·kw compares, and ȳ/k added into the strided views where x_ij = y —
    a few samples at a time, so the masks and sums stay in cache."""
    cl, _ = _spatial(x)
    gl = g.transpose(0, 2, 3, 1) if cl else g
    (p0, p1), (q0, q1) = geo["padding"]
    shape = list(gl.shape)
    n, c, h, w = x.shape
    if cl:
        shape[1:3] = h + p0 + p1, w + q0 + q1
    else:
        shape[2:4] = h + p0 + p1, w + q0 + q1
    (kh, kw), (sh, sw), (dh, dw) = geo["kernel"], geo["stride"], geo["dilation"]
    (ho, wo) = gl.shape[1:3] if cl else gl.shape[2:]
    # windows that tile the image exactly: every entry is written once, by assignment
    tiles = (sh, sw) == (kh, kw) and (dh, dw) == (1, 1) and (shape[1:3] if cl else shape[2:]) \
        == [ho * kh, wo * kw]
    if tiles and cl and not (p0 or p1 or q0 or q1) and kh * kw < 256:
        xl, yl = x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)
        if not gl.flags.c_contiguous and _jit.applies(xp, xl, yl):
            # ȳ in NCHW memory (a flatten's cotangent, as LeNet's last pool gets): ȳ is 1/(kh·kw)
            # of x, and copying it costs far less than the strided passes below (64×32×8×8:
            # 0.34 → 0.06 ms)
            gl = xp.ascontiguousarray(gl)
        if _jit.applies(xp, xl, yl, gl):  # compiled: one pass over x and x̄
            return _jit.max_pool_tiles_grad(xl, yl, gl, (kh, kw)).transpose(0, 3, 1, 2)
        if c >= _TILE_MIN_CHANNELS:
            return _maxpool_grad_tiles(xp, gl, y, x, (kh, kw), (ho, wo))
        return _maxpool_grad_rows(xp, gl, y, x, (kh, kw), (ho, wo))
    buf = xp.empty(shape, dtype=g.dtype) if tiles else xp.zeros(shape, dtype=g.dtype)

    def run(lo, hi):
        _, masks, k = MaxPool2d._masks(xp, x[lo:hi], y[lo:hi], geo)
        gs = gl[lo:hi] / k
        tmp = xp.empty_like(gs)
        bb = buf[lo:hi]
        for m, idx in zip(masks, _offsets(cl, geo["kernel"], geo["stride"], geo["dilation"],
                                          (ho, wo)), strict=True):
            xp.multiply(gs, m, out=tmp)  # this offset's share m·ȳ/k (ȳ = ±inf: NaN at the
            if tiles:  # non-maximal entries of its window; a masked copy is ~10x slower)
                bb[idx] = tmp
            else:
                bb[idx] += tmp

    _over_samples(xp, x, run, _overlap(geo["kernel"], geo["stride"]))
    buf = buf[_sp_index(cl, slice(p0, p0 + h), slice(q0, q0 + w))]
    return buf.transpose(0, 3, 1, 2) if cl else buf


_TILE_MIN_CHANNELS = 32  # the broadcast passes' inner loops run over C: short ones lose


def _maxpool_grad_tiles(xp, gl, y, x, kernel, out):
    """x̄ where the windows tile channels-last x exactly (stride = kernel, no padding): x seen
    as (N, H_out, kh, W_out, kw, C), so one broadcast compare with y gives every mask and one
    broadcast product m·ȳ/k every entry — the values of the per-offset loop in a few large
    passes instead of ~4·kh·kw small ones (inception's 2×2 pool on 64×40×28×28: 5.9 → 4.3 ms;
    with C = 16 the broadcast inner loops are too short and it loses, 0.9 → 1.3 ms)."""
    (kh, kw), (ho, wo) = kernel, out
    n, c, h, w = x.shape
    x6 = x.transpose(0, 2, 3, 1).reshape(n, ho, kh, wo, kw, c)
    y6 = y.transpose(0, 2, 3, 1)[:, :, None, :, None, :]
    offs = [(slice(None), slice(None), i, slice(None), j) for i in range(kh) for j in range(kw)]
    spread = (slice(None), slice(None), None, slice(None), None, slice(None))
    g6 = xp.empty(x6.shape, dtype=gl.dtype)

    def run(lo, hi):
        m = x6[lo:hi] == y6[lo:hi]
        k = m[offs[0]].astype(xp.uint8)  # tie counts in bytes
        for o in offs[1:]:
            k += m[o].view(xp.uint8)
        gs = gl[lo:hi] / k
        xp.multiply(gs[spread], m, out=g6[lo:hi])  # (ȳ = ±inf: NaN off the maxima, as above)

    _over_samples(xp, x, run, overlap=False)
    return g6.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _maxpool_grad_rows(xp, gl, y, x, kernel, out):
    """x̄ where the windows tile channels-last x exactly and C is small: the per-offset views
    would run NumPy inner loops of C values (16 in LeNet); instead y and ȳ/k are repeated kw
    times along W, so each window row i of x, as (N, H_out, W, C), is compared and multiplied
    in whole (W·C-value) rows. The values of the per-offset loop (the same compare, tie count
    and product per entry)."""
    (kh, kw), (ho, wo) = kernel, out
    n, c, h, w = x.shape
    x5 = x.transpose(0, 2, 3, 1).reshape(n, ho, kh, w, c)
    yl = y.transpose(0, 2, 3, 1)
    g5 = xp.empty((n, ho, kh, w, c), dtype=gl.dtype)

    def run(lo, hi):
        y_up = xp.repeat(yl[lo:hi], kw, axis=2)  # (m, H_out, W, C)
        masks = [x5[lo:hi, :, i] == y_up for i in range(kh)]
        cnt = masks[0].astype(xp.uint8)  # ties per column of each window, in bytes
        for m in masks[1:]:
            cnt += m.view(xp.uint8)
        c5 = cnt.reshape(hi - lo, ho, wo, kw, c)
        k = c5[:, :, :, 0].copy()
        for j in range(1, kw):
            k += c5[:, :, :, j]
        gs_up = xp.repeat(gl[lo:hi] / k, kw, axis=2)  # ȳ/k per window, repeated along W
        for i, m in enumerate(masks):  # (ȳ = ±inf: NaN off the maxima, as in the loop)
            xp.multiply(m, gs_up, out=g5[lo:hi, :, i])

    _over_samples(xp, x, run, overlap=False)
    return g5.reshape(n, h, w, c).transpose(0, 3, 1, 2)


_POOL_CHUNK_BYTES = 1 << 18  # input samples per chunk of the pooling loops (~256 KB)


def _overlap(kernel, stride):
    return stride[0] < kernel[0] or stride[1] < kernel[1]


def _over_samples(xp, x, run, overlap=True):
    """``run(lo, hi)`` over x's samples in chunks of whole samples, the chunks split over the
    kernel pool with T > 1 threads; each sample's windows are its own, so the values do not
    depend on the split. Overlapping windows (stride < kernel: every input is read kh·kw times)
    go in chunks of ~256 KB of input, so those reads hit the cache; windows that do not overlap
    read each input once, and there the pool's pieces are the only split (the loop's ufunc calls
    cost more than the cache saves: LeNet's 2×2 pool VJP 1.05 ms whole, 1.37 ms in 256 KB
    chunks).
    GPUs: one call over everything."""
    n = x.shape[0]
    if _cuda.uses(xp) or n <= 1:
        return run(0, n)
    if not overlap:
        parallel_chunks(n, run, cost=x.size, piece=EW_PIECE)
        return None
    per = max(1, min(n, _POOL_CHUNK_BYTES // max(1, x[0].nbytes)))

    def ranges(lo, hi):
        for a in range(lo, hi, per):
            run(a, min(hi, a + per))

    parallel_chunks(n, ranges, align=per, cost=x.size, piece=EW_PIECE)
    return None


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    """The max-pooling primitive on x (N, C, H, W); ``functional.max_pool2d`` is the checked,
    public entry point (this wrapper normalises the window arguments only)."""
    if stride is None:
        stride = kernel_size
    k, s, p, d, _ = window_geometry("max_pool2d", shape_of(x), kernel_size, stride, padding,
                                    dilation)
    return MaxPool2d.apply(x, kernel=k, stride=s, padding=p, dilation=d)


# ---------------------------------------------------------------- argument normalisation


def pair(v, name, who, minimum):
    """An int or a pair of ints -> a pair (each ≥ ``minimum``), or a ValueError naming ``who``.
    Public: the conv layers and functions normalise their arguments with it too."""
    if isinstance(v, bool):
        raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, int):
        v = (v, v)
    try:
        v = tuple(v)
    except TypeError:
        raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {v!r}") from None
    if len(v) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in v):
        raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
    if min(v) < minimum:
        raise ValueError(f"{who}: {name} must be ≥ {minimum}, got {v!r}")
    return v


_pair = pair  # the old private name (nn/conv.py imports it)

_PAD_MSG = "{who}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}"


def norm_padding(padding, who, kernel=None, dilation=(1, 1)):
    """int | (ph, pw) | ((top, bottom), (left, right)) | 'same' | 'valid' -> ((p0, p1), (q0, q1)).

    'same' (stride 1) pads d(k − 1) in total per axis, the odd unit after: H_out = H.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding == "same":
            out = []
            for k, d in zip(kernel, dilation, strict=True):
                tot = d * (k - 1)
                out.append((tot // 2, tot - tot // 2))
            return tuple(out)
        raise ValueError(_PAD_MSG.format(who=who, padding=padding))
    if isinstance(padding, int) and not isinstance(padding, bool):
        if padding < 0:
            raise ValueError(f"{who}: padding must be ≥ 0, got {padding}")
        return ((padding, padding), (padding, padding))
    try:
        pads = tuple(padding)
    except TypeError:
        raise ValueError(_PAD_MSG.format(who=who, padding=padding)) from None
    if len(pads) != 2:
        raise ValueError(f"{who}: padding needs one entry per spatial axis (2), got {padding!r}")
    out = []
    for p in pads:
        if isinstance(p, int) and not isinstance(p, bool):
            p = (p, p)
        p = tuple(p)
        if len(p) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in p) \
                or min(p) < 0:
            raise ValueError(f"{who}: padding entries must be non-negative ints or (before, after) "
                             f"pairs, got {padding!r}")
        out.append(p)
    return tuple(out)


def window_geometry(who, x_shape, kernel, stride=1, padding=0, dilation=1):
    """Normalise window arguments and check that x (N, C, H, W) is large enough.

    Returns (kernel, stride, padding, dilation, (H_out, W_out)), each a pair (padding a pair of
    pairs). Raises ValueError naming ``who``, the output-size formula and the shapes.
    """
    kernel = pair(kernel, "kernel size", who, 1)
    stride = pair(stride, "stride", who, 1)
    dilation = pair(dilation, "dilation", who, 1)
    padding = norm_padding(padding, who, kernel, dilation)
    if len(x_shape) != 4:
        raise ValueError(f"{who}: expected input of shape (N, C, H, W), got {tuple(x_shape)}")
    outs = []
    for ax, n, k, s, p, d in zip("HW", x_shape[2:], kernel, stride, padding, dilation,
                                 strict=True):
        o = out_size(n, k, s, p, d)
        if o < 1:
            raise ValueError(
                f"{who}: input {tuple(x_shape)} is too small for kernel {kernel} with stride "
                f"{stride}, padding {padding}, dilation {dilation}: "
                f"{ax}_out = ⌊({ax} + 2p − d(k − 1) − 1)/s⌋ + 1 = "
                f"⌊({n} + {p[0] + p[1]} − {d}·{k - 1} − 1)/{s}⌋ + 1 = {o} < 1"
            )
        outs.append(o)
    return kernel, stride, padding, dilation, tuple(outs)
