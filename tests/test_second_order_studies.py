"""The second-order studies (issue 14): their asserted numbers, on small fast settings."""

import math

import numpy as np
import pytest

from tensorcalc.recipes import logistic_newton as LN
from tensorcalc.recipes import saddle_escape as SE


@pytest.mark.parametrize("exponent,steps", [(3, 67), (6, 139), (9, 212), (12, 284)])
def test_gd_escape_time_is_logarithmic_in_y0(exponent, steps):
    t, ys = SE.escape_time(10.0 ** -exponent, lr=0.1)
    assert t == steps
    assert abs(t - SE.predicted_time(10.0 ** -exponent, 0.1)) < 3


def test_gd_never_escapes_from_the_stable_manifold_and_pgd_does():
    t, ys = SE.escape_time(0.0, lr=0.1, max_steps=1000)
    assert t is None and ys[-1] == 0.0
    pgd = {"radius": 1e-3, "g_thres": 1e-3, "t_thres": 50}
    times = [SE.escape_time(0.0, lr=0.1, perturbed=pgd, seed=s)[0] for s in range(8)]
    assert all(120 <= t <= 180 for t in times), times
    # flat in y0: from 1e-12 the same as from 0 (the kick dominates)
    far = [SE.escape_time(1e-12, lr=0.1, perturbed=pgd, seed=s)[0] for s in range(8)]
    assert abs(np.median(far) - np.median(times)) <= 10


@pytest.fixture(scope="module")
def three_vs_eight_small():
    (x, t), (xte, tte) = LN.three_vs_eight(downsample=4)     # 49 features, all 3s and 8s
    return x, t, xte, tte


def test_newton_irls_converges_in_at_most_10_iterations(three_vs_eight_small):
    x, t, xte, tte = three_vs_eight_small
    p = LN.LogisticProblem(x, t, c=1.0)
    h = LN.fit(p, "newton", max_iter=10, tol=1e-8)
    norms = [r[2] for r in h]
    assert norms[-1] < 1e-8 and h[-1][0] <= 10
    # quadratic: each of the last steps at least squares the error (relative to the start)
    rel = [g / norms[0] for g in norms]
    assert rel[-1] < rel[-2] ** 1.5
    assert p.accuracy(xte, tte) > 0.9


def test_all_methods_reach_the_same_optimum(three_vs_eight_small):
    x, t, *_ = three_vs_eight_small
    objs = {}
    # L-BFGS's line search stalls near ‖∇L‖ ~ 1e-6: there the decrease of L (~160) it must
    # detect is below float64 resolution; the Newton methods need no line search
    for m, iters, tol in (("newton", 10, 1e-8), ("newton-cg", 30, 1e-8), ("lbfgs", 300, 1e-5)):
        p = LN.LogisticProblem(x, t, c=1.0)
        LN.fit(p, m, max_iter=iters, tol=tol)
        objs[m] = p.objective()
        assert p.grad_norm() < tol, m
    p = LN.LogisticProblem(x, t, c=1.0)
    h = LN.fit(p, "gd", max_iter=50)
    assert h[-1][3] < h[0][3] and h[-1][3] > objs["newton"]      # GD: descending, not there
    ref = objs["newton"]
    assert all(math.isclose(v, ref, rel_tol=1e-9) for v in objs.values()), objs


def test_logistic_newton_matches_scikit_learn(three_vs_eight_small):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, t, *_ = three_vs_eight_small
    p = LN.LogisticProblem(x, t, c=1.0)
    LN.fit(p, "newton", max_iter=10)
    with threadpool_limits(1):
        clf = LogisticRegression(C=1.0, tol=1e-8, max_iter=1000).fit(x, t)
    np.testing.assert_allclose(p.w.data, clf.coef_[0], rtol=1e-4, atol=1e-5)


def test_studies_run_from_the_cli_with_their_figures(tmp_path):
    from tensorcalc.cli import main

    out = tmp_path / "saddle"
    assert main(["train", "saddle-escape", "--max-exponent", "6", "--seeds", "2", "--chain-d",
                 "3", "--out", str(out)]) in (0, None)
    assert (out / "escape.png").exists() and "<img" in (out / "report.html").read_text()
    out = tmp_path / "ln"
    assert main(["train", "logistic-newton", "--downsample", "4", "--gd-iters", "20",
                 "--methods", "gd,newton", "--out", str(out)]) in (0, None)
    assert (out / "convergence.png").exists()
    import json
    m = json.loads((out / "metrics.json").read_text())["test"]
    assert m["newton_grad_norm"] < 1e-8 and m["newton_iterations"] <= 10


@pytest.mark.parametrize("family", ["gaussian", "bernoulli", "categorical", "poisson",
                                    "exponential"])
def test_mle_gradient_ascent_matches_closed_form_and_textbook_standard_errors(family):
    from tensorcalc.recipes import mle

    fam = mle.Family(family, mle.sample(family, 500, np.random.default_rng(1)))
    theta, steps, g = mle.fit(fam, lr=0.5, tol=1e-10)
    cf, se_formula = fam.closed_form()
    assert g < 1e-10 and steps > 5
    np.testing.assert_allclose(theta, cf, rtol=1e-8)
    np.testing.assert_allclose(mle.standard_errors(fam, theta), se_formula, rtol=1e-6)


def test_pca_eigh_and_svd_agree_and_reconstruction_error_is_the_left_out_variance():
    from tensorcalc.recipes import pca

    x, y = pca.load(limit=600)
    lam_e, v, lam_s, w, mean = pca.pca_both_ways(x, 20)
    np.testing.assert_allclose(lam_s[:20], lam_e[:20], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(v * w, axis=0)), 1.0, atol=1e-8)
    xc = x - mean
    rec = xc @ v[:, :10] @ v[:, :10].T
    mse = np.mean(np.sum((xc - rec) ** 2, axis=1))
    np.testing.assert_allclose(mse, lam_e[10:].clip(min=0).sum() * (len(x) - 1) / len(x),
                               rtol=1e-8)
    assert 0.4 < lam_e[:10].sum() / lam_e.clip(min=0).sum() < 0.7     # 10 PCs: about half


def test_autodiff_modes_cost_follows_the_jacobian_shape():
    from tensorcalc.recipes import autodiff_modes as AM

    times, worst = AM.jacobian_times([2, 64], repeats=3)
    assert worst < 1e-12                                   # the two modes give one Jacobian
    f_tall, r_tall = times[(2, 64)]       # n = 2 inputs, m = 64 outputs: 2 JVPs vs 64 VJPs
    f_wide, r_wide = times[(64, 2)]       # n = 64, m = 2: 64 JVPs vs 2 VJPs
    assert f_tall < r_tall and r_wide < f_wide
    tr, tf, d, diff = AM.logistic_gradient_times(repeats=3, downsample=4)
    assert d == 50 and diff < 1e-12 and tf > 5 * tr       # a gradient: one VJP vs 50 JVPs


def test_bayes_logistic_laplace_posterior_and_predictive():
    from tensorcalc.recipes import bayes_logistic as BL

    (x, t), (xte, tte) = BL._split({"downsample": 4, "seed": 0, "train_size": 200})
    theta, cov, iters, gnorm = BL.laplace(x, t, alpha=1.0)
    assert iters <= 10 and gnorm < 1e-8                      # the MAP by Newton
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    p = BL._sigmoid(x1 @ theta)
    h = x1.T @ (x1 * (p * (1 - p))[:, None]) + np.eye(x1.shape[1])
    np.testing.assert_allclose(cov, np.linalg.inv(h), rtol=1e-8, atol=1e-12)   # Σ = H⁻¹
    pr = BL.predictive(xte, theta, cov, samples=4000)
    assert np.max(np.abs(pr["Laplace (probit)"] - pr["Laplace (Monte Carlo)"])) < 0.05
    conf = {k: np.mean(np.maximum(v, 1 - v)) for k, v in pr.items()}
    assert conf["Laplace (probit)"] < conf["MAP"]             # the predictive is less sure
    ood = BL.predictive(BL.other_digits(4), theta, cov, samples=1000)
    assert np.mean(np.abs(ood["Laplace (probit)"] - 0.5)) < np.mean(np.abs(ood["MAP"] - 0.5))


def test_expected_calibration_error_by_hand():
    from tensorcalc.recipes.bayes_logistic import calibration

    p = np.array([0.9, 0.9, 0.9, 0.9, 0.6, 0.4])     # confidences 0.9 ×4, 0.6 ×2
    t = np.array([1, 1, 1, 0, 1, 1])                   # 3/4 right at 0.9; 1/2 right at 0.6
    ece, table = calibration(p, t, bins=10)
    assert ece == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.1)
    assert [n for *_, n in table] == [2, 4]


def test_chained_saddles_multiply_gd_time_but_not_pgd_time():
    gd = SE.chain_escape_times(4, lr=0.1, lipschitz=1.0)
    factor = SE.chain_factor(0.1, 1.0)                        # 1 + κ ≈ 2.11
    ratios = [b / a for a, b in zip(gd[1:], gd[2:], strict=False)]
    assert all(0.9 * factor < r < 1.25 * factor for r in ratios), (gd, factor)
    pgd = SE.chain_escape_times(4, lr=0.1, perturbed={"radius": 1e-3, "g_thres": 1e-3,
                                                      "t_thres": 50})
    steps = np.diff([0] + pgd)
    assert pgd[-1] < 0.6 * gd[-1] and max(steps[1:]) < 1.5 * min(steps[1:])   # ~ linear
