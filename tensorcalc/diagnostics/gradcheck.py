"""Numerical gradient checks: VJP and JVP against central differences, and their adjointness.

For f: x ↦ y, random directions v (tangent) and u (cotangent):

* VJP check:  ⟨u, J v⟩ by central differences  ≈  ⟨Jᵀu, v⟩ from reverse mode,
  J v ≈ (f(x + εv) − f(x − εv)) / 2ε  (error O(ε²) plus rounding O(δ/ε)).
* JVP check:  J v from forward mode  ≈  central difference, elementwise.
* Adjoint:    ⟨u, J v⟩ (forward mode) = ⟨Jᵀu, v⟩ (reverse mode) to rounding error — no step.

Random projections check the whole Jacobian at the cost of a few evaluations, and a wrong entry
anywhere shows with probability 1. Run in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..autodiff import mode
from ..autodiff.engine import gradients
from ..autodiff.forward import push_tangents
from ..tensor import Tensor


class GradcheckError(AssertionError):
    """A numerical check failed; the message is the report naming the input and the error."""


@dataclass
class CheckRow:
    input: int
    shape: tuple
    check: str
    analytic: float
    numeric: float

    @property
    def abs_err(self) -> float:
        return abs(self.analytic - self.numeric)

    def rel_err(self) -> float:
        return self.abs_err / max(abs(self.analytic), abs(self.numeric), 1e-300)


@dataclass
class GradcheckReport:
    rows: list = field(default_factory=list)
    names: list | None = None  # optional names of the inputs (gradcheck_module fills them)
    atol: float = 1e-6
    rtol: float = 1e-5
    adjoint_tol: float = 1e-10

    def failed(self):
        bad = []
        for r in self.rows:
            tol = self.adjoint_tol if r.check == "adjoint" else None
            if tol is not None:
                ok = r.abs_err <= tol * max(1.0, abs(r.analytic), abs(r.numeric))
            else:
                ok = r.abs_err <= self.atol + self.rtol * max(abs(r.analytic), abs(r.numeric))
            if not ok:
                bad.append(r)
        return bad

    @property
    def ok(self) -> bool:
        return not self.failed()

    def failure_message(self) -> str:
        worst = max(self.failed(), key=lambda r: r.abs_err)
        name = self.names[worst.input] if self.names else f"input {worst.input}"
        return (f"gradcheck failed: {name} (shape {worst.shape}) {worst.check} check: "
                f"analytic {worst.analytic:.6e} vs numeric {worst.numeric:.6e} "
                f"(abs err {worst.abs_err:.2e})\n{self}")

    def __str__(self):
        w = max([5] + [len(n) for n in self.names or []])
        lines = [f"{'input':>{w}} {'shape':>14} {'check':>8} {'analytic':>14} {'numeric':>14} "
                 f"{'abs err':>10} {'rel err':>10}"]
        bad = set(map(id, self.failed()))
        for r in self.rows:
            flag = "  <-- FAILED" if id(r) in bad else ""
            name = self.names[r.input] if self.names else str(r.input)
            lines.append(f"{name:>{w}} {str(r.shape):>14} {r.check:>8} {r.analytic:>14.6e} "
                         f"{r.numeric:>14.6e} {r.abs_err:>10.2e} {r.rel_err():>10.2e}{flag}")
        return "\n".join(lines)


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [o for o in out if isinstance(o, Tensor)]
    return [out]


def _eval(fn, arrays, diff):
    """f at raw float64 arrays (no graph), outputs as arrays."""
    with mode.no_grad():
        args = [Tensor(a) if d else a for a, d in zip(arrays, diff, strict=True)]
        return [np.asarray(o.data, dtype=np.float64) for o in _outputs(fn(*args))]


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-5,
              directions: int = 2, seed: int = 0, check_forward: bool = True,
              adjoint_tol: float = 1e-10, raise_exception: bool = True) -> GradcheckReport:
    """Check fn's reverse and forward derivatives numerically at ``inputs`` (in float64).

    ``fn`` takes Tensors and returns a Tensor or a tuple of Tensors. Float inputs are
    differentiated (converted to float64); other inputs (ints, bools, None) pass through.
    Returns a :class:`GradcheckReport`; raises :class:`GradcheckError` naming the failing input
    and the size of the error unless ``raise_exception=False``.
    """
    rng = np.random.default_rng(seed)
    arrays, diff = [], []
    for x in inputs:
        a = x.data if isinstance(x, Tensor) else x
        if isinstance(a, (float, list)) or _is_float(a):
            arrays.append(np.array(a, dtype=np.float64))
            diff.append(True)
        else:
            arrays.append(a)
            diff.append(False)
    report = GradcheckReport(atol=atol, rtol=rtol, adjoint_tol=adjoint_tol)

    with mode.enable_grad():
        ts = [Tensor(a, requires_grad=True) if d else a for a, d in zip(arrays, diff, strict=True)]
        outs = _outputs(fn(*ts))
    prims = [t for t, d in zip(ts, diff, strict=True) if d]
    for _ in range(directions):
        us = [rng.standard_normal(o.shape) for o in outs]
        live = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
        if live:
            g = gradients([o for o, _ in live], prims, grad_outputs=[u for _, u in live],
                          retain_graph=True)
        else:
            g = [None] * len(prims)
        g = [np.zeros(p.shape) if gi is None else np.asarray(gi.data) for gi, p in
             zip(g, prims, strict=True)]
        k = 0
        for i, d in enumerate(diff):
            if not d:
                continue
            v = rng.standard_normal(arrays[i].shape)
            plus = list(arrays)
            minus = list(arrays)
            plus[i] = arrays[i] + eps * v
            minus[i] = arrays[i] - eps * v
            fp, fm = _eval(fn, plus, diff), _eval(fn, minus, diff)
            jv = [(a - b) / (2 * eps) for a, b in zip(fp, fm, strict=True)]
            numeric = float(sum(np.sum(u * j) for u, j in zip(us, jv, strict=True)))
            analytic = float(np.sum(g[k] * v))
            shape = tuple(arrays[i].shape)
            report.rows.append(CheckRow(i, shape, "vjp", analytic, numeric))
            if check_forward:
                tans = [np.zeros(p.shape) for p in prims]
                tans[k] = v
                dys = push_tangents(prims, tans, outs)
                dys = [np.zeros(o.shape) if dy is None else np.asarray(getattr(dy, "data", dy))
                       for dy, o in zip(dys, outs, strict=True)]
                fwd = float(sum(np.sum(u * dy) for u, dy in zip(us, dys, strict=True)))
                err = max((float(np.max(np.abs(dy - j))) if dy.size else 0.0)
                          for dy, j in zip(dys, jv, strict=True)) if dys else 0.0
                scale = max((float(np.max(np.abs(j))) if j.size else 0.0) for j in jv) \
                    if jv else 0.0
                # elementwise JVP vs differences, reported as the worst entry
                report.rows.append(CheckRow(i, shape, "jvp", scale + err, scale))
                report.rows.append(CheckRow(i, shape, "adjoint", fwd, analytic))
            k += 1
    if raise_exception and not report.ok:
        raise GradcheckError(report.failure_message())
    return report


def gradgradcheck(fn, *inputs, seed: int = 0, **kw) -> GradcheckReport:
    """Second order: gradcheck the pullback x ↦ Jᵀ(x) u (computed with create_graph=True)."""
    rng = np.random.default_rng(seed + 1)
    with mode.no_grad():
        outs0 = _outputs(fn(*[Tensor(np.asarray(x, dtype=np.float64))
                              if _is_float(x) else x for x in inputs]))
    us = [rng.standard_normal(o.shape) for o in outs0]
    diff = [_is_float(x) for x in inputs]

    def pullback(*xs):
        xs = [Tensor(x.data, requires_grad=True) if d and not x.requires_grad else x
              for x, d in zip(xs, diff, strict=True)]
        with mode.enable_grad():
            outs = _outputs(fn(*xs))
        live = [(o, u) for o, u in zip(outs, us, strict=True) if o.requires_grad]
        prims = [x for x, d in zip(xs, diff, strict=True) if d]
        if not live:
            return tuple(Tensor(np.zeros(p.shape)) for p in prims)
        with mode.enable_grad():
            gs = gradients([o for o, _ in live], prims, grad_outputs=[u for _, u in live],
                           create_graph=True)
        return tuple(Tensor(np.zeros(p.shape)) if g is None else g for g, p in
                     zip(gs, prims, strict=True))

    return gradcheck(pullback, *inputs, seed=seed, **kw)


def _is_float(x):
    a = x.data if isinstance(x, Tensor) else x
    return isinstance(a, float) or (hasattr(a, "dtype") and np.asarray(a).dtype.kind == "f")


def gradcheck_module(module, *inputs, loss_fn=None, inputs_too: bool = True,
                     max_params: int | None = None, **kw) -> GradcheckReport:
    """Check a Module's gradients numerically: w.r.t. every parameter (and float inputs).

    The module is evaluated as a pure function of (inputs, *parameters) with
    :func:`tensorcalc.nn.functional_call`, in float64 (parameters are copied, the module is left
    unchanged), and in ``eval()`` mode so dropout and batch statistics are deterministic.
    ``loss_fn(output) -> Tensor`` optionally reduces the output first (e.g. a loss against fixed
    targets). ``max_params`` limits the check to the first parameters (for large models).
    Returns the report; rows name inputs first, then parameters in ``named_parameters()`` order.
    """
    from ..nn import functional_call

    named = [(n, p) for n, p in module.named_parameters()]
    if max_params is not None:
        named = named[:max_params]
    names = [n for n, _ in named]
    params = [np.array(p.data, dtype=np.float64) for _, p in named]
    xs = [np.array(getattr(x, "data", x), dtype=np.float64)
          if _is_float(x) else getattr(x, "data", x) for x in inputs]
    n_in = len(xs)
    was_training = module.training
    module.eval()
    try:
        def f(*args):
            ins = args[:n_in]
            ps = args[n_in:]
            if not inputs_too:
                ins = [Tensor(np.asarray(getattr(a, "data", a))) if _is_float(a) else a
                       for a in ins]
            out = functional_call(module, dict(zip(names, ps, strict=True)), *ins)
            return loss_fn(out) if loss_fn is not None else out

        raise_exception = kw.pop("raise_exception", True)
        with mode.enable_grad():
            report = gradcheck(f, *xs, *params, raise_exception=False, **kw)
    finally:
        module.train(was_training)
    report.names = [f"input {i}" for i in range(n_in)] + names
    if raise_exception and not report.ok:
        raise GradcheckError(report.failure_message())
    return report
