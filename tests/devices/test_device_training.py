"""Devices above the ops: modules, optimisers, random draws, loaders, checkpoints and a training
run, on the stand-in (always) and on CUDA (where present)."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import backend, nn
from tensorcalc.data import DataLoader
from tensorcalc.serialization import load_state, save_state


def _mlp(seed=0):
    return nn.Sequential(nn.Linear(6, 16, rng=seed), nn.ReLU(), nn.Dropout(0.25, rng=seed + 1),
                         nn.Linear(16, 3, rng=seed + 2))


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, :3].argmax(axis=1)).astype(np.int64)


def _train(model, opt, x, y, device, steps=5):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = tc.functional.cross_entropy(model(tc.tensor(x, device=device)),
                                           backend.to_device(y, device))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_tensor_to_and_device(device):
    t = tc.tensor([[1.0, 2.0]], requires_grad=True)
    d = t.to(device)
    assert d.device == device and t.device == "cpu"
    assert d.requires_grad and d.is_leaf
    assert d.to(device) is d
    back = d.to("cpu")
    assert back.device == "cpu" and np.array_equal(back.numpy(), t.numpy())
    with pytest.raises(TypeError, match="implicitly"):
        np.asarray(d)
    for make in (lambda: tc.zeros((2, 3), device=device), lambda: tc.ones(4, device=device),
                 lambda: tc.full((2,), 7.0, device=device), lambda: tc.eye(3, device=device),
                 lambda: tc.arange(5, device=device), lambda: tc.randn(3, 2, rng=0, device=device),
                 lambda: tc.rand(4, rng=0, device=device),
                 lambda: tc.uniform((3,), -1, 1, rng=0, device=device)):
        assert make().device == device
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tc.zeros(2, device="tpu")


def test_device_random_draws_are_seeded_and_distributed(device):
    a = tc.randn(20000, rng=5, device=device).numpy()
    b = tc.randn(20000, rng=5, device=device).numpy()
    assert np.array_equal(a, b)
    assert abs(a.mean()) < 0.03 and abs(a.std() - 1) < 0.03
    u = tc.rand(20000, rng=6, device=device).numpy()
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


def test_module_to_moves_parameters_buffers_and_optimizer_state(device):
    x, y = _data()
    model = nn.Sequential(nn.Linear(6, 8, rng=0), nn.BatchNorm1d(8), nn.ReLU(),
                          nn.Linear(8, 3, rng=1))
    opt = tc.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, opt, x, y, "cpu", steps=2)  # creates moment estimates on the host
    model.to(device)
    assert all(p.device == device for p in model.parameters())
    assert all(b.device == device for b in model.buffers())
    for st in opt.state.values():
        for v in st.values():
            if hasattr(v, "shape") and not np.isscalar(v):
                assert backend.device_of(v) == device
    losses = _train(model, opt, x, y, device, steps=3)  # no mixing error: state followed
    assert np.all(np.isfinite(losses))


def test_training_matches_cpu_and_checkpoint_is_device_independent(device, tmp_path):
    x, y = _data()
    runs = {}
    for dev in ("cpu", device):
        model = nn.Sequential(nn.Linear(6, 16, rng=0), nn.Tanh(), nn.Linear(16, 3, rng=2))
        model.to(dev)
        opt = tc.optim.Adam(model.parameters(), lr=1e-2)
        runs[dev] = (model, opt, _train(model, opt, x, y, dev, steps=6))
    cpu_losses, dev_losses = runs["cpu"][2], runs[device][2]
    assert dev_losses[-1] < dev_losses[0]
    np.testing.assert_allclose(dev_losses, cpu_losses, rtol=1e-5)
    # saved from the device, loaded on the CPU (and the reverse)
    model, opt, _ = runs[device]
    save_state(str(tmp_path / "ck"), modules={"model": model}, optimizers={"opt": opt})
    fresh = nn.Sequential(nn.Linear(6, 16, rng=9), nn.Tanh(), nn.Linear(16, 3, rng=9))
    fopt = tc.optim.Adam(fresh.parameters(), lr=1e-2)
    load_state(str(tmp_path / "ck"), modules={"model": fresh}, optimizers={"opt": fopt})
    for a, b in zip(fresh.parameters(), model.parameters(), strict=True):
        assert a.device == "cpu"
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    cpu_model, cpu_opt, _ = runs["cpu"]
    save_state(str(tmp_path / "ck2"), modules={"model": cpu_model}, optimizers={"opt": cpu_opt})
    load_state(str(tmp_path / "ck2"), modules={"model": model}, optimizers={"opt": opt})
    assert all(p.device == device for p in model.parameters())
    nxt = _train(model, opt, x, y, device, steps=1)[0]
    ref = _train(cpu_model, cpu_opt, x, y, "cpu", steps=1)[0]
    assert nxt == pytest.approx(ref, rel=1e-5)


def test_dropout_draws_on_device(device):
    x = tc.ones((200, 50), device=device)
    y = tc.functional.dropout(x, 0.5, rng=0)
    assert y.device == device
    kept = (y.numpy() > 0).mean()
    assert 0.45 < kept < 0.55 and set(np.unique(y.numpy())) <= {0.0, 2.0}


def test_dataloader_moves_batches(device):
    x, y = _data(10)
    loader = DataLoader((x, y), batch_size=4, device=device)
    xb, yb = next(iter(loader))
    assert backend.device_of(xb) == device and backend.device_of(yb) == device
    np.testing.assert_array_equal(backend.to_numpy(xb), x[:4])


def test_loop_with_default_device_trains_and_resumes(device, tmp_path):
    from tensorcalc.train import Loop
    from tensorcalc.train.steps import SupervisedStep

    x, y = _data(96)
    model = _mlp()
    opt = tc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = SupervisedStep(model, lambda out, t: tc.functional.cross_entropy(out, t), opt)
    backend.set_default_device(device)
    try:
        loop = Loop(step, DataLoader((x, y), batch_size=16, shuffle=True, rng=1), epochs=3,
                    out_dir=str(tmp_path), quiet=True, progress=False, tensorboard=False)
        hist = loop.run()
    finally:
        backend.set_default_device("cpu")
    assert all(p.device == device for p in model.parameters())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # the checkpoint it wrote loads into a CPU model
    fresh = _mlp(5)
    load_state(str(tmp_path / "checkpoints" / "last"), modules={"model": fresh}, strict=False)
    for a, b in zip(fresh.parameters(), model.parameters(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_cli_device_flag(device, tmp_path, capsys):
    from tensorcalc.cli import main

    rc = main(["train", "mlp", "--device", device, "--epochs", "1", "--limit", "256",
               "--out", str(tmp_path / "run"), "--no-report", "--quiet"])
    assert rc == 0
    assert backend.default_device() == device
    backend.set_default_device("cpu")
    assert main(["train", "mlp", "--device", "tpu", "--epochs", "1"]) == 2
    assert "--device: unknown device 'tpu'" in capsys.readouterr().err
