"""Optimizer base class: owns the loop, the parameter groups, the state and its (de)serialisation.

A first-order optimiser updates every parameter θ from its gradient g = ∂L/∂θ and a small
per-parameter state (moment estimates, accumulators, a step counter). The base class does
everything that is the same for all of them:

* parameter groups — a list of dicts ``{"params": [...], "lr": ..., ...}``; each group carries
  its own hyperparameters, missing ones are filled from the optimiser's defaults;
* validation of hyperparameters (a negative learning rate, ``betas`` outside [0, 1), a
  negative weight decay / eps / momentum raise ``ValueError`` naming the argument);
* :meth:`step` — under ``no_grad``, for each group and each parameter that has a gradient, call
  the subclass's :meth:`update` on *raw arrays* (``p.data``, ``p.grad.data`` and the
  parameter's state dict), which changes ``p`` in place;
* :meth:`zero_grad`, :meth:`state_dict` / :meth:`load_state_dict`, :meth:`add_param_group`.

A subclass is its update equations: a class docstring that states them (math first, exactly as
implemented), ``__init__`` that names its hyperparameters and defaults, and ``update``.

Arrays are updated in place with ``out=`` ufuncs and Python-scalar coefficients, so float32
parameters and states stay float32 (no silent upcast) and no step allocates more than a couple
of scratch buffers, which are cached per parameter (state keys starting with ``_`` are scratch:
never saved, never loaded).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .. import backend
from ..autodiff import mode as _mode
from ..tensor import Tensor

__all__ = ["Optimizer", "axpy", "required"]


class _Required:
    """Sentinel for a hyperparameter with no default (must be given per group or globally)."""

    def __repr__(self):
        return "<required>"


required = _Required()


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check_nonneg(who, name, v):
    if not _is_number(v) or math.isnan(v) or v < 0:
        raise ValueError(f"{who}: {name} must be a number >= 0, got {v!r}")


def _check_unit(who, name, v, closed_right=False):
    ok = _is_number(v) and (0.0 <= v <= 1.0 if closed_right else 0.0 <= v < 1.0)
    if not ok:
        rng = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{who}: {name} must lie in {rng}, got {v!r}")


# Checks applied to any hyperparameter of these names, whichever optimiser uses it.
_NONNEG = ("lr", "eps", "weight_decay", "momentum", "lr_decay", "initial_accumulator_value",
           "momentum_decay", "dampening")
_UNIT_CLOSED = ("alpha", "rho")


def axpy(a: float, x, y) -> None:
    """y ← y + a·x in place (``a`` a Python float, so float32 stays float32).

    Plain NumPy on purpose. SciPy's BLAS ``?axpy`` is one pass instead of two and about 2.7x
    faster on a quiet machine, but it runs a second OpenBLAS thread pool beside NumPy's; on a
    loaded 2-core machine (CI with two test workers) the two pools oversubscribe the cores and a
    single call was measured at 16.8 ms instead of 16 µs (benchmarks/RESULTS.md).
    """
    y += a * x


class Optimizer:
    """Base class of first-order optimisers (see the module docstring for the contract).

    ``params``: an iterable of parameters (Tensors with ``requires_grad=True``), or an iterable
    of dicts ``{"params": iterable, **hyperparameters}`` — one parameter group each.
    ``defaults``: the hyperparameters (name -> default) a group gets when it does not set them.

    Subclasses implement ``update(p, g, state, group)`` on raw arrays: ``p`` the parameter's
    array (change it in place), ``g`` its gradient (read only — never write into it), ``state``
    the parameter's dict (arrays and Python scalars; empty on the first step), ``group`` the
    parameter group's hyperparameters.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}  # parameter Tensor -> its state dict (Tensor hashes by identity)
        from ..devices import follow_parameters

        follow_parameters(self)  # Module.to(device) moves this state with the parameters
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(f"{self._name}: params must be an iterable of Tensors or of dicts, "
                            "got a single Tensor (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ groups and validation
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _validate(self, group: dict) -> None:
        """Raise ValueError for hyperparameters out of range (subclasses extend it)."""
        who = self._name
        for name in _NONNEG:
            if name in group:
                _check_nonneg(who, name, group[name])
        for name in _UNIT_CLOSED:
            if name in group:
                _check_unit(who, name, group[name], closed_right=True)
        if "betas" in group:
            b = group["betas"]
            if not isinstance(b, (tuple, list)) or len(b) != 2:
                raise ValueError(f"{who}: betas must be a pair (beta1, beta2), got {b!r}")
            for i, bi in enumerate(b):
                _check_unit(who, f"betas[{i}]", bi)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group ``{"params": ..., **hyperparameters}``; missing hyperparameters take the
        optimiser's defaults. A parameter may belong to one group only."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}: a parameter group must be a dict, "
                            f"got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError(f"{self._name}: a parameter group needs a 'params' entry")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._name}: parameters must be Tensors, got "
                                f"{type(p).__name__} at position {i} of group "
                                f"{len(self.param_groups)}")
            if not p.is_leaf:
                raise ValueError(f"{self._name}: can only optimise leaf tensors; parameter {i} "
                                 f"of group {len(self.param_groups)} (shape {p.shape}) was "
                                 f"computed by {p.grad_fn}")
        if len({id(p) for p in ps}) != len(ps):
            raise ValueError(f"{self._name}: a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError(f"{self._name}: some parameters appear in more than one group")
        for k, v in self.defaults.items():
            if v is required and k not in group:
                raise ValueError(f"{self._name}: parameter group didn't specify a value of "
                                 f"required hyperparameter {k!r}")
            group.setdefault(k, v)
        if "betas" in group and isinstance(group["betas"], list):
            group["betas"] = tuple(group["betas"])
        group["params"] = ps
        self._validate(group)
        self.param_groups.append(group)

    # ------------------------------------------------------------------ the loop
    def update(self, p, g, state: dict, group: dict) -> None:  # pragma: no cover - abstract
        """Update the array ``p`` in place from the gradient array ``g`` (subclass)."""
        raise NotImplementedError  # abstract: subclasses define it

    def step(self, closure=None):
        """One optimisation step over every parameter that has a gradient.

        ``closure``: optional callable that re-evaluates the model and returns the loss (run
        with gradient recording on, before the update); its loss is returned.
        """
        loss = None
        if closure is not None:
            with _mode.enable_grad():
                loss = closure()
        state = self.state
        with _mode.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    gt = p.grad
                    if gt is None:
                        continue
                    st = state.get(p)
                    if st is None:
                        st = state[p] = {}
                    self.update(p.data, gt.data, st, group)
                    p._bump()  # in-place change: graphs that saved p must notice
        return loss

    def params_moved(self, params, device) -> None:
        """The per-parameter state of ``params`` (arrays: moments, accumulators, scratch) moves
        to ``device`` with them (called by ``Module.to``)."""
        for p in params:
            st = self.state.get(p)
            if st:
                for k, v in st.items():
                    if hasattr(v, "shape") and hasattr(v, "dtype") and \
                            not isinstance(v, np.generic):
                        st[k] = backend.to_device(v, device)

    def to(self, device) -> Optimizer:
        """Move the whole state to ``device`` (the parameters are moved by ``Module.to``)."""
        self.params_moved([p for g in self.param_groups for p in g["params"]], device)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: ``p.grad = None`` (default) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:  # a fresh array: gradients may be read-only broadcast views or shared
                    xp = backend.array_module(p.data)
                    p.grad = Tensor._wrap(xp.zeros_like(p.data), None, 0)

    # ------------------------------------------------------------------ helpers for subclasses
    _xp = staticmethod(backend.array_module)  # numpy or cupy, whichever owns the array
    _axpy = staticmethod(axpy)

    @staticmethod
    def _scratch(state: dict, p, key: str = "_buf"):
        """A cached uninitialised array like ``p`` (not saved with the state)."""
        buf = state.get(key)
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
            buf = state[key] = backend.array_module(p).empty_like(p)
        return buf

    @staticmethod
    def _coupled_decay(p, g, wd: float, state: dict):
        """g + λθ (L2 penalty ½λ‖θ‖² folded into the gradient), in a scratch buffer."""
        if wd == 0:
            return g
        buf = Optimizer._scratch(state, p, "_g")
        buf[...] = g
        axpy(wd, p, buf)
        return buf

    # ------------------------------------------------------------------ (de)serialisation
    def _params(self) -> list:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict:
        """``{"state": {index: {name: array | scalar}}, "param_groups": [{hyper..., "params":
        [indices]}]}`` with parameters numbered in group order (as PyTorch does). Arrays are
        copies, so the result does not change as training goes on."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = []
        for g in self.param_groups:
            d = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            d["params"] = [index[id(p)] for p in g["params"]]
            groups.append(d)
        state = {}
        for p, st in self.state.items():
            if id(p) not in index:
                continue
            state[index[id(p)]] = {
                k: (v.copy() if hasattr(v, "shape") and hasattr(v, "dtype") else copy.deepcopy(v))
                for k, v in st.items() if not k.startswith("_")
            }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore groups' hyperparameters and per-parameter state from :meth:`state_dict`.

        The optimiser must have been built over parameters of the same shapes in the same group
        layout. Everything is checked before anything is changed; floating state arrays are
        copied and cast to their parameter's dtype.
        """
        who = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise ValueError(f"{who}: expected a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{who}: the state has {len(saved_groups)} parameter groups, this "
                             f"optimiser has {len(self.param_groups)}")
        params = self._params()
        id_map = {}
        new_groups = []
        for gi, (mine, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            idx = list(saved["params"])
            if len(idx) != len(mine["params"]):
                raise ValueError(f"{who}: group {gi} has {len(idx)} parameters in the state, "
                                 f"{len(mine['params'])} here")
            for i, p in zip(idx, mine["params"], strict=True):
                id_map[int(i)] = p
            g = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
            g["params"] = mine["params"]
            for k, v in mine.items():  # hyperparameters added since the state was saved
                g.setdefault(k, v)
            self._validate(g)
            new_groups.append(g)
        new_state = {}
        for key, st in state_dict.get("state", {}).items():
            i = int(key)
            if i not in id_map:
                raise ValueError(f"{who}: state for parameter {i}, but there are only "
                                 f"{len(params)} parameters")
            p = id_map[i]
            xp = backend.array_module(p.data)
            out = {}
            for k, v in st.items():
                if hasattr(v, "shape") and hasattr(v, "dtype"):
                    if v.shape != p.shape:
                        raise ValueError(f"{who}: state {k!r} of parameter {i} has shape "
                                         f"{tuple(v.shape)}, the parameter has {p.shape}")
                    dtype = p.dtype if np.dtype(v.dtype).kind == "f" else v.dtype
                    out[k] = xp.array(v, dtype=dtype, copy=True)
                else:
                    out[k] = copy.deepcopy(v)
            new_state[p] = out
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, g in enumerate(self.param_groups):
            n = sum(int(np.prod(p.shape)) for p in g["params"])
            hp = ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} tensors ({n} values), {hp}")
        lines.append(")")
        return "\n".join(lines)
