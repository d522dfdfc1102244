"""Convolutional networks (issue 19): one training step, tensorcalc vs PyTorch eager, 1 and 2
threads.

Workloads (float32, batch 64 of 1×28×28, 10 classes):

1. ``lenet``: bench_lenet.py's step (its own definition: conv 1->16 5×5, relu, maxpool 2,
   conv 16->32 5×5, relu, maxpool 2, linear 512->10; cross-entropy; plain SGD). Target ≤ 1.0×.
2. ``resnet``, ``vgg``, ``inception``: the models the recipes of those names build with their
   defaults (tensorcalc/recipes/cnn.py -> tensorcalc/models/), in training mode (batch norm
   with batch statistics): forward, cross-entropy, backward, the recipe's optimizer (Adam at the
   recipe's learning rate). Target ≤ 1.5× (resnet moonshot 1.0×).

PyTorch runs the identical architecture written with torch.nn, its weights copied from
tensorcalc's; the first losses are checked to agree before timing. Timing is paired and
interleaved (common.compare), medians.

Run:  .venv-bench/bin/python benchmarks/bench_cnn.py [--quick] [--write] [--threads N]
      [--clock cpu] [--only resnet,vgg] [--profile resnet]
(without --threads: 1 and then 2 threads, in one process; with --clock cpu the 2-thread rows
still use the wall clock, since process CPU time adds up the threads)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_lenet  # noqa: E402
import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402
import tensorcalc.functional as F  # noqa: E402
from tensorcalc.recipes import cnn as cnn_recipes  # noqa: E402
from tensorcalc.recipes import get_recipe  # noqa: E402

N, CLASSES = 64, 10
TARGETS = {"lenet": 1.0, "resnet": 1.5, "vgg": 1.5, "inception": 1.5}
WORKLOADS = ("lenet", "resnet", "vgg", "inception")

NOTE = ("2-thread rows are valid only on a machine with 2 idle cores: when another job holds a "
        "core, both libraries oversubscribe and the ratio measures the contention. Trust the "
        "1-thread rows (process CPU time) on a shared machine.")


class _Data:
    num_classes = CLASSES


def recipe_model(name, rng=0):
    """The model the recipe ``name`` builds with its defaults, and those defaults."""
    rec = get_recipe(name)
    cfg = dict(rec.defaults)
    builder = {"resnet": cnn_recipes._resnet, "vgg": cnn_recipes._vgg,
               "inception": cnn_recipes._inception}[name]
    return builder(cfg, _Data(), np.random.default_rng(rng)), cfg


# -------------------------------------------------------------------------- torch twins
def torch_twin(name, cfg):
    """The same architecture in torch.nn, attribute names matching tensorcalc's modules so that
    the state dicts line up."""
    import torch
    import torch.nn as nn

    def conv(ci, co, k, s=1, p=0, bias=True):
        return nn.Conv2d(ci, co, k, s, p, bias=bias)

    if name == "resnet":
        class Block(nn.Module):
            def __init__(self, ci, co, s):
                super().__init__()
                self.conv1 = conv(ci, co, 3, s, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(co)
                self.conv2 = conv(co, co, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(co)
                if s != 1 or ci != co:
                    self.shortcut = nn.Sequential(conv(ci, co, 1, s, bias=False),
                                                  nn.BatchNorm2d(co))
                else:
                    self.shortcut = nn.Identity()

            def forward(self, x):
                h = torch.relu(self.bn1(self.conv1(x)))
                h = self.bn2(self.conv2(h))
                return torch.relu(h + self.shortcut(x))

        class Net(nn.Module):
            def __init__(self, widths, blocks):
                super().__init__()
                self.stem = nn.Sequential(conv(1, widths[0], 3, 1, 1, bias=False),
                                          nn.BatchNorm2d(widths[0]), nn.ReLU())
                layers, c = [], widths[0]
                for i, w in enumerate(widths):
                    for j in range(blocks):
                        layers.append(Block(c, w, 2 if (i > 0 and j == 0) else 1))
                        c = w
                self.layers = nn.Sequential(*layers)
                self.fc = nn.Linear(c, CLASSES)

            def forward(self, x):
                return self.fc(self.layers(self.stem(x)).mean((2, 3)))

        return Net(tuple(cfg["widths"]), cfg["blocks"])
    if name == "vgg":
        class VGG(nn.Module):
            def __init__(self, widths, depth):
                super().__init__()
                layers, c = [], 1
                class BNReLU(nn.BatchNorm2d):  # tensorcalc's BatchNorm2d(relu=True)
                    def forward(self, x):
                        return torch.relu(super().forward(x))

                for w in widths:
                    for _ in range(depth):
                        layers += [conv(c, w, 3, 1, 1, bias=False), BNReLU(w)]
                        c = w
                    layers.append(nn.MaxPool2d(2))
                self.features = nn.Sequential(*layers)
                # tensorcalc's classifier is Sequential(GlobalAvgPool2d, Linear): index 1
                self.classifier = nn.Sequential(nn.Identity(), nn.Linear(c, CLASSES))

            def forward(self, x):
                return self.classifier[1](self.features(x).mean((2, 3)))

        assert not cfg["dropout"]
        return VGG(tuple(cfg["widths"]), cfg["depth"])
    if name == "inception":
        class Block(nn.Module):
            def __init__(self, ci, b1, b3, b5, bp):
                super().__init__()
                (r3, o3), (r5, o5) = b3, b5
                self.branch1 = conv(ci, b1, 1)
                self.branch3 = nn.Sequential(conv(ci, r3, 1), nn.ReLU(), conv(r3, o3, 3, 1, 1))
                self.branch5 = nn.Sequential(conv(ci, r5, 1), nn.ReLU(), conv(r5, o5, 3, 1, 1),
                                             nn.ReLU(), conv(o5, o5, 3, 1, 1))
                self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(ci, bp, 1))
                self.out_channels = b1 + o3 + o5 + bp
                self.bn = nn.BatchNorm2d(self.out_channels)

            def forward(self, x):
                ys = [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)]
                return torch.relu(self.bn(torch.cat(ys, 1)))

        class Net(nn.Module):
            def __init__(self, w):
                super().__init__()
                self.stem = nn.Sequential(conv(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                          nn.ReLU())
                self.block1 = Block(w, w // 2, (w // 2, w), (w // 4, w // 2), w // 2)
                c1 = self.block1.out_channels
                self.block2 = Block(c1, w, (w // 2, w * 2), (w // 4, w // 2), w // 2)
                self.pool = nn.MaxPool2d(2)
                self.fc = nn.Linear(self.block2.out_channels, CLASSES)

            def forward(self, x):
                h = self.pool(self.block1(self.stem(x)))
                h = self.pool(self.block2(h))
                return self.fc(h.mean((2, 3)))

        return Net(cfg["width"])
    raise ValueError(name)


def _copy_weights(tm, m):
    import torch

    sd = {k: torch.tensor(np.asarray(v.data)) for k, v in m.named_parameters()}
    missing, unexpected = tm.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
               for k in missing), missing


# -------------------------------------------------------------------------------- steps
def make_tc(name, x_np, y_np):
    m, cfg = recipe_model(name)
    m.train()
    opt = tc.optim.Adam(m.parameters(), lr=cfg["lr"])
    x, y = tc.tensor(x_np), tc.tensor(y_np)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return float(loss.item())

    return step, m, cfg


def make_torch(name, m, cfg, x_np, y_np):
    import torch
    import torch.nn.functional as TF

    tm = torch_twin(name, cfg)
    _copy_weights(tm, m)
    tm.train()
    opt = torch.optim.Adam(tm.parameters(), lr=cfg["lr"])
    x, y = torch.tensor(x_np), torch.tensor(y_np)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = TF.cross_entropy(tm(x), y)
        loss.backward()
        opt.step()
        return float(loss.item())

    return step


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, 1, 28, 28)).astype(np.float32),
            rng.integers(0, CLASSES, N))


def pair(name, have_torch):
    """{'tensorcalc': step, 'pytorch': step} for one workload, losses checked to agree."""
    x_np, y_np = data()
    if name == "lenet":
        p0 = bench_lenet.params(np.random.default_rng(0))
        fns = {"tensorcalc": bench_lenet.make_tc(p0, x_np, y_np)}
        if have_torch:
            fns["pytorch"] = bench_lenet.make_torch(p0, x_np, y_np)
            a = float(bench_lenet.make_tc(p0, x_np, y_np)().item())
            b = float(bench_lenet.make_torch(p0, x_np, y_np)().item())
            assert abs(a - b) < 1e-4 * max(1.0, abs(b)), (name, a, b)
        return fns
    step, m, cfg = make_tc(name, x_np, y_np)
    fns = {"tensorcalc": step}
    if have_torch:
        a_step, am, acfg = make_tc(name, x_np, y_np)
        b_step = make_torch(name, am, acfg, x_np, y_np)
        for _ in range(2):  # the first loss, and the one after an optimizer step
            a, b = a_step(), b_step()
            assert abs(a - b) < 1e-3 * max(1.0, abs(b)), (name, a, b)
        fns["pytorch"] = make_torch(name, m, cfg, x_np, y_np)
    return fns


CASES = {
    "lenet": "LeNet step (bench_lenet's), batch 64, SGD",
    "resnet": "resnet recipe's model (widths 16,32,64, 1 block/stage), batch 64, Adam",
    "vgg": "vgg recipe's model (widths 16,32,64, depth 2), batch 64, Adam",
    "inception": "inception recipe's model (width 16), batch 64, Adam",
}


def run(names, threads, rep, have_torch, clock):
    common.set_threads(threads)
    # process CPU time sums the threads' time: with 2 threads only the wall clock says speed
    clock = clock if threads == 1 else "wall"
    common.set_clock(clock)
    rows = []
    for name in names:
        stats = common.compare(pair(name, have_torch), repeat=rep, target_s=0.05)
        rows.append(common.row_from_stats(name, f"{CASES[name]}, {threads} thread(s), {clock} "
                                          "clock", stats, target=TARGETS[name]))
        common.print_rows(rows[-1:])
    return rows


def profile(name, steps=20):
    import cProfile
    import pstats

    common.set_threads(1)
    fns = pair(name, False)
    step = fns["tensorcalc"]
    for _ in range(3):
        step()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        step()
    pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(30)


def main():
    ap = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    ap.add_argument("--only", default=",".join(WORKLOADS),
                    help="comma-separated workloads: " + ", ".join(WORKLOADS))
    ap.add_argument("--profile", default=None, help="cProfile 20 tensorcalc steps of this one")
    args = ap.parse_args()
    if args.profile:
        profile(args.profile)
        return
    names = [s for s in args.only.split(",") if s]
    for s in names:
        if s not in WORKLOADS:
            ap.error(f"unknown workload {s!r}; choose from {WORKLOADS}")
    have_torch = common.torch_available()
    info = common.machine_info()
    rep = 6 if args.quick else 20
    rows = []
    for threads in common.thread_counts(args):
        rows += run(names, threads, rep, have_torch, args.clock)
    common.print_rows(rows)
    common.dump_json(args.json, rows)
    load_end = common.load_at_end(info)
    if args.write:
        body = "\n".join([
            f"### Convolutional networks (bench_cnn.py, issue 19), {common.stamp()}", "",
            common.machine_md(info), f"- load average at end: {load_end}; clock: {args.clock}",
            "", common.rows_table(rows), "", NOTE, ""])
        common.write_section("cnn", body)


if __name__ == "__main__":
    main()
