"""Model selection: settings, folds, the choice of the best, files."""

import numpy as np
import pytest

from tensorcalc.train import tune as T


def test_grid_and_random_settings():
    grid = {"lr": [0.1, 0.01], "hidden": [(64,), (128,), (256, 128)]}
    g = T.grid_settings(grid)
    assert len(g) == 6 and g[0] == {"lr": 0.1, "hidden": (64,)} and g[-1]["hidden"] == (256, 128)
    r = T.random_settings(grid, 4, rng=0)
    assert len(r) == 4 and all(s in g for s in r)
    assert len({T.format_setting(s) for s in r}) == 4  # without replacement
    assert r == T.random_settings(grid, 4, rng=0)
    assert T.random_settings(grid, 10, rng=0) == g


def test_parse_values_typed_like_the_default():
    assert T.parse_values("0.01,0.1", 1e-3) == [0.01, 0.1]
    assert T.parse_values("32, 64", 128) == [32, 64]
    assert T.parse_values("64,256x128", (256, 128)) == [(64,), (256, 128)]
    assert T.parse_values("adam,sgd", "adam") == ["adam", "sgd"]
    with pytest.raises(ValueError):
        T.parse_values("ten", 3)


def test_tune_cross_validates_every_setting_on_a_partition(tmp_path):
    seen = []

    def evaluate(setting, train_idx, val_idx):
        assert len(np.intersect1d(train_idx, val_idx)) == 0
        assert len(train_idx) + len(val_idx) == 30
        seen.append((T.format_setting(setting), tuple(val_idx)))
        return {"loss": (setting["a"] - 2) ** 2 + setting["b"] + 0.01 * len(val_idx)}

    res = T.tune({"a": [1, 2, 3], "b": [0.0, 0.5]}, evaluate, lambda s: ("final", s), n=30,
                 folds=3, score_key="loss", higher_is_better=False, out_dir=str(tmp_path),
                 quiet=True)
    assert res.best == {"a": 2, "b": 0.0} and res.final == ("final", {"a": 2, "b": 0.0})
    assert len(res.rows) == 6 and all(len(r["scores"]) == 3 for r in res.rows)
    # for each setting the validation folds partition the 30 examples
    for name in {s for s, _ in seen}:
        idx = np.concatenate([v for s, v in seen if s == name])
        assert np.array_equal(np.sort(idx), np.arange(30))
    assert (tmp_path / "tune.csv").exists() and (tmp_path / "tune.png").exists()
    assert "*" in res.table().splitlines()[1 + res.best_index]


def test_tune_bad_arguments():
    ev = lambda s, tr, va: {"acc": 1.0}
    with pytest.raises(ValueError, match="--folds"):
        T.tune({"a": [1]}, ev, n=10, folds=1)
    with pytest.raises(ValueError, match="--trials"):
        T.tune({"a": [1]}, ev, n=10, folds=2, search="random")
    with pytest.raises(ValueError, match="--search"):
        T.tune({"a": [1]}, ev, n=10, folds=2, search="bayes")
    with pytest.raises(ValueError, match="--param"):
        T.tune({}, ev, n=10, folds=2)


def test_settings_are_written_the_way_train_takes_them():
    # a tuned setting is printed as the flags of `tensorcalc train`: widths 256,128 (not 256x128)
    s = {"hidden": (256, 128), "lr": 0.01, "batch_size": 32}
    assert T.format_setting(s) == "--hidden 256,128 --lr 0.01 --batch-size 32"
    assert T.format_value((64,)) == "64"
    # ... and what it prints parses back as train parses it
    assert T.convert(T.format_value((256, 128)), (1,)) == (256, 128)
    # values may be separated by ';' so that a tuple is written as for train
    assert T.parse_values("256,128;512,256", (1,)) == [(256, 128), (512, 256)]
    assert T.parse_values("64,256", (1,)) == [(64,), (256,)]
