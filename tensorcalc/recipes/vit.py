"""vit — a small vision transformer on MNIST-10k or Fashion-MNIST (``--dataset``).

Patch 7 (16 patches of 7×7), dim 64, depth 4, 4 heads, MLP 128, pre-norm, a class token and
learned positions (≈ 139k parameters with the head); AdamW 1e-3 with a one-cycle schedule,
weight decay 0.05, batch 128, no augmentation by default (``--augment crop,affine`` for the
moonshot). The report adds the class token's attention to the patches in the last block. On
small data a ViT is expected to trail a CNN (no built-in locality or translation
equivariance): LeNet-5 on the same split reaches ≈ 99 % (README's recipe table).
"""

from __future__ import annotations

import numpy as np

from ..models.vit import ViT
from . import Recipe, register
from ._common import IMAGE_DATASETS, make_augment
from .cnn import SHARED_HELP, conv_recipe_data, conv_recipe_figures


def _model(cfg, data, rng):
    return ViT(28, cfg["patch"], 1, data.num_classes, cfg["dim"], cfg["depth"], cfg["heads"],
               cfg["mlp_dim"], cfg["dropout"], rng=rng)


def _figures(ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(ctx.data.test[0][:8], dtype=np.float32)
    maps = ctx.model.attention_maps(x)
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
    for i in range(8):
        axes[0, i].imshow(x[i].reshape(28, 28), cmap="gray")
        axes[1, i].imshow(maps[i], cmap="magma")
        for a in axes[:, i]:
            a.axis("off")
    fig.suptitle("test images and the class token's attention to each 7×7 patch (last block)")
    fig.tight_layout()
    png = ctx.path("cls_attention.png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    out = [(png, "Class-to-patch attention of the last block, averaged over heads.")]
    try:
        out += conv_recipe_figures(ctx)
    except Exception:  # noqa: BLE001 - the conv figures need conv layers; a ViT has none
        pass
    return out


register(Recipe(
    name="vit", description="vision transformer (patch 7, dim 64, depth 4, 4 heads, pre-norm)",
    defaults={"epochs": 20, "batch_size": 128, "lr": 1e-3, "optimizer": "adamw",
              "weight_decay": 0.05, "schedule": "onecycle", "dataset": "mnist10k",
              "augment": "", "train_fraction": 1.0, "patch": 7, "dim": 64, "depth": 4,
              "heads": 4, "mlp_dim": 128, "dropout": 0.0,
              # a fixed-epoch schedule needs no held-out split: train on all training images,
              # as the reference figures do (the test split is untouched either way)
              "val_fraction": 0.0},
    data=conv_recipe_data, model=_model,
    augment=lambda cfg, data: make_augment(cfg.get("augment", ""), data), figures=_figures,
    help={**SHARED_HELP, "patch": "patch size (divides 28)", "dim": "token width",
          "depth": "encoder blocks", "heads": "attention heads", "mlp_dim": "MLP hidden width"},
    choices={"dataset": IMAGE_DATASETS},
))
