"""tensorcalc.optim — first-order optimisers, learning-rate schedules, gradient clipping.

Every optimiser is its update equations (in its class docstring); the loop, parameter groups,
validation and state (de)serialisation live in :class:`Optimizer`.
"""

from . import lr_scheduler  # noqa: F401
from .adadelta import Adadelta  # noqa: F401
from .adagrad import Adagrad  # noqa: F401
from .adam import Adam  # noqa: F401
from .adamw import AdamW  # noqa: F401
from .base import Optimizer  # noqa: F401
from .clip import clip_grad_norm_, clip_grad_value_, grad_norm  # noqa: F401
from .flat import FlatParameters, parameters_to_vector, vector_to_parameters  # noqa: F401
from .gauss_newton import GaussNewton, LevenbergMarquardt  # noqa: F401
from .lbfgs import LBFGS  # noqa: F401
from .lr_scheduler import (  # noqa: F401
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearWarmup,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    StepLR,
)
from .nadam import NAdam  # noqa: F401
from .newton import Newton, NotPositiveDefiniteError  # noqa: F401
from .newton_cg import NewtonCG  # noqa: F401
from .perturbed_gd import PerturbedGD  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401

schedules = lr_scheduler  # the name DESIGN.md uses

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam",
    "LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
    "LinearWarmup", "OneCycleLR", "ReduceLROnPlateau",
    "clip_grad_norm_", "clip_grad_value_", "grad_norm", "lr_scheduler", "schedules",
    "FlatParameters", "parameters_to_vector", "vector_to_parameters",
    "Newton", "NotPositiveDefiniteError", "NewtonCG", "LBFGS", "GaussNewton",
    "LevenbergMarquardt", "PerturbedGD",
]
