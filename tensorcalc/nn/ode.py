"""ODEBlock: a layer whose output is the solution of an ODE whose dynamics are a Module.

    h(t₁) = h(t₀) + ∫_{t₀}^{t₁} f_θ(t, h(t)) dt,      h(t₀) = x

the continuous-depth limit of a residual block h ← h + f(h) (Chen et al. 2018). The dynamics
``func`` is a Module called as ``func(t, h)`` (t a Python float). The block solves with
:func:`tensorcalc.odeint` and differentiates by the adjoint ODE (``adjoint=True``: memory
independent of the number of steps) or through the solver's steps. ``block.stats`` counts the
function evaluations (NFE) of the forward and backward solves since the last ``stats.reset()``;
``block.last_nfe`` is the forward NFE of the latest call.
"""

from __future__ import annotations

from ..functional.ode import METHODS, ODEStats, odeint
from .module import Module

__all__ = ["ODEBlock"]


class ODEBlock(Module):
    """x ↦ h(t₁) where dh/dt = func(t, h), h(t₀) = x (see the module docstring)."""

    def __init__(self, func: Module, t0: float = 0.0, t1: float = 1.0, method: str = "dopri5",
                 rtol: float = 1e-3, atol: float = 1e-3, adjoint: bool = True,
                 step_size: float | None = None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"ODEBlock: method must be one of {', '.join(METHODS)}, got "
                             f"{method!r}")
        if not isinstance(func, Module):
            raise TypeError(f"ODEBlock: func must be a Module called as func(t, h), got "
                            f"{type(func).__name__}")
        self.func = func
        self.t0, self.t1 = float(t0), float(t1)
        self.method, self.rtol, self.atol = method, rtol, atol
        self.adjoint, self.step_size = adjoint, step_size
        self.stats = ODEStats()
        self.last_nfe = 0

    def forward(self, x):
        before = self.stats.nfe_forward
        ys = odeint(self.func, x, [self.t0, self.t1], method=self.method, rtol=self.rtol,
                    atol=self.atol, step_size=self.step_size, adjoint=self.adjoint,
                    params=[p for p in self.func.parameters() if p.requires_grad],
                    stats=self.stats)
        self.last_nfe = self.stats.nfe_forward - before
        return ys[-1]

    def extra_repr(self) -> str:
        return (f"t=[{self.t0:g}, {self.t1:g}], method={self.method}, rtol={self.rtol:g}, "
                f"atol={self.atol:g}, adjoint={self.adjoint}")
