"""Cost of the training diagnostics (GradientFlow) in the demo's run: `tensorcalc demo` trains
the lenet recipe; this trains the same recipe, same seed, with the diagnostics on (the default,
sampled every 50 steps) and off (``--diagnostics 0``), alternately, each run in a fresh process,
and compares the training (``fit``) time: process CPU time (user + system of every thread: the
figure least disturbed by other jobs on a shared machine) and wall time, as medians of the
paired runs. Also prints the callback's own timer (``GradientFlow.seconds``).

    python benchmarks/bench_diagnostics.py [--pairs 3] [--epochs N] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, sys, time
from tensorcalc.train import pipeline as P
from tensorcalc.diagnostics.flow import find
over = json.loads(sys.argv[1]); out = sys.argv[2]
recipe = P.get_recipe("lenet")
cfg = P.validate_config(recipe, recipe.config(over))
data = P.prepare_data(recipe, cfg)
tr, loader = P.build_trainer(recipe, cfg, data, data.train, out, quiet=True, progress=False)
val = P._loader(data.val, 1000)
c0, w0 = time.process_time(), time.perf_counter()
tr.fit(loader, val, epochs=cfg["epochs"])
c1, w1 = time.process_time(), time.perf_counter()
f = find(tr)
print(json.dumps({"cpu": c1 - c0, "wall": w1 - w0, "steps": tr.global_step,
                  "flow_seconds": f.seconds if f else 0.0,
                  "samples": len(f.records) if f else 0,
                  "val_acc": tr.history[-1].get("val_acc")}))
"""


def run(over: dict) -> dict:
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(over), d],
                           capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="[the recipe's: the demo]")
    ap.add_argument("--limit", type=int, default=0)
    ns = ap.parse_args(argv)
    base = {"limit": ns.limit} | ({"epochs": ns.epochs} if ns.epochs else {})
    res = {"on": [], "off": []}
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for i in range(ns.pairs):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for mode in order:
            r = run(base | {"diagnostics": 50 if mode == "on" else 0})
            res[mode].append(r)
            print(f"pair {i + 1} {mode:>3}: cpu {r['cpu']:.2f} s  wall {r['wall']:.2f} s  "
                  f"steps {r['steps']}  callback {r['flow_seconds']:.3f} s in "
                  f"{r['samples']} samples  val_acc {r['val_acc']}  ({time.strftime('%X')})",
                  flush=True)
    med = {m: {k: statistics.median(r[k] for r in res[m]) for k in ("cpu", "wall")}
           for m in res}
    pair_cpu = [a["cpu"] / b["cpu"] - 1 for a, b in zip(res["on"], res["off"], strict=True)]
    pair_wall = [a["wall"] / b["wall"] - 1 for a, b in zip(res["on"], res["off"], strict=True)]
    own = statistics.median(r["flow_seconds"] / r["wall"] for r in res["on"])
    print(f"median cpu: on {med['on']['cpu']:.2f} s, off {med['off']['cpu']:.2f} s -> "
          f"{100 * (med['on']['cpu'] / med['off']['cpu'] - 1):+.2f} %; paired "
          f"{', '.join(f'{100 * x:+.2f} %' for x in pair_cpu)}")
    print(f"median wall: on {med['on']['wall']:.2f} s, off {med['off']['wall']:.2f} s -> "
          f"{100 * (med['on']['wall'] / med['off']['wall'] - 1):+.2f} %; paired "
          f"{', '.join(f'{100 * x:+.2f} %' for x in pair_wall)}")
    print(f"the callback's own timer: {100 * own:.2f} % of the training wall time (median)")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
