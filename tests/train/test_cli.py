"""The tensorcalc command line, through subprocesses: list, train, evaluate, predict, tune,
bad input, corrupt checkpoints, Ctrl-C, and the kill -9 + resume equality."""

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
SMALL = ["--limit", "500", "--epochs", "1", "--batch-size", "50", "--quiet"]


def tc(*args, timeout=120):
    """Run ``tensorcalc ARGS`` (as ``python -m tensorcalc.cli``, same code as the script)."""
    return subprocess.run([sys.executable, "-m", "tensorcalc.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def _tree_digest(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "softmax"
    r = tc("train", "softmax-regression", *SMALL, "--out", d)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and "report:" in r.stdout
    return d


def test_list_shows_every_recipe():
    r = tc("list")
    assert r.returncode == 0
    for name in ("linear-regression", "logistic-regression", "softmax-regression", "mlp"):
        assert name in r.stdout


def test_train_writes_run_directory_and_report(run_dir):
    for f in ("config.json", "history.csv", "metrics.json", "report.html", "curves.png",
              "confusion.png", "samples.png", "misclassified.png", "weights.png"):
        assert (run_dir / f).exists(), f
    assert (run_dir / "checkpoints" / "last" / "manifest.json").exists()
    assert glob.glob(str(run_dir / "tb" / "events*"))
    html = (run_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 5
    assert "softmax-regression" in html and "Hyperparameters" in html


def test_evaluate_reproduces_the_test_figures(run_dir):
    r = tc("evaluate", run_dir, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert out["test"]["acc"] == pytest.approx(saved["acc"])
    assert out["n"] == 2000 and np.array(out["confusion"]).sum() == 2000
    r = tc("evaluate", run_dir / "checkpoints" / "last")
    assert r.returncode == 0 and "precision" in r.stdout and "confusion matrix" in r.stdout


def test_predict_by_index_and_from_a_file(run_dir, tmp_path):
    r = tc("predict", run_dir, "--index", "0,1,2")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("test[")]
    assert len(lines) == 3 and all("true" in x for x in lines)
    from tensorcalc.data import mnist10k_split

    imgs = mnist10k_split(test_size=2000, seed=0).test[0][:4]
    np.save(tmp_path / "digits.npy", imgs)
    r = tc("predict", run_dir, "--input", tmp_path / "digits.npy", "--output",
           tmp_path / "out.npy")
    assert r.returncode == 0, r.stderr
    assert len([x for x in r.stdout.splitlines() if x.startswith("input[")]) == 4
    assert np.load(tmp_path / "out.npy").shape == (4, 10)
    bad = imgs.astype(np.float32) / 255
    bad[2, 5, 5] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    r = tc("predict", run_dir, "--input", tmp_path / "bad.npy")
    assert r.returncode == 2 and "row 2" in r.stderr and "Traceback" not in r.stderr


def test_tune_two_by_two_with_two_folds(tmp_path):
    out = tmp_path / "tune"
    r = tc("tune", "softmax-regression", "--param", "lr=0.001,0.01", "--param",
           "batch_size=32,64", "--folds", "2", "--epochs", "1", "--limit", "400", "--out", out,
           "--quiet")
    assert r.returncode == 0, r.stderr
    assert "best:" in r.stdout and "test accuracy" in r.stdout
    rows = (out / "tune.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and rows[0].startswith("lr,batch_size,cv_mean,cv_std,fold1,fold2")
    assert sum(int(x.rsplit(",", 1)[1]) for x in rows[1:]) == 1  # exactly one best
    assert (out / "tune.png").exists() and (out / "best" / "report.html").exists()


@pytest.mark.parametrize("args, needle", [
    (["train", "nosuch"], "Available recipes: "),
    (["train", "mlp", "--lr", "0"], "--lr must be a number > 0"),
    (["train", "mlp", "--lr", "-0.1"], "--lr must be a number > 0"),
    (["train", "mlp", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["train", "mlp", "--epochs", "0"], "--epochs must be an integer >= 1"),
    (["train", "mlp", "--optimizer", "lbfgs"], "--optimizer must be one of"),
    (["train", "mlp", "--lr", "fast"], "expected a number"),
    (["evaluate", "/nonexistent/run"], "no such run or checkpoint"),
    (["tune", "mlp", "--param", "width=1,2"], "has no hyperparameter 'width'"),
    (["tune", "mlp", "--param", "lr=0.1", "--folds", "1"], "--folds must be an integer >= 2"),
    (["frobnicate"], "unknown command"),
])
def test_bad_input_gives_one_clear_message_and_nonzero_exit(args, needle, capsys):
    from tensorcalc.cli import main

    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own errors (a value of the wrong type)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err
    if args[:2] == ["train", "nosuch"]:  # the message lists every recipe
        from tensorcalc.recipes import list_recipes

        assert all(r.name in err for r in list_recipes())


def test_errors_through_the_console_script_have_no_traceback():
    r = tc("train", "mlp", "--batch-size", "0")
    assert r.returncode == 2 and "--batch-size" in r.stderr and "Traceback" not in r.stderr


def test_corrupt_checkpoint_is_refused_and_run_dir_left_intact(run_dir, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    (tf,) = glob.glob(str(d / "checkpoints" / "last" / "tensors-*"))
    data = bytearray(open(tf, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(tf, "wb").write(bytes(data))
    before = _tree_digest(d)
    r = tc("train", "softmax-regression", "--out", d, "--resume", "--epochs", "2", "--quiet")
    assert r.returncode == 2 and "corrupt" in r.stderr and "left as it is" in r.stderr
    assert "Traceback" not in r.stderr
    r2 = tc("evaluate", d)
    assert r2.returncode == 2 and "corrupt" in r2.stderr and "Traceback" not in r2.stderr
    assert _tree_digest(d) == before


def test_resume_needs_a_checkpoint(tmp_path):
    r = tc("train", "mlp", "--out", tmp_path / "none", "--resume")
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def _final_weights(run):
    from safetensors.numpy import load_file

    (f,) = glob.glob(os.path.join(run, "checkpoints", "last", "tensors-*"))
    return {k: v for k, v in load_file(f).items() if k.startswith("model.")}


RESUMABLE = ["train", "mlp", "--limit", "1200", "--epochs", "6", "--batch-size", "32",
             "--hidden", "48", "--dropout", "0.1", "--checkpoint-every", "5", "--quiet",
             "--no-report"]


def _start_and_signal(out, sig, args=RESUMABLE):
    """Start a run, wait for a mid-epoch checkpoint of epoch ≥ 2, send ``sig``."""
    p = subprocess.Popen([sys.executable, "-m", "tensorcalc.cli", *args, "--out", str(out)],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = os.path.join(out, "checkpoints", "last", "manifest.json")
    state = None
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        try:
            with open(manifest) as f:
                m = json.load(f)  # format 2: the Loop's state is meta.loop
                st = m["meta"]["loop"] if "loop" in m.get("meta", {}) else (
                    m.get("meta", m)["extra"]["trainer"])
            if st["epoch"] >= 1 and st["step_in_epoch"] > 0:
                p.send_signal(sig)
                state = st
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    out_, err = p.communicate(timeout=120)
    return p.returncode, state, out_, err


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    r = tc(*RESUMABLE, "--out", ref)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "killed"
    rc, state, _, _ = _start_and_signal(run, signal.SIGKILL)
    assert rc == -signal.SIGKILL, "the run finished before it could be killed"
    assert state["step_in_epoch"] > 0  # a checkpoint from the middle of an epoch existed
    r = tc(*RESUMABLE, "--out", run, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _final_weights(ref), _final_weights(run)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)

    def losses(d):
        rows = (d / "history.csv").read_text().splitlines()
        i = rows[0].split(",").index("train_loss")
        return [row.split(",")[i] for row in rows[1:]]

    assert losses(ref) == losses(run) and len(losses(ref)) == 6


@pytest.mark.slow
def test_ctrl_c_saves_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "interrupted"
    rc, state, _, err = _start_and_signal(run, signal.SIGINT)
    assert rc == 130, err
    assert "checkpoint saved to" in err
    assert f"tensorcalc train mlp --out {run} --resume" in err
    assert "Traceback" not in err
    r = tc(*RESUMABLE, "--out", run, "--resume")
    assert r.returncode == 0, r.stderr
    assert len((run / "history.csv").read_text().strip().splitlines()) == 7


# ------------------------------------------------------------------------------ nothing lost
def _main(args, capsys):
    """Run the CLI in-process; (exit status, stdout, stderr)."""
    from tensorcalc.cli import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err):
    lines = [x for x in err.splitlines() if x.strip()]
    return len(lines) == 1 and lines[0].startswith("tensorcalc: error: ") \
        and "Traceback" not in err


SOFTMAX = ["train", "softmax-regression", *SMALL, "--no-report"]


def test_a_run_is_refused_then_overwritten_and_foreign_files_survive(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = _main([*SOFTMAX, "--out", out], capsys)
    assert rc == 0, err
    assert "for 1 epoch\n" in stdout and "1 epochs" not in stdout
    (out / "notes.txt").write_text("my notes")
    before = _tree_digest(out)
    rc, _, err = _main([*SOFTMAX, "--out", out], capsys)  # again, without a flag
    assert rc == 2 and _one_line_error(err)
    assert "already holds a tensorcalc run" in err and "--resume" in err \
        and "--overwrite" in err
    assert _tree_digest(out) == before  # nothing touched
    rc, _, err = _main([*SOFTMAX, "--out", out, "--resume", "--overwrite"], capsys)
    assert rc == 2 and "give one" in err and _tree_digest(out) == before
    rc, _, err = _main([*SOFTMAX, "--out", out, "--overwrite", "--seed", "1"], capsys)
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "checkpoints" / "last" / "manifest.json").exists()
    assert json.loads((out / "config.json").read_text())["seed"] == 1  # replaced
    record = json.loads((out / "run.json").read_text())
    assert "checkpoints" in record["files"] and "notes.txt" not in record["files"]


def test_an_interrupted_run_is_not_discarded_by_a_fresh_start(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = _main([*SOFTMAX, "--out", out], capsys)
    assert rc == 0, err
    (out / "run.json").unlink()  # an older run, or one killed before its record was written
    before = _tree_digest(out)
    rc, _, err = _main([*SOFTMAX, "--out", out], capsys)
    assert rc == 2 and "already holds a tensorcalc run" in err
    assert _tree_digest(out) == before


@pytest.mark.parametrize("args, needle", [
    (["--lr", "-1e-3"], "--lr must be a number > 0, got -0.001"),
    (["--lr", "-1E-3"], "--lr must be a number > 0"),
    (["--weight-decay", "-1e-4"], "--weight-decay must be a number >= 0"),
    (["--lr=-1e-3"], "--lr must be a number > 0"),
])
def test_negative_numbers_reach_the_validator(tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    rc, _, err = _main([*SOFTMAX, *args, "--out", out], capsys)
    assert rc == 2 and needle in err and _one_line_error(err)
    assert "expected one argument" not in err
    assert not out.exists()


def test_negative_values_join_only_their_flag():
    from tensorcalc.cli import _join_negative_values as j

    assert j(["--lr", "-1e-3", "--quiet"]) == ["--lr=-1e-3", "--quiet"]
    assert j(["--hidden", "-5,10", "--x", "-.5", "--y", "-inf"]) == [
        "--hidden=-5,10", "--x=-.5", "--y=-inf"]
    assert j(["-h"]) == ["-h"] and j(["--lr=1", "-2"]) == ["--lr=1", "-2"]
    assert j(["--lr", "--quiet"]) == ["--lr", "--quiet"]


def _fake_finished_run(d):
    (d / "checkpoints" / "last").mkdir(parents=True)
    (d / "checkpoints" / "last" / "manifest.json").write_text("{}")
    (d / "config.json").write_text('{"recipe": "mlp"}')
    (d / "history.csv").write_text("epoch,train_loss\n1,0.1\n")
    return _tree_digest(d)


@pytest.mark.parametrize("args, needle", [
    (["--dropout", "1.5"], "1.5"),
    (["--hidden", "-5"], "-5"),
    (["--hidden", "0,10"], "0"),
    (["--lr", "-1e-3"], "--lr must be a number > 0"),
])
def test_a_typo_never_touches_a_finished_run(tmp_path, capsys, args, needle):
    # the old CLI cleared checkpoints/ and history.csv, then found the bad value
    out = tmp_path / "finished"
    before = _fake_finished_run(out)
    rc, _, err = _main(["train", "mlp", *args, "--limit", "100", "--out", out, "--quiet"],
                       capsys)
    assert rc == 2 and needle in err and _one_line_error(err)
    assert "already holds" not in err  # the setting was checked first
    assert _tree_digest(out) == before


def test_out_that_is_a_file_or_under_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, _, err = _main([*SOFTMAX, "--out", f], capsys)
    assert rc == 2 and "is a file, not a directory" in err and _one_line_error(err)
    rc, _, err = _main([*SOFTMAX, "--out", f / "run"], capsys)
    assert rc == 2 and "file.txt is a file" in err and _one_line_error(err)
    assert f.read_text() == "x"


def test_an_unwritable_out_is_one_line(tmp_path, capsys, monkeypatch):
    import builtins
    import errno

    out = tmp_path / "locked"
    out.mkdir()
    real_open = builtins.open

    def deny(path, *a, **k):  # tests run as root: chmod would not stop them
        if str(path).startswith(str(out)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", deny)
    rc, _, err = _main([*SOFTMAX, "--out", out], capsys)
    monkeypatch.undo()
    assert rc == 2 and "permission denied" in err and _one_line_error(err)
    assert os.listdir(out) == []


def test_a_full_disk_while_writing_the_report_keeps_the_checkpoint(tmp_path, capsys,
                                                                     monkeypatch):
    import errno

    from matplotlib.figure import Figure

    from tensorcalc import serialization as S

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    out = tmp_path / "run"
    rc, _, err = _main(["train", "softmax-regression", *SMALL, "--out", out], capsys)
    monkeypatch.undo()
    assert rc == 2 and "no space left" in err and _one_line_error(err)
    S.load_checkpoint(str(out / "checkpoints" / "last"))  # still loadable, verified
    assert "checkpoints" in json.loads((out / "run.json").read_text())["files"]
    rc, _, err = _main([*SOFTMAX, "--out", out, "--overwrite"], capsys)  # and replaceable
    assert rc == 0, err


def test_an_allocation_too_large_for_memory_is_one_line(tmp_path, capsys):
    # 10¹² × 784 float32 weights (3 PB) exceed any address space, so the allocation fails at
    # once even where the kernel overcommits
    out = tmp_path / "never"
    rc, _, err = _main(["train", "mlp", "--hidden", "1000000000000", "--out", out], capsys)
    assert rc == 2 and "not enough memory" in err and _one_line_error(err)
    assert not out.exists()


def test_demo_replaces_only_its_own_directory(monkeypatch, capsys):
    from tensorcalc import cli

    calls = []

    class Res:
        test, history, report = {"acc": 0.99, "loss": 0.1}, [], None

    def fake(name, over, out, **kw):
        calls.append((out, kw["overwrite"]))
        return Res()

    monkeypatch.setattr(cli._recipes(), "train_recipe", fake)
    assert cli.main(["demo", "--quiet"]) == 0
    assert cli.main(["demo", "--quiet", "--out", "elsewhere"]) == 0
    assert cli.main(["demo", "--quiet", "--out", "elsewhere", "--overwrite"]) == 0
    assert calls == [(os.path.join("runs", "demo"), True), ("elsewhere", False),
                     ("elsewhere", True)]


def test_evaluate_json_prints_one_matrix_row_per_line(run_dir, capsys):
    rc, out, err = _main(["evaluate", run_dir, "--json"], capsys)
    assert rc == 0, err
    parsed = json.loads(out)
    m = parsed["confusion"]
    rows = [line.strip().rstrip(",") for line in out.splitlines()]
    assert all(json.dumps(r) in rows for r in m)  # each row of the matrix on its own line
    assert len(out.splitlines()) < 30


@pytest.mark.parametrize("make, needle", [
    (lambda p: np.save(p, np.array(["a", "b"])), "holds text"),
    (lambda p: np.save(p, np.ones((2, 28, 28)) * (1 + 1j)), "holds complex numbers"),
    (lambda p: np.save(p, np.zeros((0, 28, 28))), "holds no values"),
    (lambda p: p.write_bytes(b""), "cannot read"),
    (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "cannot read"),
    (lambda p: np.savez(open(p, "wb"), a=np.ones(3)), ".npz archive"),
])
def test_predict_refuses_unusable_input_files(run_dir, tmp_path, capsys, make, needle):
    p = tmp_path / "in.npy"
    make(p)
    rc, _, err = _main(["predict", run_dir, "--input", p], capsys)
    assert rc == 2 and needle in err and _one_line_error(err)


def test_compact_json_is_json_with_matrix_rows_on_one_line():
    from tensorcalc.cli import _compact_json

    obj = {"n": 4, "test": {"acc": 0.5}, "confusion": [[1, 0], [2, 1]], "empty": [], "d": {}}
    text = _compact_json(obj)
    assert json.loads(text) == obj
    assert "  [1, 0],\n  [2, 1]\n" in text and len(text.splitlines()) == 12


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, capsys,
                                                                       monkeypatch):
    import safetensors.numpy as stn
    from safetensors import SafetensorError

    from tensorcalc import serialization as S

    out = tmp_path / "run"
    real = stn.save_file

    def save_until_full(tensors, path, *a, **k):
        if (out / "checkpoints" / "last" / "manifest.json").exists():  # the disk fills up
            raise SafetensorError("Error while serializing: I/O error: No space left on "
                                  "device (os error 28)")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(stn, "save_file", save_until_full)
    rc, _, err = _main([*SOFTMAX, "--epochs", "2", "--out", out], capsys)
    monkeypatch.undo()
    assert rc == 2 and "no space left" in err and _one_line_error(err)
    ck = S.load_checkpoint(str(out / "checkpoints" / "last"))  # epoch 1's, verified
    assert ck is not None
    assert not [p for p in out.rglob("*") if p.is_file() and p.stat().st_size == 0]
