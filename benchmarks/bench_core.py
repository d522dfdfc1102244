"""Core benchmarks: tensorcalc (core ops only) vs PyTorch eager, side by side in one process.

(a) per-op overhead: y = x*2+1 on 10 float32 elements, forward + y.sum().backward()
(b) MLP 784-256-256-10, batch 128, float32, relu, softmax cross-entropy, one SGD step
(c) tiny MLP 2-16-16-2, batch 32, the same step

tensorcalc is written with core ops only: ``@``, ``+``, ``tc.relu``, the fused primitive
``tc.softmax_cross_entropy`` against a one-hot target, ``mean``, and manual SGD
``p ← p − lr·∇p`` (in place, under ``no_grad``). PyTorch is the idiomatic eager equivalent:
``@``, ``+``, ``F.relu``, ``F.cross_entropy`` (also fused) and ``p.add_(p.grad, alpha=-lr)``.
A second pair of columns (``*-sameops``) writes the loss in both libraries with the very same
unfused primitives: log-softmax as ``h − logsumexp(h)``, the target picked with a one-hot mask.

Also: GEMM micro-benchmark (float32 1024² and the MLP's forward/backward shapes; NumPy/OpenBLAS
vs torch.mm), OPENBLAS_CORETYPE variants (subprocesses) and the glibc malloc tuning of
``tensorcalc.backend`` (subprocesses with and without ``TENSORCALC_NO_MALLOPT=1``).

Run:  .venv-bench/bin/python benchmarks/bench_core.py [--quick] [--write] [--only a,b,c,gemm,
      coretype,malloc]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402  (tunes BLAS env / malloc at import, before torch)

try:
    import torch  # noqa: E402
    import torch.nn.functional as TF  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("bench_core needs torch==2.13.0 (CPU) in .venv-bench; see benchmarks/README.md")

TARGETS = {"a": 0.5, "b": 1.0, "c": 1.0}
LR = 0.01


# --------------------------------------------------------------------------- (a) per-op overhead
def make_overhead():
    x_np = np.linspace(-1, 1, 10, dtype=np.float32)
    xt = tc.tensor(x_np, requires_grad=True)
    xp = torch.tensor(x_np, requires_grad=True)

    def tc_step():
        y = xt * 2 + 1
        y.sum().backward()
        xt.grad = None

    def pt_step():
        y = xp * 2 + 1
        y.sum().backward()
        xp.grad = None

    # correctness + dtype check
    y = xt * 2 + 1
    y.sum().backward()
    assert xt.grad.dtype == np.float32 and np.allclose(xt.grad.numpy(), 2.0)
    xt.grad = None
    return {"tensorcalc": tc_step, "pytorch": pt_step}


# ------------------------------------------------------------------------------- (b)/(c) MLPs
def init_params(sizes, seed=0):
    """He-uniform weights W[k, j] (input k -> unit j, so h = x W + b) and zero biases, float32."""
    rng = np.random.default_rng(seed)
    ps = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = np.sqrt(6.0 / fan_in)
        ps.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32))
        ps.append(np.zeros(fan_out, np.float32))
    return ps


def make_data(sizes, batch, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    onehot = np.zeros((batch, sizes[-1]), np.float32)
    onehot[np.arange(batch), y] = 1.0
    return x, y, onehot


def tc_loss(params, x, onehot, sameops=False):
    """Mean softmax cross-entropy of the MLP, core ops only."""
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = tc.relu(h)
    if not sameops:
        return tc.mean(tc.softmax_cross_entropy(h, onehot, axis=1))
    logp = h - tc.logsumexp(h, axis=1, keepdims=True)
    return -tc.mean((logp * onehot).sum(axis=1))


def make_tc_step(sizes, batch, sameops=False):
    params = [tc.tensor(p, requires_grad=True) for p in init_params(sizes)]
    x_np, _, oh_np = make_data(sizes, batch)
    x, onehot = tc.tensor(x_np), tc.tensor(oh_np)

    def step():
        loss = tc_loss(params, x, onehot, sameops)
        loss.backward()
        with tc.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss

    return step, params, x, onehot


def torch_loss(params, x, y, sameops_onehot=None):
    h = x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = TF.relu(h)
    if sameops_onehot is None:
        return TF.cross_entropy(h, y)
    logp = h - torch.logsumexp(h, dim=1, keepdim=True)
    return -(logp * sameops_onehot).sum(dim=1).mean()


def make_torch_step(sizes, batch, sameops=False):
    params = [torch.tensor(p, requires_grad=True) for p in init_params(sizes)]
    x_np, y_np, oh_np = make_data(sizes, batch)
    x, y, onehot = torch.from_numpy(x_np), torch.from_numpy(y_np), torch.from_numpy(oh_np)
    oh = onehot if sameops else None

    def step():
        loss = torch_loss(params, x, y, oh)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss

    return step, params


def check_mlp_agree(sizes, batch):
    """Both libraries compute the same loss and gradients from the same init (and stay float32)."""
    tcp = [tc.tensor(p, requires_grad=True) for p in init_params(sizes)]
    ptp = [torch.tensor(p, requires_grad=True) for p in init_params(sizes)]
    x_np, y_np, oh_np = make_data(sizes, batch)
    lt = tc_loss(tcp, tc.tensor(x_np), tc.tensor(oh_np))
    lt.backward()
    lp = torch_loss(ptp, torch.from_numpy(x_np), torch.from_numpy(y_np))
    lp.backward()
    assert lt.dtype == np.float32, f"loss dtype {lt.dtype}"
    assert abs(lt.item() - lp.item()) < 1e-4 * max(1.0, abs(lp.item())), (lt.item(), lp.item())
    for a, b in zip(tcp, ptp, strict=True):
        assert a.grad.dtype == np.float32, f"float64 leak: grad dtype {a.grad.dtype}"
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=2e-3, atol=2e-5)


def make_mlp(sizes, batch):
    check_mlp_agree(sizes, batch)
    tc_step, *_ = make_tc_step(sizes, batch)
    tc_same, *_ = make_tc_step(sizes, batch, sameops=True)
    pt_step, _ = make_torch_step(sizes, batch)
    pt_same, _ = make_torch_step(sizes, batch, sameops=True)
    return {"tensorcalc": tc_step, "pytorch": pt_step, "tensorcalc-sameops": tc_same,
            "pytorch-sameops": pt_same}


def run_ops(which, quick):
    rep = 9 if quick else 31
    rows = []
    if "a" in which:
        s = common.compare(make_overhead(), repeat=rep)
        rows.append(common.row_from_stats("core", "(a) per-op overhead: x*2+1, 10 elts, fwd+bwd",
                                          s, TARGETS["a"]))
    for key, sizes, batch, label in (("b", (784, 256, 256, 10), 128, "(b) MLP 784-256-256-10 "
                                      "b128 SGD step"),
                                     ("c", (2, 16, 16, 2), 32, "(c) tiny MLP 2-16-16-2 b32 "
                                      "SGD step")):
        if key not in which:
            continue
        s = common.compare(make_mlp(sizes, batch), repeat=rep)
        rows.append(common.row_from_stats("core", label, s, TARGETS[key]))
        rows.append(common.row_from_stats("core", label, s, None,
                                          note="both written with the same unfused ops",
                                          tc_key="tensorcalc-sameops",
                                          torch_key="pytorch-sameops"))
    return rows


# ------------------------------------------------------------------------------------- GEMM
GEMM_SHAPES = [
    ("1024x1024 @ 1024x1024", (1024, 1024), (1024, 1024), False, False),
    ("fwd 128x784 @ 784x256", (128, 784), (784, 256), False, False),
    ("fwd 128x256 @ 256x256", (128, 256), (256, 256), False, False),
    ("fwd 128x256 @ 256x10", (128, 256), (256, 10), False, False),
    ("bwd gX 128x256 @ (784x256)ᵀ", (128, 256), (784, 256), False, True),
    ("bwd gW (128x784)ᵀ @ 128x256", (128, 784), (128, 256), True, False),
    ("bwd gW (128x256)ᵀ @ 128x256", (128, 256), (128, 256), True, False),
]


def run_gemm(quick):
    rep = 7 if quick else 21
    rows = []
    rng = np.random.default_rng(0)
    for name, sa, sb, ta, tb in GEMM_SHAPES:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        an, bn = (a.T if ta else a), (b.T if tb else b)  # transposed *views*, as in a VJP
        at, bt = torch.from_numpy(a), torch.from_numpy(b)
        at, bt = (at.T if ta else at), (bt.T if tb else bt)
        m, k = an.shape
        n = bn.shape[1]
        flops = 2.0 * m * n * k
        fns = {"tensorcalc": lambda an=an, bn=bn: np.matmul(an, bn),
               "pytorch": lambda at=at, bt=bt: torch.mm(at, bt)}
        if ta or tb:  # the same product with contiguous copies: does the view cost anything?
            ac, bc = np.ascontiguousarray(an), np.ascontiguousarray(bn)
            fns["numpy-contig"] = lambda ac=ac, bc=bc: np.matmul(ac, bc)
        s = common.compare(fns, repeat=rep)
        note = (f"numpy {flops / s['tensorcalc'].median / 1e9:.0f} GFLOP/s, "
                f"torch {flops / s['pytorch'].median / 1e9:.0f} GFLOP/s")
        if "numpy-contig" in s:
            note += f", numpy contiguous copy {common.fmt_time(s['numpy-contig'].median)}"
        rows.append(common.row_from_stats("gemm", f"float32 {name}", s, None, note=note))
    return rows


# ---------------------------------------------------------------------- subprocess experiments
def _child(env_extra, only, quick=True, threads=None, clock="wall"):
    env = dict(os.environ)
    for k, v in env_extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--only", only, "--json", out]
    cmd += (["--quick"] if quick else []) + ([f"--threads={threads}"] if threads else [])
    cmd += [f"--clock={clock}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.returncode, (p.stderr or p.stdout).strip().splitlines()[-1:]
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data, 0, []


def run_coretype(quick, threads=None, clock="wall"):
    """GEMM and the MLP under OPENBLAS_CORETYPE variants (each in a fresh process)."""
    rows, notes = [], []
    for ct in (None, "Haswell", "Zen", "SkylakeX"):
        data, rc, err = _child({"OPENBLAS_CORETYPE": ct, "TENSORCALC_NO_BLAS_TUNING": None},
                               "gemm,b", quick, threads, clock)
        label = ct or "default"
        if data is None:
            msg = f"OPENBLAS_CORETYPE={label}: process died, rc {rc} " + (
                "(SIGILL: Illegal instruction — the CPU lacks these kernels' instructions)"
                if rc in (-4, 132) else f"{err}")
            notes.append(msg)
            continue
        for r in data["rows"]:
            r = common.Row.from_json(r)
            if r.bench == "gemm" and "1024" not in r.case and "fwd 128x784" not in r.case:
                continue
            if r.note == "vs torch written with the same ops":
                continue
            r.bench = f"coretype={label}"
            r.target = None
            rows.append(r)
        notes.append(f"OPENBLAS_CORETYPE={label}: NumPy BLAS kernel "
                     f"{data['extra'].get('blas_kernel')}")
    return rows, notes


def run_malloc(quick, threads=None, clock="wall"):
    """The MLP benchmarks with and without tensorcalc.backend's mallopt tuning."""
    rows, notes = [], []
    for label, env in (("mallopt on (default)", {"TENSORCALC_NO_MALLOPT": None}),
                       ("mallopt off (TENSORCALC_NO_MALLOPT=1)", {"TENSORCALC_NO_MALLOPT": "1"})):
        data, rc, err = _child(env, "b,c,gemm1024", quick, threads, clock)
        if data is None:
            notes.append(f"{label}: child failed rc {rc}: {err}")
            continue
        for r in data["rows"]:
            r = common.Row.from_json(r)
            if r.note == "vs torch written with the same ops":
                continue
            r.bench = label
            r.target = None
            rows.append(r)
        notes.append(f"{label}: backend.MALLOC_TUNED={data['extra'].get('malloc_tuned')}")
    return rows, notes


# ---------------------------------------------------------------------------------------- main
def main(argv=None):
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--only", default="a,b,c,gemm,coretype,malloc",
                   help="comma list of: a, b, c, gemm, gemm1024, coretype, malloc")
    args = p.parse_args(argv)
    which = set(args.only.split(","))
    common.set_threads(args.threads)
    common.set_clock(args.clock)
    info = common.machine_info()
    rows = run_ops(which, args.quick)
    if "gemm" in which:
        rows += run_gemm(args.quick)
    elif "gemm1024" in which:
        rows += [r for r in run_gemm_1024(args.quick)]
    notes = []
    ct_rows, mal_rows = [], []
    if "coretype" in which:
        ct_rows, n = run_coretype(args.quick, args.threads, args.clock)
        notes += n
    if "malloc" in which:
        mal_rows, n = run_malloc(args.quick, args.threads, args.clock)
        notes += n
    all_rows = rows + ct_rows + mal_rows
    common.print_rows(all_rows)
    for n in notes:
        print("note:", n)
    extra = {"blas_kernel": [b.get("architecture") for b in info["blas"]
                             if b.get("internal_api") == "openblas"],
             "malloc_tuned": info["tc_malloc_tuned"], "torch_threads": info.get("torch_threads"),
             "notes": notes}
    common.dump_json(args.json, all_rows, extra)
    if args.write:
        common.write_section("bench_core", core_md(rows, ct_rows, mal_rows, notes, info))
    return all_rows, ct_rows, mal_rows, notes


def run_gemm_1024(quick):
    saved = GEMM_SHAPES[:]
    GEMM_SHAPES[:] = saved[:2]
    try:
        return run_gemm(quick)
    finally:
        GEMM_SHAPES[:] = saved


def core_md(rows, ct_rows, mal_rows, notes, info) -> str:
    blas = ", ".join(f"{b.get('internal_api')} {b.get('architecture')} x{b.get('num_threads')}"
                     for b in info["blas"])
    out = [f"## Core ops (bench_core.py) — {common.stamp()}", "",
           f"torch threads {info.get('torch_threads')}; thread pools: {blas}."
           " Both libraries timed alternately in one process; median ± IQR per call.", "",
           common.rows_table(rows)]
    if ct_rows or any("CORETYPE" in n for n in notes):
        out += ["", "### OPENBLAS_CORETYPE (fresh process each; tensorcalc column = NumPy)", "",
                common.rows_table(ct_rows) if ct_rows else "(no rows)", ""]
        out += [f"- {n}" for n in notes if "CORETYPE" in n]
    if mal_rows or any("mallopt" in n for n in notes):
        out += ["", "### glibc malloc tuning (tensorcalc.backend mallopt; fresh process each)", "",
                "mallopt is process-wide, so it affects PyTorch's CPU allocator in the same "
                "process too.", "",
                common.rows_table(mal_rows) if mal_rows else "(no rows)", ""]
        out += [f"- {n}" for n in notes if "mallopt" in n]
    return "\n".join(out)


if __name__ == "__main__":
    main()
