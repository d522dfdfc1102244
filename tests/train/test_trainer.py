"""Trainer: learning, determinism, resume (in process), NaN safety, callbacks, Ctrl-C, logs."""

import os
import signal

import numpy as np
import pytest

import tensorcalc.functional as F
from tensorcalc import nn, optim
from tensorcalc.data import DataLoader, TensorDataset, make_blobs
from tensorcalc.serialization import load_weights
from tensorcalc.train import (
    Callback,
    Checkpoint,
    EarlyStopping,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)
from tensorcalc.train.metrics import Accuracy


def _problem(seed=0, n=240):
    x, y = make_blobs(n, centers=3, std=1.5, rng=seed, box=4.0)
    return (x[:200], y[:200]), (x[200:], y[200:])


def _setup(seed=0, out_dir=None, scheduler=None, **kw):
    streams = np.random.SeedSequence(seed).spawn(3)
    init, shuffle, own = (np.random.default_rng(s) for s in streams)
    model = nn.Sequential(nn.Linear(2, 16, rng=init), nn.ReLU(), nn.Dropout(0.1, rng=init),
                          nn.Linear(16, 3, rng=init))
    opt = optim.Adam(model.parameters(), lr=0.02)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5) if scheduler else None
    tr = Trainer(model, F.cross_entropy, opt, metrics=[Accuracy()], scheduler=sched, rng=own,
                 out_dir=out_dir, quiet=True, **kw)
    (x, y), val = _problem(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, rng=shuffle)
    return tr, loader, DataLoader(TensorDataset(*val), batch_size=64)


def _weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_fit_learns_and_records_history():
    tr, loader, val = _setup()
    hist = tr.fit(loader, val, epochs=6)
    assert len(hist) == 6 and [r["epoch"] for r in hist] == list(range(1, 7))
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    assert hist[-1]["val_acc"] > 0.8
    assert tr.global_step == 6 * len(loader)
    figs = tr.evaluate(val)
    assert figs["acc"] == pytest.approx(hist[-1]["val_acc"])
    out = tr.predict(val.dataset.arrays[0])
    assert out.shape == (40, 3)
    assert tr.model.training  # evaluate/predict restore the mode


def test_same_seed_bit_identical_losses_and_weights():
    a, la, va = _setup(seed=3)
    b, lb, vb = _setup(seed=3)
    ha, hb = a.fit(la, va, epochs=3), b.fit(lb, vb, epochs=3)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in ha]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in hb]
    wa, wb = _weights(a.model), _weights(b.model)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    c, lc, vc = _setup(seed=4)
    c.fit(lc, vc, epochs=3)
    assert not np.array_equal(_weights(c.model)["0.weight"], wa["0.weight"])


def test_resume_mid_epoch_in_process_is_bit_identical(tmp_path):
    ref, loader, val = _setup(seed=1, scheduler=True)
    ref.fit(loader, val, epochs=3)

    class Stop(Callback):
        def on_batch_end(self, trainer, logs):
            if trainer.global_step == 17:  # mid epoch 2 (13 steps per epoch)
                trainer.save_checkpoint(str(tmp_path / "mid"))
                raise RuntimeError("simulated crash")

    a, la, va = _setup(seed=1, scheduler=True, callbacks=[Stop()])
    with pytest.raises(RuntimeError, match="simulated crash"):
        a.fit(la, va, epochs=3)
    b, lb, vb = _setup(seed=1, scheduler=True)
    b.fit(lb, vb, epochs=3, resume_from=str(tmp_path / "mid"))
    wr, wb = _weights(ref.model), _weights(b.model)
    assert all(np.array_equal(wr[k], wb[k]) for k in wr)
    assert [r["train_loss"] for r in ref.history] == [r["train_loss"] for r in b.history]
    assert b.lr == ref.lr


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    tr, loader, val = _setup(out_dir=str(tmp_path), checkpoint_every=5)

    def poisoned(z, t):
        loss = F.cross_entropy(z, t)
        return loss * float("nan") if tr.model.training and tr.global_step == 30 else loss

    tr.loss_fn = poisoned
    before = None

    class Snap(Callback):
        def on_batch_end(self, trainer, logs):
            nonlocal before
            before = _weights(trainer.model)

    tr.callbacks.append(Snap())
    with pytest.raises(TrainingDiverged) as e:
        tr.fit(loader, val, epochs=5)
    msg = str(e.value)
    assert "nan" in msg and "epoch 3, step 5 of 13" in msg and "checkpoints/last" in msg
    # the bad step was never applied
    now = _weights(tr.model)
    assert all(np.array_equal(before[k], now[k]) for k in now)
    ck = tmp_path / "checkpoints" / "last"
    files = [f for f in os.listdir(ck) if f.startswith("tensors-")]
    w = load_weights(ck / files[0])
    assert all(np.isfinite(v).all() for v in w.values())


def test_early_stopping_and_best_checkpoint(tmp_path):
    tr, loader, val = _setup(out_dir=str(tmp_path),
                             callbacks=[EarlyStopping("val_acc", patience=1, min_delta=1.0)])
    hist = tr.fit(loader, val, epochs=10)
    assert len(hist) == 2  # no epoch can improve accuracy by more than 1.0
    assert "early stopping" in tr.stop_reason
    assert (tmp_path / "checkpoints" / "best" / "manifest.json").exists()
    assert (tmp_path / "checkpoints" / "last" / "manifest.json").exists()
    assert (tmp_path / "history.csv").read_text().count("\n") == 3
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))


def test_plateau_schedule_reduces_lr_when_stuck():
    tr, loader, val = _setup()
    sched = optim.ReduceLROnPlateau(tr.optimizer, factor=0.5, patience=0)
    tr2 = Trainer(tr.model, F.cross_entropy, tr.optimizer, scheduler=sched, quiet=True,
                  monitor="val_loss", rng=0)
    tr2.fit(loader, None, epochs=4)  # no val: steps on train_loss
    assert tr2.lr <= 0.02


def test_sigint_saves_checkpoint_and_resume_matches(tmp_path):
    ref, loader, val = _setup(seed=2)
    ref.fit(loader, val, epochs=2)

    class CtrlC(Callback):
        def on_batch_end(self, trainer, logs):
            if trainer.global_step == 9:
                os.kill(os.getpid(), signal.SIGINT)

    a, la, va = _setup(seed=2, out_dir=str(tmp_path), callbacks=[CtrlC()])
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background
    with pytest.raises(TrainingInterrupted) as e:
        a.fit(la, va, epochs=2)
    assert e.value.checkpoint.endswith(os.path.join("checkpoints", "last"))
    assert "step 9 of 13" in str(e.value)
    assert signal.getsignal(signal.SIGINT) is before
    b, lb, vb = _setup(seed=2, out_dir=str(tmp_path))
    b.fit(lb, vb, epochs=2, resume_from=e.value.checkpoint)
    wr, wb = _weights(ref.model), _weights(b.model)
    assert all(np.array_equal(wr[k], wb[k]) for k in wr)


def test_loader_sharing_an_rng_with_the_model_is_refused():
    tr, loader, val = _setup()
    loader.rng = tr.model[2].rng
    with pytest.raises(ValueError, match="shares its rng"):
        tr.fit(loader, val, epochs=1)


def test_bad_epochs_raise():
    tr, loader, val = _setup()
    with pytest.raises(ValueError, match="epochs"):
        tr.fit(loader, val, epochs=0)


def test_checkpoint_every_must_be_positive():
    with pytest.raises(ValueError, match="every_n_steps"):
        Checkpoint("x", every_n_steps=0)
