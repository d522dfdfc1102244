"""Figures and the self-contained HTML report."""

import base64
import re

import numpy as np

from tensorcalc.train import report as R


def _png_ok(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return head == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 1 - 0.5 / e,
             "val_acc": 1 - 0.6 / e, "lr": 0.1} for e in range(1, 6)]
    assert _png_ok(R.plot_history(hist, str(tmp_path / "c.png")))
    m = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 9]])
    assert _png_ok(R.plot_confusion(m, str(tmp_path / "m.png"), ["a", "b", "c"]))
    rng = np.random.default_rng(0)
    for shape, img_shape in [((6, 784), (28, 28)), ((6, 1, 28, 28), None),
                             ((6, 3, 8, 8), None)]:
        p = R.plot_image_grid(rng.random(shape), str(tmp_path / "g.png"), np.arange(6) % 3,
                              np.zeros(6, int), confidence=rng.random(6),
                              image_shape=img_shape)
        assert _png_ok(p)
    assert _png_ok(R.plot_image_grid(np.zeros((0, 4)), str(tmp_path / "e.png")))
    assert _png_ok(R.plot_bars(["a=1", "a=2"], [0.9, 0.8], [0.01, 0.02],
                               str(tmp_path / "b.png"), "acc", highlight=0))


def test_to_display_image_layouts():
    a = R.to_display_image(np.arange(12.0).reshape(3, 2, 2))
    assert a.shape == (2, 2, 3) and a.min() == 0 and a.max() == 1
    assert R.to_display_image(np.ones((1, 5, 5))).shape == (5, 5)


def test_html_report_embeds_every_image_and_escapes_text(tmp_path):
    png = R.plot_bars(["x"], [1.0], [0.0], str(tmp_path / "p.png"), "y")
    rep = R.HTMLReport("run <1>", "sub & title")
    rep.cards([("test accuracy", "97 %"), ("time", "3 s")])
    rep.section("Curves").figure(png, "a caption").table([["lr", 0.001], ["epochs", 3]],
                                                          ["k", "v"])
    rep.section("Model").pre("Sequential(\n  Linear(2 -> 3)\n)")
    path = rep.save(str(tmp_path / "report.html"))
    html = open(path, encoding="utf-8").read()
    assert "run &lt;1&gt;" in html and "sub &amp; title" in html
    srcs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(srcs) == 1
    assert base64.b64decode(srcs[0]) == open(png, "rb").read()
    assert "<section>" in html and "a caption" in html and "Linear(2 -&gt; 3)" in html
    assert 'src="p.png"' not in html  # nothing refers to files outside the page
