"""The mdp, q-learning and dqn recipes: short runs through the shared pipeline, their figures
and reports, `evaluate --episodes`, and the message when gymnasium is missing."""

import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from tensorcalc.recipes import RecipeError, evaluate_run, get_recipe, train_recipe  # noqa: E402


def test_mdp_recipe_solves_frozenlake(tmp_path):
    res = train_recipe("mdp", {"env": "FrozenLake-v1", "episodes": 200}, str(tmp_path / "m"),
                       quiet=True)
    t = res.test
    assert t["frozenlake_pi_iterations"] == 7
    assert t["frozenlake_exact"] == pytest.approx(0.7402, abs=1e-4)
    assert 0.6 < t["frozenlake_episodes"] < 0.88  # 200 sampled episodes around 0.74
    for f in ("report.html", "FrozenLake-v1_values.png", "vi_convergence.png", "metrics.json"):
        assert os.path.getsize(tmp_path / "m" / f) > 300


def test_q_learning_recipe_learns_taxi(tmp_path):
    res = train_recipe("q-learning", {"env": "Taxi-v4", "method": "q-learning",
                                      "episodes": 600, "eval_episodes": 50},
                       str(tmp_path / "q"), quiet=True)
    r = res.extra["results"][0]
    rets = r["result"].returns
    assert rets[-100:].mean() > rets[:100].mean() + 100  # from ≈ −700 towards ≈ 0
    assert res.test["q-learning_taxi_exact"] == pytest.approx(r["exact"])
    assert r["optimum"] == pytest.approx(7.93)
    assert os.path.exists(tmp_path / "q" / "Taxi-v4_returns.png")


def test_dqn_recipe_report_and_evaluate_episodes(tmp_path):
    out = str(tmp_path / "d")
    res = train_recipe("dqn", {"steps": 1200, "hidden": (32, 32), "eval_every": 600,
                               "eval_episodes": 3, "learning_starts": 200, "train_freq": 16,
                               "gradient_steps": 8}, out, quiet=True)
    assert np.isfinite(res.test["return"]) and res.test["seconds_per_seed"] > 0
    seeds = res.extra["seeds"]
    assert len(seeds) == 1 and seeds[0]["env_steps"] == 1200
    assert seeds[0]["updates"] == (1200 - 208) // 16 * 8 + 8
    for f in ("report.html", "eval_return.png", "train_return.png", "episode.png",
              "episodes.csv", "history.csv", "metrics.json"):
        assert os.path.getsize(os.path.join(out, f)) > 50, f
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["env_steps"] == 1200
    ev = evaluate_run(out, episodes=4)
    assert ev["n"] == 4 and ev["data"] == "CartPole-v1" and ev["test"]["return"] >= 8
    best = evaluate_run(out, "best")
    assert best["n"] == 3


def test_dqn_other_environments_take_their_zoo_defaults():
    rec = get_recipe("dqn")
    cfg = rec.config({"env": "MountainCar-v0"})      # the recipe's resolve runs in config()
    assert (cfg["steps"], cfg["gamma"], cfg["target_update"], cfg["lr"]) == (120_000, 0.98,
                                                                              600, 4e-3)
    cfg = rec.config({"env": "Acrobot-v1", "lr": 1e-3})
    assert cfg["lr"] == 1e-3 and cfg["train_freq"] == 4  # a given value wins
    cfg = rec.config({"env": "Acrobot-v1", "lr": 2.3e-3})  # even CartPole's own value
    assert cfg["lr"] == 2.3e-3 and cfg["train_freq"] == 4
    with pytest.raises(RecipeError, match="tau"):
        rec.config({"tau": 0.0})
    with pytest.raises(RecipeError, match="schedule"):
        rec.config({"schedule": "cosine"})


def test_missing_gymnasium_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import gymnasium -> ImportError
    with pytest.raises(RecipeError, match="pip install"):
        train_recipe("mdp", {}, str(tmp_path / "x"), quiet=True)
    assert not os.path.exists(tmp_path / "x")  # refused before touching the disk


def test_dqn_cli_sigterm_then_resume_is_bit_identical(tmp_path):
    import csv
    import signal
    import subprocess
    import time

    from tensorcalc.serialization import load_state, load_weights

    flags = {"steps": 1000, "hidden": (16,), "eval_every": 500, "eval_episodes": 2,
             "learning_starts": 100, "train_freq": 1, "gradient_steps": 1, "batch_size": 16,
             "checkpoint_every": 100}
    ref = str(tmp_path / "ref")
    train_recipe("dqn", flags, ref, quiet=True, report=False)
    out = str(tmp_path / "run")
    argv = [sys.executable, "-m", "tensorcalc.cli", "train", "dqn", "--out", out, "--quiet",
            "--no-report", "--hidden", "16"] + [
        a for k, v in flags.items() if k != "hidden"
        for a in (f"--{k.replace('_', '-')}", str(v))]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    marker = os.path.join(out, "checkpoints", "last", "manifest.json")
    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    text = child.communicate()[0].decode()
    assert child.returncode != 0 and "resume" in text, text  # stopped early, said how to resume
    assert load_state(os.path.join(out, "checkpoints", "last")).meta["step"] < 1000
    res = train_recipe("dqn", {}, out, resume=True, quiet=True, report=False)
    assert res.extra["seeds"][0]["env_steps"] == 1000
    a = load_state(os.path.join(ref, "checkpoints", "last"))
    b = load_state(os.path.join(out, "checkpoints", "last"))
    assert a.arrays.keys() == b.arrays.keys()
    assert all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    tensors = [f for f in os.listdir(os.path.join(ref, "checkpoints", "last"))
               if f.endswith(".safetensors")]
    assert tensors
    for f in tensors:  # weights of both networks, Adam's moments, the replay buffer
        wa = load_weights(os.path.join(ref, "checkpoints", "last", f))
        wb = load_weights(os.path.join(out, "checkpoints", "last", f))
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)

    def rows(d):
        with open(os.path.join(d, "history.csv")) as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    assert rows(ref) == rows(out)
    with pytest.raises(RecipeError, match="differs"):
        train_recipe("dqn", {"lr": 0.1}, out, resume=True, quiet=True, report=False)
