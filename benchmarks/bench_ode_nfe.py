"""Forward vs backward (adjoint) function evaluations of tc.odeint on the spiral demo.

    .venv/bin/python benchmarks/bench_ode_nfe.py

1. The ode-spiral training setting: batches of 20 windows of 10 outputs (Δt = 0.025), float32,
   dopri5 at rtol 1e-5 / atol 1e-7, the 2-50-tanh-2 MLP at the demo's initialisation and the
   true dynamics y³A; mean NFE, accepted steps and rejections per gradient.
2. One interval t = [0, 25] from y₀ = [2, 0] (true dynamics, float64, loss Σ y): the backward
   solve's error norm varied — on y only, on [y, a] (RMS: tensorcalc), max(‖y‖, ‖a‖)
   (torchdiffeq's default adjoint norm less its parameter term), on a only.

The analysis is in docs/math/ode.md ("Backward NFE against forward NFE").
"""

from __future__ import annotations

import numpy as np

import tensorcalc as tc
from tensorcalc.functional import ode as O
from tensorcalc.models.odenet import SpiralDynamics
from tensorcalc.ops.shape import swapaxes
from tensorcalc.recipes.ode_spiral import true_trajectory
from tensorcalc.tensor import Tensor

_rms = O._ratio


def norm(which):
    """A replacement for the solver's error ratio measuring the backward state's y, a or
    both (``n_norm`` is 2n in the backward solve: [y, a])."""
    def ratio(err, y0, y1, rtol, atol, n_norm):
        if n_norm is None or which == "rms":
            return _rms(err, y0, y1, rtol, atol, n_norm)
        n = n_norm // 2
        part = [_rms(*(v.reshape(-1)[sl] for v in (err, y0, y1)), rtol, atol, None)
                for sl in (slice(0, n), slice(n, 2 * n))]
        return {"y": part[0], "a": part[1], "max": max(part)}[which]
    return ratio


def counts(f, y0, ts, params, loss, rtol, atol, which="rms"):
    O._ratio = norm(which)
    try:
        st = O.ODEStats()
        ys = O.odeint(f, y0, ts, rtol=rtol, atol=atol, adjoint=True, params=params, stats=st)
        rej = st.rejected
        tc.autodiff.engine.gradients([loss(ys)], params)
        return np.array([st.nfe_forward, st.steps_forward, rej, st.nfe_backward,
                         st.steps_backward, st.rejected - rej], float)
    finally:
        O._ratio = _rms


def main():
    t, y = true_trajectory(1000, 25.0)
    rng = np.random.default_rng(0)
    a32 = Tensor(np.array([[-0.1, 2.0], [-2.0, -0.1]], np.float32), requires_grad=True)
    mlp = SpiralDynamics(2, 50, rng=np.random.default_rng(0))
    for lin in (mlp.fc1, mlp.fc2):
        lin.weight.data[...] = rng.normal(0, 0.1, lin.weight.shape)
        lin.bias.data[...] = 0
    print("ode-spiral windows (20 x 10 outputs), float32, rtol 1e-5, atol 1e-7")
    for name, f, params in (("MLP at init", mlp, list(mlp.parameters())),
                            ("true y^3 A", lambda _t, v: (v ** 3) @ a32, [a32])):
        tot = np.zeros(6)
        for _ in range(20):
            s = rng.choice(990, 20, replace=False)
            tgt = Tensor(np.stack([y[k:k + 10] for k in s]).astype(np.float32))
            tot += counts(f, Tensor(y[s].astype(np.float32)), t[:10] - t[0], params,
                          lambda ys, tgt=tgt: tc.functional.l1_loss(swapaxes(ys, 0, 1), tgt),
                          1e-5, 1e-7)
        tot /= 20
        print(f"  {name:12s} forward NFE {tot[0]:6.1f} (steps {tot[1]:.1f}, rejected "
              f"{tot[2]:.1f})   backward NFE {tot[3]:6.1f} (steps {tot[4]:.1f}, rejected "
              f"{tot[5]:.1f})")
    a64 = Tensor(np.array([[-0.1, 2.0], [-2.0, -0.1]]), requires_grad=True)
    print("one interval [0, 25], y0 = [2, 0], true dynamics, float64, loss sum(y)")
    for rtol, atol in ((1e-5, 1e-7), (1e-7, 1e-9)):
        for which in ("y", "rms", "max", "a"):
            c = counts(lambda _t, v: (v ** 3) @ a64, Tensor(np.array([[2.0, 0.0]])),
                       [0.0, 25.0], [a64], lambda ys: ys.sum(), rtol, atol, which)
            print(f"  rtol {rtol:g} backward norm {which:3s}: forward {c[0]:.0f} NFE "
                  f"({c[1]:.0f} steps)  backward {c[3]:.0f} NFE ({c[4]:.0f} steps)")


if __name__ == "__main__":
    main()
