"""Checks on data before training: finite features, labels in range.

Errors name the data set and the first offending row, e.g. ``mnist10k: row 17 contains NaN/Inf``,
so a user can find the bad example instead of chasing a NaN loss.
"""

from __future__ import annotations

import numpy as np

from .dataset import as_array

__all__ = ["check_finite", "check_labels"]


def check_finite(x, name: str = "data"):
    """Raise ValueError unless every entry of ``x`` is finite; return ``x`` unchanged.

    Rows are indexed along axis 0. Integer and boolean arrays are finite by construction.
    """
    a = as_array(x, name)
    if a.dtype.kind not in "fc" or a.size == 0:
        return x
    finite = np.isfinite(a)
    if finite.all():
        return x
    if a.ndim == 0:
        raise ValueError(f"{name}: value is {a.item()} (contains NaN/Inf)")
    bad_rows = ~finite.reshape(len(a), -1).all(axis=1)
    row = int(np.argmax(bad_rows))
    count = int(bad_rows.sum())
    bad = a[row][~finite[row]].flat[0] if a.ndim > 1 else a[row]
    raise ValueError(f"{name}: row {row} contains NaN/Inf (first bad value {bad}; "
                     f"{count} of {len(a)} rows affected)")


def check_labels(y, num_classes: int, name: str = "labels"):
    """Raise ValueError unless ``y`` holds integer class labels in [0, num_classes).

    Float labels are accepted only when every value is a whole number. Returns ``y`` unchanged.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"{name}: num_classes must be a positive integer, got {num_classes!r}")
    a = as_array(y, name)
    if a.size == 0:
        return y
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind == "f":
        check_finite(a, name)
        whole = a == np.round(a)
        if not whole.all():
            row = int(np.argmax(~whole.reshape(len(a), -1).all(axis=1))) if a.ndim else 0
            raise ValueError(f"{name}: label at row {row} is not a whole number "
                             f"({a.reshape(len(a), -1)[row][0] if a.ndim else a.item()})")
    elif a.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer class labels, got dtype {a.dtype}")
    out = (a < 0) | (a >= num_classes)
    if out.any():
        flat = out.reshape(len(a), -1) if a.ndim else out.reshape(1, 1)
        row = int(np.argmax(flat.any(axis=1)))
        value = (a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1))[row][flat[row]][0]
        raise ValueError(f"{name}: label {value} at row {row} is out of range "
                         f"[0, {num_classes}) ({int(flat.any(axis=1).sum())} rows affected)")
    return y
