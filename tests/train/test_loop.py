"""The Loop/Step protocol proved on two shapes that are not supervised learning — an alternating
two-model GAN step and an environment-driven DQN step with a replay buffer (counted in steps) —
each killed with SIGKILL mid-run in a subprocess and resumed bit-identical; plus hooks, several
outputs and losses, and the Loop's safety: signals after the last step, SIGTERM, derived-file
repair, bad data vs divergence, training longer than planned."""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tensorcalc.functional as F
from tensorcalc import nn, optim
from tensorcalc.autodiff import mode
from tensorcalc.data import DataLoader, TensorDataset, make_blobs
from tensorcalc.tensor import Tensor
from tensorcalc.train import (
    Callback,
    DataError,
    Loop,
    Step,
    SupervisedStep,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    TrainingTerminated,
)
from tensorcalc.train.logging import read_history

HERE = os.path.dirname(os.path.abspath(__file__))


def _mlp(sizes, rng):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, rng=rng))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------- a GAN shape
class GANStep(Step):
    """Alternating updates: the discriminator D on real x and fake G(z) (z ~ N(0, I) from the
    step's rng), then the generator G through D — two models, two optimisers.

        L_D = mean softplus(−D(x)) + mean softplus(D(G(z)))      (non-saturating GAN)
        L_G = mean softplus(−D(G(z)))
    """

    guarded = ("loss_d", "loss_g")

    def __init__(self, seed):
        super().__init__()
        init = np.random.default_rng(seed)
        self.G, self.D = _mlp([2, 16, 2], init), _mlp([2, 16, 1], init)
        self.modules = {"generator": self.G, "discriminator": self.D}
        self.optimizers = {"g": optim.Adam(self.G.parameters(), lr=0.01),
                           "d": optim.Adam(self.D.parameters(), lr=0.01)}
        self.rng = np.random.default_rng(seed + 1)

    @property
    def rngs(self):
        return {"noise": self.rng, **super().rngs}

    def step(self, batch):
        x = Tensor(batch[0])
        z = Tensor(self.rng.standard_normal((len(batch[0]), 2)).astype(np.float32))
        fake = self.G(z)
        loss_d = F.softplus(-self.D(x)).mean() + F.softplus(self.D(fake.detach())).mean()
        d = self.check_finite("loss_d", float(loss_d.item()))
        self.optimizers["d"].zero_grad()
        loss_d.backward()
        self.after_backward("discriminator")
        self.optimizers["d"].step()
        self.after_update("discriminator")
        loss_g = F.softplus(-self.D(fake)).mean()
        g = self.check_finite("loss_g", float(loss_g.item()))
        self.optimizers["g"].zero_grad()
        loss_g.backward()
        self.after_backward("generator")
        self.optimizers["g"].step()
        self.after_update("generator")
        return {"loss_d": d, "loss_g": g, "n": len(batch[0])}

    def evaluate(self, data):
        """Distance between the means of 256 generated points (fixed noise) and the data."""
        z = np.random.default_rng(123).standard_normal((256, 2)).astype(np.float32)
        with mode.no_grad():
            fake = self.G(Tensor(z)).data
        return {"mean_gap": float(np.linalg.norm(fake.mean(0) - np.asarray(data).mean(0)))}


def make_gan(seed=0):
    data_rng = np.random.default_rng(seed + 2)
    real = (data_rng.standard_normal((128, 2)) * 0.3 + [2.0, -1.0]).astype(np.float32)
    loader = DataLoader(TensorDataset(real), batch_size=32, shuffle=True, rng=seed + 3)
    return GANStep(seed), dict(data=loader, epochs=6, val_data=real, checkpoint_every=3)


# ---------------------------------------------------------------------------- an RL shape
class Chain:
    """A deterministic toy environment: states 0..L−1 on a line, actions 0 (left) / 1 (right),
    reward 1 and a new episode on reaching the right end, at most 3L moves per episode."""

    def __init__(self, length=5):
        self.length, self.s, self.t = length, 0, 0

    def reset(self):
        self.s, self.t = 0, 0
        return self.s

    def step(self, a):
        self.s = min(max(self.s + (1 if a == 1 else -1), 0), self.length - 1)
        self.t += 1
        done = self.s == self.length - 1 or self.t >= 3 * self.length
        return self.s, float(self.s == self.length - 1), done


class DQNStep(Step):
    """Q-learning with an ε-greedy policy (ε and minibatches from the step's rng) and a replay
    buffer of transitions (s, a, r, s′, done); one environment move and one update per step:

        L = mean (Q(s, a) − (r + γ (1 − done) max_a′ Q(s′, a′)))²    (target held constant)
    """

    def __init__(self, seed, capacity=64, batch=16, gamma=0.9, eps=0.3):
        super().__init__()
        self.env = Chain()
        self.q = _mlp([self.env.length, 16, 2], np.random.default_rng(seed))
        self.modules = {"q": self.q}
        self.optimizers = {"q": optim.Adam(self.q.parameters(), lr=0.02)}
        self.rng = np.random.default_rng(seed + 1)
        self.capacity, self.batch, self.gamma, self.eps = capacity, batch, gamma, eps
        self.buf = {"s": np.zeros(capacity, np.int64), "a": np.zeros(capacity, np.int64),
                    "r": np.zeros(capacity, np.float32), "s2": np.zeros(capacity, np.int64),
                    "done": np.zeros(capacity, np.float32)}
        self.size = self.pos = self.episodes = 0
        self.state = self.env.reset()

    @property
    def rngs(self):
        return {"policy": self.rng, **super().rngs}

    def _onehot(self, s):
        return np.eye(self.env.length, dtype=np.float32)[np.asarray(s)]

    def step(self, batch):
        assert batch is None  # the step draws its own data
        if self.rng.random() < self.eps:
            a = int(self.rng.integers(2))
        else:
            with mode.no_grad():
                a = int(np.argmax(self.q(Tensor(self._onehot([self.state]))).data[0]))
        s2, r, done = self.env.step(a)
        for k, v in zip(("s", "a", "r", "s2", "done"), (self.state, a, r, s2, float(done)),
                        strict=True):
            self.buf[k][self.pos] = v
        self.pos, self.size = (self.pos + 1) % self.capacity, min(self.size + 1, self.capacity)
        self.state = self.env.reset() if done else s2
        self.episodes += int(done)
        if self.size < self.batch:
            return {"loss": 0.0, "reward": r}
        i = self.rng.integers(self.size, size=self.batch)
        with mode.no_grad():
            q2 = self.q(Tensor(self._onehot(self.buf["s2"][i]))).data.max(axis=1)
        target = self.buf["r"][i] + self.gamma * (1 - self.buf["done"][i]) * q2
        q = (self.q(Tensor(self._onehot(self.buf["s"][i])))
             * Tensor(np.eye(2, dtype=np.float32)[self.buf["a"][i]])).sum(axis=1)
        loss = ((q - Tensor(target.astype(np.float32))) ** 2).mean()
        value = self.check_finite("loss", float(loss.item()))
        self.optimizers["q"].zero_grad()
        loss.backward()
        self.after_backward("q")
        self.optimizers["q"].step()
        self.after_update("q")
        return {"loss": value, "reward": r}

    def evaluate(self, episodes):
        """Mean return of ``episodes`` greedy episodes on a fresh environment."""
        env, total = Chain(), 0.0
        with mode.no_grad():
            for _ in range(episodes):
                s, done = env.reset(), False
                while not done:
                    a = int(np.argmax(self.q(Tensor(self._onehot([s]))).data[0]))
                    s, r, done = env.step(a)
                    total += r
        return {"return": total / episodes}

    def state_arrays(self):
        return dict(self.buf)

    def load_state_arrays(self, arrays):
        self.buf = {k: np.array(arrays[k]) for k in self.buf}

    def state_meta(self):
        return {"size": self.size, "pos": self.pos, "episodes": self.episodes,
                "state": self.state, "env": [self.env.s, self.env.t]}

    def load_state_meta(self, meta):
        self.size, self.pos, self.episodes = meta["size"], meta["pos"], meta["episodes"]
        self.state = meta["state"]
        self.env.s, self.env.t = meta["env"]


def make_dqn(seed=0):
    return DQNStep(seed), dict(steps=60, eval_every=20, val_data=2, checkpoint_every=7)


MAKERS = {"gan": make_gan, "dqn": make_dqn}


class Freeze(Callback):
    """At global step ``at``: write ``marker`` and hang (the parent kills the process)."""

    def __init__(self, at, marker):
        self.at, self.marker = at, marker

    def on_batch_end(self, host, logs):
        if host.global_step == self.at:
            with open(self.marker, "w") as f:
                f.write("frozen")
            time.sleep(60)


def run(kind, out_dir=None, resume=False, callbacks=()):
    step, kw = MAKERS[kind](0)
    loop = Loop(step, out_dir=out_dir, callbacks=callbacks, quiet=True, tensorboard=False, **kw)
    ck = os.path.join(out_dir, "checkpoints", "last") if resume else None
    loop.run(resume_from=ck)
    return step, loop


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _same_state(a, b):
    for name, m in a.modules.items():
        wa, wb = m.state_dict(), b.modules[name].state_dict()
        assert all(np.array_equal(wa[k], wb[k]) for k in wa), name
    sa, sb = a.state_arrays(), b.state_arrays()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert a.state_meta() == b.state_meta()


if __name__ == "__main__":  # the child of the SIGKILL tests: run until frozen at a step
    kind, out, at, marker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    run(kind, out, callbacks=[Freeze(at, marker)])
    sys.exit(3)  # never reached: the parent kills the process first


@pytest.mark.parametrize("kind, at", [("gan", 14), ("dqn", 31)])
def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path, kind, at):
    ref_step, ref_loop = run(kind)
    out, marker = str(tmp_path / "run"), str(tmp_path / "frozen")
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "test_loop.py"), kind, out,
                              str(at), marker], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(marker):
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.02)
        assert os.path.exists(os.path.join(out, "checkpoints", "last", "manifest.json"))
    finally:
        child.kill()  # SIGKILL: no handler, no cleanup
        child.wait()
    assert child.returncode == -signal.SIGKILL
    step, loop = run(kind, out, resume=True)
    assert loop.global_step == ref_loop.global_step
    assert _strip(loop.history) == _strip(ref_loop.history)
    _same_state(step, ref_step)
    for name, g in step.rngs.items():
        assert g.bit_generator.state == ref_step.rngs[name].bit_generator.state, name
    assert _strip(read_history(os.path.join(out, "history.csv"))) == _strip(loop.history)


def test_gan_shape_learns_and_logs_both_losses():
    step, loop = run("gan")
    hist = loop.history
    assert len(hist) == 6 and {"train_loss_d", "train_loss_g", "lr_g", "lr_d",
                               "val_mean_gap"} <= set(hist[0])
    assert hist[-1]["val_mean_gap"] < 0.5 * hist[0]["val_mean_gap"]


def test_dqn_shape_counts_steps_and_keeps_its_buffer():
    step, loop = run("dqn")
    assert loop.global_step == 60 and [r["step"] for r in loop.history] == [20, 40, 60]
    assert "epoch" not in loop.history[0] and "val_return" in loop.history[0]
    assert step.size == 60 and step.episodes >= 1


def test_hooks_after_backward_and_after_update_see_each_module():
    seen = []

    class GradNorms(Callback):
        def after_backward(self, host, step, name):
            m = step.modules[name]
            seen.append((name, float(sum((p.grad ** 2).sum() for p in m.parameters()))))

    step, kw = make_gan(0)
    loop = Loop(step, callbacks=[GradNorms()], quiet=True, **dict(kw, epochs=1))
    updates = []
    loop.add_hook("after_update", lambda s, name: updates.append(name))
    evals = []
    loop.add_hook("on_evaluate", lambda s, figs: evals.append(figs["mean_gap"]))
    loop.run()
    assert [n for n, _ in seen] == ["discriminator", "generator"] * 4
    assert all(v > 0 for _, v in seen)
    assert updates == [n for n, _ in seen]
    assert evals == [loop.history[0]["val_mean_gap"]]
    with pytest.raises(ValueError, match="event"):
        loop.add_hook("before_lunch", print)


# ---------------------------------------------------------------------------- supervised
def _blobs(seed=0):
    x, y = make_blobs(240, centers=3, std=1.5, rng=seed, box=4.0)
    return (x[:200], y[:200]), (x[200:], y[200:])


def _trainer(out_dir=None, seed=0, schedule=None, epochs_planned=2, **kw):
    streams = np.random.SeedSequence(seed).spawn(3)
    init, shuffle, own = (np.random.default_rng(s) for s in streams)
    model = nn.Sequential(nn.Linear(2, 16, rng=init), nn.ReLU(), nn.Linear(16, 3, rng=init))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = None
    if schedule == "cosine":
        sched = optim.CosineAnnealingLR(opt, T_max=epochs_planned)
    elif schedule == "onecycle":
        sched = optim.OneCycleLR(opt, max_lr=0.1, total_steps=epochs_planned * 13)
    tr = Trainer(model, F.cross_entropy, opt, metrics=["acc"], scheduler=sched, rng=own,
                 out_dir=out_dir, quiet=True, tensorboard=False, **kw)
    (x, y), val = _blobs(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, rng=shuffle)
    return tr, loader, DataLoader(TensorDataset(*val), batch_size=64)


def test_several_outputs_and_named_losses():
    class TwoHeads(nn.Module):
        def __init__(self, rng):
            super().__init__()
            self.body = nn.Linear(2, 8, rng=rng)
            self.cls = nn.Linear(8, 3, rng=rng)
            self.reg = nn.Linear(8, 2, rng=rng)

        def forward(self, x):
            h = self.body(x).relu()
            return self.cls(h), self.reg(h)

    def losses(out, y):
        logits, pos = out
        labels, where = y
        return {"ce": F.cross_entropy(logits, labels), "box": F.mse_loss(pos, where)}

    (x, y), _ = _blobs()
    data = DataLoader(TensorDataset(x, y, x * 0.5), batch_size=20, collate_fn=None)
    batches = [(b[0], (b[1], b[2])) for b in data]
    model = TwoHeads(np.random.default_rng(0))
    step = SupervisedStep(model, losses, optim.Adam(model.parameters(), lr=0.02))
    hist = Loop(step, batches, epochs=5, val_data=batches, quiet=True).run()
    r0, r = hist[0], hist[-1]
    assert math.isclose(r["train_loss"], r["train_ce"] + r["train_box"], rel_tol=1e-5)
    assert r["train_box"] < r0["train_box"] and r["train_ce"] < r0["train_ce"]
    assert {"val_loss", "val_ce", "val_box"} <= set(r)
    figs, out, tgt = step.evaluate(batches, return_outputs=True)
    assert out[0].shape == (200, 3) and out[1].shape == (200, 2) and tgt[0].shape == (200,)


# ---------------------------------------------------------------------------- issue 8
def test_ctrl_c_after_the_last_step_saves_and_raises(tmp_path):
    """Before: a SIGINT during the final evaluation/callbacks was swallowed, exit 0."""

    class LateCtrlC(Callback):
        def on_fit_end(self, host):
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    tr, loader, val = _trainer(str(tmp_path), callbacks=[LateCtrlC()])
    with pytest.raises(TrainingInterrupted) as e:
        tr.fit(loader, val, epochs=2)
    assert "after the last step" in str(e.value)
    assert os.path.exists(os.path.join(e.value.checkpoint, "manifest.json"))
    assert signal.getsignal(signal.SIGINT) is before
    tr2, loader2, val2 = _trainer(str(tmp_path))
    tr2.fit(loader2, val2, epochs=2, resume_from=e.value.checkpoint)  # nothing left to do
    assert _strip(tr2.history) == _strip(tr.history) and tr2.global_step == 26


def test_sigterm_saves_a_checkpoint_and_resume_matches(tmp_path):
    """Before: SIGTERM killed the run with nothing saved since the last periodic checkpoint."""
    ref, loader, val = _trainer()
    ref.fit(loader, val, epochs=2)

    class Term(Callback):
        def on_batch_end(self, host, logs):
            if host.global_step == 6:
                os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    tr, loader, val = _trainer(str(tmp_path), callbacks=[Term()], checkpoint_every=0)
    with pytest.raises(TrainingTerminated) as e:
        tr.fit(loader, val, epochs=2)
    assert isinstance(e.value, TrainingInterrupted) and e.value.signal_name == "SIGTERM"
    assert "step 6 of 13" in str(e.value)
    assert signal.getsignal(signal.SIGTERM) is before
    b, lb, vb = _trainer(str(tmp_path))
    b.fit(lb, vb, epochs=2, resume_from=e.value.checkpoint)
    wr, wb = ref.model.state_dict(), b.model.state_dict()
    assert all(np.array_equal(wr[k], wb[k]) for k in wr)


def test_resume_repairs_a_stale_history_csv(tmp_path):
    """Before: a crash just before history.csv's rename left it stale for good."""
    tr, loader, val = _trainer(str(tmp_path))
    tr.fit(loader, val, epochs=2)
    path = tmp_path / "history.csv"
    rows = path.read_text().splitlines()
    path.write_text("\n".join(rows[:2]) + "\n")  # the file as it was after epoch 1
    b, lb, vb = _trainer(str(tmp_path))
    b.fit(lb, vb, epochs=2, resume_from=str(tmp_path / "checkpoints" / "last"))
    assert path.read_text().splitlines() == rows


def test_nan_in_the_data_is_a_data_error_not_divergence():
    """Before: reported as divergence with advice to lower the learning rate (--lr)."""
    tr, loader, val = _trainer()
    x = loader.dataset.arrays[0]
    x[57, 1] = np.nan
    with pytest.raises(DataError) as e:
        tr.fit(loader, val, epochs=1)
    msg = str(e.value)
    assert isinstance(e.value, ValueError) and not isinstance(e.value, TrainingDiverged)
    assert "NaN" in msg and "inputs" in msg and "row 57" in msg and "batch" in msg
    assert "learning rate" not in msg and "--" not in msg
    assert tr.global_step < len(loader)  # stopped at the bad batch, before using it


def test_divergence_message_names_the_learning_rate_not_a_cli_flag():
    tr, loader, val = _trainer()
    tr.loss_fn = lambda z, t: F.cross_entropy(z, t) * float("inf")
    with pytest.raises(TrainingDiverged) as e:
        tr.fit(loader, val, epochs=1)
    assert "learning rate" in str(e.value) and "--lr" not in str(e.value)
    assert e.value.figure == "loss" and e.value.lr == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_resume_with_more_epochs_replans_the_schedule(tmp_path, schedule):
    """Before: --resume --epochs 4 after a 2-epoch cosine/1cycle run failed (1cycle raised; the
    cosine would restart its rise from 0)."""
    tr, loader, val = _trainer(str(tmp_path), schedule=schedule, epochs_planned=2)
    tr.fit(loader, val, epochs=2)
    assert tr.lr < 0.01  # the 2-epoch plan ended at (nearly) zero
    b, lb, vb = _trainer(str(tmp_path), schedule=schedule, epochs_planned=2)
    w2 = {k: v.copy() for k, v in b.model.state_dict().items()}
    b.fit(lb, vb, epochs=4, resume_from=str(tmp_path / "checkpoints" / "last"))
    assert len(b.history) == 4 and b.global_step == 4 * 13
    lrs = [r["lr"] for r in b.history]
    assert b.scheduler.horizon == (4 if schedule == "cosine" else 4 * 13)
    if schedule == "cosine":  # the 4-epoch plan from t = 2 on: 0.5·γ₀, then 0.146·γ₀, then 0
        assert lrs[2] == pytest.approx(0.05) and lrs[3] == pytest.approx(0.1 * 0.1464, rel=1e-3)
    assert 0 < lrs[3] < lrs[2] <= 0.1 and b.lr < 0.01
    w4 = b.model.state_dict()
    assert not all(np.array_equal(w2[k], w4[k]) for k in w4)  # it trained
    assert b.history[3]["train_loss"] <= b.history[1]["train_loss"] * 1.05


def _write_v1(path, model, optimizer, step, trainer_state):
    """A checkpoint laid out as the version-1 Trainer wrote it (format 1)."""
    import hashlib
    import json

    from safetensors.numpy import save_file

    path.mkdir()
    tensors = {f"model.{k}": np.asarray(v) for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    scalars = {}
    for i, st in osd["state"].items():
        scalars[str(i)] = {}
        for k, v in st.items():
            if hasattr(v, "shape") and np.ndim(v):
                tensors[f"optim.state.{i}.{k}"] = np.asarray(v)
            else:
                scalars[str(i)][k] = v.item() if hasattr(v, "item") else v
    save_file(tensors, str(path / "t.safetensors"), metadata={"format": "tensorcalc.checkpoint"})
    digest = hashlib.sha256((path / "t.safetensors").read_bytes()).hexdigest()
    name = f"tensors-{digest[:16]}.safetensors"
    os.replace(path / "t.safetensors", path / name)
    manifest = {
        "format": "tensorcalc.checkpoint", "format_version": 1, "tensorcalc_version": "0.1",
        "step": step, "config": {}, "created": "2024-01-01T00:00:00+00:00",
        "model": {"class": type(model).__name__, "keys": list(model.state_dict())},
        "optimizer": {"class": type(optimizer).__name__, "param_groups": osd["param_groups"],
                      "state": scalars},
        "scheduler": None, "rng": None, "extra": {"trainer": trainer_state},
        "tensors": {"file": name, "sha256": digest,
                    "bytes": (path / name).stat().st_size}}
    (path / "manifest.json").write_text(json.dumps(manifest, default=lambda v: list(v)))


def test_version_1_trainer_checkpoint_resumes(tmp_path):
    """A run directory written by the old Trainer (format 1) continues under the Loop."""
    tr, loader, val = _trainer(seed=5)
    tr.fit(loader, val, epochs=1)
    trainer_state = {
        "epoch": 1, "global_step": 13, "step_in_epoch": 0, "train_seconds": 1.0,
        "history": tr.history, "running": {"loss_sum": 0.0, "count": 0},
        "train_metrics": [m.state_dict() for m in tr.step._train_metrics],
        "rngs": {"trainer": tr.rng.bit_generator.state}, "loader": loader.state_dict(),
        "callbacks": {}}
    _write_v1(tmp_path / "v1", tr.model, tr.optimizer, 13, trainer_state)
    ref, lr_, vr = _trainer(seed=5)
    ref.fit(lr_, vr, epochs=2)
    b, lb, vb = _trainer(seed=5)
    b.fit(lb, vb, epochs=2, resume_from=str(tmp_path / "v1"))
    wr, wb = ref.model.state_dict(), b.model.state_dict()
    assert all(np.array_equal(wr[k], wb[k]) for k in wr)
    assert _strip(b.history) == _strip(ref.history)
    c, lc, vc = _trainer(seed=5)  # a different model: a clear CheckpointError, not a traceback
    c.step.modules = {"net": c.model}
    from tensorcalc.serialization import CheckpointError

    with pytest.raises(CheckpointError, match="modules"):
        c.fit(lc, vc, epochs=2, resume_from=str(tmp_path / "v1"))


def test_step_counted_run_over_a_loader_resumes_mid_epoch_bit_identical(tmp_path):
    """``steps`` over a loader cycles through its epochs; a checkpoint taken mid-epoch of the
    loader and mid-period of the run resumes exactly (loader position, running sums)."""

    def make(out_dir=None, callbacks=()):
        tr, loader, val = _trainer()
        return tr.step, Loop(tr.step, loader, steps=30, eval_every=12, val_data=val,
                             out_dir=out_dir, callbacks=callbacks, quiet=True,
                             tensorboard=False)

    ref_step, ref = make()
    ref.run()
    assert [r["step"] for r in ref.history] == [12, 24, 30]

    class Crash(Callback):
        def on_batch_end(self, host, logs):
            if host.global_step == 17:  # loader epoch 2, step 4; run period 2, step 5
                host.save_checkpoint(str(tmp_path / "mid"))
                raise RuntimeError("crash")

    _, a = make(callbacks=[Crash()])
    with pytest.raises(RuntimeError, match="crash"):
        a.run()
    b_step, b = make()
    b.run(resume_from=str(tmp_path / "mid"))
    assert _strip(b.history) == _strip(ref.history)
    _same_state(b_step, ref_step)


def test_loop_plan_is_checked():
    step, _ = make_dqn(0)
    with pytest.raises(ValueError, match="steps"):
        Loop(step, None, epochs=3).run()  # no data: counted in steps
    with pytest.raises(ValueError, match="exactly one"):
        Loop(step, None, epochs=3, steps=5).run()
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Loop(step, None, steps=0).run()


def test_a_schedule_stepped_outside_the_loop_is_refused():
    # A Step that steps the schedule it hands to the Loop would run it at twice its speed.
    from tensorcalc.optim.lr_scheduler import CosineAnnealingLR
    from tensorcalc.train.steps import SupervisedStep

    model = nn.Linear(2, 1, rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=10)

    class Twice(SupervisedStep):
        def step(self, batch):
            out = super().step(batch)
            sched.step()  # wrong: the Loop steps it too
            return out

    x = np.ones((8, 2), dtype=np.float32)
    y = np.ones((8, 1), dtype=np.float32)
    step = Twice(model, lambda z, t: ((z - t) ** 2).mean(), opt, scheduler=sched)
    loop = Loop(step, [(x, y)], steps=4, quiet=True)
    with pytest.raises(RuntimeError, match="stepped outside the Loop"):
        loop.run()
