"""Run reports: PNG figures (matplotlib, Agg, no display needed) and one self-contained HTML page.

Figures (each ``plot_*`` writes a PNG and returns its path):

* :func:`plot_history` — loss and metric curves, training vs validation, per epoch;
* :func:`plot_confusion` — the confusion matrix M[true, predicted] as a heat map with counts;
* :func:`plot_image_grid` — a grid of input images titled with prediction (and truth), green
  when right, red when wrong: used for sample predictions and for misclassified examples;
* :func:`plot_bars` — a bar chart with error bars (cross-validation scores).

:class:`HTMLReport` assembles a page from cards (headline figures), tables, figures and
preformatted text; :meth:`HTMLReport.save` embeds every PNG as base64 (``<img
src="data:image/png;base64,...">``), so ``report.html`` can be mailed or archived alone.

Figures are drawn on ``matplotlib.figure.Figure`` objects directly (no ``pyplot``), so nothing
here touches global state or needs a display.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import math
import os
import platform

import numpy as np

from ..autodiff.mode import no_grad
from ..nn import Conv2d
from ..tensor import Tensor
from . import metrics as M

__all__ = ["HTMLReport", "plot_history", "plot_confusion", "plot_image_grid", "plot_bars",
           "new_figure", "save_figure", "style_axes", "to_display_image", "PALETTE",
           "write_run_report", "report_title", "hyperparameter_table", "flag", "conv_figures",
           "capture_conv_outputs", "first_conv_weights"]

#: colours used across all figures (train, validation, test, accents)
PALETTE = {"train": "#2563eb", "val": "#ea580c", "test": "#16a34a", "bad": "#dc2626",
           "good": "#15803d", "grey": "#6b7280", "accent": "#7c3aed"}


def new_figure(width: float = 6.4, height: float = 4.0):
    """A matplotlib Figure attached to an Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax):
    """The house style: no top/right spines, a light grid."""
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, alpha=0.25, linewidth=0.8)
    ax.tick_params(labelsize=9)


def save_figure(fig, path: str) -> str:
    """Tight layout, write a PNG, return the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, facecolor="white")
    return path


_PRETTY = {"loss": "loss", "acc": "accuracy", "mse": "mean squared error", "r2": "R²",
           "f1": "macro F1", "precision": "macro precision", "recall": "macro recall"}


def _series(history, key):
    pts = [(r["epoch"], r[key]) for r in history
           if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return tuple(zip(*pts, strict=True)) if pts else ((), ())


def plot_history(history: list[dict], path: str, title: str = "") -> str:
    """Loss (left) and the other metrics (right) per epoch, training vs validation."""
    names = []
    for r in history:
        for k in r:
            if k.startswith(("train_", "val_")) and k.split("_", 1)[1] not in names:
                names.append(k.split("_", 1)[1])
    others = [n for n in names if n != "loss"]
    fig = new_figure(11 if others else 6, 3.8)
    axes = np.atleast_1d(fig.subplots(1, 2 if others else 1))
    splits = (("train", "training", PALETTE["train"]), ("val", "validation", PALETTE["val"]))
    for key, label, colour in splits:
        x, y = _series(history, f"{key}_loss")
        if x:
            axes[0].plot(x, y, marker="o", markersize=3.5, color=colour, linewidth=1.8,
                         label=label)
    losses = [v for r in history for k, v in r.items()
              if k.endswith("_loss") and isinstance(v, float) and math.isfinite(v)]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 30:
        axes[0].set_yscale("log")
    axes[0].set_title("loss", fontsize=11)
    if others:
        styles = ("-", "--", ":", "-.")
        for i, name in enumerate(others):
            for key, label, colour in splits:
                x, y = _series(history, f"{key}_{name}")
                if x:
                    axes[1].plot(x, y, marker="o", markersize=3, color=colour,
                                 linestyle=styles[i % len(styles)], linewidth=1.6,
                                 label=f"{label} {_PRETTY.get(name, name)}")
        axes[1].set_title(", ".join(_PRETTY.get(n, n) for n in others), fontsize=11)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        style_axes(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8.5)
    if title:
        fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, path: str, class_names=None,
                   title: str = "confusion matrix (test)") -> str:
    """Heat map of M[true, predicted] with the counts written in; the diagonal is the hits."""
    m = np.asarray(matrix)
    k = len(m)
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    size = max(4.2, 0.42 * k + 2.2)
    fig = new_figure(size + 0.8, size)
    ax = fig.add_subplot(1, 1, 1)
    row = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, row, out=np.zeros(m.shape, dtype=float), where=row > 0)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("fraction of the true class", fontsize=9)
    cb.ax.tick_params(labelsize=8)
    if k <= 30:
        fs = 9 if k <= 12 else 7
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=fs,
                            color="white" if frac[i, j] > 0.55 else
                            (PALETTE["bad"] if i != j else "#1f2937"))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, fontsize=9, rotation=0 if max(map(len, names)) <= 3 else 45,
                       ha="center" if max(map(len, names)) <= 3 else "right")
    ax.set_yticklabels(names, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=11)
    return save_figure(fig, path)


def to_display_image(x: np.ndarray, image_shape=None) -> np.ndarray:
    """One example as an image for ``imshow``: (H, W) grey or (H, W, 3) colour, in [0, 1].

    Accepts flat vectors (reshaped to ``image_shape``), (H, W), (1, H, W), (C, H, W) and
    (H, W, C); values are min-max scaled per image (inputs may be normalised)."""
    a = np.asarray(x, dtype=np.float64)
    if image_shape is not None:
        a = a.reshape(image_shape)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _bare(ax, frame: str | None = None):
    """No ticks; no frame, or a thin one of colour ``frame``."""
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        if frame is None:
            s.set_visible(False)
        else:
            s.set_edgecolor(frame)


def show_image(ax, image, image_shape=None, frame: str | None = None):
    """Draw one image (greyscale ink-on-paper, or RGB) on ``ax`` with no ticks."""
    img = to_display_image(image, image_shape)
    ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None, interpolation="nearest")
    _bare(ax, frame)


def plot_image_grid(images, path: str, predicted=None, true=None, class_names=None,
                    confidence=None, title: str = "", image_shape=None, cols: int = 8) -> str:
    """A grid of images, each titled ``"pred 7"`` (``"7 (true 9)"`` when wrong, with the
    model's confidence if given): green when the prediction is right, red when wrong."""
    n = len(images)
    if n == 0:
        fig = new_figure(4, 1.2)
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=12, color=PALETTE["grey"])
        return save_figure(fig, path)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = new_figure(1.25 * cols, 1.45 * rows + (0.35 if title else 0))
    names = (lambda c: str(class_names[int(c)])) if class_names is not None else str
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        show_image(ax, images[i], image_shape)
        if predicted is not None:
            p = names(predicted[i])
            ok = true is None or int(predicted[i]) == int(true[i])
            label = p if ok else f"{p} (true {names(true[i])})"
            if confidence is not None:
                label += f"\n{100 * float(confidence[i]):.0f} %"
            ax.set_title(label, fontsize=8.5, color=PALETTE["good"] if ok else PALETTE["bad"],
                         pad=2)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def plot_bars(labels, means, stds, path: str, ylabel: str, title: str = "",
              highlight: int | None = None) -> str:
    """Horizontal bars of mean ± std (e.g. cross-validated score per setting); ``highlight``
    marks the best."""
    n = len(labels)
    fig = new_figure(7.5, max(2.2, 0.42 * n + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    colours = [PALETTE["accent"] if i == highlight else PALETTE["train"] for i in range(n)]
    y = np.arange(n)[::-1]
    ax.barh(y, means, xerr=stds, color=colours, alpha=0.85, capsize=3, height=0.6,
            error_kw={"elinewidth": 1, "ecolor": "#374151"})
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8.5)
    ax.set_xlabel(ylabel)
    finite = [m for m in means if math.isfinite(m)]
    if finite:
        lo = min(m - (s if math.isfinite(s) else 0) for m, s in zip(means, stds, strict=True)
                 if math.isfinite(m))
        hi = max(m + (s if math.isfinite(s) else 0) for m, s in zip(means, stds, strict=True)
                 if math.isfinite(m))
        pad = 0.15 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-3
        ax.set_xlim(lo - pad, hi + pad)
        for yi, m in zip(y, means, strict=True):
            if math.isfinite(m):
                ax.text(m, yi + 0.33, f"{m:.4g}", fontsize=7.5, ha="center", va="bottom")
    style_axes(ax)
    ax.grid(axis="y", alpha=0)
    if title:
        ax.set_title(title, fontsize=11)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ convolutions
def _grid_shape(n: int, cols: int) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def plot_filters(weights, path: str, title: str = "", cols: int = 8) -> str:
    """The kernels of a convolution layer, W (C_out, C_in, kh, kw), one small image each.

    One input channel: a diverging map, red w > 0 (the filter responds to ink there), blue
    w < 0, white 0, each filter scaled to its own max |w| (the number under it), so the pattern
    shows even where a filter is small. Three input channels: the filter as an RGB image (min–max
    per filter). Otherwise the mean over input channels, drawn like one channel."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"plot_filters: expected weights (C_out, C_in, kh, kw), got shape "
                         f"{w.shape}")
    o, c = w.shape[:2]
    rows, cols = _grid_shape(o, cols)
    cell = 1.05 if max(w.shape[2:]) <= 5 else 1.3
    fig = new_figure(cell * cols + 0.3, (cell + 0.28) * rows + (0.45 if title else 0.1))
    for i in range(o):
        ax = fig.add_subplot(rows, cols, i + 1)
        if c == 3:
            img = np.moveaxis(w[i], 0, -1)
            lo, hi = img.min(), img.max()
            ax.imshow((img - lo) / (hi - lo) if hi > lo else np.zeros_like(img),
                      interpolation="nearest")
            m = np.abs(w[i]).max()
        else:
            k = w[i, 0] if c == 1 else w[i].mean(axis=0)
            m = float(np.abs(k).max()) or 1.0
            ax.imshow(k, cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
        _bare(ax)
        ax.set_title(f"{i}", fontsize=8, pad=2, color=PALETTE["grey"])
        ax.set_xlabel(f"|w|≤{m:.2f}", fontsize=7, labelpad=2, color=PALETTE["grey"])
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def plot_feature_maps(image, maps, path: str, title: str = "", max_maps: int = 16,
                      cols: int = 8, image_shape=None) -> str:
    """One input image and, for each layer, its feature maps: ``maps`` is a list of
    ``(name, array (C, H, W))``. Maps of a layer share one symmetric diverging scale (red > 0,
    blue < 0), so a map that is weak for this input looks pale; the first ``max_maps`` channels
    of each layer are drawn."""
    maps = [(str(n), np.asarray(a, dtype=np.float64)) for n, a in maps]
    for n, a in maps:
        if a.ndim != 3:
            raise ValueError(f"plot_feature_maps: maps of {n!r} must be (C, H, W), got {a.shape}")
    cols = max(1, min(cols, max([min(len(a), max_maps) for _, a in maps], default=1)))
    blocks = [math.ceil(min(len(a), max_maps) / cols) for _, a in maps]
    total_rows = 1 + sum(blocks)
    cell = 1.15
    fig = new_figure(max(cell * cols, 3.0) + 0.4, cell * total_rows + 0.35 * len(maps) + 0.6
                     + (0.35 if title else 0))
    heights = [1.0] + [b for b in blocks]
    gs = fig.add_gridspec(1 + len(maps), 1, height_ratios=heights, hspace=0.45)
    ax = fig.add_subplot(gs[0])
    show_image(ax, image, image_shape)
    ax.set_title("input", fontsize=9)
    for b, ((name, a), nrow) in enumerate(zip(maps, blocks, strict=True)):
        sub = gs[b + 1].subgridspec(nrow, cols, wspace=0.08, hspace=0.12)
        k = min(len(a), max_maps)
        m = float(np.abs(a[:k]).max()) or 1.0
        for i in range(k):
            axi = fig.add_subplot(sub[i // cols, i % cols])
            axi.imshow(a[i], cmap="RdBu_r", vmin=-m, vmax=m, interpolation="nearest")
            _bare(axi)
            if i == 0:
                more = f", first {k} of {len(a)} channels" if len(a) > k else ""
                axi.set_title(f"{name}: {len(a)}×{a.shape[1]}×{a.shape[2]}{more}", fontsize=9,
                              loc="left", pad=3)
    if title:
        fig.suptitle(title, fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, facecolor="white", bbox_inches="tight")  # gridspec: no tight_layout
    return path


def plot_augmentations(images, rows, path: str, image_shape=None, title: str = "") -> str:
    """Augmentation examples: column 0 the original images, then one row per augmentation
    setting: ``rows`` is a list of ``(label, batch)`` where batch[j] is images[j] transformed."""
    n = len(images)
    r = len(rows) + 1
    fig = new_figure(1.0 * n + 1.6, 1.0 * r + (0.35 if title else 0.1))
    allrows = [("original", images)] + list(rows)
    for i, (label, batch) in enumerate(allrows):
        for j in range(n):
            ax = fig.add_subplot(r, n, i * n + j + 1)
            show_image(ax, batch[j], image_shape, frame="#d1d5db")  # frame: shifts show
            if j == 0:
                ax.set_ylabel(label, fontsize=8.5, rotation=0, ha="right", va="center",
                              labelpad=6)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


__all__ += ["plot_filters", "plot_feature_maps", "plot_augmentations"]


# ------------------------------------------------------------------------------ HTML
_CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,
       Arial,sans-serif; color:var(--fg); background:var(--bg); }
header { background:linear-gradient(120deg,#1e3a8a,#2563eb 60%,#7c3aed); color:white;
         padding:28px 40px 24px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; letter-spacing:-0.01em; }
header .sub { opacity:0.85; font-size:14px; }
main { max-width:1120px; margin:0 auto; padding:24px 40px 48px; }
section { background:white; border:1px solid var(--line); border-radius:10px;
          padding:18px 22px; margin:18px 0; box-shadow:0 1px 2px rgba(0,0,0,0.03); }
h2 { font-size:17px; margin:0 0 12px; font-weight:620; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:4px 0 6px; }
.card { flex:1 1 150px; background:white; border:1px solid var(--line); border-radius:10px;
        padding:12px 16px; }
.card .v { font-size:24px; font-weight:650; font-variant-numeric:tabular-nums; }
.card .k { color:var(--muted); font-size:12.5px; text-transform:uppercase;
           letter-spacing:0.04em; }
.card.hl { border-color:#93c5fd; background:#eff6ff; }
table { border-collapse:collapse; font-size:13.5px; font-variant-numeric:tabular-nums; }
th, td { padding:5px 12px; border-bottom:1px solid var(--line); text-align:left; }
th { color:var(--muted); font-weight:600; font-size:12.5px; }
td.num, th.num { text-align:right; }
tr:hover td { background:#f9fafb; }
figure { margin:8px 0 16px; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
pre { background:#0f172a; color:#e2e8f0; padding:14px 16px; border-radius:8px;
      overflow-x:auto; font-size:12.5px; line-height:1.45; }
p.note { color:var(--muted); font-size:13.5px; margin:6px 0; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
@media (max-width: 900px) { .grid2 { grid-template-columns:1fr; } main { padding:16px; } }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px 0 30px; }
"""


def _fmt_cell(v) -> tuple[str, bool]:
    if isinstance(v, bool):
        return str(v), False
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}", True
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v), True
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}", True
        return f"{v:.4f}", True
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v), False
    return str(v), False


class HTMLReport:
    """A report page: a header, then blocks (cards, tables, figures, text) in order."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self.blocks: list[str] = []
        self._section: list[str] | None = None

    # sections group blocks in a white panel
    def section(self, heading: str) -> HTMLReport:
        self._close()
        self._section = [f"<h2>{html.escape(heading)}</h2>"]
        return self

    def _close(self):
        if self._section is not None:
            self.blocks.append("<section>" + "\n".join(self._section) + "</section>")
            self._section = None

    def _add(self, s: str):
        (self._section if self._section is not None else self.blocks).append(s)

    def cards(self, items, highlight: int | None = 0) -> HTMLReport:
        """Headline figures: ``[(label, value_text), ...]``."""
        out = ['<div class="cards">']
        for i, (k, v) in enumerate(items):
            cls = "card hl" if i == highlight else "card"
            out.append(f'<div class="{cls}"><div class="v">{html.escape(str(v))}</div>'
                       f'<div class="k">{html.escape(str(k))}</div></div>')
        out.append("</div>")
        self._add("\n".join(out))
        return self

    def table(self, rows, header=None, caption: str = "") -> HTMLReport:
        """A table from rows (lists of cells); numbers right-aligned and formatted."""
        out = ["<table>"]
        if header:
            out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                       + "</tr>")
        for r in rows:
            cells = []
            for v in r:
                text, num = _fmt_cell(v)
                cells.append(f'<td{" class=num" if num else ""}>{html.escape(text)}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
        if caption:
            out.append(f'<p class="note">{html.escape(caption)}</p>')
        self._add("\n".join(out))
        return self

    def figure(self, png_path: str, caption: str = "") -> HTMLReport:
        """A PNG, read now and embedded as base64."""
        self._add(self._img(png_path, caption))
        return self

    def text(self, text: str) -> HTMLReport:
        self._add(f'<p class="note">{html.escape(text)}</p>')
        return self

    def pre(self, text: str) -> HTMLReport:
        self._add(f"<pre>{html.escape(text)}</pre>")
        return self

    @staticmethod
    def _img(png_path: str, caption: str) -> str:
        with open(png_path, "rb") as f:
            b64 = base64.b64encode(f.read()).decode("ascii")
        alt = html.escape(caption or os.path.basename(png_path))
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return (f'<figure><img alt="{alt}" src="data:image/png;base64,{b64}">{cap}</figure>')

    def render(self) -> str:
        self._close()
        html_body = "\n".join(self.blocks)
        now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{html.escape(self.title)}</h1>"
            f"<div class=\"sub\">{html.escape(self.subtitle)}</div></header>"
            f"<main>{html_body}</main>"
            f"<footer>tensorcalc report · generated {now}</footer></body></html>\n")

    def save(self, path: str) -> str:
        """Write the self-contained page (atomically) and return its path."""
        text = self.render()
        tmp = path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk leaves no half-written page
                os.remove(tmp)
            raise
        return path


# ------------------------------------------------------------------------------ boxes
def plot_image_boxes(images, path: str, boxes=None, true_boxes=None, titles=None, good=None,
                     title: str = "", image_shape=None, cols: int = 8,
                     title_good=None) -> str:
    """A grid of images with bounding boxes drawn on them.

    ``boxes`` / ``true_boxes``: (N, 4) arrays (or None) of (x0, y0, x1, y1) in pixel *edge*
    coordinates (a box over pixel columns c₀..c₁ is x0 = c₀, x1 = c₁ + 1; see
    :mod:`tensorcalc.train.boxes`). True boxes are drawn dashed green, predicted boxes solid —
    blue where ``good[i]`` (or when ``good`` is None), red otherwise. ``titles``: one string per
    image, green where ``title_good[i]`` (default: ``good``), red otherwise.
    """
    from matplotlib.patches import Rectangle

    n = len(images)
    if n == 0:
        return plot_image_grid([], path, title=title)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = new_figure(1.45 * cols, 1.6 * rows + (0.35 if title else 0))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        show_image(ax, images[i], image_shape, frame="#d1d5db")
        ok = True if good is None else bool(good[i])
        colour = PALETTE["train"] if ok else PALETTE["bad"]
        # imshow puts pixel centres on integers: pixel edges are at k − ½
        if true_boxes is not None:
            x0, y0, x1, y1 = (float(v) for v in true_boxes[i])
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=PALETTE["good"], linewidth=1.3, linestyle="--"))
        if boxes is not None:
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=colour, linewidth=1.5))
        if titles is not None:
            tok = ok if title_good is None else bool(title_good[i])
            ax.set_title(str(titles[i]), fontsize=8, color=PALETTE["good"] if tok
                         else PALETTE["bad"], pad=2)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def plot_methods_history(histories: dict, path: str, key: str = "val_acc",
                         ylabel: str = "validation accuracy", title: str = "") -> str:
    """One curve per method of ``histories`` (name -> list of per-epoch dicts): ``key``
    against the epoch (left) and the training loss (right)."""
    fig = new_figure(11, 3.8)
    ax, bx = fig.subplots(1, 2)
    colours = [PALETTE["train"], PALETTE["val"], PALETTE["test"], PALETTE["accent"],
               PALETTE["grey"]]
    for i, (name, hist) in enumerate(histories.items()):
        c = colours[i % len(colours)]
        x, y = _series(hist, key)
        if x:
            ax.plot(x, y, marker="o", markersize=3, color=c, linewidth=1.6, label=name)
        x, y = _series(hist, "train_loss")
        if x:
            bx.plot(x, y, marker="o", markersize=3, color=c, linewidth=1.6, label=name)
    ax.set_ylabel(ylabel)
    ax.set_title(ylabel, fontsize=11)
    bx.set_title("training loss", fontsize=11)
    bx.set_yscale("log")
    for a in (ax, bx):
        a.set_xlabel("epoch")
        style_axes(a)
        if a.get_legend_handles_labels()[0]:
            a.legend(frameon=False, fontsize=8.5)
    if title:
        fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


__all__ += ["plot_image_boxes", "plot_methods_history"]


# ------------------------------------------------------------------------------ the run report
def flag(key: str) -> str:
    """The command-line flag of a hyperparameter: ``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


def _pct(v):
    return f"{100 * v:.2f} %" if isinstance(v, float) and math.isfinite(v) else "—"


def headline(task: str, test: dict, declared=None) -> tuple[str, str]:
    """The one figure a run is judged by: (label, formatted value) — the recipe's ``declared``
    ``(key, label)`` if any, else accuracy (classification) or R² (regression)."""
    if declared is not None:
        key, label = declared
        v = test.get(key, float("nan"))
        return label, _pct(v) if 0 <= v <= 1 else f"{v:.4g}"
    if task == "regression":
        return "test R²", f"{test.get('r2', float('nan')):.4f}"
    return "test accuracy", _pct(test.get("acc", float("nan")))


def report_title(recipe, data) -> str:
    """A run's title from what it really ran: the recipe, what it trains, on which data."""
    return f"{recipe.name} — {recipe.description} on {data.display}"


def write_run_report(ctx) -> str:
    """Figures (PNGs beside the report) and ``report.html`` for a standard run, given its
    :class:`~tensorcalc.train.pipeline.RunContext`: headline cards, learning curves, the
    recipe's own figures (its ``figures(ctx)`` hook), the test set (confusion matrix, per-class
    table, sample predictions and mistakes for images), model, hyperparameters, run, files."""
    recipe, cfg, data, trainer, test = ctx.recipe, ctx.cfg, ctx.data, ctx.trainer, ctx.test
    history = trainer.history
    n_val = 0 if data.val is None else len(data.val[1])
    rep = HTMLReport(
        report_title(recipe, data),
        f"{data.display} · {len(data.train[1]):,} train / {n_val:,} validation / "
        f"{len(data.test[1]):,} test examples · seed {cfg['seed']} · run directory "
        f"{os.path.abspath(ctx.run_dir)}")
    label, value = headline(data.task, test, getattr(recipe, "headline", None))
    cards = [(label, value), ("test loss", f"{test['loss']:.4f}")]
    if data.classification:
        cards.append(("macro F1", f"{test.get('f1', float('nan')):.4f}"))
    elif "mse" in test:
        cards.append(("test MSE", f"{test['mse']:.4g}"))
    else:
        cards += [(k, _pct(v) if 0 <= v <= 1 else f"{v:.4g}") for k, v in test.items()
                  if k != "loss" and (not recipe.headline or k != recipe.headline[0])][:3]
    cards += [("training time", f"{trainer.train_seconds:.1f} s"),
              ("epochs", f"{trainer.epoch}"), ("parameters", f"{ctx.model.num_parameters():,}")]
    rep.cards(cards)
    if data.description:
        rep.text(data.description)

    if history:
        rep.section("Learning curves")
        curves = plot_history(history, ctx.path("curves.png"))
        rep.figure(curves, "Loss and metrics per epoch on the training data (running mean over "
                           "the epoch, in training mode) and on the validation split.")
        last = history[-1]
        rows = [[k, last[k]] for k in last if k.startswith(("train_", "val_"))]
        rows.append(["learning rate at the end", last.get("lr")])
        rep.table(rows, ["final epoch", "value"])

    from ..diagnostics.flow import report_section as _diagnostics
    _diagnostics(rep, ctx)  # gradient flow and activation health, when recorded

    if recipe.figures is not None:
        extra = recipe.figures(ctx) or []
        if extra:
            rep.section("The model's view")
            for png, caption in extra:
                rep.figure(png, caption)

    if data.classification:
        rep.section("Test set")
        conf = np.asarray(ctx.per_class["confusion"])
        names = data.class_names
        cm_png = plot_confusion(conf, ctx.path("confusion.png"), names)
        pc = ctx.per_class
        rows = [[(names[i] if names else i), pc["precision"][i], pc["recall"][i], pc["f1"][i],
                 pc["support"][i]] for i in range(len(pc["f1"]))]
        rows.append(["macro average", test["precision"], test["recall"], test["f1"],
                     int(sum(pc["support"]))])
        rep.figure(cm_png, "Confusion matrix on the test split: row = true class, column = "
                           "predicted; colour is the fraction of the row.")
        rep.table(rows, ["class", "precision", "recall", "F1", "support"],
                  f"Test accuracy {_pct(test['acc'])} over {len(ctx.targets):,} examples.")
        if data.image_shape is not None:
            _image_sections(rep, ctx)
    else:
        rep.section("Test set")
        rep.table([[k, v] for k, v in test.items()], ["figure", "value"])

    rep.section("Model")
    rep.text(f"{ctx.model.num_parameters():,} trainable parameters; optimiser "
             f"{type(trainer.optimizer).__name__}"
             + (f", schedule {type(trainer.scheduler).__name__}" if trainer.scheduler else ""))
    rep.pre(repr(ctx.model))
    rep.section("Hyperparameters")
    hyperparameter_table(rep, cfg)
    rep.section("Run")
    steps = trainer.global_step
    rep.table([["optimisation steps", steps],
               ["time per epoch", f"{trainer.train_seconds / max(trainer.epoch, 1):.2f} s"],
               ["time per step (incl. validation)",
                f"{1000 * trainer.train_seconds / max(steps, 1):.1f} ms"],
               ["machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                           f"Python {platform.python_version()}, NumPy {np.__version__}"]],
              ["", ""])
    rep.section("Files")
    rep.table([["history.csv", "per-epoch figures"],
               ["tb/", "TensorBoard events: tensorboard --logdir " + ctx.run_dir],
               ["checkpoints/last, checkpoints/best", "resumable checkpoints (safetensors + "
                                                      "JSON manifest)"],
               ["metrics.json", "test figures, per-class table, confusion matrix"],
               ["*.png", "the figures of this page"]], ["file", "what"],
              f"Continue training: tensorcalc train {recipe.name} --out {ctx.run_dir} "
              "--resume --epochs N (a cosine or one-cycle schedule is re-planned for the new "
              f"total).   Re-score: tensorcalc evaluate {ctx.run_dir}.")
    return rep.save(ctx.path("report.html"))


def _hp(v) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def hyperparameter_table(rep, cfg: dict):
    """The hyperparameters as they would be typed on the command line."""
    rep.table([[flag(k), _hp(v)] for k, v in cfg.items() if k != "recipe"],
              ["flag", "value"],
              "Repeat this run: tensorcalc train " + str(cfg.get("recipe", "RECIPE")) + " "
              + " ".join(f"{flag(k)} {_hp(v)}" for k, v in cfg.items()
                         if k != "recipe" and _hp(v) != ""))


def _image_sections(rep, ctx):
    data, out, tgt = ctx.data, ctx.outputs, ctx.targets
    pred = M.predicted_labels(out)
    if out.ndim == 2 and out.shape[1] > 1:
        z = out - out.max(axis=1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        conf = prob[np.arange(len(pred)), pred]
    else:
        conf = None
    xs = data.test[0]
    n = min(32, len(xs))
    rep.section("Sample predictions")
    png = plot_image_grid(xs[:n], ctx.path("samples.png"), pred[:n], tgt[:n],
                            data.class_names, None if conf is None else conf[:n],
                            image_shape=data.image_shape)
    rep.figure(png, f"The first {n} test images with the model's prediction and confidence "
                    "(red: wrong, with the true class).")
    wrong = np.flatnonzero(pred != tgt)
    if conf is not None:
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")]  # most confident mistakes first
    k = min(32, len(wrong))
    rep.section(f"Misclassified ({len(wrong)} of {len(tgt):,})")
    png = plot_image_grid(xs[wrong[:k]], ctx.path("misclassified.png"), pred[wrong[:k]],
                            tgt[wrong[:k]], data.class_names,
                            None if conf is None else conf[wrong[:k]],
                            image_shape=data.image_shape)
    rep.figure(png, "Test images the model gets wrong, most confident mistakes first: "
                    "predicted class (true class) and the probability the model gave it.")


# ------------------------------------------------------------------------------ conv networks
def _conv_layers(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Conv2d)]


def first_conv_weights(model) -> tuple[str, np.ndarray]:
    """(name, W (C_out, C_in, kh, kw)) of the first convolution applied to the input: the one
    whose input channels match the image's, first in registration order."""
    convs = _conv_layers(model)
    if not convs:
        raise ValueError(f"first_conv_weights: {type(model).__name__} has no Conv2d layer")
    c_in = min(m.weight.shape[1] * m.groups for _, m in convs)
    name, m = next((n, m) for n, m in convs if m.weight.shape[1] * m.groups == c_in)
    return name, np.asarray(m.weight.numpy())


def capture_conv_outputs(model, x, count: int = 2) -> list[tuple[str, np.ndarray]]:
    """Run ``model`` on ``x`` (one example, (1, C, H, W)) in eval mode, without gradients, and
    return the outputs (C_out, H, W) of the first ``count`` Conv2d layers in the order the
    forward pass calls them, as ``[(layer name, maps), ...]``."""
    seen: list[tuple[str, np.ndarray]] = []

    def hook(name):
        def fn(module, args, y):
            if len(seen) < count:
                seen.append((name, np.asarray(y.numpy() if isinstance(y, Tensor) else y)[0]))
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in _conv_layers(model)]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(np.asarray(x)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return seen


def _describe_conv(model, name):
    m = model.get_submodule(name)
    kh, kw = m.weight.shape[2:]
    return f"{name} ({kh}×{kw} conv)"


def conv_figures(ctx) -> list:
    """Figures of a convolutional network's report (a recipe's ``figures`` hook): the learned
    filters of the first convolution the forward pass applies and the feature maps of test
    image 0 after the first two convolutions (seen through forward hooks)."""
    model, data = ctx.model, ctx.data
    out = []
    x_test, y_test = data.test
    idx = 0
    maps = capture_conv_outputs(model, x_test[idx:idx + 1], count=2)
    if maps:  # the first convolution the forward pass applies
        name = maps[0][0]
        w = np.asarray(model.get_submodule(name).weight.numpy())
    else:
        name, w = first_conv_weights(model)
    kh, kw = w.shape[2:]
    png = plot_filters(w, ctx.path("filters.png"),
                         title=f"learned filters of the first layer ({name}: {w.shape[0]} × "
                               f"{kh}×{kw})")
    out.append((png, f"The {w.shape[0]} learned {kh}×{kw} filters of the first convolution "
                     f"({name}), drawn as the pixels they weigh: red w > 0 (ink there raises "
                     "the output), blue w < 0, each filter on its own scale (max |w| below "
                     "it). Edge and stroke detectors show up as red/blue pairs side by side."))
    pred = ctx.outputs.argmax(axis=1) if ctx.outputs is not None else None
    maps = [(_describe_conv(model, n), a) for n, a in maps]
    true = data.class_names[int(y_test[idx])] if data.class_names else int(y_test[idx])
    guess = (f", predicted {data.class_names[int(pred[idx])] if data.class_names else pred[idx]}"
             if pred is not None else "")
    png = plot_feature_maps(x_test[idx], maps, ctx.path("feature_maps.png"),
                              title=f"test image {idx} (class {true}{guess}) through the "
                                    "first convolutions")
    out.append((png, "Feature maps of test image 0: the output of each of the first two "
                     "convolution layers (before batch norm / ReLU), one map per filter; "
                     "red > 0 (the ReLU passes it), blue < 0 (cut to 0). Maps of a layer share "
                     "one colour scale, so a pale map responds little to this image."))
    return out
