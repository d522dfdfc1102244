"""Where a tensorcalc training step spends its time on a GPU, and what the fused kernels buy.

One run (a couple of minutes on an H200) that prints:

1. checks of the fused CUDA kernels (tensorcalc/devices/cuda.py) against the generic CuPy path
   (fresh random inputs; relative error, float32): unfold/fold over several geometries and
   strided inputs, relu_grad, the SGD and Adam updates;
2. the training steps of bench_gpu.py with the fused kernels on and off
   (``tensorcalc.devices.cuda.ENABLED``), side by side with torch CUDA eager;
3. per-primitive time of one step (a device sync around each top-level forward / rule, so the
   figures include each op's launch and host work), and the step's host-only time;
4. whether cuDNN is reachable through CuPy, and whether the step can be captured as a CUDA graph.

Run:  PYTHONPATH=. python3 benchmarks/gpu/profile_gpu.py [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def check_kernels():
    import cupy as cp

    from tensorcalc.devices import cuda
    from tensorcalc.ops.windows import Fold, Unfold

    rng = np.random.default_rng(1)
    out = []
    geoms = [((2, 3, 9, 8), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
             ((2, 5, 11, 10), (3, 2), (2, 3), ((0, 2), (1, 0)), (2, 1)),
             ((3, 1, 28, 28), (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
             ((2, 4, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),
             ((2, 6, 7, 7), (1, 1), (2, 2), ((0, 0), (0, 0)), (1, 1))]
    for shape, k, s, p, d in geoms:
        kw = dict(kernel=k, stride=s, padding=p, dilation=d)
        x = rng.standard_normal(shape).astype(np.float32)
        for strided in (False, True):
            xc = cp.asarray(x)
            if strided:  # an NHWC-backed (N, C, H, W) view, as conv outputs are
                xc = cp.ascontiguousarray(xc.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            ref = Unfold.forward(np, x, **kw)
            got = cuda.unfold(xc, k, s, p, d).get()
            out.append((f"unfold {shape} k{k} s{s} p{p} d{d} strided={strided}",
                        _rel(got, ref) if got.shape == ref.shape else f"shape {got.shape}"))
        g = rng.standard_normal(ref.shape).astype(np.float32)
        fref = Fold.forward(np, g, size=shape[2:], **kw)
        gc = cp.asarray(g)
        got = cuda.fold(gc, shape[2:], k, s, p, d).get()
        out.append((f"fold   {shape} k{k} s{s} p{p} d{d}", _rel(got, fref)))
        got = cuda.fold(cp.asarray(np.ascontiguousarray(g.transpose(0, 2, 1))).transpose(0, 2, 1),
                        shape[2:], k, s, p, d).get()
        out.append((f"fold   {shape} strided cols", _rel(got, fref)))
    for shape, axes in (((256, 16, 28, 28), (0, 2, 3)), ((64, 32, 14, 14), (0,)),
                        ((512, 256), (0,)), ((64, 8, 30, 30), (2, 3)), ((8, 64, 32, 32), (1,))):
        x = rng.standard_normal(shape).astype(np.float32)
        for nhwc in (False, True):
            xc = cp.asarray(x)
            if nhwc and len(shape) == 4:
                xc = cp.ascontiguousarray(xc.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            for keep in (False, True):
                got = cuda.reduce_sum(xc, axes, keep)
                ref = x.astype(np.float64).sum(axis=axes, keepdims=keep)
                out.append((f"reduce_sum {shape} {axes} nhwc={nhwc} keep={keep}",
                            "declined" if got is None else
                            _rel(got.get(), ref) if got.shape == ref.shape
                            else f"shape {got.shape}"))
    m = cp.asarray(np.array([1.0, np.inf, -np.inf, np.nan, -2.0], np.float32))
    out.append(("finite_or_zero", _rel(cuda.finite_or_zero(m).get(), [1, 0, 0, 0, -2])))
    gx = rng.standard_normal(1000).astype(np.float32)
    xx = rng.standard_normal(1000).astype(np.float32)
    xx[:10] = 0
    out.append(("relu_grad", _rel(cuda.relu_grad(cp.asarray(gx), cp.asarray(xx)).get(),
                                  gx * (xx > 0))))
    # optimisers: fused vs generic CuPy path, 3 steps from the same start
    import tensorcalc as tc

    for name, make in (("SGD m=0.9 nesterov wd", lambda ps: tc.optim.SGD(
            ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                       ("SGD m=0.9 damp 0.1", lambda ps: tc.optim.SGD(
            ps, lr=0.1, momentum=0.9, dampening=0.1)),
                       ("Adam wd", lambda ps: tc.optim.Adam(ps, lr=0.01, weight_decay=0.01)),
                       ("AdamW", lambda ps: tc.optim.AdamW(ps, lr=0.01, weight_decay=0.1))):
        res = []
        for enabled in (True, False):
            cuda.ENABLED = enabled
            p = tc.tensor(np.linspace(-1, 1, 50, dtype=np.float32), requires_grad=True,
                          device="cuda")
            opt = make([p])
            for i in range(3):
                p.grad = tc.tensor(np.cos(np.arange(50, dtype=np.float32) * (i + 1)),
                                   device="cuda")
                opt.step()
            res.append(p.data.get())
        cuda.ENABLED = True
        out.append((f"optim {name}", _rel(res[0], res[1])))
    return out


def _median_ms(fn, sync, warmup, iters):
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def make_tc_step(name, batch):
    import bench_gpu as B
    import cupy as cp

    import tensorcalc as tc
    from tensorcalc.functional import cross_entropy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + B.SHAPES[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = B.tc_model(name)
    tmodel = B.torch_model(name, model)
    model.to("cuda")
    opt = tc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = tc.tensor(x, device="cuda"), cp.asarray(y)

    def step():
        opt.zero_grad()
        loss = cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step, opt, (tmodel, x, y)


def make_torch_step(tmodel, x, y):
    import torch

    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()

    def step():
        topt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(tmodel(tx), ty)
        loss.backward()
        topt.step()
        return loss

    return step


def bench_cases(cases, warm, iters):
    import cupy as cp
    import torch

    from tensorcalc.devices import cuda

    rows = []
    for name, batch in cases:
        try:
            step, _, tm = make_tc_step(name, batch)
            tstep = make_torch_step(*tm)
            sync = cp.cuda.Device().synchronize
            r = {"case": f"{name} b{batch}"}
            for enabled in (False, True, False, True):  # interleaved, twice
                cuda.ENABLED = enabled
                key = "fused_ms" if enabled else "generic_ms"
                r.setdefault(key, []).append(round(_median_ms(step, sync, warm, iters), 3))
            cuda.ENABLED = True
            r["torch_ms"] = round(_median_ms(tstep, torch.cuda.synchronize, warm, iters), 3)
            # host-only time of one step (no sync inside): Python + launches
            sync()
            hs = []
            for _ in range(iters):
                t0 = time.perf_counter()
                step()
                hs.append(time.perf_counter() - t0)
                sync()
            r["host_ms"] = round(statistics.median(hs) * 1e3, 3)
            r["ratio_fused"] = round(min(r["fused_ms"]) / r["torch_ms"], 2)
            r["ratio_generic"] = round(min(r["generic_ms"]) / r["torch_ms"], 2)
        except Exception as e:
            traceback.print_exc()
            r = {"case": f"{name} b{batch}", "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(r), flush=True)
        rows.append(r)
    return rows


def profile_ops(name, batch, steps=3):
    """Per-primitive time (ms per step) with a device sync around each top-level call."""
    import cupy as cp

    from tensorcalc.autodiff.function import REGISTRY

    step, opt, _ = make_tc_step(name, batch)
    for _ in range(3):
        step()
    sync = cp.cuda.Device().synchronize
    sync()
    stats = collections.Counter()
    calls = collections.Counter()
    depth = [0]

    def wrap(key, f):
        def w(*a, **kw):
            if depth[0]:
                return f(*a, **kw)
            depth[0] += 1
            sync()
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                sync()
                stats[key] += time.perf_counter() - t0
                calls[key] += 1
                depth[0] -= 1
        return w

    saved = []
    for cname, cls in REGISTRY.items():
        for attr in ("forward", "vjp"):
            own = cls.__dict__.get(attr)
            saved.append((cls, attr, own))
            setattr(cls, attr, staticmethod(wrap(f"{cname}.{attr}", getattr(cls, attr))))
    ostep = opt.step
    opt.step = wrap("optimizer.step", ostep)
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        total = (time.perf_counter() - t0) / steps * 1e3
    finally:
        for cls, attr, own in saved:
            if own is None:
                delattr(cls, attr)
            else:
                setattr(cls, attr, own)
        opt.step = ostep
    acc = sum(stats.values()) / steps * 1e3
    print(f"\n-- {name} b{batch}: {total:.2f} ms/step with a sync per op; ops {acc:.2f} ms, "
          f"rest (engine, Python) {total - acc:.2f} ms")
    for k, v in stats.most_common(18):
        print(f"   {v / steps * 1e3:8.3f} ms  {calls[k] // steps:4d} calls  {k}")
    return {"case": f"{name} b{batch}", "synced_total_ms": round(total, 3),
            "ops": {k: round(v / steps * 1e3, 4) for k, v in stats.most_common()}}


def try_graph(name, batch, warm, iters):
    """Capture one whole step as a CUDA graph (private memory pool) and time its replays."""
    import cupy as cp

    step, _, _ = make_tc_step(name, batch)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        for _ in range(3):
            step()
    s.synchronize()
    pool = cp.cuda.MemoryPool()
    try:
        with s, cp.cuda.using_allocator(pool.malloc):
            s.begin_capture()
            try:
                loss = step()
            finally:
                g = s.end_capture()
        g.launch(stream=s)
        s.synchronize()
        ms = _median_ms(lambda: g.launch(stream=s), s.synchronize, warm, iters)
        l1 = float(loss.data.get())
        for _ in range(20):
            g.launch(stream=s)
        s.synchronize()
        l2 = float(loss.data.get())
        return {"case": f"graph {name} b{batch}", "replay_ms": round(ms, 3),
                "loss_before": round(l1, 4), "loss_after_20": round(l2, 4)}
    except Exception as e:
        return {"case": f"graph {name} b{batch}", "error": f"{type(e).__name__}: {e}"[:300]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    import cupy as cp

    res = {}
    skip = set(args.skip.split(","))
    print("cupy", cp.__version__)
    for mod in ("cupy.cuda.cudnn", "cupyx.cudnn"):
        try:
            m = __import__(mod, fromlist=["x"])
            v = getattr(cp.cuda.cudnn, "getVersion", lambda: "?")()
            print(f"{mod}: importable, cuDNN version {v}", m.__name__)
        except Exception as e:
            print(f"{mod}: NOT available ({type(e).__name__}: {str(e)[:120]})")
    if "check" not in skip:
        print("\n== fused kernels vs generic path (relative error) ==")
        res["checks"] = check_kernels()
        for k, v in res["checks"]:
            flag = "" if isinstance(v, float) and v < 1e-5 or v == "declined" else "  <-- CHECK"
            print(f"  {k:60s} {v}{flag}")
    warm, it = (2, 5) if args.quick else (5, 25)
    print("\n== steps: generic vs fused vs torch ==")
    res["bench"] = bench_cases([("mlp", 512), ("mlp", 4096), ("lenet", 512), ("resnet", 256)],
                               warm, it)
    if "profile" not in skip:
        res["profile"] = [profile_ops("lenet", 512), profile_ops("resnet", 256),
                          profile_ops("mlp", 512)]
    if "graph" not in skip:
        print("\n== CUDA graph capture of a whole step ==")
        res["graph"] = [try_graph("mlp", 512, warm, it), try_graph("lenet", 512, warm, it)]
        for r in res["graph"]:
            print(json.dumps(r))
    print(f"\n{'case':14s} {'generic ms':>18s} {'fused ms':>18s} {'torch':>8s} {'host':>7s} "
          f"{'ratio':>6s}")
    for r in res["bench"]:
        if "error" in r:
            print(f"{r['case']:14s} ERROR {r['error'][:80]}")
            continue
        print(f"{r['case']:14s} {str(r['generic_ms']):>18s} {str(r['fused_ms']):>18s} "
              f"{r['torch_ms']:8.3f} {r['host_ms']:7.3f} {r['ratio_fused']:6.2f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "profile.json"), "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
