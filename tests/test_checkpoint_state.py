"""Multi-part training state (save_state / load_state): named modules, optimisers, schedules,
rngs and arrays; all-or-nothing loading; format-version-1 checkpoints still load."""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.nn as nn
from tensorcalc import optim
from tensorcalc import serialization as ser
from tensorcalc.serialization import CheckpointError


class Gen(nn.Module):
    def __init__(self, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.fc = nn.Linear(2, 4, rng=rng)
        self.bn = nn.BatchNorm1d(4)  # running statistics: buffers must travel too

    def forward(self, z):
        return self.bn(self.fc(z)).tanh()


class Critic(nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.fc = nn.Linear(4, 1, rng=np.random.default_rng(seed))

    def forward(self, x):
        return self.fc(x)


def make_gan(seed):
    """A two-model, two-optimiser, two-schedule, two-rng state (a GAN shape)."""
    g, c = Gen(seed), Critic(seed + 1)
    og = optim.Adam(g.parameters(), lr=0.01)
    oc = optim.SGD(c.parameters(), lr=0.05, momentum=0.9)
    sg = optim.StepLR(og, step_size=2, gamma=0.5)
    sc = optim.ExponentialLR(oc, gamma=0.9)
    rngs = {"noise": np.random.default_rng(seed + 10),
            "data": np.random.Generator(np.random.MT19937(seed + 20))}
    return ({"generator": g, "critic": c}, {"generator": og, "critic": oc},
            {"generator": sg, "critic": sc}, rngs)


def gan_steps(mods, opts, scheds, rngs, n):
    g, c = mods["generator"], mods["critic"]
    for _ in range(n):
        z = tc.tensor(rngs["noise"].normal(size=(8, 2)).astype(np.float32))
        real = tc.tensor(rngs["data"].normal(size=(8, 4)).astype(np.float32))
        opts["critic"].zero_grad()
        (c(g(z).detach()).mean() - c(real).mean()).backward()
        opts["critic"].step()
        opts["generator"].zero_grad()
        (-c(g(z)).mean()).backward()
        opts["generator"].step()
        for s in scheds.values():
            s.step()


def snapshot(mods, opts, scheds, rngs):
    """Every number of the state, as bytes / JSON, to compare bit for bit."""
    out = {}
    for n, m in mods.items():
        out.update({f"m.{n}.{k}": v.tobytes() for k, v in m.state_dict().items()})
    for n, o in opts.items():
        sd = o.state_dict()
        out[f"o.{n}.groups"] = json.dumps(ser._jsonable(sd["param_groups"]), sort_keys=True)
        for i, st in sd["state"].items():
            for k, v in st.items():
                out[f"o.{n}.{i}.{k}"] = v.tobytes() if hasattr(v, "tobytes") else repr(v)
    for n, s in scheds.items():
        out[f"s.{n}"] = json.dumps(s.state_dict(), sort_keys=True)
    for n, r in rngs.items():
        out[f"r.{n}"] = json.dumps(ser._jsonable(r.bit_generator.state), sort_keys=True)
    return out


def save_gan(path, seed=0, steps=3):
    mods, opts, scheds, rngs = make_gan(seed)
    gan_steps(mods, opts, scheds, rngs, steps)
    buf = {"obs": np.arange(12, dtype=np.float32).reshape(4, 3),
           "done": np.array([True, False, True, False]), "count": np.array(7, np.int64)}
    ser.save_state(path, modules=mods, optimizers=opts, schedules=scheds, rngs=rngs,
                   arrays=buf, meta={"step": steps, "history": [{"loss": 0.5}]},
                   config={"lr": 0.01, "widths": [2, 4]})
    return (mods, opts, scheds, rngs), buf


# ---------------------------------------------------------------------- round trip and resume
def test_multi_part_round_trip_then_resume_is_bit_identical(tmp_path):
    ref = make_gan(0)
    gan_steps(*ref, 6)

    (mods, opts, scheds, rngs), buf = save_gan(tmp_path / "ck", seed=0, steps=3)
    fresh = make_gan(5)  # different init, different rng states
    assert snapshot(*fresh) != snapshot(mods, opts, scheds, rngs)
    st = ser.load_state(tmp_path / "ck", modules=fresh[0], optimizers=fresh[1],
                        schedules=fresh[2], rngs=fresh[3])
    assert snapshot(*fresh) == snapshot(mods, opts, scheds, rngs)
    assert st.meta == {"step": 3, "history": [{"loss": 0.5}]}
    assert st.config == {"lr": 0.01, "widths": [2, 4]}
    assert st.format_version == 2
    assert set(st.arrays) == set(buf)
    for k, v in buf.items():
        assert st.arrays[k].dtype == v.dtype and st.arrays[k].tobytes() == v.tobytes()
    assert st.names == {"modules": ["critic", "generator"], "optimizers": ["critic", "generator"],
                        "schedules": ["critic", "generator"], "rngs": ["data", "noise"],
                        "arrays": ["count", "done", "obs"]}
    np.testing.assert_array_equal(st.make_rng("noise").normal(size=3),
                                  rngs["noise"].normal(size=3))  # continues where it stopped
    gan_steps(*fresh, 3)
    assert snapshot(*fresh) == snapshot(*ref)  # 3 + checkpoint + 3 == 6


def test_buffers_and_their_values_are_saved(tmp_path):
    (mods, *_), _ = save_gan(tmp_path / "ck")
    tensors = ser.load_weights(next((tmp_path / "ck").glob("tensors-*.safetensors")))
    assert "modules/generator/bn.running_mean" in tensors
    np.testing.assert_array_equal(tensors["modules/generator/bn.running_var"],
                                  mods["generator"].bn.running_var.numpy())
    assert not np.all(tensors["modules/generator/bn.running_var"] == 1)  # trained, not init


# ---------------------------------------------------------------------- names
def test_a_missing_part_names_the_file_and_the_part_and_changes_nothing(tmp_path):
    ck = tmp_path / "ck"
    mods, opts, scheds, rngs = make_gan(0)
    ser.save_state(ck, modules={"generator": mods["generator"]},
                   optimizers={"generator": opts["generator"]})
    fresh = make_gan(3)
    before = snapshot(*fresh)
    with pytest.raises(CheckpointError) as e:
        ser.load_state(ck, modules=fresh[0], optimizers={"generator": fresh[1]["generator"]})
    assert "modules['critic']" in str(e.value) and str(ck) in str(e.value)
    assert snapshot(*fresh) == before
    with pytest.raises(CheckpointError, match=r"schedules\['generator'\]"):
        ser.load_state(ck, modules={"generator": fresh[0]["generator"]},
                       schedules={"generator": fresh[2]["generator"]})
    assert snapshot(*fresh) == before


def test_strict_refuses_a_part_not_passed_and_none_means_not_loaded(tmp_path):
    save_gan(tmp_path / "ck")
    fresh = make_gan(3)
    before = snapshot(*fresh)
    with pytest.raises(CheckpointError, match=r"also holds modules\['critic'\].*strict=False"):
        ser.load_state(tmp_path / "ck", modules={"generator": fresh[0]["generator"]})
    assert snapshot(*fresh) == before
    with pytest.raises(CheckpointError, match=r"rngs\['data'\]"):
        ser.load_state(tmp_path / "ck", rngs={})  # an empty dict: "I expect no rngs"
    st = ser.load_state(tmp_path / "ck", modules={"generator": fresh[0]["generator"]},
                        strict=False)
    assert snapshot({"generator": fresh[0]["generator"]}, {}, {}, {}) != \
        snapshot({"generator": make_gan(3)[0]["generator"]}, {}, {}, {})
    assert fresh[1]["generator"].state == {}  # optimizers=None: not loaded
    assert st.meta["step"] == 3
    # nothing passed at all: a cheap look at meta / config / arrays
    assert ser.load_state(tmp_path / "ck").config == {"lr": 0.01, "widths": [2, 4]}


def test_class_and_generator_type_mismatches_change_nothing(tmp_path):
    save_gan(tmp_path / "ck")
    mods, opts, scheds, rngs = make_gan(3)
    before = snapshot(mods, opts, scheds, rngs)
    swapped = {"generator": opts["critic"], "critic": opts["generator"]}  # SGD vs Adam
    with pytest.raises(CheckpointError, match=r"optimizers\['\w+'\] is a (SGD|Adam), got a"):
        ser.load_state(tmp_path / "ck", modules=mods, optimizers=swapped, schedules=scheds,
                       rngs=rngs)
    bad_rngs = {"noise": rngs["noise"], "data": np.random.default_rng(0)}  # PCG64, not MT
    with pytest.raises(CheckpointError, match=r"rngs\['data'\] is a MT19937.*PCG64"):
        ser.load_state(tmp_path / "ck", modules=mods, optimizers=opts, schedules=scheds,
                       rngs=bad_rngs)
    assert snapshot(mods, opts, scheds, rngs) == before
    assert bad_rngs["data"].bit_generator.state == np.random.default_rng(0).bit_generator.state


def test_check_callback_runs_before_anything_changes(tmp_path):
    save_gan(tmp_path / "ck")
    mods, opts, scheds, rngs = make_gan(3)
    before = snapshot(mods, opts, scheds, rngs)
    seen = []

    def check(state):
        seen.append(state.meta["step"])
        raise CheckpointError("meta.history is missing")

    with pytest.raises(CheckpointError, match="history"):
        ser.load_state(tmp_path / "ck", modules=mods, optimizers=opts, schedules=scheds,
                       rngs=rngs, check=check)
    assert seen == [3] and snapshot(mods, opts, scheds, rngs) == before


def test_a_failure_while_applying_rolls_everything_back(tmp_path, monkeypatch):
    save_gan(tmp_path / "ck")
    mods, opts, scheds, rngs = make_gan(3)
    before = snapshot(mods, opts, scheds, rngs)

    def boom(self, *a, **k):
        raise MemoryError("no room for the weights")

    monkeypatch.setattr(Critic, "load_state_dict", boom)  # fails after the others were set
    with pytest.raises(MemoryError):
        ser.load_state(tmp_path / "ck", modules=mods, optimizers=opts, schedules=scheds,
                       rngs=rngs)
    monkeypatch.undo()
    assert snapshot(mods, opts, scheds, rngs) == before


def test_bad_arguments_fail_before_touching_the_disk(tmp_path):
    mods, opts, scheds, rngs = make_gan(0)
    with pytest.raises(TypeError, match="JSON"):
        ser.save_state(tmp_path / "a", modules=mods, meta={"f": object()})
    with pytest.raises(TypeError, match="names"):
        ser.save_state(tmp_path / "a", modules={"a/b": mods["critic"]})
    with pytest.raises(TypeError, match=r"rngs\['x'\].*Generator"):
        ser.save_state(tmp_path / "a", rngs={"x": np.random.RandomState(0)})
    with pytest.raises(TypeError, match=r"modules\['x'\].*state_dict"):
        ser.save_state(tmp_path / "a", modules={"x": object()})
    with pytest.raises(TypeError, match="meta must be a dict"):
        ser.save_state(tmp_path / "a", meta=[1, 2])
    assert not (tmp_path / "a").exists()
    assert ser.save_state(tmp_path / "a") == str(tmp_path / "a")  # an empty state is valid
    st = ser.load_state(tmp_path / "a", modules={}, optimizers={}, schedules={}, rngs={})
    assert st.meta == {} and st.arrays == {} and st.config is None


def test_read_state_manifest_reads_no_tensor_file(tmp_path):
    save_gan(tmp_path / "ck")
    for f in (tmp_path / "ck").glob("tensors-*"):
        f.write_bytes(b"garbage")  # not even looked at
    m = ser.read_state_manifest(tmp_path / "ck")
    assert m["meta"]["step"] == 3 and sorted(m["modules"]) == ["critic", "generator"]
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        ser.load_state(tmp_path / "ck")


# ---------------------------------------------------------------------- format version 1
def write_v1_checkpoint(path, model, optimizer=None, step=0, rng=None, config=None,
                        scheduler=None, extra=None):
    """The version-1 layout exactly as tensorcalc 0.x's save_checkpoint wrote it (one model,
    "model.<key>", "optim.state.<i>.<name>", "extra.<key>" and a flat manifest)."""
    path = pathlib.Path(path)
    path.mkdir(parents=True)
    tensors = {}
    manifest = {"format": "tensorcalc.checkpoint", "format_version": 1,
                "tensorcalc_version": "0.1.0", "numpy_version": np.__version__,
                "python_version": "3.12.0",
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "step": int(step), "config": config}
    sd = model.state_dict()
    tensors.update({f"model.{k}": v for k, v in sd.items()})
    manifest["model"] = {"class": type(model).__name__, "keys": list(sd)}
    if optimizer is not None:
        osd = optimizer.state_dict()
        scalars = {}
        for i, st in osd["state"].items():
            scalars[str(i)] = {k: ser._jsonable(v) for k, v in st.items()
                               if not hasattr(v, "shape")}
            tensors.update({f"optim.state.{i}.{k}": v for k, v in st.items()
                            if hasattr(v, "shape")})
        manifest["optimizer"] = {"class": type(optimizer).__name__,
                                 "param_groups": ser._jsonable(osd["param_groups"]),
                                 "state": scalars}
    else:
        manifest["optimizer"] = None
    manifest["scheduler"] = None if scheduler is None else {
        "class": type(scheduler).__name__, "state": ser._jsonable(scheduler.state_dict())}
    manifest["rng"] = None if rng is None else ser._jsonable(rng.bit_generator.state)
    manifest["extra"] = {k: v for k, v in (extra or {}).items() if not hasattr(v, "shape")}
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items() if hasattr(v, "shape")})
    tmp = path / "t.safetensors"
    from safetensors.numpy import save_file

    save_file(tensors, str(tmp), metadata={"format": "tensorcalc.checkpoint"})
    import hashlib

    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"tensors-{digest[:16]}.safetensors"
    manifest["tensors"] = {"file": name, "sha256": digest, "bytes": tmp.stat().st_size}
    os.replace(tmp, path / name)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return path


def test_a_version_1_checkpoint_still_loads(tmp_path):
    mods, opts, scheds, rngs = make_gan(0)
    gan_steps(mods, opts, scheds, rngs, 2)
    g, og, sg, r = mods["generator"], opts["generator"], scheds["generator"], rngs["noise"]
    write_v1_checkpoint(tmp_path / "v1", g, og, step=2, rng=r, config={"seed": 0},
                        scheduler=sg, extra={"trainer": {"epoch": 1}, "h": np.arange(3.0)})
    fresh = make_gan(4)
    f_g, f_og, f_sg = fresh[0]["generator"], fresh[1]["generator"], fresh[2]["generator"]
    ck = ser.load_checkpoint(tmp_path / "v1", f_g, f_og, f_sg)
    assert ck.step == 2 and ck.config == {"seed": 0}
    assert ck.extra["trainer"] == {"epoch": 1}
    np.testing.assert_array_equal(ck.extra["h"], np.arange(3.0))
    assert ck.make_rng().normal() == r.normal()
    assert snapshot({"g": f_g}, {"g": f_og}, {"g": f_sg}, {}) == snapshot({"g": g}, {"g": og},
                                                                          {"g": sg}, {})
    # the same file through load_state, by the names version 1 implies
    st = ser.load_state(tmp_path / "v1", modules={"model": make_gan(6)[0]["generator"]},
                        strict=False)
    assert st.format_version == 1 and st.meta["step"] == 2
    assert st.names["modules"] == ["model"] and st.names["rngs"] == ["rng"]


def test_a_newer_format_version_is_refused_with_a_clear_message(tmp_path):
    save_gan(tmp_path / "ck")
    m = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "ck" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="format version 99 is newer.*upgrade"):
        ser.load_state(tmp_path / "ck")


@pytest.mark.parametrize("damage", ["step", "model", "optimizer", "rng", "extra"])
def test_bad_fields_of_a_version_1_manifest_are_named_and_change_nothing(tmp_path, damage):
    mods, opts, scheds, rngs = make_gan(0)
    gan_steps(mods, opts, scheds, rngs, 1)
    ck = write_v1_checkpoint(tmp_path / "v1", mods["generator"], opts["generator"], step=2,
                             rng=rngs["noise"])
    m = json.loads((ck / "manifest.json").read_text())
    m[damage] = "3" if damage == "step" else ["x"]
    (ck / "manifest.json").write_text(json.dumps(m))
    fresh = make_gan(5)
    before = snapshot(*fresh)
    with pytest.raises(CheckpointError, match=f"field '{damage}'"):
        ser.load_checkpoint(ck, fresh[0]["generator"], fresh[1]["generator"])
    assert snapshot(*fresh) == before


def test_any_field_of_a_version_1_manifest_wrong_is_a_checkpoint_error_or_harmless(tmp_path):
    mods, opts, scheds, rngs = make_gan(0)
    gan_steps(mods, opts, scheds, rngs, 1)
    g, og, sg = mods["generator"], opts["generator"], scheds["generator"]
    ck = write_v1_checkpoint(tmp_path / "v1", g, og, step=2, rng=rngs["noise"], scheduler=sg,
                             extra={"trainer": {"epoch": 1}, "h": np.arange(3.0)})
    good = json.loads((ck / "manifest.json").read_text())

    def paths(node, path=()):
        yield path
        items = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            yield from paths(v, (*path, k))

    fresh = make_gan(5)
    f = ({"g": fresh[0]["generator"]}, {"g": fresh[1]["generator"]},
         {"g": fresh[2]["generator"]}, {})
    errors = 0
    for p in [p for p in paths(good) if p]:
        for wrong in ("x", None, 7):
            m = json.loads(json.dumps(good))
            d = m
            for k in p[:-1]:
                d = d[k]
            d[p[-1]] = wrong
            (ck / "manifest.json").write_text(json.dumps(m))
            before = snapshot(*f)
            try:
                ser.load_checkpoint(ck, f[0]["g"], f[1]["g"], f[2]["g"])
            except CheckpointError:
                errors += 1
                assert snapshot(*f) == before, (p, wrong)
    assert errors > 50
