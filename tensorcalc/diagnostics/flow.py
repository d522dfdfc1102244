"""Gradient flow during training: a Loop callback sampling per-layer figures every N steps.

Per parameter (by module path), at every ``every``-th step: the gradient's L2 norm (after
backward), the weight's L2 norm, and the update/weight ratio ‖Δθ‖/‖θ‖ (after the update). A
one-line warning is printed (once per kind) when the smallest layer gradient norm falls below
``vanish`` (default 1e-7: the layer has stopped learning) or the largest exceeds ``explode``
(default 1e3). Sampling keeps the cost small: the other steps only count.
"""

from __future__ import annotations

import numpy as np

from ..train.callbacks import Callback

__all__ = ["GradientFlow"]


class GradientFlow(Callback):
    order = 40

    def __init__(self, every: int = 50, vanish: float = 1e-7, explode: float = 1e3,
                 verbose: bool = True):
        self.every, self.vanish, self.explode, self.verbose = every, vanish, explode, verbose
        self.records: list[dict] = []   # {"step", "grad", "weight", "ratio"}: path -> value
        self._n = 0
        self._before: dict | None = None
        self._warned: set = set()

    def _params(self, step):
        model = getattr(step, "model", None) or step.modules.get("model")
        return list(model.named_parameters())

    def after_backward(self, trainer, step, name):
        self._n += 1
        if (self._n - 1) % self.every:
            self._before = None
            return
        rec = {"step": self._n, "grad": {}, "weight": {}, "ratio": {}}
        self._before = {}
        for path, p in self._params(step):
            w = np.asarray(p.data)
            rec["weight"][path] = float(np.linalg.norm(w))
            if p.grad is not None:
                rec["grad"][path] = float(np.linalg.norm(np.asarray(getattr(p.grad, "data",
                                                                            p.grad))))
            self._before[path] = w.copy()
        self.records.append(rec)
        g = list(rec["grad"].values())
        if g and self.verbose:
            if min(g) < self.vanish and "vanish" not in self._warned:
                self._warned.add("vanish")
                print(f"gradient flow: vanishing gradients at step {self._n}: smallest layer "
                      f"gradient norm {min(g):.1e} < {self.vanish:g}", flush=True)
            if max(g) > self.explode and "explode" not in self._warned:
                self._warned.add("explode")
                print(f"gradient flow: exploding gradients at step {self._n}: largest layer "
                      f"gradient norm {max(g):.1e} > {self.explode:g}", flush=True)

    def after_update(self, trainer, step, name):
        if self._before is None:
            return
        rec = self.records[-1]
        for path, p in self._params(step):
            w0 = self._before.get(path)
            if w0 is not None:
                rec["ratio"][path] = float(np.linalg.norm(np.asarray(p.data) - w0)) / max(
                    float(np.linalg.norm(w0)), 1e-30)
        self._before = None
