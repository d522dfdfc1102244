"""GPU benchmarks: tensorcalc on CuPy vs PyTorch CUDA eager, side by side in one process.

Training steps (forward + cross-entropy + backward + SGD-momentum update) of the same models at
batch sizes that keep the GPU busy, and a large float32 GEMM. Both sides run float32, full
precision (no TF32: CuPy's default, and torch's default for matmul), with the same weights.
Times are medians of per-iteration wall times with a device synchronisation at the end of each.

Run:  PYTHONPATH=. python3 benchmarks/gpu/bench_gpu.py [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback

import numpy as np


def _timeit(fn, sync, warmup, iters):
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


# ------------------------------------------------------------------ models, both libraries
def tc_model(name):
    import tensorcalc as tc
    from tensorcalc.models.lenet import LeNet5
    from tensorcalc.models.mlp import build_mlp
    from tensorcalc.models.resnet import resnet_small

    if name == "mlp":
        return build_mlp(784, (256, 128), 10, rng=0)
    if name == "lenet":
        return LeNet5(rng=0)
    if name == "resnet":
        return resnet_small(rng=0)
    raise ValueError(name) from tc


def torch_model(name, tcm):
    """The same architecture in torch, with tensorcalc's initial weights copied in."""
    import torch
    from torch import nn

    if name == "mlp":
        m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    elif name == "lenet":
        m = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                          nn.Linear(84, 10))
    elif name == "resnet":
        class Block(nn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = nn.BatchNorm2d(cout)
                self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = nn.BatchNorm2d(cout)
                self.s = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else nn.Identity())

            def forward(self, x):
                h = torch.relu(self.b1(self.c1(x)))
                return torch.relu(self.b2(self.c2(h)) + self.s(x))

        layers, c = [nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(2):
                layers.append(Block(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
        m = nn.Sequential(*layers)
    else:
        raise ValueError(name)
    # copy weights by shape order where they match (Linear weights transposed if needed)
    tps = [p for p in m.parameters()]
    cps = [p.numpy() for p in tcm.parameters()]
    with torch.no_grad():
        for tp, cp in zip(tps, cps, strict=False):
            if tuple(tp.shape) == cp.shape:
                tp.copy_(torch.from_numpy(cp))
            elif cp.ndim == 2 and tuple(tp.shape) == cp.T.shape:
                tp.copy_(torch.from_numpy(np.ascontiguousarray(cp.T)))
    return m.cuda()


SHAPES = {"mlp": (784,), "lenet": (1, 28, 28), "resnet": (1, 28, 28)}


def bench_step(name, batch, warmup, iters):
    import cupy as cp
    import torch

    import tensorcalc as tc
    from tensorcalc.functional import cross_entropy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + SHAPES[name]).astype(np.float32)
    y = rng.integers(0, 10, batch)

    model = tc_model(name)
    tmodel = torch_model(name, model)
    model.to("cuda")
    opt = tc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = tc.tensor(x, device="cuda"), cp.asarray(y)

    def tc_step():
        opt.zero_grad()
        loss = cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    lossf = torch.nn.functional.cross_entropy

    def torch_step():
        topt.zero_grad(set_to_none=True)
        loss = lossf(tmodel(tx), ty)
        loss.backward()
        topt.step()
        return loss

    l0_tc = float(tc_step().item())
    l0_t = float(torch_step().item())
    dev = cp.cuda.Device()
    t_tc = _timeit(tc_step, dev.synchronize, warmup, iters)
    t_t = _timeit(torch_step, torch.cuda.synchronize, warmup, iters)
    return {"case": f"{name} train step, batch {batch}", "tensorcalc_ms": round(t_tc, 3),
            "torch_ms": round(t_t, 3), "ratio": round(t_tc / t_t, 2),
            "first_loss_tc": round(l0_tc, 4), "first_loss_torch": round(l0_t, 4)}


def bench_gemm(n, warmup, iters):
    import cupy as cp
    import torch

    import tensorcalc as tc

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    ta, tb = tc.tensor(a, device="cuda"), tc.tensor(b, device="cuda")
    xa, xb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    dev = cp.cuda.Device()
    t_tc = _timeit(lambda: ta @ tb, dev.synchronize, warmup, iters)
    t_t = _timeit(lambda: torch.mm(xa, xb), torch.cuda.synchronize, warmup, iters)
    flop = 2 * n ** 3
    return {"case": f"GEMM {n}x{n}x{n} float32", "tensorcalc_ms": round(t_tc, 3),
            "torch_ms": round(t_t, 3), "ratio": round(t_tc / t_t, 2),
            "tensorcalc_tflops": round(flop / t_tc / 1e9, 1),
            "torch_tflops": round(flop / t_t / 1e9, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import cupy as cp
    import torch

    warm, it = (2, 5) if args.quick else (5, 30)
    props = cp.cuda.runtime.getDeviceProperties(0)
    info = {"gpu": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
            "cupy": cp.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion()}
    print(json.dumps(info))
    results = []
    cases = [("gemm", 8192), ("mlp", 512), ("mlp", 4096), ("lenet", 512), ("resnet", 256)]
    for name, size in cases:
        try:
            r = bench_gemm(size, warm, it) if name == "gemm" else bench_step(name, size, warm, it)
        except Exception as e:  # one failing case must not hide the others
            traceback.print_exc()
            r = {"case": f"{name} {size}", "error": f"{type(e).__name__}: {e}"}
        results.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{'case':34s} {'tensorcalc ms':>14s} {'torch ms':>10s} {'ratio':>7s}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:34s} ERROR {r['error'][:60]}")
        else:
            print(f"{r['case']:34s} {r['tensorcalc_ms']:14.3f} {r['torch_ms']:10.3f} "
                  f"{r['ratio']:7.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
