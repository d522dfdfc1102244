"""Diagnostics: numerical gradient checks (and later curvature, gradient flow, explain)."""

from . import curvature  # noqa: F401  (Hessian spectrum, trace, density, sharpness)
from .gradcheck import (  # noqa: F401
    GradcheckError,
    GradcheckReport,
    gradcheck,
    gradcheck_module,
    gradgradcheck,
)
