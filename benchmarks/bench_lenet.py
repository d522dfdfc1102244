"""LeNet-style training step: tensorcalc vs PyTorch eager, side by side in one process.

conv(1->16, 5x5) relu maxpool2 conv(16->32, 5x5) relu maxpool2 flatten linear(512->10),
batch 64 of 1x28x28, float32, softmax cross-entropy, forward + backward + SGD step.
Target (issue 5): tensorcalc <= 1.5x PyTorch.

tensorcalc uses its functional API (conv2d = unfold + one GEMM, max_pool2d = reshape + max),
PyTorch the idiomatic eager F.conv2d / F.max_pool2d / F.cross_entropy; both with manual SGD.

Run:  .venv-bench/bin/python benchmarks/bench_lenet.py [--quick] [--write] [--profile]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402
from tensorcalc.functional.conv import conv2d  # noqa: E402
from tensorcalc.functional.pool import max_pool2d  # noqa: E402

TARGET = 1.5
LR = 0.01
N = 64


def params(rng):
    def u(shape, fan_in):
        b = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-b, b, shape).astype(np.float32)

    return [u((16, 1, 5, 5), 25), u((16,), 25), u((32, 16, 5, 5), 400), u((32,), 400),
            u((512, 10), 512), u((10,), 512)]


def make_tc(p0, x_np, y_np):
    ps = [tc.tensor(p.copy(), requires_grad=True) for p in p0]
    x = tc.tensor(x_np)
    onehot = tc.tensor(np.eye(10, dtype=np.float32)[y_np])

    def loss_fn():
        w1, b1, w2, b2, w3, b3 = ps
        h = max_pool2d(tc.relu(conv2d(x, w1, b1)), 2)
        h = max_pool2d(tc.relu(conv2d(h, w2, b2)), 2)
        z = h.reshape(N, 512) @ w3 + b3
        logp = z - tc.logsumexp(z, axis=1, keepdims=True)
        return -(logp * onehot).sum() * (1.0 / N)

    def step():
        loss = loss_fn()
        loss.backward()
        with tc.no_grad():
            for p in ps:
                p.data -= LR * p.grad.data
                p.grad = None
        return loss

    return step


def make_torch(p0, x_np, y_np):
    import torch
    import torch.nn.functional as TF

    ps = [torch.tensor(p.copy(), requires_grad=True) for p in p0]
    x = torch.tensor(x_np)
    y = torch.tensor(y_np)

    def step():
        w1, b1, w2, b2, w3, b3 = ps
        h = TF.max_pool2d(TF.relu(TF.conv2d(x, w1, b1)), 2)
        h = TF.max_pool2d(TF.relu(TF.conv2d(h, w2, b2)), 2)
        z = h.reshape(N, 512) @ w3 + b3
        loss = TF.cross_entropy(z, y)
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss

    return step


def main():
    ap = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    ap.add_argument("--profile", action="store_true", help="cProfile 200 tensorcalc steps")
    ap.add_argument("--default-only", action="store_true",
                    help="skip the second, 1-thread comparison")
    args = ap.parse_args()
    common.set_threads(args.threads)
    common.set_clock(args.clock)
    rng = np.random.default_rng(0)
    p0 = params(rng)
    x_np = rng.standard_normal((N, 1, 28, 28)).astype(np.float32)
    y_np = rng.integers(0, 10, N)
    tc_step = make_tc(p0, x_np, y_np)
    if args.profile:
        import cProfile
        import pstats

        for _ in range(10):
            tc_step()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(200):
            tc_step()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        return
    fns = {"tensorcalc": tc_step}
    try:
        fns["pytorch"] = make_torch(p0, x_np, y_np)
        # same maths: the first losses agree
        a = float(make_tc(p0, x_np, y_np)().item())
        b = float(make_torch(p0, x_np, y_np)().item())
        assert abs(a - b) < 1e-4 * max(1.0, abs(b)), (a, b)
    except ImportError:
        print("torch not installed: tensorcalc figure only")
    rep = 8 if args.quick else 30
    case = "LeNet step, batch 64, f32 (fwd+bwd+SGD)"
    stats = common.compare(fns, repeat=rep)
    threads = "default threads" if args.threads is None else f"{args.threads} thread(s)"
    rows = [common.row_from_stats("lenet", f"{case}, {threads}", stats, target=TARGET)]
    if args.threads is None and not args.default_only:
        # the steadier measure on a shared machine: both libraries on one thread
        common.set_threads(1)
        stats1 = common.compare(fns, repeat=rep)
        rows.append(common.row_from_stats("lenet", f"{case}, 1 thread each", stats1,
                                          target=TARGET))
    common.print_rows(rows)
    common.dump_json(args.json, rows)
    if args.write:
        info = common.machine_info()
        body = "\n".join([
            "## LeNet-style training step (issue 5)", "",
            f"Run {common.stamp()} with `benchmarks/bench_lenet.py`: conv(1->16, 5x5) relu "
            "maxpool2 conv(16->32, 5x5) relu maxpool2 flatten linear(512->10), batch 64, "
            "float32, forward + backward + SGD; tensorcalc functional API vs PyTorch eager.", "",
            common.machine_md(info), "", common.rows_table(rows), "",
        ])
        common.write_section("lenet", body)


if __name__ == "__main__":
    main()
