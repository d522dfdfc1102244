"""Run directories: nothing a user has is ever lost.

A run directory (``--out``) holds what one training run wrote: checkpoints, logs, figures, the
report. Its *record*, ``run.json``, lists every path tensorcalc wrote there, so that

* a directory that holds a run is never reused by accident: :func:`prepare` refuses it unless
  the caller says ``resume=True`` (``--resume``: continue it) or ``overwrite=True``
  (``--overwrite``: replace it);
* ``overwrite`` removes exactly the recorded paths and nothing else — a file the user put in
  the directory survives;
* a directory that holds no run but other files (say ``runs/`` of a project, or a notes file)
  is used as it is: the run only adds its own files. If one of those files would overwrite a
  file of the same name that tensorcalc did not write (``report.html``, ``history.csv``...),
  :func:`prepare` refuses instead, naming it.

The record also lists the names that were in the directory before the run began; a name of
:data:`KNOWN_NAMES` that was not there then and is now was written by the run, even if the run
was killed before recording it. Run directories written before the record existed are
recognised by ``checkpoints/`` or ``config.json``; for them ``overwrite`` removes only the
names tensorcalc is known to write (:data:`KNOWN_NAMES`).

Every failure that a user can cause (``--out`` is a file or lies under one, the directory is not
writable, the disk is full, a flag combination makes no sense) raises :class:`RunDirError`, a
``ValueError`` with one line that says what is wrong and what to do.

    rd = prepare("runs/mlp", resume=False, overwrite=False)   # after settings are validated
    ...write history.csv...
    rd.record("history.csv")                                   # rewrites run.json atomically
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time

__all__ = ["RunDir", "RunDirError", "prepare", "holds_run", "KNOWN_NAMES", "RECORD",
           "describe_os_error"]

RECORD = "run.json"
FORMAT = "tensorcalc-run"
VERSION = 1

# What tensorcalc writes into a run directory (used for runs written before the record existed,
# and to notice a user's own file that a new run would overwrite).
KNOWN_NAMES = (
    "checkpoints", "tb", "config.json", "history.csv", "metrics.json", "report.html",
    # figures of the shared report and of the recipes
    "curves.png", "confusion.png", "samples.png", "misclassified.png", "weights.png",
    "filters.png", "feature_maps.png", "decision_boundary.png", "fits.png", "boxes.png",
    "worst_boxes.png", "iou.png", "pretrain.png", "augmentation.png", "study.png",
)
_LEGACY_MARKERS = ("checkpoints", "config.json")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message is one line for the user."""


def describe_os_error(e: OSError, path=None) -> str:
    """One line for an OS error met at ``path`` (default: the error's file name): what
    happened, in words."""
    where = path or getattr(e, "filename", None) or "the run directory"
    code = getattr(e, "errno", None)
    if code == errno.ENOSPC:
        return f"no space left on the device while writing {where}"
    if code == errno.EDQUOT:
        return f"disk quota exceeded while writing {where}"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where}"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system"
    if code == errno.ENOTDIR:
        return f"{where}: a part of this path is a file, not a directory"
    if code == errno.EISDIR:
        return f"{where} is a directory, a file was expected"
    if code == errno.ENOENT:
        return f"no such file or directory: {where}"
    text = e.strerror or str(e) or type(e).__name__
    return f"{where}: {text}"


def _first_existing_ancestor(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.lexists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _check_location(run_dir: str) -> None:
    """``run_dir`` must be a directory or creatable as one."""
    if os.path.lexists(run_dir):
        if not os.path.isdir(run_dir):
            raise RunDirError(f"{run_dir} is a file, not a directory; give --out a directory "
                              "(new or existing)")
        return
    anc = _first_existing_ancestor(run_dir)
    if not os.path.isdir(anc):
        raise RunDirError(f"cannot create {run_dir}: {anc} is a file, not a directory")


def _read_record(run_dir: str):
    """(files, preexisting) from the record, or None when there is no usable record."""
    p = os.path.join(run_dir, RECORD)
    try:
        with open(p, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        return None
    files = rec.get("files")
    pre = rec.get("preexisting", [])
    for v in (files, pre):
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            return None
    return files, pre


def _ours(run_dir: str) -> tuple[list, list]:
    """(what tensorcalc wrote in ``run_dir``, what was there before the run began).

    The record lists what was recorded; a known name that did not exist when the run began
    and exists now was written by the run too (a run killed before it recorded its
    checkpoint still owns it). An older run without a record owns the known names present."""
    rec = _read_record(run_dir)
    files, pre = rec if rec is not None else ([], [])
    extra = [n for n in _present(run_dir, KNOWN_NAMES)
             if n not in pre and not any(f == n or f.startswith(n + "/") for f in files)]
    return list(files) + extra, list(pre)


def holds_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a tensorcalc run (a record, or an older run's markers)."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        return False
    if os.path.isfile(os.path.join(run_dir, RECORD)):
        return True
    return any(os.path.lexists(os.path.join(run_dir, n)) for n in _LEGACY_MARKERS)


def _present(run_dir: str, names) -> list:
    return [n for n in names if os.path.lexists(os.path.join(run_dir, n))]


def _show(run_dir: str, names, limit: int = 4) -> str:
    shown = [n + ("/" if os.path.isdir(os.path.join(run_dir, n)) else "") for n in names[:limit]]
    more = len(names) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _inside(run_dir: str, rel: str):
    """The absolute path of a recorded entry, or None when it does not lie strictly inside
    ``run_dir`` (a hand-edited record must never make ``overwrite`` reach outside)."""
    if not rel or os.path.isabs(rel):
        return None
    root = os.path.realpath(run_dir)
    full = os.path.normpath(os.path.join(root, rel))
    if os.path.commonpath([root, full]) != root or full == root:
        return None
    # a symlinked parent could lead outside: check where the parent really is
    parent = os.path.realpath(os.path.dirname(full))
    if os.path.commonpath([root, parent]) != root:
        return None
    return full


def _remove(run_dir: str, rel: str) -> None:
    full = _inside(run_dir, rel)
    if full is None or not os.path.lexists(full):
        return
    try:
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
    except OSError as e:
        raise RunDirError(f"--overwrite: {describe_os_error(e, full)}") from None
    # drop directories the removal left empty, up to (not including) the run directory
    root = os.path.realpath(run_dir)
    parent = os.path.dirname(full)
    while parent != root and os.path.commonpath([root, parent]) == root:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)


class RunDir:
    """A prepared run directory and the record of what tensorcalc wrote in it.

    ``os.fspath(rd)`` is the directory, so a RunDir can be passed where a path is expected.
    ``files`` lists the recorded paths, relative to the directory, in the order recorded.
    """

    def __init__(self, path: str, files=(), *, resumed: bool = False, preexisting=()):
        self.path = path
        self.files = list(files)
        self.resumed = resumed
        self.preexisting = list(preexisting)  # top-level names present before the run began

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"RunDir({self.path!r}, files={self.files!r}, resumed={self.resumed})"

    def join(self, *parts) -> str:
        """A path inside the run directory."""
        return os.path.join(self.path, *parts)

    def _relative(self, path) -> str:
        # a relative path is taken as given when it already lies inside the run directory
        # (``os.path.join(run_dir, "x")`` with a relative run_dir), else relative to it
        root = os.path.abspath(self.path)
        full = os.path.abspath(os.fspath(path))
        if os.path.commonpath([root, full]) != root and not os.path.isabs(os.fspath(path)):
            full = os.path.normpath(os.path.join(root, os.fspath(path)))
        rel = os.path.relpath(full, root)
        if os.path.commonpath([root, full]) != root or rel == os.curdir:
            raise RunDirError(f"record: {os.fspath(path)} is not inside the run directory "
                              f"{self.path}")
        return rel.replace(os.sep, "/")

    def record(self, path) -> str:
        """Add ``path`` (a file or directory tensorcalc wrote, absolute or relative to the run
        directory) to the record; ``run.json`` is rewritten atomically. Returns the relative
        name. Recording a path twice, or a path under a recorded directory, changes nothing."""
        rel = self._relative(path)
        covered = any(rel == f or rel.startswith(f + "/") for f in self.files)
        if not covered:
            self.files.append(rel)
            self._write()
        return rel

    def _write(self) -> None:
        rec = {"format": FORMAT, "version": VERSION,
               "note": "the files tensorcalc wrote in this run directory; "
                       "`tensorcalc train ... --overwrite` removes exactly these",
               "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": self.files,
               "preexisting": self.preexisting}
        target = os.path.join(self.path, RECORD)
        tmp = os.path.join(self.path, f".{RECORD}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(rec, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise RunDirError(describe_os_error(e, target)) from None


def prepare(run_dir, *, resume: bool = False, overwrite: bool = False) -> RunDir:
    """Make ``run_dir`` ready for a run and return its :class:`RunDir`; call it after the
    settings, data and model were checked, so that a typo never touches the disk.

    * new or empty directory, or one with only files of other programs: used as it is;
    * a directory holding a tensorcalc run: refused unless ``resume`` (continue it: the record
      is kept) or ``overwrite`` (the recorded paths — for an older run without a record, the
      :data:`KNOWN_NAMES` — are removed; nothing else is);
    * ``resume`` where there is no run, or ``resume`` with ``overwrite``: refused.

    Raises :class:`RunDirError` with one line for the user in every refused case, and when the
    directory cannot be created or written (a file in the way, permissions, a full disk).
    """
    run_dir = os.fspath(run_dir)
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite replaces it; give one")
    _check_location(run_dir)
    has_run = holds_run(run_dir)
    if resume:
        if not has_run:
            raise RunDirError(f"--resume: {run_dir} holds no tensorcalc run to continue; start "
                              "the run without --resume")
        files, pre = _ours(run_dir)
        rd = RunDir(run_dir, files, resumed=True, preexisting=pre)
        rd._write()  # also proves the directory is writable before training starts
        return rd
    ours = []
    if has_run:
        ours, _ = _ours(run_dir)
        if not overwrite:
            present = _present(run_dir, ours) or [RECORD]
            raise RunDirError(
                f"{run_dir} already holds a tensorcalc run ({_show(run_dir, present)}): give "
                "--resume to continue it, --overwrite to replace it (only the files tensorcalc "
                "wrote are removed), or another --out")
    # a file of a name the run will write, which tensorcalc did not write: never write over it
    mine = {rel.split("/", 1)[0] for rel in ours}
    clash = [n for n in _present(run_dir, KNOWN_NAMES) if n not in mine] \
        if os.path.isdir(run_dir) else []
    if clash:
        raise RunDirError(
            f"{run_dir} holds {_show(run_dir, clash)}, which tensorcalc did not write (the run "
            "record does not list it) and a new run would overwrite; move it away or choose "
            "another --out")
    for rel in ours:
        _remove(run_dir, rel)
    if has_run:
        for name in os.listdir(run_dir):
            if name == RECORD or name.startswith(f".{RECORD}.tmp-"):
                _remove(run_dir, name)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise RunDirError(describe_os_error(e, run_dir)) from None
    rd = RunDir(run_dir, preexisting=sorted(os.listdir(run_dir)))
    rd._write()
    return rd
