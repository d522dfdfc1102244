"""Shared pieces of the generative recipes (vae, gan, autoencoder): the image data in [0, 1],
image grids, the training GIF, line plots and the class histogram.

Not a recipe itself (modules starting with ``_`` are not auto-imported by the registry).
"""

from __future__ import annotations

import os

import numpy as np

from .. import data as D
from ..train import report as R
from . import Data, RecipeError

GEN_DATASETS = ("mnist10k", "fashion-mnist")
#: how reports and logs name them
DATA_NAMES = {"mnist10k": "MNIST-10k", "fashion-mnist": "Fashion-MNIST"}


def images01(dataset: str = "mnist10k"):
    """((x_train, y_train), (x_test, y_test)) with x (N, 28, 28) float32 in [0, 1]: MNIST-10k's
    fixed 8,000 / 2,000 split, or Fashion-MNIST's 60,000 / 10,000 (read from disk)."""
    if dataset == "mnist10k":
        s = D.mnist10k_split(test_size=2000, seed=0)
        (xtr, ytr), (xte, yte) = s.train, s.test
    elif dataset == "fashion-mnist":
        try:
            xtr, ytr = D.load_fashion_mnist("train")
            xte, yte = D.load_fashion_mnist("test")
        except FileNotFoundError as e:
            raise RecipeError(str(e)) from None
    else:
        raise RecipeError(f"--dataset must be one of {', '.join(GEN_DATASETS)}, got "
                          f"{dataset!r}")
    f = lambda a: (np.asarray(a, np.float32) / 255.0).reshape(-1, 28, 28)  # noqa: E731
    return (f(xtr), np.asarray(ytr, np.int64)), (f(xte), np.asarray(yte, np.int64))


def image_data(cfg) -> Data:
    """The Data declaration of a generative recipe (flat [0, 1] images; labels kept)."""
    (xtr, ytr), (xte, yte) = images01(cfg.get("dataset") or "mnist10k")
    return Data(name=cfg.get("dataset") or "mnist10k", task="multiclass",
                train=(xtr.reshape(-1, 784), ytr), test=(xte.reshape(-1, 784), yte),
                num_classes=10, image_shape=(28, 28))


def tile(images, cols: int) -> np.ndarray:
    """(N, 28, 28) (or (N, 1, 28, 28) / (N, 784)) in [0, 1] -> one (rows·29+1, cols·29+1)
    mosaic with 1-pixel grey gaps."""
    x = np.asarray(images, np.float32).reshape(-1, 28, 28)
    n = len(x)
    rows = -(-n // cols)
    out = np.full((rows * 29 + 1, cols * 29 + 1), 0.5, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[1 + r * 29:1 + r * 29 + 28, 1 + c * 29:1 + c * 29 + 28] = x[i]
    return out


def plot_grid(images, path: str, cols: int, title: str = "", row_labels=None,
              scale: float = 0.42) -> str:
    """A mosaic of images in [0, 1] (white digits on black, as the data)."""
    m = tile(images, cols)
    fig = R.new_figure(max(2.5, scale * cols + (1.2 if row_labels else 0.2)),
                       scale * m.shape[0] / 29 + (0.5 if title else 0.1))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([14.5 + 29 * i for i in range(len(row_labels))])
        ax.set_yticklabels(row_labels, fontsize=8)
    else:
        ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return R.save_figure(fig, path)


def write_gif(frames, path: str, cols: int = 8, labels=None, scale: int = 3,
              ms: int = 400) -> str:
    """An animated GIF (Pillow) of image-set frames, e.g. fixed-noise samples over training;
    ``labels`` (one per frame) are drawn in a strip above the mosaic."""
    from PIL import Image, ImageDraw

    imgs = []
    for i, f in enumerate(frames):
        m = (np.clip(tile(f, cols), 0, 1) * 255).astype(np.uint8)
        im = Image.fromarray(m).resize((m.shape[1] * scale, m.shape[0] * scale),
                                       Image.NEAREST)
        if labels is not None:
            canvas = Image.new("L", (im.width, im.height + 16), 255)
            canvas.paste(im, (0, 16))
            ImageDraw.Draw(canvas).text((4, 2), str(labels[i]), fill=0)
            im = canvas
        imgs.append(im.convert("P"))
    if len(imgs) > 1:
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=ms, loop=0)
    else:
        imgs[0].save(path)
    return path


def plot_lines(series, path: str, xlabel: str, ylabel: str, title: str = "", hlines=(),
               logy: bool = False, logx: bool = False) -> str:
    """series: [(label, x, y)]; hlines: [(value, label)] dashed references."""
    fig = R.new_figure(6.4, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    colours = list(R.PALETTE.values())
    for i, (label, x, y) in enumerate(series):
        ax.plot(x, y, label=label, color=colours[i % len(colours)], linewidth=1.6,
                marker="o" if len(x) < 30 else None, markersize=3)
    for j, (v, label) in enumerate(hlines):
        ax.axhline(v, linestyle="--", linewidth=1, color=colours[(j + 3) % len(colours)],
                   label=label)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    R.style_axes(ax)
    ax.legend(fontsize=8)
    return R.save_figure(fig, path)


def plot_class_histogram(counts, path: str, class_names=None, title: str = "") -> str:
    """How often the shipped classifier assigns each class to generated images (mode collapse
    shows as missing or dominant classes), against the uniform share."""
    counts = np.asarray(counts, float)
    share = counts / max(counts.sum(), 1)
    fig = R.new_figure(6.4, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    names = class_names or [str(i) for i in range(len(counts))]
    ax.bar(range(len(counts)), share, color=R.PALETTE["train"])
    ax.axhline(1 / len(counts), linestyle="--", color=R.PALETTE["grey"], label="uniform")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("share of generated images")
    if title:
        ax.set_title(title, fontsize=10)
    R.style_axes(ax)
    ax.legend(fontsize=8)
    return R.save_figure(fig, path)


def history_series(history, keys, xkey="epoch"):
    """[(label, x, y)] of the history's columns ``keys`` (rows lacking a key skipped)."""
    out = []
    for k in keys:
        pts = [(r[xkey], r[k]) for r in history if isinstance(r.get(k), (int, float))]
        if pts:
            x, y = zip(*pts, strict=True)
            out.append((k, list(x), list(y)))
    return out


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
