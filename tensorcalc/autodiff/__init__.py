"""The engine: Function and its structures, reverse and forward mode, transforms, modes."""

from .custom import checkpoint, custom_vjp  # noqa: F401
from .engine import backward, gradients  # noqa: F401
from .function import REGISTRY, Bilinear, Elementwise, Function, Linear, primitive  # noqa: F401
from .mode import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa
from .pytree import tree_flatten, tree_map, tree_unflatten  # noqa: F401
from .transforms import grad, hessian, hvp, jacobian, jvp, value_and_grad, vjp  # noqa: F401
