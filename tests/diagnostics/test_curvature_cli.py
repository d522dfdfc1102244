"""`tensorcalc curvature RUN` on a freshly trained tiny recipe run."""

import json

import numpy as np

from tensorcalc.cli import main
from tensorcalc.recipes import train_recipe


def test_curvature_command_writes_figures_and_consistent_numbers(tmp_path):
    run = tmp_path / "mlp"
    train_recipe("mlp", {"epochs": 1, "limit": 200, "hidden": (16,)}, out_dir=str(run),
                 quiet=True, report=False)
    assert main(["curvature", str(run), "--samples", "64", "--top", "2", "--probes", "2",
                 "--steps", "20", "--trace-samples", "30", "--deflate", "5"]) == 0
    res = json.loads((run / "curvature.json").read_text())
    assert (run / "curvature.png").exists() and (run / "curvature.html").exists()
    lz, pw = res["top_eigenvalues_lanczos"], res["top_eigenvalues_power"]
    assert lz[0] >= lz[1] > 0
    np.testing.assert_allclose(pw[0], lz[0], rtol=1e-2)      # two methods, one λ_max
    assert res["trace"] > 0 and res["parameters"] > 10_000


def test_curvature_command_rejects_bad_input(tmp_path, capsys):
    assert main(["curvature", str(tmp_path / "nope")]) == 2
    assert "no such run" in capsys.readouterr().err
