"""Feedback alignment / DFA as custom VJPs, and smoke runs of the three recipes of issue 15."""

import json
import os

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc.models import FeedbackMLP
from tensorcalc.recipes import train_recipe


def _grads(model, x, y):
    loss = tc.functional.cross_entropy(model(tc.tensor(x)), y)
    return [g.data for g in tc.gradients(loss, list(model.parameters()))]


def _batch(d_in=12, n=10, classes=4):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, d_in)).astype(np.float64), rng.integers(0, classes, n)


def test_feedback_alignment_with_b_equal_to_w_is_backprop():
    x, y = _batch()
    bp = FeedbackMLP(12, (9, 7), 4, rule="bp", rng=np.random.default_rng(0)).double()
    fa = FeedbackMLP(12, (9, 7), 4, rule="fa", rng=np.random.default_rng(0)).double()
    for i, lin in enumerate(fa.layers):
        getattr(fa, f"fa_B{i}").data[...] = lin.weight.data
    for a, b in zip(_grads(bp, x, y), _grads(fa, x, y), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_direct_feedback_alignment_with_one_hidden_layer_and_b_equal_to_w_out_is_backprop():
    x, y = _batch()
    bp = FeedbackMLP(12, (9,), 4, rule="bp", rng=np.random.default_rng(0)).double()
    dfa = FeedbackMLP(12, (9,), 4, rule="dfa", rng=np.random.default_rng(0)).double()
    dfa.dfa_B0.data[...] = dfa.layers[1].weight.data
    for a, b in zip(_grads(bp, x, y), _grads(dfa, x, y), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_random_feedback_changes_only_the_hidden_layers_updates():
    x, y = _batch()
    ref = _grads(FeedbackMLP(12, (9, 7), 4, rng=np.random.default_rng(0), feedback_rng=5)
                 .double(), x, y)
    for rule in ("fa", "dfa"):
        g = _grads(FeedbackMLP(12, (9, 7), 4, rule=rule, rng=np.random.default_rng(0),
                               feedback_rng=5).double(), x, y)
        np.testing.assert_allclose(g[-2], ref[-2])   # output layer: the true gradient
        assert not np.allclose(g[0], ref[0])         # first layer: a different signal


def test_feedback_alignment_recipe_runs_and_reports_angles(tmp_path):
    out = str(tmp_path / "fa")
    res = train_recipe("feedback-alignment", {"epochs": 2, "limit": 256, "angle_every": 3,
                                              "hidden": (32, 32)},
                       out_dir=out, quiet=True, progress=False)
    runs = res.extra["runs"]
    assert set(runs) == {"bp", "fa", "dfa"}
    for rule in ("fa", "dfa"):
        a = np.asarray(runs[rule]["angles"])[:, 1:]
        assert a.shape[1] == 3 and np.all((a >= 0) & (a <= 180))
        assert np.all(a[:, -1] < 0.5)  # the output layer's update is the true gradient
    assert np.all(np.asarray(runs["bp"]["angles"])[:, 1:] < 1.0)
    for rule in runs:
        assert runs[rule]["test"]["acc"] > 0.15   # above chance (0.1) after 8 small steps
    assert os.path.isfile(os.path.join(out, "report.html"))
    assert os.path.isfile(os.path.join(out, "angles.png"))


def test_ode_spiral_recipe_learns_and_reports_the_trajectory(tmp_path):
    out = str(tmp_path / "spiral")
    res = train_recipe("ode-spiral", {"epochs": 3, "points": 200, "window": 5, "t_end": 5.0,
                                      "lr": 1e-2},
                       out_dir=out, quiet=True, progress=False)
    h = res.history
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert np.isfinite(res.test["trajectory_mse"])
    assert res.test["nfe_forward"] > 0 and res.test["nfe_backward"] > 0
    with open(os.path.join(out, "metrics.json")) as f:
        assert "trajectory_mse" in json.load(f)["test"]
    assert os.path.isfile(os.path.join(out, "spiral.png"))


def test_ode_mnist_model_records_nfe_and_learns(tmp_path):
    # the recipe's own model builder and figures, trained a few steps by the Trainer (the
    # full recipe scores 2,000 test images: the CLI run, not the unit suite, does that)
    from tensorcalc.recipes import get_recipe
    from tensorcalc.train import Trainer
    from tensorcalc.train.pipeline import RunContext

    recipe = get_recipe("ode-mnist")
    cfg = recipe.config({"width": 8})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 1, 28, 28)).astype(np.float32)
    y = np.arange(32) % 2
    model = recipe.model(cfg, type("Data", (), {"num_classes": 10})(), rng)
    trainer = Trainer(model, tc.functional.cross_entropy, tc.optim.Adam(model.parameters(),
                                                                        lr=1e-2), quiet=True)
    loader = tc.data.DataLoader(tc.data.TensorDataset(x, y), batch_size=16, shuffle=False)
    trainer.fit(loader, epochs=3)
    rows = model.nfe_recorder.rows
    assert len(rows) == 6 and all(r[0] >= 8 for r in rows) and all(r[1] > 0 for r in rows[:-1])
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    ctx = RunContext(recipe, cfg, None, trainer, str(tmp_path), {}, None, None, None)
    (png, caption), = recipe.figures(ctx)
    assert os.path.isfile(png) and "forward" in caption


def test_recipe_flags_are_checked():
    from tensorcalc.recipes import RecipeError

    with pytest.raises(RecipeError, match="--rules"):
        train_recipe("feedback-alignment", {"rules": "bp,sgd"}, out_dir="/nonexistent/x",
                     quiet=True)
    with pytest.raises(RecipeError, match="--window"):
        train_recipe("ode-spiral", {"window": 2000}, out_dir="/nonexistent/x", quiet=True)


def test_ode_spiral_resumes_exactly_after_sigterm(tmp_path, monkeypatch):
    import signal

    from tensorcalc.recipes import get_recipe, ode_spiral
    from tensorcalc.serialization import load_state
    from tensorcalc.train.loop import TrainingInterrupted

    flags = {"epochs": 2, "points": 120, "window": 4, "t_end": 3.0, "lr": 1e-2,
             "batch_size": 29, "rtol": 1e-3, "atol": 1e-5}
    recipe = get_recipe("ode-spiral")
    ref = recipe.run(recipe.config(flags), None, quiet=True, progress=False)  # no files
    calls = []
    forward = ode_spiral.SpiralODE.forward

    def stopping(self, y0):  # a scheduler's SIGTERM in the middle of the first epoch
        if self.training:
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
        return forward(self, y0)

    monkeypatch.setattr(ode_spiral.SpiralODE, "forward", stopping)
    out = str(tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        train_recipe("ode-spiral", flags, out_dir=out, quiet=True, progress=False)
    monkeypatch.setattr(ode_spiral.SpiralODE, "forward", forward)
    assert load_state(os.path.join(out, "checkpoints", "last")).meta["step"] == 3
    res = train_recipe("ode-spiral", {}, out_dir=out, resume=True, quiet=True, progress=False,
                       report=False)
    assert res.test["trajectory_mse"] == ref.test["trajectory_mse"]
    a, b = ref.trainer.model.state_dict(), res.trainer.model.state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
