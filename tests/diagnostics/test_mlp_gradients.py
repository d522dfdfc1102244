"""mlp-gradients study: vanishing gradients in a deep MLP made visible (tiny settings)."""

import json
import os

import numpy as np
import pytest

from tensorcalc.recipes import RecipeError, train_recipe
from tensorcalc.recipes.deep_mlp_gradients import DeepMLP, layer_grad_norms
from tensorcalc.tensor import Tensor


def _batch(n=64, seed=0):
    r = np.random.default_rng(seed)
    return Tensor(r.normal(size=(n, 784)).astype(np.float32)), r.integers(0, 10, n)


def test_sigmoid_naive_vanishes_relu_he_does_not():
    x, y = _batch()
    ratios = {}
    for key, act, how, bn, res in (("sig", "sigmoid", "naive", False, False),
                                   ("he", "relu", "he", False, False),
                                   ("bn", "relu", "naive", True, False),
                                   ("res", "relu", "naive", False, True)):
        m = DeepMLP(8, 32, act, how, bn, res, 0.05, np.random.default_rng(1))
        d, w = layer_grad_norms(m, x, y)
        assert len(d) == len(w) == 9 and all(np.isfinite(d))
        ratios[key] = d[0] / d[-1]
    # sigmoid (σ′ ≤ ¼) with small weights: the error signal shrinks geometrically to the input
    assert ratios["sig"] < 1e-6
    # He init keeps it at the same order of magnitude; batch norm and the identity path repair
    # the naive init
    for k in ("he", "bn", "res"):
        assert 0.05 < ratios[k] < 20, (k, ratios[k])


def test_layer_grad_norms_match_backward():
    x, y = _batch(16)
    m = DeepMLP(3, 16, "tanh", "xavier", False, False, 0.05, np.random.default_rng(2))
    _, w = layer_grad_norms(m, x, y)
    import tensorcalc.functional as F

    m.zero_grad()
    F.cross_entropy(m(x), y).backward()
    ref = [float(np.linalg.norm(np.asarray(lin.weight.grad))) for lin in m.layers]
    np.testing.assert_allclose(w, ref, rtol=1e-4)


def test_recipe_smoke(tmp_path):
    out = str(tmp_path / "run")
    r = train_recipe("mlp-gradients", {"depth": 4, "width": 16, "steps": 30,
                                       "variants": "sigmoid-naive,relu-he", "lr": 0.05,
                                       "measure_batch": 32},
                     out_dir=out, quiet=True)
    assert set(r.test) == {"sigmoid-naive", "relu-he"}
    assert r.test["sigmoid-naive"]["ratio_init"] < r.test["relu-he"]["ratio_init"] / 100
    # ReLU + He learns in 30 steps: loss below ln 10 and better than chance on held-out digits
    assert r.test["relu-he"]["final_loss"] < np.log(10)
    assert r.test["relu-he"]["test_accuracy"] > 0.2
    assert os.path.exists(os.path.join(out, "layer_gradients.png"))
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        m = json.load(f)
    assert len(m["curves"]["relu-he"]["init"]) == 5


def test_unknown_variant_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match="relu-he"):
        train_recipe("mlp-gradients", {"steps": 1, "variants": "relu-he,nope"},
                     out_dir=str(tmp_path / "r"), quiet=True)
