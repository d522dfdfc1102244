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


RESUMABLE = ["train", "mlp", "--limit", "1200", "--epochs", "3", "--batch-size", "32",
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
                st = json.load(f)["extra"]["trainer"]
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

    assert losses(ref) == losses(run) and len(losses(ref)) == 3


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
    assert len((run / "history.csv").read_text().strip().splitlines()) == 4
