"""MPI data parallelism: allreduce cost and 1 vs P processes per epoch (issue 17).

Two parts; run each as shown (OPENBLAS_NUM_THREADS=1: one BLAS thread per process):

  # 1. allreduce of a model's gradient buffer: one buffer / 4 MB buckets / per tensor,
  #    MPI's own blocking wait ("spin") vs tensorcalc's yielding wait ("yield")
  .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/bench_mpi.py allreduce

  # 2. one epoch of a recipe: time per epoch, compute and communication per step
  .venv/bin/python benchmarks/bench_mpi.py epoch mlp --epochs 1            # 1 process
  .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/bench_mpi.py epoch mlp --epochs 1

Each prints one JSON line (rank 0) that benchmarks/RESULTS.md quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def bench_allreduce(reps: int) -> None:
    import tensorcalc as tc
    from tensorcalc import distributed as dist
    from tensorcalc.distributed.allreduce import GradientAverager
    from tensorcalc.models import build_mlp

    w = dist.world()
    out = {"what": "allreduce", "procs": w.size, "load": os.getloadavg()}
    models = {
        "mlp 784-256-128-10": lambda: build_mlp(784, (256, 128), 10, np.random.default_rng(0), 0.0),
        "lenet": lambda: tc.models.LeNet5(1, 10, rng=np.random.default_rng(0)),
    }
    for name, make in models.items():
        model = make()
        params = list(model.parameters())
        for p in params:
            p.grad = tc.Tensor(np.ones(p.shape, np.float32))
        res = {"parameters": sum(p.size for p in params), "tensors": len(params)}
        for mode, mb in (("buckets", 0), ("buckets", 0.25), ("per_tensor", 0)):
            for waiting in ("spin", "yield"):
                os.environ["TENSORCALC_MPI_WAIT"] = waiting
                avg = GradientAverager(params, w, bucket_mb=mb, mode=mode)
                for p in params:  # fresh grads each time: grad_vector rebinds them
                    p.grad = tc.Tensor(np.ones(p.shape, np.float32))
                avg.average(1.0)  # warm-up
                w.barrier()
                avg.seconds = 0.0
                for _ in range(reps):
                    avg.average(1.0 / w.size)
                label = ("one buffer" if mb == 0 else f"{mb:g} MB buckets") \
                    if mode == "buckets" else "per tensor"
                res[f"{label}, {waiting}"] = {
                    "ms": round(1e3 * avg.seconds / reps, 3), "calls": len(avg.buckets)
                    if mode == "buckets" else len(params),
                    "bytes": int(avg.flat.numel * 4)}
        out[name] = res
    if w.rank == 0:
        print(json.dumps(out))
    dist.finish()


def bench_epoch(recipe: str, epochs: int, extra: list) -> None:
    from tensorcalc import distributed as dist
    from tensorcalc.recipes import train_recipe

    w = dist.world()
    overrides = {"epochs": epochs}
    for kv in extra:
        k, v = kv.split("=", 1)
        overrides[k] = type(v)(v)
    out_dir = f"/tmp/bench_mpi_{recipe}_{w.size}"
    t = time.perf_counter()
    res = train_recipe(recipe, overrides, out_dir=out_dir, quiet=True, overwrite=True,
                       report=False, progress=False)
    wall = time.perf_counter() - t
    dp = None
    if res.trainer is not None:
        dp = next((c for c in res.trainer.loop.callbacks
                   if type(c).__name__ == "DataParallel"), None)
    if w.rank == 0:
        h = res.history
        steps = res.trainer.loop.global_step
        row = {"what": "epoch", "recipe": recipe, "procs": w.size, "threads": 1,
               "epochs": len(h), "steps": steps,
               "seconds_per_epoch": round(res.train_seconds / len(h), 3),
               "wall_s_incl_setup_and_test": round(wall, 2),
               "test": {k: round(v, 4) for k, v in res.test.items() if k in ("acc", "loss")},
               "load": os.getloadavg()}
        if dp is not None:
            a = dp.averager
            row.update(allreduce_ms_per_step=round(1e3 * a.seconds / a.steps, 3),
                       bytes_per_step=int(a.bytes / a.steps), calls_per_step=a.calls / a.steps,
                       buckets=len(a.buckets))
        row["ms_per_step_total"] = round(1e3 * res.train_seconds / steps, 3)
        if dp is not None:  # compute, data and validation: everything but the allreduce
            row["ms_per_step_other"] = round(row["ms_per_step_total"]
                                             - row["allreduce_ms_per_step"], 3)
        row["wait"] = os.environ.get("TENSORCALC_MPI_WAIT", "yield")
        print(json.dumps(row))
    dist.finish()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("allreduce", "epoch"))
    ap.add_argument("recipe", nargs="?", default="mlp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE (string) override")
    a = ap.parse_args()
    if a.what == "allreduce":
        bench_allreduce(a.reps)
    else:
        bench_epoch(a.recipe, a.epochs, a.set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
