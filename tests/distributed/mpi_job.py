"""A small training job run by tests/distributed under ``mpiexec -n P`` (or alone, P = 1).

    python mpi_job.py MODEL OUT [--epochs E] [--resume CKPT] [--save-ckpt] [--die-at STEP]

Trains MODEL ("mlp" with dropout, or "cnn" with dropout2d and dropout) on 96 seeded random
examples with a global batch of 16 and Adam; rank 0 writes the final weights to OUT/weights.npz
and, with --save-ckpt, the Loop's checkpoints under OUT/run. --die-at S makes rank 1 raise
(or, with --kill, SIGKILL itself; with --sigterm, send itself SIGTERM) at global step S.
"""

import argparse
import os
import signal
import sys

import numpy as np

import tensorcalc as tc
from tensorcalc import distributed as dist
from tensorcalc import nn
from tensorcalc.functional import cross_entropy


class CNN(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, rng=rng)
        self.drop2d = nn.Dropout2d(0.2, rng=rng)
        self.fc = nn.Linear(4 * 6 * 6, 16, rng=rng)
        self.drop = nn.Dropout(0.3, rng=rng)
        self.out = nn.Linear(16, 3, rng=rng)

    def forward(self, x):
        h = self.drop2d(tc.relu(self.conv(x)))
        h = h.reshape((h.shape[0], -1))
        return self.out(self.drop(tc.relu(self.fc(h))))


def build(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(12, 32, rng=rng), nn.ReLU(), nn.Dropout(0.3, rng=rng),
                              nn.Linear(32, 3, rng=rng))
        x = rng.standard_normal((96, 12)).astype(np.float32)
    else:
        model = CNN(rng)
        x = rng.standard_normal((96, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    return model, x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--resume")
    ap.add_argument("--save-ckpt", action="store_true")
    ap.add_argument("--die-at", type=int, default=0)
    ap.add_argument("--kill", action="store_true")
    ap.add_argument("--sigterm", action="store_true", help="rank 1 gets SIGTERM at --die-at")
    ap.add_argument("--mode", default="buckets")
    a = ap.parse_args()
    w = dist.world()
    model, x, y = build(a.model)
    loader = tc.data.DataLoader(tc.data.TensorDataset(x, y), batch_size=16, shuffle=True,
                                rng=np.random.default_rng(1))
    opt = tc.optim.Adam(model.parameters(), lr=1e-2)
    run_dir = os.path.join(a.out, "run") if a.save_ckpt else None
    trainer = tc.train.Trainer(model, cross_entropy, opt, rng=2, out_dir=run_dir, quiet=True,
                               progress=False, checkpoint_every=2, tensorboard=False,
                               augment=lambda xb, r: xb + 0.01 * r.standard_normal(xb.shape)
                               .astype(np.float32))
    dist.data_parallel(trainer, loader, bucket_mb=0.001, mode=a.mode)
    if a.die_at and w.rank == 1:
        count = [0]

        def boom(step, name):
            count[0] += 1
            if count[0] == a.die_at:
                if a.kill:
                    os.kill(os.getpid(), signal.SIGKILL)
                if a.sigterm:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                raise RuntimeError(f"injected failure at step {count[0]}")
        trainer.loop.add_hook("after_backward", boom)
    try:
        trainer.fit(loader, epochs=a.epochs, resume_from=a.resume)
    except tc.train.TrainingInterrupted as e:
        print(f"rank {w.rank}: {e}", file=sys.stderr)
        return 3
    if w.rank == 0:
        os.makedirs(a.out, exist_ok=True)
        np.savez(os.path.join(a.out, "weights.npz"),
                 **{k: v.data for k, v in model.named_parameters()})
        with open(os.path.join(a.out, "losses.txt"), "w") as f:
            f.write(" ".join(repr(r["train_loss"]) for r in trainer.history))
    dist.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
