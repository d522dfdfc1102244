"""autoencoder — a nonlinear autoencoder (MLP or convolutional) on MNIST-10k against PCA with
the same code size, on the same data with the same metric.

The network maps x ∈ [0, 1]⁷⁸⁴ to a code of ``--code`` numbers and back to logits l; the
reconstruction is x̂ = σ(l), trained with the (grey-level) binary cross-entropy. PCA with k =
``--code`` components, fitted on the same training images (eigh of the covariance, checked
against the SVD of the data by the pca recipe's ``pca_both_ways``), reconstructs
x̂ = x̄ + V_k V_kᵀ(x − x̄), the best *linear* (affine) code of that size. Both are scored by the
squared error per test image, Σ_d (x_d − x̂_d)². ``--noise σ``: a denoising autoencoder — inputs
are corrupted by Gaussian noise (clipped to [0, 1]) during training and at test time, the target
is the clean image; PCA then projects the noisy image.
"""

from __future__ import annotations

import os

import numpy as np

from ..autodiff import mode as _mode
from ..data import DataLoader, TensorDataset
from ..functional import binary_cross_entropy_with_logits
from ..models.autoencoder import ConvAutoencoder, MLPAutoencoder
from ..tensor import Tensor
from ..train import Loop, SupervisedStep
from ..train import report as R
from ..train.pipeline import make_optimizer, seed_streams, write_json
from . import Recipe, RecipeError, RunResult, register
from ._generative import image_data, images01, plot_grid
from .pca import pca_both_ways

DEFAULTS = {"arch": "mlp", "code": 32, "epochs": 20, "lr": 1e-3, "batch_size": 128,
            "noise": 0.0, "dataset": "mnist10k", "val_fraction": 0.0}


def _model(cfg, data, rng):
    if cfg["arch"] == "conv":
        return ConvAutoencoder(cfg["code"], rng=rng)
    return MLPAutoencoder(784, (256,), cfg["code"], rng=rng)


def corrupt(x, sigma, rng):
    return np.clip(x + sigma * rng.standard_normal(x.shape), 0.0, 1.0).astype(np.float32)


def _loss(out, y):
    return binary_cross_entropy_with_logits(out, y, reduction="sum") * (1.0 / out.shape[0])


def _run(cfg, run_dir, quiet=False, progress=None):
    if cfg["code"] < 1 or cfg["noise"] < 0:
        raise RecipeError("--code must be >= 1 and --noise >= 0")
    streams = seed_streams(cfg["seed"])
    (xtr, _), (xte, _) = images01(cfg["dataset"])
    xtr, xte = xtr.reshape(-1, 784), xte.reshape(-1, 784)
    if cfg["limit"]:
        xtr = xtr[:cfg["limit"]]
    model = _model(cfg, None, streams["init"])
    sigma = cfg["noise"]
    aug = (lambda x, rng: corrupt(x, sigma, rng)) if sigma else None
    step = SupervisedStep(model, _loss, make_optimizer(cfg, model.parameters()), augment=aug,
                          rng=streams["train"])
    test_in = corrupt(xte, sigma, np.random.default_rng(1)) if sigma else xte
    loader = DataLoader(TensorDataset(xtr, xtr), batch_size=cfg["batch_size"], shuffle=True,
                        rng=streams["loader"])
    if not quiet:
        print(f"autoencoder ({cfg['arch']}, code {cfg['code']}"
              + (f", denoising σ = {sigma:g}" if sigma else "") + f"): {len(xtr):,} training "
              f"images; {model.num_parameters():,} parameters; {cfg['epochs']} epochs",
              flush=True)
    val = DataLoader(TensorDataset(test_in, xte), batch_size=1000)
    loop = Loop(step, data=loader, epochs=cfg["epochs"], val_data=val, out_dir=run_dir,
                quiet=quiet, progress=progress, config=cfg)
    hist = loop.run()
    model.eval()
    with _mode.no_grad():
        rec = np.concatenate([1 / (1 + np.exp(-np.asarray(model(Tensor(test_in[i:i + 500]))
                                                          .data)))
                              for i in range(0, len(xte), 500)])
    _, v, _, _, mean = pca_both_ways(xtr.astype(np.float64), cfg["code"])
    pca = ((test_in - mean) @ v) @ v.T + mean
    ae_err = float(((xte - rec) ** 2).sum(1).mean())
    pca_err = float(((xte - pca) ** 2).sum(1).mean())
    test = {"ae_sq_error": ae_err, "pca_sq_error": pca_err, "ratio": ae_err / pca_err,
            "bce": hist[-1]["val_loss"]}
    if not quiet:
        print(f"squared error per test image: autoencoder {ae_err:.2f}, PCA (k = "
              f"{cfg['code']}) {pca_err:.2f} — ratio {ae_err / pca_err:.3f}", flush=True)
    rows = [xte[:12]] + ([test_in[:12]] if sigma else []) + [rec[:12], np.clip(pca[:12], 0, 1)]
    labels = ["data"] + (["noisy input"] if sigma else []) + ["autoenc.", "PCA"]
    fig = plot_grid(np.concatenate(rows), os.path.join(run_dir, "reconstructions.png"), 12,
                    f"code size {cfg['code']}: autoencoder vs PCA", labels)
    rep = R.HTMLReport(f"autoencoder ({cfg['arch']}) vs PCA on MNIST-10k",
                       f"code size {cfg['code']}" + (f", denoising σ = {sigma:g}" if sigma
                                                     else ""))
    rep.cards([("autoencoder: squared error / image", f"{ae_err:.2f}"),
               (f"PCA, k = {cfg['code']}", f"{pca_err:.2f}"),
               ("ratio", f"{ae_err / pca_err:.3f}")])
    rep.figure(fig, "Test images, " + ("their noisy versions, " if sigma else "")
               + "the autoencoder's reconstruction σ(l) and PCA's (clipped to [0, 1] for "
                 "display; its error is computed unclipped).")
    rep.figure(R.plot_history(hist, os.path.join(run_dir, "curves.png"), "BCE per image"),
               "Training and test binary cross-entropy per image.")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    write_json(os.path.join(run_dir, "metrics.json"), {"test": test})
    return RunResult(run_dir=run_dir, test=test, report=report, history=hist,
                     train_seconds=loop.train_seconds, config=cfg, model=model)


register(Recipe(
    name="autoencoder",
    description="nonlinear autoencoder (MLP or conv; --noise: denoising) against PCA at the "
                "same code size",
    defaults=DEFAULTS, data=image_data, model=_model, run=_run,
    help={"arch": "mlp | conv", "code": "code size k (PCA gets k components)",
          "noise": "denoising: Gaussian input noise σ (0: a plain autoencoder)"},
    choices={"arch": ("mlp", "conv"), "dataset": ("mnist10k", "fashion-mnist")},
    headline=("ratio", "squared error vs PCA"),
))
