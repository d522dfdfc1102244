"""Scores of generated images that are comparable across versions: a *fixed, shipped* LeNet-5
classifier (weights in ``tensorcalc/models/weights/``, trained once by the recipe named in
``PROVENANCE.md`` there) supplies the features and class probabilities.

Fréchet distance (Heusel et al. 2017, "FID" with the Inception net replaced by this LeNet). With
μ, Σ the mean and covariance of the classifier's 84-d penultimate features (after its ReLU) of
two image sets:

    FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})

(``scipy.linalg.sqrtm``; a tiny imaginary part from rounding is dropped). It is 0 for a set
against itself and symmetric. Here 2,000 generated images are compared with the 2,000 test
images of MNIST-10k.

Classifier inception score (Salimans et al. 2016, with the same classifier):

    IS = exp E_x[KL(p(y|x) ‖ p(y))],   p(y) = E_x p(y|x)

between 1 (every image gets the same class distribution) and 10 (confident and all ten classes
equally often). Every number is reported beside the real-data floor (2,000 training images vs the
test images) and uniform noise.

Images enter in [0, 1], shaped (N, 28, 28), (N, 784) or (N, 1, 28, 28); they are scaled like the
classifier's training data ((x − 0.1307)/0.3081 for MNIST).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..autodiff import mode as _mode
from ..tensor import Tensor

__all__ = ["frechet_distance", "feature_statistics", "classifier_score", "load_classifier",
           "classifier_outputs", "GenerativeScorer", "WEIGHTS_DIR", "CLASSIFIERS"]

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "models", "weights")
#: the shipped classifiers: data set -> (weights file, input mean, input std)
CLASSIFIERS = {"mnist10k": ("lenet-mnist10k.safetensors", 0.1307, 0.3081),
               "fashion-mnist": ("lenet-fashion-mnist.safetensors", 0.2860, 0.3530)}


def feature_statistics(f) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of features f (N, d), in float64; Σ with the unbiased 1/(N − 1)."""
    f = np.asarray(f, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(a, b) -> float:
    """The Fréchet distance between two Gaussians, each given as features (N, d) or as their
    (μ, Σ): ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2})."""
    from scipy import linalg

    mu1, s1 = a if isinstance(a, tuple) else feature_statistics(a)
    mu2, s2 = b if isinstance(b, tuple) else feature_statistics(b)
    # dead ReLU units make Σ singular: sqrtm still works (it warns); fall back to a tiny ridge,
    # as Heusel et al.'s code does, only when its result is not finite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(len(s1)) * 1e-6
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    d = mu1 - mu2
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def classifier_score(probs, eps: float = 1e-12) -> float:
    """exp E_x[KL(p(y|x) ‖ p(y))] from class probabilities (N, C)."""
    p = np.asarray(probs, dtype=np.float64)
    py = p.mean(axis=0, keepdims=True)
    kl = (p * (np.log(p + eps) - np.log(py + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


_CACHE: dict = {}


def load_classifier(dataset: str = "mnist10k"):
    """The shipped LeNet-5 for ``dataset`` (eval mode, cached); FileNotFoundError naming the
    recipe that makes it when its weights are not shipped."""
    if dataset in _CACHE:
        return _CACHE[dataset]
    if dataset not in CLASSIFIERS:
        raise ValueError(f"no shipped classifier for {dataset!r}; there are: "
                         f"{', '.join(CLASSIFIERS)}")
    from ..models.lenet import LeNet5
    from ..serialization import load_into

    path = os.path.join(WEIGHTS_DIR, CLASSIFIERS[dataset][0])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the shipped {dataset} classifier {path} is missing; make it with `tensorcalc "
            f"train lenet --dataset {dataset} --seed 0 --val-fraction 0` and "
            "tensorcalc.train.generative_metrics.export_classifier(RUN, dataset)")
    model = LeNet5(1, 10, rng=0)
    load_into(model, path)
    model.eval()
    _CACHE[dataset] = model
    return model


def export_classifier(run_dir: str, dataset: str = "mnist10k") -> str:
    """Write a trained lenet run's weights as the shipped classifier of ``dataset``."""
    from ..recipes import load_run
    from ..serialization import save_weights

    run = load_run(run_dir)
    path = os.path.join(WEIGHTS_DIR, CLASSIFIERS[dataset][0])
    save_weights(run.model.state_dict(), path,
                 metadata={"recipe": "lenet", "config": run.cfg, "dataset": dataset})
    return path


def _model_input(images, dataset):
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(f"generative scores: expected 28×28 images in [0, 1] — (N, 28, 28), "
                         f"(N, 784) or (N, 1, 28, 28) — got {np.shape(images)}")
    _, mean, std = CLASSIFIERS[dataset]
    return (x - mean) / std


def classifier_outputs(images, dataset: str = "mnist10k", batch_size: int = 500):
    """(features (N, 84), probabilities (N, 10)) of the shipped classifier for images in
    [0, 1]. The features are the input of the last linear layer (after its ReLU)."""
    model = load_classifier(dataset)
    x = _model_input(images, dataset)
    head = model.classifier
    feats, probs = [], []
    with _mode.no_grad():
        for i in range(0, len(x), batch_size):
            h = model.features(Tensor(x[i:i + batch_size]))
            for j in range(len(head) - 1):
                h = head[j](h)
            z = head[len(head) - 1](h).data
            feats.append(np.asarray(h.data, dtype=np.float64))
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probs.append(e / e.sum(axis=1, keepdims=True))
    return np.concatenate(feats), np.concatenate(probs)


class GenerativeScorer:
    """FID and classifier IS of image sets against a fixed reference set (the test images),
    with the real-data floor and uniform noise computed once.

    ``scorer(images)`` -> {"fid", "is", "class_hist"}; ``scorer.baselines()`` ->
    {"floor_fid", "floor_is", "noise_fid", "noise_is"} (floor: ``train_images`` vs the
    reference; noise: uniform [0, 1] pixels, seed 0, as many as the reference)."""

    def __init__(self, reference_images, train_images=None, dataset: str = "mnist10k"):
        self.dataset = dataset
        f, p = classifier_outputs(reference_images, dataset)
        self.reference = feature_statistics(f)
        self.reference_is = classifier_score(p)
        self.n = len(f)
        self.train_images = train_images
        self._baselines = None

    def __call__(self, images) -> dict:
        f, p = classifier_outputs(images, self.dataset)
        hist = np.bincount(p.argmax(axis=1), minlength=p.shape[1])
        return {"fid": frechet_distance(feature_statistics(f), self.reference),
                "is": classifier_score(p), "class_hist": hist}

    def baselines(self) -> dict:
        if self._baselines is None:
            out = {"reference_is": self.reference_is}
            if self.train_images is not None:
                s = self(self.train_images[:self.n])
                out.update(floor_fid=s["fid"], floor_is=s["is"])
            noise = np.random.default_rng(0).random((self.n, 28, 28)).astype(np.float32)
            s = self(noise)
            out.update(noise_fid=s["fid"], noise_is=s["is"])
            self._baselines = out
        return self._baselines
