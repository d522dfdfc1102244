"""tc.linalg: closed-form derivatives, consistency between ops, and input checking.

The generic suite (tests/op_db.py, linalg section) checks every rule against central
differences; here each op is compared with a derivative known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc

L = tc.linalg


def _t(a, rg=True):
    return tc.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def _well_cond(rng, shape):
    n = shape[-1]
    return rng.uniform(-1, 1, shape) + n * np.eye(n)


def _spd(rng, n):
    r = rng.standard_normal((n, n))
    return r @ r.T + n * np.eye(n)


def _grad(f, a):
    x = _t(a)
    return tc.gradients(f(x), [x])[0].numpy()


# ---------------------------------------------------------------- slogdet / det / inv


def test_logdet_gradient_is_inverse_transpose():
    rng = np.random.default_rng(0)
    a = _well_cond(rng, (2, 4, 4))
    a[0, 0] *= -1  # negative determinant: the gradient of log|det| is still A⁻ᵀ
    x = _t(a)
    sign, logabs = L.slogdet(x)
    np.testing.assert_allclose(sign.numpy(), np.sign(np.linalg.det(a)))
    assert sign.numpy()[0] == -1 and not sign.requires_grad
    g = tc.gradients(logabs.sum(), [x])[0].numpy()
    np.testing.assert_allclose(g, np.swapaxes(np.linalg.inv(a), -1, -2), rtol=1e-10, atol=1e-12)


def test_det_gradient_is_cofactor():
    rng = np.random.default_rng(1)
    a = _well_cond(rng, (3, 3))
    a[1] *= -1
    g = _grad(L.det, a)
    np.testing.assert_allclose(g, np.linalg.det(a) * np.linalg.inv(a).T, rtol=1e-10)


def test_logdet_hessian_vector_product():
    # d² logdet(A)[H, H] = −tr(A⁻¹ H A⁻¹ H), so (H_logdet · H)ᵢⱼ = −(A⁻ᵀ Hᵀ A⁻ᵀ)ᵢⱼ.
    rng = np.random.default_rng(2)
    a, h = _well_cond(rng, (3, 3)), rng.standard_normal((3, 3))
    g, hv = tc.hvp(lambda x: L.slogdet(x)[1], (a,), (h,))
    ai = np.linalg.inv(a)
    np.testing.assert_allclose(g.numpy(), ai.T, rtol=1e-10)
    np.testing.assert_allclose(hv.numpy(), -(ai @ h @ ai).T, rtol=1e-9, atol=1e-12)


def test_slogdet_of_1x1_and_singular():
    s, logabs = L.slogdet(_t([[-3.0]]))
    assert s.item() == -1.0 and np.isclose(logabs.item(), np.log(3.0))
    s, logabs = L.slogdet(tc.tensor(np.ones((2, 2))))
    assert s.item() == 0.0 and logabs.item() == -np.inf


def test_inv_gradient_closed_form():
    # f(A) = ⟨C, A⁻¹⟩  ⇒  ∇f = −A⁻ᵀ C A⁻ᵀ
    rng = np.random.default_rng(3)
    a, c = _well_cond(rng, (3, 3)), rng.standard_normal((3, 3))
    g = _grad(lambda x: (L.inv(x) * c).sum(), a)
    ai = np.linalg.inv(a)
    np.testing.assert_allclose(g, -ai.T @ c @ ai.T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((L.inv(_t(a)) @ _t(a)).numpy(), np.eye(3), atol=1e-12)


# ---------------------------------------------------------------- solve


@pytest.mark.parametrize("bshape", [(4,), (4, 2), (3, 4, 2)])
def test_solve_agrees_with_inverse(bshape):
    rng = np.random.default_rng(4)
    a, b = _well_cond(rng, (3, 4, 4)), rng.standard_normal(bshape)
    a1, b1, a2, b2 = _t(a), _t(b), _t(a), _t(b)
    x1 = L.solve(a1, b1)
    x2 = (L.inv(a2) @ b2) if len(bshape) > 1 else tc.squeeze(L.inv(a2) @ b2[:, None], -1)
    np.testing.assert_allclose(x1.numpy(), np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x1.numpy(), x2.numpy(), rtol=1e-9, atol=1e-12)
    u = rng.standard_normal(x1.shape)
    g1 = tc.gradients((x1 * u).sum(), [a1, b1])
    g2 = tc.gradients((x2 * u).sum(), [a2, b2])
    for p, q in zip(g1, g2, strict=True):
        assert p.shape == q.shape
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-9, atol=1e-12)


def test_solve_jvp_matches_closed_form():
    rng = np.random.default_rng(5)
    a, b = _well_cond(rng, (3, 3)), rng.standard_normal((3, 2))
    da, db = rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
    _, dx = tc.jvp(L.solve, (a, b), (da, db))
    x = np.linalg.solve(a, b)
    np.testing.assert_allclose(np.asarray(dx.numpy()), np.linalg.solve(a, db - da @ x),
                               rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- eigh


def test_eigh_reconstructs_and_reads_symmetric_part():
    rng = np.random.default_rng(6)
    m = rng.standard_normal((2, 4, 4))
    w, v = L.eigh(_t(m, rg=False))
    s = (m + np.swapaxes(m, -1, -2)) / 2
    np.testing.assert_allclose(w.numpy(), np.linalg.eigvalsh(s), rtol=1e-10, atol=1e-12)
    rec = (v.numpy() * w.numpy()[..., None, :]) @ np.swapaxes(v.numpy(), -1, -2)
    np.testing.assert_allclose(rec, s, atol=1e-12)
    # the gradient is projected onto symmetric matrices
    g = _grad(lambda x: (L.eigvalsh(x) * np.arange(4.0)).sum(), m)
    np.testing.assert_allclose(g, np.swapaxes(g, -1, -2), atol=1e-14)


def test_eigenvalue_gradient_is_outer_product_of_eigenvector():
    # ∂wᵢ/∂A = vᵢ vᵢᵀ (distinct eigenvalues)
    rng = np.random.default_rng(7)
    m = rng.standard_normal((4, 4))
    a = m + m.T
    wv, vv = np.linalg.eigh(a)
    for i in range(4):
        g = _grad(lambda x, i=i: L.eigvalsh(x)[i], a)
        np.testing.assert_allclose(g, np.outer(vv[:, i], vv[:, i]), atol=1e-10)


def test_eigvalsh_gradient_exact_at_repeated_eigenvalues():
    # Σ wᵢ² = ‖A‖²_F ⇒ gradient 2A, even at A = I where all eigenvalues tie.
    for a in (np.eye(3), np.diag([1.0, 1.0, 2.0])):
        g = _grad(lambda x: (L.eigvalsh(x) ** 2).sum(), a)
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, 2 * a, atol=1e-12)


def test_eigh_jvp_eigenvalue_perturbation():
    # first-order perturbation theory: ẇᵢ = vᵢᵀ Ȧₛ vᵢ
    rng = np.random.default_rng(8)
    m = rng.standard_normal((4, 4))
    a, da = m + m.T, rng.standard_normal((4, 4))
    (w, v), (dw, dv) = tc.jvp(L.eigh, (a,), (da,))
    vv = v.numpy()
    das = (da + da.T) / 2
    np.testing.assert_allclose(dw.numpy(), np.einsum("ji,jk,ki->i", vv, das, vv), atol=1e-12)
    # V̇ keeps V orthonormal to first order: VᵀV̇ is antisymmetric
    k = vv.T @ dv.numpy()
    np.testing.assert_allclose(k, -k.T, atol=1e-12)


def test_pca_top_component_and_gradient():
    # PCA: the top eigenvector of the covariance is the first right singular vector of the
    # centred data; the captured variance λ_max(C) has gradient ∂λ/∂X = (2/N) Xc v vᵀ.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((50, 3)) @ np.diag([3.0, 1.0, 0.3])
    xt = _t(x)
    xc = xt - tc.mean(xt, axis=0, keepdims=True)
    cov = xc.T @ xc * (1.0 / 50)
    w, v = L.eigh(cov)
    top = v[:, -1].numpy()
    _, _, vt = np.linalg.svd(x - x.mean(0))
    np.testing.assert_allclose(abs(top @ vt[0]), 1.0, atol=1e-10)
    g = tc.gradients(w[-1], [xt])[0].numpy()
    xcn = x - x.mean(0)
    np.testing.assert_allclose(g, (2 / 50) * xcn @ np.outer(top, top), atol=1e-12)
    # and a sign-invariant function of the eigenvector passes the numerical check
    tc.gradcheck(lambda d: ((d - tc.mean(d, axis=0, keepdims=True))
                            @ L.eigh(tc.matmul(d.T, d))[1][:, -1]) ** 2, x[:8])


# ---------------------------------------------------------------- cholesky


def test_cholesky_factor_and_logdet_gradient():
    # logdet A = 2 Σ log Lᵢᵢ ⇒ gradient A⁻¹ (A symmetric), the same as slogdet's symmetrised
    rng = np.random.default_rng(10)
    a = _spd(rng, 4)
    lo = L.cholesky(_t(a, rg=False)).numpy()
    np.testing.assert_allclose(lo @ lo.T, a, rtol=1e-12)
    assert np.all(np.triu(lo, 1) == 0)
    g = _grad(lambda x: 2 * tc.log(L.cholesky(x)[np.arange(4), np.arange(4)]).sum(), a)
    np.testing.assert_allclose(g, np.linalg.inv(a), rtol=1e-10, atol=1e-12)


def test_cholesky_float32_batched():
    rng = np.random.default_rng(11)
    a = np.stack([_spd(rng, 3), _spd(rng, 3)]).astype(np.float32)
    x = tc.tensor(a, requires_grad=True)
    y = L.cholesky(x)
    assert y.dtype == np.float32
    g = tc.gradients(y.sum(), [x])[0]
    assert g.dtype == np.float32 and g.shape == (2, 3, 3)


# ---------------------------------------------------------------- norm


def test_norm_gradients_closed_form():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(_grad(L.norm, x), x / np.linalg.norm(x), rtol=1e-12)
    u, s, vt = np.linalg.svd(x)
    np.testing.assert_allclose(L.norm(_t(x), ord=2).item(), s[0], rtol=1e-12)
    np.testing.assert_allclose(_grad(lambda t: L.norm(t, ord=2), x), np.outer(u[:, 0], vt[0]),
                               atol=1e-10)
    g = _grad(lambda t: L.norm(t, axis=1).sum(), x)
    np.testing.assert_allclose(g, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"ord": 2}, {"ord": "fro"}, {"axis": 0}])
def test_norm_subgradient_at_zero_is_zero(kw):
    z = np.zeros(4) if kw.get("ord") == 2 and "axis" not in kw else np.zeros((3, 2))
    x = _t(z)
    y = L.norm(x, **kw)
    assert np.all(y.numpy() == 0)
    g = tc.gradients(y.sum(), [x], create_graph=True)[0]
    assert np.all(g.numpy() == 0)
    h = tc.gradients((g * g).sum() + g.sum(), [x], allow_unused=True)[0]
    assert h is None or np.all(np.isfinite(h.numpy()))


def test_norm_matrix_ord_1_inf_match_numpy_and_spectral_keepdims():
    x = np.random.default_rng(13).standard_normal((2, 3, 4))
    for ord_ in (1, np.inf, 2, "fro"):
        got = L.norm(_t(x, rg=False), ord=ord_, axis=(1, 2), keepdims=True).numpy()
        np.testing.assert_allclose(got, np.linalg.norm(x, ord_, axis=(1, 2), keepdims=True),
                                   rtol=1e-12)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"solve: A must be square \(…, n, n\), got \(3, 4\)"):
        L.solve(tc.ones((3, 4)), tc.ones((3,)))
    with pytest.raises(ValueError, match=r"solve: A \(3, 3\) needs B .* got B of shape \(4,\)"):
        L.solve(tc.eye(3), tc.ones((4,)))
    with pytest.raises(ValueError, match=r"B\[\.\.\., None\]"):
        L.solve(tc.ones((2, 3, 3)), tc.ones((2, 3)))
    with pytest.raises(ValueError, match=r"solve: leading \(batch\) axes"):
        L.solve(tc.ones((2, 3, 3)), tc.ones((4, 3, 1)))
    for f in (L.inv, L.eigh, L.cholesky, L.slogdet, L.det, L.eigvalsh):
        name = "slogdet" if f is L.det else "eigh" if f is L.eigvalsh else f.__name__
        with pytest.raises(ValueError, match=f"{name}: A must be square"):
            f(tc.ones((2, 3)))
        with pytest.raises(ValueError, match="got \\(3,\\)"):
            f(tc.ones((3,)))
    with pytest.raises(ValueError, match="cholesky"):
        L.cholesky(_t(-np.eye(3)))
    with pytest.raises(ValueError, match="inv"):
        L.inv(_t(np.ones((3, 3))))
    with pytest.raises(ValueError, match="norm: vector ord"):
        L.norm(tc.ones((3,)), ord=3)
    with pytest.raises(ValueError, match="norm: matrix ord"):
        L.norm(tc.ones((3, 3)), ord="nuc")
    with pytest.raises(ValueError, match="norm: axis 2 is out of range"):
        L.norm(tc.ones((3, 3)), axis=2)
    with pytest.raises(ValueError, match="norm: ord=1 needs"):
        L.norm(tc.ones((2, 3, 3)), ord=1)
