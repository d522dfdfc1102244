"""Recipes: the registry's contract, a few-step smoke run of each, the data checks, the
three linear-regression solutions agreeing."""

import numpy as np
import pytest

from tensorcalc import recipes
from tensorcalc.recipes import Data, Recipe, RecipeError, get_recipe, list_recipes, register
from tensorcalc.train.pipeline import prepare_data, train_recipe, validate_config

MINE = ["linear-regression", "logistic-regression", "softmax-regression", "mlp"]


def test_registry_lists_the_statistical_learning_recipes():
    names = [r.name for r in list_recipes()]
    assert set(MINE) <= set(names)
    assert names == sorted(names)
    for r in list_recipes():
        assert r.description and "\n" not in r.description
        cfg = r.config()
        validate_config(r, cfg)  # every recipe's defaults are valid
        assert cfg["recipe"] == r.name


def test_unknown_recipe_lists_the_recipes():
    with pytest.raises(RecipeError) as e:
        get_recipe("mpl")
    msg = str(e.value)
    assert "mlp" in msg and "softmax-regression" in msg and "Did you mean 'mlp'" in msg
    assert get_recipe("softmax_regression").name == "softmax-regression"


def test_unknown_hyperparameter_and_bad_values_name_the_flag():
    r = get_recipe("mlp")
    with pytest.raises(RecipeError, match="no hyperparameter 'width'"):
        r.config({"width": 3})
    for key, bad, flag in [("lr", 0.0, "--lr"), ("lr", -1.0, "--lr"),
                           ("batch_size", 0, "--batch-size"), ("epochs", 0, "--epochs"),
                           ("optimizer", "lbfgs", "--optimizer"),
                           ("dataset", "cifar", "--dataset")]:
        with pytest.raises(RecipeError, match=flag):
            validate_config(r, r.config({key: bad}))


def _toy(name, x, y, task="multiclass", k=3):
    def data(cfg):
        return Data(name="toy", task=task, train=(x, y), test=(x[:4], y[:4]), num_classes=k)

    return Recipe(name=name, description="toy", data=data, model=lambda c, d, r: None)


def test_nan_in_data_names_data_set_and_row():
    x = np.zeros((10, 2), np.float32)
    x[7, 1] = np.nan
    r = _toy("toy-nan", x, np.zeros(10, np.int64))
    with pytest.raises(RecipeError, match=r"toy train inputs: row 7 contains NaN/Inf"):
        prepare_data(r, r.config())


def test_labels_out_of_range_raise():
    r = _toy("toy-labels", np.zeros((10, 2), np.float32), np.array([0, 1, 2, 3] + [0] * 6))
    with pytest.raises(RecipeError, match="toy train labels"):
        prepare_data(r, r.config())


def test_register_rejects_duplicates_and_incomplete_recipes():
    with pytest.raises(ValueError, match="already exists"):
        register(Recipe(name="mlp", description="x", data=lambda c: None,
                        model=lambda c, d, r: None))
    with pytest.raises(ValueError, match="model builder or a run"):
        register(Recipe(name="nothing", description="x", data=lambda c: None))
    assert "nothing" not in [r.name for r in recipes.list_recipes()]


def test_validation_split_is_stratified_and_limit_applies():
    r = get_recipe("softmax-regression")
    d = prepare_data(r, r.config({"val_fraction": 0.1}))
    assert len(d.train[1]) == 7200 and len(d.val[1]) == 800 and len(d.test[1]) == 2000
    counts = np.bincount(d.val[1], minlength=10)
    assert counts.min() >= 65 and counts.max() <= 95
    d2 = prepare_data(r, r.config({"limit": 300}))
    assert len(d2.train[1]) == 300 and d2.train[0].dtype == np.float32
    assert d2.train[0].shape == (300, 784)


@pytest.mark.parametrize("name", ["softmax-regression", "mlp", "logistic-regression"])
def test_smoke_run_loss_goes_down(name, tmp_path):
    res = train_recipe(name, {"epochs": 3, "limit": 600, "batch_size": 32}, str(tmp_path),
                       quiet=True, report=False)
    losses = [r["train_loss"] for r in res.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert 0.0 <= res.test["acc"] <= 1.0 and np.isfinite(res.test["loss"])
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "history.csv").exists()


def test_linear_regression_three_solutions_agree(tmp_path):
    from tensorcalc.recipes.linear_regression import TOLERANCE, closed_form

    res = train_recipe("linear-regression", {"features": 3, "seed": 5}, str(tmp_path),
                       quiet=True)
    runs = res.extra["runs"]
    assert res.extra["agree"]
    assert runs["batch GD"]["rel_error"] <= TOLERANCE["batch GD"]
    assert runs["SGD"]["rel_error"] <= TOLERANCE["SGD"]
    # the closed form really is the least-squares solution: matches numpy's lstsq
    from tensorcalc.train.pipeline import seed_streams

    r = get_recipe("linear-regression")
    d = prepare_data(r, r.config({"features": 3, "seed": 5, "val_fraction": 0.0}),
                     seed_streams(5)["split"])
    x, y = d.train
    w, b = closed_form(x, y)
    a = np.concatenate([x.astype(np.float64), np.ones((len(x), 1))], 1)
    ref = np.linalg.lstsq(a, y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(np.append(w, b), ref, rtol=1e-8, atol=1e-10)
    hist = runs["SGD"]["history"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert (tmp_path / "fits.png").exists() and (tmp_path / "report.html").exists()
    from tensorcalc.train.pipeline import evaluate_run

    # the SGD model is saved, so `tensorcalc evaluate` re-scores it
    assert evaluate_run(str(tmp_path))["test"]["mse"] == pytest.approx(res.test["mse"],
                                                                       rel=1e-5)


def test_report_title_names_the_data_set_actually_used(tmp_path, monkeypatch):
    # issue 8: a Fashion-MNIST run was titled "... on MNIST-10k: ≈ 99 % ... (make demo)"
    from tensorcalc import data as D

    rng = np.random.default_rng(0)
    fake = {s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10)
            for s, n in (("train", 80), ("test", 40))}
    monkeypatch.setattr(D, "load_fashion_mnist", lambda split: fake[split])
    res = train_recipe("lenet", {"dataset": "fashion-mnist", "epochs": 1, "batch_size": 40,
                                 "augment": ""}, str(tmp_path / "f"), quiet=True,
                       progress=False)
    page = (tmp_path / "f" / "report.html").read_text()
    title = page[page.index("<title>") + 7:page.index("</title>")]
    assert "Fashion-MNIST" in title and "MNIST-10k" not in title
    assert "99 %" not in page and "make demo" not in page
    assert res.test["acc"] >= 0


def test_bad_setting_never_touches_an_existing_run(tmp_path):
    # settings, data and model are checked before the run directory is prepared
    out = tmp_path / "run"
    train_recipe("logistic-regression", {"epochs": 1, "n": 64}, str(out), quiet=True,
                 progress=False)
    before = sorted(p.name for p in out.iterdir())
    for bad in ({"lr": -1.0}, {"degree": 0}, {"n": 2}):
        with pytest.raises(RecipeError):
            train_recipe("logistic-regression", bad, str(out), quiet=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
    from tensorcalc.train.rundir import RunDirError

    with pytest.raises(RunDirError, match="--resume .* --overwrite"):  # a run is there
        train_recipe("logistic-regression", {"epochs": 1, "n": 64}, str(out), quiet=True)
    (out / "notes.txt").write_text("mine")
    train_recipe("logistic-regression", {"epochs": 1, "n": 64}, str(out), quiet=True,
                 overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"  # a user's file survives --overwrite


def test_resume_with_more_epochs_trains_longer_on_a_cosine_schedule(tmp_path):
    # the report suggests `--resume --epochs N`: it must work with the default cosine schedule
    out = str(tmp_path / "r")
    cfg = {"epochs": 2, "n": 64, "schedule": "cosine", "batch_size": 16}
    first = train_recipe("logistic-regression", cfg, out, quiet=True, progress=False)
    assert len(first.history) == 2
    assert "--resume --epochs N" in open(first.report).read()
    more = train_recipe("logistic-regression", {"epochs": 4}, out, resume=True, quiet=True,
                        progress=False)
    assert [h["epoch"] for h in more.history] == [1, 2, 3, 4]
    assert more.config["epochs"] == 4
    assert more.history[-1]["lr"] < more.history[1]["lr"]  # the schedule continued down
