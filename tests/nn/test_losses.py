"""Losses: stability at extreme logits, bad input, the definitions' special cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sps

import tensorcalc as tc
import tensorcalc.functional as F
import tensorcalc.nn as nn


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_finite_at_huge_logits(dtype):
    z = tc.tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, -1e4]], dtype),
                  requires_grad=True)
    t = np.array([1, 0, 2])
    loss = F.cross_entropy(z, t, reduction="none")
    (g,) = [tc.gradients(loss.sum(), z)]
    assert loss.dtype == dtype and g.dtype == dtype
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(g.numpy()))
    np.testing.assert_allclose(loss.numpy(), [2e4, 2e4 + np.log(2), 2e4 + np.log(2)], rtol=1e-6)
    # ∂ℓ/∂z = softmax(z) − onehot; in float32 the logsumexp y ≈ 2e4 is itself rounded (ulp
    # ≈ 2e-3), so exp(z − y) carries a relative error of that order
    want = sps.softmax(z.numpy().astype(np.float64), axis=1) - np.eye(3)[t]
    np.testing.assert_allclose(g.numpy(), want, atol=1e-6 if dtype == np.float64 else 1e-3)
    ls = F.cross_entropy(z, t, label_smoothing=0.1)
    assert np.isfinite(ls.item())
    probs = F.cross_entropy(z, np.eye(3, dtype=dtype)[t])
    np.testing.assert_allclose(probs.item(), loss.numpy().mean(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_finite_and_exact_at_huge_logits(dtype):
    z = tc.tensor(np.array([1e4, -1e4, 1e4, -1e4, 30.0, -30.0], dtype), requires_grad=True)
    t = np.array([1, 0, 0, 1, 1, 0], dtype)
    loss = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    g = tc.gradients(loss.sum(), z)
    assert loss.dtype == dtype
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(g.numpy()))
    # confident and right: tiny but exact (no cancellation); confident and wrong: |z|
    np.testing.assert_allclose(loss.numpy(), [0, 0, 1e4, 1e4, np.exp(-30.0), np.exp(-30.0)],
                               rtol=1e-5, atol=0)
    np.testing.assert_allclose(g.numpy(), [0, 0, 1, -1, -np.exp(-30.0), np.exp(-30.0)],
                               rtol=1e-5, atol=1e-30)
    pw = F.binary_cross_entropy_with_logits(z, t, pos_weight=np.array([2.0]))
    assert np.isfinite(pw.item())


def test_cross_entropy_bad_class_and_shapes():
    z = tc.zeros((4, 5))
    with pytest.raises(IndexError) as e:
        F.cross_entropy(z, np.array([0, 7, 1, 2]))
    assert "target class 7" in str(e.value) and "C = 5" in str(e.value)
    with pytest.raises(IndexError, match="target class -1"):
        F.cross_entropy(z, np.array([0, -1, 1, 2]))
    with pytest.raises(ValueError, match=r"needs integer targets of shape \(4,\)"):
        F.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="probability target"):
        F.cross_entropy(z, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1, 2, 3]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1, 2, 3]), label_smoothing=1.5)
    # an ignored target may be out of range
    assert np.isfinite(F.cross_entropy(z, np.array([0, -100, 1, 2]), ignore_index=-100).item())


def test_cross_entropy_equals_nll_of_log_softmax_and_module():
    rng = np.random.default_rng(0)
    z = tc.tensor(rng.normal(size=(6, 4)))
    t = tc.tensor(rng.integers(0, 4, 6))  # an integer Tensor target works too
    w = np.array([0.5, 1.0, 2.0, 1.5])
    a = F.cross_entropy(z, t, weight=w)
    b = F.nll_loss(F.log_softmax(z, axis=1), t, weight=w)
    c = nn.CrossEntropyLoss(weight=w)(z, t)
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)
    np.testing.assert_allclose(a.item(), c.item(), rtol=1e-12)
    logp = sps.log_softmax(z.numpy(), axis=1)
    tn = t.numpy()
    want = -(w[tn] * logp[np.arange(6), tn]).sum() / w[tn].sum()
    np.testing.assert_allclose(a.item(), want, rtol=1e-12)


def test_label_smoothing_is_a_mixture_with_the_uniform():
    rng = np.random.default_rng(1)
    z = tc.tensor(rng.normal(size=(5, 3)))
    t = rng.integers(0, 3, 5)
    eps = 0.3
    q = (1 - eps) * np.eye(3)[t] + eps / 3
    np.testing.assert_allclose(F.cross_entropy(z, t, label_smoothing=eps).item(),
                               F.cross_entropy(z, q).item(), rtol=1e-12)


def test_float32_kept_with_float64_constants():
    z = tc.randn(4, 3, rng=0, requires_grad=True)
    w = np.array([1.0, 2.0, 3.0])  # float64
    for loss in (F.cross_entropy(z, np.array([0, 1, 2, 0]), weight=w, label_smoothing=0.1),
                 F.binary_cross_entropy_with_logits(z, np.ones((4, 3)), pos_weight=w),
                 F.mse_loss(z, np.zeros((4, 3))), F.multi_margin_loss(z, np.array([0, 1, 2, 0]),
                                                                       weight=w)):
        assert loss.dtype == np.float32
        assert tc.gradients(loss, z).dtype == np.float32


def test_pointwise_losses_check_shapes_and_ranges():
    with pytest.raises(ValueError, match=r"mse_loss: input of shape \(3,\) and target of shape"):
        F.mse_loss(tc.zeros(3), tc.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        F.binary_cross_entropy(tc.tensor([0.5, 1.5]), tc.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="only 1 and −1"):
        F.hinge_embedding_loss(tc.zeros(3), np.array([1, 0, -1]))
    with pytest.raises(ValueError, match="batchmean"):
        F.mse_loss(tc.zeros(3), tc.zeros(3), reduction="batchmean")


def test_bce_saturated_probabilities_stay_finite():
    p = tc.tensor(np.array([0.0, 1.0, 0.0, 1.0]), requires_grad=True)
    t = np.array([0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0, 0, 100, 100])  # log clamped at −100
    assert np.all(np.isfinite(tc.gradients(loss.sum(), p).numpy()))


def test_regression_losses_values():
    x, t = tc.tensor([0.0, 0.5, 3.0]), tc.tensor([0.0, 0.0, 0.0])
    np.testing.assert_allclose(F.huber_loss(x, t, reduction="none").numpy(), [0, 0.125, 2.5])
    np.testing.assert_allclose(F.smooth_l1_loss(x, t, reduction="none", beta=2.0).numpy(),
                               [0, 0.0625, 2.0])
    np.testing.assert_allclose(F.l1_loss(x, t, reduction="sum").item(), 3.5)
    np.testing.assert_allclose(nn.MSELoss()(x, t).item(), (0.25 + 9) / 3, rtol=1e-6)
    kl = F.kl_div(tc.log(tc.tensor([0.5, 0.5])), tc.tensor([0.5, 0.5]), reduction="sum")
    assert abs(kl.item()) < 1e-7
    kl0 = F.kl_div(tc.tensor([-1.0, -2.0]), tc.tensor([0.0, 1.0]), reduction="sum")
    np.testing.assert_allclose(kl0.item(), 2.0)  # 0·log 0 = 0


def test_gradient_of_mean_cross_entropy_is_softmax_minus_onehot_over_n():
    rng = np.random.default_rng(2)
    z = tc.tensor(rng.normal(size=(4, 6)).astype(np.float32), requires_grad=True)
    t = rng.integers(0, 6, 4)
    g = tc.gradients(F.cross_entropy(z, t), z)
    want = (sps.softmax(z.numpy().astype(np.float64), axis=1) - np.eye(6)[t]) / 4
    np.testing.assert_allclose(g.numpy(), want, atol=1e-7)


def test_loss_modules_match_functional():
    rng = np.random.default_rng(3)
    x, y = tc.tensor(rng.normal(size=(4, 3))), tc.tensor(rng.uniform(size=(4, 3)))
    assert nn.BCEWithLogitsLoss(reduction="sum")(x, y).item() == \
        F.binary_cross_entropy_with_logits(x, y, reduction="sum").item()
    assert nn.HuberLoss(delta=0.3)(x, y).item() == F.huber_loss(x, y, delta=0.3).item()
    assert nn.KLDivLoss(reduction="batchmean")(F.log_softmax(x), F.softmax(y)).item() == \
        F.kl_div(F.log_softmax(x), F.softmax(y), reduction="batchmean").item()
    assert "reduction='mean'" in repr(nn.CrossEntropyLoss())
