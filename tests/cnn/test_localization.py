"""The localisation recipe: canvas generator (shapes, boxes, determinism, digit inside its box),
the two-headed model and loss, the metrics, and a smoke run whose report draws the boxes."""

import os

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import data as D
from tensorcalc import models
from tensorcalc.recipes import _canvases as C
from tensorcalc.recipes import get_recipe, list_recipes, train_recipe
from tensorcalc.recipes import localization as L
from tensorcalc.train import boxes as B
from tensorcalc.train import metrics as M


@pytest.fixture(scope="module")
def digits():
    x, y = D.load_mnist10k()
    return x[:60], y[:60]


def test_canvases_shapes_ranges_and_boxes_inside(digits):
    x, y = digits
    c = C.make_canvases(x, y, copies=2, scale=(20, 40), rng=0)
    assert len(c) == 120
    assert c.images.shape == (120, 64, 64) and c.images.dtype == np.float32
    assert c.images.min() >= 0 and c.images.max() <= 1
    assert c.boxes.shape == (120, 4) and c.labels.shape == (120,)
    assert np.all(c.sizes >= 20) and np.all(c.sizes <= 40)
    x0, y0, x1, y1 = c.boxes.T
    assert np.all((0 <= x0) & (x0 < x1) & (x1 <= 64) & (0 <= y0) & (y0 < y1) & (y1 <= 64))
    # the tight box lies inside the pasted square, and the labels follow their source digit
    sq = c.squares
    assert np.all(c.boxes[:, :2] >= sq[:, :2]) and np.all(c.boxes[:, 2:] <= sq[:, 2:])
    assert np.array_equal(c.labels, y[c.source].astype(np.int64))
    assert np.array_equal(np.bincount(c.source, minlength=60), np.full(60, 2))
    t = c.targets()
    assert t.shape == (120, 5) and np.all((t[:, 1:] > 0) & (t[:, 1:] <= 1))
    assert np.allclose(B.cxcywh_to_xyxy(t[:, 1:] * 64), c.boxes, atol=1e-4)


def test_digit_pixels_inside_box_and_box_is_tight(digits):
    x, y = digits
    c = C.make_canvases(x, y, rng=3)
    for img, box in zip(c.images, c.boxes.astype(int), strict=True):
        ink = img >= C.INK
        x0, y0, x1, y1 = box
        inside = np.zeros_like(ink)
        inside[y0:y1, x0:x1] = True
        assert ink.sum() > 0 and not np.any(ink & ~inside)   # every digit pixel in the box
        # tight: each edge row / column of the box holds ink
        assert ink[y0, x0:x1].any() and ink[y1 - 1, x0:x1].any()
        assert ink[y0:y1, x0].any() and ink[y0:y1, x1 - 1].any()


def test_canvases_deterministic_by_seed(digits):
    x, y = digits
    a = C.make_canvases(x, y, rng=7)
    b = C.make_canvases(x, y, rng=np.random.default_rng(7))
    c = C.make_canvases(x, y, rng=8)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.boxes, c.boxes)


def test_canvases_bad_input(digits):
    x, y = digits
    with pytest.raises(ValueError, match="scale"):
        C.make_canvases(x, y, scale=(30, 70))
    with pytest.raises(ValueError, match="make_canvases"):
        C.make_canvases(x[:, 0], y)


def test_recipe_data_disjoint_digits_and_fixed_test_set():
    r = get_recipe("localization")
    cfg = r.config({"digits": 80, "test_digits": 40, "seed": 1})
    d1 = r.data(cfg)
    d2 = r.data(dict(cfg, seed=2))
    assert d1.train[0].shape == (160, 1, 64, 64) and d1.train[1].shape == (160, 5)
    assert d1.test[0].shape == (40, 1, 64, 64)
    # the test canvases do not depend on the run's seed; the training canvases do
    assert np.array_equal(d1.test[0], d2.test[0])
    assert not np.array_equal(d1.train[0], d2.train[0])
    # train / val / test digits are disjoint images of the standard split
    (tr, _), (va, _), (te, _) = C._digit_split(cfg)
    keys = [{im.tobytes() for im in part} for part in (tr, va, te)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_model_two_outputs_named_loss_parts_and_metrics():
    rng = np.random.default_rng(0)
    m = models.LocalizationNet(rng=0)
    x = tc.tensor(rng.standard_normal((4, 1, 64, 64)).astype(np.float32))
    z, box = m(x)
    assert z.shape == (4, 10) and box.shape == (4, 4) and box.dtype == np.float32
    assert np.all((box.numpy() > 0) & (box.numpy() < 1))
    t = np.array([[3, .5, .5, .3, .4], [1, .2, .3, .1, .3], [7, .7, .6, .4, .4],
                  [0, .4, .4, .5, .5]], np.float32)
    parts = L.localization_loss()((z, box), tc.tensor(t))
    assert set(parts) == {"loss", "ce", "box", "overlap"}
    total = parts["ce"] + parts["box"] + parts["overlap"]
    assert parts["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    parts["loss"].backward()
    assert np.isfinite(parts["loss"].item())
    assert all(p.grad is not None for p in m.parameters())
    # a perfect output: loss = the cross-entropy only; IoU 1 everywhere
    logits = np.zeros((4, 10), np.float32)
    logits[np.arange(4), t[:, 0].astype(int)] = 30.0
    perfect = (logits, t[:, 1:].copy())
    assert L.localization_loss()(tuple(map(tc.tensor, perfect)), t)["loss"].item() < 1e-6
    acc, iou = M.ClassAccuracy(), M.BoxIoU()
    acc.update(perfect, t)
    iou.update(perfect, t)
    assert acc.compute()["acc"] == 1.0
    assert iou.compute()["iou"] == pytest.approx(1.0) and iou.compute()["iou50"] == 1.0
    shifted = (logits.copy(), t[:, 1:].copy())
    shifted[1][0, 0] += 0.3         # moves box 0 off its target completely
    shifted[0][1, 0] = 99.0         # wrong class for canvas 1
    acc.reset(), iou.reset()
    acc.update(shifted, t)
    iou.update(shifted, t)
    assert acc.compute()["acc"] == 0.75 and iou.compute()["iou50"] == 0.75
    with pytest.raises(ValueError, match=r"targets must be \(N, 5\)"):
        L.localization_loss()((z, box), tc.tensor(t[:, :4]))


def test_recipe_listed():
    assert "localization" in [r.name for r in list_recipes()]


@pytest.mark.slow
def test_smoke_run_loss_goes_down_and_report_draws_boxes(tmp_path):
    res = train_recipe("localization", {"digits": 256, "test_digits": 64, "epochs": 3,
                                        "batch_size": 32, "channels": (8, 8, 16, 32),
                                        "hidden": 64},
                       str(tmp_path), quiet=True, progress=False)
    h = res.history
    assert len(h) == 3 and h[-1]["train_loss"] < h[0]["train_loss"]
    for k in ("acc", "iou", "iou50", "loss", "ce", "box", "overlap"):
        assert np.isfinite(res.test[k])
    assert "train_overlap" in h[-1] and "val_iou50" in h[-1]  # loss parts and metrics logged
    assert 0 <= res.test["iou50"] <= 1
    assert os.path.isfile(tmp_path / "boxes.png") and os.path.isfile(tmp_path / "metrics.json")
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    assert "test boxes with IoU ≥ 0.5" in page and "boxes.png" not in page  # embedded
    assert "on MNIST-10k digits on 64×64 canvases" in page
    assert os.path.isdir(tmp_path / "checkpoints" / "last")
