"""Metrics: how good a model's outputs are, as functions and as streaming accumulators.

Conventions. ``output`` is what the model returns: *logits* for classification — shape (N, C)
for C ≥ 2 classes (the prediction is ŷ = argmax_c z_c), shape (N,) or (N, 1) for a binary
model with one logit (ŷ = 1[z > 0], i.e. σ(z) > ½) — and the predicted value for regression.
``target`` holds integer labels (or one-hot rows, which are argmax-ed) for classification and
real values for regression. Everything here is NumPy; Tensors are accepted and read through.

Functions (one shot, on whole arrays): :func:`accuracy`, :func:`confusion_matrix`,
:func:`precision_recall_f1`, :func:`mean_squared_error`, :func:`r2_score`.

Streaming metrics (used by the :class:`~tensorcalc.train.Trainer`, one ``update`` per batch,
exact over an epoch — the result equals the function applied to the concatenated batches):
:class:`Accuracy`, :class:`ConfusionMatrix` (precision / recall / F1 per class and macro),
:class:`MeanSquaredError`, :class:`R2Score`, and for a model with a class head and a box head
:class:`ClassAccuracy` and :class:`BoxIoU`. Each has ``name``, ``higher_is_better``,
``reset()``, ``update(output, target)``, ``compute() -> dict[str, float]`` and
``state_dict()`` / ``load_state_dict()`` (so a run resumed mid-epoch reports the same figures).
"""

from __future__ import annotations

import copy

import numpy as np

from ..backend import to_numpy

__all__ = [
    "Metric", "Accuracy", "ConfusionMatrix", "MeanSquaredError", "R2Score", "accuracy",
    "confusion_matrix", "precision_recall_f1", "mean_squared_error", "r2_score",
    "predicted_labels", "true_labels", "get_metric", "ClassAccuracy", "BoxIoU",
]


def _np(x) -> np.ndarray:
    return to_numpy(getattr(x, "data", x)) if not isinstance(x, np.ndarray) else x


def predicted_labels(output) -> np.ndarray:
    """Class predictions from logits: argmax over the last axis for (N, C) with C ≥ 2, else the
    sign of the single logit, 1[z > 0] (the decision σ(z) > ½)."""
    z = _np(output)
    if z.ndim >= 2 and z.shape[-1] > 1:
        return z.argmax(axis=-1)
    return (z.reshape(len(z)) > 0).astype(np.int64)


def true_labels(target) -> np.ndarray:
    """Integer labels from integer labels, or from one-hot / probability rows (argmax)."""
    t = _np(target)
    if t.ndim >= 2 and t.shape[-1] > 1:
        return t.argmax(axis=-1)
    t = t.reshape(len(t))
    if t.dtype.kind == "f":
        if not np.all(t == np.round(t)):
            raise ValueError("metrics: classification targets must be integer labels, got "
                             "non-integer floats")
        t = t.astype(np.int64)
    return t


def _check_len(who, a, b):
    if len(a) != len(b):
        raise ValueError(f"{who}: output has {len(a)} rows but target has {len(b)}")


def accuracy(output, target) -> float:
    """Fraction of correct predictions: (1/N) Σᵢ 1[ŷᵢ = yᵢ] (ŷ from logits, see module doc)."""
    p, t = predicted_labels(output), true_labels(target)
    _check_len("accuracy", p, t)
    return float((p == t).mean()) if len(t) else float("nan")


def confusion_matrix(target, predicted, num_classes: int | None = None) -> np.ndarray:
    """M[i, j] = #{n : yₙ = i and ŷₙ = j} — rows are true classes, columns predictions.

    ``target`` and ``predicted`` are integer labels (use :func:`predicted_labels` on logits).
    """
    t = np.asarray(true_labels(target), dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64).reshape(-1)
    _check_len("confusion_matrix", p, t)
    k = num_classes if num_classes is not None else int(max(t.max(initial=-1),
                                                            p.max(initial=-1)) + 1)
    for name, a in (("target", t), ("predicted", p)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"confusion_matrix: {name} labels must lie in [0, {k}), got "
                             f"range [{a.min()}, {a.max()}]")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _prf_from_confusion(m: np.ndarray):
    tp = np.diag(m).astype(np.float64)
    pred = m.sum(axis=0).astype(np.float64)  # column sums: predicted as class j
    true = m.sum(axis=1).astype(np.float64)  # row sums: truly class i
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return precision, recall, f1, true.astype(np.int64)


def precision_recall_f1(target, predicted, num_classes: int | None = None) -> dict:
    """Per-class precision, recall and F1 from the confusion matrix M:

        precision_c = M[c, c] / Σᵢ M[i, c]     (of those predicted c, the fraction truly c)
        recall_c    = M[c, c] / Σⱼ M[c, j]     (of those truly c, the fraction found)
        F1_c        = 2 P_c R_c / (P_c + R_c)  (harmonic mean)

    A 0/0 (class never predicted, or absent) counts as 0. Returns ``{"precision", "recall",
    "f1", "support"}`` arrays of length C plus the unweighted (macro) means ``macro_precision``,
    ``macro_recall``, ``macro_f1``.
    """
    m = confusion_matrix(target, predicted, num_classes)
    p, r, f, s = _prf_from_confusion(m)
    return {"precision": p, "recall": r, "f1": f, "support": s,
            "macro_precision": float(p.mean()), "macro_recall": float(r.mean()),
            "macro_f1": float(f.mean())}


def _as_regression(output, target):
    y, t = _np(output).astype(np.float64), _np(target).astype(np.float64)
    if y.size != t.size:
        raise ValueError(f"regression metric: output of shape {y.shape} and target of shape "
                         f"{t.shape} hold different numbers of values")
    return y.reshape(-1), t.reshape(-1)


def mean_squared_error(output, target) -> float:
    """MSE = (1/N) Σᵢ (ŷᵢ − yᵢ)² (over all elements)."""
    y, t = _as_regression(output, target)
    return float(np.mean((y - t) ** 2))


def r2_score(output, target) -> float:
    """Coefficient of determination R² = 1 − Σ(ŷ − y)² / Σ(y − ȳ)² (1 is perfect, 0 is as good
    as predicting the mean; negative is worse). NaN when the targets are constant."""
    y, t = _as_regression(output, target)
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return 1.0 - float(np.sum((y - t) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


# ---------------------------------------------------------------------------------- streaming
class Metric:
    """A streaming metric: ``reset``, ``update(output, target)`` per batch, ``compute``.

    Subclasses keep their running sums in instance attributes listed in ``_state`` (numbers or
    arrays), which is what ``state_dict`` saves.
    """

    name = "metric"
    higher_is_better = True
    _state: tuple = ()

    def __init__(self):
        self.reset()

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError  # abstract: subclasses define it

    def update(self, output, target) -> None:  # pragma: no cover - abstract
        raise NotImplementedError  # abstract: subclasses define it

    def compute(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError  # abstract: subclasses define it

    def state_dict(self) -> dict:
        return {k: copy.deepcopy(getattr(self, k)) for k in self._state}

    def load_state_dict(self, d: dict) -> None:
        for k in self._state:
            v = d[k]
            setattr(self, k, np.array(v) if isinstance(getattr(self, k), np.ndarray) else v)

    def clone(self) -> Metric:
        """A fresh copy (same settings, reset)."""
        m = copy.deepcopy(self)
        m.reset()
        return m

    def __repr__(self):
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    """Running accuracy: correct / seen (see :func:`accuracy`). Key: ``acc``."""

    name = "acc"
    _state = ("correct", "total")

    def reset(self):
        self.correct = 0
        self.total = 0

    def update(self, output, target):
        p, t = predicted_labels(output), true_labels(target)
        _check_len("Accuracy", p, t)
        self.correct += int((p == t).sum())
        self.total += len(t)

    def compute(self):
        return {"acc": self.correct / self.total if self.total else float("nan")}


class ConfusionMatrix(Metric):
    """Running confusion matrix over ``num_classes`` classes; ``compute`` gives the macro
    precision / recall / F1 (keys ``precision``, ``recall``, ``f1``); :meth:`per_class` the
    per-class arrays and ``matrix`` the counts (see :func:`precision_recall_f1`)."""

    name = "confusion"
    _state = ("matrix",)

    def __init__(self, num_classes: int):
        if int(num_classes) < 2:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        super().__init__()

    def reset(self):
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, output, target):
        self.matrix += confusion_matrix(target, predicted_labels(output), self.num_classes)

    def per_class(self) -> dict:
        p, r, f, s = _prf_from_confusion(self.matrix)
        return {"precision": p, "recall": r, "f1": f, "support": s}

    def compute(self):
        d = self.per_class()
        return {"precision": float(d["precision"].mean()), "recall": float(d["recall"].mean()),
                "f1": float(d["f1"].mean())}

    def __repr__(self):
        return f"ConfusionMatrix(num_classes={self.num_classes})"


class MeanSquaredError(Metric):
    """Running MSE (see :func:`mean_squared_error`). Key: ``mse``."""

    name = "mse"
    higher_is_better = False
    _state = ("sse", "count")

    def reset(self):
        self.sse = 0.0
        self.count = 0

    def update(self, output, target):
        y, t = _as_regression(output, target)
        self.sse += float(np.sum((y - t) ** 2))
        self.count += y.size

    def compute(self):
        return {"mse": self.sse / self.count if self.count else float("nan")}


class R2Score(Metric):
    """Running R² from the sums Σ(ŷ − y)², Σy, Σy² and N (Σ(y − ȳ)² = Σy² − (Σy)²/N). Key:
    ``r2``."""

    name = "r2"
    _state = ("sse", "sy", "syy", "count")

    def reset(self):
        self.sse = 0.0
        self.sy = 0.0
        self.syy = 0.0
        self.count = 0

    def update(self, output, target):
        y, t = _as_regression(output, target)
        self.sse += float(np.sum((y - t) ** 2))
        self.sy += float(t.sum())
        self.syy += float(np.dot(t, t))
        self.count += t.size

    def compute(self):
        if not self.count:
            return {"r2": float("nan")}
        ss_tot = self.syy - self.sy * self.sy / self.count
        return {"r2": 1.0 - self.sse / ss_tot if ss_tot > 0 else float("nan")}


def _part(x, index):
    """Output ``index`` of a model with several outputs (a tuple/list), or the one output."""
    return x[index] if isinstance(x, (tuple, list)) else x


class ClassAccuracy(Metric):
    """Accuracy of one class head among several outputs: argmax of output ``output`` (logits
    (N, C)) against column ``column`` of the target (N, K) (integer labels stored as floats).
    For a detector returning (logits, box) with targets ``[label, box...]``. Key: ``acc``."""

    name = "acc"
    _state = ("correct", "total")

    def __init__(self, output: int = 0, column: int = 0):
        self.output, self.column = output, column
        super().__init__()

    def reset(self):
        self.correct, self.total = 0, 0

    def update(self, output, target):
        z = _np(_part(output, self.output))
        labels = _np(target)[:, self.column].astype(np.int64)
        _check_len("ClassAccuracy", z, labels)
        self.correct += int((z.argmax(axis=-1) == labels).sum())
        self.total += len(labels)

    def compute(self):
        return {"acc": self.correct / self.total if self.total else float("nan")}


class BoxIoU(Metric):
    """Intersection over union of predicted and true boxes, both in centre form (cx, cy, w, h):
    the box is output ``output`` (N, 4), the truth columns ``columns`` of the target. Keys:
    ``iou`` (the mean) and ``iou50`` (the share with IoU ≥ ``threshold``, the usual "correct
    localisation" criterion at 0.5)."""

    name = "iou"
    _state = ("iou_sum", "hits", "total")

    def __init__(self, output: int = 1, columns=(1, 5), threshold: float = 0.5):
        self.output, self.columns, self.threshold = output, tuple(columns), threshold
        super().__init__()

    def reset(self):
        self.iou_sum, self.hits, self.total = 0.0, 0, 0

    def update(self, output, target):
        from .boxes import cxcywh_to_xyxy, iou

        b = np.asarray(_np(_part(output, self.output)), dtype=np.float64)
        lo, hi = self.columns
        t = np.asarray(_np(target)[:, lo:hi], dtype=np.float64)
        _check_len("BoxIoU", b, t)
        v = iou(cxcywh_to_xyxy(b), cxcywh_to_xyxy(t))
        self.iou_sum += float(v.sum())
        self.hits += int((v >= self.threshold).sum())
        self.total += len(v)

    def compute(self):
        n = self.total
        return {"iou": self.iou_sum / n if n else float("nan"),
                "iou50": self.hits / n if n else float("nan")}


_BY_NAME = {"acc": Accuracy, "accuracy": Accuracy, "mse": MeanSquaredError,
            "r2": R2Score}


def get_metric(spec) -> Metric:
    """A Metric from an instance or a name (``"acc"``/``"accuracy"``, ``"mse"``, ``"r2"``)."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str) and spec.lower() in _BY_NAME:
        return _BY_NAME[spec.lower()]()
    raise ValueError(f"unknown metric {spec!r}; expected a Metric or one of "
                     f"{sorted(_BY_NAME)}")
