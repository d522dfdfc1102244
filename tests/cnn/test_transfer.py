"""The transfer-learning recipe: the task split, the frozen extractor, and a smoke run whose
table has the three methods."""

import os

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import functional as F
from tensorcalc.recipes import RecipeError, get_recipe, list_recipes
from tensorcalc.recipes import transfer as T
from tensorcalc.train.pipeline import train_recipe


def test_split_tasks_are_disjoint_and_sized():
    cfg = get_recipe("transfer").config()
    sp = T.transfer_split(cfg)
    xs, ys = sp["source_train"]
    xt, yt = sp["target_train"]
    assert xs.shape[1:] == (1, 28, 28) and xs.dtype == np.float32
    assert set(np.unique(ys)) == {0, 1, 2, 3, 4} and set(np.unique(yt)) == {0, 1, 2, 3, 4}
    from tensorcalc import data as D

    n_target = int((D.mnist10k_split(test_size=2000, seed=0).train[1] >= 5).sum())
    assert len(yt) == round(0.1 * n_target)                  # 10 % of the 5–9 training images
    assert abs(np.bincount(yt).max() - np.bincount(yt).min()) <= 0.3 * np.bincount(yt).mean()
    keys = {name: {a.tobytes() for a in sp[name][0]} for name in
            ("source_train", "target_train", "target_val", "target_test")}
    assert not (keys["target_train"] & keys["target_val"])
    assert not (keys["target_train"] & keys["target_test"])
    assert not (keys["source_train"] & keys["target_train"])
    assert len(sp["target_test"][1]) + len(sp["source_test"][1]) == 2000
    # deterministic by seed
    again = T.transfer_split(cfg)
    assert np.array_equal(again["target_train"][0], xt)
    other = T.transfer_split(dict(cfg, seed=1))
    assert not np.array_equal(other["target_train"][0], xt)


def test_frozen_features_get_no_gradient():
    m = T.DigitCNN(5, 16, rng=0)
    m.features.requires_grad_(False)
    trainable = m.num_parameters(trainable_only=True)
    assert trainable == sum(p.size for p in m.head.parameters())
    assert trainable < m.num_parameters()
    x = tc.tensor(np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32))
    F.cross_entropy(m(x), np.array([0, 1, 2])).backward()
    assert all(p.grad is None for p in m.features.parameters())
    assert all(p.grad is not None for p in m.head.parameters())


def test_bad_settings_raise():
    r = get_recipe("transfer")
    with pytest.raises(RecipeError, match="--fraction"):
        T.transfer_split(r.config({"fraction": 0.0}))
    with pytest.raises(RecipeError, match="--finetune-factor"):
        T.run_transfer(r.config({"finetune_factor": 2.0}), None, quiet=True)


def test_recipe_listed():
    assert "transfer" in [r.name for r in list_recipes()]


@pytest.mark.slow
def test_smoke_run_three_rows_and_report(tmp_path):
    res = train_recipe("transfer", {"limit": 160, "epochs": 3, "pre_epochs": 2,
                                    "val_size": 64, "hidden": 16},
                       str(tmp_path), quiet=True, progress=False)
    rows = res.extra["table"]
    assert [r[0] for r in rows] == ["scratch", "frozen", "fine-tune"]
    trainable = {r[0]: r[3] for r in rows}
    total = {r[0]: r[4] for r in rows}
    assert trainable["frozen"] < trainable["scratch"] == trainable["fine-tune"] == total["frozen"]
    for r in rows:
        assert 0 <= r[1] <= 1 and r[6] > 0
    for m in ("scratch", "frozen", "fine-tune"):
        h = res.extra["runs"][m]
        assert np.isfinite(h["test"]["loss"])
    ft = res.history
    assert len(ft) == 3 and ft[-1]["train_loss"] < ft[0]["train_loss"]
    assert "val_acc" in ft[-1]
    page = (tmp_path / "report.html").read_text()
    assert page.count("<tr>") >= 4 and "fine-tune" in page and "frozen" in page
    assert "data:image/png;base64," in page
    assert os.path.isdir(tmp_path / "checkpoints" / "last")
