"""Shared benchmark harness: paired timing, machine/version info, ratios, RESULTS.md sections.

Timing protocol (:func:`compare`)
---------------------------------
* Every callable is first calibrated: the number of calls per sample (``inner``) is chosen so one
  sample lasts about ``target_s`` (default 20 ms), which keeps timer resolution and per-sample
  bookkeeping negligible while giving many samples.
* ``warmup`` samples of each are run and discarded (caches, allocator pools, lazy imports).
* Then ``repeat`` rounds; in each round every callable is timed for one sample, in an order that
  alternates between rounds (ABAB..., then BABA...). Machine noise (other processes on the 2 cores,
  frequency changes) therefore hits both libraries alike, and the *ratio* stays meaningful even
  when the absolute figures drift.
* Reported per callable: median seconds per call and the inter-quartile range (IQR, q75 − q25).
  Ratio = median(tensorcalc) / median(pytorch): ≤ 1 means tensorcalc is as fast or faster.

Results are printed and, on request, written into ``benchmarks/RESULTS.md`` as a section between
``<!-- BEGIN <name> -->`` and ``<!-- END <name> -->`` markers (replaced if present, else appended),
so each bench refreshes only its own section and ``run_all.py`` rewrites the whole file.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# tensorcalc's BLAS environment (OPENBLAS_CORETYPE on AVX-512, OPENBLAS_THREAD_TIMEOUT) is set
# by tensorcalc.backend only before NumPy loads: import it first, as a user importing tensorcalc
# first gets it. Without the spin timeout, OpenBLAS's idle workers hold the second core for
# ~0.1 s after every call and paired 2-thread rows measure that contention (RESULTS.md).
import tensorcalc.backend  # noqa: E402,F401

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"

ENV_VARS = ("TENSORCALC_JIT", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "TENSORCALC_NO_MALLOPT", "TENSORCALC_NO_BLAS_TUNING",
            "OPENBLAS_THREAD_TIMEOUT")


# ---------------------------------------------------------------------------------------- timing
@dataclass
class Stat:
    """Seconds per call: median and quartiles over the samples."""

    median: float
    q25: float
    q75: float
    min: float
    n: int
    inner: int
    samples: list = field(default_factory=list, repr=False)

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25

    def fmt(self) -> str:
        return f"{fmt_time(self.median)} (IQR {fmt_time(self.iqr)})"


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.3f} s"


def _stat(samples, inner) -> Stat:
    qs = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [
        samples[0]] * 3
    return Stat(statistics.median(samples), qs[0], qs[2], min(samples), len(samples), inner,
                list(samples))


def _calibrate(fn, target_s: float) -> int:
    """Calls per sample so that one sample lasts about ``target_s``."""
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t0
        if dt >= target_s / 4 or inner >= 1 << 20:
            return max(1, int(round(inner * target_s / max(dt, 1e-9))))
        inner *= 4


_CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_state = {"clock": "wall"}


def set_clock(name: str) -> None:
    """'wall' (time.perf_counter, the default) or 'cpu' (time.process_time: CPU seconds of this
    process, all its threads; with 1 thread it is immune to time spent waiting for a core that
    another job holds, which makes it the steadier figure on a shared machine)."""
    if name not in _CLOCK:
        raise ValueError(f"clock must be one of {sorted(_CLOCK)}, got {name!r}")
    _state["clock"] = name


def compare(fns: dict, repeat: int = 30, warmup: int = 3, target_s: float = 0.02) -> dict:
    """Time several zero-argument callables alternately; return {name: Stat} (seconds per call).

    A value may also be ``(fn, before, after)``: ``before()``/``after()`` run around each sample,
    outside the timed region (used to switch monkeypatches on and off).

    With more than one thread (:func:`set_threads`), every timed sample follows one untimed call
    of the same callable: each library is timed in its own steady state, not while the other's
    idle workers still spin. (PyTorch's OpenMP workers busy-wait after each parallel region;
    a tensorcalc step timed right after a PyTorch step shared the second core with them — the
    2-thread transformer block measured 31-37 ms that way against ~29 alone.)"""
    names = list(fns)
    hooks = {}
    for k in names:  # a value may be (fn, before, after): hooks run outside the timed region
        if isinstance(fns[k], tuple):
            fn, before, after = fns[k]
            hooks[k] = (before, after)
            fns = {**fns, k: fn}
    noop = (lambda: None, lambda: None)
    inners = {}
    for k in names:
        before, after = hooks.get(k, noop)
        before()
        inners[k] = _calibrate(fns[k], target_s)
        after()
    samples = {k: [] for k in names}
    pc = _CLOCK[_state["clock"]]
    for r in range(warmup + repeat):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            fn, inner = fns[k], inners[k]
            before, after = hooks.get(k, noop)
            before()
            if _state.get("threads", 1) > 1:
                fn()  # settle: this library's threads warm, the other's asleep
            t0 = pc()
            for _ in range(inner):
                fn()
            dt = (pc() - t0) / inner
            after()
            if r >= warmup:
                samples[k].append(dt)
    return {k: _stat(samples[k], inners[k]) for k in names}


def time_one(fn, repeat: int = 30, warmup: int = 3, target_s: float = 0.02) -> Stat:
    return compare({"x": fn}, repeat, warmup, target_s)["x"]


# ------------------------------------------------------------------------------------- results
@dataclass
class Row:
    """One benchmark line: tensorcalc vs pytorch (either may be None for one-sided figures)."""

    bench: str
    case: str
    tc: float | None  # seconds per call (median)
    torch: float | None
    tc_iqr: float | None = None
    torch_iqr: float | None = None
    target: float | None = None  # the ratio tensorcalc/pytorch must be <= target
    note: str = ""
    tc_min: float | None = None  # fastest sample: the figure least disturbed by other jobs
    torch_min: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.tc is None or self.torch is None:
            return None
        return self.tc / self.torch

    @property
    def ratio_min(self) -> float | None:
        if self.tc_min is None or self.torch_min is None:
            return None
        return self.tc_min / self.torch_min

    @property
    def passed(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.ratio <= self.target

    def to_json(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["ratio_min"] = self.ratio_min
        d["passed"] = self.passed
        return d

    @classmethod
    def from_json(cls, d) -> Row:
        d = {k: v for k, v in d.items() if k not in ("ratio", "ratio_min", "passed")}
        return cls(**d)


def row_from_stats(bench, case, stats, target=None, note="", tc_key="tensorcalc",
                   torch_key="pytorch") -> Row:
    a, b = stats.get(tc_key), stats.get(torch_key)
    return Row(bench, case, a and a.median, b and b.median, a and a.iqr, b and b.iqr, target,
               note, a and a.min, b and b.min)


def _t(s):
    return "—" if s is None else fmt_time(s)


def rows_table(rows) -> str:
    """Markdown table of rows."""
    out = ["| bench | case | tensorcalc median ± IQR (min) | PyTorch median ± IQR (min) "
           "| ratio tc/pt (median) | ratio (min) | target | pass |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tc = "—" if r.tc is None else f"{_t(r.tc)} ± {_t(r.tc_iqr)} ({_t(r.tc_min)})"
        pt = "—" if r.torch is None else f"{_t(r.torch)} ± {_t(r.torch_iqr)} ({_t(r.torch_min)})"
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}x"
        rmin = "—" if r.ratio_min is None else f"{r.ratio_min:.2f}x"
        target = "—" if r.target is None else f"≤ {r.target:.1f}x"
        ok = {True: "PASS", False: "**FAIL**", None: "—"}[r.passed]
        case = r.case + (f" ({r.note})" if r.note else "")
        out.append(f"| {r.bench} | {case} | {tc} | {pt} | {ratio} | {rmin} | {target} | {ok} |")
    return "\n".join(out)


def print_rows(rows) -> None:
    for r in rows:
        ratio = "" if r.ratio is None else f"  ratio {r.ratio:.2f}x (min {r.ratio_min:.2f}x)"
        tgt = "" if r.target is None else f" (target ≤ {r.target}x: " \
            f"{'PASS' if r.passed else 'FAIL'})"
        print(f"[{r.bench}] {r.case}: tensorcalc {_t(r.tc)} ± {_t(r.tc_iqr)} | "
              f"pytorch {_t(r.torch)} ± {_t(r.torch_iqr)}{ratio}{tgt}"
              + (f"  [{r.note}]" if r.note else ""))


# ------------------------------------------------------------------------------ machine / versions
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_family_model() -> str:
    fam = mod = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu family"):
                    fam = line.split(":", 1)[1].strip()
                elif line.startswith("model\t") or line.startswith("model  "):
                    mod = line.split(":", 1)[1].strip()
                if fam and mod:
                    break
    except OSError:
        pass
    return f"family {fam} model {mod}"


def blas_info() -> list[dict]:
    """NumPy's BLAS as threadpoolctl sees it (library, version, kernel, threads)."""
    import numpy as np  # noqa: F401  (load it so its BLAS shows up)
    import scipy.linalg  # noqa: F401  (and SciPy's own OpenBLAS)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        cfg = np.show_config(mode="dicts")
        b = cfg.get("Build Dependencies", {}).get("blas", {})
        return [{"internal_api": b.get("name"), "version": b.get("version"),
                 "architecture": "?", "num_threads": "?"}]
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer", "filepath")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def machine_info() -> dict:
    import numpy as np
    import scipy

    import tensorcalc
    from tensorcalc import backend

    info = {
        "cpu": cpu_model(),
        "cpu_id": cpu_family_model(),
        "cores": os.cpu_count(),
        "avx2": "avx2" in cpu_flags(),
        "avx512f": "avx512f" in cpu_flags(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "tensorcalc": getattr(tensorcalc, "__version__", "?"),
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "tc_blas_tuning": backend.BLAS_TUNING,
        "tc_malloc_tuned": backend.MALLOC_TUNED,
    }
    from tensorcalc.devices import cpu_jit

    if cpu_jit.enabled():
        import numba

        info["tc_jit"] = f"numba {numba.__version__}"
    else:
        info["tc_jit"] = f"off ({cpu_jit._STATE['why'] or 'TENSORCALC_JIT=0'})"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        cfg = torch.__config__.show()
        m = re.search(r"CPU capability usage: (\S+)", cfg)
        info["torch_cpu_capability"] = m.group(1) if m else "?"
        info["torch_blas"] = ("MKL" if "USE_MKL=ON" in cfg else "") + (
            " mkldnn" if "USE_MKLDNN=ON" in cfg else "")
    except ImportError:
        info["torch"] = None
    info["blas"] = blas_info()
    try:
        with open("/proc/loadavg") as f:
            info["loadavg"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def machine_md(info: dict) -> str:
    lines = [
        f"- CPU: {info['cpu']} ({info['cpu_id']}), {info['cores']} cores visible; "
        f"AVX2: {'yes' if info['avx2'] else 'no'}; AVX-512F: "
        f"{'yes' if info['avx512f'] else '**no**'}",
        f"- Python {info['python']} on {info['platform']}",
        f"- numpy {info['numpy']}, scipy {info['scipy']}, tensorcalc {info['tensorcalc']}, "
        f"torch {info.get('torch')} (threads {info.get('torch_threads')}, CPU capability "
        f"{info.get('torch_cpu_capability')}, BLAS:{info.get('torch_blas')})",
    ]
    for b in info["blas"]:
        lines.append(
            f"- BLAS: {b.get('internal_api')} {b.get('version')} kernel "
            f"`{b.get('architecture')}`, {b.get('num_threads')} threads, "
            f"threading {b.get('threading_layer')} ({b.get('prefix')}"
            f"{', ' + b.get('user_api') if b.get('user_api') else ''})")
    env = ", ".join(f"{k}={v}" for k, v in info["env"].items() if v is not None) or "none set"
    lines.append(f"- environment: {env}; tensorcalc.backend: BLAS_TUNING="
                 f"{info['tc_blas_tuning']}, MALLOC_TUNED={info['tc_malloc_tuned']}; compiled "
                 f"kernels (devices/cpu_jit.py): {info.get('tc_jit')}")
    if "loadavg" in info:
        lines.append(f"- load average at start: {' '.join(info['loadavg'])} (shared machine: "
                     "other jobs may be running; ratios are paired, absolute times drift)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- RESULTS.md
def write_section(name: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replace (or append) the section delimited by BEGIN/END markers for ``name``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# tensorcalc benchmarks\n"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _m: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text if text.endswith("\n") else text + "\n")


def load_at_end(info: dict) -> str:
    """The load average now (``?`` where unknown), printed beside the one at start."""
    try:
        with open("/proc/loadavg") as f:
            end = " ".join(f.read().split()[:3])
    except OSError:
        end = "?"
    print(f"load average at start {' '.join(info.get('loadavg', ['?']))}, at end {end}")
    return end


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


# ------------------------------------------------------------------------------------ CLI glue
def torch_available() -> bool:
    """PyTorch importable (the side-by-side figures); says so when it is not."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch not installed: tensorcalc figures only")
        return False
    return True


def thread_counts(args) -> list:
    """The thread counts a bench runs: ``--threads N``, or 1 and then 2 (in one process)."""
    return [args.threads] if args.threads else [1, 2]


def add_common_args(p):
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    p.add_argument("--write", action="store_true", help="refresh this bench's RESULTS.md section")
    p.add_argument("--json", type=str, default=None, help="also dump rows to this JSON file")
    p.add_argument("--threads", type=int, default=None,
                   help="limit BOTH libraries to this many threads (default: each library's "
                        "own default, which on this machine is the core count for both)")
    p.add_argument("--clock", choices=sorted(_CLOCK), default="wall",
                   help="wall: perf_counter (default); cpu: process CPU time (see set_clock)")
    return p


_limits = []


def set_threads(n) -> None:
    """Same thread count for both: torch.set_num_threads(n) and threadpoolctl on NumPy's BLAS."""
    if n is None:
        return
    _state["threads"] = int(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        os.environ["OPENBLAS_NUM_THREADS"] = str(n)  # only effective before numpy loads
        return
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401  (SciPy bundles its own OpenBLAS; load it so it is limited too)

    _limits.append(threadpool_limits(limits=n))


def dump_json(path, rows, extra=None):
    if path:
        payload = {"rows": [r.to_json() for r in rows], "extra": extra or {}}
        Path(path).write_text(json.dumps(payload, indent=1, default=str))
