"""The engine: Function and its structures, reverse and forward mode, transforms, modes."""

from .engine import backward, gradients  # noqa: F401
from .function import REGISTRY, Bilinear, Elementwise, Function, Linear, primitive  # noqa: F401
from .mode import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa
from .transforms import grad, hessian, hvp, jacobian, jvp, value_and_grad, vjp  # noqa: F401
