"""Diagnostics: numerical gradient checks (and later curvature, gradient flow, explain)."""

from .gradcheck import GradcheckError, GradcheckReport, gradcheck, gradgradcheck  # noqa: F401
