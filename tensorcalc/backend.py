"""Array backend: the array module ``xp`` (NumPy on CPU, CuPy on a GPU), default dtype, rng.

Everything above this module receives ``xp`` instead of importing numpy directly, so the same
forward and derivative code runs on NumPy and on CuPy.

Machine tuning, done once at import (see ``benchmarks/RESULTS.md`` for the measurements):

* ``OPENBLAS_CORETYPE``: NumPy's bundled OpenBLAS picks AVX2 kernels on AMD Zen 4/5 even where
  AVX-512 exists; an issue measured its SkylakeX kernels at about twice the float32 GEMM speed on
  Zen 5. On the Zen 4 VM measured here (OpenBLAS 0.3.31) the two are even over whole CNN steps:
  SkylakeX is ~45 % faster on a first conv layer's tiny GEMMs, AVX2 5-10 % faster on mid-size
  ones (benchmarks/RESULTS.md, round 8). The variable
  only works if set before NumPy loads, and on a CPU *without* AVX-512 those kernels die with
  "Illegal instruction". So :func:`tune_blas_env` sets it only when ``/proc/cpuinfo`` lists
  ``avx512f``, NumPy is not yet imported, and the user has not set it. Opt out with
  ``TENSORCALC_NO_BLAS_TUNING=1``.
* ``OPENBLAS_THREAD_TIMEOUT=10``: after each call OpenBLAS's worker threads busy-wait for
  2^28 cycles by default (~0.1 s), holding the other core; with 2 threads that core is then
  unavailable to tensorcalc's own kernel pool (:func:`parallel_chunks`). 2^10 cycles lets them
  sleep at once. Measured (2 threads, wall clock, load 0.7-0.8): a 2048x128x512 GEMM unchanged
  (1.45-1.65 ms either way); GEMM + GELU with the pool 5.96-7.3 ms -> 4.2-4.5 ms. Set only when
  NumPy is not yet imported and the user has not set it (same opt-out as above).
* glibc ``malloc``: arrays above the mmap threshold are served by fresh ``mmap`` pages that
  page-fault on first touch, every step; raising ``M_MMAP_THRESHOLD`` (to glibc's maximum, 32 MiB)
  and ``M_TRIM_THRESHOLD`` keeps such temporaries in the heap for reuse. Measured: the LeNet
  training step (multi-MB im2col/col2im arrays) 29.9 ms -> 15.4 ms; the MLP benchmarks, whose
  temporaries are small, unchanged. It applies to the whole process; opt out with
  ``TENSORCALC_NO_MALLOPT=1``.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return " avx512f" in line and " avx512bw" in line
    except OSError:
        pass
    return False


def tune_blas_env() -> str | None:
    """Select OpenBLAS's AVX-512 kernels when the CPU has them; return what was set (or None)."""
    if os.environ.get("TENSORCALC_NO_BLAS_TUNING") or "OPENBLAS_CORETYPE" in os.environ:
        return None
    if "numpy" in sys.modules or not sys.platform.startswith("linux"):
        return None
    if _cpu_has_avx512():
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        return "SkylakeX"
    return None


def tune_malloc() -> bool:
    """Keep large temporaries in glibc's heap instead of fresh mmap pages (see module doc)."""
    if os.environ.get("TENSORCALC_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        # 32 MiB is glibc's largest allowed mmap threshold on 64-bit
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        return bool(ok and libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def tune_blas_spin() -> str | None:
    """Let idle OpenBLAS threads sleep soon after a call (see module doc); what was set."""
    if os.environ.get("TENSORCALC_NO_BLAS_TUNING") or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return None
    if "numpy" in sys.modules:
        return None
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "10"
    return "10"


BLAS_TUNING = tune_blas_env()
BLAS_SPIN = tune_blas_spin()
# Whether BLAS's idle workers sleep soon after a call: the timeout set here, or by the user
# before NumPy loaded. If not (NumPy imported before tensorcalc, no OPENBLAS_THREAD_TIMEOUT),
# they spin ~0.1 s after every threaded GEMM, and the kernel pool's threads only fight them for
# the cores: kernel_threads() is then 1 and only BLAS runs in parallel.
BLAS_SPIN_TAMED = BLAS_SPIN is not None or "OPENBLAS_THREAD_TIMEOUT" in os.environ
MALLOC_TUNED = tune_malloc()

import numpy as np  # noqa: E402  (after the environment is tuned)

try:  # CuPy is optional; only imported if installed.
    import cupy as _cupy  # type: ignore
except Exception:  # pragma: no cover - no GPU in CI
    _cupy = None

_state = {"dtype": np.dtype(np.float32)}


def get_default_dtype() -> np.dtype:
    """The float dtype new tensors get (float32 unless changed)."""
    return _state["dtype"]


def set_default_dtype(dtype) -> None:
    """Set the default float dtype (float32 or float64)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64, np.float16):
        raise TypeError(f"set_default_dtype: expected a float dtype, got {dtype}")
    _state["dtype"] = dtype


def cupy_available() -> bool:
    """True when CuPy is importable and sees a GPU."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # pragma: no cover
        return False


# ----------------------------------------------------------------------------- devices
# A device is named by a string: "cpu" (NumPy), "cuda" (CuPy; "gpu" and "cuda:0" are aliases)
# and "standin" (tensorcalc.devices.standin: NumPy underneath, but CuPy's rules — no implicit
# conversion to NumPy, no mixing with NumPy arrays — so CI catches host leaks without a GPU).
# The array's type says where it lives; ``_XP_BY_TYPE`` maps the non-NumPy array types to their
# module and is filled only when such a device is first used, so on a CPU-only run
# ``xp_of`` stays one dict-emptiness test.
DEVICES = ("cpu", "cuda", "standin")
_ALIASES = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "cuda:0": "cuda", "standin": "standin"}
_XP_BY_TYPE: dict = {}
_NAME_BY_XP: dict = {id(np): "cpu"}


def _standin():
    from .devices import standin

    if standin.StandInArray not in _XP_BY_TYPE:
        _XP_BY_TYPE[standin.StandInArray] = standin.xp
        _NAME_BY_XP[id(standin.xp)] = "standin"
    return standin.xp


def _register_cupy():
    if _cupy is not None and _cupy.ndarray not in _XP_BY_TYPE:
        _XP_BY_TYPE[_cupy.ndarray] = _cupy
        _NAME_BY_XP[id(_cupy)] = "cuda"


_register_cupy()  # with CuPy installed a cupy array may come from the user at any time


def canonical_device(device) -> str:
    """'cpu', 'cuda' or 'standin' for a device name (or alias: 'gpu', 'cuda:0'), a Tensor's
    device, or an array module; ValueError naming the choices otherwise."""
    if device is None:
        return "cpu"
    if isinstance(device, str):
        name = _ALIASES.get(device.lower())
        if name is not None:
            return name
    elif id(device) in _NAME_BY_XP:
        return _NAME_BY_XP[id(device)]
    raise ValueError(f"unknown device {device!r}; expected one of 'cpu', 'cuda' (alias 'gpu') "
                     "or 'standin' (the CPU stand-in device used by the tests)")


def array_module(x):
    """The array module (numpy, cupy or the stand-in) that owns array ``x``."""
    if _XP_BY_TYPE:
        m = _XP_BY_TYPE.get(type(x))
        if m is not None:
            return m
    return np


def xp_of(args):
    """The array module for a sequence of arrays / scalars: the first non-NumPy one's, else
    numpy. (Mixing devices is then refused by that module, as CuPy refuses NumPy arrays.)"""
    if not _XP_BY_TYPE:
        return np
    get = _XP_BY_TYPE.get
    for a in args:
        m = get(type(a))
        if m is not None:
            return m
    return np


def get_xp(device: str = "cpu"):
    """Array module for a device name: 'cpu' -> numpy, 'cuda'/'gpu' -> cupy, 'standin' -> the
    stand-in module."""
    name = canonical_device(device)
    if name == "cpu":
        return np
    if name == "standin":
        return _standin()
    if not cupy_available():
        raise RuntimeError(f"device {device!r} requested, but CuPy with a visible GPU is missing "
                           "(pip install 'tensorcalc[gpu]', see the README's Devices section)")
    _register_cupy()
    return _cupy


_DEFAULT_DEVICE = {"name": "cpu"}


def set_default_device(device) -> None:
    """The device a training Loop runs on when its step's modules are on the CPU and no device
    was given (the CLI's ``--device``): the Loop moves the step's modules (optimiser state
    follows) and its DataLoaders' batches there. Tensors created from data stay where asked."""
    name = canonical_device(device)
    get_xp(name)  # fail now, with the reason, if the device is not usable here
    _DEFAULT_DEVICE["name"] = name


def default_device() -> str:
    """See :func:`set_default_device` ('cpu' unless set)."""
    return _DEFAULT_DEVICE["name"]


def device_of(x) -> str:
    """The device name ('cpu', 'cuda', 'standin') of an array."""
    if _XP_BY_TYPE:
        m = _XP_BY_TYPE.get(type(x))
        if m is not None:
            return _NAME_BY_XP[id(m)]
    return "cpu"


def to_numpy(x):
    """A NumPy array from an array on any device (copying off the device if needed)."""
    if _XP_BY_TYPE and type(x) in _XP_BY_TYPE:
        return x.get()
    return np.asarray(x)


def to_device(x, device):
    """The array ``x`` on ``device`` (``x`` itself if it is there already)."""
    xp = get_xp(device)
    if array_module(x) is xp:
        return x
    host = to_numpy(x)
    return host if xp is np else xp.asarray(host)


def mixed_devices(arrays) -> list[str] | None:
    """The distinct devices among ``arrays`` (None when they are on one device)."""
    seen = []
    for a in arrays:
        if hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic):
            d = device_of(a)
            if d not in seen:
                seen.append(d)
    return seen if len(seen) > 1 else None


def as_rng(rng=None) -> np.random.Generator:
    """An explicit ``numpy.random.Generator`` from a Generator, an int seed, or None (fresh).

    For draws that should be made on a device, see :class:`tensorcalc.devices.DeviceRNG`
    (``as_device_rng``)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"expected a numpy Generator or an int seed, got {type(rng).__name__}")


def special(xp):
    """scipy.special for numpy, cupyx.scipy.special for cupy, a stand-in proxy of scipy.special
    for the stand-in device."""
    if xp is np:
        import scipy.special as sp

        return sp
    if _cupy is not None and xp is _cupy:  # pragma: no cover - GPU only
        import cupyx.scipy.special as csp

        return csp
    from .devices import standin

    return standin.special()


def set_num_threads(n: int) -> None:
    """Limit the BLAS / OpenMP thread pools of this process to ``n`` threads (threadpoolctl).

    The limit holds for the rest of the process. On a machine shared with other work, more BLAS
    threads than free cores make OpenBLAS spin and wait: one thread is then much faster.
    """
    from threadpoolctl import threadpool_limits

    global _THREAD_LIMIT
    _THREAD_LIMIT = threadpool_limits(limits=int(n))


_THREAD_LIMIT = None


def as_dtype(dtype) -> np.dtype:
    """``numpy.dtype(dtype)`` — lets code that must not import numpy normalise a dtype."""
    return np.dtype(dtype)


# ----------------------------------------------------------------------------- kernel threads
# NumPy runs every ufunc on one core; PyTorch splits its elementwise kernels over its OpenMP
# threads. tensorcalc's own chunked kernels (GELU, erf, softmax / layer-norm rows, ...) may split
# their index range over a small process-wide pool instead: NumPy releases the GIL inside ufuncs
# and BLAS calls, so T threads run T chunks at once. T is the thread count of NumPy's BLAS as it
# stands at the call (``--threads`` / TENSORCALC_THREADS via :func:`set_num_threads`,
# OPENBLAS_NUM_THREADS, or any threadpoolctl limit), so one setting governs both, and
# ``threadpool_limits(1)`` gives the serial code path exactly (the pool is not even created).
# Splits are contiguous and fixed by the size and T; each chunk computes what the serial loop
# computes for it, so results are bitwise the same at any T (tests/test_parallel_kernels.py).

PARALLEL_MIN = 1 << 17  # elements below which one thread wins (dispatch ~30-60 µs per call)
_KERNEL_THREADS = {"blas": None, "override": None, "pool": None, "size": 0, "calls": 0,
                   "scipy_blas": None, "small": None}


def _numpy_blas(libs):
    """NumPy's own BLAS among the loaded ones (SciPy's wheels bundle a second OpenBLAS, and
    which comes first depends on the import order — with torch imported, SciPy's did, and the
    pool's one-thread BLAS regions then held the wrong library: convolution pieces ran 2 BLAS
    threads each, and a 2-thread LeNet step took 14-35 ms instead of 8): the library inside
    NumPy's wheel (numpy.libs) or package, else the first."""
    if not libs:
        return False
    pkg = os.path.dirname(_np_file()) if _np_file() else None
    for lib in libs:
        path = os.path.realpath(getattr(lib, "filepath", "") or "")
        parent = os.path.dirname(path)
        if os.path.basename(parent) == "numpy.libs" or (pkg and path.startswith(pkg + os.sep)):
            return lib
    return libs[0]


def _np_file():
    mod = sys.modules.get("numpy")
    return os.path.realpath(mod.__file__) if mod is not None and getattr(mod, "__file__", None) \
        else None


def _blas_threads() -> int:
    ctl = _KERNEL_THREADS["blas"]
    if ctl is None:
        try:
            from threadpoolctl import ThreadpoolController

            libs = ThreadpoolController().select(user_api="blas").lib_controllers
            ctl = _numpy_blas(libs)
        except Exception:  # pragma: no cover - threadpoolctl missing or broken
            ctl = False
        _KERNEL_THREADS["blas"] = ctl
    if ctl is False:
        return 1
    try:
        return max(1, int(_thread_fns(ctl)[0]()))
    except Exception:  # pragma: no cover
        return 1


_THREAD_FNS = {}


def _thread_fns(ctl):
    """(get, set) of a BLAS controller's thread count: for OpenBLAS with its own threads its
    C functions themselves (ctypes, looked up once), otherwise threadpoolctl's methods. Each
    threadpoolctl call looks the symbol up again and checks which Python thread controls
    OpenBLAS (~1-2 µs); the pool's serial-BLAS regions get and set the counts of two BLAS
    libraries at every parallel call (7 µs a call went to that)."""
    fns = _THREAD_FNS.get(id(ctl))
    if fns is None:
        get = put = None
        if getattr(ctl, "internal_api", "") == "openblas" \
                and getattr(ctl, "threading_layer", "") != "openmp":
            try:
                get = ctl._get_symbol("openblas_get_num_threads")
                put = ctl._get_symbol("openblas_set_num_threads")
            except Exception:  # noqa: BLE001 - threadpoolctl's internals moved
                get = put = None
        if get is None or put is None:
            get, put = ctl.get_num_threads, ctl.set_num_threads
        fns = _THREAD_FNS[id(ctl)] = (get, put, ctl)  # (ctl: the id stays its own)
    return fns


def kernel_threads() -> int:
    """T, the threads tensorcalc's own NumPy kernels use: NumPy's BLAS thread count at the
    moment (follows ``--threads``, OPENBLAS_NUM_THREADS and threadpoolctl limits), capped at the
    CPUs this process may run on; :func:`set_kernel_threads` overrides it (tests). 1 when
    NumPy was loaded before tensorcalc without OPENBLAS_THREAD_TIMEOUT: OpenBLAS's workers
    then spin between calls and the pool loses to them (2 threads, numpy imported first, pool
    on/off per step: LeNet 15.2/11.7 ms, resnet 119/108, vgg 79/66, block 36.6/33.9; with the
    timeout set the pool wins: LeNet 10.2/11.4, resnet 98.8/109.4, block 32.0/34.5)."""
    o = _KERNEL_THREADS["override"]
    if o is not None:
        t = o
    else:
        t = _blas_threads()
        if t > 1 and not BLAS_SPIN_TAMED:
            t = 1  # BLAS's spinning workers hold the other cores (see BLAS_SPIN_TAMED)
    return max(1, min(int(t), _cpu_count()))


def _cpu_count() -> int:
    n = _KERNEL_THREADS.get("cpus")
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            n = os.cpu_count() or 1
        _KERNEL_THREADS["cpus"] = n
    return n


def set_kernel_threads(n: int | None) -> None:
    """Fix T for tensorcalc's own kernels (None: follow the BLAS thread count again)."""
    _KERNEL_THREADS["override"] = None if n is None else max(1, int(n))
    if n is not None:
        _KERNEL_THREADS["cpus"] = max(_cpu_count(), int(n))  # tests may ask for more than cores


def _pool(t: int):
    """The process's kernel pool with at least ``t`` threads (made anew in a forked child)."""
    pool = _KERNEL_THREADS["pool"]
    if _KERNEL_THREADS.get("pid") != os.getpid():  # a forked child (DataLoader workers): the
        pool = None  # parent's pool threads do not exist here, so never hand work to its copy
    if pool is None or _KERNEL_THREADS["size"] < t:
        if pool is not None:
            pool.close()
        pool = _KernelPool(t)
        _KERNEL_THREADS.update(pool=pool, size=t, pid=os.getpid())
    return pool


# Turns a pool thread spins (~0.5 µs each on the VM measured, one sched_yield) waiting for the
# next call before it blocks, and the caller waiting for the last piece. A LeNet step's calls
# come 0.1-1 ms apart. Spinning yields the CPU every turn, so another thread that wants it (an
# OpenBLAS worker, another process) gets it; after ~1 ms without work the thread sleeps.
SPIN_TURNS = 2000


class _KernelPool:
    """``size`` daemon threads that help run the pieces of one :func:`parallel_chunks` call at
    a time. The caller publishes a :class:`_Job` and bumps ``ticket``; a thread takes pieces
    until none is left, reports how many it finished, and waits for the next ticket: first by
    spinning (compiled, GIL released, yielding the CPU each turn: devices/_spin.py) for
    :data:`SPIN_TURNS` turns, then blocked on a condition variable that the next caller
    notifies. Without numba (or with TENSORCALC_JIT=0) the threads block at once.

    Why: waking a blocked thread cost 60-140 µs on the 2-vCPU VM measured (a halted vCPU is
    woken through the hypervisor); a spinning one starts in a few µs. The report and the wait
    are one compiled call, so the caller waiting for the count never finds this thread holding
    the GIL (a thread that waits for the GIL sleeps, and wakes as slowly)."""

    def __init__(self, size: int):
        from .devices.cpu_jit import spin_waiter

        self.spin = spin_waiter()
        # [ticket, piece function, desc, pieces, next, finished, 0, 0] (devices/_spin.py)
        self.slot = np.zeros(8, dtype=np.int64)
        self.ticket = self.slot[:1]
        self.nothing = np.zeros(1, dtype=np.int64)  # where a thread that took no piece adds 0
        self.job = None
        self.closed = False
        self.cond = threading.Condition()
        self.sleepers = 0
        self.busy = threading.Lock()  # one caller's job at a time
        self.threads = [threading.Thread(target=self._loop, name=f"tensorcalc-kernel_{i}",
                                         daemon=True) for i in range(size)]
        for th in self.threads:
            th.start()

    def _loop(self):
        seen, t = 0, 0
        while True:
            if t == seen:
                with self.cond:
                    self.sleepers += 1
                    while int(self.ticket[0]) == seen:
                        self.cond.wait()
                    self.sleepers -= 1
                    t = int(self.ticket[0])
            seen = t
            if self.closed:
                return
            job = self.job
            if self.spin is None:  # (jobs take the pool's spin: report under the job's lock)
                k = job.work() if job is not None else 0
                if k:
                    job.report(k)
                t = int(self.ticket[0])
                continue
            if int(self.slot[1]):  # a compiled job, seen after blocking: its pieces
                self.spin.run_pieces(self.slot, t)
                job, k = None, 0
            else:
                k = job.work() if job is not None else 0
            # report k, then spin for the next ticket, GIL released, running compiled jobs
            counter = job.finished if k else self.nothing
            t = int(self.spin.add_then_serve(counter, k, self.slot, seen, SPIN_TURNS))

    def start(self, job, piece_fn=0, desc=None, pieces=0):
        """Hand ``job`` (a :class:`_Job`, or None) or the compiled job ``piece_fn`` (an address,
        see devices/_spin.py) to the threads (the caller then takes pieces too, and waits);
        the new ticket."""
        self.job = job
        with self.cond:
            if self.spin is not None:
                t = int(self.spin.publish(self.slot, piece_fn,
                                          0 if desc is None else desc.ctypes.data, pieces))
            else:  # (no compiled jobs without numba; the threads read the ticket under cond)
                t = int(self.slot[0]) + 2
                self.slot[0] = t
            if self.sleepers:
                self.cond.notify_all()
        return t

    def close(self):
        self.closed = True
        self.start(None)


def split_range(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """[0, n) as ≤ ``parts`` contiguous (start, stop) ranges of near-equal length whose inner
    boundaries are multiples of ``align``; a function of (n, parts, align) only."""
    units = -(-n // align) if n > 0 else 0
    parts = max(1, min(parts, units))
    q, r = divmod(units, parts)
    out, s = [], 0
    for i in range(parts):
        e = min(n, (s // align + q + (i < r)) * align)
        out.append((s, e))
        s = e
    return out


# Work (elements) per piece for chains of NumPy passes (the elementwise kernels): every ufunc
# call hands the GIL back and forth between the threads (~10-20 µs a hand-off on this VM), so
# a piece must be long. GELU on 2 threads, one piece per chunk: 393k values in 2 pieces 1.7x
# the one-thread speed, in 4 1.0-1.4x, in 6 (64k) 0.8-0.95x; 1M values in 4 pieces 1.9-2.0x,
# in 8 1.75-1.8x, in 2 1.4-1.7x (benchmarks/RESULTS.md, round 4).
EW_PIECE = 200_000


def piece_count(cost: int, t: int, piece: int | None = None) -> int:
    """How many pieces :func:`parallel_chunks` cuts ``cost`` into for T = ``t`` threads:
    ``_PIECES_PER_THREAD`` per thread, or with ``piece`` (the least work worth a piece) as many
    per thread as fit, 1 to ``_PIECES_PER_THREAD``."""
    if piece is None:
        return t * _PIECES_PER_THREAD
    k = cost // (t * piece)
    return t * max(1, min(_PIECES_PER_THREAD, k))


def parallel_chunks(n: int, fn, *, min_size: int = PARALLEL_MIN, align: int = 1,
                    cost: int | None = None, serial_blas: bool = False,
                    piece: int | None = None):
    """Run ``fn(start, stop)`` over [0, n) and return the results in order.

    With T = :func:`kernel_threads` > 1 and ``cost`` (the elements touched; ``n`` by default) at
    least ``min_size``, [0, n) is cut into ≤ 4·T contiguous pieces (:func:`split_range`, inner
    boundaries multiples of ``align``) that the calling thread and T − 1 pool threads take one
    at a time from a shared counter; otherwise ``fn(0, n)`` runs once, here, and no pool is
    created. Taking pieces as they come (not one fixed range per thread) matters when a core is
    busy with something else: a pool thread that is not scheduled simply takes fewer pieces, or
    none, and the caller never waits for it to start — with fixed ranges the step stalled until
    it ran (a LeNet step 11 → 24 ms at 2 threads beside PyTorch's spinning OpenMP workers).
    ``fn`` must write disjoint outputs for disjoint ranges and compute each element as the
    serial call would (NumPy ufuncs on slices do): the result is then the same bits at any T.
    The pieces depend on (n, T, align, and ``cost`` with ``piece``) only, so results that ``fn``
    returns per piece (partial sums) are the same at every run with the same T. For NumPy
    arrays only.

    ``piece``: for ``fn`` that are chains of short NumPy passes, the least cost worth one
    piece (:data:`EW_PIECE`; :func:`piece_count`) — fewer, longer pieces, as each pass of each
    piece takes the GIL back.

    ``serial_blas``: ``fn`` calls BLAS (a GEMM per chunk). Then BLAS runs one thread per call
    while the pieces run side by side — T single-threaded GEMMs at once scale like one T-thread
    GEMM and leave nothing serial between them (OpenBLAS also serialises concurrent *threaded*
    level-3 calls) — and its thread count is restored afterwards. With T = 1 BLAS is untouched,
    so a chunk's GEMM is the same single-threaded call at any T.
    """
    ranges = chunk_ranges(n, min_size=min_size, align=align, cost=cost, piece=piece)
    if len(ranges) == 1:
        return [fn(0, n)]
    t = kernel_threads()
    _KERNEL_THREADS["calls"] += 1
    pool = _pool(t - 1)
    job = _Job(fn, ranges, pool.spin)
    if not pool.busy.acquire(blocking=False):
        # another thread's call holds the pool: the same pieces, here, one after another
        with single_thread_blas(serial_blas):
            return [_nested_serial(fn, *r) for r in ranges]
    try:
        with single_thread_blas(serial_blas):
            pool.start(job)
            # (every piece finished before anything returns or raises)
            return job.results(job.work())
    finally:
        pool.job = None
        pool.busy.release()


_PIECES_PER_THREAD = 4


def add_into(a, b):
    """a += b for arrays of one shape and dtype; returns a. Big NumPy float arrays of one
    memory layout (C-contiguous) go over the kernel pool at T > 1 as a compiled job (the
    bits of NumPy's add: one IEEE addition per value); everything else is the array module's
    own in-place add."""
    if getattr(a, "size", 0) >= _ADD_INTO_MIN and type(a) is np.ndarray \
            and type(b) is np.ndarray and a.flags.c_contiguous and b.flags.c_contiguous:
        from .devices import cpu_jobs

        af = a.reshape(-1)
        if cpu_jobs.binary("add", af, b.reshape(-1), af, _ADD_INTO_MIN):
            return a
    a += b
    return a


_ADD_INTO_MIN = 1 << 18


def chunk_ranges(n: int, *, min_size: int = PARALLEL_MIN, align: int = 1,
                 cost: int | None = None, piece: int | None = None) -> list[tuple[int, int]]:
    """The pieces :func:`parallel_chunks` cuts [0, n) into with these arguments: [(0, n)]
    where it runs serially (T = 1, under ``min_size``, inside another parallel call)."""
    size = n if cost is None else cost
    t = kernel_threads() if size >= min_size and n > 1 and not _INSIDE.active else 1
    if t <= 1:
        return [(0, n)]
    return split_range(n, piece_count(size, t, piece), align)


def parallel_compiled(pieces: int, piece_fn: int, desc, *, serial_blas: bool = False,
                      alongside=None):
    """Run pieces 0 … ``pieces`` − 1 of a compiled job on this thread and the kernel pool's:
    ``piece_fn`` is the address of a C function ``void piece(int64 desc, int64 i)`` (a numba
    cfunc, devices/cpu_jobs) and ``desc`` the int64 array (its address the first argument) from
    which it reads its arrays and its piece's range. As :func:`parallel_chunks` for Python
    pieces, but a pool thread runs these without taking the GIL (devices/_spin.py), so it
    starts within microseconds, not after the GIL's 25-40 µs hand-off. ``alongside``: a Python
    callable this thread runs first, while the pool takes pieces (then it takes what is
    left); its result is returned (else None). The pieces run here, one after another, at
    T = 1, inside another parallel call, or while another thread's call holds the pool.
    ``serial_blas``: as in parallel_chunks. Every piece has finished when this returns; the
    caller keeps ``desc`` and the arrays it points to alive until then."""
    t = kernel_threads() if (pieces > 1 or alongside is not None) and not _INSIDE.active \
        else 1
    pool = _pool(t - 1) if t > 1 else None
    if pool is None or pool.spin is None or not pool.busy.acquire(blocking=False):
        out = alongside() if alongside is not None else None
        _run_compiled_here(pieces, piece_fn, desc)
        return out
    try:
        _KERNEL_THREADS["calls"] += 1
        with single_thread_blas(serial_blas):
            tk = pool.start(None, piece_fn, desc, pieces)
            spin = pool.spin
            try:
                out = alongside() if alongside is not None else None
            finally:  # (the pieces finish before anything returns or raises)
                while int(spin.run_pieces_then_wait(pool.slot, tk, SPIN_TURNS)) != pieces:
                    time.sleep(50e-6)  # (a pool thread descheduled inside a piece)
        return out
    finally:
        pool.busy.release()


def _run_compiled_here(pieces, piece_fn, desc):
    """A compiled job's pieces on this thread, in order, through a slot of its own (a compiled
    job exists only where numba does)."""
    from .devices import _spin as spin

    slot = getattr(_INSIDE, "slot", None)
    if slot is None:
        slot = _INSIDE.slot = np.zeros(8, dtype=np.int64)
    tk = spin.publish(slot, piece_fn, desc.ctypes.data, pieces)
    spin.run_pieces_then_wait(slot, tk, 0)


class _Job:
    """The pieces of one parallel_chunks call, handed out by a shared counter; ``finished``
    counts the pieces done (each thread adds its own when it has no more to take)."""

    def __init__(self, fn, ranges, spin=None):
        import itertools

        self.fn, self.ranges = fn, ranges
        self.out = [None] * len(ranges)
        self.error = None
        self.next = itertools.count()  # next() on it is atomic under the GIL
        self.finished = np.zeros(1, dtype=np.int64)
        self.spin = spin
        if spin is None:
            self.lock = threading.Lock()
            self.done = threading.Event()

    def work(self) -> int:
        """Take pieces until none is left (a pool thread that starts late may take none); how
        many this thread finished."""
        n, k = len(self.ranges), 0
        while True:
            i = next(self.next)
            if i >= n:
                return k
            try:
                if self.error is None:
                    self.out[i] = _nested_serial(self.fn, *self.ranges[i])
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                self.error = e
            k += 1

    def report(self, k):
        """Without spinning: add k finished pieces under the lock; the last one sets done."""
        with self.lock:
            self.finished[0] += k
            if int(self.finished[0]) == len(self.ranges):
                self.done.set()

    def results(self, k):
        """The caller, having finished k pieces: wait for the pieces the pool threads took
        (spinning, with a short sleep between rounds should a thread be descheduled)."""
        n = len(self.ranges)
        if self.spin is None:
            self.report(k)
            self.done.wait()
        else:
            v = int(self.spin.add_then_spin_until(self.finished, k, n, SPIN_TURNS))
            while v != n:
                time.sleep(50e-6)
                v = int(self.spin.add_then_spin_until(self.finished, 0, n, SPIN_TURNS))
        if self.error is not None:
            raise self.error
        return self.out


_SERIAL_BLAS = {"lock": threading.Lock(), "depth": 0, "prev": None}


def _serial_controllers():
    """NumPy's BLAS, and SciPy's once :func:`register_scipy_blas` has loaded it."""
    extra = _KERNEL_THREADS["scipy_blas"]
    return (_KERNEL_THREADS["blas"],) + ((extra,) if extra else ())


def _serial_blas_enter():
    """BLAS at one thread while any serial_blas region runs (several user threads may be inside
    at once: the first saves the thread counts, the last restores them)."""
    st = _SERIAL_BLAS
    with st["lock"]:
        if st["depth"] == 0:
            fns = [_thread_fns(c) for c in _serial_controllers()]
            st["prev"] = [(put, get()) for get, put, _ in fns]
            for put, n in st["prev"]:
                if n != 1:
                    put(1)
        st["depth"] += 1


def _serial_blas_exit():
    st = _SERIAL_BLAS
    with st["lock"]:
        st["depth"] -= 1
        if st["depth"] == 0:
            for put, n in st["prev"]:
                if n != 1:
                    put(n)


_SMALL_KERNEL_FAMILIES = ("skylakex", "cooperlake", "sapphirerapids")
SMALL_GEMM = 100 ** 3  # multiply-adds up to which OpenBLAS's small-matrix kernels take a GEMM


def scipy_blas_small_kernels() -> bool:
    """SciPy's OpenBLAS runs one of its AVX-512 kernel families (SkylakeX, Cooperlake,
    SapphireRapids), whose GEMM has a small-matrix path (no packing for M·N·K ≤ SMALL_GEMM).
    With other kernels (Haswell: AVX2) splitting a product into such blocks is 5–15 % slower,
    measured with OPENBLAS_CORETYPE=Haswell."""
    if _KERNEL_THREADS["small"] is None:
        try:
            register_scipy_blas()
            arch = str(getattr(_KERNEL_THREADS["scipy_blas"], "architecture", "") or "")
        except Exception:  # pragma: no cover - SciPy's BLAS not inspectable: no blocks
            arch = ""
        _KERNEL_THREADS["small"] = arch.lower() in _SMALL_KERNEL_FAMILIES
    return _KERNEL_THREADS["small"]


def register_scipy_blas():
    """Load SciPy's BLAS (scipy.linalg.cython_blas: the kernel-row convolution calls its GEMM,
    which accumulates in place as NumPy's matmul does not) and register it with the pool's
    serial-BLAS regions: SciPy's wheels bundle a second OpenBLAS with threads of its own, which
    must run one thread per piece too."""
    import scipy.linalg.cython_blas  # noqa: F401

    if _KERNEL_THREADS["scipy_blas"] is None:
        _blas_threads()  # (NumPy's controller first: it is told apart from SciPy's by path)
        found = False
        try:
            from threadpoolctl import ThreadpoolController

            np_path = os.path.realpath(getattr(_KERNEL_THREADS["blas"], "filepath", "") or "")
            for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
                path = os.path.realpath(getattr(lib, "filepath", "") or "")
                if path != np_path and "scipy" in os.path.basename(os.path.dirname(path)):
                    found = lib
                    break
        except Exception:  # pragma: no cover - threadpoolctl missing or broken
            pass
        st = _SERIAL_BLAS
        with st["lock"]:
            if _KERNEL_THREADS["scipy_blas"] is None:
                _KERNEL_THREADS["scipy_blas"] = found
                if found and st["depth"] > 0:  # loaded inside a serial region (a pool piece's
                    # first blocked GEMM): one thread now, restored when the region ends
                    get, put, _ = _thread_fns(found)
                    st["prev"].append((put, get()))
                    if st["prev"][-1][1] != 1:
                        put(1)


class single_thread_blas:
    """``with single_thread_blas():`` NumPy's BLAS at one thread inside (when T > 1 kernel
    threads and ``when``): for the pool's GEMM pieces (parallel_chunks' ``serial_blas``) and
    for the row-sum GEMVs of ops.reduce."""

    def __init__(self, when: bool = True):
        self.when = when

    def __enter__(self):
        self.on = self.when and kernel_threads() > 1 and bool(_KERNEL_THREADS["blas"])
        if self.on:
            _serial_blas_enter()
        return self

    def __exit__(self, *exc):
        if self.on:
            _serial_blas_exit()
        return False


class _Inside(threading.local):
    active = False


_INSIDE = _Inside()


def _nested_serial(fn, s, e):
    """fn(s, e) with nested parallel_chunks calls run serially (no pool deadlock)."""
    _INSIDE.active = True
    try:
        return fn(s, e)
    finally:
        _INSIDE.active = False


def parallel_calls() -> int:
    """How many times :func:`parallel_chunks` has used the pool (for tests)."""
    return _KERNEL_THREADS["calls"]
