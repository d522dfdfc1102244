"""Saving and loading: weights with safetensors (never pickle) and atomic training checkpoints.

Weights
    :func:`save_weights` / :func:`load_weights` write and read one ``.safetensors`` file holding
    a flat ``{name: array}`` dict (a ``Module.state_dict()``) plus optional string metadata. The
    file is written atomically: to a temporary file in the same directory, fsync'ed, then
    ``os.replace``'d over the target, so a crash leaves either the old file or the new one.

Checkpoints
    A checkpoint is a **directory**::

        ckpt/
          manifest.json                    what and when: version, step, config, RNG state,
                                           optimiser hyperparameters, scheduler state, and the
                                           name + sha256 + size of the tensor file
          tensors-<sha256[:16]>.safetensors  every array: "model.<key>",
                                           "optim.state.<i>.<name>" (e.g. optim.state.0.exp_avg),
                                           "extra.<key>"

    The tensor file is named by its content and written first (temp + fsync + rename); the
    manifest is then written to a temp file, fsync'ed and ``os.replace``'d — that rename is the
    single commit point. A crash at any moment leaves the previous manifest pointing at the
    previous (still present) tensor file, so the directory always holds one complete checkpoint.
    Unreferenced tensor files are removed after the commit. On load the tensor file's size and
    sha256 are checked against the manifest; a corrupt, truncated or missing file raises
    :class:`CheckpointError` before anything is loaded into the model, optimiser or scheduler.

Everything is plain data (JSON + safetensors): loading a checkpoint never executes code.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import pathlib
import platform
import struct
import uuid
from dataclasses import dataclass, field

import numpy as np

from . import backend

__all__ = [
    "CheckpointError", "Checkpoint", "save_weights", "load_weights", "save_checkpoint",
    "load_checkpoint",
]

FORMAT = "tensorcalc.checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


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
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata=metadata)
    _fsync_file(path)


def _read_header(path: pathlib.Path) -> dict:
    """The safetensors JSON header, checking that the file is complete."""
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
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
              default=0)
    if 8 + n + end != size:
        raise CheckpointError(f"{path}: truncated or padded safetensors file: the header "
                              f"describes {8 + n + end} bytes, the file has {size}")
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
    path = pathlib.Path(path)
    if not isinstance(state, dict):
        raise TypeError(f"save_weights: expected a dict of arrays, got {type(state).__name__}")
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


def load_weights(path, return_metadata: bool = False):
    """Read a ``.safetensors`` file into ``{name: numpy array}`` (and its metadata dict when
    ``return_metadata``). A truncated or corrupt file raises :class:`CheckpointError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_weights: no such file {path}")
    tensors = _read_safetensors(path)
    if return_metadata:
        return tensors, dict(_read_header(path).get("__metadata__") or {})
    return tensors


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


# ---------------------------------------------------------------------- checkpoints
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
    """Write a checkpoint directory atomically (layout and guarantees: module docstring).

    ``model``: anything with ``state_dict() -> {name: array}`` (or None). ``optimizer``: a
    :class:`tensorcalc.optim.Optimizer`. ``rng``: a ``numpy.random.Generator`` whose
    ``bit_generator.state`` is stored as JSON. ``config``: any JSON-able value (the run's
    settings). ``scheduler``: a schedule with ``state_dict()``. ``extra``: a dict of JSON values
    and/or arrays. Returns the directory path.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"save_checkpoint: {path} exists and is not a checkpoint "
                              "directory")
    tensors: dict[str, np.ndarray] = {}
    manifest: dict = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tensorcalc_version": _version(),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "step": int(step),
        "config": config,
    }
    if model is not None:
        sd = model.state_dict()
        for k, v in sd.items():
            tensors[f"model.{k}"] = _as_array(v, "save_checkpoint", k)
        manifest["model"] = {"class": type(model).__name__, "keys": list(sd)}
    else:
        manifest["model"] = None
    if optimizer is not None:
        osd = optimizer.state_dict()
        scalars = {}
        for i, st in osd["state"].items():
            sc = {}
            for k, v in st.items():
                if _is_array(v):
                    tensors[f"optim.state.{i}.{k}"] = _as_array(v, "save_checkpoint", k)
                else:
                    sc[k] = _jsonable(v)
            scalars[str(i)] = sc
        manifest["optimizer"] = {"class": type(optimizer).__name__,
                                 "param_groups": _jsonable(osd["param_groups"]),
                                 "state": scalars}
    else:
        manifest["optimizer"] = None
    manifest["scheduler"] = None if scheduler is None else {
        "class": type(scheduler).__name__, "state": _jsonable(scheduler.state_dict())}
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"save_checkpoint: rng must be a numpy Generator, "
                            f"got {type(rng).__name__}")
        manifest["rng"] = _jsonable(rng.bit_generator.state)
    else:
        manifest["rng"] = None
    json_extra = {}
    for k, v in (extra or {}).items():
        if _is_array(v):
            tensors[f"extra.{k}"] = _as_array(v, "save_checkpoint", k)
        else:
            json_extra[k] = _jsonable(v)
    manifest["extra"] = json_extra
    try:  # fail on a non-JSON config before touching the disk
        json.dumps(manifest)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_checkpoint: config/extra must be JSON-able ({e})") from None

    path.mkdir(parents=True, exist_ok=True)
    tmp_t = _tmp_name(path, ".safetensors")
    try:
        _write_safetensors(tensors, tmp_t, {"format": FORMAT})
        digest = _sha256(tmp_t)
        name = f"tensors-{digest[:16]}.safetensors"
        manifest["tensors"] = {"file": name, "sha256": digest, "bytes": tmp_t.stat().st_size}
        os.replace(tmp_t, path / name)
        _fsync_dir(path)
        # the commit point: after this rename the new checkpoint is the checkpoint
        _atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_t.unlink()
        raise
    for f in path.iterdir():  # unreferenced tensor files and stale temporaries
        if (f.name.startswith("tensors-") and f.name != name) or f.name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                f.unlink()
    return path


def read_manifest(path) -> dict:
    """The checkpoint's manifest (JSON) without loading any tensors."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path}: a checkpoint is a directory (with {MANIFEST})")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST}; not a checkpoint, or its first save "
                              "never completed")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{mpath}: corrupt or truncated manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: not a {FORMAT} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{mpath}: format version {manifest['format_version']} is newer "
                              f"than this tensorcalc ({_version()}) understands")
    return manifest


def _check_model_state(who, model, weights, strict):
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    bad = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(np.shape(own[k]))}"
           for k in own if k in weights and tuple(weights[k].shape) != tuple(np.shape(own[k]))]
    problems = []
    if strict and missing:
        problems.append(f"missing keys {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if bad:
        problems.append("shape mismatches: " + "; ".join(bad))
    if problems:
        raise CheckpointError(f"{who}: the checkpoint does not fit the model: "
                              + ", ".join(problems))


def _section(who, path, manifest, key, obj) -> dict:
    """The manifest's ``key`` section, checked to exist and to be of ``obj``'s class."""
    sec = manifest.get(key)
    if sec is None:
        raise CheckpointError(f"{who}: {path} holds no {key} state")
    if sec["class"] != type(obj).__name__:
        raise CheckpointError(f"{who}: the checkpoint's {key} is {sec['class']}, "
                              f"got a {type(obj).__name__}")
    return sec


def load_checkpoint(path, model=None, optimizer=None, scheduler=None,
                    strict: bool = True) -> Checkpoint:
    """Verify and load a checkpoint written by :func:`save_checkpoint`.

    Loads the weights into ``model`` (``load_state_dict(d, strict=strict)``), the state and
    hyperparameters into ``optimizer`` and ``scheduler`` when given, and returns a
    :class:`Checkpoint` (step, config, extra, RNG state with ``restore_rng`` / ``make_rng``).
    The manifest, the tensor file's size and sha256, and the fit of every state are checked
    first: a corrupt or truncated checkpoint raises :class:`CheckpointError` and leaves the
    model, optimiser and scheduler untouched.
    """
    who = "load_checkpoint"
    path = pathlib.Path(path)
    manifest = read_manifest(path)
    try:
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
    except KeyError as e:
        raise CheckpointError(f"{path}: manifest lacks {e}") from None
    tensors = _read_safetensors(tfile)

    weights, optim_arrays, extra = {}, {}, dict(manifest.get("extra") or {})
    for k, v in tensors.items():
        if k.startswith("model."):
            weights[k[6:]] = v
        elif k.startswith("optim.state."):
            i, _, name = k[len("optim.state."):].partition(".")
            optim_arrays.setdefault(i, {})[name] = v
        elif k.startswith("extra."):
            extra[k[6:]] = v

    # ---- check everything before changing anything
    if model is not None:
        if manifest.get("model") is None:
            raise CheckpointError(f"{who}: {path} holds no model weights")
        _check_model_state(who, model, weights, strict)
    osd = None
    if optimizer is not None:
        mo = _section(who, path, manifest, "optimizer", optimizer)
        state = {}
        for i in set(mo["state"]) | set(optim_arrays):
            st = dict(_unjson(mo["state"].get(i, {})))
            st.update(optim_arrays.get(i, {}))
            state[int(i)] = st
        osd = {"state": state, "param_groups": _unjson(mo["param_groups"])}
    ssd = None
    if scheduler is not None:
        ssd = _unjson(_section(who, path, manifest, "scheduler", scheduler)["state"])

    # ---- apply; the optimiser's load is all-or-nothing, so roll it back if a later one fails
    saved_opt = None if optimizer is None else (optimizer.param_groups, optimizer.state)
    saved_sched = None if scheduler is None else scheduler.state_dict()
    try:
        if optimizer is not None:
            try:
                optimizer.load_state_dict(osd)
            except ValueError as e:
                raise CheckpointError(f"{who}: optimizer state does not fit: {e}") from None
        if scheduler is not None:
            try:
                scheduler.load_state_dict(ssd)
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{who}: scheduler state does not fit: {e}") from None
        if model is not None:
            model.load_state_dict(weights, strict=strict)
    except BaseException:
        if saved_opt is not None:
            optimizer.param_groups, optimizer.state = saved_opt
        if saved_sched is not None:
            with contextlib.suppress(Exception):
                scheduler.load_state_dict(saved_sched)
        raise
    rng_state = manifest.get("rng")
    return Checkpoint(path=path, step=int(manifest.get("step", 0)), config=manifest.get("config"),
                      extra=extra, rng_state=None if rng_state is None else _unjson(rng_state),
                      manifest=manifest)


def _version() -> str:
    from . import __version__

    return __version__
