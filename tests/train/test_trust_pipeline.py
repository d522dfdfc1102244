"""Issue 8 leftovers in the pipeline and CLI: settings refused by flag name before the disk is
touched, the first error of a failing run is the one reported, no half-written report page,
complex inputs refused by predict, a run loads from any entry point, and the CLI's advice on
divergence names its flag."""

import errno
import os
import subprocess
import sys

import pytest

from tensorcalc.train import pipeline as P
from tensorcalc.train.report import HTMLReport


@pytest.mark.parametrize("setting,message", [
    ({"dropout": 1.0}, "--dropout must be in [0, 1)"),
    ({"dropout": -0.1}, "--dropout must be in [0, 1)"),
    ({"shift": -1}, "--shift must be an integer >= 0"),
    ({"hidden": (-5,)}, "--hidden must be widths >= 1"),
])
def test_nonsense_settings_are_refused_by_flag_before_the_disk(tmp_path, setting, message):
    out = tmp_path / "run"
    with pytest.raises(P.RecipeError) as e:
        P.train_recipe("mlp", {"epochs": 1, "limit": 200, **setting}, str(out), quiet=True)
    assert message in str(e.value)
    assert not out.exists()


def test_the_first_error_of_a_failing_run_is_the_one_reported(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "report.html")

    monkeypatch.setattr(P, "run_standard", full_disk)
    real = P.RD.RunDir.record

    def record(self, path):  # recording fails too once the disk is full
        if path != "config.json":
            raise OSError(errno.ENOSPC, "No space left on device", "run.json")
        return real(self, path)

    monkeypatch.setattr(P.RD.RunDir, "record", record)
    with pytest.raises(OSError) as e:
        P.train_recipe("mlp", {"epochs": 1, "limit": 200}, str(out), quiet=True)
    assert e.value.filename == "report.html"


def test_report_page_is_not_left_half_written(tmp_path, monkeypatch):
    rep = HTMLReport("t")
    path = str(tmp_path / "report.html")

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError):
        rep.save(path)
    assert os.listdir(tmp_path) == []


def test_predict_refuses_complex_inputs_and_loads_from_any_entry_point(tmp_path):
    run = str(tmp_path / "run")
    code = (
        "import sys, numpy as np\n"
        "from tensorcalc.train.pipeline import train_recipe, predict_run, RecipeError\n"
        f"train_recipe('mlp', {{'epochs': 1, 'limit': 200}}, {run!r}, quiet=True, report=False)\n"
        f"print(predict_run({run!r}, inputs=np.zeros((1, 784)))['labels'])\n"
        "try:\n"
        f"    predict_run({run!r}, inputs=np.zeros((1, 784)) * 1j)\n"
        "except RecipeError as e:\n"
        "    print('refused:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "refused: predict inputs: holds complex numbers" in r.stdout


def test_cli_divergence_advice_names_the_flag(monkeypatch, capsys):
    from tensorcalc import cli
    from tensorcalc.train import TrainingDiverged

    def diverge(*a, **k):
        raise TrainingDiverged("training diverged: the loss became nan; try a smaller "
                               "learning rate", figure="loss", value=float("nan"), lr=0.5)

    monkeypatch.setitem(cli.COMMANDS, "train", diverge)
    assert cli.main(["train", "mlp"]) != 0
    err = capsys.readouterr().err
    assert "learning rate" in err and "--lr (this run used 0.5)" in err
