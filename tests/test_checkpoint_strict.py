"""Strict loading (issue 8): never a silent wrong load, never a traceback, nothing lost.

Each test reproduces a failure of the format-1 code: a malformed safetensors header or manifest
raised AttributeError / KeyError / TypeError; weights of another dtype loaded silently cast; a
bad manifest field failed after the weights were loaded; ``load_weights(model, path)`` raised a
bare TypeError; a failed save left an unreferenced tensor file behind.
"""

from __future__ import annotations

import errno
import json
import pathlib
import struct

import numpy as np
import pytest

import tensorcalc.nn as nn
from tensorcalc import optim
from tensorcalc import serialization as ser
from tensorcalc.serialization import CheckpointError


class Net(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.fc1 = nn.Linear(3, 4, rng=rng)
        self.fc2 = nn.Linear(4, 2, rng=rng)

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


def trained(seed=0):
    import tensorcalc as tc

    net = Net(seed)
    opt = optim.Adam(net.parameters(), lr=0.01)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    x = tc.tensor(np.random.default_rng(seed).normal(size=(5, 3)).astype(np.float32))
    for _ in range(2):
        opt.zero_grad()
        (net(x) ** 2).mean().backward()
        opt.step()
        sched.step()
    return net, opt, sched


def state_bytes(net, opt, sched=None):
    out = {f"m.{k}": v.tobytes() for k, v in net.state_dict().items()}
    sd = opt.state_dict()
    out["groups"] = repr(sd["param_groups"])
    for i, st in sd["state"].items():
        out.update({f"o.{i}.{k}": (v.tobytes() if hasattr(v, "tobytes") else repr(v))
                    for k, v in st.items()})
    if sched is not None:
        out["s"] = repr(sched.state_dict())
    return out


# ---------------------------------------------------------------------- safetensors headers
def write_raw(path: pathlib.Path, header, data: bytes = b"") -> pathlib.Path:
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return path


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("header, data, field", [
    ([1, 2, 3], b"", "JSON object"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets"),
    ({"w": "abc"}, b"", "must be an object"),
    ({"w": {**F32x2, "shape": "2"}}, b"\0" * 8, "shape"),
    ({"w": {**F32x2, "shape": [-2]}}, b"\0" * 8, "shape"),
    ({"w": {**F32x2, "data_offsets": [0]}}, b"\0" * 8, "data_offsets"),
    ({"w": {**F32x2, "data_offsets": ["0", "8"]}}, b"\0" * 8, "data_offsets"),
    ({"w": {**F32x2, "data_offsets": [8, 0]}}, b"\0" * 8, "data_offsets"),
    ({"w": {**F32x2, "data_offsets": [0, 800]}}, b"\0" * 8, "data_offsets"),
    ({"w": {**F32x2, "data_offsets": [0, 4]}}, b"\0" * 8, "data_offsets"),
    ({"w": {**F32x2, "dtype": "Q7"}}, b"\0" * 8, "dtype"),
    ({"w": {**F32x2, "dtype": 5}}, b"\0" * 8, "dtype"),
    ({"a": F32x2, "b": {**F32x2, "data_offsets": [4, 12]}}, b"\0" * 12, "overlaps"),
    ({"a": F32x2, "b": {**F32x2, "data_offsets": [12, 20]}}, b"\0" * 20, "gap"),
    ({"__metadata__": ["x"], "w": F32x2}, b"\0" * 8, "__metadata__"),
])
def test_malformed_safetensors_header_is_a_checkpoint_error_naming_the_field(tmp_path, header,
                                                                              data, field):
    path = write_raw(tmp_path / "w.safetensors", header, data)
    with pytest.raises(CheckpointError) as e:
        ser.load_weights(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_a_valid_hand_written_header_loads(tmp_path):
    data = np.array([1.5, -2.0], np.float32).tobytes() + np.array([7], np.int64).tobytes()
    path = write_raw(tmp_path / "w.safetensors",
                     {"a": F32x2, "b": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]},
                      "__metadata__": {"k": "v"}}, data)
    w, meta = ser.load_weights(path, return_metadata=True)
    np.testing.assert_array_equal(w["a"], [1.5, -2.0])
    assert w["b"].dtype == np.int64 and w["b"].shape == () and int(w["b"]) == 7
    assert meta == {"k": "v"}


# ---------------------------------------------------------------------- manifests
def _edit(ck, fn):
    m = json.loads((ck / "manifest.json").read_text())
    fn(m)
    (ck / "manifest.json").write_text(json.dumps(m))


def _set(path, value):
    def fn(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return fn


def _del(path):
    def fn(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return fn


MANIFEST_DAMAGE = {
    "format_version_str": (_set(["format_version"], "2"), "format_version"),
    "format_version_bool": (_set(["format_version"], True), "format_version"),
    "format_version_zero": (_set(["format_version"], 0), "format_version"),
    "tensors_str": (_set(["tensors"], "x"), "tensors"),
    "tensors_file_missing": (_del(["tensors", "file"]), "tensors.file"),
    "tensors_file_escapes": (_set(["tensors", "file"], "../../etc/passwd"), "tensors.file"),
    "tensors_bytes_str": (_set(["tensors", "bytes"], "12"), "tensors.bytes"),
    "tensors_sha_short": (_set(["tensors", "sha256"], "abc"), "tensors.sha256"),
    "step_str": (_set(["meta", "step"], "3"), "meta.step"),
    "extra_list": (_set(["meta", "extra"], [1]), "meta.extra"),
    "meta_missing": (_del(["meta"]), "meta"),
    "meta_list": (_set(["meta"], []), "meta"),
    "modules_list": (_set(["modules"], []), "modules"),
    "module_keys_str": (_set(["modules", "model", "keys"], "fc1.weight"), "modules.model.keys"),
    "module_class_missing": (_del(["modules", "model", "class"]), "modules.model.class"),
    "module_keys_differ": (_set(["modules", "model", "keys"], ["fc1.weight"]), "keys"),
    "optimizer_groups_dict": (_set(["optimizers", "optimizer", "param_groups"], {}),
                              "optimizers.optimizer.param_groups"),
    "optimizer_params_str": (_set(["optimizers", "optimizer", "param_groups", 0, "params"],
                                  ["a"]), "params"),
    "optimizer_state_key": (_set(["optimizers", "optimizer", "state", "x"], {}),
                            "optimizers.optimizer.state"),
    "optimizer_lr_str": (_set(["optimizers", "optimizer", "param_groups", 0, "lr"], "fast"),
                         "lr"),
    "schedule_state_list": (_set(["schedules", "scheduler", "state"], []),
                            "schedules.scheduler.state"),
    "schedule_state_empty": (_set(["schedules", "scheduler", "state"], {}), "scheduler"),
    "schedule_base_lrs_str": (_set(["schedules", "scheduler", "state", "base_lrs"], "x"),
                              "base_lrs"),
    "schedule_epoch_list": (_set(["schedules", "scheduler", "state", "last_epoch"], [2]),
                            "last_epoch"),
    "optimizer_amsgrad_str": (_set(["optimizers", "optimizer", "param_groups", 0, "amsgrad"],
                                   "yes"), "amsgrad"),
    "rng_str": (_set(["rngs", "rng"], "pcg"), "rngs.rng"),
    "rng_state_bad": (_set(["rngs", "rng", "state"], {"state": "x"}), "rngs['rng']"),
    "arrays_str": (_set(["arrays"], "history"), "arrays"),
    "array_not_in_file": (_set(["arrays"], ["history", "ghost"]), "ghost"),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_each_bad_manifest_field_is_named_and_changes_nothing(tmp_path, damage):
    net, opt, sched = trained(0)
    ck = ser.save_checkpoint(tmp_path / "ck", net, opt, step=2, scheduler=sched,
                             rng=np.random.default_rng(1), extra={"history": np.arange(3.0)})
    fn, field = MANIFEST_DAMAGE[damage]
    _edit(ck, fn)
    fresh, fopt, fsched = trained(5)
    before = state_bytes(fresh, fopt, fsched)
    with pytest.raises(CheckpointError) as e:
        ser.load_checkpoint(ck, fresh, fopt, fsched)
    assert field in str(e.value), str(e.value)
    assert str(ck) in str(e.value)
    assert state_bytes(fresh, fopt, fsched) == before  # bit-identical, optimiser included


def test_read_manifest_is_schema_checked(tmp_path):
    net, opt, _ = trained(0)
    ck = ser.save_checkpoint(tmp_path / "ck", net, opt)
    _edit(ck, _set(["format_version"], "2"))
    with pytest.raises(CheckpointError, match="format_version.*must be an integer, got str"):
        ser.read_manifest(ck)


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.bool_])
def test_a_dtype_mismatch_is_an_error_unless_cast(tmp_path, dtype):
    net = Net(0)
    other = {k: v.astype(dtype) for k, v in net.state_dict().items()}

    class Holder:  # a "model" whose state_dict has the other dtype
        def state_dict(self):
            return other

    ck = ser.save_checkpoint(tmp_path / "ck", Holder())
    ser.save_weights(other, tmp_path / "w.safetensors")
    target = Net(1)
    before = state_bytes(target, optim.SGD(target.parameters(), lr=0.1))
    want = np.dtype(dtype).name
    with pytest.raises(CheckpointError, match=f"cast=True.*fc1.weight: checkpoint {want} vs "
                       "model float32"):
        ser.load_checkpoint(ck, target)
    with pytest.raises(CheckpointError, match=f"fc1.weight: checkpoint {want} vs model float32"):
        ser.load_into(target, tmp_path / "w.safetensors")
    assert state_bytes(target, optim.SGD(target.parameters(), lr=0.1)) == before
    ser.load_checkpoint(ck, target, cast=True)  # asked for: converted
    for k, v in target.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, other[k].astype(np.float32))
    ser.load_into(Net(2), tmp_path / "w.safetensors", cast=True)


def test_optimizer_state_of_another_dtype_is_an_error_unless_cast(tmp_path):
    net, opt, _ = trained(0)
    net64 = Net(0).to(dtype=np.float64)
    opt64 = optim.Adam(net64.parameters(), lr=0.01)
    ck = ser.save_state(tmp_path / "ck", modules={"m": net}, optimizers={"o": opt})
    before = state_bytes(net64, opt64)
    with pytest.raises(CheckpointError, match=r"modules\['m'\].*float32 vs model float64"):
        ser.load_state(ck, modules={"m": net64}, optimizers={"o": opt64})
    with pytest.raises(CheckpointError, match=r"optimizers\['o'\].*exp_avg.*float32.*float64"):
        ser.load_state(ck, optimizers={"o": opt64}, strict=False)
    assert state_bytes(net64, opt64) == before
    ser.load_state(ck, modules={"m": net64}, optimizers={"o": opt64}, cast=True)
    assert opt64.state[list(net64.parameters())[0]]["exp_avg"].dtype == np.float64


# ---------------------------------------------------------------------- wrong arguments
def test_load_weights_with_a_model_says_the_signature(tmp_path):
    net = Net(0)
    ser.save_weights(net.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(TypeError, match=r"load_weights\(path\).*model.load_state_dict"):
        ser.load_weights(net, tmp_path / "w.safetensors")
    with pytest.raises(TypeError, match="return_metadata"):
        ser.load_weights(tmp_path / "w.safetensors", net)
    with pytest.raises(TypeError, match=r"save_weights\(state, path\)"):
        ser.save_weights(net, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"load_into\(model, path\)"):
        ser.load_into(tmp_path / "w.safetensors", net)
    with pytest.raises(TypeError, match=r"load_checkpoint\(path"):
        ser.load_checkpoint(net, tmp_path)


# ---------------------------------------------------------------------- failed saves
def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["tensor_file", "tensor_rename", "manifest_write",
                                   "manifest_rename"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint_and_no_leftovers(
        tmp_path, monkeypatch, where):
    net, opt, sched = trained(0)
    ck = ser.save_checkpoint(tmp_path / "ck", net, opt, step=1, scheduler=sched)
    listing = sorted(p.name for p in ck.iterdir())
    manifest = (ck / "manifest.json").read_bytes()
    expect = state_bytes(net, opt, sched)
    new_net, new_opt, new_sched = trained(3)  # different numbers: a different tensor file

    real_replace = ser.os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if (where == "tensor_rename" and "tensors-" in str(dst)) or \
                (where == "manifest_rename" and str(dst).endswith("manifest.json")):
            _disk_full()
        return real_replace(src, dst)

    def half_written(tensors, path, metadata):
        pathlib.Path(path).write_bytes(b"\0" * 10)
        _disk_full()

    class HalfWrite:  # the manifest's temp file: half the bytes land, then the disk is full
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            _disk_full()

    def half_manifest_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return HalfWrite(f) if str(path).endswith(".json") and "w" in mode else f

    if where == "tensor_file":
        monkeypatch.setattr(ser, "_write_safetensors", half_written)
    elif where == "manifest_write":
        monkeypatch.setattr(ser, "open", half_manifest_open, raising=False)
    else:
        monkeypatch.setattr(ser.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        ser.save_checkpoint(ck, new_net, new_opt, step=9, scheduler=new_sched)
    monkeypatch.undo()

    assert sorted(p.name for p in ck.iterdir()) == listing  # no temporaries, no orphan file
    assert (ck / "manifest.json").read_bytes() == manifest
    fresh, fopt, fsched = trained(7)
    assert ser.load_checkpoint(ck, fresh, fopt, fsched).step == 1
    assert state_bytes(fresh, fopt, fsched) == expect


def test_failed_resave_of_identical_content_keeps_the_tensor_file(tmp_path, monkeypatch):
    """The same state saved twice has the same content-named tensor file: a failed second
    save must not delete the file the committed manifest points at."""
    net, opt, _ = trained(0)
    ck = ser.save_checkpoint(tmp_path / "ck", net, opt, step=1)
    monkeypatch.setattr(ser, "_atomic_write_bytes", _disk_full)
    with pytest.raises(OSError):
        ser.save_checkpoint(ck, net, opt, step=1)
    monkeypatch.undo()
    assert ser.load_checkpoint(ck, Net(3)).step == 1


def test_a_failed_first_save_leaves_no_directory(tmp_path, monkeypatch):
    net, opt, _ = trained(0)
    monkeypatch.setattr(ser, "_write_safetensors", _disk_full)
    with pytest.raises(OSError):
        ser.save_state(tmp_path / "run" / "ck", modules={"m": net})
    assert not (tmp_path / "run" / "ck").exists()


def _leaves(node, path=()):
    """Every path into a JSON document (containers included), depth first."""
    yield path
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _leaves(v, (*path, k))


def test_any_field_of_the_manifest_wrong_is_a_checkpoint_error_or_harmless(tmp_path):
    """Each field of a real manifest in turn replaced by a value of the wrong type: loading
    either succeeds or raises CheckpointError with nothing changed — never a raw KeyError,
    TypeError or AttributeError, never a half-loaded model."""
    net, opt, sched = trained(0)
    ck = ser.save_checkpoint(tmp_path / "ck", net, opt, step=2, scheduler=sched,
                             rng=np.random.default_rng(1), extra={"history": np.arange(3.0),
                                                                  "best": 0.5})
    good = json.loads((ck / "manifest.json").read_text())
    paths = [p for p in _leaves(good) if p]
    assert len(paths) > 60
    errors = 0
    fresh, fopt, fsched = trained(5)  # a failed load leaves them as they were
    for p in paths:
        for wrong in ("x", None, 7):
            m = json.loads(json.dumps(good))
            d = m
            for k in p[:-1]:
                d = d[k]
            d[p[-1]] = wrong
            (ck / "manifest.json").write_text(json.dumps(m))
            before = state_bytes(fresh, fopt, fsched)
            try:
                ser.load_checkpoint(ck, fresh, fopt, fsched)
            except CheckpointError:
                errors += 1
                assert state_bytes(fresh, fopt, fsched) == before, (p, wrong)
    assert errors > len(paths)  # most damage is caught, not loaded


def test_safetensors_own_write_error_is_an_oserror_and_the_previous_checkpoint_stays(
        tmp_path, monkeypatch):
    import safetensors.numpy as stn
    from safetensors import SafetensorError

    import tensorcalc as tc

    model = tc.nn.Linear(3, 2, rng=0)
    path = tmp_path / "ck"
    tc.save_checkpoint(path, model, step=1)

    def broken(*a, **k):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(stn, "save_file", broken)
    with pytest.raises(OSError, match="No space left"):
        tc.save_checkpoint(path, tc.nn.Linear(3, 2, rng=1), step=2)
    monkeypatch.undo()
    fresh = tc.nn.Linear(3, 2, rng=5)
    ck = tc.load_checkpoint(path, fresh)
    assert ck.step == 1
    np.testing.assert_array_equal(fresh.weight.numpy(), model.weight.numpy())
