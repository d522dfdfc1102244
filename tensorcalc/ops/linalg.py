"""Linear algebra primitives: eigh, solve, inv, slogdet, cholesky, svd. Batched over leading axes:
A has shape (…, n, n). The composites eigvalsh, det and norm live in
:mod:`tensorcalc.functional.linalg`, which is the public ``tc.linalg`` namespace.

Every rule is written with the library's own ops (matmul, swapaxes, the linalg ops themselves),
so second derivatives come for free. Matrix calculus conventions: ⟨X, Y⟩ = tr(XᵀY), so a
rule ⟨Ā, Ȧ⟩ = ⟨Ȳ, Ẏ⟩ is read off by moving everything around Ȧ to the cotangent's side.

Symmetric-matrix functions (eigh, cholesky) read their input as ½(A + Aᵀ): they are defined
on symmetric matrices, and on any other input act on its symmetric part. Their gradients are
therefore symmetric (the gradient projected onto symmetric matrices), and a non-symmetric
perturbation is symmetrised before it is pushed forward. References for the rules: Giles 2008,
"An extended collection of matrix derivative results for forward and reverse mode AD";
Murray 2016, "Differentiation of the Cholesky decomposition".
"""

from __future__ import annotations

from ..autodiff.function import Function, primitive
from ..backend import array_module
from ._util import data_of, public, shape_of
from .matmul import Matmul
from .shape import swapaxes

# ---------------------------------------------------------------- small helpers (no calculus)


def _mT(a):
    """Transpose of the last two axes (a batch of matrices)."""
    return swapaxes(a, -1, -2)


def _sym(a):
    """½(A + Aᵀ): the symmetric part."""
    return (a + _mT(a)) * 0.5


def _mm(a, b):
    return Matmul.apply(a, b)


def _eye(like, n):
    """Identity (n, n) of ``like``'s array module and dtype — a constant, never in the graph."""
    d = data_of(like)
    return array_module(d).eye(n, dtype=d.dtype)


def _diag_embed(v):
    """(…, n) -> (…, n, n) with v on the diagonal (linear in v)."""
    from .shape import expand_dims

    n = shape_of(v)[-1]
    return expand_dims(v, -2) * _eye(v, n)


def _diag_part(m):
    """(…, n, n) -> (…, n): the diagonal (linear in m)."""
    from .reduce import sum as _sum

    n = shape_of(m)[-1]
    return _sum(m * _eye(m, n), axis=-1)


def _gap_inverse(w):
    """F_ij = 1/(w_j − w_i) where w_i ≠ w_j, else 0 (the diagonal and exact ties).

    Differentiable in w through the off-diagonal entries; the tie mask is a constant."""
    from .shape import expand_dims

    e = expand_dims(w, -2) - expand_dims(w, -1)  # e_ij = w_j − w_i
    ed = data_of(e)
    keep = (ed != 0).astype(ed.dtype)
    return keep / (e + (1.0 - keep))


def _phi_mask(like, n):
    """Φ as a mask: 1 strictly below the diagonal, ½ on it, 0 above."""
    d = data_of(like)
    xp = array_module(d)
    return xp.tril(xp.ones((n, n), dtype=d.dtype)) - 0.5 * xp.eye(n, dtype=d.dtype)


# ---------------------------------------------------------------- primitives


def _check_square(a, who, name="A"):
    s = shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"{who}: {name} must be square (…, n, n), got {s}")
    return s[-1]




@primitive
class Eigh(Function):
    """Eigendecomposition of a symmetric matrix, A = V diag(w) Vᵀ, w ascending, VᵀV = I.

    Forward:  (w, V) = eigh(½(A + Aᵀ))
    VJP:      Ā = sym(V (diag(w̄) + F ⊙ (Vᵀ V̄)) Vᵀ),  F_ij = 1/(w_j − w_i) (i ≠ j), F_ii = 0
    JVP:      ẇ = diag(Vᵀ Ȧₛ V),  V̇ = V (F ⊙ (Vᵀ Ȧₛ V)),  Ȧₛ = ½(Ȧ + Ȧᵀ)

    sym(X) = ½(X + Xᵀ). The V-part of the rules assumes distinct eigenvalues: at an exact tie
    w_i = w_j the eigenvectors are not unique and F_ij is set to 0 (so functions of w alone,
    like eigvalsh, keep exact gradients V diag(w̄) Vᵀ even then; near-ties make F large).
    Each eigenvector is defined up to sign; the rules hold for whichever sign forward picked.
    """

    @staticmethod
    def forward(xp, a):
        w, v = xp.linalg.eigh((a + xp.swapaxes(a, -1, -2)) * 0.5)
        return (w, v)

    @staticmethod
    def vjp(g, y, a, *, needs):
        gw, gv = g
        w, v = y
        inner = _diag_embed(gw) + _gap_inverse(w) * _mm(_mT(v), gv)
        return (_sym(_mm(_mm(v, inner), _mT(v))),)

    @staticmethod
    def jvp(dxs, y, a):
        w, v = y
        m = _mm(_mm(_mT(v), _sym(dxs[0])), v)
        return (_diag_part(m), _mm(v, _gap_inverse(w) * m))


@public(namespace="linalg")
def eigh(a):
    """Eigenvalues (ascending) and orthonormal eigenvectors of symmetric A (…, n, n):
    A = V diag(w) Vᵀ. Returns (w (…, n), V (…, n, n)); column V[..., :, i] belongs to w[..., i].

    Reads ½(A + Aᵀ); gradients are symmetric. Eigenvectors are defined up to sign, so
    differentiate sign-invariant functions of them (V ⊙ V, V diag(f(w)) Vᵀ, ...). Eigenvector
    gradients assume distinct eigenvalues (see :class:`Eigh`): at an *exact* tie the coupling
    term is set to 0, which is right for functions of the eigenvalues alone but not for
    V diag(f(w)) Vᵀ (whose true gradient there involves f′(w)); a tie broken by 1e-8 is fine.
    """
    _check_square(a, "eigh")
    return Eigh.apply(a)


@primitive
class Solve(Function):
    """Solution of the linear system A X = B (batched; leading axes broadcast).

    Forward:  X = A⁻¹ B                      (A (…, n, n), B (…, n, k))
    VJP:      B̄ = A⁻ᵀ X̄,  Ā = −B̄ Xᵀ
    JVP:      Ẋ = A⁻¹ (Ḃ − Ȧ X)
    """

    broadcasts = True

    @staticmethod
    def forward(xp, a, b):
        return xp.linalg.solve(a, b)

    @staticmethod
    def vjp(g, x, a, b, *, needs):
        gb = Solve.apply(_mT(a), g)
        ga = -_mm(gb, _mT(x)) if needs[0] else None
        return ga, (gb if needs[1] else None)

    @staticmethod
    def jvp(dxs, x, a, b):
        da, db = dxs
        if da is None:
            r = db
        else:
            r = -_mm(da, x) if db is None else db - _mm(da, x)
        return Solve.apply(a, r)


@public(namespace="linalg")
def solve(a, b):
    """X with A X = B. A (…, n, n); B (n,) (one vector, numpy convention) or (…, n, k);
    leading axes broadcast. For a batch of vectors pass B[..., None]."""
    from .shape import expand_dims, squeeze

    n = _check_square(a, "solve")
    sa, sb = shape_of(a), shape_of(b)
    vec = len(sb) == 1
    if len(sb) == 0 or sb[0 if vec else -2] != n:
        want = f"({n},) or (…, {n}, k)"
        raise ValueError(f"solve: A {sa} needs B of shape {want}, got B of shape {sb}"
                         + ("" if len(sb) < 2 else "; for a batch of vectors pass B[..., None]"))
    if not vec:
        la, lb = sa[:-2], sb[:-2]
        for p, q in zip(la[::-1], lb[::-1], strict=False):
            if p != q and p != 1 and q != 1:
                raise ValueError(f"solve: leading (batch) axes of A {sa} and B {sb} do not "
                                 "broadcast")
    if vec:
        return squeeze(Solve.apply(a, expand_dims(b, -1)), -1)
    return Solve.apply(a, b)


@primitive
class Inv(Function):
    """Matrix inverse (batched).

    Forward:  Y = A⁻¹
    VJP:      Ā = −Yᵀ Ȳ Yᵀ
    JVP:      Ẏ = −Y Ȧ Y
    """

    @staticmethod
    def forward(xp, a):
        return xp.linalg.inv(a)

    @staticmethod
    def vjp(g, y, a, *, needs):
        yt = _mT(y)
        return (-_mm(_mm(yt, g), yt),)

    @staticmethod
    def jvp(dxs, y, a):
        return -_mm(_mm(y, dxs[0]), y)


@public(namespace="linalg")
def inv(a):
    """A⁻¹ for square A (…, n, n)."""
    _check_square(a, "inv")
    return Inv.apply(a)


@primitive
class Slogdet(Function):
    """Sign and log-magnitude of the determinant (batched), via an LU factorisation.

    Forward:  (s, l) = (sign det A, log |det A|)
    VJP:      Ā = l̄ A⁻ᵀ                      (s is locally constant: s̄ contributes nothing)
    JVP:      ṡ = 0,  l̇ = tr(A⁻¹ Ȧ)
    """

    @staticmethod
    def forward(xp, a):
        s, logabs = xp.linalg.slogdet(a)
        return (xp.asarray(s), xp.asarray(logabs))

    @staticmethod
    def vjp(g, y, a, *, needs):
        from .shape import expand_dims

        return (expand_dims(g[1], (-2, -1)) * _mT(Inv.apply(a)),)

    @staticmethod
    def jvp(dxs, y, a):
        from .reduce import sum as _sum

        return (None, _sum(_mT(Inv.apply(a)) * dxs[0], axis=(-2, -1)))


@public(namespace="linalg")
def slogdet(a):
    """(sign, logabsdet) of det A for square A (…, n, n), like numpy. ``logabsdet`` =
    log |det A| is differentiable (gradient A⁻ᵀ); ``sign`` is locally constant and returned
    detached. A singular matrix gives sign 0 and logabsdet −inf."""
    _check_square(a, "slogdet")
    s, logabs = Slogdet.apply(a)
    if hasattr(s, "detach"):
        s = s.detach()
    return s, logabs


@primitive
class Cholesky(Function):
    """Cholesky factor of a symmetric positive-definite matrix: lower-triangular L, L Lᵀ = A.

    Forward:  L = cholesky(½(A + Aᵀ))
    VJP:      Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹),  Φ(X) = lower triangle of X with its diagonal halved
    JVP:      L̇ = L Φ(L⁻¹ Ȧₛ L⁻ᵀ),  Ȧₛ = ½(Ȧ + Ȧᵀ)

    The JVP differentiates L Lᵀ = A: L⁻¹ L̇ + (L⁻¹ L̇)ᵀ = L⁻¹ Ȧ L⁻ᵀ, whose lower-triangular
    solution is Φ(L⁻¹ Ȧ L⁻ᵀ); the VJP is its adjoint (Φ is self-adjoint) (Murray 2016).
    """

    @staticmethod
    def forward(xp, a):
        return xp.linalg.cholesky((a + xp.swapaxes(a, -1, -2)) * 0.5)

    @staticmethod
    def vjp(g, el, a, *, needs):
        n = shape_of(el)[-1]
        li = Inv.apply(el)
        s = _mm(_mm(_mT(li), _mm(_mT(el), g) * _phi_mask(el, n)), li)
        return (_sym(s),)

    @staticmethod
    def jvp(dxs, el, a):
        n = shape_of(el)[-1]
        li = Inv.apply(el)
        return _mm(el, _mm(_mm(li, _sym(dxs[0])), _mT(li)) * _phi_mask(el, n))


@public(namespace="linalg")
def cholesky(a):
    """Lower-triangular L with L Lᵀ = A, for symmetric positive-definite A (…, n, n).
    Reads ½(A + Aᵀ); gradients are symmetric."""
    _check_square(a, "cholesky")
    return Cholesky.apply(a)


@primitive
class Svd(Function):
    """Thin singular value decomposition A = U diag(s) Vᵀ of A (…, m, n), k = min(m, n):
    U (…, m, k), s (…, k) descending, Vh = Vᵀ (…, k, n), UᵀU = VᵀV = I.

    Forward:  (U, s, Vh) = svd(A), thin
    VJP:      Ā = U[(F ⊙ (UᵀŪ − ŪᵀU))S + diag(s̄) + S(F ⊙ (VᵀV̄ − V̄ᵀV))]Vᵀ + ΠᵤŪS⁻¹Vᵀ + US⁻¹V̄ᵀΠᵥ
    JVP:      ṡ = diag(P), U̇ = U(F ⊙ (PS + SPᵀ)) + ΠᵤȦVS⁻¹, V̇ = V(F ⊙ (SP + PᵀS)) + ΠᵥȦᵀUS⁻¹

    with S = diag(s), P = UᵀȦV, Πᵤ = I − UUᵀ, Πᵥ = I − VVᵀ (projectors off the singular
    subspaces), F_ij = 1/(s_j² − s_i²) (i ≠ j), F_ii = 0 (Townsend 2016,
    "Differentiating the singular value decomposition"). The U, V parts assume distinct,
    nonzero singular values: at an exact tie F_ij is set to 0 (exact for functions of s alone,
    whose gradient is U diag(s̄) Vᵀ even then); S⁻¹ is infinite at s = 0 — the projector terms,
    present only when m ≠ n, then have no finite limit. Singular vectors are defined up to a
    common sign per pair (uᵢ, vᵢ); the rules hold for whichever sign forward picked.
    """

    @staticmethod
    def forward(xp, a):
        u, s, vh = xp.linalg.svd(a, full_matrices=False)
        return (u, s, vh)

    @staticmethod
    def vjp(g, y, a, *, needs):
        from .shape import expand_dims

        gu, gs, gvh = g
        u, s, vh = y
        v, gv = _mT(vh), _mT(gvh)
        f = _gap_inverse(s * s)
        sd = _diag_embed(s)
        ut_gu = _mm(_mT(u), gu)
        vt_gv = _mm(vh, gv)
        inner = (_mm(f * (ut_gu - _mT(ut_gu)), sd) + _diag_embed(gs)
                 + _mm(sd, f * (vt_gv - _mT(vt_gv))))
        sinv = expand_dims(1.0 / s, -2)            # scales columns: X S⁻¹
        gu_s, gv_s = gu * sinv, gv * sinv
        ga = (_mm(_mm(u, inner), vh)
              + _mm(gu_s - _mm(u, _mm(_mT(u), gu_s)), vh)
              + _mm(u, _mT(gv_s - _mm(v, _mm(vh, gv_s)))))
        return (ga,)

    @staticmethod
    def jvp(dxs, y, a):
        from .shape import expand_dims

        u, s, vh = y
        v = _mT(vh)
        da = dxs[0]
        da_v = _mm(da, v)
        dat_u = _mm(_mT(da), u)
        p = _mm(_mT(u), da_v)
        f = _gap_inverse(s * s)
        sd = _diag_embed(s)
        sinv = expand_dims(1.0 / s, -2)
        du = (_mm(u, f * (_mm(p, sd) + _mm(sd, _mT(p))))
              + (da_v - _mm(u, _mm(_mT(u), da_v))) * sinv)
        dv = (_mm(v, f * (_mm(sd, p) + _mm(_mT(p), sd)))
              + (dat_u - _mm(v, _mm(vh, dat_u))) * sinv)
        return (du, _diag_part(p), _mT(dv))


@public(namespace="linalg")
def svd(a):
    """Thin SVD of A (…, m, n): returns (U (…, m, k), s (…, k) descending, Vh (…, k, n)),
    k = min(m, n), with A = U diag(s) Vh — NumPy's ``svd(a, full_matrices=False)``.

    Singular vectors are defined up to a common sign per pair, so differentiate sign-invariant
    functions of them (U ⊙ U, U Vh, U diag(f(s)) Vh, ...). Vector gradients assume distinct,
    nonzero singular values (see :class:`Svd`); functions of s alone are exact at ties.
    """
    sh = shape_of(a)
    if len(sh) < 2:
        raise ValueError(f"svd: A must be a matrix (…, m, n), got shape {sh}")
    return Svd.apply(a)
