"""localization — find and read one digit on a 64×64 canvas: class + bounding box from one CNN.

Data (:func:`make_canvases`). Each example is a black 64×64 canvas with one MNIST-10k digit
pasted on it: the 28×28 digit image is resized to s×s pixels, s uniform in {20, …, 40}
(bilinear interpolation, ``scipy.ndimage.zoom`` with area-aligned grids), at a uniformly random
position that keeps the whole square on the canvas. The **true box is the digit's tight
bounding box** — the smallest box holding every pasted pixel with intensity ≥ 0.2 (of 1), in
edge coordinates (x0, y0, x1, y1) (see :mod:`tensorcalc.train.boxes`) — not the pasted square,
which would include the digit's empty margin (a "1" is a narrow box, an "0" a wide one). The
pasted square is kept too (``Canvases.squares``). Training canvases come from the MNIST-10k
training split (8,000 digits; 10 % of the *digits* are held out for validation canvases), each
digit pasted ``copies`` times at fresh random places and sizes; test canvases from the 2,000
standard held-out test digits, one each, drawn with a fixed seed so every run is scored on the
same canvases. Train, validation and test canvases therefore never share a digit image.

Model (:class:`LocalizationNet`). A small CNN trunk — a stride-2 stem conv 4×4 (1→8) → ReLU
(32×32), then three stages conv 3×3 → ReLU → max-pool 2 (8→16→32→64 channels; 16, 8, 4 px)
→ flatten (64·4·4 = 1024) → fc ``hidden`` → ReLU — and two heads: class logits z ∈ ℝ¹⁰ and a box
b̂ = σ(u) ∈ (0, 1)⁴ read as the normalised centre form (cx, cy, w, h)/64. The model returns
both side by side, an (N, 14) array ``[z | b̂]``; the targets are (N, 5) rows
``[label, cx/64, cy/64, w/64, h/64]``.

Loss (:func:`localization_loss`, a composite of library functions):

    L = CE(z, y) + λ_box · mean_k smoothL1_β=1px(64·b̂_k − 64·b_k) + λ_iou · (1 − IoU(b̂, b))

the cross-entropy −log softmax(z)_y (categorical likelihood of the class), the smooth-L1
(Huber) error of the four box numbers in pixels (½d² below 1 px, |d| − ½ above: robust to the
early huge errors, quadratic near the answer), and one minus the IoU of the two boxes, which
is differentiable almost everywhere as a composite of min, max and relu (relu′(0) = 0: a
predicted box not overlapping the truth gets its gradient from the smooth-L1 term only).

Metrics: classification accuracy, the mean IoU, and ``iou50`` — the share of boxes with
IoU ≥ 0.5 (the usual "correct localisation" criterion). Targets: ≥ 95 % accuracy and ≥ 90 %
of test boxes with IoU ≥ 0.5.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from .. import data as D
from .. import functional as F
from .. import nn, ops
from ..backend import as_rng
from ..tensor import Tensor
from ..train import boxes as B
from ..train import metrics as M
from ..train import report as R
from . import Data, Recipe, RecipeError, RunResult, get_recipe, register

__all__ = ["Canvases", "make_canvases", "LocalizationNet", "localization_loss",
           "ClassAccuracy", "BoxIoU", "canvas_input", "decode_boxes", "CANVAS", "INK",
           "CANVAS_MEAN", "CANVAS_STD", "TEST_SEED", "TARGETS"]

CANVAS = 64            #: canvas side in pixels
INK = 0.2              #: a pasted pixel belongs to the digit (and its box) when ≥ this
#: mean and standard deviation of canvas pixels (in [0, 1]) — measured once on 2,000 canvases
#: with s ∈ [20, 40], fixed so the scaling never depends on which canvases a run draws
CANVAS_MEAN, CANVAS_STD = 0.03, 0.15
TEST_SEED = 20240501   #: the test canvases' seed: every run is scored on the same canvases
TARGETS = {"acc": 0.95, "iou50": 0.90}
NUM_CLASSES = 10


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


def _data(cfg) -> Data:
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
    return Data(name="mnist10k-canvas", task="regression",
                train=(canvas_input(tr.images), tr.targets()),
                test=(canvas_input(te.images), te.targets()), val=val, num_classes=NUM_CLASSES,
                class_names=[str(i) for i in range(10)], image_shape=(CANVAS, CANVAS),
                prepare=canvas_input, description=desc,
                extra={"test_canvases": te, "train_size": len(tr)})


# ------------------------------------------------------------------------------ model and loss
class LocalizationNet(nn.Module):
    """CNN trunk + class head + box head: (N, 1, 64, 64) -> (N, 10 + 4) = [logits | σ(box)],
    the box as normalised (cx, cy, w, h) ∈ (0, 1)⁴ (see the module docstring)."""

    def __init__(self, num_classes: int = NUM_CLASSES, hidden: int = 128,
                 channels=(8, 16, 32, 64), rng=None):
        super().__init__()
        rng = as_rng(rng)
        if len(channels) < 2:
            raise ValueError(f"LocalizationNet: channels needs at least two widths (the stride-2 "
                             f"stem and one conv-pool stage), got {channels}")
        self.num_classes = num_classes
        layers = [nn.Conv2d(1, channels[0], 4, stride=2, padding=1, rng=rng), nn.ReLU()]
        side = CANVAS // 2
        for cin, cout in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2)]
            side //= 2
        if side < 1:
            raise ValueError(f"LocalizationNet: {len(channels) - 1} pooling stages shrink a "
                             f"{CANVAS}×{CANVAS} canvas below one pixel")
        layers += [nn.Flatten(), nn.Linear(channels[-1] * side * side, hidden, rng=rng),
                   nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(hidden, num_classes, rng=rng)
        self.box = nn.Linear(hidden, 4, rng=rng)

    def forward(self, x):
        h = self.features(x)
        return ops.concat([self.classifier(h), ops.sigmoid(self.box(h))], axis=1)


def _split_target(t, num_classes=NUM_CLASSES):
    raw = np.asarray(t.data if isinstance(t, Tensor) else t)
    if raw.ndim != 2 or raw.shape[1] != 5:
        raise ValueError(f"localization: targets must be (N, 5) rows [label, cx, cy, w, h], "
                         f"got shape {raw.shape}")
    return raw[:, 0].astype(np.int64), raw[:, 1:]


def localization_loss(lambda_box: float = 0.05, lambda_iou: float = 1.0, size: int = CANVAS,
                      num_classes: int = NUM_CLASSES):
    """The loss function ``loss(out, target)`` of the module docstring:
    CE + λ_box · smooth-L1 (pixels, β = 1) + λ_iou · (1 − IoU), each averaged over the batch."""

    def loss(out, target):
        labels, tbox = _split_target(target, num_classes)
        if out.shape[-1] != num_classes + 4:
            raise ValueError(f"localization loss: model output must be (N, {num_classes + 4}) "
                             f"[logits | box], got {tuple(out.shape)}")
        z, b = out[:, :num_classes], out[:, num_classes:]
        tb = Tensor(tbox.astype(b.dtype, copy=False))
        total = F.cross_entropy(z, labels)
        if lambda_box:
            total = total + lambda_box * F.smooth_l1_loss(b * float(size), tb * float(size),
                                                          beta=1.0)
        if lambda_iou:
            overlap = B.iou(B.cxcywh_to_xyxy(b), B.cxcywh_to_xyxy(tb))
            total = total + lambda_iou * (1.0 - overlap.mean())
        return total

    return loss


def decode_boxes(out, size: int = CANVAS, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Model outputs (N, 14) -> predicted boxes (N, 4) in pixels (x0, y0, x1, y1)."""
    o = np.asarray(out.data if isinstance(out, Tensor) else out, dtype=np.float64)
    return B.cxcywh_to_xyxy(o[:, num_classes:num_classes + 4] * size)


class ClassAccuracy(M.Metric):
    """Share of canvases whose class argmax z equals the label. Key: ``acc``."""

    name = "acc"
    _state = ("correct", "total")

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        super().__init__()

    def reset(self):
        self.correct, self.total = 0, 0

    def update(self, output, target):
        labels, _ = _split_target(target)
        o = np.asarray(getattr(output, "data", output))
        self.correct += int((o[:, :self.num_classes].argmax(1) == labels).sum())
        self.total += len(labels)

    def compute(self):
        return {"acc": self.correct / self.total if self.total else float("nan")}


class BoxIoU(M.Metric):
    """Mean IoU of predicted and true boxes (``iou``) and the share with IoU ≥ 0.5
    (``iou50``)."""

    name = "iou"
    _state = ("iou_sum", "hits", "total")

    def __init__(self, num_classes: int = NUM_CLASSES, threshold: float = 0.5):
        self.num_classes, self.threshold = num_classes, threshold
        super().__init__()

    def reset(self):
        self.iou_sum, self.hits, self.total = 0.0, 0, 0

    def update(self, output, target):
        _, tbox = _split_target(target)
        o = np.asarray(getattr(output, "data", output), dtype=np.float64)
        v = B.iou(B.cxcywh_to_xyxy(o[:, self.num_classes:self.num_classes + 4]),
                  B.cxcywh_to_xyxy(tbox.astype(np.float64)))
        self.iou_sum += float(v.sum())
        self.hits += int((v >= self.threshold).sum())
        self.total += len(v)

    def compute(self):
        n = self.total
        return {"iou": self.iou_sum / n if n else float("nan"),
                "iou50": self.hits / n if n else float("nan")}


def _model(cfg, data, rng):
    return LocalizationNet(NUM_CLASSES, hidden=cfg["hidden"], channels=cfg["channels"], rng=rng)


def _loss(cfg, data):
    return localization_loss(cfg["lambda_box"], cfg["lambda_iou"])


def _metrics(cfg, data):
    return [ClassAccuracy(), BoxIoU()]


# ------------------------------------------------------------------------------ run
def _load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def _run(cfg, run_dir, quiet=False, progress=None, **_):
    from .runner import (
        _loader,
        build_trainer,
        hyperparameter_table,
        prepare_data,
        seed_streams,
        write_json,
    )

    recipe = get_recipe("localization")
    load_before = _load()
    streams = seed_streams(cfg["seed"])
    t0 = time.perf_counter()
    data = prepare_data(recipe, cfg, streams["split"])
    gen_seconds = time.perf_counter() - t0
    trainer, loader = build_trainer(recipe, cfg, data, data.train, run_dir, quiet=quiet,
                                    progress=progress, streams=streams)
    val = _loader(data.val, 500) if data.val is not None else None
    if not quiet:
        n_val = 0 if data.val is None else len(data.val[1])
        print(f"localization: {len(data.train[1]):,} training / {n_val:,} validation / "
              f"{len(data.test[1]):,} test canvases (made in {gen_seconds:.1f} s); "
              f"{trainer.model.num_parameters():,} parameters; {cfg['epochs']} epochs of "
              f"{len(loader)} steps ({cfg['optimizer']}, lr {cfg['lr']:g}, batch "
              f"{cfg['batch_size']})", flush=True)
    trainer.fit(loader, val, epochs=cfg["epochs"])
    t1 = time.perf_counter()
    figs, out, tgt = trainer.evaluate(_loader(data.test, 500), return_outputs=True)
    eval_seconds = time.perf_counter() - t1
    load_after = _load()
    test = {k: float(v) for k, v in figs.items()}
    labels = tgt[:, 0].astype(np.int64)
    pred = out[:, :NUM_CLASSES].argmax(1)
    pboxes = decode_boxes(out)
    tboxes = B.cxcywh_to_xyxy(tgt[:, 1:].astype(np.float64) * CANVAS)
    ious = B.iou(pboxes, tboxes)
    test["iou_median"] = float(np.median(ious))
    met = {k: test[k] >= v for k, v in TARGETS.items()}
    result = RunResult(run_dir=run_dir, test=test, history=list(trainer.history),
                       train_seconds=trainer.train_seconds, config=cfg,
                       extra={"targets_met": met, "ious": ious, "pred": pred,
                              "pred_boxes": pboxes, "true_boxes": tboxes,
                              "load_before": load_before, "load_after": load_after,
                              "data_seconds": gen_seconds})
    if not quiet:
        print(f"test: class accuracy {100 * test['acc']:.2f} % (target ≥ "
              f"{100 * TARGETS['acc']:.0f} %: {'met' if met['acc'] else 'NOT met'}), "
              f"IoU ≥ 0.5 for {100 * test['iou50']:.2f} % of boxes (target ≥ "
              f"{100 * TARGETS['iou50']:.0f} %: {'met' if met['iou50'] else 'NOT met'}), "
              f"mean IoU {test['iou']:.3f}; training {trainer.train_seconds:.1f} s, load "
              f"average {load_after}", flush=True)
    write_json(os.path.join(run_dir, "metrics.json"), {
        "test": test, "targets": TARGETS, "targets_met": met,
        "train_seconds": trainer.train_seconds, "data_seconds": gen_seconds,
        "eval_seconds": eval_seconds, "epochs": trainer.epoch,
        "parameters": trainer.model.num_parameters(),
        "load_average_before": load_before, "load_average_after": load_after})
    result.report = _report(recipe, cfg, data, trainer, run_dir, test, out, labels, pred,
                            pboxes, tboxes, ious, met, gen_seconds, load_before, load_after,
                            hyperparameter_table)
    return result


def _report(recipe, cfg, data, trainer, run_dir, test, out, labels, pred, pboxes, tboxes, ious,
            met, gen_seconds, load_before, load_after, hyperparameter_table) -> str:
    def path(name):
        return os.path.join(run_dir, name)

    te = data.extra["test_canvases"]
    n_val = 0 if data.val is None else len(data.val[1])
    rep = R.HTMLReport(f"localization — {recipe.description}",
                       f"{data.name} · {len(data.train[1]):,} train / {n_val:,} validation / "
                       f"{len(labels):,} test canvases · seed {cfg['seed']} · run directory "
                       f"{os.path.abspath(run_dir)}")
    rep.cards([("test boxes with IoU ≥ 0.5", f"{100 * test['iou50']:.2f} %"),
               ("class accuracy", f"{100 * test['acc']:.2f} %"),
               ("mean IoU", f"{test['iou']:.3f}"),
               ("training time", f"{trainer.train_seconds:.1f} s"),
               ("parameters", f"{trainer.model.num_parameters():,}")])
    rep.text(data.description)
    rep.section("Targets")
    rep.table([["share of test boxes with IoU ≥ 0.5", test["iou50"], f"≥ {TARGETS['iou50']:g}",
                "met" if met["iou50"] else "NOT met"],
               ["class accuracy", test["acc"], f"≥ {TARGETS['acc']:g}",
                "met" if met["acc"] else "NOT met"],
               ["mean IoU", test["iou"], "", ""], ["median IoU", test["iou_median"], "", ""],
               ["test loss", test["loss"], "", ""]],
              ["figure", "value", "target", "verdict"],
              f"Scored once on {len(labels):,} test canvases made from the 2,000 held-out test "
              "digits (fixed seed), after the last epoch.")

    n = min(32, len(labels))
    rep.section("Predicted and true boxes")
    png = R.plot_image_boxes(te.images[:n], path("boxes.png"), pboxes[:n], tboxes[:n],
                             titles=[f"{p}{'' if p == t else f' (true {t})'} · {v:.2f}"
                                     for p, t, v in zip(pred[:n], labels[:n], ious[:n],
                                                        strict=True)],
                             good=ious[:n] >= 0.5, title_good=pred[:n] == labels[:n])
    rep.figure(png, f"The first {n} test canvases: the true tight box (dashed green) and the "
                    "predicted box (solid: blue when IoU ≥ 0.5, red otherwise), titled with "
                    "the predicted class (red, with the true class, when wrong) and the IoU.")
    worst = np.argsort(ious, kind="stable")[:min(16, len(ious))]
    png = R.plot_image_boxes(te.images[worst], path("worst_boxes.png"), pboxes[worst],
                             tboxes[worst], titles=[f"{pred[i]} · IoU {ious[i]:.2f}"
                                                    for i in worst],
                             good=ious[worst] >= 0.5, title_good=pred[worst] == labels[worst])
    rep.figure(png, "The test canvases with the lowest IoU.")

    rep.section("Where it works and where it fails")
    rep.figure(_plot_iou(ious, te.sizes, labels, pred, path("iou.png")),
               "Left: distribution of test IoU (the dashed line is the 0.5 criterion). Right: "
               "share of boxes with IoU ≥ 0.5 and class accuracy by the digit's pasted size.")
    rows = []
    for c in range(NUM_CLASSES):
        m = labels == c
        if m.any():
            rows.append([str(c), int(m.sum()), float((pred[m] == c).mean()),
                         float(ious[m].mean()), float((ious[m] >= 0.5).mean())])
    rep.table(rows, ["digit", "test canvases", "class accuracy", "mean IoU", "IoU ≥ 0.5"])
    cm = M.confusion_matrix(labels, pred, NUM_CLASSES)
    rep.figure(R.plot_confusion(cm, path("confusion.png"), data.class_names),
               "Confusion matrix of the class head on the test canvases.")

    if trainer.history:
        rep.section("Learning curves")
        rep.figure(R.plot_history(trainer.history, path("curves.png")),
                   "Loss (cross-entropy + box terms), class accuracy, mean IoU and IoU ≥ 0.5 "
                   "per epoch: training (running mean, training mode) and validation canvases.")
        last = trainer.history[-1]
        rep.table([[k, last[k]] for k in last if k.startswith(("train_", "val_"))],
                  ["final epoch", "value"])

    rep.section("Model")
    rep.text(f"{trainer.model.num_parameters():,} trainable parameters; loss = CE + "
             f"{cfg['lambda_box']:g}·smoothL1(px) + {cfg['lambda_iou']:g}·(1 − IoU); optimiser "
             f"{type(trainer.optimizer).__name__}"
             + (f", schedule {type(trainer.scheduler).__name__}" if trainer.scheduler else ""))
    rep.pre(repr(trainer.model))
    rep.section("Hyperparameters")
    hyperparameter_table(rep, cfg)
    rep.section("Run")
    steps = max(trainer.global_step, 1)
    rep.table([["making the canvases", f"{gen_seconds:.1f} s"],
               ["training", f"{trainer.train_seconds:.1f} s ({trainer.epoch} epochs, "
                            f"{trainer.global_step} steps, "
                            f"{1000 * trainer.train_seconds / steps:.1f} ms per step incl. "
                            "validation)"],
               ["load average (1/5/15 min) before / after", f"{load_before}  /  {load_after}"],
               ["machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, Python "
                           f"{platform.python_version()}, NumPy {np.__version__}"]], ["", ""],
              f"Re-score: tensorcalc evaluate {run_dir}")
    return rep.save(path("report.html"))


def _plot_iou(ious, sizes, labels, pred, path):
    fig = R.new_figure(11, 3.8)
    ax, bx = fig.subplots(1, 2)
    ax.hist(ious, bins=np.linspace(0, 1, 41), color=R.PALETTE["train"], alpha=0.85)
    ax.axvline(0.5, color=R.PALETTE["bad"], linestyle="--", linewidth=1.2)
    ax.set_xlabel("IoU (predicted, true)")
    ax.set_ylabel("test canvases")
    ax.set_title(f"IoU ≥ 0.5 for {100 * (ious >= 0.5).mean():.1f} %", fontsize=11)
    R.style_axes(ax)
    edges = np.unique(np.linspace(sizes.min(), sizes.max() + 1, 6).astype(int))
    centres, share, acc = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (sizes >= lo) & (sizes < hi)
        if m.any():
            centres.append(f"{lo}–{hi - 1}")
            share.append((ious[m] >= 0.5).mean())
            acc.append((pred[m] == labels[m]).mean())
    x = np.arange(len(centres))
    bx.bar(x - 0.2, share, width=0.4, color=R.PALETTE["train"], label="IoU ≥ 0.5")
    bx.bar(x + 0.2, acc, width=0.4, color=R.PALETTE["test"], label="class accuracy")
    bx.set_xticks(x)
    bx.set_xticklabels(centres, fontsize=9)
    bx.set_xlabel("digit side s (px)")
    bx.set_ylim(max(0.0, min(share + acc) - 0.1) if share else 0, 1.0)
    bx.legend(frameon=False, fontsize=8.5, loc="lower right")
    bx.set_title("by digit size", fontsize=11)
    R.style_axes(bx)
    return R.save_figure(fig, path)


register(Recipe(
    name="localization",
    description="object localisation: digit class + bounding box on 64×64 canvases (CNN)",
    defaults={"epochs": 12, "batch_size": 64, "lr": 2e-3, "optimizer": "adam",
              "schedule": "cosine", "dataset": "mnist10k", "val_fraction": 0.1,
              "copies": 2, "scale_min": 20, "scale_max": 40, "hidden": 128,
              "channels": (8, 16, 32, 64), "lambda_box": 0.05, "lambda_iou": 1.0, "digits": 0,
              "test_digits": 0},
    data=_data, model=_model, loss=_loss, metrics=_metrics, run=_run,
    help={"copies": "canvases per training digit (each at a fresh place and size)",
          "scale_min": "smallest pasted digit side (px)",
          "scale_max": "largest pasted digit side (px)",
          "hidden": "width of the shared fully connected layer",
          "channels": "channels of the stride-2 stem and of each conv-pool stage, e.g. 8,16,32,64",
          "lambda_box": "weight λ_box of the smooth-L1 box loss (pixels)",
          "lambda_iou": "weight λ_iou of the 1 − IoU loss",
          "digits": "use only this many training digits (0: all) — for quick checks",
          "test_digits": "use only this many test digits (0: all 2,000) — for quick checks",
          "val_fraction": "fraction of the training digits held out for validation canvases",
          "epochs": "passes over the training canvases"},
    choices={"dataset": ("mnist10k",)},
))
