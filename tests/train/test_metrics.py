"""Metrics on hand-made cases; streaming metrics equal the one-shot functions."""

import numpy as np
import pytest

from tensorcalc import Tensor
from tensorcalc.train import metrics as M


def test_accuracy_from_logits_labels_and_binary_logit():
    z = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    y = np.array([0, 1, 1, 0])
    assert M.accuracy(z, y) == 0.75
    assert M.accuracy(Tensor(z), Tensor(y)) == 0.75
    onehot = np.eye(3)[y]
    assert M.accuracy(z, onehot) == 0.75
    # one logit per example: predict 1 iff z > 0 (σ(z) > ½)
    zb = np.array([[-1.0], [0.5], [2.0], [0.0]])
    assert M.accuracy(zb, np.array([0, 1, 0, 0])) == 0.75


def test_confusion_matrix_and_precision_recall_f1_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    m = M.confusion_matrix(y, p, 3)
    np.testing.assert_array_equal(m, [[2, 1, 0], [0, 1, 1], [1, 0, 3]])
    d = M.precision_recall_f1(y, p, 3)
    # class 0: tp 2, predicted 3, true 3; class 1: tp 1, pred 2, true 2; class 2: tp 3, pred 4,
    # true 4
    np.testing.assert_allclose(d["precision"], [2 / 3, 1 / 2, 3 / 4])
    np.testing.assert_allclose(d["recall"], [2 / 3, 1 / 2, 3 / 4])
    np.testing.assert_allclose(d["f1"], [2 / 3, 1 / 2, 3 / 4])
    np.testing.assert_array_equal(d["support"], [3, 2, 4])
    assert d["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_precision_recall_differ_and_absent_class_counts_zero():
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 0, 1])
    d = M.precision_recall_f1(y, p, 3)
    np.testing.assert_allclose(d["precision"], [2 / 3, 1.0, 0.0])
    np.testing.assert_allclose(d["recall"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(d["f1"], [0.8, 2 / 3, 0.0])


def test_mse_and_r2_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    yhat = np.array([1.0, 2.0, 3.0, 5.0])
    assert M.mean_squared_error(yhat, y) == pytest.approx(0.25)
    # R² = 1 − SSE/SST = 1 − 1/5
    assert M.r2_score(yhat, y) == pytest.approx(0.8)
    assert M.r2_score(y, y) == 1.0
    assert M.r2_score(np.full(4, y.mean()), y) == pytest.approx(0.0)


def test_streaming_metrics_equal_one_shot():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((103, 4))
    y = rng.integers(0, 4, 103)
    acc, cm = M.Accuracy(), M.ConfusionMatrix(4)
    for i in range(0, 103, 10):
        acc.update(z[i:i + 10], y[i:i + 10])
        cm.update(z[i:i + 10], y[i:i + 10])
    assert acc.compute()["acc"] == pytest.approx(M.accuracy(z, y))
    pred = M.predicted_labels(z)
    np.testing.assert_array_equal(cm.matrix, M.confusion_matrix(y, pred, 4))
    assert cm.compute()["f1"] == pytest.approx(M.precision_recall_f1(y, pred, 4)["macro_f1"])
    t = rng.standard_normal(57)
    yh = t + 0.3 * rng.standard_normal(57)
    mse, r2 = M.MeanSquaredError(), M.R2Score()
    for i in range(0, 57, 8):
        mse.update(yh[i:i + 8, None], t[i:i + 8])
        r2.update(yh[i:i + 8], t[i:i + 8])
    assert mse.compute()["mse"] == pytest.approx(M.mean_squared_error(yh, t))
    assert r2.compute()["r2"] == pytest.approx(M.r2_score(yh, t))


def test_metric_state_round_trip_and_clone_resets():
    a = M.ConfusionMatrix(3)
    a.update(np.eye(3), np.array([0, 1, 1]))
    b = M.ConfusionMatrix(3)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.clone().matrix.sum() == 0
    r = M.R2Score()
    r.update(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    s = M.R2Score()
    s.load_state_dict(r.state_dict())
    assert s.compute() == r.compute()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="rows"):
        M.accuracy(np.zeros((3, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        M.confusion_matrix(np.array([0, 5]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="integer labels"):
        M.accuracy(np.zeros((2, 3)), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="unknown metric"):
        M.get_metric("auc")
