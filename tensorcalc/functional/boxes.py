"""Axis-aligned bounding boxes: intersection over union, the usual conversions and a box loss.

Convention. A box is four numbers ``(x0, y0, x1, y1)`` on the last axis: the left, top, right
and bottom *edges* in continuous image coordinates (x to the right, y down), so a box covering
pixel columns c₀..c₁ and rows r₀..r₁ (inclusive) is ``(c₀, r₀, c₁ + 1, r₁ + 1)`` and its area is
the pixel count (c₁ − c₀ + 1)(r₁ − r₀ + 1). The centre form is ``(cx, cy, w, h)`` with
cx = (x0 + x1)/2, w = x1 − x0 (and likewise for y).

Intersection over union (Jaccard index) of boxes A and B:

    I = max(0, min(x1ᴬ, x1ᴮ) − max(x0ᴬ, x0ᴮ)) · max(0, min(y1ᴬ, y1ᴮ) − max(y0ᴬ, y0ᴮ))
    IoU(A, B) = I / (|A| + |B| − I)          ∈ [0, 1],   |A| = (x1ᴬ − x0ᴬ)(y1ᴬ − y0ᴬ)

Every function broadcasts over the leading axes (``a`` (..., 4) with ``b`` (..., 4)) and is
written with the library's polymorphic primitives (``minimum``, ``maximum``, ``relu``,
arithmetic): on NumPy arrays it returns NumPy arrays; on Tensors it records a graph, so
``1 − iou(pred, true)`` is a differentiable loss (a composite: no derivative code here). The
derivative follows the primitives' conventions at the kinks: relu′(0) = 0 (boxes that just
touch pass no gradient through the overlap), and ties in min/max split the gradient equally.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import Tensor
from .losses import cross_entropy, smooth_l1_loss

__all__ = ["iou", "pairwise_iou", "box_area", "xyxy_to_cxcywh", "cxcywh_to_xyxy",
           "scale_boxes", "box_loss", "class_box_loss"]


def _check(who: str, box, name: str = "boxes"):
    shape = tuple(box.shape) if hasattr(box, "shape") else np.shape(box)
    if len(shape) == 0 or shape[-1] != 4:
        raise ValueError(f"{who}: {name} must have 4 coordinates on the last axis, shape "
                         f"(..., 4), got shape {shape}")


def _arr(box):
    return box if isinstance(box, Tensor) else np.asarray(box)


def _coords(box):
    return box[..., 0], box[..., 1], box[..., 2], box[..., 3]


def _stack(parts):
    if any(isinstance(p, Tensor) for p in parts):
        return ops.stack(list(parts), axis=-1)
    return np.stack(parts, axis=-1)


def box_area(boxes):
    """|B| = (x1 − x0)(y1 − y0) for boxes (..., 4) in (x0, y0, x1, y1) form -> (...)."""
    b = _arr(boxes)
    _check("box_area", b)
    x0, y0, x1, y1 = _coords(b)
    return (x1 - x0) * (y1 - y0)


def iou(a, b, eps: float = 1e-9):
    """Intersection over union of boxes ``a`` and ``b`` (x0, y0, x1, y1), elementwise with
    broadcasting: (..., 4) and (..., 4) -> (...).

    IoU = I / (|A| + |B| − I) with I the area of the intersection (see the module docstring);
    1 for identical boxes, 0 for disjoint or merely touching ones. ``eps`` is added to the
    union so that two empty boxes give 0 rather than 0/0. Differentiable on Tensors.
    """
    a, b = _arr(a), _arr(b)
    _check("iou", a, "a")
    _check("iou", b, "b")
    ax0, ay0, ax1, ay1 = _coords(a)
    bx0, by0, bx1, by1 = _coords(b)
    iw = ops.relu(ops.minimum(ax1, bx1) - ops.maximum(ax0, bx0))
    ih = ops.relu(ops.minimum(ay1, by1) - ops.maximum(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / (union + eps)


def pairwise_iou(a, b, eps: float = 1e-9):
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4) -> (N, M)."""
    a, b = _arr(a), _arr(b)
    for name, x in (("a", a), ("b", b)):
        if len(x.shape) != 2 or x.shape[-1] != 4:
            raise ValueError(f"pairwise_iou: {name} must have shape (N, 4), got "
                             f"{tuple(x.shape)}")
    return iou(a[:, None, :], b[None, :, :], eps)


def xyxy_to_cxcywh(boxes):
    """(x0, y0, x1, y1) -> (cx, cy, w, h) = ((x0 + x1)/2, (y0 + y1)/2, x1 − x0, y1 − y0)."""
    b = _arr(boxes)
    _check("xyxy_to_cxcywh", b)
    x0, y0, x1, y1 = _coords(b)
    return _stack([(x0 + x1) * 0.5, (y0 + y1) * 0.5, x1 - x0, y1 - y0])


def cxcywh_to_xyxy(boxes):
    """(cx, cy, w, h) -> (x0, y0, x1, y1) = (cx − w/2, cy − h/2, cx + w/2, cy + h/2)."""
    b = _arr(boxes)
    _check("cxcywh_to_xyxy", b)
    cx, cy, w, h = _coords(b)
    return _stack([cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5])


def scale_boxes(boxes, sx: float, sy: float | None = None):
    """Boxes with x-coordinates times ``sx`` and y-coordinates times ``sy`` (default ``sx``):
    normalise pixel boxes with ``1/W, 1/H``, or back with ``W, H``. Works in either form."""
    b = _arr(boxes)
    _check("scale_boxes", b)
    sy = sx if sy is None else sy
    factors = np.array([sx, sy, sx, sy], dtype=b.dtype if b.dtype.kind == "f" else np.float64)
    return b * factors


def box_loss(pred, target, *, size: float = 1.0, lambda_box: float = 1.0,
             lambda_iou: float = 1.0, beta: float = 1.0) -> dict:
    """Regression loss of boxes in centre form (cx, cy, w, h), both (N, 4) in units of
    ``size`` (e.g. normalised by a 64-pixel canvas: ``size=64`` measures errors in pixels):

        box = (1/4N) Σ smoothL1_β(size·b̂ − size·b)          (Huber error of the four numbers)
        iou = 1 − (1/N) Σ IoU(b̂, b)                          (overlap, scale-free)

    Returns ``{"box": λ_box · box, "overlap": λ_iou · iou}`` (a term with weight 0 is left
    out; "overlap" rather than "iou" so that the loss term is not confused with the IoU metric).
    The smooth-L1 term is robust to the early huge errors and quadratic near the answer;
    1 − IoU is differentiable almost everywhere as a composite of min, max and relu
    (relu′(0) = 0: a box not overlapping the truth gets its gradient from the smooth-L1 term).
    """
    b = _arr(pred)
    tb = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=b.dtype))
    parts = {}
    if lambda_box:
        parts["box"] = lambda_box * smooth_l1_loss(b * float(size), tb * float(size), beta=beta)
    if lambda_iou:
        parts["overlap"] = lambda_iou * (1.0 - iou(cxcywh_to_xyxy(b), cxcywh_to_xyxy(tb)).mean())
    return parts


def class_box_loss(logits, box, labels, true_box, *, size: float = 1.0,
                   lambda_box: float = 1.0, lambda_iou: float = 1.0) -> dict:
    """Loss of a detector head that reads one object: class logits (N, C) and a box (N, 4) in
    centre form, against integer ``labels`` (N,) and ``true_box`` (N, 4):

        L = CE(z, y) + λ_box · box + λ_iou · iou          (terms of :func:`box_loss`)

    Returns the named parts ``{"loss": L, "ce": CE, "box": ..., "overlap": ...}``; ``"loss"`` is
    the one optimised, the others are logged.
    """
    ce = cross_entropy(logits, labels)
    parts = box_loss(box, true_box, size=size, lambda_box=lambda_box, lambda_iou=lambda_iou)
    total = ce
    for v in parts.values():
        total = total + v
    return {"loss": total, "ce": ce, **parts}
