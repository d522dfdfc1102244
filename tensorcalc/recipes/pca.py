"""pca — principal component analysis of MNIST-10k two ways: the eigendecomposition of the
covariance and the SVD of the centred data, which must agree.

With the images as rows of X (n × d, d = 784) and X̃ = X − 1x̄ᵀ centred,

    C = X̃ᵀX̃ / (n − 1) = V Λ Vᵀ                 (eigh: eigenvalues λ₁ ≥ λ₂ ≥ …)
    X̃ = U S Wᵀ  ⇒  C = W (S²/(n − 1)) Wᵀ         (svd: λᵢ = sᵢ²/(n − 1), W = V up to signs)

The k-component reconstruction x̂ = x̄ + V_k V_kᵀ(x − x̄) is the best rank-k affine approximation
in squared error, and its mean squared error is the explained variance left out: Σ_{i>k} λᵢ.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import data as D
from .. import linalg
from ..tensor import Tensor
from ..train import report as R
from . import Data, Recipe, register
from ._studies import finish, print_table


def load(limit=0, seed=0):
    """MNIST-10k as float64 rows in [0, 1]; ``limit`` draws a random subset."""
    x, y = D.load_mnist10k()
    x = x.reshape(len(x), -1).astype(np.float64) / 255.0
    if limit:
        idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:limit])
        x, y = x[idx], y[idx]
    return x, y.astype(np.int64)


def pca_both_ways(x, k):
    """(λ from eigh, V, λ from svd, W, mean): the top-k eigenpairs both ways, descending."""
    mean = x.mean(axis=0)
    xc = x - mean
    n = len(x)
    w, v = linalg.eigh(Tensor(xc.T @ xc / (n - 1)))
    lam_eig, v = w.data[::-1], v.data[:, ::-1]
    _, s, wt = linalg.svd(Tensor(xc))
    lam_svd = s.data ** 2 / (n - 1)
    return lam_eig, v[:, :k], lam_svd, wt.data[:k].T, mean


def _data(cfg):
    x, y = load(cfg["limit"], cfg["seed"])
    return Data(name="mnist10k", task="multiclass", train=(x.astype(np.float32), y),
                test=(x[:2].astype(np.float32), y[:2]), num_classes=10,
                description=f"MNIST-10k: {len(y)} images of 784 pixels in [0, 1]",
                title="MNIST-10k")


def _run(cfg, run_dir, quiet=False, progress=None):
    t0 = time.perf_counter()
    x, y = load(cfg["limit"], cfg["seed"])
    ks = [2, 10, 50]
    lam_e, v, lam_s, w, mean = pca_both_ways(x, max(ks))
    k = max(ks)
    eig_agree = float(np.max(np.abs(lam_e[:k] - lam_s[:k]) / lam_e[:k]))
    cos = np.abs(np.sum(v * w, axis=0))             # |⟨vᵢ, wᵢ⟩|, 1 when they agree (up to sign)
    vec_agree = float(1 - cos.min())
    total = lam_e.clip(min=0).sum()
    ev = np.cumsum(lam_e.clip(min=0)) / total
    xc = x - mean
    rows = []
    for kk in ks:
        vk = v[:, :kk]
        rec = xc @ vk @ vk.T
        mse = float(np.mean(np.sum((xc - rec) ** 2, axis=1)))
        rows.append([kk, float(ev[kk - 1]), mse, float(lam_e[kk:].clip(min=0).sum())])
    header = ["k", "explained variance", "reconstruction error Σ‖x − x̂‖²/n", "Σ_{i>k} λᵢ·(n−1)/n"]
    for r in rows:
        r[3] *= (len(x) - 1) / len(x)
    if not quiet:
        print(f"eigh vs svd: largest relative eigenvalue difference {eig_agree:.2e}, "
              f"1 − min |cos| of the top {k} components {vec_agree:.2e}")
        print_table(header, rows)
    fig = R.new_figure(12, 4)
    ax, bx, cx = fig.subplots(1, 3)
    ax.plot(np.arange(1, len(ev) + 1), ev, color=R.PALETTE["train"])
    for kk in ks:
        ax.axvline(kk, color="#9ca3af", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("components k")
    ax.set_ylabel("explained variance")
    ax.set_title("cumulative explained variance", fontsize=11)
    R.style_axes(ax)
    bx.semilogy(np.arange(1, 101), lam_e[:100], "o", ms=3, color=R.PALETTE["train"],
                label="eigh of the covariance")
    bx.semilogy(np.arange(1, 101), lam_s[:100], "x", ms=5, color=R.PALETTE["val"],
                label="s²/(n − 1) from the SVD")
    bx.set_xlabel("i")
    bx.set_ylabel("λᵢ")
    bx.set_title("the two spectra agree", fontsize=11)
    bx.legend(frameon=False, fontsize=8)
    R.style_axes(bx)
    z = xc @ v[:, :2]
    sc = cx.scatter(z[:, 0], z[:, 1], c=y, cmap="tab10", s=2, alpha=0.6)
    fig.colorbar(sc, ax=cx, ticks=range(10)).set_label("digit")
    cx.set_xlabel("PC 1")
    cx.set_ylabel("PC 2")
    cx.set_title("the 2-D projection", fontsize=11)
    R.style_axes(cx)
    png1 = R.save_figure(fig, os.path.join(run_dir, "pca.png"))
    fig = R.new_figure(10, 5)
    show = [int(np.flatnonzero(y == d)[0]) for d in range(10) if np.any(y == d)][:8]
    n_show = len(show)
    axes = fig.subplots(len(ks) + 1, n_show, squeeze=False)
    for col, j in enumerate(show):
        axes[0, col].imshow(x[j].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        for i, kk in enumerate(ks):
            rec = mean + (xc[j] @ v[:, :kk]) @ v[:, :kk].T
            axes[i + 1, col].imshow(rec.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    for i, lab in enumerate(["original"] + [f"k = {kk}" for kk in ks]):
        axes[i, 0].set_ylabel(lab, fontsize=9)
    png2 = R.save_figure(fig, os.path.join(run_dir, "reconstructions.png"))
    test = {"eigenvalue_rel_diff": eig_agree, "component_one_minus_cos": vec_agree,
            **{f"explained_variance_k{r[0]}": r[1] for r in rows},
            **{f"reconstruction_mse_k{r[0]}": r[2] for r in rows}}
    return finish(
        run_dir, cfg, "pca — eigendecomposition vs SVD on MNIST-10k", f"{len(x)} images",
        [("eigh vs svd (eigenvalues)", f"{eig_agree:.1e}"),
         ("explained variance, k = 50", f"{100 * ev[49]:.1f} %")],
        [("section", "Spectrum and projection"),
         ("figure", png1, "Left: cumulative explained variance. Middle: the top 100 eigenvalues "
          "of the covariance (eigh) and s²/(n − 1) from the SVD of the centred data. Right: "
          "the images projected on the first two principal components, coloured by digit."),
         ("section", "Reconstructions"),
         ("figure", png2, "x̄ + V_k V_kᵀ(x − x̄) for k = 2, 10, 50 components."),
         ("table", rows, header, "The mean squared reconstruction error equals the variance "
          "left out, Σ_{i>k} λᵢ (times (n − 1)/n).")],
        test, seconds=time.perf_counter() - t0)


register(Recipe(
    name="pca",
    description="principal component analysis by eigh of the covariance and by SVD",
    defaults={"dataset": "mnist10k", "val_fraction": 0.0},
    data=_data, run=_run, choices={"dataset": ("mnist10k",)},
))
