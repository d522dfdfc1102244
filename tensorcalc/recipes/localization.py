"""localization — find and read one digit on a 64×64 canvas: class + bounding box from one CNN.

Data: :mod:`tensorcalc.recipes._canvases` (one MNIST-10k digit pasted at a random place and
size; the truth is its class and its tight bounding box). Model:
:class:`~tensorcalc.models.LocalizationNet`, a CNN trunk with two heads returning two outputs,
class logits z ∈ ℝ¹⁰ and a box b̂ = σ(u) ∈ (0, 1)⁴ read as the normalised centre form
(cx, cy, w, h)/64; the targets are (N, 5) rows ``[label, cx/64, cy/64, w/64, h/64]``.

Loss (:func:`tensorcalc.functional.boxes.class_box_loss`, a composite), logged by its parts:

    L = CE(z, y) + λ_box · mean_k smoothL1_β=1px(64·b̂_k − 64·b_k) + λ_iou · (1 − IoU(b̂, b))

Metrics: classification accuracy, the mean IoU, and ``iou50`` — the share of boxes with
IoU ≥ 0.5 (the usual "correct localisation" criterion). Targets: ≥ 95 % accuracy and ≥ 90 %
of test boxes with IoU ≥ 0.5.
"""

from __future__ import annotations

import numpy as np

from ..functional.boxes import class_box_loss
from ..models import LocalizationNet
from ..train import boxes as B
from ..train import metrics as M
from ..train import report as R
from . import Recipe, register
from ._canvases import CANVAS, NUM_CLASSES, TARGETS, canvas_data

__all__ = ["localization_loss", "decode_boxes", "TARGETS"]


def localization_loss(lambda_box: float = 0.05, lambda_iou: float = 1.0, size: int = CANVAS):
    """``loss((logits, box), target)`` -> ``{"loss", "ce", "box", "overlap"}`` for targets
    (N, 5) ``[label, cx, cy, w, h]`` (normalised): :func:`class_box_loss` in pixel units."""

    def loss(out, target):
        z, b = out
        t = np.asarray(getattr(target, "data", target))
        if t.ndim != 2 or t.shape[1] != 5:
            raise ValueError(f"localization: targets must be (N, 5) rows [label, cx, cy, w, h], "
                             f"got shape {t.shape}")
        return class_box_loss(z, b, t[:, 0].astype(np.int64), t[:, 1:], size=size,
                              lambda_box=lambda_box, lambda_iou=lambda_iou)

    return loss


def decode_boxes(box, size: int = CANVAS) -> np.ndarray:
    """Box outputs (N, 4) normalised (cx, cy, w, h) -> (x0, y0, x1, y1) in pixels."""
    return B.cxcywh_to_xyxy(np.asarray(box, dtype=np.float64) * size)


def _model(cfg, data, rng):
    return LocalizationNet(NUM_CLASSES, hidden=cfg["hidden"], channels=cfg["channels"], rng=rng)


def _loss(cfg, data):
    return localization_loss(cfg["lambda_box"], cfg["lambda_iou"])


def _metrics(cfg, data):
    return [M.ClassAccuracy(output=0, column=0), M.BoxIoU(output=1, columns=(1, 5))]


def _figures(ctx) -> list:
    """Predicted and true boxes (first and worst test canvases), IoU by digit size, and the
    class head's confusion matrix."""
    te = ctx.data.extra["test_canvases"]
    (z, box), tgt = ctx.outputs, ctx.targets
    labels, pred = tgt[:, 0].astype(np.int64), z.argmax(1)
    pboxes = decode_boxes(box)
    tboxes = decode_boxes(tgt[:, 1:])
    ious = B.iou(pboxes, tboxes)
    n = min(32, len(labels))
    out = [(R.plot_image_boxes(te.images[:n], ctx.path("boxes.png"), pboxes[:n], tboxes[:n],
                               titles=[f"{p}{'' if p == t else f' (true {t})'} · {v:.2f}"
                                       for p, t, v in zip(pred[:n], labels[:n], ious[:n],
                                                          strict=True)],
                               good=ious[:n] >= 0.5, title_good=pred[:n] == labels[:n]),
            f"The first {n} test canvases: the true tight box (dashed green) and the predicted "
            "box (solid: blue when IoU ≥ 0.5, red otherwise), titled with the predicted class "
            "(red, with the true class, when wrong) and the IoU.")]
    worst = np.argsort(ious, kind="stable")[:min(16, len(ious))]
    out.append((R.plot_image_boxes(te.images[worst], ctx.path("worst_boxes.png"),
                                   pboxes[worst], tboxes[worst],
                                   titles=[f"{pred[i]} · IoU {ious[i]:.2f}" for i in worst],
                                   good=ious[worst] >= 0.5,
                                   title_good=pred[worst] == labels[worst]),
                "The test canvases with the lowest IoU."))
    met = {k: ctx.test.get(k, float("nan")) >= v for k, v in TARGETS.items()}
    out.append((_plot_iou(ious, te.sizes, labels, pred, ctx.path("iou.png")),
                "Left: distribution of test IoU (the dashed line is the 0.5 criterion). Right: "
                "share of boxes with IoU ≥ 0.5 and class accuracy by the digit's pasted size. "
                f"Targets: IoU ≥ 0.5 for ≥ {100 * TARGETS['iou50']:.0f} % of boxes "
                f"({'met' if met['iou50'] else 'NOT met'}), class accuracy ≥ "
                f"{100 * TARGETS['acc']:.0f} % ({'met' if met['acc'] else 'NOT met'})."))
    cm = M.confusion_matrix(labels, pred, NUM_CLASSES)
    out.append((R.plot_confusion(cm, ctx.path("confusion.png"), ctx.data.class_names),
                "Confusion matrix of the class head on the test canvases."))
    return out


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
    description="object localisation: class + bounding box of one digit (CNN, two heads)",
    defaults={"epochs": 12, "batch_size": 64, "lr": 2e-3, "optimizer": "adam",
              "schedule": "cosine", "dataset": "mnist10k", "val_fraction": 0.1,
              "copies": 2, "scale_min": 20, "scale_max": 40, "hidden": 128,
              "channels": (8, 16, 32, 64), "lambda_box": 0.05, "lambda_iou": 1.0, "digits": 0,
              "test_digits": 0},
    data=canvas_data, model=_model, loss=_loss, metrics=_metrics, figures=_figures,
    headline=("iou50", "test boxes with IoU ≥ 0.5"),
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
