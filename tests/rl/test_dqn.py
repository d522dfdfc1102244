"""DQN: the step learns CartPole beyond a random policy, its pieces behave as the equations
say (targets, Double DQN, Polyak, dueling heads), and a run killed with SIGKILL mid-training
(mid-episode) resumes bit-identical from its last checkpoint."""

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc.serialization import load_state

pytest.importorskip("gymnasium")

from tensorcalc.models.dqn import QNetwork  # noqa: E402
from tensorcalc.rl import make_env  # noqa: E402
from tensorcalc.rl.dqn import (  # noqa: E402
    DQNStep,
    EvalEpisodes,
    evaluate_policy,
    hard_update,
    soft_update,
)
from tensorcalc.train import Callback, Loop  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
warnings.filterwarnings("ignore", category=DeprecationWarning)


def cartpole():
    return make_env("CartPole-v1")


def make_step(seed=0, steps=600, hidden=(32, 32), **kw):
    rng = np.random.default_rng(seed)
    q, qt = QNetwork(4, 2, hidden, rng=rng), QNetwork(4, 2, hidden, rng=rng)
    opt = tc.optim.Adam(q.parameters(), lr=kw.pop("lr", 2.3e-3))
    cfg = dict(total_steps=steps, buffer_size=2000, batch_size=32, learning_starts=100,
               train_freq=4, gradient_steps=2, target_update=50, exploration_fraction=0.3,
               final_eps=0.05, seed=seed)
    cfg.update(kw)
    return DQNStep(cartpole, q, qt, opt, **cfg)


def test_dqn_learns_cartpole_beyond_a_random_policy():
    random_returns = []
    env = cartpole()
    rng = np.random.default_rng(0)
    for ep in range(20):
        env.reset(seed=ep)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(2)))
            total += r
            done = term or trunc
        random_returns.append(total)
    step = make_step(steps=4000, hidden=(64, 64), buffer_size=4000, batch_size=64,
                     learning_starts=500, train_freq=64, gradient_steps=32, target_update=10,
                     exploration_fraction=0.3)
    hist = Loop(step, steps=4000, eval_every=2000, val_data=EvalEpisodes(10), quiet=True,
                tensorboard=False).run()
    greedy = hist[-1]["val_return"]
    assert np.mean(random_returns) < 30
    assert greedy > 2.5 * np.mean(random_returns), (greedy, np.mean(random_returns))
    assert hist[-1]["train_episodes"] > 0 and np.isfinite(hist[-1]["train_loss"])
    assert step.updates == (4000 - 512) // 64 * 32 + 32  # trains at t = 512, 576, ..., 4000


def test_targets_dqn_and_double_dqn():
    step = make_step(double=False)
    b = {"next_obs": np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32),
         "reward": np.ones(5, np.float32), "terminated": np.array([0, 1, 0, 0, 1], np.float32)}
    with tc.no_grad():
        qn = step.target_net(tc.Tensor(b["next_obs"])).data
        qo = step.q_net(tc.Tensor(b["next_obs"])).data
    y = step.targets(b)
    np.testing.assert_allclose(y, 1 + 0.99 * (1 - b["terminated"]) * qn.max(1), rtol=1e-6)
    step.double = True
    yd = step.targets(b)
    want = 1 + 0.99 * (1 - b["terminated"]) * qn[np.arange(5), qo.argmax(1)]
    np.testing.assert_allclose(yd, want, rtol=1e-6)
    assert y.dtype == np.float32


def test_target_updates_hard_and_polyak():
    a, b = QNetwork(4, 2, (8,), rng=0), QNetwork(4, 2, (8,), rng=1)
    pa = [p.data.copy() for p in a.parameters()]
    pb = [p.data.copy() for p in b.parameters()]
    soft_update(b, a, 0.25)
    for p, x, y in zip(b.parameters(), pa, pb, strict=True):
        np.testing.assert_allclose(p.data, 0.25 * x + 0.75 * y, rtol=1e-6)
    hard_update(b, a)
    assert all(np.array_equal(p.data, x) for p, x in zip(b.parameters(), pa, strict=True))


def test_dueling_head_is_value_plus_centred_advantage():
    net = QNetwork(4, 3, (8,), dueling=True, rng=0)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    q = net(tc.Tensor(x)).data
    with tc.no_grad():
        h = net.trunk(tc.Tensor(x))
        v, adv = net.value(h).data, net.advantage(h).data
    np.testing.assert_allclose(q, v + adv - adv.mean(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_dqn_step_trains_with_polyak_dueling_and_mse():
    q = QNetwork(4, 2, (16,), dueling=True, rng=0)
    qt = QNetwork(4, 2, (16,), dueling=True, rng=1)
    opt = tc.optim.Adam(q.parameters(), lr=1e-3)
    step = DQNStep(cartpole, q, qt, opt, total_steps=300, buffer_size=500, batch_size=16,
                   learning_starts=50, train_freq=1, gradient_steps=1, tau=0.05, loss="mse",
                   max_grad_norm=None, double=True, seed=3)
    before = [p.data.copy() for p in qt.parameters()]
    Loop(step, steps=300, quiet=True, tensorboard=False).run()
    assert step.updates == 250
    assert not all(np.array_equal(p.data, x) for p, x in zip(qt.parameters(), before,
                                                              strict=True))


def test_greedy_evaluation_is_seeded_and_batched():
    net = QNetwork(4, 2, (8,), rng=0)
    a = evaluate_policy(net, cartpole, episodes=4, seed=7, record=1)
    b = evaluate_policy(net, cartpole, episodes=4, seed=7)
    assert np.array_equal(a["returns"], b["returns"])
    assert a["trajectory"].shape == (a["lengths"][1] + 1, 4)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="loss"):
        make_step(loss="l1")
    with pytest.raises(ValueError, match="tau"):
        make_step(tau=0.0)
    with pytest.raises(ValueError, match="train_freq"):
        make_step(train_freq=0)


# ---------------------------------------------------------------------- SIGKILL + resume
class Freeze(Callback):
    def __init__(self, at, marker):
        self.at, self.marker = at, marker

    def on_batch_end(self, host, logs):
        if host.global_step == self.at:
            with open(self.marker, "w") as f:
                f.write("frozen")
            time.sleep(60)


def run(out_dir=None, resume=False, callbacks=()):
    step = make_step()
    loop = Loop(step, steps=600, eval_every=200, val_data=EvalEpisodes(2), out_dir=out_dir,
                checkpoint_every=150, callbacks=callbacks, quiet=True, tensorboard=False)
    loop.run(resume_from=os.path.join(out_dir, "checkpoints", "last") if resume else None)
    return step, loop


if __name__ == "__main__":  # the child of the SIGKILL test: run until frozen at a step
    run(sys.argv[1], callbacks=[Freeze(int(sys.argv[2]), sys.argv[3])])
    sys.exit(3)


def test_sigkill_mid_training_then_resume_is_bit_identical(tmp_path):
    ref_step, ref_loop = run()
    out, marker = str(tmp_path / "run"), str(tmp_path / "frozen")
    at = 341  # checkpoint at 300, killed 41 steps later, mid-episode and mid-period
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "test_dqn.py"), out, str(at),
                              marker], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=env)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker):
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    saved = load_state(os.path.join(out, "checkpoints", "last")).meta["step_state"]
    assert saved["t"] == 300 and saved["ep_length"] > 0  # killed after a mid-episode save
    step, loop = run(out, resume=True)
    assert loop.global_step == 600 and step.t == 600
    for name, m in ref_step.modules.items():
        wa, wb = m.state_dict(), step.modules[name].state_dict()
        assert all(np.array_equal(wa[k], wb[k]) for k in wa), name
    sa, sb = ref_step.state_arrays(), step.state_arrays()
    assert sa.keys() == sb.keys()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert ref_step.state_meta() == step.state_meta()
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(ref_loop.history) == strip(loop.history)
