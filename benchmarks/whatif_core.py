"""What-if: measure candidate engine optimisations by monkeypatching them in *this process only*.

Nothing in tensorcalc/ is changed on disk. Each variant patches one hot-path piece with a faster
equivalent (same results: checked against the unpatched loss and gradients), then the core steps
(a), (b), (c) are timed alternately against the unpatched baseline, on 1 thread with process CPU
time (the steadiest figure on a shared machine). The saving per step tells the engine's author
what each change is worth before writing it properly.

    .venv-bench/bin/python benchmarks/whatif_core.py [--quick]

Variants
--------
raw_mT      matmul VJP transposes raw arrays with ``a.swapaxes(-1, -2)`` instead of a
            ``SwapAxes.apply`` round trip (only when not differentiating the backward pass).
raw_sum_to  the engine's broadcast adjoint (``_fit`` -> ``sum_to``) sums raw arrays with one
            ``ndarray.sum`` instead of ``SumTo.apply``.
apply_scan  ``Function.apply`` first checks for a Tensor among the arguments and, finding none,
            calls ``forward`` at once (today it builds three lists before deciding).
raw_sgd     the manual SGD update as ``p.data -= lr * g`` (no ``no_grad`` context, no ``add_``
            bookkeeping) — what an optimiser's inner loop costs without Tensor methods.
all         raw_mT + raw_sum_to + raw_sgd together.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core as bc  # noqa: E402
import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402
from tensorcalc.autodiff import engine as _engine  # noqa: E402
from tensorcalc.autodiff import function as _function  # noqa: E402

_matmul = importlib.import_module("tensorcalc.ops.matmul")  # the module, not the re-export

T = tc.Tensor
_orig = {
    "mT": _matmul._mT,
    "sum_to": _engine._sum_to,
    "apply": _function.Function.__dict__["apply"],
}


def _raw_mT(a):
    if type(a) is np.ndarray:
        return a.swapaxes(-1, -2)
    return _orig["mT"](a)


def _fast_sum_to(x, shape):
    if type(x) is not np.ndarray:
        return _orig["sum_to"]()(x, shape)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and x.shape[lead + i] != 1)
    y = x.sum(axis=axes, keepdims=True)
    return y.reshape(shape) if lead else y


def _make_scan_apply():
    inner = _orig["apply"].__func__

    def apply(cls, *args, **kw):
        for a in args:
            if isinstance(a, T):
                return inner(cls, *args, **kw)
        return cls.forward(np, *args, **kw)

    return classmethod(apply)


def patch(name, on):
    if name == "raw_mT":
        _matmul._mT = _raw_mT if on else _orig["mT"]
    elif name == "raw_sum_to":
        _engine._sum_to = (lambda: _fast_sum_to) if on else _orig["sum_to"]
    elif name == "apply_scan":
        _function.Function.apply = _make_scan_apply() if on else _orig["apply"]


ENGINE_VARIANTS = ("raw_mT", "raw_sum_to", "apply_scan")
ALL = ("raw_mT", "raw_sum_to")  # apply_scan as written here slows recorded ops (see report)


def make_step(sizes, batch, raw_sgd):
    step, params, x, onehot = bc.make_tc_step(sizes, batch)
    if not raw_sgd:
        return step

    def step_raw():
        loss = bc.tc_loss(params, x, onehot)
        loss.backward()
        for p in params:
            p.data -= bc.LR * p.grad.data
            p.grad = None
        return loss

    return step_raw


def make_a():
    return bc.make_overhead()["tensorcalc"]


def grads_of(sizes, batch):
    _, params, x, onehot = bc.make_tc_step(sizes, batch)
    loss = bc.tc_loss(params, x, onehot)
    loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in params]


def run(quick):
    common.set_threads(1)
    common.set_clock("cpu")
    rep = 9 if quick else 25
    cases = {"a": None, "b": ((784, 256, 256, 10), 128), "c": ((2, 16, 16, 2), 32)}
    ref = {k: grads_of(*v) for k, v in cases.items() if v}
    rows = []
    for variant in (*ENGINE_VARIANTS, "raw_sgd", "all"):
        engine = ALL if variant == "all" else (
            (variant,) if variant in ENGINE_VARIANTS else ())
        raw_sgd = variant in ("raw_sgd", "all")
        for case, spec in cases.items():
            if case == "a" and variant == "raw_sgd":
                continue
            base = make_a() if case == "a" else make_step(*spec, False)
            for e in engine:
                patch(e, True)
            try:
                new = make_a() if case == "a" else make_step(*spec, raw_sgd)
                if spec:  # same numbers with the patch
                    loss, gs = grads_of(*spec)
                    assert abs(loss - ref[case][0]) < 1e-6, variant
                    for g, r in zip(gs, ref[case][1], strict=True):
                        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-7)
            finally:
                for e in engine:
                    patch(e, False)

            def on(engine=engine):
                for e in engine:
                    patch(e, True)

            def off(engine=engine):
                for e in engine:
                    patch(e, False)

            s = common.compare({"tensorcalc": (new, on, off), "pytorch": base}, repeat=rep)
            r = common.row_from_stats("what-if", f"{variant}: ({case})", s)
            r.note = f"saves {(s['pytorch'].median - s['tensorcalc'].median) * 1e6:.1f} µs/step"
            rows.append(r)
            print(f"{variant:11s} ({case}): baseline {common.fmt_time(s['pytorch'].median)}, "
                  f"patched {common.fmt_time(s['tensorcalc'].median)} -> {r.note} "
                  f"({(1 - r.ratio) * 100:.1f}%)", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    rows = run(args.quick)
    if args.write:
        common.write_section("whatif", "\n".join([
            f"## What-if: candidate engine optimisations (whatif_core.py) — {common.stamp()}", "",
            "Monkeypatched in-process, 1 thread, process CPU time. In this table the "
            "'tensorcalc' column is the patched engine and the 'PyTorch' column the unpatched "
            "baseline (ratio < 1: the patch helps).", "",
            common.rows_table(rows)]))


if __name__ == "__main__":
    main()
