"""nn/optim benchmark: the core MLP step written with the toolkit, vs torch.nn / torch.optim.

MLP 784-256-256-10, batch 128, float32: ``nn.Sequential(Linear, ReLU, Linear, ReLU, Linear)``,
``functional.cross_entropy(logits, integer targets)``, then ``opt.zero_grad(); loss.backward();
opt.step()`` with ``optim.SGD(lr=0.01)`` and with ``optim.Adam(lr=1e-3)`` (PyTorch defaults, i.e.
its single-tensor CPU implementation). Both models start from the same weights; one step is
checked to give the same loss and the same updated parameters before timing.
Targets (issue "Neural-network toolkit"): SGD ≤ 1.0x, Adam ≤ 1.0x PyTorch eager.

Run:  .venv-bench/bin/python benchmarks/bench_nn.py [--quick] [--write] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402

try:
    import torch  # noqa: E402
    import torch.nn.functional as TF  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("bench_nn needs torch==2.13.0 (CPU) in .venv-bench")

SIZES = (784, 256, 256, 10)
BATCH = 128
TARGETS = {"SGD": 1.0, "Adam": 1.0}


def nn_available() -> str | None:
    """None when tensorcalc.nn / functional.cross_entropy / optim are importable, else why not."""
    try:
        import tensorcalc.functional as F
        import tensorcalc.nn as nn
        import tensorcalc.optim as optim

        nn.Linear, nn.ReLU, nn.Sequential, F.cross_entropy, optim.SGD, optim.Adam  # noqa: B018
    except (ImportError, AttributeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def make_data(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return x, y


def tc_model(seed=0):
    import tensorcalc.nn as nn

    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        layers.append(nn.Linear(a, b, rng=seed + i))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torch_model_like(model):
    """torch.nn.Sequential with the same weights as the tensorcalc model."""
    layers = []
    lin = [m for m in model.modules() if type(m).__name__ == "Linear"]
    for i, m in enumerate(lin):
        t = torch.nn.Linear(m.in_features, m.out_features)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(np.ascontiguousarray(m.weight.numpy())))
            t.bias.copy_(torch.from_numpy(np.ascontiguousarray(m.bias.numpy())))
        layers.append(t)
        if i < len(lin) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def make_steps(opt_name):
    import tensorcalc.functional as F
    import tensorcalc.optim as optim

    x_np, y_np = make_data()
    model = tc_model()
    tmodel = torch_model_like(model)
    lr = 0.01 if opt_name == "SGD" else 1e-3
    opt = getattr(optim, opt_name)(model.parameters(), lr=lr)
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), lr=lr)
    x, y = tc.tensor(x_np), tc.tensor(y_np)
    xt, yt = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def tc_step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    def pt_step():
        topt.zero_grad()
        loss = TF.cross_entropy(tmodel(xt), yt)
        loss.backward()
        topt.step()
        return loss

    # same loss, same parameters after two steps, float32 kept
    for _ in range(2):
        lt, lp = tc_step(), pt_step()
        assert lt.dtype == np.float32, f"loss dtype {lt.dtype}"
        assert abs(lt.item() - lp.item()) < 1e-4 * max(1.0, abs(lp.item())), (lt.item(), lp.item())
    tps = [p for p in model.parameters()]
    pps = [p for p in tmodel.parameters()]
    for a, b in zip(tps, pps, strict=True):
        assert a.dtype == np.float32 and a.grad.dtype == np.float32, "float64 leak"
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-3, atol=5e-5)
    return {"tensorcalc": tc_step, "pytorch": pt_step}


def run(quick=False):
    why = nn_available()
    if why is not None:
        print(f"bench_nn: tensorcalc.nn/optim not available yet ({why}); skipped")
        return [], why
    rep = 9 if quick else 31
    rows = []
    for name in ("SGD", "Adam"):
        s = common.compare(make_steps(name), repeat=rep)
        rows.append(common.row_from_stats(
            "nn", f"MLP 784-256-256-10 b128: nn.Linear + F.cross_entropy + optim.{name}", s,
            TARGETS[name]))
    return rows, None


def nn_md(rows, why, info) -> str:
    out = [f"## nn / optim (bench_nn.py) — {common.stamp()}", "",
           f"torch threads {info.get('torch_threads')}; same initial weights; one step = "
           "zero_grad, forward, cross_entropy, backward, optimiser step.", ""]
    out.append(common.rows_table(rows) if rows else f"(not run: {why})")
    return "\n".join(out)


def main(argv=None):
    p = common.add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    common.set_clock(args.clock)
    info = common.machine_info()
    rows, why = run(args.quick)
    common.print_rows(rows)
    common.dump_json(args.json, rows, {"skipped": why})
    if args.write:
        common.write_section("bench_nn", nn_md(rows, why, info))
    return rows


if __name__ == "__main__":
    main()
