"""Bounding boxes for training and reports: the box math of :mod:`tensorcalc.functional.boxes`
(IoU, conversions — differentiable composites on Tensors, plain on NumPy arrays) and the NumPy
helpers that make boxes from data: :func:`clip_boxes`, :func:`boxes_from_mask`.

Convention: a box is ``(x0, y0, x1, y1)``, the left, top, right and bottom *edges* (see
:mod:`tensorcalc.functional.boxes`).
"""

from __future__ import annotations

import numpy as np

from ..functional.boxes import (  # noqa: F401  (the box math, for metrics and reports)
    _check,
    box_area,
    cxcywh_to_xyxy,
    iou,
    pairwise_iou,
    scale_boxes,
    xyxy_to_cxcywh,
)

__all__ = ["iou", "pairwise_iou", "box_area", "xyxy_to_cxcywh", "cxcywh_to_xyxy",
           "scale_boxes", "clip_boxes", "boxes_from_mask"]


def clip_boxes(boxes, width: float, height: float):
    """(x0, y0, x1, y1) boxes clipped to the image [0, W] × [0, H] (NumPy)."""
    b = np.asarray(boxes)
    _check("clip_boxes", b)
    hi = np.array([width, height, width, height], dtype=b.dtype if b.dtype.kind == "f"
                  else np.float64)
    return np.clip(b, 0, hi)


def boxes_from_mask(mask) -> np.ndarray:
    """The tight box (x0, y0, x1, y1) around the True pixels of each mask (..., H, W) -> (..., 4),
    in edge coordinates: columns c₀..c₁ and rows r₀..r₁ give (c₀, r₀, c₁ + 1, r₁ + 1). A mask
    with no True pixel gives (0, 0, 0, 0)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim < 2:
        raise ValueError(f"boxes_from_mask: expected masks (..., H, W), got shape {m.shape}")
    h, w = m.shape[-2:]
    cols, rows = m.any(axis=-2), m.any(axis=-1)      # (..., W), (..., H)
    any_ = cols.any(axis=-1)
    c0 = np.argmax(cols, axis=-1)
    c1 = w - np.argmax(cols[..., ::-1], axis=-1)
    r0 = np.argmax(rows, axis=-1)
    r1 = h - np.argmax(rows[..., ::-1], axis=-1)
    out = np.stack([c0, r0, c1, r1], axis=-1).astype(np.float32)
    out[~any_] = 0
    return out
