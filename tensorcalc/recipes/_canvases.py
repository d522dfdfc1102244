"""The canvases of the localization recipe: one MNIST-10k digit pasted on a 64×64 black canvas.

Each digit's 28×28 image is resized to s×s pixels, s uniform in {20, …, 40} (bilinear
interpolation, ``scipy.ndimage.zoom`` with area-aligned grids), at a uniformly random position
that keeps the whole square on the canvas. The **true box is the digit's tight bounding box** —
the smallest box holding every pasted pixel with intensity ≥ 0.2 (of 1), in edge coordinates
(x0, y0, x1, y1) (see :mod:`tensorcalc.functional.boxes`) — not the pasted square, which would
include the digit's empty margin (a "1" is a narrow box, an "0" a wide one). Training canvases
come from the MNIST-10k training split (10 % of the *digits* held out for validation canvases),
each digit pasted ``copies`` times at fresh random places and sizes; test canvases from the
2,000 standard held-out test digits, one each, drawn with a fixed seed so every run is scored
on the same canvases. Train, validation and test canvases never share a digit image.

Not a recipe itself (modules starting with ``_`` are not auto-imported by the registry).
"""

from __future__ import annotations

import numpy as np

from .. import data as D
from ..backend import as_rng
from ..train import boxes as B
from . import Data, RecipeError

CANVAS = 64            #: canvas side in pixels
INK = 0.2              #: a pasted pixel belongs to the digit (and its box) when ≥ this
#: mean and standard deviation of canvas pixels (in [0, 1]) — measured once on 2,000 canvases
#: with s ∈ [20, 40], fixed so the scaling never depends on which canvases a run draws
CANVAS_MEAN, CANVAS_STD = 0.03, 0.15
TEST_SEED = 20240501   #: the test canvases' seed: every run is scored on the same canvases
TARGETS = {"acc": 0.95, "iou50": 0.90}
NUM_CLASSES = 10

__all__ = ["Canvases", "make_canvases", "canvas_input", "canvas_data", "CANVAS", "INK",
           "CANVAS_MEAN", "CANVAS_STD", "TEST_SEED", "TARGETS", "NUM_CLASSES"]


# ------------------------------------------------------------------------------ data
class Canvases:
    """Generated canvases: ``images`` (N, S, S) float32 in [0, 1]; ``labels`` (N,) int64;
    ``boxes`` (N, 4) float32 tight digit boxes (x0, y0, x1, y1) in pixels; ``squares`` (N, 4)
    the pasted squares; ``sizes`` (N,) the side s; ``source`` (N,) the index of the digit image
    used."""

    __slots__ = ("images", "labels", "boxes", "squares", "sizes", "source")

    def __init__(self, images, labels, boxes, squares, sizes, source):
        self.images, self.labels, self.boxes = images, labels, boxes
        self.squares, self.sizes, self.source = squares, sizes, source

    def __len__(self):
        return len(self.labels)

    def targets(self) -> np.ndarray:
        """The model's targets (N, 5): ``[label, cx/S, cy/S, w/S, h/S]`` (float32)."""
        s = self.images.shape[-1]
        cxcywh = B.xyxy_to_cxcywh(self.boxes) / s
        return np.concatenate([self.labels[:, None].astype(np.float32), cxcywh],
                              axis=1).astype(np.float32)


def make_canvases(images, labels, *, copies: int = 1, size: int = CANVAS,
                  scale: tuple = (20, 40), rng=None, ink: float = INK) -> Canvases:
    """Paste each digit ``copies`` times onto its own ``size``×``size`` black canvas.

    ``images`` (M, h, w) uint8 (0..255) or floats in [0, 1]; ``labels`` (M,). For each canvas:
    side s ~ U{scale[0], …, scale[1]}, the digit resized to s×s by bilinear interpolation
    (values clipped to [0, 1]), top-left corner (x, y) ~ U{0, …, size − s}², pasted there. The
    canvases come in a random order (from ``rng``); the same ``rng`` seed gives the same
    canvases. The tight box holds every pasted pixel ≥ ``ink``.
    """
    from scipy import ndimage

    imgs = np.asarray(images)
    labs = np.asarray(labels).astype(np.int64).reshape(-1)
    if imgs.ndim != 3 or len(imgs) != len(labs):
        raise ValueError(f"make_canvases: expected images (M, h, w) and labels (M,), got "
                         f"{imgs.shape} and {np.shape(labels)}")
    lo, hi = int(scale[0]), int(scale[1])
    if not (1 <= lo <= hi <= size):
        raise ValueError(f"make_canvases: scale must satisfy 1 <= min <= max <= size={size}, "
                         f"got {scale}")
    if copies < 1:
        raise ValueError(f"make_canvases: copies must be >= 1, got {copies}")
    rng = as_rng(rng)
    scale01 = 1.0 / 255.0 if imgs.dtype.kind in "iu" else 1.0
    src = rng.permutation(np.tile(np.arange(len(imgs)), copies))
    n = len(src)
    sides = rng.integers(lo, hi + 1, n)
    xs = rng.integers(0, size - sides + 1)
    ys = rng.integers(0, size - sides + 1)
    canvas = np.zeros((n, size, size), dtype=np.float32)
    boxes = np.zeros((n, 4), dtype=np.float32)
    h0, w0 = imgs.shape[1:]
    for i in range(n):
        s, x, y = int(sides[i]), int(xs[i]), int(ys[i])
        digit = imgs[src[i]].astype(np.float32) * scale01
        patch = ndimage.zoom(digit, (s / h0, s / w0), order=1, grid_mode=True,
                             mode="grid-constant")
        patch = np.clip(patch, 0.0, 1.0)
        canvas[i, y:y + s, x:x + s] = patch
        boxes[i] = B.boxes_from_mask(patch >= ink) + np.array([x, y, x, y], np.float32)
    squares = np.stack([xs, ys, xs + sides, ys + sides], axis=1).astype(np.float32)
    return Canvases(canvas, labs[src], boxes, squares, sides.astype(np.int64),
                    src.astype(np.int64))


def canvas_input(raw) -> np.ndarray:
    """Raw canvases (N, 64, 64) or (64, 64) — bytes 0..255 or floats in [0, 1] — to model
    input (N, 1, 64, 64): x ↦ (x − μ)/σ with the fixed :data:`CANVAS_MEAN`, :data:`CANVAS_STD`."""
    a = np.asarray(raw)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[1:] != (CANVAS, CANVAS):
        raise RecipeError(f"localization: expected {CANVAS}×{CANVAS} canvases — shape "
                          f"({CANVAS}, {CANVAS}), (N, {CANVAS}, {CANVAS}) or (N, 1, {CANVAS}, "
                          f"{CANVAS}) — got {np.shape(raw)}")
    scale = 1.0 / 255.0 if (a.dtype.kind in "iu" or float(a.max(initial=0)) > 1.5) else 1.0
    x = a.astype(np.float32) * np.float32(scale)
    return ((x - np.float32(CANVAS_MEAN)) / np.float32(CANVAS_STD))[:, None]


def _digit_split(cfg):
    """(train digits, val digits, test digits) — each an (images, labels) pair."""
    s = D.mnist10k_split(test_size=2000, seed=0)
    (xtr, ytr), (xte, yte) = s.train, s.test
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg["seed"]), 1]))
    k = int(round(cfg["val_fraction"] * len(ytr)))
    if k >= 1:
        tr, va = D.train_test_split(len(ytr), test_size=k, rng=rng, stratify=ytr)
    else:
        tr, va = np.arange(len(ytr)), np.arange(0)
    if cfg["digits"]:
        tr = tr[:cfg["digits"]]
        va = va[:max(1, cfg["digits"] // 8)] if len(va) else va
    n_test = cfg["test_digits"] or len(yte)
    return (xtr[tr], ytr[tr]), (xtr[va], ytr[va]), (xte[:n_test], yte[:n_test])


def _check_cfg(cfg):
    if not (1 <= cfg["scale_min"] <= cfg["scale_max"] <= CANVAS):
        raise RecipeError(f"--scale-min and --scale-max must satisfy 1 <= min <= max <= "
                          f"{CANVAS}, got {cfg['scale_min']} and {cfg['scale_max']}")
    for key in ("copies",):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise RecipeError(f"--{key} must be an integer >= 1, got {cfg[key]!r}")
    for key in ("digits", "test_digits"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise RecipeError(f"--{key.replace('_', '-')} must be an integer >= 0, got "
                              f"{cfg[key]!r}")
    for key in ("lambda_box", "lambda_iou"):
        if not isinstance(cfg[key], (int, float)) or cfg[key] < 0:
            raise RecipeError(f"--{key.replace('_', '-')} must be a number >= 0, got "
                              f"{cfg[key]!r}")


def canvas_data(cfg) -> Data:
    _check_cfg(cfg)
    (xtr, ytr), (xva, yva), (xte, yte) = _digit_split(cfg)
    seeds = np.random.SeedSequence([int(cfg["seed"]), 2]).spawn(2)
    scale = (cfg["scale_min"], cfg["scale_max"])
    tr = make_canvases(xtr, ytr, copies=cfg["copies"], scale=scale, rng=np.random.default_rng(
        seeds[0]))
    te = make_canvases(xte, yte, copies=1, scale=scale, rng=TEST_SEED)
    val = None
    if len(yva):
        va = make_canvases(xva, yva, copies=1, scale=scale,
                           rng=np.random.default_rng(seeds[1]))
        val = (canvas_input(va.images), va.targets())
    desc = (f"{len(tr):,} training canvases ({len(ytr):,} MNIST-10k training digits × "
            f"{cfg['copies']}), " + (f"{len(yva):,} validation canvases (held-out training "
                                     "digits), " if len(yva) else "")
            + f"{len(te):,} test canvases (the standard held-out test digits); digit side "
            f"{scale[0]}–{scale[1]} px on a {CANVAS}×{CANVAS} canvas; the box is the digit's "
            f"tight bounding box (pixels ≥ {INK}).")
    return Data(name="mnist10k-canvas", task="detection",
                train=(canvas_input(tr.images), tr.targets()),
                test=(canvas_input(te.images), te.targets()), val=val, num_classes=NUM_CLASSES,
                class_names=[str(i) for i in range(10)], image_shape=(CANVAS, CANVAS),
                prepare=canvas_input, description=desc,
                extra={"test_canvases": te, "train_size": len(tr)})


