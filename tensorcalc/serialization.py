"""Saving and loading: weights with safetensors (never pickle) and atomic training checkpoints.

Weights
    :func:`save_weights` / :func:`load_weights` write and read one ``.safetensors`` file holding
    a flat ``{name: array}`` dict (a ``Module.state_dict()``) plus optional string metadata. The
    file is written atomically: to a temporary file in the same directory, fsync'ed, then
    ``os.replace``'d over the target, so a crash leaves either the old file or the new one.
    :func:`load_into` reads such a file into a module, refusing a dtype that differs from the
    module's unless ``cast=True``.

Checkpoints (format version 2)
    A checkpoint is a **directory** holding a run's whole training state as *named parts*::

        ckpt/
          manifest.json                      what and when: format version, config, meta (JSON:
                                             counters, history, callback states), and per part:
                                             modules {name: class, keys}, optimizers {name:
                                             class, hyperparameters, scalar state}, schedules
                                             {name: class, state}, rngs {name: bit generator
                                             state}, arrays [names]; and the name + sha256 +
                                             size of the tensor file
          tensors-<sha256[:16]>.safetensors  every array, keyed by part:
                                             "modules/<name>/<key>",
                                             "optimizers/<name>/<i>/<state>" (e.g.
                                             optimizers/optimizer/0/exp_avg), "arrays/<name>"

    :func:`save_state` writes one, :func:`load_state` restores it in place into the objects
    passed by name. :func:`save_checkpoint` / :func:`load_checkpoint` are the one-model form
    (``model`` is ``modules["model"]``, ``optimizer`` is ``optimizers["optimizer"]``,
    ``scheduler`` is ``schedules["scheduler"]``, ``rng`` is ``rngs["rng"]``, ``step`` and the
    JSON part of ``extra`` are in ``meta``, the arrays of ``extra`` are ``arrays``).

    The tensor file is named by its content and written first (temp + fsync + rename); the
    manifest is then written to a temp file, fsync'ed and ``os.replace``'d — that rename is the
    single commit point. A crash (or an ``OSError`` such as a full disk) at any moment leaves the
    previous manifest pointing at the previous (still present) tensor file, so the directory
    always holds one complete checkpoint; a failed save removes its own temporaries.
    Unreferenced tensor files are removed after the commit.

Loading is strict and all-or-nothing
    The manifest's schema, the tensor file's size and sha256, the safetensors header's schema,
    every part's presence, class, keys, shapes and dtypes are checked before anything is
    changed: a problem raises :class:`CheckpointError` naming the file and the part (e.g.
    ``modules['critic']``) and leaves every object passed in untouched. A dtype that differs
    from the live object's (float64 weights into a float32 model, int32 into float32) is an
    error unless the caller passes ``cast=True``.

Older checkpoints
    Format version 1 (one model, optimiser, scheduler and rng; tensors "model.<key>",
    "optim.state.<i>.<name>", "extra.<key>") is read by the same code: it is translated into
    the parts above on load, so :func:`load_checkpoint` and :func:`load_state` accept it.
    A newer format version than this tensorcalc knows is refused with a message saying so.

Everything is plain data (JSON + safetensors): loading a checkpoint never executes code.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import pathlib
import platform
import re
import struct
import uuid
from dataclasses import dataclass, field

import numpy as np

from . import backend

__all__ = [
    "CheckpointError", "Checkpoint", "State", "save_weights", "load_weights", "load_into",
    "save_checkpoint", "load_checkpoint", "save_state", "load_state", "read_manifest",
    "read_state_manifest",
]

FORMAT = "tensorcalc.checkpoint"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
PARTS = ("modules", "optimizers", "schedules", "rngs", "arrays")


class CheckpointError(ValueError):
    """A weights file or checkpoint that is missing parts, corrupt, truncated or incompatible."""


# ---------------------------------------------------------------------- low-level file helpers
def _fsync_dir(d: pathlib.Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _tmp_name(d: pathlib.Path, suffix: str) -> pathlib.Path:
    return d / f".tmp-{uuid.uuid4().hex}{suffix}"


def _fsync_file(path: pathlib.Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    tmp = _tmp_name(path.parent, path.suffix)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _as_array(v, who: str, key: str) -> np.ndarray:
    if hasattr(v, "data") and not isinstance(v, np.ndarray) and hasattr(v, "requires_grad"):
        v = v.data  # a Tensor
    a = backend.to_numpy(v) if hasattr(v, "dtype") else np.asarray(v)
    if a.dtype == object:
        raise TypeError(f"{who}: {key!r} is not a numeric array (dtype object)")
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def _write_safetensors(tensors: dict, path: pathlib.Path, metadata: dict | None) -> None:
    """safetensors.numpy.save_file into ``path`` (fsync'ed); not atomic by itself."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:  # its I/O failures (a full disk) are OSErrors to callers
        text = str(e)
        full = "os error 28" in text or "No space left" in text
        raise OSError(errno.ENOSPC if full else errno.EIO,
                      "No space left on device" if full else f"writing failed: {text}",
                      str(path)) from None
    _fsync_file(path)


# safetensors dtype tags NumPy can hold, and their item sizes
_ST_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "F16": 2, "U32": 4, "I32": 4,
              "F32": 4, "U64": 8, "I64": 8, "F64": 8}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(path: pathlib.Path, header, data_bytes: int) -> None:
    """The safetensors header's schema: ``{name: {"dtype", "shape", "data_offsets"}}`` plus an
    optional ``"__metadata__": {str: str}``; the offsets tile the data exactly (no gaps, no
    overlaps, nothing out of range), each entry's byte count matching its shape and dtype."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: bad safetensors header: expected a JSON object, got "
                              f"{type(header).__name__}")
    spans = []
    for name, entry in header.items():
        where = f"{path}: bad safetensors header: {name!r}"
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{where} must map names to strings")
            continue
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} must be an object, got {type(entry).__name__}")
        for k in ("dtype", "shape", "data_offsets"):
            if k not in entry:
                raise CheckpointError(f"{where} lacks the field {k!r}")
        dt, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dt, str) or dt not in _ST_DTYPES:
            raise CheckpointError(f"{where}: field 'dtype' is {dt!r}, not one of "
                                  f"{sorted(_ST_DTYPES)}")
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
            raise CheckpointError(f"{where}: field 'shape' must be a list of integers >= 0, "
                                  f"got {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(_is_int(n) for n in offs) or not 0 <= offs[0] <= offs[1]):
            raise CheckpointError(f"{where}: field 'data_offsets' must be [begin, end] with "
                                  f"0 <= begin <= end, got {offs!r}")
        if offs[1] > data_bytes:
            raise CheckpointError(f"{where}: field 'data_offsets' {offs} runs past the end of "
                                  f"the data ({data_bytes} bytes); the file is truncated")
        need = math.prod(shape) * _ST_DTYPES[dt]
        if offs[1] - offs[0] != need:
            raise CheckpointError(f"{where}: field 'data_offsets' {offs} spans "
                                  f"{offs[1] - offs[0]} bytes, its shape {shape} of {dt} "
                                  f"needs {need}")
        spans.append((offs[0], offs[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            what = "overlaps the previous tensor" if begin < end else "leaves a gap before it"
            raise CheckpointError(f"{path}: bad safetensors header: {name!r}: field "
                                  f"'data_offsets' [{begin}, {stop}] {what} (at byte {end})")
        end = stop
    if end != data_bytes:
        raise CheckpointError(f"{path}: truncated or padded safetensors file: the header "
                              f"describes {end} data bytes, the file has {data_bytes}")


def _read_header(path: pathlib.Path) -> dict:
    """The safetensors JSON header, checked (schema and size: :func:`_check_header`)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise CheckpointError(f"{path}: truncated safetensors file (header says {n} bytes, "
                                  f"the file has {size - 8} after the length)")
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    _check_header(path, header, size - 8 - n)
    return header


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    _read_header(path)
    try:
        d = load_file(str(path))
    except Exception as e:  # SafetensorError and friends: all mean a bad file
        raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from None
    return {k: (v if v.flags.writeable else v.copy()) for k, v in d.items()}


# ---------------------------------------------------------------------- weights
def save_weights(state: dict, path, metadata: dict | None = None) -> None:
    """Write ``{name: array}`` (e.g. ``model.state_dict()``) to a ``.safetensors`` file,
    atomically. ``metadata``: optional ``{str: str}`` (other values are stored as JSON text).
    Arrays keep their dtype and shape exactly (a bit-exact round trip with :func:`load_weights`).
    """
    if not isinstance(state, dict):
        hint = (" (the signature is save_weights(state, path): pass model.state_dict())"
                if hasattr(state, "state_dict") else "")
        raise TypeError(f"save_weights: expected a dict of arrays, got "
                        f"{type(state).__name__}{hint}")
    path = _path_arg("save_weights", path, "save_weights(state, path)")
    tensors = {}
    for k, v in state.items():
        if not isinstance(k, str):
            raise TypeError(f"save_weights: keys must be str, got {k!r}")
        tensors[k] = _as_array(v, "save_weights", k)
    meta = None
    if metadata:
        meta = {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in metadata.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path.parent, ".safetensors")
    try:
        _write_safetensors(tensors, tmp, meta)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _path_arg(who: str, path, signature: str) -> pathlib.Path:
    if isinstance(path, (str, os.PathLike)):
        return pathlib.Path(path)
    hint = ""
    if hasattr(path, "state_dict"):
        hint = ("; to load weights into a model use model.load_state_dict(load_weights(path)) "
                "or load_into(model, path)")
    raise TypeError(f"{who}: the signature is {signature}; expected a path (str or "
                    f"os.PathLike), got {type(path).__name__}{hint}")


def load_weights(path, return_metadata: bool = False):
    """Read a ``.safetensors`` file into ``{name: numpy array}`` (and its metadata dict when
    ``return_metadata``). A truncated or corrupt file raises :class:`CheckpointError`.

    To load into a model: ``model.load_state_dict(load_weights(path))``, or
    :func:`load_into` (which also refuses a dtype different from the model's).
    """
    path = _path_arg("load_weights", path, "load_weights(path) -> {name: array}")
    if not isinstance(return_metadata, bool):
        raise TypeError(f"load_weights: return_metadata must be a bool, got "
                        f"{type(return_metadata).__name__} (the signature is "
                        "load_weights(path, return_metadata=False))")
    if not path.is_file():
        raise FileNotFoundError(f"load_weights: no such file {path}")
    tensors = _read_safetensors(path)
    if return_metadata:
        return tensors, dict(_read_header(path).get("__metadata__") or {})
    return tensors


def load_into(model, path, *, strict: bool = True, cast: bool = False):
    """Load a ``.safetensors`` weights file into ``model`` in place, checked first: keys (all of
    them when ``strict``), shapes, and dtypes — an array whose dtype differs from the model's
    (float64 or int32 into float32) raises :class:`CheckpointError` unless ``cast=True``.
    Returns ``model.load_state_dict``'s result. Nothing is changed when it raises."""
    if not hasattr(model, "load_state_dict"):
        raise TypeError(f"load_into: the signature is load_into(model, path); expected a model "
                        f"with load_state_dict, got {type(model).__name__}")
    path = _path_arg("load_into", path, "load_into(model, path)")
    weights = load_weights(path)
    weights = _fit_module(f"{path}: the weights", model, weights, strict, cast)
    return model.load_state_dict(weights, strict=strict)


# ---------------------------------------------------------------------- JSON helpers
def _jsonable(v):
    """Python / NumPy scalars, tuples and small arrays (RNG keys) -> JSON values."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": str(v.dtype)}
    if isinstance(v, np.generic):
        return v.item()
    return v


def _unjson(v):
    if isinstance(v, dict):
        if "__ndarray__" in v and set(v) == {"__ndarray__", "dtype"}:
            return np.asarray(v["__ndarray__"], dtype=v["dtype"])
        return {k: _unjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unjson(x) for x in v]
    return v


def _is_array(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, np.generic)


# ---------------------------------------------------------------------- manifest schema
def _tname(v) -> str:
    return type(v).__name__


class _Schema:
    """Type checks on a manifest, each error naming the file and the field's dotted path."""

    def __init__(self, mpath: pathlib.Path):
        self.mpath = mpath

    def fail(self, where: str, msg: str):
        raise CheckpointError(f"{self.mpath}: field {where!r} {msg}")

    def get(self, d: dict, key: str, where: str, kinds, what: str, optional=False):
        full = f"{where}.{key}" if where else key
        if key not in d:
            if optional:
                return None
            self.fail(full, "is missing")
        v = d[key]
        if optional and v is None:
            return None
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in _tuple(kinds)):
            self.fail(full, f"must be {what}, got {_tname(v)} {_short(v)}")
        return v

    def str_list(self, d, key, where):
        v = self.get(d, key, where, list, "a list of strings")
        for i, x in enumerate(v):
            if not isinstance(x, str):
                self.fail(f"{where}.{key}[{i}]", f"must be a string, got {_tname(x)}")
        return v

    def named(self, d, key, check):
        """``d[key]``: a dict {name: entry}, each entry checked by ``check(entry, where)``."""
        v = self.get(d, key, "", dict, "an object {name: ...}")
        for name, entry in v.items():
            check(entry, f"{key}.{name}")
        return v

    def module(self, e, where):
        if not isinstance(e, dict):
            self.fail(where, f"must be an object, got {_tname(e)}")
        self.get(e, "class", where, str, "a string")
        self.str_list(e, "keys", where)

    def optimizer(self, e, where):
        if not isinstance(e, dict):
            self.fail(where, f"must be an object, got {_tname(e)}")
        self.get(e, "class", where, str, "a string")
        groups = self.get(e, "param_groups", where, list, "a list of objects")
        for i, g in enumerate(groups):
            w = f"{where}.param_groups[{i}]"
            if not isinstance(g, dict):
                self.fail(w, f"must be an object, got {_tname(g)}")
            ps = self.get(g, "params", w, list, "a list of parameter numbers")
            if not all(_is_int(p) and p >= 0 for p in ps):
                self.fail(f"{w}.params", "must hold parameter numbers (integers >= 0)")
        state = self.get(e, "state", where, dict, "an object {parameter number: state}")
        for k, st in state.items():
            if not (k.isascii() and k.isdigit()):
                self.fail(f"{where}.state", f"has key {k!r}, not a parameter number")
            if not isinstance(st, dict):
                self.fail(f"{where}.state.{k}", f"must be an object, got {_tname(st)}")

    def schedule(self, e, where):
        if not isinstance(e, dict):
            self.fail(where, f"must be an object, got {_tname(e)}")
        self.get(e, "class", where, str, "a string")
        self.get(e, "state", where, dict, "an object")

    def rng(self, e, where):
        if not isinstance(e, dict):
            self.fail(where, f"must be an object (a bit generator state), got {_tname(e)}")
        self.get(e, "bit_generator", where, str, "a string (the bit generator's class)")


def _tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _short(v) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 40 else s[:37] + "..."


_TENSOR_FILE = re.compile(r"tensors-[0-9a-f]{16}\.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_manifest(mpath: pathlib.Path, m) -> None:
    """Every field this module reads, of the right type (format versions 1 and 2)."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: not a {FORMAT} manifest")
    s = _Schema(mpath)
    version = s.get(m, "format_version", "", int, "an integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{mpath}: format version {version} is newer than this "
                              f"tensorcalc ({_version()}) understands (it reads versions 1 to "
                              f"{FORMAT_VERSION}); upgrade tensorcalc to load it")
    if version < 1:
        s.fail("format_version", f"must be 1 to {FORMAT_VERSION}, got {version}")
    t = s.get(m, "tensors", "", dict, "an object {file, sha256, bytes}")
    f = s.get(t, "file", "tensors", str, "a string")
    if not _TENSOR_FILE.fullmatch(f):
        s.fail("tensors.file", f"must name a file tensors-<16 hex>.safetensors in the "
               f"checkpoint directory, got {f!r}")
    if not _SHA256.fullmatch(s.get(t, "sha256", "tensors", str, "a string")):
        s.fail("tensors.sha256", "must be 64 lowercase hex digits")
    if s.get(t, "bytes", "tensors", int, "an integer") < 0:
        s.fail("tensors.bytes", "must be >= 0")
    if version == 1:
        if s.get(m, "step", "", int, "an integer", optional=True) is None and "step" in m:
            s.fail("step", "must be an integer, got null")
        model = s.get(m, "model", "", dict, "an object or null", optional=True)
        if model is not None:
            s.module(model, "model")
        opt = s.get(m, "optimizer", "", dict, "an object or null", optional=True)
        if opt is not None:
            s.optimizer(opt, "optimizer")
        sched = s.get(m, "scheduler", "", dict, "an object or null", optional=True)
        if sched is not None:
            s.schedule(sched, "scheduler")
        rng = s.get(m, "rng", "", dict, "an object or null", optional=True)
        if rng is not None:
            s.rng(rng, "rng")
        s.get(m, "extra", "", dict, "an object", optional=True)
        return
    s.get(m, "meta", "", dict, "an object")
    s.named(m, "modules", s.module)
    s.named(m, "optimizers", s.optimizer)
    s.named(m, "schedules", s.schedule)
    s.named(m, "rngs", s.rng)
    s.str_list(m, "arrays", "")


def read_manifest(path) -> dict:
    """The checkpoint's manifest (JSON), schema-checked, without reading any tensors."""
    path = _path_arg("read_manifest", path, "read_manifest(path)")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a checkpoint is a directory (with {MANIFEST})")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST}; not a checkpoint, or its first save "
                              "never completed")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{mpath}: corrupt or truncated manifest ({e})") from None
    _check_manifest(mpath, manifest)
    return manifest


read_state_manifest = read_manifest


# ---------------------------------------------------------------------- the parts
def _check_names(who: str, kind: str, d) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise TypeError(f"{who}: {kind} must be a dict {{name: object}}, got {_tname(d)}")
    for k in d:
        if not isinstance(k, str) or not k or "/" in k:
            raise TypeError(f"{who}: {kind} names must be non-empty strings without '/', "
                            f"got {k!r}")
    return d


def _collect(who, modules, optimizers, schedules, rngs, arrays):
    """(tensors, manifest parts) for :func:`save_state`; raises before touching the disk."""
    tensors: dict[str, np.ndarray] = {}
    parts: dict = {}
    mods = {}
    for name, m in _check_names(who, "modules", modules).items():
        if not hasattr(m, "state_dict"):
            raise TypeError(f"{who}: modules[{name!r}] has no state_dict() "
                            f"(got {_tname(m)})")
        sd = m.state_dict()
        for k, v in sd.items():
            tensors[f"modules/{name}/{k}"] = _as_array(v, who, f"modules[{name!r}].{k}")
        mods[name] = {"class": _tname(m), "keys": list(sd)}
    parts["modules"] = mods
    opts = {}
    for name, o in _check_names(who, "optimizers", optimizers).items():
        if not hasattr(o, "state_dict"):
            raise TypeError(f"{who}: optimizers[{name!r}] has no state_dict() "
                            f"(got {_tname(o)})")
        osd = o.state_dict()
        scalars = {}
        for i, st in osd["state"].items():
            sc = {}
            for k, v in st.items():
                if _is_array(v):
                    tensors[f"optimizers/{name}/{i}/{k}"] = _as_array(
                        v, who, f"optimizers[{name!r}].state[{i}].{k}")
                else:
                    sc[k] = _jsonable(v)
            scalars[str(i)] = sc
        opts[name] = {"class": _tname(o), "param_groups": _jsonable(osd["param_groups"]),
                      "state": scalars}
    parts["optimizers"] = opts
    scheds = {}
    for name, s in _check_names(who, "schedules", schedules).items():
        if not hasattr(s, "state_dict"):
            raise TypeError(f"{who}: schedules[{name!r}] has no state_dict() "
                            f"(got {_tname(s)})")
        st = s.state_dict()
        if not isinstance(st, dict):
            raise TypeError(f"{who}: schedules[{name!r}].state_dict() must return a dict, got "
                            f"{_tname(st)}")
        scheds[name] = {"class": _tname(s), "state": _jsonable(st)}
    parts["schedules"] = scheds
    gens = {}
    for name, r in _check_names(who, "rngs", rngs).items():
        if not isinstance(r, np.random.Generator):
            raise TypeError(f"{who}: rngs[{name!r}] must be a numpy Generator, got {_tname(r)}")
        gens[name] = _jsonable(r.bit_generator.state)
    parts["rngs"] = gens
    for name, a in _check_names(who, "arrays", arrays).items():
        if not _is_array(a) and not isinstance(a, (list, tuple, np.generic, int, float)):
            raise TypeError(f"{who}: arrays[{name!r}] must be an array, got {_tname(a)}")
        tensors[f"arrays/{name}"] = _as_array(a, who, f"arrays[{name!r}]")
    parts["arrays"] = list(_check_names(who, "arrays", arrays))
    return tensors, parts


def save_state(path, *, modules=None, optimizers=None, schedules=None, rngs=None, arrays=None,
               meta=None, config=None) -> str:
    """Write a run's training state as a checkpoint directory, atomically (module docstring).

    ``modules``: ``{name: Module}`` (its ``state_dict()``: parameters and persistent buffers).
    ``optimizers``: ``{name: Optimizer}`` (hyperparameters as JSON, per-parameter arrays).
    ``schedules``: ``{name: schedule}`` — anything with a JSON-able ``state_dict()`` and
    ``load_state_dict()``. ``rngs``: ``{name: numpy.random.Generator}`` (its bit generator's
    state). ``arrays``: ``{name: array}`` (e.g. a replay buffer), stored bit-exact.
    ``meta``: a JSON-able dict (counters, history, callback states); ``config``: JSON-able
    settings of the run. Names are non-empty strings without ``/``.

    Everything is gathered and checked (JSON-able, arrays numeric) before the disk is touched.
    Returns the directory path as a string.
    """
    who = "save_state"
    path = _path_arg(who, path, "save_state(path, *, modules=..., optimizers=..., ...)")
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{who}: {path} exists and is not a checkpoint directory")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"{who}: meta must be a dict, got {_tname(meta)}")
    tensors, parts = _collect(who, modules, optimizers, schedules, rngs, arrays)
    manifest: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tensorcalc_version": _version(),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": _jsonable(config),
        "meta": _jsonable(meta or {}),
        **parts,
    }
    try:  # fail on a non-JSON config or meta before touching the disk
        json.dumps(manifest)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{who}: config/meta must be JSON-able ({e})") from None
    _write_checkpoint(path, tensors, manifest)
    return str(path)


def _write_checkpoint(path: pathlib.Path, tensors: dict, manifest: dict) -> None:
    created_dir = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    tmp_t = _tmp_name(path, ".safetensors")
    new_file = None
    try:
        _write_safetensors(tensors, tmp_t, {"format": FORMAT})
        digest = _sha256(tmp_t)
        name = f"tensors-{digest[:16]}.safetensors"
        manifest["tensors"] = {"file": name, "sha256": digest, "bytes": tmp_t.stat().st_size}
        if not (path / name).exists():  # (the same content may be what the manifest holds)
            new_file = path / name
        os.replace(tmp_t, path / name)
        _fsync_dir(path)
        # the commit point: after this rename the new checkpoint is the checkpoint
        _atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode())
    except BaseException:
        # leave the directory as it was: the previous manifest and its tensor file
        for f in (tmp_t, new_file):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.unlink()
        if created_dir:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty
        raise
    for f in path.iterdir():  # unreferenced tensor files and stale temporaries
        if (f.name.startswith("tensors-") and f.name != name) or f.name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                f.unlink()


# ---------------------------------------------------------------------- reading the parts
def _read_parts(path: pathlib.Path):
    """Verify a checkpoint (manifest schema, tensor file size, sha256, header) and return
    ``(manifest, parts)``; ``parts`` is the version-2 view whatever the file's version:
    ``{"modules": {name: {"class", "weights"}}, "optimizers": {name: {"class",
    "param_groups", "state": {i: {k: v}}}}, "schedules": {name: {"class", "state"}},
    "rngs": {name: state}, "arrays": {name: array}, "meta": dict, "config": ...}``."""
    manifest = read_manifest(path)
    mpath = path / MANIFEST
    tinfo = manifest["tensors"]
    tfile = path / tinfo["file"]
    if not tfile.is_file():
        raise CheckpointError(f"{path}: tensor file {tinfo['file']} is missing")
    size = tfile.stat().st_size
    if size != tinfo["bytes"]:
        raise CheckpointError(f"{tfile}: truncated or corrupt: {size} bytes, the manifest "
                              f"says {tinfo['bytes']}")
    digest = _sha256(tfile)
    if digest != tinfo["sha256"]:
        raise CheckpointError(f"{tfile}: corrupt: sha256 {digest[:16]}…, the manifest says "
                              f"{tinfo['sha256'][:16]}…")
    tensors = _read_safetensors(tfile)
    if manifest["format_version"] == 1:
        parts = _parts_v1(mpath, manifest, tensors)
    else:
        parts = _parts_v2(tfile, manifest, tensors)
    for n, st in parts["rngs"].items():
        _check_rng_state(f"{mpath}: rngs[{n!r}]", st)
    return manifest, parts


def _parts_v2(tfile, manifest, tensors):
    mods = {n: {"class": e["class"], "keys": e["keys"], "weights": {}}
            for n, e in manifest["modules"].items()}
    opts = {n: {"class": e["class"], "param_groups": _unjson(e["param_groups"]),
                "state": {int(i): dict(_unjson(st)) for i, st in e["state"].items()}}
            for n, e in manifest["optimizers"].items()}
    arrays = {}
    listed = set(manifest["arrays"])
    for k, v in tensors.items():
        kind, _, rest = k.partition("/")
        name, _, key = rest.partition("/")
        if kind == "modules" and name in mods and key:
            mods[name]["weights"][key] = v
        elif kind == "optimizers" and name in opts and key.partition("/")[0].isdigit():
            i, _, sk = key.partition("/")
            opts[name]["state"].setdefault(int(i), {})[sk] = v
        elif kind == "arrays" and rest in listed:
            arrays[rest] = v
        else:
            raise CheckpointError(f"{tfile}: tensor {k!r} belongs to no part the manifest "
                                  "lists")
    for n, e in mods.items():
        if set(e["keys"]) != set(e["weights"]):
            raise CheckpointError(f"{tfile}: modules[{n!r}]: the manifest lists keys "
                                  f"{sorted(set(e['keys']) ^ set(e['weights']))} that the "
                                  "tensor file does not match")
    if set(arrays) != listed:
        raise CheckpointError(f"{tfile}: arrays {sorted(listed - set(arrays))} are listed in "
                              "the manifest but not in the tensor file")
    parts = {
        "modules": mods, "optimizers": opts,
        "schedules": {n: {"class": e["class"], "state": _unjson(e["state"])}
                      for n, e in manifest["schedules"].items()},
        "rngs": {n: _unjson(e) for n, e in manifest["rngs"].items()},
        "arrays": arrays, "meta": manifest["meta"], "config": manifest.get("config"),
    }
    return parts


def _parts_v1(mpath, manifest, tensors):
    """Format version 1 (one model/optimizer/scheduler/rng) seen as version-2 parts."""
    weights, optim_state, extra_arrays = {}, {}, {}
    for k, v in tensors.items():
        if k.startswith("model."):
            weights[k[6:]] = v
        elif k.startswith("optim.state.") and k[12:].partition(".")[0].isdigit():
            i, _, name = k[len("optim.state."):].partition(".")
            optim_state.setdefault(int(i), {})[name] = v
        elif k.startswith("extra."):
            extra_arrays[k[6:]] = v
        else:
            raise CheckpointError(f"{mpath.parent}: tensor {k!r} belongs to no part of a "
                                  "version-1 checkpoint")
    parts = {"modules": {}, "optimizers": {}, "schedules": {}, "rngs": {},
             "arrays": extra_arrays, "config": manifest.get("config"),
             "meta": {"step": manifest.get("step", 0), "extra": manifest.get("extra") or {}}}
    if manifest.get("model") is not None:
        parts["modules"]["model"] = {"class": manifest["model"]["class"],
                                     "keys": manifest["model"]["keys"], "weights": weights}
    mo = manifest.get("optimizer")
    if mo is not None:
        state = {int(i): dict(_unjson(st)) for i, st in mo["state"].items()}
        for i, arrs in optim_state.items():
            state.setdefault(i, {}).update(arrs)
        parts["optimizers"]["optimizer"] = {"class": mo["class"],
                                            "param_groups": _unjson(mo["param_groups"]),
                                            "state": state}
    if manifest.get("scheduler") is not None:
        parts["schedules"]["scheduler"] = {"class": manifest["scheduler"]["class"],
                                           "state": _unjson(manifest["scheduler"]["state"])}
    if manifest.get("rng") is not None:
        parts["rngs"]["rng"] = _unjson(manifest["rng"])
    return parts


# ---------------------------------------------------------------------- checks before loading
def _parts(kind, names) -> str:
    return ", ".join(f"{kind}[{n!r}]" for n in names)


def _fit_module(who, model, weights, strict, cast, own=None) -> dict:
    """``weights`` checked against ``own = model.state_dict()`` (keys, shapes, dtypes);
    returns the dict to load (cast to the model's dtypes when ``cast``)."""
    own = model.state_dict() if own is None else own
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes, dtypes = [], []
    out = {}
    for k, v in own.items():
        if k not in weights:
            continue
        w = weights[k]
        mine = np.dtype(getattr(v, "dtype", np.asarray(v).dtype))
        if tuple(w.shape) != tuple(np.shape(v)):
            shapes.append(f"{k}: checkpoint {tuple(w.shape)} vs model {tuple(np.shape(v))}")
        elif w.dtype != mine:
            if cast:
                w = w.astype(mine)
            else:
                dtypes.append(f"{k}: checkpoint {w.dtype} vs model {mine}")
        out[k] = w
    for k in unexpected:
        out[k] = weights[k]
    problems = []
    if strict and missing:
        problems.append(f"missing keys {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if dtypes:
        problems.append("dtype mismatches (pass cast=True to convert): " + "; ".join(dtypes))
    if problems:
        raise CheckpointError(f"{who} do not fit {_tname(model)}: " + ", ".join(problems))
    return out


def _fit_optimizer(who, opt, saved, cast) -> dict:
    """The optimiser's ``load_state_dict`` argument, checked against ``opt`` (class, group
    layout, state shapes and dtypes) so that loading it cannot fail."""
    if saved["class"] != _tname(opt):
        raise CheckpointError(f"{who} is a {saved['class']}, got a {_tname(opt)}")
    groups = saved["param_groups"]
    if len(groups) != len(opt.param_groups):
        raise CheckpointError(f"{who} has {len(groups)} parameter groups, the optimizer has "
                              f"{len(opt.param_groups)}")
    params = {}
    for gi, (g, mine) in enumerate(zip(groups, opt.param_groups, strict=True)):
        if len(g["params"]) != len(mine["params"]):
            raise CheckpointError(f"{who}: parameter group {gi} has {len(g['params'])} "
                                  f"parameters, the optimizer's has {len(mine['params'])}")
        params.update(zip(g["params"], mine["params"], strict=True))
        merged = {k: v for k, v in g.items() if k != "params"}
        bad = _kind_mismatch(merged, {k: v for k, v in mine.items() if k != "params"}, "")
        if bad:
            raise CheckpointError(f"{who}: parameter group {gi}: {bad}")
        for k, v in mine.items():  # hyperparameters added since the state was saved
            merged.setdefault(k, v)
        if "betas" in merged and isinstance(merged["betas"], list):
            merged["betas"] = tuple(merged["betas"])
        validate = getattr(opt, "_validate", None)
        if validate is not None:
            try:
                validate(merged)
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"{who}: parameter group {gi}: {e}") from None
    state = {}
    for i, st in saved["state"].items():
        if i not in params:
            raise CheckpointError(f"{who}: state for parameter {i}, which no group holds")
        p = params[i]
        out = {}
        for k, v in st.items():
            if _is_array(v):
                if tuple(v.shape) != tuple(p.shape):
                    raise CheckpointError(f"{who}: state {k!r} of parameter {i} has shape "
                                          f"{tuple(v.shape)}, the parameter {tuple(p.shape)}")
                want = np.dtype(p.dtype)
                if v.dtype != want and v.dtype.kind == "f":
                    if not cast:
                        raise CheckpointError(f"{who}: state {k!r} of parameter {i} is "
                                              f"{v.dtype}, the parameter {want} (pass "
                                              "cast=True to convert)")
                    v = v.astype(want)
            out[k] = v
        state[i] = out
    return {"state": state, "param_groups": groups}


def _kind_mismatch(saved, live, where: str) -> str | None:
    """Where a saved JSON value differs in kind (number, bool, string, list, object) from the
    live object's value of the same field; None when they agree. None on either side, and
    int vs float, agree (a value may be unset, a count may be saved as a float)."""
    if saved is None or live is None:
        return None
    if isinstance(live, np.generic):
        live = live.item()
    kinds = ((bool, "a bool"), ((int, float), "a number"), (str, "a string"),
             ((list, tuple), "a list"), (dict, "an object"))
    for t, name in kinds:
        if isinstance(live, t):
            ok = isinstance(saved, t) and (t is bool or not isinstance(saved, bool))
            if not ok:
                return f"{where} must be {name} (like this object's), got {_short(saved)}"
            break
    else:
        return None
    if isinstance(live, dict):
        for k in saved.keys() & live.keys():
            bad = _kind_mismatch(saved[k], live[k], f"{where}.{k}" if where else k)
            if bad:
                return bad
    elif isinstance(live, (list, tuple)):
        for i, (a, b) in enumerate(zip(saved, live, strict=False)):
            bad = _kind_mismatch(a, b, f"{where}[{i}]")
            if bad:
                return bad
    return None


def _fit_rng(who, rng, state):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who}: expected a numpy Generator, got {_tname(rng)}")
    kind = type(rng.bit_generator).__name__
    if state["bit_generator"] != kind:
        raise CheckpointError(f"{who} is a {state['bit_generator']} state, the generator "
                              f"passed uses {kind}")


def _check_rng_state(who, state):
    """A saved bit generator state that NumPy accepts (checked on a scratch generator)."""
    kind = getattr(np.random, state["bit_generator"], None)
    if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
        raise CheckpointError(f"{who}: unknown bit generator {state['bit_generator']!r}")
    try:
        kind().state = state
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise CheckpointError(f"{who}: malformed bit generator state ({e!r})") from None


# ---------------------------------------------------------------------- load_state
@dataclass
class State:
    """What :func:`load_state` returns.

    ``meta`` and ``config`` (the JSON saved), ``arrays`` ({name: numpy array}), ``rng_states``
    ({name: bit generator state}; see :meth:`make_rng`), ``names`` ({part: [names]} of every
    part the checkpoint holds), ``format_version``, ``manifest`` and ``path``.
    """

    path: pathlib.Path
    meta: dict
    config: object
    arrays: dict
    rng_states: dict
    names: dict
    format_version: int
    manifest: dict = field(repr=False)

    def make_rng(self, name: str) -> np.random.Generator:
        """A new Generator that continues exactly where the saved ``rngs[name]`` stopped."""
        if name not in self.rng_states:
            raise CheckpointError(f"{self.path}: the checkpoint has no rngs[{name!r}] (it has "
                                  f"{sorted(self.rng_states)})")
        st = self.rng_states[name]
        bitgen = getattr(np.random, st["bit_generator"])()
        bitgen.state = st
        return np.random.Generator(bitgen)


def load_state(path, *, modules=None, optimizers=None, schedules=None, rngs=None,
               strict: bool = True, cast: bool = False, check=None) -> State:
    """Restore a checkpoint written by :func:`save_state` (or a format-1 one) in place.

    Each of ``modules``, ``optimizers``, ``schedules``, ``rngs`` is ``{name: object}``; every
    object passed gets the saved state of the part of that name. A name passed but absent from
    the checkpoint is an error; with ``strict`` (default) so is a part the checkpoint holds
    under a kind you passed (a dict, even empty) but that you did not name, and so are missing
    or unexpected keys in a module. A kind left as None is not loaded and not checked. Arrays
    and the JSON ``meta`` / ``config`` are returned in the :class:`State`.

    Everything — manifest schema, file size and sha256, every name, class, key, shape and
    dtype — is verified first; when this raises, nothing passed in has changed. ``cast``
    allows arrays whose dtype differs from the live object's to be converted (otherwise a
    :class:`CheckpointError` names the key and both dtypes). ``check``: an optional callable
    ``check(state)`` run on the :class:`State` after these checks and before anything is
    changed — the place for a caller to validate its own ``meta`` (counters, history); an
    exception it raises propagates with nothing changed.
    """
    return _load_state("load_state", path, modules, optimizers, schedules, rngs, strict, cast,
                       check)


def _load_state(who, path, modules, optimizers, schedules, rngs, strict, cast, check):
    path = _path_arg(who, path, f"{who}(path, ...)")
    given = {"modules": _check_names(who, "modules", modules) if modules is not None else None,
             "optimizers": (_check_names(who, "optimizers", optimizers)
                            if optimizers is not None else None),
             "schedules": (_check_names(who, "schedules", schedules)
                           if schedules is not None else None),
             "rngs": _check_names(who, "rngs", rngs) if rngs is not None else None}
    manifest, parts = _read_parts(path)

    # ---- names: everything asked for is there (and, when strict, nothing is left over)
    for kind, objs in given.items():
        if objs is None:
            continue
        have = parts[kind]
        missing = [n for n in objs if n not in have]
        if missing:
            raise CheckpointError(f"{who}: {path} holds no {_parts(kind, missing)} (its "
                                  f"{kind}: {sorted(have) or 'none'})")
        extra = [n for n in have if n not in objs]
        if strict and extra:
            raise CheckpointError(f"{who}: {path} also holds {_parts(kind, extra)}, not passed "
                                  "(pass them, or strict=False to ignore them)")

    # ---- check everything before changing anything
    module_loads, module_before = {}, {}
    for n, m in (given["modules"] or {}).items():
        part = f"{who}: {path}: modules[{n!r}]"
        module_before[n] = m.state_dict()  # (copies: also the undo should loading fail)
        module_loads[n] = _fit_module(part, m, parts["modules"][n]["weights"], strict, cast,
                                      module_before[n])
    optim_loads = {}
    for n, o in (given["optimizers"] or {}).items():
        optim_loads[n] = _fit_optimizer(f"{who}: {path}: optimizers[{n!r}]", o,
                                        parts["optimizers"][n], cast)
    sched_loads = {}
    for n, s in (given["schedules"] or {}).items():
        saved = parts["schedules"][n]
        if saved["class"] != _tname(s):
            raise CheckpointError(f"{who}: {path}: schedules[{n!r}] is a {saved['class']}, got a "
                                  f"{_tname(s)}")
        if not hasattr(s, "load_state_dict"):
            raise TypeError(f"{who}: schedules[{n!r}] has no load_state_dict()")
        bad = _kind_mismatch(saved["state"], s.state_dict(), "")
        if bad:
            raise CheckpointError(f"{who}: {path}: schedules[{n!r}]: {bad}")
        sched_loads[n] = saved["state"]
    for n, r in (given["rngs"] or {}).items():
        _fit_rng(f"{who}: {path}: rngs[{n!r}]", r, parts["rngs"][n])
    state = State(path=path, meta=parts["meta"], config=parts["config"], arrays=parts["arrays"],
                  rng_states=parts["rngs"], names={k: sorted(parts[k]) for k in PARTS},
                  format_version=manifest["format_version"], manifest=manifest)
    if check is not None:
        check(state)

    # ---- apply; what was loaded is put back if a later load fails (memory, Ctrl-C)
    undo = []
    try:
        for n, o in (given["optimizers"] or {}).items():
            undo.append(lambda o=o, saved=(o.param_groups, o.state):
                        setattr(o, "param_groups", saved[0]) or setattr(o, "state", saved[1]))
            try:
                o.load_state_dict(optim_loads[n])
            except ValueError as e:
                raise CheckpointError(f"{path}: optimizers[{n!r}] does not fit: {e}") from None
        for n, s in (given["schedules"] or {}).items():
            undo.append(lambda s=s, st=s.state_dict(): s.load_state_dict(st))
            try:
                s.load_state_dict(sched_loads[n])
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{path}: schedules[{n!r}] does not fit: {e!r}") from None
        for n, r in (given["rngs"] or {}).items():
            undo.append(lambda r=r, st=r.bit_generator.state: setattr(r.bit_generator, "state",
                                                                      st))
            r.bit_generator.state = parts["rngs"][n]
        for n, m in (given["modules"] or {}).items():  # validated: this cannot fail on content
            undo.append(lambda m=m, sd=module_before[n]: m.load_state_dict(sd, strict=False))
            m.load_state_dict(module_loads[n], strict=strict)
    except BaseException:
        for u in reversed(undo):
            with contextlib.suppress(Exception):
                u()
        raise
    return state


# ---------------------------------------------------------------------- one-model checkpoints
@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: the manifest's facts and a way to resume the RNG.

    ``step``, ``config``, ``extra`` (JSON values and arrays saved as ``extra``), ``rng_state``
    (``bit_generator.state`` or None), ``manifest`` (the whole JSON), ``path``.
    """

    path: pathlib.Path
    step: int
    config: object
    extra: dict
    rng_state: dict | None
    manifest: dict = field(repr=False)

    def restore_rng(self, rng: np.random.Generator) -> np.random.Generator:
        """Put the saved RNG state into ``rng`` (same bit generator type); returns ``rng``."""
        if self.rng_state is None:
            raise CheckpointError(f"{self.path}: the checkpoint has no RNG state")
        rng.bit_generator.state = self.rng_state
        return rng

    def make_rng(self) -> np.random.Generator:
        """A new Generator that continues exactly where the saved one stopped."""
        if self.rng_state is None:
            raise CheckpointError(f"{self.path}: the checkpoint has no RNG state")
        bitgen = getattr(np.random, self.rng_state["bit_generator"])()
        bitgen.state = self.rng_state
        return np.random.Generator(bitgen)


def save_checkpoint(path, model, optimizer=None, step: int = 0, rng=None, config=None,
                    scheduler=None, extra: dict | None = None) -> pathlib.Path:
    """Write a one-model checkpoint directory atomically: :func:`save_state` with
    ``modules={"model": model}``, ``optimizers={"optimizer": optimizer}``,
    ``schedules={"scheduler": scheduler}``, ``rngs={"rng": rng}`` (each when given),
    ``meta={"step": step, "extra": <JSON values of extra>}`` and the arrays of ``extra``.

    ``model``: anything with ``state_dict() -> {name: array}`` (or None). ``optimizer``: a
    :class:`tensorcalc.optim.Optimizer`. ``rng``: a ``numpy.random.Generator``. ``config``:
    any JSON-able value (the run's settings). ``scheduler``: a schedule with ``state_dict()``.
    ``extra``: a dict of JSON values and/or arrays. Returns the directory path.
    """
    who = "save_checkpoint"
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who}: rng must be a numpy Generator, got {_tname(rng)}")
    if not _is_int(step) and not isinstance(step, np.integer):
        raise TypeError(f"{who}: step must be an integer, got {_tname(step)}")
    json_extra, arrays = {}, {}
    for k, v in (extra or {}).items():
        if _is_array(v):
            arrays[str(k)] = v
        else:
            json_extra[str(k)] = v
    try:
        json.dumps(_jsonable([config, json_extra]))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{who}: config/extra must be JSON-able ({e})") from None
    save_state(path,
               modules=None if model is None else {"model": model},
               optimizers=None if optimizer is None else {"optimizer": optimizer},
               schedules=None if scheduler is None else {"scheduler": scheduler},
               rngs=None if rng is None else {"rng": rng},
               arrays=arrays, meta={"step": int(step), "extra": json_extra}, config=config)
    return pathlib.Path(path)


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, strict: bool = True,
                    cast: bool = False) -> Checkpoint:
    """Verify and load a checkpoint written by :func:`save_checkpoint` (either format version).

    Loads the weights into ``model``, the state and hyperparameters into ``optimizer`` and
    ``scheduler`` when given (``strict``: every key of the model; ``cast``: allow dtype
    conversion), and returns a :class:`Checkpoint` (step, config, extra, RNG state with
    ``restore_rng`` / ``make_rng``). Everything is checked first (:func:`load_state`): a
    corrupt, truncated or mismatched checkpoint raises :class:`CheckpointError` and leaves the
    model, optimiser and scheduler untouched.
    """
    who = "load_checkpoint"

    def one(name, obj):
        return None if obj is None else {name: obj}

    def check(st):  # the one-model meta, checked before anything is loaded
        step, extra = st.meta.get("step", 0), st.meta.get("extra", {})
        if not _is_int(step):
            raise CheckpointError(f"{who}: {st.path / MANIFEST}: field 'meta.step' must be an "
                                  f"integer, got {_tname(step)} {_short(step)}")
        if not isinstance(extra, dict):
            raise CheckpointError(f"{who}: {st.path / MANIFEST}: field 'meta.extra' must be an "
                                  f"object, got {_tname(extra)}")

    st = _load_state(who, path, one("model", model), one("optimizer", optimizer),
                     one("scheduler", scheduler), None, strict, cast, check)
    extra = dict(st.meta.get("extra", {}))
    extra.update(st.arrays)
    return Checkpoint(path=st.path, step=st.meta.get("step", 0), config=st.config, extra=extra,
                      rng_state=st.rng_states.get("rng"), manifest=st.manifest)


def _version() -> str:
    from . import __version__

    return __version__
