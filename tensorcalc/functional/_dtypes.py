"""Input dtypes at the entry of layers and losses (cheap: one dtype test, never a scan).

The policy, the same for every layer family (linear, bilinear, conv, normalisation): **the
parameters decide the dtype.** An input of another real dtype (a float64 NumPy array into a
float32 model, or integer pixels) is cast to the parameters' dtype on entry — differentiably
between floats, so x̄ comes back in x's own dtype. Complex input is rejected with a named
TypeError (the library's layers and losses are real functions: it would otherwise flow through
and fail much later). Losses have no parameters: their input keeps its dtype, constant targets
are cast to it, and complex input or targets are rejected the same way.
"""

from __future__ import annotations

from .. import ops
from ..ops._util import data_of


def _complex(who, what, dtype):
    return TypeError(f"{who}: complex {what} ({dtype}) is not supported; the layers and losses "
                     f"are real functions: pass the real part, the magnitude, or real and "
                     f"imaginary parts as separate features")


def operand(x, like, who, what="input"):
    """``x`` as an input to parameters ``like``: cast to their dtype; complex rejected."""
    dt = getattr(data_of(x), "dtype", None)
    if dt is None:
        return x
    want = data_of(like).dtype
    if dt == want:
        return x
    if dt.kind == "c":
        raise _complex(who, what, dt)
    if dt.kind not in "fiub":
        raise TypeError(f"{who}: {what} of dtype {dt} is not numeric")
    return ops.cast(x, want)


def real(x, who, what="input"):
    """``x`` unchanged, or a TypeError naming ``who`` if it is complex."""
    dt = getattr(data_of(x), "dtype", None)
    if dt is not None and dt.kind == "c":
        raise _complex(who, what, dt)
    return x


def operand_or_real(x, params, who):
    """Cast ``x`` to the dtype of the first parameter that is not None; with none, only the
    complex check (the input's dtype is the computation's)."""
    for p in params:
        if p is not None:
            return operand(x, p, who)
    return real(x, who)
