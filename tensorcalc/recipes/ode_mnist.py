"""ode-mnist — an ODE-Net classifier (Chen et al. 2018) on MNIST-10k.

A small downsampling front (conv 3×3, two stride-2 4×4 convolutions: 28×28 → 7×7, ``width``
channels), one ODE block dh/dt = f_θ(h) integrated from t = 0 to 1
(:class:`~tensorcalc.nn.ODEBlock` with :class:`~tensorcalc.models.ConvDynamics`: norm, relu,
conv 3×3, twice), then norm, relu and a linear layer from the flattened 32×7×7 maps to the 10
logits (:class:`~tensorcalc.models.ODENet`, 67,722 parameters at width 32). Cross-entropy, Adam
with a cosine schedule, batches of 64, five epochs.

The ODE block solves with dopri5 (``--rtol``/``--atol``) and differentiates by the adjoint ODE
(``--no-adjoint``: through the solver's steps). The report plots the function evaluations of
the forward and backward solves per training step. Chen et al. (Figure 3) saw the forward NFE
grow as training went on; at these settings (t ∈ [0, 1], rtol = atol = 1e-3, width 32) it stayed
at 26 (four dopri5 steps) for the whole measured run, while the adjoint's backward solve took
20–26 (three or four steps): backward ≤ forward, as Chen et al. report.
"""

from __future__ import annotations

import numpy as np

from ..models.odenet import ODENet
from ..train import report as R
from . import Recipe, RecipeError, register
from ._common import IMAGE_DATASETS, image_data


class NFERecorder:
    """A forward hook on the ODE block: per training forward, [forward NFE, backward NFE of the
    previous step] (the previous step's backward has run when the next forward starts)."""

    def __init__(self):
        self.rows = []
        self._b = 0

    def __call__(self, block, args, out):
        if not block.training:
            return None
        b = block.stats.nfe_backward
        if self.rows:
            self.rows[-1][1] = b - self._b
        self._b = b
        self.rows.append([block.last_nfe, 0])
        return None


def _data(cfg):
    for k in ("rtol", "atol"):
        if not isinstance(cfg[k], (int, float)) or not cfg[k] > 0:
            raise RecipeError(f"--{k} must be a number > 0, got {cfg[k]!r}")
    if not isinstance(cfg["width"], int) or cfg["width"] < 1:
        raise RecipeError(f"--width must be an integer >= 1, got {cfg['width']!r}")
    return image_data(cfg, flat=False)


def _model(cfg, data, rng):
    m = ODENet(1, data.num_classes, cfg["width"], rng=rng, rtol=cfg["rtol"], atol=cfg["atol"],
               adjoint=cfg["adjoint"])
    m.nfe_recorder = NFERecorder()
    m.ode.register_forward_hook(m.nfe_recorder)
    return m


def _figures(ctx):
    rec = getattr(ctx.model, "nfe_recorder", None)
    rows = np.asarray(rec.rows[:-1] if rec is not None else [], dtype=float)
    if len(rows) < 2:
        return []
    fig = R.new_figure(6.4, 3.6)
    ax = fig.subplots()
    k = max(1, len(rows) // 100)  # a running mean over ~1 % of training
    smooth = np.stack([np.convolve(rows[:, j], np.ones(k) / k, mode="valid") for j in (0, 1)], 1)
    ax.plot(smooth[:, 0], color=R.PALETTE["train"], linewidth=1.4, label="forward")
    ax.plot(smooth[:, 1], color=R.PALETTE["test"], linewidth=1.4, label="backward (adjoint)")
    ax.set_xlabel("training step")
    ax.set_ylabel("function evaluations per step")
    ax.legend(frameon=False)
    R.style_axes(ax)
    return [(R.save_figure(fig, ctx.path("nfe.png")),
             f"Function evaluations of the ODE block's forward and backward solves per training "
             f"step (running mean over {k} steps): first {rows[0, 0]:.0f} / {rows[0, 1]:.0f}, "
             f"last {rows[-1, 0]:.0f} / {rows[-1, 1]:.0f}.")]


register(Recipe(
    name="ode-mnist",
    description="ODE-Net (conv front, one ODE block, linear head)",
    defaults={"epochs": 5, "batch_size": 64, "lr": 3e-3, "optimizer": "adam",
              "schedule": "cosine", "width": 32, "rtol": 1e-3, "atol": 1e-3, "adjoint": True,
              "dataset": "mnist10k"},
    data=_data, model=_model, figures=_figures,
    help={"width": "channels of the feature maps (and of the ODE block)",
          "rtol": "relative tolerance of the ODE block's dopri5",
          "atol": "absolute tolerance of the ODE block's dopri5",
          "adjoint": "gradients by the adjoint ODE (--no-adjoint: through the solver)",
          "dataset": "mnist10k | fashion-mnist"},
    choices={"dataset": IMAGE_DATASETS},
))
