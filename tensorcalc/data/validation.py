"""Checks on data before training: real numbers, finite features, labels in range.

Errors name the data set and the first offending row, e.g. ``mnist10k: row 17 contains NaN/Inf``,
so a user can find the bad example instead of chasing a NaN loss. They raise :class:`DataError`
(a ``ValueError``), which the command line prints as one line.

Settings helpers (:func:`check_fraction`, :func:`check_at_least`, :func:`check_widths`) check a
named setting and say what was expected, for pipelines that validate before touching the disk.
"""

from __future__ import annotations

import numpy as np

from .dataset import as_array

__all__ = ["DataError", "check_numeric", "check_finite", "check_labels", "check_fraction",
           "check_at_least", "check_widths"]


class DataError(ValueError):
    """Data (a data set, a batch, a file of inputs) that cannot be used — text, complex
    numbers, NaN/Inf (not a divergence: no learning rate fixes it), labels out of range; the
    message names the data and the row."""


_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python objects", "V": "records (structured)",
               "M": "dates", "m": "time spans", "c": "complex numbers"}


def check_numeric(x, name: str = "data", *, allow_empty: bool = False):
    """Raise :class:`DataError` unless ``x`` is a non-empty array of real numbers (bool, integer
    or floating point); return it as a NumPy array.

    Complex values are refused, not cast: dropping the imaginary part would be a silent wrong
    answer. Text, objects, records and dates are refused with their kind named.
    """
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: not an array of numbers ({e})") from None
    if a.dtype.kind not in "biuf":
        what = _KIND_NAMES.get(a.dtype.kind, f"dtype {a.dtype}")
        raise DataError(f"{name}: holds {what} (dtype {a.dtype}); expected real numbers")
    if a.size == 0 and not allow_empty:
        raise DataError(f"{name}: holds no values (shape {a.shape})")
    return a


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
        raise DataError(f"{name}: value is {a.item()} (contains NaN/Inf)")
    bad_rows = ~finite.reshape(len(a), -1).all(axis=1)
    row = int(np.argmax(bad_rows))
    count = int(bad_rows.sum())
    bad = a[row][~finite[row]].flat[0] if a.ndim > 1 else a[row]
    raise DataError(f"{name}: row {row} contains NaN/Inf (first bad value {bad}; "
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
            raise DataError(f"{name}: label at row {row} is not a whole number "
                             f"({a.reshape(len(a), -1)[row][0] if a.ndim else a.item()})")
    elif a.dtype.kind not in "iu":
        raise DataError(f"{name}: expected integer class labels, got dtype {a.dtype}")
    out = (a < 0) | (a >= num_classes)
    if out.any():
        flat = out.reshape(len(a), -1) if a.ndim else out.reshape(1, 1)
        row = int(np.argmax(flat.any(axis=1)))
        value = (a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1))[row][flat[row]][0]
        raise DataError(f"{name}: label {value} at row {row} is out of range "
                         f"[0, {num_classes}) ({int(flat.any(axis=1).sum())} rows affected)")
    return y


# ------------------------------------------------------------------------------ settings
def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and bool(np.isfinite(v))


def check_fraction(value, name: str, *, closed: bool = False):
    """Raise ``ValueError`` unless ``value`` lies in [0, 1) ([0, 1] with ``closed``), e.g. a
    dropout probability (1 would drop every unit) or a held-out fraction; return it."""
    ok = _is_real(value) and 0 <= value and (value <= 1 if closed else value < 1)
    if not ok:
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")
    return value


def check_at_least(value, name: str, low=0, *, integer: bool = False):
    """Raise ``ValueError`` unless ``value`` is a finite number (an integer with ``integer``)
    >= ``low``, e.g. a shift in pixels (>= 0) or a channel count (>= 1); return it."""
    ok = _is_real(value) and value >= low
    if integer:
        ok = ok and isinstance(value, (int, np.integer))
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {low}, got {value!r}")
    return value


def check_widths(value, name: str, *, allow_empty: bool = True):
    """Raise ``ValueError`` unless ``value`` is a sequence of integer layer widths >= 1 (e.g.
    hidden sizes ``(256, 128)``; empty means no hidden layer unless ``allow_empty`` is off);
    return it as a tuple."""
    seq = (value,) if isinstance(value, (int, np.integer)) else value
    ok = isinstance(seq, (tuple, list)) and (allow_empty or len(seq) > 0) and all(
        isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in seq)
    if not ok:
        shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else repr(value)
        raise ValueError(f"{name} must be widths >= 1 like 256,128, got {shown}")
    return tuple(int(w) for w in seq)
