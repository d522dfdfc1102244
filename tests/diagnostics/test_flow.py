import numpy as np

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.diagnostics.flow import GradientFlow
from tensorcalc.train.trainer import Trainer


def _fit(model, flow, steps=6):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 8)).astype(np.float32)
    y = rng.integers(0, 3, 48)
    loader = tc.data.DataLoader(tc.data.TensorDataset(x, y), batch_size=8)
    opt = tc.optim.SGD(model.parameters(), lr=0.1)
    Trainer(model, F.cross_entropy, opt, callbacks=[flow], quiet=True).fit(loader, epochs=1)


def test_gradient_flow_samples_every_n_steps_per_layer():
    m = tc.nn.Sequential(tc.nn.Linear(8, 16, rng=0), tc.nn.ReLU(), tc.nn.Linear(16, 3, rng=1))
    flow = GradientFlow(every=2)
    _fit(m, flow)
    assert [r["step"] for r in flow.records] == [1, 3, 5]
    r = flow.records[0]
    assert set(r["grad"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    w = m[0].weight
    assert all(v > 0 for v in r["grad"].values())
    assert 0 < r["ratio"]["0.weight"] < 1 and r["weight"]["0.weight"] > 0
    assert w.shape == (16, 8)


def test_gradient_flow_warns_when_gradients_vanish(capsys):
    layers = []
    for i in range(12):
        layers += [tc.nn.Linear(8, 8, rng=i), tc.nn.Sigmoid()]
    m = tc.nn.Sequential(*layers, tc.nn.Linear(8, 3, rng=99))
    for p in m.parameters():
        p.data *= 0.1
    _fit(m, GradientFlow(every=1, vanish=1e-6))
    assert "vanishing gradients" in capsys.readouterr().out
