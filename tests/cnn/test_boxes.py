"""Box utilities: IoU on hand-made boxes, broadcasting, conversions, tight boxes from masks,
and the differentiable IoU against central differences."""

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc.train import boxes as B


def test_iou_identical_disjoint_touching():
    a = np.array([2.0, 3.0, 10.0, 7.0])
    assert B.iou(a, a) == pytest.approx(1.0)
    assert B.iou(a, np.array([20.0, 20.0, 25.0, 30.0])) == 0.0
    assert B.iou(a, np.array([10.0, 3.0, 12.0, 7.0])) == 0.0  # shares an edge only


def test_iou_nested_and_partial_overlap_known_values():
    outer = np.array([0.0, 0.0, 4.0, 4.0])
    inner = np.array([1.0, 1.0, 3.0, 3.0])
    assert B.iou(outer, inner) == pytest.approx(4 / 16)        # inner area / outer area
    assert B.iou(inner, outer) == pytest.approx(4 / 16)        # symmetric
    a = np.array([0.0, 0.0, 2.0, 2.0])
    b = np.array([1.0, 1.0, 3.0, 3.0])
    assert B.iou(a, b) == pytest.approx(1 / 7)                 # I = 1, U = 4 + 4 − 1
    c = np.array([1.0, 0.0, 3.0, 2.0])                          # half-shifted in x only
    assert B.iou(a, c) == pytest.approx(2 / 6)


def test_iou_broadcasts_and_pairwise():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, (5, 2))
    wh = rng.uniform(1, 5, (5, 2))
    a = np.concatenate([xy, xy + wh], 1)
    b = a[::-1].copy()
    assert B.iou(a, b).shape == (5,)
    assert B.iou(a[:, None], b[None]).shape == (5, 5)
    m = B.pairwise_iou(a, b[:3])
    assert m.shape == (5, 3)
    for i in range(5):
        for j in range(3):
            assert m[i, j] == pytest.approx(B.iou(a[i], b[j]))
    assert np.allclose(np.diag(B.pairwise_iou(a, a)), 1.0)
    assert np.all((m >= 0) & (m <= 1))
    assert B.iou(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32


def test_iou_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"iou: a must have 4 coordinates.*\(5, 3\)"):
        B.iou(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="pairwise_iou"):
        B.pairwise_iou(np.zeros((2, 3, 4)), np.zeros((2, 4)))


def test_conversions_round_trip_and_values():
    a = np.array([[1.0, 2.0, 5.0, 10.0]])
    c = B.xyxy_to_cxcywh(a)
    assert np.allclose(c, [[3.0, 6.0, 4.0, 8.0]])
    assert np.allclose(B.cxcywh_to_xyxy(c), a)
    assert np.allclose(B.box_area(a), [32.0])
    assert np.allclose(B.scale_boxes(a, 0.5, 0.25), [[0.5, 0.5, 2.5, 2.5]])
    assert np.allclose(B.clip_boxes(np.array([[-2.0, 1.0, 70.0, 80.0]]), 64, 64),
                       [[0, 1, 64, 64]])


def test_boxes_from_mask_edge_coordinates():
    m = np.zeros((3, 6, 8), bool)
    m[0, 1:4, 2:5] = True          # rows 1..3, cols 2..4
    m[1, 5, 7] = True              # a single corner pixel
    out = B.boxes_from_mask(m)
    assert np.array_equal(out[0], [2, 1, 5, 4])
    assert np.array_equal(out[1], [7, 5, 8, 6])
    assert np.array_equal(out[2], [0, 0, 0, 0])   # empty mask
    assert B.box_area(out[0]) == m[0].sum()


def test_iou_is_differentiable_and_matches_finite_differences():
    a = tc.tensor(np.array([[0.0, 0.0, 2.0, 2.0], [0.5, 1.0, 4.0, 3.0]]), requires_grad=True)
    b = np.array([[1.0, 1.0, 3.0, 3.0], [1.0, 0.0, 3.0, 2.5]])
    loss = (1.0 - B.iou(a, b)).sum()
    loss.backward()
    # I = 1, U = 7 for the first pair: ∂IoU/∂x1 = (ih·U − I·(h − ih))/U² = 6/49
    assert a.grad.numpy()[0, 2] == pytest.approx(-6 / 49)
    tc.gradcheck(lambda x: B.iou(x, b), tc.tensor(a.numpy(), requires_grad=True))
    tc.gradcheck(lambda x: B.xyxy_to_cxcywh(x), tc.tensor(a.numpy(), requires_grad=True))
