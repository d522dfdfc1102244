"""Run directories: a run is never reused by accident, overwrite removes only what tensorcalc
wrote, and every unusable --out is one RunDirError line."""

from __future__ import annotations

import errno
import json
import os

import pytest

from tensorcalc.train import rundir as RD
from tensorcalc.train.rundir import RunDirError, prepare


def _fake_run(d, rd=None):
    """Write what a training run writes, recording it."""
    rd = rd or prepare(d)
    (d / "checkpoints" / "last").mkdir(parents=True)
    (d / "checkpoints" / "last" / "manifest.json").write_text("{}")
    (d / "history.csv").write_text("epoch\n1\n")
    (d / "report.html").write_text("<html>")
    for name in ("checkpoints", "history.csv", "report.html"):
        rd.record(d / name)
    return rd


def test_fresh_directory_is_created_with_a_record(tmp_path):
    d = tmp_path / "a" / "b"
    rd = prepare(d)
    assert d.is_dir() and rd.files == [] and not rd.resumed
    rec = json.loads((d / RD.RECORD).read_text())
    assert rec["format"] == "tensorcalc-run" and rec["files"] == []
    assert os.fspath(rd) == os.fspath(d)


def test_record_is_relative_deduplicated_and_atomic(tmp_path):
    d = tmp_path / "run"
    rd = prepare(d)
    (d / "history.csv").write_text("x")
    assert rd.record(d / "history.csv") == "history.csv"
    assert rd.record("history.csv") == "history.csv"  # relative to the run directory
    (d / "checkpoints" / "last").mkdir(parents=True)
    rd.record(d / "checkpoints")
    rd.record(d / "checkpoints" / "last")  # covered by the directory already recorded
    assert json.loads((d / RD.RECORD).read_text())["files"] == ["history.csv", "checkpoints"]
    assert not [n for n in os.listdir(d) if ".tmp" in n]  # no temporary file left
    with pytest.raises(RunDirError, match="not inside the run directory"):
        rd.record(tmp_path / "elsewhere.txt")
    with pytest.raises(RunDirError, match="not inside the run directory"):
        rd.record("../escape.txt")


def test_a_run_is_refused_without_resume_or_overwrite(tmp_path):
    d = tmp_path / "run"
    _fake_run(d)
    before = sorted(os.listdir(d))
    with pytest.raises(RunDirError) as e:
        prepare(d)
    msg = str(e.value)
    assert "already holds a tensorcalc run" in msg and "checkpoints/" in msg
    assert "--resume" in msg and "--overwrite" in msg and "\n" not in msg
    assert sorted(os.listdir(d)) == before


def test_overwrite_removes_only_what_tensorcalc_wrote(tmp_path):
    d = tmp_path / "run"
    (d / "notes").mkdir(parents=True)
    (d / "notes" / "mine.txt").write_text("keep me")
    (d / "data.npy").write_bytes(b"keep")
    _fake_run(d)
    (d / "checkpoints" / "my_export.txt").write_text("also mine")  # inside a recorded dir
    rd = prepare(d, overwrite=True)
    assert (d / "notes" / "mine.txt").read_text() == "keep me"
    assert (d / "data.npy").read_bytes() == b"keep"
    assert not (d / "history.csv").exists() and not (d / "report.html").exists()
    assert not (d / "checkpoints").exists()  # recorded as a whole: tensorcalc's directory
    assert rd.files == []
    assert sorted(rd.preexisting) == ["data.npy", "notes"]


def test_overwrite_of_files_recorded_one_by_one_keeps_foreign_siblings(tmp_path):
    d = tmp_path / "run"
    rd = prepare(d)
    (d / "checkpoints" / "last").mkdir(parents=True)
    (d / "checkpoints" / "last" / "w.safetensors").write_bytes(b"w")
    rd.record(d / "checkpoints" / "last" / "w.safetensors")
    (d / "checkpoints" / "readme.txt").write_text("user's")
    prepare(d, overwrite=True)
    assert (d / "checkpoints" / "readme.txt").read_text() == "user's"
    assert not (d / "checkpoints" / "last").exists()  # emptied by the removal, pruned


def test_unrecorded_known_files_written_after_prepare_belong_to_the_run(tmp_path):
    # a run killed before it recorded its checkpoint still owns it
    d = tmp_path / "run"
    (d).mkdir()
    (d / "keep.txt").write_text("k")
    prepare(d)
    (d / "checkpoints" / "last").mkdir(parents=True)
    (d / "history.csv").write_text("h")
    with pytest.raises(RunDirError, match="already holds"):
        prepare(d)
    rd = prepare(d, resume=True)
    assert set(rd.files) == {"checkpoints", "history.csv"}
    prepare(d, overwrite=True)
    assert sorted(os.listdir(d)) == sorted([RD.RECORD, "keep.txt"])


def test_legacy_run_without_record(tmp_path):
    d = tmp_path / "old"
    (d / "checkpoints" / "last").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "curves.png").write_bytes(b"png")
    (d / "my_plot.png").write_bytes(b"mine")
    with pytest.raises(RunDirError, match="already holds a tensorcalc run"):
        prepare(d)
    prepare(d, overwrite=True)
    assert sorted(os.listdir(d)) == sorted([RD.RECORD, "my_plot.png"])


def test_legacy_run_resumed_adopts_the_known_names(tmp_path):
    d = tmp_path / "old"
    (d / "checkpoints" / "last").mkdir(parents=True)
    (d / "history.csv").write_text("h")
    (d / "mine.txt").write_text("m")
    rd = prepare(d, resume=True)
    assert rd.resumed and set(rd.files) == {"checkpoints", "history.csv"}
    prepare(d, overwrite=True)
    assert sorted(os.listdir(d)) == sorted([RD.RECORD, "mine.txt"])


def test_resume_keeps_the_record(tmp_path):
    d = tmp_path / "run"
    _fake_run(d)
    rd = prepare(d, resume=True)
    assert rd.resumed and rd.files == ["checkpoints", "history.csv", "report.html"]
    assert (d / "history.csv").read_text() == "epoch\n1\n"


def test_resume_without_a_run_and_contradicting_flags(tmp_path):
    with pytest.raises(RunDirError, match="holds no tensorcalc run"):
        prepare(tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(RunDirError, match="give one"):
        prepare(tmp_path / "x", resume=True, overwrite=True)


def test_foreign_files_are_allowed_but_never_written_over(tmp_path):
    d = tmp_path / "project"
    d.mkdir()
    (d / "notes.txt").write_text("n")
    rd = prepare(d)  # a directory with other files: the run only adds its own
    assert rd.preexisting == ["notes.txt"]
    e = tmp_path / "other"
    e.mkdir()
    (e / "report.html").write_text("my own report")
    with pytest.raises(RunDirError, match="report.html.*did not write"):
        prepare(e)
    with pytest.raises(RunDirError, match="report.html.*did not write"):
        prepare(e, overwrite=True)  # overwrite replaces a run, never a user's file
    assert (e / "report.html").read_text() == "my own report"
    assert not (e / RD.RECORD).exists()


def test_a_hand_edited_record_cannot_reach_outside(tmp_path):
    d = tmp_path / "run"
    victim = tmp_path / "victim.txt"
    victim.write_text("v")
    prepare(d)
    rec = json.loads((d / RD.RECORD).read_text())
    rec["files"] = ["../victim.txt", str(victim), "", "."]
    (d / RD.RECORD).write_text(json.dumps(rec))
    prepare(d, overwrite=True)
    assert victim.read_text() == "v" and d.is_dir()


def test_a_corrupt_record_still_marks_a_run(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / RD.RECORD).write_text("{not json")
    (d / "history.csv").write_text("h")
    (d / "mine.txt").write_text("m")
    with pytest.raises(RunDirError, match="already holds"):
        prepare(d)
    prepare(d, overwrite=True)
    assert sorted(os.listdir(d)) == sorted([RD.RECORD, "mine.txt"])


def test_out_is_a_file_or_under_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(RunDirError, match="is a file, not a directory"):
        prepare(f)
    with pytest.raises(RunDirError, match=r"cannot create .*file.txt is a file"):
        prepare(f / "sub" / "run")
    assert f.read_text() == "x"


@pytest.mark.parametrize("code, words", [(errno.EACCES, "permission denied"),
                                         (errno.ENOSPC, "no space left"),
                                         (errno.EROFS, "read-only")])
def test_unwritable_directory_is_one_line(tmp_path, monkeypatch, code, words):
    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(RD.os, "makedirs", refuse)
    with pytest.raises(RunDirError, match=words):
        prepare(tmp_path / "new")
    monkeypatch.undo()
    d = tmp_path / "exists"
    d.mkdir()
    real_open = open

    def open_refusing(path, *a, **k):
        if os.fspath(path).startswith(os.fspath(d)):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", open_refusing)
    with pytest.raises(RunDirError, match=words) as e:
        prepare(d)
    assert "\n" not in str(e.value)
    monkeypatch.undo()
    assert os.listdir(d) == []  # nothing half-written left behind


def test_a_full_disk_while_recording_keeps_the_previous_record(tmp_path, monkeypatch):
    d = tmp_path / "run"
    rd = _fake_run(d)
    before = (d / RD.RECORD).read_text()
    (d / "metrics.json").write_text("{}")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RD.os, "replace", full)
    with pytest.raises(RunDirError, match="no space left"):
        rd.record(d / "metrics.json")
    monkeypatch.undo()
    assert (d / RD.RECORD).read_text() == before
    assert not [n for n in os.listdir(d) if ".tmp" in n]


def test_describe_os_error():
    assert "no space left" in RD.describe_os_error(OSError(errno.ENOSPC, "x"), "/p")
    assert "/p" in RD.describe_os_error(OSError(errno.EIO, "I/O error"), "/p")
