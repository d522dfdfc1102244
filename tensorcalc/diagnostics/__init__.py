"""Diagnostics: numerical gradient checks (and later curvature, gradient flow, explain)."""

from .gradcheck import (  # noqa: F401
    GradcheckError,
    GradcheckReport,
    gradcheck,
    gradcheck_module,
    gradgradcheck,
)
