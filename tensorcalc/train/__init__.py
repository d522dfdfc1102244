"""Training: the Trainer, metrics, callbacks, logs, run reports and model selection.

* :class:`Trainer` — fit / evaluate / predict, determinism, checkpoints and exact resume.
* :mod:`~tensorcalc.train.metrics` — accuracy, precision/recall/F1, confusion matrix, MSE, R².
* :mod:`~tensorcalc.train.callbacks` — :class:`EarlyStopping`, :class:`Checkpoint`,
  :class:`LRSchedule`.
* :mod:`~tensorcalc.train.logging` — progress bar, ``history.csv``, TensorBoard events.
* :mod:`~tensorcalc.train.report` — PNG figures and the self-contained ``report.html``.
* :mod:`~tensorcalc.train.tune` — k-fold cross-validation, grid and random search.
"""

from .callbacks import Callback, Checkpoint, EarlyStopping, LRSchedule  # noqa: F401
from .metrics import (  # noqa: F401
    Accuracy,
    ConfusionMatrix,
    MeanSquaredError,
    Metric,
    R2Score,
    accuracy,
    confusion_matrix,
    mean_squared_error,
    precision_recall_f1,
    r2_score,
)
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted  # noqa: F401
