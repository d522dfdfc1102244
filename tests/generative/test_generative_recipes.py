"""Smoke runs of the generative recipes (a few steps): reports and figures written, the loss
goes down, `tensorcalc evaluate RUN` prints the scores beside the floor and noise."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tensorcalc.cli import main
from tensorcalc.recipes import RecipeError, train_recipe


def test_vae_recipe_cvae_smoke_and_evaluate(tmp_path, capsys):
    out = str(tmp_path / "vae")
    res = train_recipe("vae", {"epochs": 3, "limit": 512, "iw_samples": 5, "iw_images": 100,
                               "conditional": True, "hidden": (64,), "latent": 4,
                               "eval_every": 3}, out, quiet=True)
    t = res.test
    assert t["neg_elbo"] == pytest.approx(t["recon"] + t["kl"])
    assert t["nll_iwae5"] <= t["neg_elbo"] + 1e-6 and 0 <= t["cond_acc"] <= 1
    h = res.history
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    for f in ("reconstructions.png", "samples.png", "manifold.png", "interpolation.png",
              "iwae_gap.png", "curves.png", "report.html", "metrics.json"):
        assert os.path.isfile(os.path.join(out, f)), f
    assert main(["evaluate", out, "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["recipe"] == "vae" and ev["test"]["neg_elbo"] == pytest.approx(t["neg_elbo"])


def test_gan_recipe_wgan_smoke_gif_and_evaluate(tmp_path, capsys):
    out = str(tmp_path / "gan")
    res = train_recipe("gan", {"loss": "wgan", "arch": "mlp", "steps": 4, "eval_every": 2,
                               "eval_samples": 100}, out, quiet=True)
    t = res.test
    assert res.config["optimizer"] == "rmsprop" and res.config["n_critic"] == 5
    assert t["floor_fid"] < t["noise_fid"] and t["fid"] > 0 and 1 <= t["is"] <= 10
    gif = Image.open(os.path.join(out, "samples.gif"))
    assert gif.n_frames == 2
    for f in ("samples.png", "interpolation.png", "losses.png", "wasserstein.png", "fid.png",
              "classes.png", "report.html"):
        assert os.path.isfile(os.path.join(out, f)), f
    hist = json.load(open(os.path.join(out, "metrics.json")))["class_hist"]
    assert sum(hist) == 100
    assert main(["evaluate", out]) == 0
    text = capsys.readouterr().out
    assert "fid" in text and "floor_fid" in text and "noise_fid" in text
    with pytest.raises(RecipeError):
        train_recipe("gan", {"loss": "hinge"}, str(tmp_path / "bad"), quiet=True)


def test_autoencoder_recipe_against_pca(tmp_path):
    res = train_recipe("autoencoder", {"epochs": 3, "limit": 1000, "code": 8},
                       str(tmp_path / "ae"), quiet=True)
    t = res.test
    assert t["ae_sq_error"] > 0 and t["pca_sq_error"] > 0
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    img = np.asarray(Image.open(os.path.join(str(tmp_path / "ae"), "reconstructions.png")))
    assert img.ndim == 3 and img.shape[0] > 50


def test_gan_recipe_on_fashion_mnist_is_scored_by_the_fashion_classifier(tmp_path, monkeypatch):
    import tensorcalc as tc
    import tensorcalc.recipes.gan as G
    import tensorcalc.train.generative_metrics as GM

    rng = np.random.default_rng(0)
    fake = {s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                np.arange(n, dtype=np.uint8) % 10) for s, n in (("train", 256), ("test", 120))}
    monkeypatch.setattr(tc.data, "load_fashion_mnist", lambda split="train", **k: fake[split])
    monkeypatch.setattr(G, "_SCORERS", {})        # the fake data must not stay cached
    used = []
    real = GM.classifier_outputs
    monkeypatch.setattr(GM, "classifier_outputs",
                        lambda images, dataset="mnist10k", **k: used.append(dataset)
                        or real(images, dataset, **k))
    out = str(tmp_path / "gan-fashion")
    res = train_recipe("gan", {"dataset": "fashion-mnist", "arch": "mlp", "steps": 2,
                               "eval_every": 2, "eval_samples": 100}, out, quiet=True)
    assert set(used) == {"fashion-mnist"}
    assert res.test["floor_fid"] < res.test["noise_fid"] and res.test["fid"] > 0
    assert "Fashion-MNIST" in open(os.path.join(out, "report.html")).read()
