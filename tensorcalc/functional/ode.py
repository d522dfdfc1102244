"""Ordinary differential equations: solvers written with tensorcalc's own operations, and
``odeint`` with two ways to differentiate the solution.

Solve the initial value problem

    dy/dt = f(t, y, θ),    y(t₀) = y₀,    reporting y(t₀), y(t₁), …, y(t_N)

with a fixed-step method (``euler``, ``midpoint``, ``rk4``: ``step_size`` or one step per output
interval) or Dormand–Prince 5(4) (``dopri5``: adaptive, local error estimate
e = h Σ (bᵢ − b̂ᵢ) kᵢ kept below ``atol + rtol·max(|yₙ|, |yₙ₊₁|)`` in the RMS norm, step sizes by
a PI controller, steps clipped to land on every output time, first-same-as-last). Every
evaluation of f is counted (NFE) in an :class:`ODEStats`.

Two gradient modes (``odeint(..., adjoint=...)``):

* ``adjoint=False`` — backpropagation through the solver: every stage is recorded on the tape,
  so memory grows with the number of steps; the gradient is the exact derivative of the
  *discrete* solution (step sizes treated as constants). Higher derivatives work.
* ``adjoint=True`` — the adjoint method (Chen et al. 2018, Algorithm 1) through
  :func:`tensorcalc.custom_vjp`: the forward solve records nothing; backward solves the
  augmented system [y, a, a_θ] from t_N back to t₀,

      dy/dt = f(t, y, θ),    da/dt = −aᵀ ∂f/∂y,    da_θ/dt = −aᵀ ∂f/∂θ,

  adding the output cotangent ȳ(tᵢ) to a at every output time, so memory does not grow with
  the number of steps. aᵀ∂f/∂y and aᵀ∂f/∂θ are one reverse pass through f per evaluation. The
  step control of the backward solve measures only the y and a parts (a seminorm: a_θ never
  feeds back into the dynamics, Kidger et al. 2021). First-order gradients only. See
  docs/math/ode.md for the derivation.

``f(t, y)`` takes a Python float ``t`` and a Tensor ``y`` and returns dy/dt with y's shape. The
adjoint needs the parameters θ that f uses: those of ``f`` itself when it is a Module (or a bound
method of one), else pass ``params=[...]``.
"""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import mode
from ..autodiff.custom import custom_vjp
from ..autodiff.engine import gradients
from ..backend import array_module
from ..ops._util import public
from ..ops.shape import stack
from ..tensor import Tensor

__all__ = ["odeint", "ODEStats", "METHODS", "ODEError"]


class ODEError(RuntimeError):
    """The solver could not proceed (step size underflow, too many steps, a non-finite state)."""


class ODEStats:
    """Counts of one or more solves: function evaluations (NFE) and steps, forward and backward.

    Pass one to ``odeint(..., stats=s)``; the counts accumulate until :meth:`reset`. The backward
    counts are filled in when the adjoint's backward pass runs.

    ``reused_backward``: reverse passes of the adjoint that needed no evaluation of f, because
    they ran on the graph of f the forward solve kept at an output time (not counted in
    ``nfe_backward``, which counts evaluations of f, each with its reverse pass).
    """

    __slots__ = ("nfe_forward", "nfe_backward", "steps_forward", "steps_backward", "rejected",
                 "reused_backward")

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.nfe_forward = self.nfe_backward = self.reused_backward = 0
        self.steps_forward = self.steps_backward = self.rejected = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return "ODEStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _comb(y, h, coef, ks):
    """y + h Σ cᵢ kᵢ over the non-zero coefficients (Tensors record, arrays compute)."""
    s = None
    for c, k in zip(coef, ks, strict=False):
        if c == 0:
            continue
        t = k * c
        s = t if s is None else s + t
    return y if s is None else y + s * h


# ------------------------------------------------------------------------------ fixed step
# Butcher tableaux (c, A, b) of the explicit fixed-step methods.
_FIXED = {
    "euler": ((0.0,), ((),), (1.0,)),
    "midpoint": ((0.0, 0.5), ((), (0.5,)), (0.0, 1.0)),
    "rk4": ((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
            (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
}


def _rk_step(f, t, y, h, tableau, k1=None):
    c, a, b = tableau
    ks = []
    for i, ci in enumerate(c):
        if i == 0 and k1 is not None:
            ks.append(k1)
            continue
        ks.append(f(t + ci * h, _comb(y, h, a[i], ks)))
    return _comb(y, h, b, ks)


def _solve_fixed(f, y0, ts, tableau, step_size, stats, backward):
    ys = [y0]
    y = y0
    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        span = t1 - t0
        n = 1 if step_size is None else max(1, int(math.ceil(abs(span) / step_size - 1e-9)))
        h = span / n
        for j in range(n):
            y = _rk_step(f, t0 + j * h, y, h, tableau)
            if backward:
                stats.steps_backward += 1
            else:
                stats.steps_forward += 1
        ys.append(y)
    return ys


# ------------------------------------------------------------------------------ Dormand–Prince
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = ((),
         (1 / 5,),
         (3 / 40, 9 / 40),
         (44 / 45, -56 / 15, 32 / 9),
         (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
         (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
         (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_DP_B = _DP_A[6]
# e = b − b̂ (5th minus embedded 4th order weights; the 7th stage is f at the new point)
_DP_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)

# PI step-size control (Hairer, Nørsett & Wanner II, DOPRI5): h ← h · err^(−α) · err_prev^β
_SAFETY, _FAC_MIN, _FAC_MAX, _ALPHA, _BETA = 0.9, 0.2, 10.0, 0.17, 0.04


def _ratio(err, y0, y1, rtol, atol, n_norm):
    """RMS of err / (atol + rtol max(|y0|, |y1|)) over the first ``n_norm`` entries (all when
    None), as a host float."""
    e, a, b = _raw(err), _raw(y0), _raw(y1)
    if n_norm is not None:
        e, a, b = e.reshape(-1)[:n_norm], a.reshape(-1)[:n_norm], b.reshape(-1)[:n_norm]
    xp = array_module(e)
    scale = atol + rtol * xp.maximum(xp.abs(a), xp.abs(b))
    return float(xp.sqrt(xp.mean((e / scale) ** 2))) if e.size else 0.0


def _initial_step(f, t0, y0, f0, direction, rtol, atol, n_norm):
    """Hairer's starting step: h₀ from ‖y₀‖ and ‖f₀‖, refined by one explicit Euler probe."""
    y0r, f0r = _raw(y0), _raw(f0)
    xp = array_module(y0r)
    flat_y, flat_f = y0r.reshape(-1), f0r.reshape(-1)
    if n_norm is not None:
        flat_y, flat_f = flat_y[:n_norm], flat_f[:n_norm]
    scale = atol + rtol * xp.abs(flat_y)
    d0 = float(xp.sqrt(xp.mean((flat_y / scale) ** 2))) if flat_y.size else 0.0
    d1 = float(xp.sqrt(xp.mean((flat_f / scale) ** 2))) if flat_f.size else 0.0
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    with mode.no_grad():
        y1 = _comb(y0, direction * h0, (1.0,), (f0,))
        f1 = f(t0 + direction * h0, y1)
    d2 = _ratio(_comb(_raw(f1), 1.0, (-1.0,), (_raw(f0),)), y0, y0, rtol, atol, n_norm) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1)


def _solve_dopri5(f, y0, ts, rtol, atol, stats, backward, max_steps, n_norm=None,
                  carry=None, k1=None, f_land=None):
    """``k1``: f(t₀, y₀) when the caller has it. ``f_land(j, t, y)``: evaluates the FSAL stage
    of a step that lands on output time ``ts[j]`` (the adjoint's forward keeps that graph)."""
    t = float(ts[0])
    y = y0
    if k1 is None:
        k1 = f(t, y)
    direction = 1.0 if ts[-1] >= ts[0] else -1.0
    first = carry.get("h") if carry is not None else None
    h = first if first else _initial_step(
        f, t, y, k1, direction, rtol, atol, n_norm)
    prev = 1e-4
    was_rejected = False
    ys = [y0]
    steps = 0
    for j, t_next in enumerate(ts[1:], 1):
        t_next = float(t_next)
        while direction * (t_next - t) > 0:
            if steps >= max_steps:
                raise ODEError(f"odeint dopri5: more than {max_steps} steps before t = {t_next} "
                               f"(reached t = {t}); the problem may be stiff, or loosen "
                               "rtol/atol or raise max_steps")
            last = h >= abs(t_next - t) * (1 - 1e-12)
            hh = (t_next - t) if last else direction * h
            if abs(hh) < 1e-14 * max(1.0, abs(t)):
                raise ODEError(f"odeint dopri5: step size underflow at t = {t}")
            ks = [k1]
            for i in range(1, 6):
                ks.append(f(t + _DP_C[i] * hh, _comb(y, hh, _DP_A[i], ks)))
            y_new = _comb(y, hh, _DP_B, ks)
            # the 7th stage: f at the new point (FSAL)
            ks.append(f_land(j, t_next, y_new) if last and f_land is not None
                      else f(t_next if last else t + hh, y_new))
            err = _comb(0.0, hh, _DP_E, [_raw(k) for k in ks])
            r = _ratio(err, y, y_new, rtol, atol, n_norm)
            steps += 1
            if not math.isfinite(r):
                raise ODEError(f"odeint dopri5: the state became non-finite near t = {t}")
            if r <= 1.0:
                t = t_next if last else t + hh
                y, k1 = y_new, ks[6]
                fac = min(1 / _FAC_MIN, max(1 / _FAC_MAX, r ** _ALPHA / prev ** _BETA / _SAFETY))
                prev = max(r, 1e-4)
                if backward:
                    stats.steps_backward += 1
                else:
                    stats.steps_forward += 1
                h_new = abs(hh) / fac
                if was_rejected:  # no growth right after a rejection (Hairer)
                    h_new = min(h_new, abs(hh))
                # a step shortened to land on t_next does not shrink the next proposal
                h = max(h, h_new) if last else h_new
                was_rejected = False
            else:
                stats.rejected += 1
                was_rejected = True
                h = abs(hh) / min(1 / _FAC_MIN, r ** _ALPHA / _SAFETY)
        ys.append(y)
    if carry is not None:  # the next solve (the adjoint's next interval) starts from here
        carry["h"] = h
    return ys


METHODS = ("euler", "midpoint", "rk4", "dopri5")


def _solve(f, y0, ts, method, rtol, atol, step_size, stats, backward=False, max_steps=10000,
           n_norm=None, carry=None, k1=None, f_land=None):
    """The states at ``ts`` (a list, ys[0] = y0); ``f`` (and ``f_land``) counted into
    ``stats``. ``carry``, ``k1``, ``f_land``: see :func:`_solve_dopri5` (dopri5 only)."""

    def count():
        if backward:
            stats.nfe_backward += 1
        else:
            stats.nfe_forward += 1

    def fc(t, y):
        count()
        return f(t, y)

    def fl(j, t, y):
        count()
        return f_land(j, t, y)

    if method == "dopri5":
        return _solve_dopri5(fc, y0, ts, rtol, atol, stats, backward, max_steps, n_norm, carry,
                             k1, None if f_land is None else fl)
    return _solve_fixed(fc, y0, ts, _FIXED[method], step_size, stats, backward)


# ------------------------------------------------------------------------------ the adjoint
def _call(f, t, y):
    out = f(t, y)
    if not isinstance(out, Tensor):
        out = Tensor._wrap(array_module(y.data).asarray(out, dtype=y.dtype), None, 0)
    if out.shape != y.shape:
        raise ValueError(f"odeint: f(t, y) must return dy/dt of y's shape {y.shape}, got "
                         f"{out.shape}")
    return out


_TRACED = object()  # residuals marker: the rule itself is being differentiated


@custom_vjp
def _odeint_adjoint(y0, *params, f, ts, opts):
    raise AssertionError("unreachable: the rule's fwd computes the forward")  # pragma: no cover


def _adjoint_fwd(y0, *_params, f, ts, opts):
    # f closes over the live parameters (opts["params"]); the positional copies only make
    # them inputs of the node, so that their cotangents are asked for. Called with grad mode on
    # and traced inputs, it is custom_vjp asking for residuals to differentiate the rule itself
    # (create_graph): the adjoint's rule is not differentiable, so nothing is solved then.
    if mode.is_grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad
                                      for x in (y0, *_params)):
        return None, _TRACED
    # dopri5's FSAL stage at an output time tᵢ is the backward solve's first evaluation at tᵢ
    # (the augmented f there is [f(yᵢ), −a ∂f/∂y, −a ∂f/∂θ] at the same point): that stage is
    # recorded and its graph kept, one per output time, so the backward needs only its reverse
    # pass there. The memory is one graph of f per output, still independent of the steps.
    kept, carry = {}, {}

    def f_land(j, t, y):
        with mode.enable_grad():
            yt = Tensor(_raw(y), requires_grad=True)
            out = _call(f, t, yt)
        kept[j] = (yt, out)   # a rejected attempt is overwritten by the accepted one
        return out.detach()

    dopri = opts["method"] == "dopri5" and opts["keep"]  # keep: a backward pass may follow
    ys = _solve(lambda t, y: _call(f, t, y), y0, ts, opts["method"], opts["rtol"],
                opts["atol"], opts["step_size"], opts["stats"], max_steps=opts["max_steps"],
                carry=carry if dopri else None, f_land=f_land if dopri else None)
    out = stack(ys, axis=0)
    return out, (out.data, f, ts, opts, kept, carry.get("h"))


def _adjoint_bwd(res, g):
    if isinstance(g, Tensor) or res is _TRACED:
        if res is _TRACED or g.requires_grad:
            raise NotImplementedError("odeint(adjoint=True) gives first-order reverse-mode "
                                      "gradients; for forward mode or second derivatives use "
                                      "adjoint=False (backpropagation through the solver)")
        g = g.data
    ys, f, ts, opts, kept, h_forward = res
    params = opts["params"]
    xp = array_module(ys)
    shape, n = ys.shape[1:], int(np.prod(ys.shape[1:], dtype=np.int64))
    psizes = [int(p.size) for p in params]
    dtype = ys.dtype

    def split(s):
        y = s[:n].reshape(shape)
        a = s[n:2 * n].reshape(shape)
        return y, a

    def aug(t, s):
        # [dy/dt, da/dt, da_θ/dt] = [f, −aᵀ∂f/∂y, −aᵀ∂f/∂θ]: one forward and one reverse pass
        y, a = split(s)
        with mode.enable_grad():
            yt = Tensor(y, requires_grad=True)
            out = _call(f, t, yt)
        return pull(yt, out, a)

    def pull(yt, out, a):
        with mode.enable_grad():
            grads = gradients([out], [yt, *params], grad_outputs=[a], allow_unused=True)
        parts = [out.data.reshape(-1)]
        for gr, size in zip(grads, [n, *psizes], strict=True):
            gr = xp.zeros(size, dtype) if gr is None else -_raw(gr).reshape(-1).astype(
                dtype, copy=False)
            parts.append(gr)
        return xp.concatenate(parts)

    stats = opts["stats"]
    a = g[-1].reshape(-1).astype(dtype, copy=False)
    a_theta = xp.zeros(sum(psizes), dtype)
    rtol = opts["adjoint_rtol"] if opts["adjoint_rtol"] is not None else opts["rtol"]
    atol = opts["adjoint_atol"] if opts["adjoint_atol"] is not None else opts["atol"]
    # The step size carries over from one output interval to the next; the first interval
    # starts with the forward solve's last proposal (no probe evaluation).
    carry = {"h": h_forward} if h_forward else {}
    with mode.no_grad():
        for i in range(len(ts) - 1, 0, -1):
            s = xp.concatenate([ys[i].reshape(-1), a, a_theta])
            k1 = None
            if i in kept:  # the forward kept f's graph at tᵢ: its reverse pass is the first stage
                k1 = pull(*kept.pop(i), a.reshape(shape))
                stats.reused_backward += 1
            s = _solve(aug, s, [float(ts[i]), float(ts[i - 1])], opts["method"], rtol, atol,
                       opts["step_size"], stats, backward=True, max_steps=opts["max_steps"],
                       n_norm=2 * n, carry=carry, k1=k1)[-1]
            # restart y from the stored forward state (no drift); add this output's cotangent
            a = s[n:2 * n] + g[i - 1].reshape(-1)
            a_theta = s[2 * n:]
    out = [a.reshape(shape)]
    off = 0
    for p, size in zip(params, psizes, strict=True):
        out.append(a_theta[off:off + size].reshape(p.shape))
        off += size
    return tuple(out)


_odeint_adjoint.defvjp(_adjoint_fwd, _adjoint_bwd)


def _find_params(f):
    owner = f if hasattr(f, "parameters") else getattr(f, "__self__", None)
    if owner is not None and hasattr(owner, "parameters"):
        return [p for p in owner.parameters() if p.requires_grad]
    return []


@public
def odeint(f, y0, t, *, method="dopri5", rtol=1e-7, atol=1e-9, step_size=None, adjoint=False,
           params=None, stats=None, adjoint_rtol=None, adjoint_atol=None, max_steps=10000):
    """Solve dy/dt = f(t, y) from y(t[0]) = y0 and return y at every time of ``t``, stacked:
    shape (len(t), *y0.shape).

    ``method``: "euler" | "midpoint" | "rk4" (fixed steps: ``step_size``, default one step per
    interval of ``t``) | "dopri5" (adaptive: ``rtol``, ``atol``). ``adjoint=True``: gradients by
    the adjoint ODE (constant memory; the parameters are ``params`` or f's own when f is a
    Module) instead of backpropagation through the solver's steps. ``stats``: an
    :class:`ODEStats` that counts function evaluations and steps (forward and backward).
    See the module docstring.
    """
    if method not in METHODS:
        raise ValueError(f"odeint: method must be one of {', '.join(METHODS)}, got {method!r}")
    ts = np.asarray(_raw(t), dtype=np.float64).reshape(-1)
    if ts.size < 2:
        raise ValueError(f"odeint: t needs at least two times (start and end), got {ts.size}")
    d = np.diff(ts)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise ValueError("odeint: t must be strictly increasing or strictly decreasing")
    if not (rtol > 0 and atol >= 0):
        raise ValueError(f"odeint: need rtol > 0 and atol >= 0, got rtol={rtol}, atol={atol}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"odeint: step_size must be > 0, got {step_size}")
    stats = stats if stats is not None else ODEStats()
    ts = [float(v) for v in ts]
    if not isinstance(y0, Tensor):
        y0 = Tensor(y0)
    if y0.dtype.kind != "f":
        raise TypeError(f"odeint: y0 must be a floating-point array, got {y0.dtype}")
    if not adjoint:
        ys = _solve(lambda tt, y: _call(f, tt, y), y0, ts, method, rtol, atol, step_size,
                    stats, max_steps=max_steps)
        return stack(ys, axis=0)
    params = _find_params(f) if params is None else [p for p in params]
    opts = {"method": method, "rtol": rtol, "atol": atol, "step_size": step_size,
            "stats": stats, "adjoint_rtol": adjoint_rtol, "adjoint_atol": adjoint_atol,
            "max_steps": max_steps, "params": params,
            "keep": mode.is_grad_enabled() and (y0.requires_grad
                                                or any(p.requires_grad for p in params))}
    return _odeint_adjoint(y0, *params, f=f, ts=ts, opts=opts)
