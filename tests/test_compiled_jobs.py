"""Compiled jobs on the kernel pool (backend.parallel_compiled, devices/_spin.py): pieces that
are numba C functions, which a pool thread runs without taking the GIL. Every piece runs once,
call after call; a thread that saw an earlier job's ticket takes nothing of the next; a pool
thread that never runs leaves the caller to do every piece; and each kernel's job gives the
bits of the Python pieces it replaces (the same kernel on the same ranges)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import same_bits

from tensorcalc import backend
from tensorcalc.devices import cpu_jit as _jit
from tensorcalc.devices import cpu_jobs as _jobs

numba = pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    """The compiled kernels on (whatever TENSORCALC_JIT says: these tests are about them), a
    pool of its own, and T following the kernel-thread override whichever library the
    process imported first."""
    old = _jit.set_enabled(True)
    monkeypatch.setattr(backend, "BLAS_SPIN_TAMED", True)
    pool = backend._KernelPool(2)  # spinning (a pool made while the kernels were off blocks)
    assert pool.spin is not None
    monkeypatch.setitem(backend._KERNEL_THREADS, "pool", pool)
    monkeypatch.setitem(backend._KERNEL_THREADS, "size", 2)
    monkeypatch.setitem(backend._KERNEL_THREADS, "pid", __import__("os").getpid())
    yield
    pool.close()
    _jit.set_enabled(old)


def _as_i64p():
    """cpu_jobs' address cast (an int64 as an int64 pointer, for numba.carray), compiled."""
    _jobs._compile(numba)
    return _jobs._i64p


def _counting_piece():
    """A compiled piece that adds 1 to desc[1 + i] (desc[0]: how many pieces)."""
    from numba import carray, types

    as_i64p = _as_i64p()

    @numba.cfunc(types.void(types.int64, types.int64))
    def piece(desc, i):
        d = carray(as_i64p(desc), (1 + i + 1,))
        s = 0
        for j in range(2000):  # a little work, so that both threads take pieces
            s += j
        d[1 + i] += 1 + s - s

    return piece


@pytest.fixture(scope="module")
def counting():
    return _counting_piece()


def test_every_piece_runs_once_call_after_call(threads, counting):
    pieces, calls = 37, 300
    desc = np.zeros(1 + pieces, dtype=np.int64)
    desc[0] = pieces

    def run():
        for _ in range(calls):
            backend.parallel_compiled(pieces, counting.address, desc)

    before = backend.parallel_calls()
    threads(2, run)
    assert (desc[1:] == calls).all()
    assert backend.parallel_calls() - before == calls  # each call went over the pool
    threads(1, lambda: backend.parallel_compiled(pieces, counting.address, desc))
    assert (desc[1:] == calls + 1).all()  # T = 1: here, every piece once


def test_the_pool_thread_takes_pieces_of_compiled_jobs(threads, counting):
    """With a piece that waits until another piece has started, a lone caller would hang:
    the pool thread must take one (it never needs the GIL to)."""
    from numba import carray, types

    from tensorcalc.devices._spin import _load_at, _store_at

    as_i64p = _as_i64p()

    @numba.cfunc(types.void(types.int64, types.int64))
    def rendezvous(desc, i):
        d = carray(as_i64p(desc), (3,))
        _store_at(d, 1 + i, 1)
        k = 0
        while _load_at(d, 2 - i) == 0 and k < 500_000_000:  # the other piece's flag
            k += 1
        if k >= 500_000_000:
            _store_at(d, 0, 1)  # (timed out: the other piece never started)

    for _ in range(20):
        desc = np.zeros(3, dtype=np.int64)
        threads(2, lambda: backend.parallel_compiled(2, rendezvous.address, desc))  # noqa: B023
        assert desc[1] == 1 and desc[2] == 1 and desc[0] == 0


def test_a_stale_ticket_takes_no_piece_of_the_next_job(counting):
    spin = _jit.spin_waiter()
    slot = np.zeros(8, dtype=np.int64)
    d1 = np.array([3, 0, 0, 0], dtype=np.int64)
    d2 = np.array([3, 0, 0, 0], dtype=np.int64)
    t1 = spin.publish(slot, counting.address, d1.ctypes.data, 3)
    t2 = spin.publish(slot, counting.address, d2.ctypes.data, 3)
    assert t2 != t1 and t1 % 2 == 0 and t2 % 2 == 0  # even tickets (odd: being written)
    assert spin.run_pieces(slot, t1) == 0  # the thread that saw t1 runs nothing of t2's job
    assert (d1[1:] == 0).all() and (d2[1:] == 0).all()
    assert spin.run_pieces_then_wait(slot, t2, 0) == 3
    assert (d2[1:] == 1).all() and (d1[1:] == 0).all()
    assert spin.run_pieces(slot, t2) == 0  # nothing left
    # the two guards, each alone (a thread may be delayed between any two of its reads):
    # fields read while a new job is being written (odd ticket, the old job's counter) ...
    slot[:6] = [t2 + 1, counting.address, d1.ctypes.data, 3, t2 << 32, 0]
    assert spin.run_pieces(slot, t2) == 0 and (d1[1:] == 0).all()
    # ... and a counter that already belongs to the next job
    slot[:6] = [t2, counting.address, d1.ctypes.data, 3, (t2 + 2) << 32, 0]
    assert spin.run_pieces(slot, t2) == 0 and (d1[1:] == 0).all()


def test_a_pool_thread_that_never_runs_leaves_every_piece_to_the_caller(threads, monkeypatch,
                                                                        counting):
    gate = threading.Event()

    class Stuck(backend._KernelPool):
        def _loop(self):
            gate.wait()
            super()._loop()

    pool = Stuck(1)
    monkeypatch.setitem(backend._KERNEL_THREADS, "pool", pool)
    monkeypatch.setitem(backend._KERNEL_THREADS, "size", 8)
    monkeypatch.setitem(backend._KERNEL_THREADS, "pid", __import__("os").getpid())
    desc = np.zeros(9, dtype=np.int64)
    desc[0] = 8
    threads(2, lambda: backend.parallel_compiled(8, counting.address, desc))
    assert (desc[1:] == 1).all()
    gate.set()  # (the thread now wakes to a finished job and takes nothing)
    threads(2, lambda: backend.parallel_compiled(8, counting.address, desc))
    assert (desc[1:] == 2).all()
    pool.close()


def test_alongside_runs_here_and_its_error_waits_for_the_pieces(threads, counting):
    desc = np.zeros(5, dtype=np.int64)
    desc[0] = 4
    me = threading.current_thread()
    out = threads(2, lambda: backend.parallel_compiled(
        4, counting.address, desc, alongside=lambda: threading.current_thread() is me))
    assert out is True and (desc[1:] == 1).all()

    def bad():
        raise ValueError("alongside failed")

    with pytest.raises(ValueError, match="alongside failed"):
        threads(2, lambda: backend.parallel_compiled(4, counting.address, desc, alongside=bad))
    assert (desc[1:] == 2).all()  # the pieces still ran, all of them, before the error


# ------------------------------------------------------- each kernel's job = its Python pieces
def _jobs_off(monkeypatch, *names):
    for n in names:
        assert _jobs.job_piece(n)  # (compiled here: the job exists)
        monkeypatch.setitem(_jobs._STATE["fns"], n, 0)


def _with_and_without(threads, monkeypatch, names, fn, t=2):
    """fn() at T = t as compiled jobs, then with those jobs off (the Python pieces)."""
    used = backend.parallel_calls()
    a = threads(t, fn)
    assert backend.parallel_calls() > used
    with monkeypatch.context() as m:
        _jobs_off(m, *names)
        b = threads(t, fn)
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_layer_forward_job_gives_the_python_pieces_bits(threads, monkeypatch, dtype):
    from tensorcalc.devices.cpu_gemm import gemm_bias

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1031, 128)).astype(dtype)
    w = rng.standard_normal((96, 128)).astype(dtype)
    b = rng.standard_normal(96).astype(dtype)
    for t in (2, 3):
        a, c = _with_and_without(threads, monkeypatch, ["gemm_bias"],
                                 lambda: gemm_bias(np, x, w, b), t)
        same_bits(a, c)
        np.testing.assert_allclose(a, x @ w.T + b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_layer_gradient_job_gives_numpys_products(threads, monkeypatch, dtype, bias):
    from tensorcalc.devices.cpu_gemm import dense_grads_side_by_side

    rng = np.random.default_rng(1)
    g = rng.standard_normal((2048, 96)).astype(dtype)
    x = rng.standard_normal((2048, 80)).astype(dtype)
    w = rng.standard_normal((96, 80)).astype(dtype)
    bsum = (lambda: g.sum(axis=0)) if bias else None
    (gx, gw, gb), (px, pw, pb) = _with_and_without(
        threads, monkeypatch, ["dense_xgrad"], lambda: dense_grads_side_by_side(g, x, w, bsum))
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(gx, px, **tol)
    same_bits(gw, pw)  # W̄ is NumPy's product in both
    np.testing.assert_allclose(gx, g @ w, **tol)
    if bias:
        np.testing.assert_allclose(gb, pb, **tol)
    else:
        assert gb is None and pb is None


@pytest.mark.parametrize("op", ["add", "subtract", "multiply"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_op_job_gives_numpys_bits(threads, monkeypatch, op, dtype):
    from tensorcalc.ops._util import parallel_binary

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 1 << 17) ).astype(dtype)
    y = rng.standard_normal((3, 1 << 17)).astype(dtype)
    x[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    a, b = _with_and_without(threads, monkeypatch, ["binary"], lambda: parallel_binary(op, x, y))
    same_bits(a, b)
    same_bits(a, getattr(np, op)(x, y))


def test_row_kernel_jobs_give_the_python_pieces_bits(threads, monkeypatch):
    """GELU (y and GELU′), softmax with and without a mask and its rule, layer norm forward
    (keeping x̂ or not) and backward: compiled jobs against the same kernels as Python
    pieces, at 2 and 3 threads, with ragged ends."""
    from tensorcalc.ops import reduce as R

    rng = np.random.default_rng(3)
    rows, n = (_jit._ROW_PAR_MIN * 3) // 64 + 7, 64
    x = rng.standard_normal((rows, n)).astype(np.float32)
    g = rng.standard_normal((rows, n)).astype(np.float32)
    mask = rng.random((7, n)) > 0.3
    w64 = rng.standard_normal(n)
    b64 = rng.standard_normal(n)

    def run():
        out = list(_jit.gelu32(x, 1)) + [_jit.gelu32(x, 0)]
        out += [_jit.softmax32(x, None), _jit.softmax32(x, mask)]
        out += [_jit.softmax_pull(g, out[-2]), _jit.softmax_pull(g.astype(np.float64),
                                                                out[-2].astype(np.float64))]
        for dt in (np.float32, np.float64):
            xd, gd, w, b = x.astype(dt), g.astype(dt), w64.astype(dt), b64.astype(dt)
            y = _jit.layer_norm_forward(xd, w, b, 1e-5, True)
            out += [y, _jit.layer_norm_forward(xd, w, b, 1e-5, False)]
            xh, inv = R._ln_saved(y, rows)
            for needs in ((True, True, True), (True, False, False), (False, True, True)):
                out += [v for v in _jit.layer_norm_backward(gd, w, xh, inv.reshape(-1), needs)
                        if v is not None]
        return out

    names = ["gelu", "softmax", "softmax_pull", "ln_forward", "ln_backward"]
    for t in (2, 3):
        a, b = _with_and_without(threads, monkeypatch, names, run, t)
        assert len(a) == len(b) == 23
        for u, v in zip(a, b, strict=True):
            same_bits(u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_matmul_job_handles_attentions_layouts(threads, monkeypatch, dtype):
    """The attention products (heads as permuted views of a projection, keys transposed) and
    their gradients, and plain 3-D batches: the compiled job against NumPy's matmul."""
    from tensorcalc.ops.matmul import Matmul, _batched

    rng = np.random.default_rng(4)
    B, L, H, d = 40, 64, 4, 32
    proj = rng.standard_normal((B, L, 3, H, d)).astype(dtype)
    q, k, v = (proj[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    a = rng.standard_normal((B, H, L, L)).astype(dtype)
    g = rng.standard_normal((B, H, L, d)).astype(dtype)
    x3 = rng.standard_normal((B, 70, 60)).astype(dtype)
    y3 = rng.standard_normal((B, 60, 50)).astype(dtype)

    def run():
        s = _batched(np, q, k.swapaxes(-1, -2))
        c = _batched(np, a, v, like=v)
        ga, gv = Matmul.vjp(g, c, a, v, needs=(True, True))
        return [s, c, ga, gv, _batched(np, x3, y3), _batched(np, x3, y3.swapaxes(-1, -2)
                                                              .copy().swapaxes(-1, -2))]

    got, ref = _with_and_without(threads, monkeypatch, ["bmm"], run)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    for u, r in zip(got, ref, strict=True):
        assert u.shape == r.shape and u.strides == r.strides  # the same memory order
        np.testing.assert_allclose(u, r, **tol)
    np.testing.assert_allclose(got[0], q @ k.swapaxes(-1, -2), **tol)
    np.testing.assert_allclose(got[1], a @ v, **tol)
    assert got[1].transpose(0, 2, 1, 3).flags.c_contiguous  # in the heads' order (Matmul)


def test_row_kernels_split_as_jobs_from_their_own_smaller_threshold(threads):
    """Without the GIL hand-off a split pays from smaller calls: the row kernels' compiled jobs
    start at _JOB_MIN values, below the Python pieces' threshold; smaller calls stay here."""
    rng = np.random.default_rng(5)
    assert _jobs.JOB_MIN < _jit._ROW_PAR_MIN
    w = np.ones(64, np.float32)
    for rows, split in ((_jobs.JOB_MIN // 64 // 2, False), (_jobs.JOB_MIN // 64 * 2, True)):
        x = rng.standard_normal((rows, 64)).astype(np.float32)
        before = backend.parallel_calls()
        threads(2, lambda: _jit.layer_norm_forward(x, w, w, 1e-5, False))  # noqa: B023
        assert (backend.parallel_calls() > before) == split


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_jobs_give_the_python_pieces_bits(threads, monkeypatch, dtype):
    """Training-mode batch norm on channels-last rows — the two sums, the affine map (with a
    residual and ReLU, and without), the backward sums (masked by ReLU's output or not) and
    the backward map (keeping the masked ȳ or not) — as compiled jobs and as Python pieces."""
    rng = np.random.default_rng(6)
    rows, c = 9000 + 37, 32  # ragged: not a multiple of the 256-row blocks; 289k values
    x = rng.standard_normal((rows, c)).astype(dtype)
    r = rng.standard_normal((rows, c)).astype(dtype)
    g = rng.standard_normal((rows, c)).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)

    def run():
        out = []
        for relu, res in ((False, None), (True, r)):
            y, mu, var = _jit.batch_norm_forward(x, w, b, 1e-5, relu, res)
            out += [y, mu, var]
            yy = y if relu else None
            gb, t = _jit.batch_norm_backward_sums(g, x, mu, yy)
            out += [gb, t]
            a, k1, k0 = w / np.sqrt(var + 1e-5), t / rows, gb / rows
            gx, gm = _jit.batch_norm_backward_apply(g, x, mu, a, k1, k0, yy, keep=relu)
            out += [gx] + ([gm] if relu else [])
        return out

    a, b_ = _with_and_without(threads, monkeypatch,
                              ["bn_sums", "bn_affine", "bn_grad_sums", "bn_grad"], run)
    assert len(a) == len(b_) == 13
    for u, v in zip(a, b_, strict=True):
        same_bits(u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_row_convolution_jobs_give_the_python_pieces_bits(threads, monkeypatch, dtype,
                                                                 bias):
    """A stride-1 3×3 convolution in kernel-row form (ops.windows._row_conv and its W̄) —
    forward, W̄ and b̄ — as compiled jobs and as Python pieces, on channels-last input (a conv
    output's memory) and on NCHW input (copied first), 37 samples (ragged chunks)."""
    from tensorcalc.ops import windows as W

    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 16, 28, 28)).astype(dtype)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((16, 16, 3, 3)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype) if bias else None
    g = rng.standard_normal((37, 16, 28, 28)).astype(dtype)
    geo = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
    assert W._row_conv_applies(np, x_cl, 16, (3, 3), (1, 1), (1, 1), geo["padding"])

    def run():
        out = []
        for xx in (x_cl, x):
            y = W.Conv2d.forward(np, xx, w, b, **geo)
            out += [y] + [v for v in W.Conv2d.vjp(g, y, xx, w, b, needs=(False, True, bias),
                                                  **geo) if v is not None]
        return out

    a, c = _with_and_without(threads, monkeypatch, ["row_conv", "row_wgrad"], run)
    assert len(a) == len(c) == (6 if bias else 4)
    for u, v in zip(a, c, strict=True):
        same_bits(u, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_leaky_relu_and_fold_jobs_give_the_python_pieces_bits(threads, monkeypatch, dtype):
    """ReLU, leaky ReLU and their rule on C-ordered and channels-last arrays (NaN, ±inf and
    ±0 included), and the fold (col2im) of a transposed convolution's columns: compiled jobs
    against Python pieces."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((64, 16, 24, 24)).astype(dtype)
    x.reshape(-1)[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30]
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    g = rng.standard_normal(x.shape).astype(dtype)
    g_cl = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    t6 = rng.standard_normal((64, 7, 7, 4, 4, 16)).astype(dtype)

    def run():
        out = []
        for xx, gg in ((x, g), (x_cl, g_cl)):
            out += [_jit.relu(xx), _jit.leaky_relu(xx, 0.2), _jit.relu_grad(gg, xx),
                    _jit.relu_grad(gg, xx, 0.2)]
        buf = np.zeros((64, 16, 16, 16), dtype=dtype)
        _jit.fold_samples(t6, buf, (2, 2), (1, 1))
        return out + [buf]

    a, b = _with_and_without(threads, monkeypatch, ["relu", "leaky", "relu_grad", "fold_add"],
                             run)
    for u, v in zip(a, b, strict=True):
        assert u.strides == v.strides
        same_bits(u, v)


def test_a_job_asked_for_while_the_kernels_are_off_is_there_once_they_are_on(monkeypatch):
    """job_piece gives 0 while the kernels are off, and does not remember that 0."""
    monkeypatch.setitem(_jobs._STATE, "fns", {})
    old = _jit.set_enabled(False)
    try:
        assert _jobs.job_piece("binary") == 0
    finally:
        _jit.set_enabled(old)
    assert _jobs.job_piece("binary") != 0
