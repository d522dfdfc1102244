"""``tensorcalc curvature RUN``: the loss Hessian of a trained recipe's model — its top
eigenvalues (Lanczos and power iteration), trace (Hutch++) and spectral density (stochastic
Lanczos quadrature) on a sample of the training data, with a density plot and a report.

The model is loaded from the run's checkpoint and its loss is the recipe's (the default
cross-entropy / MSE by task). Parameters are promoted to float64 for the measurement (curvature
products from float32 round-off are noisy at the 1e-3 level). See
:mod:`tensorcalc.diagnostics.curvature` for the methods.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..diagnostics import curvature as C
from ..tensor import Tensor
from . import report as R
from .pipeline import default_loss, load_run, write_json


def run_curvature(path: str, *, samples: int = 512, top: int = 5, probes: int = 10,
                  steps: int = 60, trace_samples: int = 300, deflate: int = 50, seed: int = 0,
                  which: str = "last",
                  out: str | None = None, quiet: bool = False) -> dict:
    """Measure the Hessian of the training loss of the run at ``path`` on ``samples`` training
    examples; write ``curvature.png``, ``curvature.json`` and ``curvature.html`` into ``out``
    (default: the run directory). Returns the figures as a dict."""
    run = load_run(path, which)
    model = run.model
    if _has_dtype_to(model):
        model.to(dtype="float64")
    loss_fn = run.recipe.loss(run.cfg, run.data) if run.recipe.loss else default_loss(run.data)
    x, y = run.data.train
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=min(samples, len(y)), replace=False)
    xb = np.asarray(x[idx], dtype=np.float64)
    yb = y[idx]
    params = [p for p in model.parameters() if p.requires_grad]

    def loss():
        return loss_fn(model(Tensor(xb)), yb)

    op = C.HessianOperator(params, loss)
    t0 = time.perf_counter()
    lz = C.lanczos_eigenvalues(op, k=top, m=max(steps, 2 * top + 20), rng=seed)
    pw, _, used = C.top_eigenvalues(op, k=min(top, 3), rng=seed, tol=1e-5, max_iter=100)
    tr, se = C.hutchinson_trace(op, samples=min(trace_samples, 3 * op.n), rng=seed,
                                method="hutch++")
    nodes, weights = C.spectral_density(op, n_vectors=probes, m=steps, rng=seed,
                                        deflate=min(deflate, op.n // 4))
    seconds = time.perf_counter() - t0
    out = out or run.run_dir or os.path.dirname(run.checkpoint)
    os.makedirs(out, exist_ok=True)
    lo, hi = float(nodes.min()), float(nodes.max())
    pad = 0.05 * (hi - lo + 1e-12)
    grid = np.linspace(lo - pad, hi + pad, 1000)
    sigma = max((hi - lo) / 200, 1e-8)
    dens = C.density_on_grid(nodes, weights, grid, sigma)
    fig = R.new_figure(7.5, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.semilogy(grid, np.maximum(dens, 1e-12), color=R.PALETTE["train"])
    for v in lz[:3]:
        ax.axvline(v, color=R.PALETTE["bad"], linestyle=":", linewidth=1)
    ax.set_ylim(bottom=max(float(dens.max()) * 1e-8, 1e-12))
    ax.set_xlabel("eigenvalue of ∇²L")
    ax.set_ylabel(f"density (Gaussian width σ = {sigma:.2g})")
    ax.set_title(f"{run.recipe.name}: Hessian spectral density ({op.n:,} parameters, "
                 f"{len(yb)} examples)", fontsize=10)
    R.style_axes(ax)
    png = R.save_figure(fig, os.path.join(out, "curvature.png"))
    result = {"recipe": run.recipe.name, "checkpoint": str(run.checkpoint),
              "parameters": op.n, "examples": int(len(yb)),
              "top_eigenvalues_lanczos": [float(v) for v in lz],
              "top_eigenvalues_power": [float(v) for v in pw], "power_products": int(used),
              "trace": tr, "trace_stderr": se,
              "trace_slq": C.density_moments(nodes, weights, 1) * op.n,
              "lambda_min_ritz": lo, "hessian_vector_products": op.matvecs,
              "seconds": seconds}
    write_json(os.path.join(out, "curvature.json"), result)
    rep = R.HTMLReport(f"curvature — {run.recipe.name}", f"checkpoint {run.checkpoint}")
    rep.cards([("λ_max", f"{lz[0]:.4g}"), ("trace", f"{tr:.4g}"),
               ("parameters", f"{op.n:,}"), ("HVPs", f"{op.matvecs}")])
    rep.figure(png, "Spectral density of the training-loss Hessian by stochastic Lanczos "
                    "quadrature (dotted: the top Lanczos eigenvalues). A few outliers above a "
                    "bulk near zero is the usual shape for a trained network.")
    rep.table([[i + 1, float(v), float(pw[i]) if i < len(pw) else "—"]
               for i, v in enumerate(lz)], ["k", "λ_k (Lanczos)", "λ_k (power iteration)"])
    result["report"] = rep.save(os.path.join(out, "curvature.html"))
    result["figure"] = png
    if not quiet:
        print(f"{run.recipe.name}: {op.n:,} parameters, Hessian of the training loss on "
              f"{len(yb)} examples ({op.matvecs} Hessian-vector products, {seconds:.1f} s)")
        print("top eigenvalues (Lanczos): " + ", ".join(f"{v:.5g}" for v in lz))
        print("top eigenvalues (power):   " + ", ".join(f"{v:.5g}" for v in pw))
        print(f"trace (Hutch++): {tr:.5g}   trace (SLQ): {result['trace_slq']:.5g}")
        print(f"report: {result['report']}")
    return result


def _has_dtype_to(model) -> bool:
    import inspect

    try:
        return "dtype" in inspect.signature(model.to).parameters
    except (TypeError, ValueError):
        return False
