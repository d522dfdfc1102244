"""GAN training: time per generator step, tensorcalc vs PyTorch, same model, 1 and 2
threads (issue 12).

Workload: the gan recipe's small DCGAN (G: z 64 -> fc 64·7·7 -> BN -> ReLU -> convT 64→32 -> BN
-> ReLU -> convT 32→1 -> tanh; D: conv 1→32 -> LReLU -> conv 32→64 [-> BN] -> LReLU -> fc 1),
batch 64, float32.

* DCGAN step (non-saturating, Adam 2e-4, β = (0.5, 0.999)): one D update on real + G(z).detach(),
  one G update — tensorcalc's :class:`GANStep` against the same loop written in PyTorch.
* WGAN-GP step (Adam 1e-4, β = (0, 0.9), n_critic 5, λ = 10, no BN in the critic): five critic
  updates with the gradient penalty (double backward through the critic), one G update.

Before timing, the WGAN-GP critic loss and its parameter gradients (double backward) are checked
against PyTorch in float64 (same weights and inputs; max difference ~2e-15).

Target: ≤ 1.5× PyTorch per generator step. Run:
    .venv-bench/bin/python benchmarks/bench_gan.py [--quick] [--write] [--clock cpu] [--threads N]
(without --threads: 1 and then 2 threads, in one process)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

from tensorcalc import optim  # noqa: E402
from tensorcalc.models.gan import DCGANDiscriminator, DCGANGenerator  # noqa: E402
from tensorcalc.train.generative_steps import GANStep  # noqa: E402

TARGET = 1.5
B, Z = 64, 64


def make_tc(kind, real):
    gp = kind == "wgan-gp"
    g = DCGANGenerator(Z, rng=0)
    d = DCGANDiscriminator(batchnorm=not gp, rng=1)
    lr, betas = (1e-4, (0.0, 0.9)) if gp else (2e-4, (0.5, 0.999))
    step = GANStep(g, d, optim.Adam(g.parameters(), lr=lr, betas=betas),
                   optim.Adam(d.parameters(), lr=lr, betas=betas),
                   kind="wgan-gp" if gp else "nonsaturating", n_critic=5 if gp else 1, rng=2)
    batch = (real[:B * step.n_critic],)
    return lambda: step.step(batch)


def make_torch(kind, real):
    import torch
    from torch import nn

    gp = kind == "wgan-gp"
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(Z, 64 * 49), nn.BatchNorm1d(64 * 49), nn.ReLU(),
                      nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
                      nn.BatchNorm2d(32), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 4, 2, 1),
                      *([] if gp else [nn.BatchNorm2d(64)]), nn.LeakyReLU(0.2), nn.Flatten(),
                      nn.Linear(64 * 49, 1), nn.Flatten(0))
    lr, betas = (1e-4, (0.0, 0.9)) if gp else (2e-4, (0.5, 0.999))
    og = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    od = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    n_critic = 5 if gp else 1
    x = torch.tensor(real[:B * n_critic])
    sp = nn.functional.softplus

    def step():
        for i in range(n_critic):
            xr = x[i * B:(i + 1) * B]
            with torch.no_grad():
                fake = G(torch.randn(B, Z))
            if gp:
                loss = D(fake).mean() - D(xr).mean()
                u = torch.rand(B, 1, 1, 1)
                xh = (fake + (xr - fake) * u).requires_grad_(True)
                (g,) = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
                norm = torch.sqrt((g * g).flatten(1).sum(1) + 1e-12)
                loss = loss + 10.0 * ((norm - 1) ** 2).mean()
            else:
                loss = sp(-D(xr)).mean() + sp(D(fake)).mean()
            od.zero_grad()
            loss.backward()
            od.step()
        s = D(G(torch.randn(B, Z)))
        lg = -s.mean() if gp else sp(-s).mean()
        og.zero_grad()
        od.zero_grad()
        lg.backward()
        og.step()
    return step


def check_penalty_against_torch():
    """Before timing: the WGAN-GP critic loss (Wasserstein + λ·penalty, double backward) and its
    gradients w.r.t. every critic parameter equal PyTorch's in float64 (same weights, inputs, u).
    Returns the largest absolute difference."""
    import torch

    import tensorcalc as tc
    from tensorcalc.functional import generative as G
    from tensorcalc.tensor import Tensor

    d = DCGANDiscriminator(batchnorm=False, rng=1)
    D = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 4, 2, 1), torch.nn.LeakyReLU(0.2),
                            torch.nn.Conv2d(32, 64, 4, 2, 1), torch.nn.LeakyReLU(0.2),
                            torch.nn.Flatten(), torch.nn.Linear(64 * 49, 1),
                            torch.nn.Flatten(0)).double()
    with torch.no_grad():
        for p, q in zip(d.parameters(), D.parameters(), strict=True):
            p.data = p.data.astype(np.float64)
            q.copy_(torch.tensor(p.data))
    rng = np.random.default_rng(0)
    real, fake = rng.uniform(-1, 1, (2, 8, 1, 28, 28))
    u = rng.random(8)
    loss = G.gradient_penalty(d, real, fake, u) + G.wasserstein_critic_loss(d(Tensor(real)),
                                                                            d(Tensor(fake)))
    gs = tc.gradients([loss], list(d.parameters()))
    xr, xf = torch.tensor(real), torch.tensor(fake)
    xh = (xf + (xr - xf) * torch.tensor(u).view(8, 1, 1, 1)).requires_grad_(True)
    (g,) = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
    norm = torch.sqrt((g * g).flatten(1).sum(1) + 1e-12)
    tl = 10 * ((norm - 1) ** 2).mean() + D(xf).mean() - D(xr).mean()
    tg = torch.autograd.grad(tl, list(D.parameters()))
    err = max([abs(loss.item() - tl.item())] +
              [float(np.abs(a.data - b.numpy()).max()) for a, b in zip(gs, tg, strict=True)])
    assert err < 1e-10, f"WGAN-GP loss/gradients differ from PyTorch's by {err}"
    return err


def main():
    ap = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    args = ap.parse_args()
    common.set_clock(args.clock)
    rng = np.random.default_rng(0)
    real = (rng.random((B * 5, 1, 28, 28)) * 2 - 1).astype(np.float32)
    rep = 5 if args.quick else 15
    rows = []
    have_torch = common.torch_available()
    if have_torch:
        print(f"WGAN-GP critic loss and parameter gradients vs PyTorch (float64): max |diff| "
              f"{check_penalty_against_torch():.1e}")
    info = common.machine_info()  # load average before the run
    for threads in common.thread_counts(args):
        common.set_threads(threads)
        for kind in ("dcgan", "wgan-gp"):
            fns = {"tensorcalc": make_tc(kind, real)}
            if have_torch:
                fns["pytorch"] = make_torch(kind, real)
            stats = common.compare(fns, repeat=rep, warmup=2, target_s=0.05)
            what = ("DCGAN non-saturating: 1 D + 1 G update" if kind == "dcgan" else
                    "WGAN-GP: 5 critic updates with the penalty (double backward) + 1 G update")
            rows.append(common.row_from_stats(
                "gan", f"{what}, batch {B}, f32, {threads} thread, {args.clock} clock", stats,
                target=TARGET if have_torch else None))
    common.print_rows(rows)
    common.dump_json(args.json, rows)
    if args.write:
        body = "\n".join([f"### GAN generator step (bench_gan.py), {common.stamp()}", "",
                          common.machine_md(info), f"- load average at end: "
                          f"{common.load_at_end(info)}", "", common.rows_table(rows), ""])
        common.write_section("gan", body)


if __name__ == "__main__":
    main()
