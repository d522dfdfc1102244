"""PyTorch reference of the gan recipe's default DCGAN, scored with tensorcalc's own evaluator
(issue 12: is the FID gap, 90.9 against the target 55, the engine's or the recipe's?).

Same as ``tensorcalc train gan`` (non-saturating, DCGAN, seed 0), written in PyTorch:

* G: z (64) -> fc 64·7·7 -> BN1d -> ReLU -> (64, 7, 7) -> convT 4×4 s2 64→32 -> BN2d -> ReLU
  -> convT 4×4 s2 32→1 -> tanh;  D: conv 4×4 s2 1→32 -> LReLU 0.2 -> conv 4×4 s2 32→64 -> BN2d
  -> LReLU 0.2 -> fc 1 (a logit).
* Initial weights: ``--init tensorcalc`` copies the weights of ``tensorcalc train gan --init
  default`` (the layers' own Kaiming-uniform, from the recipe's init stream; the recipe's default
  before this comparison), ``--init dcgan`` draws the DCGAN paper's N(0, 0.02²) for conv/linear
  weights, BN γ ~ N(1, 0.02²), biases and β 0 (torch's generator, seeded with ``--seed``; the
  recipe's default now, with NumPy's draws).
* Data, batches and noise: the recipe's — MNIST-10k's 8,000 training images scaled to [−1, 1],
  tensorcalc's DataLoader with the recipe's loader stream (batch 64, shuffled, last partial batch
  dropped), z drawn from the recipe's train stream in GANStep's order (D's fake batch, then G's).
* Losses and updates as GANStep: D minimises E softplus(−D(x)) + E softplus(D(G(z))) (real and
  fake through D in separate calls, so BN sees separate batches), then G minimises
  E softplus(−D(G(z))) (non-saturating); Adam 2e-4, β = (0.5, 0.999) for both.
* Scores: 2,000 samples of the recipe's fixed evaluation noise (seed 4321) against the 2,000
  MNIST-10k test images, by tensorcalc's GenerativeScorer (FID on the shipped LeNet's 84-d
  features, classifier IS) — once with G in eval mode (BN running statistics, as the recipe
  samples) and once in train mode (BN batch statistics over batches of 500; running statistics
  restored afterwards).
* ``--no-d-bn``: D without its batch norm (a variant, with ``--init dcgan``).
* ``--loss wgan-gp``: the recipe's WGAN-GP instead (critic without batch norm, Adam 1e-4,
  β = (0, 0.9), 5 critic updates per generator update on their own minibatches, λ = 10 on
  per-example interpolates u·x + (1 − u)·G(z) with u ~ U(0, 1) from the train stream after each
  critic's z, norm √(Σ g² + 1e-12); 1,508 generator steps).

Figures (docs/recipes.md, "Generative models"): seed 0, FID at 6,225 steps 90.1 (tensorcalc 90.9)
with the recipe's old init, 71.0 with ``--init dcgan``; WGAN-GP 118.2 (tensorcalc 117.8).

Run (process time per generator step on one loaded core: DCGAN 0.06 s, WGAN-GP 0.30 s; about
7 minutes for 6,225 DCGAN steps with the evaluations):
    nice -n 10 .venv-bench/bin/python benchmarks/reference/dcgan_torch.py --steps 6225 \
        --out /tmp/dcgan_torch.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from tensorcalc.data import DataLoader, TensorDataset  # noqa: E402
from tensorcalc.models.gan import DCGANDiscriminator, DCGANGenerator  # noqa: E402
from tensorcalc.recipes._generative import images01  # noqa: E402
from tensorcalc.recipes.gan import scorer  # noqa: E402
from tensorcalc.train.pipeline import seed_streams  # noqa: E402

LATENT, BATCH = 64, 64


def torch_models(d_batchnorm=True):
    G = nn.Sequential(nn.Linear(LATENT, 64 * 49), nn.BatchNorm1d(64 * 49), nn.ReLU(),
                      nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
                      nn.BatchNorm2d(32), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
                      nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 4, 2, 1),
                      *([nn.BatchNorm2d(64)] if d_batchnorm else []), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(64 * 49, 1),
                      nn.Flatten(0))
    return G, D


def copy_tensorcalc_init(G, D, init_rng, d_batchnorm=True):
    """The recipe's initial weights (its ``_models``: G then D from the init stream)."""
    g = DCGANGenerator(LATENT, rng=init_rng)
    d = DCGANDiscriminator(batchnorm=d_batchnorm, rng=init_rng)
    for tc_model, t_model in ((g, G), (d, D)):
        sd = {k: torch.tensor(np.asarray(v)) for k, v in tc_model.state_dict().items()}
        missing = t_model.load_state_dict(sd, strict=False)
        assert not missing.missing_keys and not missing.unexpected_keys, missing


def dcgan_init(G, D, seed=0):
    torch.manual_seed(seed)
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def sample(G, z, mode):
    """Images in [0, 1] from noise z (N, 64): G in eval mode, or in train mode (batch
    statistics) with its running statistics left as they were."""
    was = G.training
    saved = copy.deepcopy(G.state_dict()) if mode == "train" else None
    G.train(mode == "train")
    with torch.no_grad():
        out = torch.cat([G(torch.from_numpy(z[i:i + 500])) for i in range(0, len(z), 500)])
    if saved is not None:
        G.load_state_dict(saved)
    G.train(was)
    return np.clip((out.numpy() + 1.0) * 0.5, 0.0, 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6225)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--init", choices=("tensorcalc", "dcgan"), default="tensorcalc")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--beta1", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-d-bn", action="store_true", help="no batch norm in D (--init dcgan)")
    ap.add_argument("--loss", choices=("nonsaturating", "wgan-gp"), default="nonsaturating")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gp = args.loss == "wgan-gp"
    if gp:  # the recipe's LOSS_DEFAULTS for wgan-gp
        args.lr, args.beta1, beta2, n_critic, lam = 1e-4, 0.0, 0.9, 5, 10.0
        args.no_d_bn = True
        if args.steps == 6225:
            args.steps = 1508
    else:
        beta2, n_critic = 0.999, 1
    streams = seed_streams(args.seed)
    G, D = torch_models(not args.no_d_bn)
    if args.init == "tensorcalc":
        if args.no_d_bn and not gp:
            ap.error("--no-d-bn goes with --init dcgan")
        copy_tensorcalc_init(G, D, streams["init"], d_batchnorm=not gp)
    else:
        dcgan_init(G, D, args.seed)
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(args.beta1, beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(args.beta1, beta2))
    sp = nn.functional.softplus

    (xtr, _), _ = images01("mnist10k")
    real = (xtr.reshape(-1, 1, 28, 28) * 2.0 - 1.0).astype(np.float32)
    loader = DataLoader(TensorDataset(real), batch_size=BATCH * n_critic, shuffle=True,
                        drop_last=True,
                        rng=streams["loader"])
    noise_rng = streams["train"]
    eval_noise = np.random.default_rng(4321).standard_normal((2000, LATENT)).astype(np.float32)
    sc = scorer("mnist10k", 2000)
    base = sc.baselines()
    variant = f"{args.loss}, {args.init} init" + (", no BN in D" if args.no_d_bn else "")
    print(f"torch DCGAN ({variant}), {args.steps} generator steps; floor FID "
          f"{base['floor_fid']:.2f}, noise FID {base['noise_fid']:.0f}", flush=True)

    def noise(n):
        return torch.from_numpy(noise_rng.standard_normal((n, LATENT)).astype(np.float32))

    history, step, t_train = [], 0, 0.0
    G.train()
    D.train()
    while step < args.steps:
        for batch in loader:
            xr = torch.from_numpy(np.asarray(batch[0] if isinstance(batch, (list, tuple))
                                             else batch, np.float32))
            t0 = time.process_time()
            for i in range(n_critic):
                xb = xr[i * BATCH:(i + 1) * BATCH]
                with torch.no_grad():
                    fake = G(noise(len(xb)))
                if gp:
                    loss_d = D(fake).mean() - D(xb).mean()
                    u = torch.from_numpy(noise_rng.random(len(xb)).astype(np.float32))
                    xh = (u.view(-1, 1, 1, 1) * xb + (1 - u.view(-1, 1, 1, 1)) * fake)
                    xh.requires_grad_(True)
                    (g,) = torch.autograd.grad(D(xh).sum(), xh, create_graph=True)
                    norm = torch.sqrt((g * g).flatten(1).sum(1) + 1e-12)
                    loss_d = loss_d + lam * ((norm - 1) ** 2).mean()
                else:
                    loss_d = sp(-D(xb)).mean() + sp(D(fake)).mean()
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
            s = D(G(noise(BATCH)))
            loss_g = -s.mean() if gp else sp(-s).mean()
            opt_g.zero_grad()
            opt_d.zero_grad()
            loss_g.backward()
            opt_g.step()
            t_train += time.process_time() - t0
            step += 1
            if step % args.eval_every == 0 or step == args.steps:
                row = {"step": step, "loss_d": loss_d.item(), "loss_g": loss_g.item(),
                       "cpu_s_per_step": t_train / step}
                for mode in ("eval", "train"):
                    s = sc(sample(G, eval_noise, mode))
                    row[f"fid_{mode}"], row[f"is_{mode}"] = s["fid"], s["is"]
                history.append(row)
                print(f"step {step:5d}  FID eval-mode {row['fid_eval']:7.2f} (IS "
                      f"{row['is_eval']:.2f})  train-mode {row['fid_train']:7.2f} (IS "
                      f"{row['is_train']:.2f})  loss D {row['loss_d']:.3f} G {row['loss_g']:.3f}"
                      f"  {row['cpu_s_per_step']:.3f} s/step", flush=True)
            if step >= args.steps:
                break
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "baselines": base,
                                              "history": history}, indent=1))


if __name__ == "__main__":
    main()
