"""Primitives only: each a class with its math docstring, forward, VJP and JVP, and a wrapper.

Importing this package registers every primitive in ``tensorcalc.autodiff.function.REGISTRY``.
"""

from . import linalg  # noqa: F401
from .affine import affine  # noqa: F401
from .arithmetic import (  # noqa: F401
    add,
    cast,
    div,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sub,
    where,
)
from .elementwise import (  # noqa: F401
    abs,
    cos,
    erf,
    exp,
    expm1,
    log,
    log1p,
    relu,
    sigmoid,
    sin,
    softplus,
    sqrt,
    tanh,
)
from .indexing import getitem, scatter_add, take  # noqa: F401
from .matmul import matmul  # noqa: F401
from .reduce import logsumexp, max, min, softmax_cross_entropy, sum  # noqa: F401
from .shape import (  # noqa: F401
    broadcast_to,
    concat,
    expand_dims,
    flip,
    pad,
    reshape,
    split,
    squeeze,
    stack,
    sum_to,
    swapaxes,
    transpose,
)
from .windows import fold, irfft2, rfft2, unfold  # noqa: F401
