"""L-BFGS with an optional strong-Wolfe line search (torch.optim.LBFGS's interface and rules)."""

from __future__ import annotations

import math

from ..autodiff import mode as _mode
from ._second_order import FlatProblem, FlatState, flat_params
from .base import Optimizer

__all__ = ["LBFGS"]


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clipped to ``bounds``
    (Nocedal & Wright eq. 3.59)."""
    xmin_bound, xmax_bound = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """Find t with L(x + t d) ≤ L(x) + c₁ t gᵀd and |∇L(x + t d)ᵀd| ≤ c₂ |gᵀd| (bracketing, then
    zoom by cubic interpolation — Nocedal & Wright Algorithms 3.5/3.6, as PyTorch implements)."""
    d_norm = float(abs(d).max())
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0.0, t], [f, f_new], [g, g_new]
        bracket_gtd = [gtd, gtd_new]

    # zoom
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) \
                    else min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new
    t = bracket[low_pos]
    return bracket_f[low_pos], bracket_g[low_pos], t, ls_func_evals


class LBFGS(FlatState, Optimizer):
    """Limited-memory BFGS (Nocedal 1980; Liu & Nocedal 1989), PyTorch's ``torch.optim.LBFGS``
    interface and defaults, on all parameters as one vector θ.

    Keep the last m = ``history_size`` pairs sₖ = θₖ₊₁ − θₖ, yₖ = gₖ₊₁ − gₖ (a pair is kept only
    if yₖᵀsₖ > 1e-10). The direction d = −H̃ g applies the inverse-Hessian approximation by the
    two-loop recursion, with H̃₀ = γ I, γ = sᵀy / yᵀy of the newest pair:

        q ← g;  for i = newest … oldest:  ρᵢ = 1/(yᵢᵀsᵢ),  αᵢ = ρᵢ sᵢᵀq,  q ← q − αᵢ yᵢ
        r ← γ q; for i = oldest … newest:  βᵢ = ρᵢ yᵢᵀr,  r ← r + sᵢ (αᵢ − βᵢ)
        d = −r

    Step length: t = lr (the first iteration ever uses min(1, 1/‖g‖₁)·lr), or with
    ``line_search_fn="strong_wolfe"`` a t satisfying the strong Wolfe conditions
    L(θ + td) ≤ L(θ) + c₁ t gᵀd, |∇L(θ + td)ᵀd| ≤ c₂|gᵀd| (c₁ = 1e-4, c₂ = 0.9).

    One ``step(closure)`` runs up to ``max_iter`` iterations (and ``max_eval`` closure calls,
    default 1.25·max_iter); it stops early when ‖g‖_∞ ≤ ``tolerance_grad``, or when the step
    ‖t d‖_∞ or the change of loss falls below ``tolerance_change``.

    The closure follows PyTorch: it zeroes the gradients, computes the loss, calls
    ``loss.backward()`` and returns the loss; ``step`` returns the first loss. State
    (``self.state[first param]``): ``n_iter`` (total iterations), ``func_evals``, ``d``, ``t``,
    ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``.
    """

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval=None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn=None):
        params = flat_params(params, "LBFGS")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got "
                             f"{line_search_fn!r}")
        if max_iter < 1 or history_size < 1:
            raise ValueError(f"LBFGS: max_iter and history_size must be >= 1, got {max_iter}, "
                             f"{history_size}")
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change,
                                      history_size=history_size, line_search_fn=line_search_fn))
        self.problem = FlatProblem(params)

    def _gather_grad(self):
        gs = [p.grad for p in self.problem.params]
        return self.problem.cat(gs)

    def _evaluate(self, closure):
        with _mode.enable_grad():
            loss = closure()
        if all(p.grad is None for p in self.problem.params):
            raise RuntimeError("LBFGS: no gradients after the closure; the closure must call "
                               "loss.backward() (PyTorch's convention)")
        return float(loss.data if hasattr(loss, "data") else loss)

    def step(self, closure=None):
        if closure is None:
            raise ValueError("LBFGS: step needs a closure (zero_grad, loss, backward, return loss)")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]
        pb = self.problem
        xp = pb.xp
        state = self.state.setdefault(pb.params[0], {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = loss = self._evaluate(closure)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_grad()
        if float(abs(flat_grad).max()) <= tol_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = (state.get("old_dirs", []), state.get("old_stps", []),
                                  state.get("ro", []))
        h_diag = state.get("H_diag")
        prev_flat_grad, prev_loss = state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                q = -flat_grad
                al = [0.0] * len(old_dirs)
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                d = q * h_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ d) * ro[i]
                    d = d + old_stps[i] * (al[i] - be_i)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(flat_grad @ d)
            if gtd > -tol_change:
                break

            ls_func_evals = 0
            if group["line_search_fn"] == "strong_wolfe":
                x_init = pb.get()

                def obj_func(x, t_, d_):
                    pb.set(x + t_ * d_)
                    f_ = self._evaluate(closure)
                    return f_, self._gather_grad()

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss,
                                                                  flat_grad, gtd)
                pb.set(x_init + t * d)
                opt_cond = float(abs(flat_grad).max()) <= tol_grad
            else:
                pb.set(pb.get() + t * d)
                if n_iter != max_iter:
                    loss = self._evaluate(closure)
                    flat_grad = self._gather_grad()
                    opt_cond = float(abs(flat_grad).max()) <= tol_grad
                    ls_func_evals = 1
                else:
                    opt_cond = False
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(abs(d * t).max()) <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        state["grad_norm"] = float(xp.sqrt(flat_grad @ flat_grad))
        return orig_loss
