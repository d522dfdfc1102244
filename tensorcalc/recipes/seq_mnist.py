"""seq-mnist — MNIST-10k digits read row by row by an LSTM (or ``--cell gru|rnn``).

Each 28×28 image is a sequence of 28 steps of 28 pixels, x_t = row t; the recurrent layer's
final state h_28 is classified by a dense layer into 10 logits (cross-entropy, Adam, cosine
schedule). The network never sees the whole image at once:
what it knows about the top rows when it reaches the bottom is what its state kept.
"""

from __future__ import annotations

from ..models.seq_classifier import SeqClassifier
from . import Recipe, register
from ._common import IMAGE_DATASETS, image_data


def _data(cfg):
    return image_data(cfg, flat=False)


def _model(cfg, data, rng):
    return SeqClassifier(28, cfg["hidden"], data.num_classes, cfg["layers"], cfg["cell"],
                         cfg["bidirectional"], rng=rng)


register(Recipe(
    name="seq-mnist",
    description="digits read row by row (28 steps of 28 pixels) by an LSTM/GRU/RNN",
    defaults={"epochs": 12, "batch_size": 64, "lr": 2e-3, "optimizer": "adam",
              "schedule": "cosine", "hidden": 128, "layers": 1, "cell": "lstm",
              "bidirectional": False, "dataset": "mnist10k"},
    data=_data, model=_model,
    help={"hidden": "hidden units", "layers": "recurrent layers", "cell": "lstm | gru | rnn",
          "bidirectional": "read the rows both ways", "dataset": "mnist10k | fashion-mnist"},
    choices={"dataset": IMAGE_DATASETS, "cell": ("lstm", "gru", "rnn")},
))
