"""Learning-rate schedules.

A schedule sets ``group["lr"]`` of every parameter group of an optimiser as a function of the
step counter t (``last_epoch``; an epoch or an iteration, whichever you call :meth:`step` on).
Every schedule here except :class:`ReduceLROnPlateau` is a *closed form* γ_t = f(γ₀, t) of the
base learning rate γ₀ (the group's ``initial_lr``, recorded when the first schedule is attached),
evaluated directly rather than by multiplying the previous rate — so there is no drift, a
schedule can be resumed from ``t`` alone, and schedules compose (:class:`LinearWarmup` runs any
other schedule after its warm-up by evaluating its closed form at t − warm-up).

Usage follows PyTorch: build the schedule after the optimiser (this sets the rate for t = 0),
call ``optimizer.step()`` then ``scheduler.step()`` once per epoch (or iteration).

Training longer. A schedule planned for a run's length (cosine annealing's T_max, 1cycle's
total_steps, a warm-up followed by one of them) has a ``horizon``; ``set_horizon(T)`` re-plans
it for T steps: the closed form is evaluated with the new length from the current t on, so the
remaining steps follow the schedule as if it had been planned for T from the start. The
training Loop does this when a resumed run is given more epochs than it was planned for.
Schedules without a horizon (``horizon is None``) continue their closed form unchanged.
"""

from __future__ import annotations

import bisect
import math

from .base import Optimizer

__all__ = [
    "LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
    "LinearWarmup", "OneCycleLR", "ReduceLROnPlateau",
]


def _check_opt(who, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{who}: expected an Optimizer, got {type(optimizer).__name__}")


class LRScheduler:
    """Base of closed-form schedules: subclasses define ``lr_at(t) -> list[float]`` (one rate
    per parameter group) from ``self.base_lrs`` γ₀."""

    _state_keys: tuple = ()  # extra attributes saved by state_dict (JSON-able values)

    def __init__(self, optimizer: Optimizer):
        _check_opt(type(self).__name__, optimizer)
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply(self.lr_at(0))

    def lr_at(self, t: int) -> list[float]:  # pragma: no cover - abstract
        raise NotImplementedError  # abstract: subclasses define it

    def _apply(self, lrs):
        for g, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            g["lr"] = lr
        self._last_lr = list(lrs)

    def step(self, epoch: int | None = None) -> None:
        """Advance t by one (or set it to ``epoch``) and set every group's lr to γ_t."""
        self.last_epoch = self.last_epoch + 1 if epoch is None else int(epoch)
        self._apply(self.lr_at(self.last_epoch))

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step` (one per parameter group)."""
        return list(self._last_lr)

    @property
    def horizon(self) -> int | None:
        """The number of steps the schedule is planned for (None: it has no end)."""
        return None

    def set_horizon(self, total: int) -> None:
        """Re-plan for ``total`` steps and set the rates for the current t (module doc)."""
        raise ValueError(f"{type(self).__name__} has no horizon to re-plan")

    def state_dict(self) -> dict:
        """JSON-able state: ``last_epoch``, ``base_lrs`` and the schedule's settings."""
        d = {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
             "_last_lr": list(self._last_lr)}
        for k in self._state_keys:
            v = getattr(self, k)
            d[k] = list(v) if isinstance(v, tuple) else v
        return d

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` and set the optimiser's rates to match."""
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state has "
                             f"{len(state['base_lrs'])} groups, the optimiser has "
                             f"{len(self.optimizer.param_groups)}")
        for k in self._state_keys:
            if k in state:
                setattr(self, k, state[k])
        self.base_lrs = list(state["base_lrs"])
        self.last_epoch = int(state["last_epoch"])
        self._apply(state.get("_last_lr") or self.lr_at(self.last_epoch))

    def __repr__(self):
        keys = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._state_keys)
        return f"{type(self).__name__}({keys}, last_epoch={self.last_epoch})"


class LambdaLR(LRScheduler):
    """γ_t = γ₀ · λ(t) for a user function λ (one per group, or one for all).

    The function itself is not saved by :meth:`state_dict` (only t and γ₀).
    """

    def __init__(self, optimizer, lr_lambda):
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else \
            [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError(f"LambdaLR: {len(self.lr_lambdas)} functions for {n} groups")
        super().__init__(optimizer)

    def lr_at(self, t):
        return [b * f(t) for b, f in zip(self.base_lrs, self.lr_lambdas, strict=True)]


class StepLR(LRScheduler):
    """Step decay: γ_t = γ₀ · γ^⌊t / s⌋   (multiply by ``gamma`` every ``step_size`` s steps)."""

    _state_keys = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        if gamma < 0:
            raise ValueError(f"StepLR: gamma must be >= 0, got {gamma!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, t):
        return [b * self.gamma ** (t // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Decay at milestones m₁ < m₂ < …:  γ_t = γ₀ · γ^{#{i : mᵢ ≤ t}}."""

    _state_keys = ("milestones", "gamma")

    def __init__(self, optimizer, milestones, gamma: float = 0.1):
        ms = [int(m) for m in milestones]
        if ms != sorted(ms) or len(set(ms)) != len(ms):
            raise ValueError(f"MultiStepLR: milestones must be strictly increasing, got {ms}")
        if gamma < 0:
            raise ValueError(f"MultiStepLR: gamma must be >= 0, got {gamma!r}")
        self.milestones, self.gamma = ms, gamma
        super().__init__(optimizer)

    def lr_at(self, t):
        return [b * self.gamma ** bisect.bisect_right(self.milestones, t) for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Exponential decay: γ_t = γ₀ · γᵗ."""

    _state_keys = ("gamma",)

    def __init__(self, optimizer, gamma: float):
        if gamma < 0:
            raise ValueError(f"ExponentialLR: gamma must be >= 0, got {gamma!r}")
        self.gamma = gamma
        super().__init__(optimizer)

    def lr_at(self, t):
        return [b * self.gamma ** t for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing (SGDR without restarts, Loshchilov & Hutter 2017):

        γ_t = η_min + (γ₀ − η_min) · (1 + cos(π t / T_max)) / 2

    It reaches η_min at t = T_max; past T_max the cosine continues (the rate rises again),
    which is also what PyTorch's recursive form does.
    """

    _state_keys = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be > 0, got {T_max!r}")
        if eta_min < 0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be >= 0, got {eta_min!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, t):
        c = (1.0 + math.cos(math.pi * t / self.T_max)) / 2.0
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]

    @property
    def horizon(self):
        return self.T_max

    def set_horizon(self, total):
        if total <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be > 0, got {total!r}")
        self.T_max = int(total)
        self._apply(self.lr_at(self.last_epoch))


class LinearWarmup(LRScheduler):
    """Linear warm-up over W steps, optionally followed by another schedule:

        γ_t = γ₀ · (f₀ + (1 − f₀) · t / W)     for t < W        (f₀ = start_factor)
        γ_t = after.lr_at(t − W)               for t ≥ W        (γ₀ if there is no ``after``)

    ``after`` is a schedule built on the same optimiser (e.g. ``CosineAnnealingLR(opt, T)``);
    its clock starts when the warm-up ends. Without ``after`` this is PyTorch's ``LinearLR``
    with end_factor 1.
    """

    _state_keys = ("warmup_steps", "start_factor")

    def __init__(self, optimizer, warmup_steps: int, start_factor: float = 0.0,
                 after: LRScheduler | None = None):
        if not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ValueError(f"LinearWarmup: warmup_steps must be a positive int, "
                             f"got {warmup_steps!r}")
        if not 0.0 <= start_factor <= 1.0:
            raise ValueError(f"LinearWarmup: start_factor must lie in [0, 1], "
                             f"got {start_factor!r}")
        if after is not None and after.optimizer is not optimizer:
            raise ValueError("LinearWarmup: `after` must schedule the same optimizer")
        self.warmup_steps, self.start_factor, self.after = warmup_steps, start_factor, after
        super().__init__(optimizer)

    def lr_at(self, t):
        W = self.warmup_steps
        if t < W:
            f = self.start_factor + (1.0 - self.start_factor) * t / W
            return [b * f for b in self.base_lrs]
        if self.after is not None:
            return self.after.lr_at(t - W)
        return list(self.base_lrs)

    @property
    def horizon(self):
        h = None if self.after is None else self.after.horizon
        return None if h is None else h + self.warmup_steps

    def set_horizon(self, total):
        if self.horizon is None:
            super().set_horizon(total)
        self.after.set_horizon(max(int(total) - self.warmup_steps, 1))
        self._apply(self.lr_at(self.last_epoch))

    def step(self, epoch=None):
        super().step(epoch)
        if self.after is not None:  # keep the inner clock consistent for its own state_dict
            self.after.last_epoch = max(self.last_epoch - self.warmup_steps, 0)
            self.after._last_lr = list(self._last_lr)

    def state_dict(self):
        d = super().state_dict()
        d["after"] = None if self.after is None else self.after.state_dict()
        return d

    def load_state_dict(self, state):
        if self.after is not None and state.get("after") is not None:
            self.after.load_state_dict(state["after"])
        super().load_state_dict(state)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018), PyTorch's ``OneCycleLR`` conventions.

    With peak γ_max, γ_init = γ_max / div_factor, γ_min = γ_init / final_div_factor, T =
    total_steps, and the annealing a(s, e, x) = e + (s − e)(1 + cos πx)/2 ('cos') or
    s + (e − s)x ('linear') for x ∈ [0, 1]:

      two phases:   t ∈ [0, p T − 1]:          γ_t = a(γ_init, γ_max, t / (pT − 1))
                    t ∈ [p T − 1, T − 1]:      γ_t = a(γ_max, γ_min, (t − (pT−1)) / (T − pT))
      three phases: up to pT − 1 as above, then back to γ_init at 2pT − 2, then to γ_min at T − 1.

    (p = pct_start.) With ``cycle_momentum`` the momentum (or β₁ for Adam-type optimisers) runs
    the opposite way between max_momentum and base_momentum. As in PyTorch, t may reach T (the
    ``scheduler.step()`` after the last optimiser step); stepping beyond T raises.
    """

    _state_keys = ("total_steps", "max_lrs", "pct_start", "anneal_strategy", "div_factor",
                   "final_div_factor", "three_phase", "cycle_momentum", "base_momentum",
                   "max_momentum")

    def __init__(self, optimizer, max_lr, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False):
        _check_opt("OneCycleLR", optimizer)
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        if not isinstance(total_steps, int) or total_steps < 2:
            raise ValueError(f"OneCycleLR: total_steps must be an int >= 2, got {total_steps!r}")
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"OneCycleLR: pct_start must lie in (0, 1), got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', "
                             f"got {anneal_strategy!r}")
        n = len(optimizer.param_groups)
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * n
        if len(max_lrs) != n:
            raise ValueError(f"OneCycleLR: {len(max_lrs)} max_lr values for {n} groups")
        self.total_steps, self.max_lrs, self.pct_start = total_steps, max_lrs, pct_start
        self.anneal_strategy, self.div_factor = anneal_strategy, div_factor
        self.final_div_factor, self.three_phase = final_div_factor, three_phase
        self.cycle_momentum = cycle_momentum
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        if cycle_momentum:
            g0 = optimizer.param_groups[0]
            if "momentum" not in g0 and "betas" not in g0:
                raise ValueError("OneCycleLR: the optimizer has neither 'momentum' nor 'betas'; "
                                 "pass cycle_momentum=False")
        for g, m in zip(optimizer.param_groups, max_lrs, strict=True):
            g["initial_lr"] = m / div_factor  # the cycle defines its own start
        super().__init__(optimizer)

    def _phases(self):
        T, p = self.total_steps, self.pct_start
        up = float(p * T) - 1.0
        if self.three_phase:
            return [(0.0, up, "init", "max"), (up, 2 * up, "max", "init"),
                    (2 * up, T - 1.0, "init", "min")]
        return [(0.0, up, "init", "max"), (up, T - 1.0, "max", "min")]

    def _anneal(self, s, e, x):
        if self.anneal_strategy == "cos":
            return e + (s - e) * (1.0 + math.cos(math.pi * x)) / 2.0
        return s + (e - s) * x

    def _at(self, t, levels):
        start = 0.0
        phases = self._phases()
        for i, (_, end, a, b) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                x = (t - start) / (end - start)
                return self._anneal(levels[a], levels[b], x)
            start = end
        raise AssertionError  # pragma: no cover

    def lr_at(self, t):
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {t} times, total_steps is "
                             f"{self.total_steps}")
        out = []
        for m in self.max_lrs:
            init = m / self.div_factor
            out.append(self._at(t, {"init": init, "max": m, "min": init / self.final_div_factor}))
        return out

    @property
    def horizon(self):
        return self.total_steps

    def set_horizon(self, total):
        if not isinstance(total, int) or total < max(2, self.last_epoch):
            raise ValueError(f"OneCycleLR: total_steps must be an int >= max(2, t = "
                             f"{self.last_epoch}), got {total!r}")
        self.total_steps = total
        self._apply(self.lr_at(self.last_epoch))

    def momentum_at(self, t) -> float:
        """The momentum the cycle prescribes at t (high when the rate is low)."""
        lv = {"init": self.max_momentum, "max": self.base_momentum, "min": self.max_momentum}
        return self._at(t, lv)

    def _apply(self, lrs):
        super()._apply(lrs)
        if self.cycle_momentum:
            m = self.momentum_at(self.last_epoch)
            for g in self.optimizer.param_groups:
                if "betas" in g:
                    g["betas"] = (m, g["betas"][1])
                else:
                    g["momentum"] = m


class ReduceLROnPlateau:
    """Cut the rate when a monitored metric stops improving (PyTorch's conventions).

    After each ``step(metric)``: the metric improves if it is better than the best so far by
    more than the threshold — in 'rel' mode x < best·(1 − θ) ('min') or x > best·(1 + θ)
    ('max'); in 'abs' mode x < best − θ or x > best + θ. After more than ``patience``
    consecutive steps without improvement (and outside a cooldown),

        γ ← max(γ · factor, min_lr)       (changes smaller than eps are skipped)

    followed by ``cooldown`` steps in which bad steps are not counted. Not a closed form: its
    state is the best value and the counters.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr=0.0, eps: float = 1e-8):
        _check_opt("ReduceLROnPlateau", optimizer)
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must lie in [0, 1), got {factor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', "
                             f"got {threshold_mode!r}")
        n = len(optimizer.param_groups)
        self.min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        if len(self.min_lrs) != n:
            raise ValueError(f"ReduceLROnPlateau: {len(self.min_lrs)} min_lr values for {n} "
                             "groups")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.eps = cooldown, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _better(self, x, best):
        th = self.threshold
        if self.mode == "min":
            return x < (best * (1.0 - th) if self.threshold_mode == "rel" else best - th)
        return x > (best * (1.0 + th) if self.threshold_mode == "rel" else best + th)

    def step(self, metric) -> None:
        """Record one value of the monitored metric; maybe reduce the rates."""
        x = float(metric)
        self.last_epoch += 1
        if self._better(x, self.best):
            self.best = x
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g, lo in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                new = max(g["lr"] * self.factor, lo)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    _keys = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps",
             "min_lrs", "best", "num_bad_epochs", "cooldown_counter", "last_epoch", "_last_lr")

    def state_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, list) else v)
                for k, v in ((k, getattr(self, k)) for k in self._keys)}

    def load_state_dict(self, state: dict) -> None:
        for k in self._keys:
            if k in state:
                setattr(self, k, list(state[k]) if isinstance(state[k], list) else state[k])
        for g, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            g["lr"] = lr

    def __repr__(self):
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, "
                f"patience={self.patience}, best={self.best}, bad={self.num_bad_epochs})")
