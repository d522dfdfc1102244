"""Exploration schedules: ε as a function of the step (or episode) count t.

Each schedule is a small callable ``schedule(t) -> float`` with no state, so resuming a run
needs only the counter.
"""

from __future__ import annotations

import math

__all__ = ["LinearSchedule", "ExponentialSchedule", "ConstantSchedule", "as_schedule"]


class LinearSchedule:
    """ε(t) = start + (end − start) · min(1, t / duration): linear from ``start`` to ``end``
    over ``duration`` steps, then constant (DQN's exploration_fraction × total steps)."""

    def __init__(self, start: float, end: float, duration: float):
        if duration < 0:
            raise ValueError(f"LinearSchedule: duration must be >= 0, got {duration}")
        self.start, self.end, self.duration = float(start), float(end), float(duration)

    def __call__(self, t: float) -> float:
        if t >= self.duration:
            return self.end
        return self.start + (self.end - self.start) * min(1.0, t / self.duration)

    def __repr__(self):
        return f"LinearSchedule({self.start:g} → {self.end:g} over {self.duration:g})"


class ExponentialSchedule:
    """ε(t) = max(end, start · decayᵗ)."""

    def __init__(self, start: float, end: float, decay: float):
        if not 0 < decay <= 1:
            raise ValueError(f"ExponentialSchedule: decay must be in (0, 1], got {decay}")
        self.start, self.end, self.decay = float(start), float(end), float(decay)

    def __call__(self, t: float) -> float:
        return max(self.end, self.start * math.exp(t * math.log(self.decay)))

    def __repr__(self):
        return f"ExponentialSchedule({self.start:g} × {self.decay:g}^t, floor {self.end:g})"


class ConstantSchedule:
    """ε(t) = value."""

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, t: float) -> float:
        return self.value

    def __repr__(self):
        return f"ConstantSchedule({self.value:g})"


def as_schedule(x):
    """A schedule from a schedule or a number (constant)."""
    if callable(x):
        return x
    return ConstantSchedule(float(x))
