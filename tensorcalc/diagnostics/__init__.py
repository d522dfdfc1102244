"""Diagnostics: numerical gradient checks (and later curvature, gradient flow, explain)."""

from . import curvature  # noqa: F401  (Hessian spectrum, trace, density, sharpness)
from .explain import Explanation, explain  # noqa: F401  (the math of any model, verified)
from .gradcheck import (  # noqa: F401
    GradcheckError,
    GradcheckReport,
    gradcheck,
    gradcheck_module,
    gradgradcheck,
)
