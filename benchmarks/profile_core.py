"""Where tensorcalc's time goes in the core benchmarks: cProfile per step, plus targeted timings.

    .venv-bench/bin/python benchmarks/profile_core.py [a|b|c|nn-sgd|nn-adam ...] [--top N]

For each case: total time per step with and without the profiler, then the top functions by
own time (tottime) in µs per step, and the cumulative time of the engine's main parts
(forward ``Function.apply``, ``run_backward``, each primitive's ``vjp``, ``_fit``/``sum_to``,
the optimiser step). cProfile inflates Python-heavy code (each call costs ~0.1–0.3 µs extra),
so read the µs as relative weights; the "micro" section times single pieces without it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402


def case_fns():
    fns = {}

    def a():
        return bench_core.make_overhead()["tensorcalc"]

    fns["a"] = a
    fns["b"] = lambda: bench_core.make_tc_step((784, 256, 256, 10), 128)[0]
    fns["c"] = lambda: bench_core.make_tc_step((2, 16, 16, 2), 32)[0]

    def nn_step(name):
        def mk():
            import bench_nn

            return bench_nn.make_steps(name)["tensorcalc"]

        return mk

    fns["nn-sgd"] = nn_step("SGD")
    fns["nn-adam"] = nn_step("Adam")
    return fns


_timer = {"f": time.perf_counter}


def per_step(fn, n):
    clock = _timer["f"]
    for _ in range(5):
        fn()
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n


def profile(name, fn, n, top):
    plain = min(per_step(fn, n) for _ in range(3))
    pr = cProfile.Profile(_timer["f"])
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    st = pstats.Stats(pr)
    total = st.total_tt / n
    print(f"\n=== {name}: {plain * 1e6:.1f} µs/step without profiler, {total * 1e6:.1f} µs/step "
          f"under cProfile ({n} steps) ===")
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        short = f"{Path(file).name}:{line}({func})" if file != "~" else func
        rows.append((tt / n, ct / n, nc / n, short))
    print(f"{'own µs/step':>12} {'cum µs/step':>12} {'calls/step':>10}  function")
    for tt, ct, nc, short in sorted(rows, reverse=True)[:top]:
        print(f"{tt * 1e6:12.1f} {ct * 1e6:12.1f} {nc:10.1f}  {short}")
    print("-- cumulative, selected:")
    keys = ("(apply)", "(run_backward)", "(vjp)", "(_fit)", "(sum_to)", "(_wrap)", "(step)",
            "(forward)", "(_check_versions)", "(heappush)", "(heappop)", "(push)",
            "(matmul)", "(logsumexp)", "(cross_entropy)", "(__call__)", "(zero_grad)",
            "(add_)", "(update)", "(_new_node)", "(swapaxes)", "(transpose)", "(backward)")
    agg = {}
    for tt, ct, nc, short in rows:
        for k in keys:
            if short.endswith(k):
                a = agg.setdefault(short, [0.0, 0.0, 0.0])
                a[0] += tt
                a[1] += ct
                a[2] += nc
    for short, (tt, ct, nc) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{tt * 1e6:12.1f} {ct * 1e6:12.1f} {nc:10.1f}  {short}")


def micro():
    """Single pieces timed without the profiler (best of several)."""
    from tensorcalc.autodiff.function import Function  # noqa: F401
    from tensorcalc.ops.arithmetic import Add, Mul

    def best(f, n=20000):
        r = []
        clock = _timer["f"]
        for _ in range(5):
            t0 = clock()
            for _ in range(n):
                f()
            r.append((clock() - t0) / n)
        return min(r) * 1e6

    x = tc.tensor(np.ones(10, np.float32), requires_grad=True)
    xc = tc.tensor(np.ones(10, np.float32))
    xd = np.ones(10, np.float32)
    print("\n=== micro (µs per call, best of 5) ===")
    print(f"numpy x*2 on 10 elements:                       {best(lambda: xd * 2):6.2f}")
    print(f"numpy x*2+1 then sum:                           "
          f"{best(lambda: (xd * 2 + 1).sum()):6.2f}")
    print(f"Mul.apply(x, 2), x requires grad (records):     {best(lambda: Mul.apply(x, 2)):6.2f}")
    print(f"Mul.apply(x, 2), constant x (no node):          {best(lambda: Mul.apply(xc, 2)):6.2f}")
    print(f"x * 2 via operator (tc.mul wrapper + apply):    {best(lambda: x * 2):6.2f}")
    print(f"Add.apply(x, 1):                                {best(lambda: Add.apply(x, 1)):6.2f}")
    print(f"tc.Tensor._wrap(arr, None, 0):                  "
          f"{best(lambda: tc.Tensor._wrap(xd, None, 0)):6.2f}")
    with tc.no_grad():
        print(f"x * 2 under no_grad:                            {best(lambda: x * 2):6.2f}")

    def fb():
        y = x * 2 + 1
        s = y.sum()
        s.backward()
        x.grad = None

    def fwd():
        y = x * 2 + 1
        return y.sum()

    print(f"forward only x*2+1, sum (3 nodes):              {best(fwd, 5000):6.2f}")
    print(f"forward + backward + grad=None:                 {best(fb, 5000):6.2f}")
    # pieces of the tiny-MLP backward, on raw arrays (what a plain backward runs)
    from tensorcalc.ops.matmul import Matmul, _mT
    from tensorcalc.ops.shape import sum_to

    g = np.ones((32, 16), np.float32)
    w = np.ones((16, 16), np.float32)
    print(f"np.matmul (32,16)@(16,16):                      {best(lambda: g @ w):6.2f}")
    print(f"Matmul.apply on raw arrays (same):              "
          f"{best(lambda: Matmul.apply(g, w)):6.2f}")
    print(f"_mT(w) raw (SwapAxes.apply) vs w.T:             {best(lambda: _mT(w)):6.2f} vs "
          f"{best(lambda: w.T):6.2f}")
    print(f"sum_to(g, (16,)) raw vs g.sum(0):               "
          f"{best(lambda: sum_to(g, (16,))):6.2f} vs {best(lambda: g.sum(0)):6.2f}")
    p = tc.tensor(np.ones((16, 16), np.float32), requires_grad=True)
    pg = np.ones((16, 16), np.float32)

    def add_():
        with tc.no_grad():
            p.add_(pg, alpha=-0.01)

    def raw_():
        p.data -= 0.01 * pg

    print(f"no_grad + p.add_(g, alpha) vs p.data -= lr*g:   {best(add_):6.2f} vs {best(raw_):6.2f}")
    print(f"entering tc.no_grad() alone:                    "
          f"{best(lambda: tc.no_grad().__enter__()):6.2f}")
    try:
        import torch

        xt = torch.ones(10, requires_grad=True)

        def tfb():
            y = xt * 2 + 1
            y.sum().backward()
            xt.grad = None

        print(f"torch forward + backward:                       {best(tfb, 5000):6.2f}")
        print(f"torch x*2 (records):                            {best(lambda: xt * 2):6.2f}")
    except ImportError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=["a", "b", "c"])
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--micro", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cpu", action="store_true", help="profile with process CPU time (robust "
                    "to other jobs on the machine when single-threaded)")
    args = ap.parse_args()
    import common

    common.set_threads(args.threads)
    if args.cpu:
        _timer["f"] = time.process_time
    fns = case_fns()
    for c in args.cases:
        fn = fns[c]()
        n = {"a": 3000, "c": 1000}.get(c, 200)
        profile(c, fn, n, args.top)
    if args.micro:
        micro()


if __name__ == "__main__":
    main()
