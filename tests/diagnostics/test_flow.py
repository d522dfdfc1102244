"""GradientFlow: per-layer gradient/weight norms, update ratios and activation statistics sampled
every N steps (checked against values computed by hand), warnings for vanishing and exploding
gradients, resume state, TensorBoard tags and the report figure."""

import json
import os

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.diagnostics.flow import GradientFlow
from tensorcalc.train.trainer import Trainer


def _fit(model, flow, steps=6, lr=0.1, out_dir=None, epochs=1):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8 * steps, 8)).astype(np.float32)
    y = rng.integers(0, 3, 8 * steps)
    loader = tc.data.DataLoader(tc.data.TensorDataset(x, y), batch_size=8)
    opt = tc.optim.SGD(model.parameters(), lr=lr)
    tr = Trainer(model, F.cross_entropy, opt, callbacks=[flow], quiet=True, out_dir=out_dir)
    tr.fit(loader, epochs=epochs)
    return tr, x


def _mlp(act=tc.nn.ReLU):
    return tc.nn.Sequential(tc.nn.Linear(8, 16, rng=0), act(), tc.nn.Linear(16, 3, rng=1))


def test_gradient_flow_samples_every_n_steps_per_layer():
    m = _mlp()
    flow = GradientFlow(every=2)
    _fit(m, flow)
    assert [r["step"] for r in flow.records] == [1, 3, 5]
    r = flow.records[0]
    assert set(r["grad"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert all(v > 0 for v in r["grad"].values())
    assert 0 < r["ratio"]["0.weight"] < 1 and r["weight"]["0.weight"] > 0
    assert flow.layers() == ["0.weight", "2.weight"]


def test_figures_match_a_hand_computation():
    """Step 1's gradient norms, update ratios and ReLU statistics, recomputed by hand."""
    m = _mlp()
    w0 = {k: p.data.copy() for k, p in m.named_parameters()}
    flow = GradientFlow(every=100)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    # the gradient of step 1 by the engine, on a copy of the model
    ref = _mlp()
    loss = F.cross_entropy(ref(tc.tensor(x)), y)
    loss.backward()
    h = np.maximum(x @ w0["0.weight"].T + w0["0.bias"], 0)
    loader = tc.data.DataLoader(tc.data.TensorDataset(x, y), batch_size=8)
    Trainer(m, F.cross_entropy, tc.optim.SGD(m.parameters(), lr=0.1), callbacks=[flow],
            quiet=True).fit(loader, epochs=1)
    (r,) = flow.records
    for k, p in ref.named_parameters():
        g = np.linalg.norm(p.grad)
        assert r["grad"][k] == pytest.approx(g, rel=1e-5)
        # plain SGD: Δθ = −lr g, so ‖Δθ‖/‖θ‖ = lr ‖g‖ / ‖θ₀‖
        assert r["ratio"][k] == pytest.approx(0.1 * g / np.linalg.norm(w0[k]), rel=1e-4)
    a = r["act"]["1"]
    assert a["mean"] == pytest.approx(h.mean(), rel=1e-5)
    assert a["std"] == pytest.approx(h.std(), rel=1e-5)
    assert a["dead"] == pytest.approx(1 - (h > 0).any(axis=0).mean())


def test_dead_relu_and_saturation_are_counted():
    m = _mlp()
    m[0].bias.data[:5] = -100.0  # five units below zero for every input: dead
    flow = GradientFlow(every=1)
    _fit(m, flow, steps=2, lr=1e-4)
    assert flow.records[0]["act"]["1"]["dead"] == pytest.approx(5 / 16)
    m = _mlp(tc.nn.Sigmoid)
    m[0].weight.data *= 100.0   # huge pre-activations: σ pinned at 0 or 1
    flow = GradientFlow(every=1)
    _fit(m, flow, steps=2, lr=1e-4)
    assert flow.records[0]["act"]["1"]["saturated"] > 0.9
    m = _mlp(tc.nn.Tanh)
    flow = GradientFlow(every=1)
    _fit(m, flow, steps=2, lr=1e-4)
    assert flow.records[0]["act"]["1"]["saturated"] < 0.2


def test_activation_hooks_exist_only_during_sampled_steps():
    m = _mlp()
    flow = GradientFlow(every=3)
    _fit(m, flow, steps=7)
    assert [r["step"] for r in flow.records] == [1, 4, 7]
    assert all("1" in r["act"] for r in flow.records)
    assert not m[1].__dict__.get("_forward_hooks")  # all removed at the end


def test_gradient_flow_warns_when_gradients_vanish(capsys):
    layers = []
    for i in range(12):
        layers += [tc.nn.Linear(8, 8, rng=i), tc.nn.Sigmoid()]
    m = tc.nn.Sequential(*layers, tc.nn.Linear(8, 3, rng=99))
    for p in m.parameters():
        p.data *= 0.1
    flow = GradientFlow(every=1)
    _fit(m, flow)
    out = capsys.readouterr().out
    assert out.count("vanishing gradients") == 1 and flow.warnings  # once per kind
    assert "< 1e-07" in flow.warnings[0]
    # relative: 4 sigmoid layers shrink the first layer's gradient > 100× below the last's
    layers = []
    for i in range(4):
        layers += [tc.nn.Linear(8, 8, rng=i), tc.nn.Sigmoid()]
    flow = GradientFlow(every=1, spread=1e-2, verbose=False)
    _fit(tc.nn.Sequential(*layers, tc.nn.Linear(8, 3, rng=99)), flow)
    assert len(flow.warnings) == 1 and "times smaller than 8.weight" in flow.warnings[0]
    assert flow.warnings[0].split("‖g‖ of ")[1].startswith("0.weight")


def test_gradient_flow_warns_when_gradients_explode(capsys):
    m = _mlp()
    m[2].weight.data *= 1e5
    flow = GradientFlow(every=1, verbose=False)
    _fit(m, flow, steps=1, lr=1e-12)
    assert any("exploding" in w for w in flow.warnings)
    assert capsys.readouterr().out == ""
    healthy = GradientFlow(every=1)
    _fit(_mlp(), healthy, steps=3)
    assert healthy.warnings == []


def test_resume_keeps_records_and_tensorboard_tags(tmp_path):
    flow = GradientFlow(every=2)
    tr, _ = _fit(_mlp(), flow, out_dir=str(tmp_path), epochs=1)
    state = json.loads(json.dumps(flow.state_dict()))
    again = GradientFlow(every=2)
    again.load_state_dict(state)
    assert again.records == flow.records and again.every == 2
    files = [f for f in os.listdir(tmp_path / "tb") if f.endswith(".diagnostics")]
    assert files
    from tensorboardX.proto import event_pb2  # noqa: F401  (the writer's own format)
    raw = (tmp_path / "tb" / files[0]).read_bytes()
    assert b"diagnostics/grad_norm/0.weight" in raw and b"diagnostics/act_dead/1" in raw


def test_recipe_runs_record_diagnostics_by_default_and_the_report_shows_them(tmp_path):
    from tensorcalc.diagnostics.flow import find, report_section
    from tensorcalc.train import pipeline as P
    from tensorcalc.train.report import HTMLReport
    recipe = P.get_recipe("linear-regression")
    cfg = recipe.config({"limit": 64})
    data = P.prepare_data(recipe, cfg)
    tr, _ = P.build_trainer(recipe, cfg, data, data.train, str(tmp_path))
    assert find(tr) is not None and find(tr).every == P.COMMON_DEFAULTS["diagnostics"] == 50
    off, _ = P.build_trainer(recipe, recipe.config({"diagnostics": 0}), data, data.train,
                             str(tmp_path))
    assert find(off) is None
    with pytest.raises(P.RecipeError, match="--diagnostics"):
        P.validate_config(recipe, recipe.config({"diagnostics": -1}))
    flow = GradientFlow(every=1)
    tr, _ = _fit(_mlp(), flow, steps=3)

    class Ctx:
        trainer = tr

        def path(self, name):
            return str(tmp_path / name)

    rep = HTMLReport("t")
    report_section(rep, Ctx())
    page = rep.render()
    assert "Training diagnostics" in page and (tmp_path / "diagnostics.png").exists()
    assert "Recording them took" in page and "Warnings: none" in page
    assert os.path.getsize(tmp_path / "diagnostics.png") > 20_000
