"""Training: the Loop and its Steps, the Trainer, metrics, callbacks, logs, reports, tuning.

* :class:`Loop` — iteration (epochs or steps), progress, logs, evaluation, checkpoints, exact
  resume, Ctrl-C/SIGTERM, the divergence guard; drives a :class:`Step`.
* :class:`Step`, :class:`SupervisedStep` — one update of a model family and what it owns.
* :class:`Trainer` — supervised fit / evaluate / predict: a SupervisedStep on a Loop.
* :mod:`~tensorcalc.train.metrics` — accuracy, precision/recall/F1, confusion matrix, MSE, R².
* :mod:`~tensorcalc.train.callbacks` — :class:`EarlyStopping`, :class:`Checkpoint`,
  :class:`LRSchedule`.
* :mod:`~tensorcalc.train.logging` — progress bar, ``history.csv``, TensorBoard events.
* :mod:`~tensorcalc.train.report` — PNG figures and the self-contained ``report.html``.
* :mod:`~tensorcalc.train.tune` — k-fold cross-validation, grid and random search.
"""

from .callbacks import Callback, Checkpoint, EarlyStopping, LRSchedule  # noqa: F401
from .loop import (  # noqa: F401
    DataError,
    Hooks,
    Loop,
    TrainingDiverged,
    TrainingInterrupted,
    TrainingTerminated,
)
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
from .steps import Step, SupervisedStep  # noqa: F401
from .trainer import Trainer  # noqa: F401
