"""mle — maximum likelihood by gradient ascent reproduces the closed forms, and the Fisher
information from the Hessian gives the textbook standard errors.

For i.i.d. data x₁…xₙ and a family p(x | θ), the maximum-likelihood estimate maximises
ℓ(θ) = Σᵢ log p(xᵢ | θ). Gradient ascent runs on an unconstrained parametrisation (log σ, logit
p, softmax logits, log λ) — the maximiser is the same point. At θ̂ the observed information
J(θ̂) = −∇²ℓ(θ̂) (the Hessian, by automatic differentiation, in the natural parameters) gives the
asymptotic covariance J⁻¹ and standard errors √diag(J⁻¹):

    family        θ̂ (closed form)                 standard error
    Gaussian      μ̂ = x̄,  σ̂² = (1/n)Σ(xᵢ − x̄)²      se(μ̂) = σ̂/√n,  se(σ̂) = σ̂/√(2n)
    Bernoulli     p̂ = x̄                            √(p̂(1 − p̂)/n)
    categorical   π̂ₖ = nₖ/n  (K − 1 free)           √(π̂ₖ(1 − π̂ₖ)/n)
    Poisson       λ̂ = x̄                            √(λ̂/n)
    exponential   λ̂ = 1/x̄                          λ̂/√n
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import optim
from ..autodiff.transforms import hessian
from ..ops import elementwise as E
from ..tensor import Tensor
from ..train import report as R
from . import Recipe, register
from ._studies import finish, print_table, synthetic_data

FAMILIES = ("gaussian", "bernoulli", "categorical", "poisson", "exponential")


def _lse(z):
    m = float(np.max(z.data))
    return E.log(E.exp(z - m).sum()) + m


def sample(family, n, rng):
    """Data from a fixed true distribution of each family."""
    if family == "gaussian":
        return rng.normal(2.0, 1.5, n)
    if family == "bernoulli":
        return (rng.random(n) < 0.3).astype(np.float64)
    if family == "categorical":
        return rng.choice(4, size=n, p=[0.1, 0.2, 0.3, 0.4])
    if family == "poisson":
        return rng.poisson(3.5, n).astype(np.float64)
    if family == "exponential":
        return rng.exponential(1 / 2.0, n)
    raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")


class Family:
    """ℓ in unconstrained parameters u (for the ascent) and in natural ones θ (for the Fisher
    information), the map u → θ, and the closed forms."""

    def __init__(self, family, x):
        self.name, self.x, self.n = family, x, len(x)
        if family == "categorical":
            self.k = int(x.max()) + 1
            self.counts = np.bincount(x.astype(int), minlength=self.k).astype(np.float64)

    def start(self):
        return {"gaussian": np.zeros(2), "bernoulli": np.zeros(1),
                "categorical": np.zeros(getattr(self, "k", 1)), "poisson": np.zeros(1),
                "exponential": np.zeros(1)}[self.name]

    def loglik_u(self, u):
        """ℓ as a function of the unconstrained parameters (a Tensor)."""
        x, n = self.x, self.n
        if self.name == "gaussian":
            mu, log_s = u[0], u[1]
            return -n * log_s - ((Tensor(x) - mu) ** 2).sum() * 0.5 * E.exp(-2 * log_s) \
                - 0.5 * n * math.log(2 * math.pi)
        if self.name == "bernoulli":
            z, s = u[0], float(x.sum())
            return s * z - n * E.log1p(E.exp(z))          # Σ x log p + (1 − x) log(1 − p)
        if self.name == "categorical":
            return (Tensor(self.counts) * u).sum() - n * _lse(u)
        if self.name == "poisson":
            log_l, s = u[0], float(x.sum())
            return s * log_l - n * E.exp(log_l) - float(sum(math.lgamma(v + 1) for v in x))
        log_l = u[0]                                       # exponential
        return n * log_l - E.exp(log_l) * float(x.sum())

    def natural(self, u):
        """θ from u: (μ, σ), p, π (all K), λ, λ."""
        if self.name == "gaussian":
            return np.array([u[0], math.exp(u[1])])
        if self.name == "bernoulli":
            return np.array([1 / (1 + math.exp(-u[0]))])
        if self.name == "categorical":
            e = np.exp(u - u.max())
            return e / e.sum()
        return np.array([math.exp(u[0])])

    def loglik_theta(self, th):
        """ℓ in the natural parameters, free ones only (categorical: π₁…π_{K−1})."""
        x, n = self.x, self.n
        if self.name == "gaussian":
            mu, s = th[0], th[1]
            return -n * E.log(s) - ((Tensor(x) - mu) ** 2).sum() / (2 * s * s)
        if self.name == "bernoulli":
            p, s = th[0], float(x.sum())
            return s * E.log(p) + (n - s) * E.log(1 - p)
        if self.name == "categorical":
            c = self.counts
            return (Tensor(c[:-1]) * E.log(th)).sum() + c[-1] * E.log(1 - th.sum())
        if self.name == "poisson":
            return float(x.sum()) * E.log(th[0]) - n * th[0]
        return n * E.log(th[0]) - th[0] * float(x.sum())

    def closed_form(self):
        x, n = self.x, self.n
        if self.name == "gaussian":
            mu, s = x.mean(), x.std()
            return np.array([mu, s]), np.array([s / math.sqrt(n), s / math.sqrt(2 * n)])
        if self.name == "bernoulli":
            p = x.mean()
            return np.array([p]), np.array([math.sqrt(p * (1 - p) / n)])
        if self.name == "categorical":
            pi = self.counts / n
            return pi, np.sqrt(pi * (1 - pi) / n)
        if self.name == "poisson":
            lam = x.mean()
            return np.array([lam]), np.array([math.sqrt(lam / n)])
        lam = 1 / x.mean()
        return np.array([lam]), np.array([lam / math.sqrt(n)])

    def names(self):
        return {"gaussian": ["μ", "σ"], "bernoulli": ["p"],
                "categorical": [f"π{k}" for k in range(getattr(self, "k", 0))],
                "poisson": ["λ"], "exponential": ["λ"]}[self.name]


def fit(fam: Family, lr=0.5, max_steps=20000, tol=1e-10):
    """Gradient ascent on ℓ/n in the unconstrained parameters; returns (θ̂, steps, ‖∇‖)."""
    u = Tensor(fam.start())
    u.requires_grad = True
    opt = optim.SGD([u], lr=lr)
    g = math.inf
    for step in range(1, max_steps + 1):
        opt.zero_grad()
        loss = -fam.loglik_u(u) / fam.n
        loss.backward()
        g = float(np.sqrt((u.grad.data ** 2).sum()))
        if g < tol:
            return fam.natural(u.data.copy()), step - 1, g
        opt.step()
    return fam.natural(u.data.copy()), max_steps, g


def information(fam: Family, theta):
    """J = −∇²ℓ(θ̂) in the free natural parameters (categorical: π₁…π_{K−1})."""
    free = theta[:-1] if fam.name == "categorical" else theta
    h = hessian(lambda t: fam.loglik_theta(t))(free)
    return -np.asarray(getattr(h, "data", h), dtype=np.float64)


def standard_errors(fam: Family, theta):
    """√diag(J⁻¹), J = −∇²ℓ(θ̂) in the natural parameters (categorical: π_K by the delta
    method, Var(π_K) = 1ᵀ Σ 1)."""
    cov = np.linalg.inv(information(fam, theta))
    se = np.sqrt(np.diag(cov))
    if fam.name == "categorical":
        se = np.append(se, math.sqrt(cov.sum()))
    return se


def _run(cfg, run_dir, quiet=False, progress=None):
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg["seed"])
    rows, results, worst_theta, worst_se, fams = [], {}, 0.0, 0.0, {}
    for fam_name in FAMILIES:
        fam = fams[fam_name] = Family(fam_name, sample(fam_name, cfg["n"], rng))
        theta, steps, g = fit(fam, lr=cfg["lr"], max_steps=cfg["max_steps"], tol=cfg["tol"])
        cf, se_cf = fam.closed_form()
        se = standard_errors(fam, theta)
        results[fam_name] = {"theta": theta.tolist(), "closed_form": cf.tolist(),
                             "se_hessian": se.tolist(), "se_formula": se_cf.tolist(),
                             "steps": steps, "grad_norm": g}
        for j, nm in enumerate(fam.names()):
            e1 = abs(theta[j] - cf[j]) / abs(cf[j])
            e2 = abs(se[j] - se_cf[j]) / se_cf[j]
            worst_theta, worst_se = max(worst_theta, e1), max(worst_se, e2)
            rows.append([fam_name if j == 0 else "", nm, float(theta[j]), float(cf[j]), e1,
                         float(se[j]), float(se_cf[j]), e2, steps if j == 0 else ""])
    header = ["family", "θ", "gradient ascent", "closed form", "rel. diff", "se (Hessian)",
              "se (formula)", "rel. diff", "steps"]
    if not quiet:
        print_table(header, rows)
    fig = R.new_figure(13, 3.2)
    axes = fig.subplots(1, 5)
    for ax, fam_name in zip(axes, FAMILIES, strict=True):
        r = results[fam_name]
        fam = fams[fam_name]
        th = r["theta"][0]
        j00 = float(information(fam, np.array(r["theta"]))[0, 0])  # curvature along θ₀ alone
        w = 1 / math.sqrt(j00)
        grid = np.linspace(th - 4 * w, th + 4 * w, 200)
        full = np.array(r["theta"])
        vals = []
        for v in grid:
            t = full.copy()
            t[0] = v
            free = t[:-1] if fam_name == "categorical" else t
            vals.append(float(fam.loglik_theta(Tensor(free)).data))
        vals = np.array(vals) - max(vals)
        ax.plot(grid, vals, color=R.PALETTE["train"], label="ℓ(θ) − ℓ(θ̂)")
        ax.plot(grid, -0.5 * j00 * (grid - th) ** 2, ":", color=R.PALETTE["bad"],
                label="−½ J₀₀ (θ − θ̂)²")
        se = r["se_hessian"][0]
        ax.axvspan(th - se, th + se, color=R.PALETTE["val"], alpha=0.15)
        ax.set_title(f"{fam_name}: {fam.names()[0]}", fontsize=10)
        ax.set_ylim(-9, 0.5)
        R.style_axes(ax)
    axes[0].legend(frameon=False, fontsize=7)
    png = R.save_figure(fig, os.path.join(run_dir, "likelihoods.png"))
    test = {"max_rel_error_theta": worst_theta, "max_rel_error_se": worst_se}
    return finish(
        run_dir, cfg, "mle — maximum likelihood by gradient ascent and Fisher information",
        f"{cfg['n']} samples per family, seed {cfg['seed']}",
        [("largest |θ̂ − closed form| / |closed form|", f"{worst_theta:.1e}"),
         ("largest se difference (relative)", f"{worst_se:.1e}")],
        [("section", "Estimates and standard errors"),
         ("table", rows, header, "Standard errors from the inverse of the observed "
          "information −∇²ℓ(θ̂) (automatic differentiation) against the textbook formulas."),
         ("figure", png, "The log-likelihood around θ̂ along its first parameter (the others "
          "held at the MLE; categorical: π_K = 1 − Σ the rest) and the quadratic −½ J₀₀(θ − θ̂)² "
          "of the observed information; shaded: ±1 standard error.")],
        test, seconds=time.perf_counter() - t0, extra={"families": results})


register(Recipe(
    name="mle",
    description="maximum likelihood by gradient ascent vs closed forms; Fisher-information "
                "standard errors",
    defaults={"n": 1000, "lr": 0.5, "max_steps": 20000, "tol": 1e-10, "dataset": "synthetic",
              "val_fraction": 0.0},
    data=lambda cfg: synthetic_data("synthetic", "samples drawn from Gaussian, Bernoulli, "
                                    "categorical, Poisson and exponential distributions"),
    run=_run,
    help={"n": "samples per family", "lr": "gradient-ascent step on ℓ/n",
          "max_steps": "gradient-ascent steps at most", "tol": "stop when ‖∇(ℓ/n)‖ < tol"},
    choices={"dataset": ("synthetic",)},
))
