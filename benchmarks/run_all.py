"""Run every benchmark and refresh benchmarks/RESULTS.md (machine, versions, figures, targets).

Each bench runs in its own fresh process (so environment experiments — OPENBLAS_CORETYPE,
TENSORCALC_NO_MALLOPT, thread limits — start clean), writes JSON, and this script assembles the
marked sections of RESULTS.md. Hand-written text outside the markers is kept.

    cd /work/main && .venv-bench/bin/python benchmarks/run_all.py [--quick] [--no-write]

Headline figures use each library's default thread count (both = number of cores). The same
headline benches are repeated with both libraries limited to 1 thread: on a shared 2-core machine
the multi-threaded figures are at the mercy of other jobs (a BLAS or OpenMP thread that loses its
core stalls the whole call), and the 1-thread ratios are the steadier measure of the library's
own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


def run_bench(script, args, quick):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, str(HERE / script), "--json", out, *args] + (["--quick"] if quick
                                                                         else [])
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, text=True, capture_output=True)
    sys.stdout.write(p.stdout)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"{script} {' '.join(args)} failed (rc {p.returncode})")
    print(f"  ({time.time() - t0:.0f} s)", flush=True)
    text = Path(out).read_text()
    os.unlink(out)
    data = json.loads(text) if text.strip() else {"rows": []}  # a bench that writes no rows
    rows = [common.Row.from_json(r) for r in data["rows"]]
    return rows, data.get("extra", {})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    q = args.quick
    t_start = time.time()

    info = common.machine_info()
    core, core_x = run_bench("bench_core.py", ["--only", "a,b,c,gemm"], q)
    core1, _ = run_bench("bench_core.py", ["--only", "a,b,c", "--threads", "1"], q)
    core1c, _ = run_bench("bench_core.py", ["--only", "a,b,c", "--threads", "1", "--clock",
                                            "cpu"], q)
    nn, nn_x = run_bench("bench_nn.py", [], q)
    nn1, _ = run_bench("bench_nn.py", ["--threads", "1"], q)
    nn1c, _ = run_bench("bench_nn.py", ["--threads", "1", "--clock", "cpu"], q)
    lenet, _ = run_bench("bench_lenet.py", ["--write"] if not args.no_write else [], q)
    lenet1c, _ = run_bench("bench_lenet.py", ["--threads", "1", "--clock", "cpu"], q)
    # Environment experiments on 1 thread, CPU time (user + sys, so page faults count): with
    # 2 threads on a busy 2-core machine the wall-clock figures measure the other jobs.
    tune, tune_x = run_bench("bench_core.py", ["--only", "coretype,malloc", "--threads", "1",
                                               "--clock", "cpu"], q)

    def headline(rows):
        return [r for r in rows if r.target is not None]

    for r in core1 + nn1:
        r.bench += ", 1 thread each"
    for r in core1c + nn1c + lenet1c:
        r.bench += ", 1 thread each, CPU time"
    summary = (headline(core) + headline(nn) + headline(lenet) + headline(core1) + headline(nn1)
               + headline(core1c) + headline(nn1c) + headline(lenet1c))
    n_pass = sum(bool(r.passed) for r in summary)

    print()
    common.print_rows(summary)
    print(f"{n_pass}/{len(summary)} targets met; total {time.time() - t_start:.0f} s")
    if args.no_write:
        return summary

    common.write_section("machine", "\n".join([
        f"## Machine and versions — {common.stamp()}", "",
        common.machine_md(info), "",
        "Reproduce: `python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -e . "
        "&& .venv-bench/bin/pip install torch==2.13.0 threadpoolctl` then "
        "`.venv-bench/bin/python benchmarks/run_all.py`.",
    ]))
    common.write_section("summary", "\n".join([
        "## Summary: targets (ratio = tensorcalc time / PyTorch time; ≤ 1 is as fast or faster)",
        "",
        "Pass/fail is judged on the median ratio. Both libraries are timed alternately in the "
        "same process (paired samples); `min` is the fastest sample of each, the figure least "
        "disturbed by other jobs on this shared machine.", "",
        common.rows_table(summary), "",
        f"**{n_pass}/{len(summary)} targets met** (over the three configurations: default "
        "threads wall-clock — the official one —, 1 thread wall-clock, 1 thread CPU time)."
        + (" (quick run)" if q else ""),
    ]))
    notes_ct = [n for n in tune_x.get("notes", []) if "CORETYPE" in n]
    notes_ma = [n for n in tune_x.get("notes", []) if "mallopt" in n]
    if not q:
        run_bench("bench_fftconv.py", ["--write"], q)
    ct_rows = [r for r in tune if r.bench.startswith("coretype")]
    ma_rows = [r for r in tune if r.bench.startswith("mallopt")]
    common.write_section("core", "\n".join([
        "## Core ops, all figures (bench_core.py, default threads)", "",
        common.rows_table(core), "",
        "### The same with 1 thread each (torch.set_num_threads(1), threadpoolctl on OpenBLAS)",
        "", common.rows_table(core1), "",
        "### 1 thread each, process CPU time (time.process_time) instead of wall-clock", "",
        common.rows_table(core1c),
    ]))
    common.write_section("nn", "\n".join([
        "## nn / optim (bench_nn.py)", "",
        common.rows_table(nn + nn1 + nn1c) if nn else f"(not run: {nn_x.get('skipped')})",
    ]))
    common.write_section("tuning", "\n".join([
        "## Machine tuning experiments (each configuration in a fresh process; 1 thread each, "
        "process CPU time = user + sys, so page-fault time counts)", "",
        "### OPENBLAS_CORETYPE (tensorcalc column = NumPy/OpenBLAS; PyTorch uses MKL and is "
        "unaffected)", "",
        common.rows_table(ct_rows) if ct_rows else "(no rows)", "",
        *[f"- {n}" for n in notes_ct], "",
        "### glibc malloc: tensorcalc.backend's mallopt(M_MMAP_THRESHOLD=32 MiB, "
        "M_TRIM_THRESHOLD=2 GiB−1), the default, vs TENSORCALC_NO_MALLOPT=1", "",
        "mallopt is process-wide: it changes PyTorch's CPU allocations in the same process too.",
        "", common.rows_table(ma_rows) if ma_rows else "(no rows)", "",
        *[f"- {n}" for n in notes_ma],
    ]))
    print(f"wrote {common.RESULTS_MD}")
    return summary


if __name__ == "__main__":
    main()
