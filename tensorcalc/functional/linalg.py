"""``tc.linalg``: the linear-algebra primitives of :mod:`tensorcalc.ops.linalg` (eigh, solve,
inv, slogdet, cholesky) and the composites built from them here (eigvalsh, det, norm).

Composites only: each is a few primitives and its derivative is what the chain rule over them
gives. The namespace is generated: every wrapper marked ``@public(namespace="linalg")``, in ops/
or here, is a name of this module.
"""

from __future__ import annotations

from .. import ops
from ..ops import linalg as _prim
from ..ops._util import NAMESPACES, public, shape_of
from .basic import safe_sqrt

globals().update(NAMESPACES["linalg"])  # the primitives' wrappers: eigh, solve, inv, ...


@public(namespace="linalg")
def eigvalsh(a):
    """Eigenvalues (ascending) of symmetric A (…, n, n). Composite: eigh(A)[0], whose gradient
    is Ā = V diag(w̄) Vᵀ (exact even for repeated eigenvalues)."""
    return _prim.eigh(a)[0]


@public(namespace="linalg")
def det(a):
    """det A for square A (…, n, n). Composite: sign · exp(logabsdet), so ∂ det/∂A = det · A⁻ᵀ
    (undefined where A is singular)."""
    s, logabs = _prim.slogdet(a)
    return s * ops.exp(logabs)


def _l2(x, axes, keepdims):
    return safe_sqrt(ops.sum(x * x, axis=axes, keepdims=keepdims))


def _spectral(x, r, c, keepdims):
    """Largest singular value over axes (r, c): √(largest eigenvalue of the smaller Gram matrix
    XᵀX or XXᵀ). Differentiable where that eigenvalue is simple."""
    s = shape_of(x)
    nd = len(s)
    rest = [i for i in range(nd) if i not in (r, c)]
    m = ops.transpose(x, tuple(rest) + (r, c))  # (…, rows, cols)
    mt = ops.swapaxes(m, -1, -2)
    gram = ops.matmul(mt, m) if s[c] <= s[r] else ops.matmul(m, mt)
    top = safe_sqrt(eigvalsh(gram)[..., -1])
    return ops.expand_dims(top, (r, c)) if keepdims else top


@public(namespace="linalg")
def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002 - numpy's name
    """Vector and matrix norms, like ``numpy.linalg.norm``. Composite (no rules of its own).

    Vector norms (1-D x, or an int ``axis``): ord None/2 → ‖x‖₂ = √Σ x², 1 → Σ |x|,
    inf → max |x|. Matrix norms (2-D x, or a 2-tuple ``axis``): None/'fro' → √Σ x²,
    1 → max column sum of |x|, inf → max row sum, 2 → largest singular value.
    With ord=None and axis=None any x is flattened (2-norm of all entries).

    Subgradients at kinks: at x = 0 the 2-norm, Frobenius and spectral norms get gradient 0
    (the minimum-norm element of the subdifferential, the unit ball), |x| has sign(0) = 0, and
    tied maxima share the gradient equally. The spectral norm's gradient u₁v₁ᵀ assumes a
    simple largest singular value.
    """
    nd = len(shape_of(x))
    if axis is None:
        if ord is None:
            return _l2(x, tuple(range(nd)), keepdims)
        if nd not in (1, 2):
            raise ValueError(f"norm: ord={ord!r} needs a 1-D or 2-D tensor or an explicit "
                             f"axis, got shape {shape_of(x)}")
        axes = tuple(range(nd))
    else:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if len(axes) not in (1, 2):
        raise ValueError(f"norm: axis must be one axis (vector norm) or two (matrix norm), "
                         f"got {axis}")
    for a in axes:
        if not -nd <= a < nd:
            raise ValueError(f"norm: axis {a} is out of range for shape {shape_of(x)}")
    axes = tuple(a % nd for a in axes)
    if len(axes) == 2 and axes[0] == axes[1]:
        raise ValueError(f"norm: repeated axis in {axis}")
    inf = float("inf")
    if len(axes) == 1:
        if ord is None or ord == 2:
            return _l2(x, axes, keepdims)
        if ord == 1:
            return ops.sum(ops.abs(x), axis=axes, keepdims=keepdims)
        if ord == inf:
            return ops.max(ops.abs(x), axis=axes, keepdims=keepdims)
        raise ValueError(f"norm: vector ord must be None, 2, 1 or inf, got {ord!r}")
    r, c = axes
    if ord is None or ord == "fro":
        return _l2(x, axes, keepdims)
    if ord == 2:
        return _spectral(x, r, c, keepdims)
    if ord in (1, inf):
        inner, outer = (r, c) if ord == 1 else (c, r)
        y = ops.max(ops.sum(ops.abs(x), axis=inner, keepdims=True), axis=outer, keepdims=True)
        return y if keepdims else ops.squeeze(y, axes)
    raise ValueError(f"norm: matrix ord must be None, 'fro', 2, 1 or inf, got {ord!r}")


__all__ = sorted(NAMESPACES["linalg"])
