"""The kernel thread pool (backend.parallel_chunks): the parallel path gives the serial path's
bits, T = 1 never touches the pool, and arrays under the threshold stay serial. These are the
NumPy kernels: the compiled ones (devices/cpu_jit.py) are off here (test_jit_kernels.py)."""

import numpy as np
import pytest
from conftest import same_bits

from tensorcalc import backend
from tensorcalc.devices import cpu_jit as _jit
from tensorcalc.ops import elementwise as E
from tensorcalc.ops import reduce as R

N0 = backend.PARALLEL_MIN


@pytest.fixture(autouse=True)
def _numpy_kernels():
    old = _jit.set_enabled(False)
    yield
    _jit.set_enabled(old)


@pytest.fixture(autouse=True)
def _blas_spin_tamed(monkeypatch):
    """These tests are about the pool itself: let T follow BLAS whichever of NumPy and
    tensorcalc the test process imported first (backend.BLAS_SPIN_TAMED)."""
    monkeypatch.setattr(backend, "BLAS_SPIN_TAMED", True)


def test_split_range_is_a_function_of_the_size():
    assert backend.split_range(10, 2) == [(0, 5), (5, 10)]
    assert backend.split_range(10, 3, align=4) == [(0, 4), (4, 8), (8, 10)]
    assert backend.split_range(1, 4) == [(0, 1)]
    for n in (0, 1, 7, 65536, 200001):
        for t in (1, 2, 3, 5):
            r = backend.split_range(n, t, align=16)
            assert r[0][0] == 0 and r[-1][1] == n and len(r) <= max(1, t)
            assert all(a[1] == b[0] for a, b in zip(r, r[1:], strict=False))
            assert all(e % 16 == 0 for _, e in r[:-1])


def test_parallel_chunks_runs_every_range_once(threads):
    seen = []
    out = threads(3, lambda: backend.parallel_chunks(1000, lambda a, b: seen.append((a, b)) or b,
                                                     min_size=10))
    pieces = backend.split_range(1000, 3 * backend._PIECES_PER_THREAD)
    assert len(pieces) == 12 and sorted(seen) == pieces and out == [e for _, e in pieces]


def _spin_or_skip(spin):
    if spin and _jit._numba() is None:
        pytest.skip("numba not installed: the pool never spins")
    if not spin:
        return None
    old = _jit.set_enabled(True)
    try:
        return _jit.spin_waiter()
    finally:
        _jit.set_enabled(old)


def _own_pool(monkeypatch, spin, cls=backend._KernelPool):
    """A fresh pool of one thread, spinning (compiled waits) or not, as the process's pool."""
    pool = cls(1)
    pool.spin = spin
    monkeypatch.setitem(backend._KERNEL_THREADS, "pool", pool)
    monkeypatch.setitem(backend._KERNEL_THREADS, "size", 8)
    monkeypatch.setitem(backend._KERNEL_THREADS, "pid", __import__("os").getpid())
    return pool


@pytest.mark.parametrize("spin", [False, True])
def test_a_pool_thread_that_never_runs_does_not_stall_the_caller(threads, monkeypatch, spin):
    """Pieces are taken from a shared counter: if the pool thread is held up (a busy core), the
    caller does every piece itself and returns without waiting for it."""
    import threading

    gate = threading.Event()

    class Stuck(backend._KernelPool):  # a pool whose thread only starts once the caller returned
        def _loop(self):
            gate.wait()
            super()._loop()

    pool = _own_pool(monkeypatch, _spin_or_skip(spin), Stuck)
    who = []
    out = threads(2, lambda: backend.parallel_chunks(
        100, lambda a, b: who.append(threading.current_thread().name) or (a, b), min_size=1))
    gate.set()
    assert out == backend.split_range(100, 2 * backend._PIECES_PER_THREAD)
    assert set(who) == {threading.current_thread().name}
    pool.close()


@pytest.mark.parametrize("spin", [False, True])
def test_the_pool_thread_takes_pieces_and_the_caller_waits_for_them(threads, monkeypatch,
                                                                    spin):
    """Pieces that the pool thread takes are finished before parallel_chunks returns, with the
    pool spinning between calls (compiled waits) or blocking; a piece's error reaches the
    caller; the pool serves call after call."""
    import threading
    import time

    pool = _own_pool(monkeypatch, _spin_or_skip(spin))
    main = threading.current_thread().name
    for _ in range(20):
        who, started = {}, []

        def piece(a, b):
            # the first piece waits until the other one is taken, so each thread runs one
            started.append(a)  # noqa: B023
            deadline = time.monotonic() + 5
            while len(started) < 2 and time.monotonic() < deadline:  # noqa: B023
                time.sleep(1e-4)
            if threading.current_thread().name != main:
                time.sleep(2e-3)  # still running when the caller has finished its own
            who[a] = threading.current_thread().name  # noqa: B023
            return b

        out = threads(2, lambda: backend.parallel_chunks(2, piece, min_size=1))  # noqa: B023
        assert out == [1, 2] and sorted(who) == [0, 1]
        assert set(who.values()) == {main, pool.threads[0].name}

    def bad(a, b):
        if threading.current_thread().name != main:
            raise ValueError("piece failed")
        time.sleep(5e-3)
        return b

    with pytest.raises(ValueError, match="piece failed"):
        threads(2, lambda: backend.parallel_chunks(2, bad, min_size=1))
    assert threads(2, lambda: backend.parallel_chunks(4, lambda a, b: b, min_size=1)) \
        == [1, 2, 3, 4]
    pool.close()


def test_a_second_caller_runs_its_pieces_itself_while_the_pool_is_busy(threads, monkeypatch):
    """One call at a time uses the pool; a call from another thread meanwhile runs the same
    pieces one after another (same results, so the same bits) instead of waiting."""
    import threading

    pool = _own_pool(monkeypatch, None)
    assert pool.busy.acquire()  # another thread's call holds the pool
    try:
        seen = []
        out = threads(2, lambda: backend.parallel_chunks(
            100, lambda a, b: seen.append(threading.current_thread().name) or (a, b),
            min_size=1))
    finally:
        pool.busy.release()
    assert out == backend.split_range(100, 2 * backend._PIECES_PER_THREAD)
    assert set(seen) == {threading.current_thread().name}
    pool.close()


def test_one_thread_never_touches_the_pool(threads):
    calls = backend.parallel_calls()
    x = np.random.default_rng(0).standard_normal(4 * N0).astype(np.float32)
    threads(1, lambda: (E.Gelu.forward(np, x), R.Softmax.forward(np, x.reshape(-1, 64), axis=1)))
    assert x.size >= R._ROW_MIN
    assert backend.parallel_calls() == calls
    r = threads(1, lambda: backend.parallel_chunks(10 * N0, lambda a, b: (a, b)))
    assert r == [(0, 10 * N0)] and backend.parallel_calls() == calls


def test_pool_unused_under_the_threshold(threads):
    calls = backend.parallel_calls()
    x = np.random.default_rng(1).standard_normal(N0 - 1).astype(np.float32)
    threads(2, lambda: E.Gelu.forward(np, x))
    assert backend.parallel_calls() == calls
    threads(2, lambda: E.Gelu.forward(np, np.concatenate([x, x])))
    assert backend.parallel_calls() > calls


def test_nested_calls_run_serially(threads):
    def outer(a, b):
        return backend.parallel_chunks(4 * N0, lambda c, d: (c, d))
    r = threads(2, lambda: backend.parallel_chunks(4 * N0, outer))
    assert r == [[(0, 4 * N0)]] * (2 * backend._PIECES_PER_THREAD)


SIZES = [N0 - 1, N0, N0 + 1, 2 * N0 + 12345, 3 * 65536 + 7]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("t", [2, 3])
def test_gelu_erf_kernels_bitwise(threads, n, t):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[:5] = [np.inf, -np.inf, 0.0, -0.0, 20.0]
    for f in (lambda v: E.Gelu.forward(np, v), lambda v: E.Gelu.forward(np, v, keep=True),
              lambda v: E.GeluGrad.forward(np, v), lambda v: E.Erf.forward(np, v)):
        same_bits(threads(1, lambda f=f: f(x)), threads(t, lambda f=f: f(x)))
    g = rng.standard_normal(n).astype(np.float32)
    for a in (0.01, 0.0, 2.0, -0.5):
        f = lambda a=a: E.LeakyRelu.forward(np, x, negative_slope=a)  # noqa: E731
        same_bits(threads(1, f), threads(t, f))
        f = lambda a=a: E.LeakyRelu.vjp(g, None, x, needs=(True,), negative_slope=a)[0]  # noqa: E731
        same_bits(threads(1, f), threads(t, f))
    xs = np.stack([x, x])[:, ::1][0][::-1]  # non-contiguous (reversed) input
    same_bits(threads(1, lambda: E.Gelu.forward(np, xs)),
              threads(t, lambda: E.Gelu.forward(np, xs)))
    x2 = np.repeat(x, 2)[::2]  # strided view
    same_bits(threads(1, lambda: E.GeluGrad.forward(np, x2)),
          threads(t, lambda: E.GeluGrad.forward(np, x2)))


RN = R._ROW_MIN
ROW_SHAPES = [(RN // 64, 64), (RN // 64 + 1, 64), (7, 601, 127), (4099, 129), (3, 5, 71, 513)]


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("t", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_kernels_bitwise(threads, shape, t, dtype):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    n = shape[-1]
    w = rng.standard_normal(n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    mask = rng.random(shape[-2:]) > 0.3
    mask[0] = False  # a row with no allowed entry
    ax = x.ndim - 1
    cases = [
        lambda: R.Softmax.forward(np, x, axis=ax),
        lambda: R.Softmax.forward(np, x, axis=ax, mask=mask),
        lambda: R.Softmax.vjp(g, R.Softmax.forward(np, x, axis=ax), x, needs=(True,), axis=ax)[0],
        lambda: R.Standardize.forward(np, x, axis=(ax,), eps=1e-5),
        lambda: R.Standardize.forward(np, x, axis=(ax - 1, ax), eps=1e-5),
        lambda: R.LayerNorm.forward(np, x, w, b, eps=1e-5),
    ]
    for f in cases:
        same_bits(threads(1, f), threads(t, f))
    used = backend.parallel_calls()
    threads(t, cases[0])
    assert backend.parallel_calls() > used  # the parallel path really ran
    xt = np.ascontiguousarray(x.swapaxes(-1, -2)).swapaxes(-1, -2)  # non-contiguous
    same_bits(threads(1, lambda: R.Softmax.forward(np, xt, axis=ax)),
          threads(t, lambda: R.Softmax.forward(np, xt, axis=ax)))


def test_rows_under_their_threshold_stay_serial(threads):
    x = np.random.default_rng(2).standard_normal((R._ROW_MIN // 64 - 1, 64)).astype(np.float32)
    calls = backend.parallel_calls()
    threads(2, lambda: R.Softmax.forward(np, x, axis=1))
    assert backend.parallel_calls() == calls


def test_kernel_threads_follows_blas_limit():
    from threadpoolctl import threadpool_limits

    backend.set_kernel_threads(None)
    with threadpool_limits(1):
        assert backend.kernel_threads() == 1


def test_no_pool_beside_spinning_blas_workers(monkeypatch):
    # NumPy loaded before tensorcalc without OPENBLAS_THREAD_TIMEOUT: OpenBLAS's idle workers
    # spin, so tensorcalc's kernels stay on the calling thread (BLAS alone runs in parallel);
    # an explicit set_kernel_threads still wins. (BLAS at 2 threads on 2 CPUs, as seen by
    # kernel_threads, whatever this machine has.)
    backend.set_kernel_threads(None)
    monkeypatch.setattr(backend, "_blas_threads", lambda: 2)
    monkeypatch.setattr(backend, "_cpu_count", lambda: 2)
    monkeypatch.setattr(backend, "BLAS_SPIN_TAMED", False)
    assert backend.kernel_threads() == 1
    calls = backend.parallel_calls()
    E.Gelu.forward(np, np.ones(1 << 20, np.float32))
    assert backend.parallel_calls() == calls
    monkeypatch.setattr(backend, "BLAS_SPIN_TAMED", True)
    assert backend.kernel_threads() == 2
    monkeypatch.setattr(backend, "BLAS_SPIN_TAMED", False)
    backend.set_kernel_threads(2)
    try:
        assert backend.kernel_threads() == 2
    finally:
        backend.set_kernel_threads(None)


def _child_gelu(x):
    assert backend.kernel_threads() == 2
    calls = backend.parallel_calls()
    y = E.Gelu.forward(np, x)
    assert backend.parallel_calls() > calls  # it used a pool (its own, or it would hang)
    return y


def test_forked_child_gets_its_own_pool(threads):
    import multiprocessing as mp

    x = np.random.default_rng(3).standard_normal(2 * N0).astype(np.float32)
    want = threads(1, lambda: E.Gelu.forward(np, x))
    threads(2, lambda: E.Gelu.forward(np, x))  # the parent's pool exists now
    ctx = mp.get_context("fork")
    backend.set_kernel_threads(2)
    try:
        with ctx.Pool(1) as p:
            got = p.apply_async(_child_gelu, (x,)).get(timeout=60)
    finally:
        backend.set_kernel_threads(None)
    same_bits(want, got)


@pytest.mark.parametrize("geo", [dict(stride=(1, 1), padding=((1, 1), (1, 1)), c=16),
                                 dict(stride=(2, 2), padding=((1, 1), (1, 1)), c=16),
                                 dict(stride=(1, 1), padding=((0, 0), (0, 0)), c=6),
                                 dict(stride=(1, 1), padding=((1, 1), (1, 1)), c=32)])
def test_conv2d_chunks_split_over_threads_give_the_serial_result(threads, geo):
    """Implicit GEMM over the kernel pool (each range its own column buffer, single-threaded
    GEMMs): y and x̄ are the serial bits; W̄ and b̄ (one GEMV per chunk) are summed per range,
    so equal to rounding."""
    from tensorcalc.ops.windows import _CHUNK_BYTES, Conv2d

    rng = np.random.default_rng(0)
    n, c = 24, geo["c"]
    x = rng.standard_normal((n, c, 14, 14)).astype(np.float32)
    w = rng.standard_normal((32, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    kw = dict(stride=geo["stride"], padding=geo["padding"], dilation=(1, 1))
    assert 14 * 14 * 9 * c * 4 * 2 < _CHUNK_BYTES * n  # several chunks: the split is exercised

    def run():
        y = Conv2d.forward(np, x, w, b, **kw)
        g = rng.standard_normal(y.shape).astype(np.float32)
        return (y,) + Conv2d.vjp(g, y, x, w, b, needs=(True, True, True), **kw)

    rng = np.random.default_rng(1)
    serial = threads(1, run)
    calls = backend.parallel_calls()
    rng = np.random.default_rng(1)
    par = threads(2, run)
    assert backend.parallel_calls() > calls
    for a, p in zip(serial[:2], par[:2], strict=True):
        same_bits(a, p)
    np.testing.assert_allclose(par[2], serial[2], rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(par[3], serial[3], rtol=2e-5, atol=1e-4)
    g = np.random.default_rng(1).standard_normal(serial[0].shape).astype(np.float32)
    np.testing.assert_allclose(par[3], g.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("c,stride,padding", [(1, (1, 1), ((0, 0), (0, 0))),
                                               (2, (2, 1), ((1, 2), (0, 1)))])
@pytest.mark.parametrize("compiled", [False, True], ids=["numpy-copy", "compiled-copy"])
def test_few_channel_convolution_chunks_over_threads(threads, c, stride, padding, compiled):
    """A first layer (few input channels: Unfold's (N, K, L) copy) at T = 2 runs its copy and
    per-sample GEMMs chunk by chunk over the pool: y and x̄ are the serial bits, W̄ and b̄ equal
    to rounding — with NumPy's copy of the strided windows, and with the compiled one
    (devices/cpu_jit.unfold_few_into, which reads the padding from x itself)."""
    from tensorcalc.ops.windows import Conv2d

    if compiled:
        if _jit._numba() is None:
            pytest.skip("numba not installed")
        _jit.set_enabled(True)  # (the autouse fixture restores it)

    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, c, 28, 28)).astype(np.float32)
    w = rng.standard_normal((16, c, 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    kw = dict(stride=stride, padding=padding, dilation=(1, 1))

    def fwd():
        return Conv2d.forward(np, x, w, b, **kw)

    y1 = threads(1, fwd)
    calls = backend.parallel_calls()
    y2 = threads(2, fwd)
    assert backend.parallel_calls() > calls  # the forward alone used the pool
    same_bits(y1, y2)
    g = rng.standard_normal(y1.shape).astype(np.float32)

    def vjp():
        return Conv2d.vjp(g, y1, x, w, b, needs=(True, True, True), **kw)

    s1, s2 = threads(1, vjp), threads(2, vjp)
    same_bits(s1[0], s2[0])
    np.testing.assert_allclose(s2[1], s1[1], rtol=2e-5, atol=1e-3)
    np.testing.assert_allclose(s2[2], s1[2], rtol=2e-5, atol=1e-3)
    cols = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, ((0, 0), (0, 0)) + padding), (5, 5), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    want = np.einsum("nchwij,ocij->nohw", cols.astype(np.float64), w.astype(np.float64)) \
        + b[:, None, None]
    np.testing.assert_allclose(y2, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("geo", [dict(kernel=(3, 3), stride=(1, 1), padding=((1, 1), (1, 1))),
                                 dict(kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool2d_sample_chunks_over_threads_give_the_serial_bits(threads, geo, channels_last):
    from tensorcalc.ops.windows import _POOL_CHUNK_BYTES, MaxPool2d

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 24, 16, 16)).astype(np.float32)
    x[:, :, ::3, ::3] = 0.5  # ties
    if channels_last:  # the memory order of a convolution's output
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert x[0].nbytes * 4 < _POOL_CHUNK_BYTES * 2 < x.nbytes  # several chunks
    kw = dict(geo, dilation=(1, 1))

    def run():
        y = MaxPool2d.forward(np, x, **kw)
        g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        return y, MaxPool2d.vjp(g, y, x, needs=(True,), **kw)[0]

    serial = threads(1, run)
    calls = backend.parallel_calls()
    par = threads(2, run)
    assert backend.parallel_calls() > calls
    for a, p in zip(serial, par, strict=True):
        same_bits(a, p)


def test_batched_matmul_splits_its_batch_over_threads_with_the_serial_bits(threads):
    from tensorcalc.ops.matmul import Matmul

    rng = np.random.default_rng(0)
    q = rng.standard_normal((32, 4, 64, 32)).astype(np.float32)
    k = rng.standard_normal((32, 4, 32, 64)).astype(np.float32)
    g = rng.standard_normal((32, 4, 64, 64)).astype(np.float32)

    def run():
        z = Matmul.forward(np, q, k)
        return (z,) + Matmul.vjp(g, z, q, k, needs=(True, True))

    serial = threads(1, run)
    calls = backend.parallel_calls()
    par = threads(2, run)
    assert backend.parallel_calls() >= calls + 3
    for a, p in zip(serial, par, strict=True):
        same_bits(a, p)
    np.testing.assert_allclose(serial[0], q @ k, rtol=1e-6)


@pytest.mark.parametrize("t", [1, 2])
def test_attention_products_keep_the_heads_memory_order(threads, t):
    """Q Kᵀ and A V on head views (B, H, L, d) of (B, L, H, d) projections: the context and Q̄,
    K̄, V̄ come out in (B, L, H, d) memory, so transposing back and reshaping to (B, L, E) is a
    view; the values are those of plain products."""
    from tensorcalc.ops.matmul import Matmul

    rng = np.random.default_rng(1)
    B, L, H, d = 8, 16, 4, 8
    proj = [rng.standard_normal((B, L, H * d)).astype(np.float32) for _ in range(3)]
    q, k, v = (p.reshape(B, L, H, d).transpose(0, 2, 1, 3) for p in proj)
    kt = k.swapaxes(-1, -2)
    gs = rng.standard_normal((B, H, L, L)).astype(np.float32)
    gc = rng.standard_normal((B, L, H, d)).astype(np.float32).transpose(0, 2, 1, 3)

    def run():
        s = Matmul.forward(np, q, kt)
        gq, gkt = Matmul.vjp(gs, s, q, kt, needs=(True, True))
        w = rng.random((B, H, L, L)).astype(np.float32)
        ctx = Matmul.forward(np, w, v)
        gw, gv = Matmul.vjp(gc, ctx, w, v, needs=(True, True))
        return s, gq, gkt, w, ctx, gw, gv

    s, gq, gkt, w, ctx, gw, gv = threads(t, run)
    for a in (ctx, gq, gkt.swapaxes(-1, -2), gv):  # (B, L, H, d) memory
        assert a.transpose(0, 2, 1, 3).flags.c_contiguous
    assert s.flags.c_contiguous and gw.flags.c_contiguous
    np.testing.assert_allclose(s, np.matmul(q, kt), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ctx, np.matmul(w, v), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gq, gs @ k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gkt, q.swapaxes(-1, -2) @ gs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gv, w.swapaxes(-1, -2) @ gc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, gc @ v.swapaxes(-1, -2), rtol=1e-5, atol=1e-5)


def test_serial_blas_regions_restore_the_blas_thread_count_even_from_several_threads():
    """Conv chunks run with BLAS at one thread; concurrent callers must not leave it there."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    from tensorcalc.ops.windows import Conv2d

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 16, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    kw = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
    blas = lambda: [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"][0]  # noqa: E731
    with threadpool_limits(2, user_api="blas"):
        assert blas() == 2 and backend.kernel_threads() == 2
        errors = []

        def work():
            try:
                for _ in range(20):
                    Conv2d.forward(np, x, w, None, **kw)
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=work) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors and blas() == 2


def test_chains_of_numpy_passes_get_few_long_pieces(monkeypatch):
    # each ufunc call of a piece takes the GIL back, so elementwise chains go in pieces of at
    # least backend.EW_PIECE values (1-4 per thread); GEMM pieces keep 4 per thread
    from tensorcalc.backend import EW_PIECE, piece_count

    assert piece_count(768 * 512, 2, EW_PIECE) == 2
    assert piece_count(2048 * 512, 2, EW_PIECE) == 4
    assert piece_count(50 << 20, 2, EW_PIECE) == 8
    assert piece_count(1000, 3, EW_PIECE) == 3
    assert piece_count(1000, 2) == 8
    x = np.random.default_rng(5).standard_normal(768 * 512).astype(np.float32)
    ranges = []
    real = E.parallel_chunks

    def spy(n, fn, **kw):
        return real(n, lambda a, b: (ranges.append((a, b)), fn(a, b))[1], **kw)

    monkeypatch.setattr(E, "parallel_chunks", spy)
    backend.set_kernel_threads(2)
    try:
        y2 = E.Gelu.forward(np, x, keep=True)
    finally:
        backend.set_kernel_threads(None)
    assert sorted(ranges) == [(0, 196608), (196608, 393216)]  # one 196,608-value chunk each
    monkeypatch.undo()
    same_bits(y2, E.Gelu.forward(np, x, keep=True))  # the serial bits


def test_the_blas_controlled_is_numpys_whatever_the_load_order(tmp_path):
    # SciPy's wheels bundle a second OpenBLAS; with torch imported it was listed first, and the
    # pool's one-thread BLAS regions held SciPy's library instead of NumPy's
    import os
    from types import SimpleNamespace

    mine = SimpleNamespace(filepath=str(tmp_path / "numpy.libs" / "libscipy_openblas64_.so"))
    other = SimpleNamespace(filepath=str(tmp_path / "scipy.libs" / "libscipy_openblas.so"))
    for d in ("numpy.libs", "scipy.libs"):
        os.makedirs(tmp_path / d)
    assert backend._numpy_blas([other, mine]) is mine
    assert backend._numpy_blas([mine, other]) is mine
    assert backend._numpy_blas([other]) is other  # a system BLAS: the only one there is
    assert backend._numpy_blas([]) is False


def test_batch_norm_per_channel_rows_on_channels_last_give_the_broadcast_bits(monkeypatch):
    # few channels in channels-last memory: per-channel passes run on tiled (pixels, C) rows
    # (long inner loops) — the same operation on every value as NumPy's broadcast
    from tensorcalc.ops.reduce import BatchNorm

    rng = np.random.default_rng(7)
    def run(x, gy, w, b, gm, gv):
        y = BatchNorm.forward(np, x, w, b, eps=1e-5)
        return y + BatchNorm.vjp((gy, gm, gv), y, x, w, b, needs=(True, True, True), eps=1e-5)

    for c, hw in ((16, 9), (3, 5), (48, 4)):
        x = rng.standard_normal((5, hw, hw, c)).astype(np.float32).transpose(0, 3, 1, 2)
        gy = rng.standard_normal((5, hw, hw, c)).astype(np.float32).transpose(0, 3, 1, 2)
        vs = [rng.standard_normal(c).astype(np.float32) for _ in range(4)]  # γ, β, μ̄, σ̄²
        fast = run(x, gy, *vs)
        assert R._cl_rows(fast[0]) is not None  # channels-last stays so
        monkeypatch.setattr(R, "_cl_rows", lambda a: None)
        slow = run(x, gy, *vs)
        monkeypatch.undo()
        for a, s in zip(fast, slow, strict=True):
            same_bits(a, s)


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")  # (pool threads:
@pytest.mark.parametrize("t", [1, 2])                  # np.errstate is per thread) the ±inf ȳ
def test_max_pool_rows_path_for_few_channels_gives_the_loops_bits(threads, t):
    # exactly tiling 2x2 windows on channels-last x with C < 32: repeated y and ȳ/k along W
    # instead of per-offset views; the NCHW copy of x takes the per-offset loop: same bits
    from tensorcalc.ops import windows as W

    rng = np.random.default_rng(8)
    geo = dict(kernel=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1))
    for n, c, h in ((64, 16, 24), (5, 6, 8), (3, 3, 2)):
        xa = rng.standard_normal((n, h, h, c)).astype(np.float32)
        xa[:, ::3, ::3, :] = 0.5  # ties inside windows
        xa[:, 1::3, ::3, :] = 0.5
        x = xa.transpose(0, 3, 1, 2)
        xc = np.ascontiguousarray(x)
        y = W.MaxPool2d.forward(np, x, **geo)
        yc = np.ascontiguousarray(y)
        for g in (rng.standard_normal((n, h // 2, h // 2, c)).astype(np.float32)
                  .transpose(0, 3, 1, 2), rng.standard_normal((n, c, h // 2, h // 2))
                  .astype(np.float32)):
            g[0, 0, 0, 0] = np.inf
            with np.errstate(invalid="ignore"):
                got = threads(t, lambda g=g, y=y, x=x: W._maxpool_grad(np, g, y, x, geo))
                want = W._maxpool_grad(np, g, yc, xc, geo)
            same_bits(np.ascontiguousarray(got), want)


def test_scipy_blas_registered_inside_a_serial_region_is_held_then_restored(monkeypatch):
    """SciPy's BLAS first loaded by a pool piece (inside a serial-BLAS region, e.g. a network
    whose first convolution has a stride): registered at once, at one thread until the region
    ends, then back to its own count — and the small-matrix check sees it."""
    pytest.importorskip("threadpoolctl")
    backend.register_scipy_blas()
    ctl = backend._KERNEL_THREADS["scipy_blas"]
    if not ctl:
        pytest.skip("SciPy's BLAS is not a separate OpenBLAS here")
    before = ctl.get_num_threads()
    monkeypatch.setitem(backend._KERNEL_THREADS, "scipy_blas", None)
    monkeypatch.setitem(backend._KERNEL_THREADS, "small", None)
    ctl.set_num_threads(2)
    backend.set_kernel_threads(2)
    try:
        with backend.single_thread_blas():
            backend.register_scipy_blas()
            assert backend._KERNEL_THREADS["scipy_blas"] is not None
            assert backend._KERNEL_THREADS["scipy_blas"].get_num_threads() == 1
            small = backend.scipy_blas_small_kernels()
        assert ctl.get_num_threads() == 2
        arch = str(getattr(ctl, "architecture", "")).lower()
        assert small == (arch in ("skylakex", "cooperlake", "sapphirerapids"))
    finally:
        backend.set_kernel_threads(None)
        ctl.set_num_threads(before)


@pytest.mark.parametrize("layout", ["C", "channels-last"])
def test_binary_elementwise_ops_split_over_threads_with_the_serial_bits(threads, layout):
    """add, sub, mul (forward, and mul's rule) of big same-layout arrays go over the kernel pool
    at T > 1 (ops._util.parallel_binary): the same bits as NumPy's one call, in x's memory
    order; broadcasting, mixed layouts and small arrays stay NumPy's."""
    from tensorcalc.ops import _util as U
    from tensorcalc.ops.arithmetic import Add, Mul, Sub

    rng = np.random.default_rng(7)
    shape = (16, 32, 24, 40)  # 491,520 values
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -0.0]
    if layout == "channels-last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        y = np.ascontiguousarray(y.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert x.size >= U._BINARY_PAR_MIN
    with np.errstate(invalid="ignore"):
        for op, want in [(Add, x + y), (Sub, x - y), (Mul, x * y)]:
            calls = backend.parallel_calls()
            got = threads(2, lambda op=op: op.forward(np, x, y))
            assert backend.parallel_calls() > calls
            same_bits(got, want)
            assert got.strides == x.strides  # x's memory order
        g = rng.standard_normal(shape).astype(np.float32)
        g = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) \
            if layout == "channels-last" else g
        gx, gy = threads(3, lambda: Mul.vjp(g, None, x, y, needs=(True, True)))
        same_bits(gx, g * y)
        same_bits(gy, g * x)
    assert threads(1, lambda: U.parallel_binary("add", x, y)) is None  # T = 1
    assert threads(2, lambda: U.parallel_binary("add", x, y[:1])) is None  # broadcast
    assert threads(2, lambda: U.parallel_binary("add", x[:1], y[:1])) is None  # small
    other = np.ascontiguousarray(y) if layout == "channels-last" else \
        np.ascontiguousarray(y.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert threads(2, lambda: U.parallel_binary("add", x, other)) is None  # mixed
