"""gradcheck of whole models: every parameter and the input, with names in the report."""

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc import nn


def _mlp():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Linear(4, 5, rng=rng), nn.Tanh(), nn.Linear(5, 3, rng=rng))


def test_gradcheck_module_passes_and_names_parameters():
    model = _mlp()
    x = np.random.default_rng(1).standard_normal((6, 4))
    y = np.array([0, 1, 2, 0, 1, 2])
    before = {k: v.copy() for k, v in model.state_dict().items()}
    report = tc.gradcheck_module(model, x, loss_fn=lambda out: F.cross_entropy(out, y))
    assert report.ok
    text = str(report)
    assert "0.weight" in text and "2.bias" in text and "input 0" in text
    for k, v in model.state_dict().items():  # the module is left unchanged (and float32)
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == np.float32
    assert model.training  # mode restored


def test_gradcheck_module_catches_a_wrong_derivative_in_a_layer():
    from tensorcalc.autodiff.function import Elementwise

    class BadTanh(Elementwise):  # deliberately wrong f′, not registered
        name = "bad_tanh"

        @staticmethod
        def forward(xp, x):
            return xp.tanh(x)

        @staticmethod
        def derivative(y, x):
            return 1 - y  # should be 1 − y²

    class Bad(nn.Module):
        def forward(self, x):
            return BadTanh.apply(x)

    model = nn.Sequential(nn.Linear(3, 2, rng=0), Bad())
    with pytest.raises(tc.GradcheckError, match=r"gradcheck failed: (0\.weight|0\.bias|input 0) "):
        tc.gradcheck_module(model, np.ones((2, 3)), loss_fn=lambda o: o.sum())
