"""Primitives only: each a class with its math docstring, forward, VJP and JVP, and its wrapper
directly below it.

Importing this package registers every primitive in ``tensorcalc.autodiff.function.REGISTRY``.

**The export lists are generated.** A wrapper decorated with :func:`public` (from ``_util``)
becomes ``tc.ops.<name>`` and ``tc.<name>``; ``@public(method=True)`` also makes it the Tensor
method ``t.<name>(...)``; ``@public(namespace="linalg")`` puts it in ``tc.linalg`` instead. So
adding a public op is three edits: the class, its decorated wrapper directly below it, and one
spec (with its special values) in tests/op_db.py. Nothing here, in ``tensorcalc/__init__.py``
or in ``tensor.py`` names individual ops. (A new *module* of ops is imported once below.)
"""

from . import (  # noqa: F401  (importing registers the primitives and their public wrappers)
    affine,
    arithmetic,
    elementwise,
    fft,
    indexing,
    linalg,
    matmul,
    reduce,
    rnn,
    shape,
    split,
    windows,
)
from ._util import METHODS, PUBLIC, public  # noqa: F401

_ops_public = {n: f for n, f in PUBLIC.items() if f.__module__.startswith(__name__ + ".")}
globals().update(_ops_public)
__all__ = sorted(_ops_public)
del _ops_public
