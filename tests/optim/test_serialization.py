"""safetensors weights and atomic checkpoints: round trips, resume, corruption, crashes."""

from __future__ import annotations

import ast
import hashlib
import json
import pathlib

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.nn as nn
from tensorcalc import optim
from tensorcalc import serialization as ser
from tensorcalc.serialization import CheckpointError

# ---------------------------------------------------------------------- a small model
if hasattr(nn, "Linear") and hasattr(nn, "Module"):

    class MLP(nn.Module):
        def __init__(self, seed):
            super().__init__()
            rng = np.random.default_rng(seed)
            self.fc1 = nn.Linear(4, 8, rng=rng)
            self.fc2 = nn.Linear(8, 2, rng=rng)

        def forward(self, x):
            return self.fc2(self.fc1(x).tanh())

else:  # pragma: no cover - only before tensorcalc.nn exists

    class MLP:
        def __init__(self, seed):
            rng = np.random.default_rng(seed)
            self._p = {
                "fc1.weight": tc.Tensor(rng.normal(size=(8, 4)).astype(np.float32) * 0.5,
                                        requires_grad=True),
                "fc1.bias": tc.Tensor(np.zeros(8, np.float32), requires_grad=True),
                "fc2.weight": tc.Tensor(rng.normal(size=(2, 8)).astype(np.float32) * 0.5,
                                        requires_grad=True),
                "fc2.bias": tc.Tensor(np.zeros(2, np.float32), requires_grad=True),
            }

        def parameters(self):
            return list(self._p.values())

        def state_dict(self):
            return {k: v.data.copy() for k, v in self._p.items()}

        def load_state_dict(self, d, strict=True):
            with tc.no_grad():
                for k, v in d.items():
                    self._p[k].data[...] = v

        def __call__(self, x):
            p = self._p
            h = (x @ p["fc1.weight"].T + p["fc1.bias"]).tanh()
            return h @ p["fc2.weight"].T + p["fc2.bias"]


DATA_RNG = np.random.default_rng(42)
X = DATA_RNG.normal(size=(64, 4)).astype(np.float32)
Y = np.stack([X[:, 0] * X[:, 1], np.sin(X[:, 2])], axis=1).astype(np.float32)


def make(seed=0):
    model = MLP(seed)
    opt = optim.Adam(model.parameters(), lr=0.05, weight_decay=1e-3, amsgrad=True)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def train(model, opt, sched, rng, steps):
    for _ in range(steps):
        idx = rng.choice(len(X), size=16, replace=False)  # the RNG matters for the result
        opt.zero_grad()
        err = model(tc.tensor(X[idx])) - tc.tensor(Y[idx])
        (err * err).mean().backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()


def params_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------- weights files
def test_save_load_weights_is_bit_exact(tmp_path):
    rng = np.random.default_rng(1)
    state = {
        "w32": rng.normal(size=(3, 5)).astype(np.float32),
        "w64": rng.normal(size=(7,)),
        "w16": rng.normal(size=(2, 2)).astype(np.float16),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.array(np.pi),
        "noncontig": rng.normal(size=(4, 6))[:, ::2],
        "tensor": tc.tensor(rng.normal(size=3).astype(np.float32)),
        "special": np.array([np.nan, np.inf, -0.0, 1e-45], dtype=np.float32),
    }
    path = tmp_path / "w.safetensors"
    ser.save_weights(state, path, metadata={"note": "hello", "epoch": 3})
    back, meta = ser.load_weights(path, return_metadata=True)
    assert set(back) == set(state)
    for k, v in state.items():
        v = np.asarray(v.data if isinstance(v, tc.Tensor) else v)
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert back[k].tobytes() == v.tobytes(), k  # bit-exact
    assert meta == {"note": "hello", "epoch": "3"}
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".tmp-")]


def test_module_state_dict_round_trip(tmp_path):
    model = MLP(3)
    ser.save_weights(model.state_dict(), tmp_path / "m.safetensors")
    fresh = MLP(4)
    fresh.load_state_dict(ser.load_weights(tmp_path / "m.safetensors"))
    for k, v in model.state_dict().items():
        assert fresh.state_dict()[k].tobytes() == v.tobytes()


def test_truncated_or_missing_weights_file(tmp_path):
    path = tmp_path / "w.safetensors"
    ser.save_weights({"a": np.arange(100, dtype=np.float32)}, path)
    data = path.read_bytes()
    for cut in (len(data) - 4, 60, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|not a safetensors"):
            ser.load_weights(path)
    with pytest.raises(FileNotFoundError):
        ser.load_weights(tmp_path / "nope.safetensors")


def test_failed_weights_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    ser.save_weights({"a": np.ones(3)}, path)
    before = path.read_bytes()

    def crash(tensors, p, metadata):
        pathlib.Path(p).write_bytes(b"\x00" * 10)  # half-written, then the "crash"
        raise OSError("disk full")

    monkeypatch.setattr(ser, "_write_safetensors", crash)
    with pytest.raises(OSError, match="disk full"):
        ser.save_weights({"a": np.zeros(3)}, path)
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["w.safetensors"]


def test_serialization_never_uses_pickle():
    src = pathlib.Path(ser.__file__).read_text()
    names = {a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
    assert not {"pickle", "dill", "cloudpickle", "marshal"} & names
    assert "np.load(" not in src and "allow_pickle" not in src


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_layout_and_manifest(tmp_path):
    model, opt, sched = make()
    rng = np.random.default_rng(7)
    train(model, opt, sched, rng, 2)
    ck = tmp_path / "ckpt"
    cfg = {"lr": 0.05, "layers": [4, 8, 2], "name": "mlp"}
    ser.save_checkpoint(ck, model, opt, step=2, rng=rng, config=cfg, scheduler=sched,
                        extra={"best_loss": 0.25, "history": np.arange(3.0)})
    manifest = json.loads((ck / "manifest.json").read_text())
    assert manifest["tensorcalc_version"] == tc.__version__
    assert manifest["format_version"] == ser.FORMAT_VERSION == 2
    assert manifest["config"] == cfg and manifest["meta"]["step"] == 2
    assert manifest["created"].endswith("+00:00")
    tfile = ck / manifest["tensors"]["file"]
    assert hashlib.sha256(tfile.read_bytes()).hexdigest() == manifest["tensors"]["sha256"]
    assert sorted(f.name for f in ck.iterdir()) == sorted(["manifest.json", tfile.name])
    tensors = ser.load_weights(tfile)
    assert "optimizers/optimizer/0/exp_avg" in tensors
    assert "optimizers/optimizer/3/max_exp_avg_sq" in tensors
    assert "modules/model/fc1.weight" in tensors and "arrays/history" in tensors
    mo = manifest["optimizers"]["optimizer"]
    assert mo["class"] == "Adam"
    assert mo["param_groups"][0]["lr"] == opt.param_groups[0]["lr"]
    assert mo["state"]["0"]["step"] == 2
    assert manifest["schedules"]["scheduler"]["state"]["last_epoch"] == 2
    assert manifest["modules"]["model"]["keys"] == list(model.state_dict())
    assert manifest["rngs"]["rng"]["bit_generator"] == "PCG64"
    assert manifest["arrays"] == ["history"] and manifest["meta"]["extra"] == {"best_loss": 0.25}

    info = ser.load_checkpoint(ck)
    assert info.step == 2 and info.config == cfg
    assert info.extra["best_loss"] == 0.25
    np.testing.assert_array_equal(info.extra["history"], np.arange(3.0))


def test_resume_3_plus_3_equals_6(tmp_path):
    """Train 3 steps, checkpoint, load into a FRESH model/optimiser/schedule (different init),
    restore the RNG, train 3 more: bit-identical to 6 uninterrupted steps (same seed)."""
    m6, o6, s6 = make(0)
    train(m6, o6, s6, np.random.default_rng(123), 6)

    m3, o3, s3 = make(0)
    rng = np.random.default_rng(123)
    train(m3, o3, s3, rng, 3)
    ser.save_checkpoint(tmp_path / "ck", m3, o3, step=3, rng=rng, scheduler=s3)
    del m3, o3, s3, rng

    model, opt, sched = make(99)
    assert not all(np.array_equal(a, b) for a, b in
                   zip(params_of(model).values(), params_of(m6).values(), strict=True))
    info = ser.load_checkpoint(tmp_path / "ck", model, opt, sched)
    assert info.step == 3
    train(model, opt, sched, info.make_rng(), 3)
    for k, v in params_of(m6).items():
        assert params_of(model)[k].tobytes() == v.tobytes(), k
    assert opt.param_groups[0]["lr"] == o6.param_groups[0]["lr"]
    assert sched.get_last_lr() == s6.get_last_lr()
    for p, q in zip(opt._params(), o6._params(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert opt.state[p][key].tobytes() == o6.state[q][key].tobytes()


def test_rng_restore_for_other_bit_generators(tmp_path):
    for bitgen in (np.random.MT19937, np.random.PCG64, np.random.Philox, np.random.SFC64):
        rng = np.random.Generator(bitgen(5))
        rng.normal(size=10)
        model = MLP(0)
        ser.save_checkpoint(tmp_path / bitgen.__name__, model, rng=rng)
        expect = rng.normal(size=5)
        info = ser.load_checkpoint(tmp_path / bitgen.__name__)
        np.testing.assert_array_equal(info.make_rng().normal(size=5), expect)
        other = np.random.Generator(bitgen(0))
        np.testing.assert_array_equal(info.restore_rng(other).normal(size=5), expect)


def _snapshot(model, opt):
    return (params_of(model),
            {i: {k: np.copy(v) for k, v in opt.state.get(p, {}).items()}
             for i, p in enumerate(opt._params())},
            [g["lr"] for g in opt.param_groups])


def _same(a, b):
    pa, sa, la = a
    pb, sb, lb = b
    assert la == lb
    assert all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for k in sa[i]:
            assert np.array_equal(sa[i][k], sb[i][k])


@pytest.mark.parametrize("damage", ["truncate_tensors", "flip_byte", "truncate_manifest",
                                    "delete_tensors", "garbage_manifest"])
def test_corrupt_checkpoint_is_rejected_and_nothing_is_overwritten(tmp_path, damage):
    model, opt, sched = make(0)
    train(model, opt, sched, np.random.default_rng(0), 2)
    ck = tmp_path / "ck"
    ser.save_checkpoint(ck, model, opt, step=2, scheduler=sched)
    manifest = json.loads((ck / "manifest.json").read_text())
    tfile = ck / manifest["tensors"]["file"]
    if damage == "truncate_tensors":
        tfile.write_bytes(tfile.read_bytes()[:-100])
    elif damage == "flip_byte":
        b = bytearray(tfile.read_bytes())
        b[-7] ^= 0x40
        tfile.write_bytes(bytes(b))
    elif damage == "truncate_manifest":
        m = (ck / "manifest.json").read_bytes()
        (ck / "manifest.json").write_bytes(m[: len(m) // 2])
    elif damage == "delete_tensors":
        tfile.unlink()
    else:
        (ck / "manifest.json").write_text('{"format": "something else"}')

    fresh, fopt, fsched = make(5)
    train(fresh, fopt, fsched, np.random.default_rng(1), 1)
    before = _snapshot(fresh, fopt)
    lr_before = fsched.get_last_lr()
    with pytest.raises(CheckpointError):
        ser.load_checkpoint(ck, fresh, fopt, fsched)
    _same(before, _snapshot(fresh, fopt))
    assert fsched.get_last_lr() == lr_before


def test_mismatched_model_or_optimizer_changes_nothing(tmp_path):
    model, opt, sched = make(0)
    train(model, opt, sched, np.random.default_rng(0), 2)
    ck = ser.save_checkpoint(tmp_path / "ck", model, opt, scheduler=sched)

    class Wider(MLP):
        def __init__(self, seed):
            super().__init__(seed)
            self.fc2 = nn.Linear(8, 3, rng=seed)

    wide = Wider(1)
    wopt = optim.Adam(wide.parameters())
    before = _snapshot(wide, wopt)
    with pytest.raises(CheckpointError, match="fc2.weight"):
        ser.load_checkpoint(ck, wide, wopt)
    _same(before, _snapshot(wide, wopt))

    other = MLP(1)
    sgd = optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="Adam"):
        ser.load_checkpoint(ck, other, sgd)
    # the right optimiser class but a different group layout: rejected, model untouched
    m2 = MLP(2)
    ps = list(m2.parameters())
    split = optim.Adam([{"params": ps[:2]}, {"params": ps[2:]}])
    before = _snapshot(m2, split)
    with pytest.raises(CheckpointError, match="groups"):
        ser.load_checkpoint(ck, m2, split)
    _same(before, _snapshot(m2, split))


@pytest.mark.parametrize("where", ["tensors", "manifest"])
def test_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, where):
    model, opt, sched = make(0)
    ck = tmp_path / "ck"
    ser.save_checkpoint(ck, model, opt, step=1, scheduler=sched)
    expect = params_of(model)
    train(model, opt, sched, np.random.default_rng(0), 2)  # new weights to save

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(ser, "_write_safetensors" if where == "tensors" else
                        "_atomic_write_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        ser.save_checkpoint(ck, model, opt, step=3, scheduler=sched)
    monkeypatch.undo()

    fresh, fopt, fsched = make(7)
    info = ser.load_checkpoint(ck, fresh, fopt, fsched)
    assert info.step == 1
    for k, v in expect.items():
        assert params_of(fresh)[k].tobytes() == v.tobytes()
    # the next successful save replaces it and cleans up every leftover
    ser.save_checkpoint(ck, model, opt, step=3, scheduler=sched)
    assert ser.load_checkpoint(ck).step == 3
    assert len([f for f in ck.iterdir() if f.name.startswith("tensors-")]) == 1
    assert not [f for f in ck.iterdir() if f.name.startswith(".tmp-")]


def test_bad_arguments(tmp_path):
    model = MLP(0)
    with pytest.raises(TypeError, match="JSON"):
        ser.save_checkpoint(tmp_path / "ck", model, config={"f": object()})
    assert not (tmp_path / "ck").exists()  # failed before touching the disk
    with pytest.raises(TypeError, match="Generator"):
        ser.save_checkpoint(tmp_path / "ck", model, rng=np.random.RandomState(0))
    with pytest.raises(FileNotFoundError):
        ser.load_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="manifest"):
        ser.load_checkpoint(tmp_path / "empty")
    ser.save_checkpoint(tmp_path / "noopt", model)
    with pytest.raises(CheckpointError, match="no optimizer"):
        ser.load_checkpoint(tmp_path / "noopt", model, optim.SGD(model.parameters()))
    assert issubclass(CheckpointError, ValueError)
