"""CNN recipes (lenet, vgg, resnet, inception, augment-study), their report figures, the
augmentation options and the demo command."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import models
from tensorcalc.cli import main
from tensorcalc.recipes import RecipeError, cnn, get_recipe, train_recipe
from tensorcalc.recipes import _common as C
from tensorcalc.train import report as R
from tensorcalc.train.pipeline import prepare_data

# tiny versions of each network: a few seconds for a few dozen steps on one core
SMOKE = {
    "lenet": {"limit": 320},
    "vgg": {"widths": (8, 16), "depth": 1, "limit": 320},
    "resnet": {"widths": (8, 16), "blocks": 1, "limit": 160},
    "inception": {"width": 8, "limit": 96},
}


@pytest.mark.parametrize("name", list(SMOKE))
def test_smoke_run_loss_goes_down(name, tmp_path):
    over = {"epochs": 3, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.0, **SMOKE[name]}
    res = train_recipe(name, over, str(tmp_path), quiet=True, report=False)
    losses = [r["train_loss"] for r in res.history]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[-1] < losses[0] and min(losses[1:]) < 0.97 * losses[0], losses
    assert 0.0 <= res.test["acc"] <= 1.0 and np.isfinite(res.test["loss"])
    assert res.config["augment"] == "crop"  # the recipes' default augmentation ran


def test_recipes_registered_with_shared_options():
    for name in SMOKE:
        cfg = get_recipe(name).config()
        assert cfg["dataset"] == "mnist10k" and cfg["train_fraction"] == 1.0
        assert get_recipe(name).figures is cnn.conv_recipe_figures
        assert "fashion-mnist" in get_recipe(name).choices["dataset"]
    assert get_recipe("mlp").name == "mlp"  # the MLP stays a recipe


def test_data_is_nchw_and_fashion_mnist_or_a_clear_error(monkeypatch):
    r = get_recipe("lenet")
    d = prepare_data(r, r.config({"limit": 64}))
    assert d.train[0].shape == (64, 1, 28, 28) and d.test[0].shape == (2000, 1, 28, 28)
    assert d.train[0].dtype == np.float32

    def missing(split="train", data_dir=None, verify=False):
        raise FileNotFoundError("Fashion-MNIST not found in ~/.tensorcalc/data; download it "
                                "with tensorcalc.data.download_fashion_mnist()")

    monkeypatch.setattr(tc.data, "load_fashion_mnist", missing)
    with pytest.raises(RecipeError, match="Fashion-MNIST not found"):
        prepare_data(r, r.config({"dataset": "fashion-mnist"}))
    assert main(["train", "lenet", "--dataset", "fashion-mnist", "--quiet"]) == 2


def test_fashion_mnist_when_present(monkeypatch):
    x = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    y = np.arange(50, dtype=np.uint8) % 10
    monkeypatch.setattr(tc.data, "load_fashion_mnist", lambda split="train", **k: (x, y))
    r = get_recipe("vgg")
    d = prepare_data(r, r.config({"dataset": "fashion-mnist", "val_fraction": 0.0}))
    assert d.name == "fashion-mnist" and d.class_names[0] == "T-shirt/top"
    assert d.train[0].shape == (50, 1, 28, 28)
    # normalised with the Fashion-MNIST constants: background 0 -> −μ/σ
    assert np.isclose(d.prepare(np.zeros((1, 28, 28), np.uint8)).min(), -0.2860 / 0.3530,
                      atol=1e-5)


# ------------------------------------------------------------------------------ augmentation
def test_parse_augment_and_sets():
    assert C.parse_augment("crop,affine") == ("crop", "affine")
    assert C.parse_augment(" Crop + cutout ") == ("crop", "cutout")
    assert C.parse_augment("") == () and C.parse_augment("none") == ()
    with pytest.raises(RecipeError, match="--augment.*'rotate'.*crop, flip, affine"):
        C.parse_augment("crop,rotate")
    with pytest.raises(RecipeError, match="twice"):
        C.parse_augment("crop,crop")
    assert C.parse_sets("none,crop,crop+affine") == [(), ("crop",), ("crop", "affine")]
    with pytest.raises(RecipeError, match="listed twice"):
        C.parse_sets("crop,none,crop")
    with pytest.raises(RecipeError):
        C.parse_sets(" , ")


def test_bad_options_on_the_command_line_exit_2(capsys):
    assert main(["train", "lenet", "--augment", "crop,spin", "--quiet"]) == 2
    assert "--augment: unknown augmentation 'spin'" in capsys.readouterr().err
    assert main(["train", "lenet", "--train-fraction", "0", "--quiet"]) == 2
    assert "--train-fraction must be in (0, 1]" in capsys.readouterr().err
    assert main(["train", "vgg", "--widths", "8,0", "--epochs", "1", "--limit", "8",
                 "--quiet", "--no-report", "--out", "/tmp/tc_cnn_bad"]) == 2
    assert "--widths" in capsys.readouterr().err


def _lenet_data():
    r = get_recipe("lenet")
    return prepare_data(r, r.config({"limit": 32}))


def test_augment_keeps_shape_dtype_and_background_and_is_seeded():
    d = _lenet_data()
    x = d.train[0][:16]
    fn = C.make_augment("crop,flip,affine,cutout,noise", d)
    a = fn(x.copy(), np.random.default_rng(3))
    b = fn(x.copy(), np.random.default_rng(3))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fn(x.copy(), np.random.default_rng(4)))
    assert C.make_augment("", d) is None and C.make_augment("none", d) is None
    # fills are the background value: a blank image stays blank under crop / affine / cutout
    bg, span = C._pixel_scale(d)
    blank = np.full((8, 1, 28, 28), bg, np.float32)
    out = C.make_augment("crop,affine,cutout", d)(blank, np.random.default_rng(0))
    np.testing.assert_allclose(out, bg, atol=1e-5)
    # noise: σ = 0.1 of the pixel range, in model units
    noisy = C.make_augment("noise", d)(blank, np.random.default_rng(0))
    assert abs((noisy - blank).std() / span - 0.1) < 0.01


def test_augment_changes_images_and_train_fraction_is_stratified():
    d = _lenet_data()
    x = d.train[0][:8]
    crop = C.make_augment("crop", d)(x.copy(), np.random.default_rng(0))
    assert (np.abs(crop - x).reshape(8, -1).max(axis=1) > 0).sum() >= 6  # most images moved
    y = np.repeat(np.arange(10), 100)
    xs = np.arange(1000)
    sx, sy = C.subsample((xs, y), 0.1, seed=1)
    assert len(sy) == 100 and np.all(np.bincount(sy, minlength=10) == 10)
    np.testing.assert_array_equal(sy, y[sx])
    np.testing.assert_array_equal(sx, C.subsample((xs, y), 0.1, seed=1)[0])
    assert not np.array_equal(sx, C.subsample((xs, y), 0.1, seed=2)[0])
    r = get_recipe("lenet")
    full = prepare_data(r, r.config({"val_fraction": 0.0}))
    part = prepare_data(r, r.config({"val_fraction": 0.0, "train_fraction": 0.05}))
    assert len(part.train[1]) == round(0.05 * len(full.train[1]))
    assert len(part.test[1]) == len(full.test[1])  # the test split is never reduced


# ------------------------------------------------------------------------------ figures
def test_capture_conv_outputs_are_the_layers_outputs_and_forward_is_restored():
    m = models.LeNet5(rng=0)
    x = tc.randn(1, 1, 28, 28, rng=1).numpy()
    maps = R.capture_conv_outputs(m, x, count=2)
    assert [n for n, _ in maps] == ["features.0", "features.3"]
    assert maps[0][1].shape == (6, 28, 28) and maps[1][1].shape == (16, 10, 10)
    with tc.no_grad():
        y0 = m.features[0](tc.Tensor(x)).numpy()[0]
    np.testing.assert_allclose(maps[0][1], y0, rtol=1e-6)
    assert all("forward" not in c.__dict__ for c in m.modules())
    name, w = R.first_conv_weights(models.resnet_small(rng=0))
    assert name == "stem.0" and w.shape == (16, 1, 3, 3)
    name, w = R.first_conv_weights(models.InceptionNet(rng=0, width=8))
    assert name == "stem.0" and w.shape[1] == 1
    res = R.capture_conv_outputs(models.InceptionNet(rng=0, width=8), x, count=2)
    assert res[0][0] == "stem.0" and len(res) == 2


def _embedded(html, png):
    with open(png, "rb") as f:
        return base64.b64encode(f.read()).decode() in html


@pytest.mark.slow
def test_report_has_filters_feature_maps_and_augmentation(tmp_path):
    res = train_recipe("lenet", {"epochs": 1, "limit": 256, "augment": "crop,cutout"},
                       str(tmp_path), quiet=True)
    html = (tmp_path / "report.html").read_text()
    for png in ("filters.png", "feature_maps.png", "augmentation.png"):
        p = tmp_path / png
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert _embedded(html, str(p)), png
    assert "learned 5×5 filters of the first convolution" in html
    assert "Feature maps of test image 0" in html and "--augment crop+cutout" in html
    assert res.report == str(tmp_path / "report.html")


def test_plot_helpers_check_shapes(tmp_path):
    from tensorcalc.train import report as R

    with pytest.raises(ValueError, match=r"plot_filters: expected weights \(C_out, C_in"):
        R.plot_filters(np.zeros((3, 5, 5)), str(tmp_path / "f.png"))
    with pytest.raises(ValueError, match="plot_feature_maps"):
        R.plot_feature_maps(np.zeros((28, 28)), [("c", np.zeros((28, 28)))],
                            str(tmp_path / "m.png"))
    rgb = R.plot_filters(np.random.default_rng(0).standard_normal((4, 3, 3, 3)),
                         str(tmp_path / "rgb.png"))
    assert (tmp_path / "rgb.png").stat().st_size > 1000 and rgb.endswith("rgb.png")


# ------------------------------------------------------------------------------ augment study
@pytest.mark.slow
def test_augment_study_table(tmp_path, capsys):
    code = main(["train", "augment-study", "--sets", "none,crop,crop+cutout", "--repeats", "2",
                 "--train-fraction", "0.02", "--epochs", "2", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "augmentation study: lenet on 160 training images" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    rows = {r["setting"]: r for r in m["rows"]}
    assert list(rows) == ["none", "crop", "crop+cutout"] and m["n_train"] == 160
    assert rows["none"]["gain"] == 0.0
    for r in rows.values():
        assert len(r["accs"]) == 2 and 0 <= r["acc"] <= 1
        assert np.isclose(r["gain"], r["acc"] - rows["none"]["acc"])
        assert np.isclose(r["acc"], np.mean(r["accs"]))
    assert len(m["runs"]) == 6
    html = (tmp_path / "report.html").read_text()
    assert "Test accuracy per augmentation setting" in html and "vs none (points)" in html
    assert "crop+cutout" in html and _embedded(html, str(tmp_path / "study.png"))
    assert _embedded(html, str(tmp_path / "augmentation.png"))


def test_augment_study_bad_options(capsys, tmp_path):
    assert main(["train", "augment-study", "--sets", "none,warp", "--quiet",
                 "--out", str(tmp_path / "study")]) == 2
    assert not (tmp_path / "study").exists()  # settings are checked before the disk is touched
    assert "unknown augmentation 'warp'" in capsys.readouterr().err
    assert main(["train", "augment-study", "--model", "alexnet", "--quiet"]) == 2


# ------------------------------------------------------------------------------ demo
def test_demo_help_names_lenet(capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "LeNet-5" in text and "98 %" in text
    from tensorcalc import cli

    assert cli.DEMO_RECIPE == "lenet" and cli.DEMO_TARGET == 0.98


@pytest.mark.slow
def test_demo_tiny_run(tmp_path, capsys):
    code = main(["demo", "--epochs", "1", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "LeNet-5" in out and "test accuracy" in out and "target: >= 98 %" in out
    assert ("— met" in out) == (code == 0)
    assert (tmp_path / "report.html").exists() and (tmp_path / "filters.png").exists()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["recipe"] == "lenet" and cfg["epochs"] == 1
