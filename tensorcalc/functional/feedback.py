"""Alternatives to backpropagation's backward pass, written as custom VJPs (the engine is
untouched): feedback alignment (Lillicrap et al. 2016) and direct feedback alignment
(Nøkland 2016).

For a layer a = h Wᵀ + b, h' = φ(a), backpropagation sends the error back as
δh = δa W. The rules here keep every forward computation and every local weight update
(W̄ = δaᵀ h, b̄ = Σ δa) and change only what reaches the layer below:

* feedback alignment, :func:`fa_linear`: δh = δa B with a fixed random B of W's shape;
* direct feedback alignment: the output error e = ∂L/∂z goes straight to every hidden layer
  through a fixed random Bₗ, δhₗ = e Bₗ. :func:`dfa_output` marks the network's output z (its
  backward records e on a per-forward ``hub`` and passes e on), :func:`dfa_tap` marks a hidden
  layer's output hₗ (its backward ignores what arrives from above and returns e Bₗ); the
  activation's own derivative then gives δaₗ = (e Bₗ) ⊙ φ′(aₗ).

Reverse topological order runs the output's backward before any hidden layer's, so e is known
when a tap needs it.
"""

from __future__ import annotations

from ..autodiff.custom import custom_vjp
from ..tensor import Tensor

__all__ = ["fa_linear", "dfa_output", "dfa_tap", "new_hub"]


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


# ------------------------------------------------------------------------------ FA
@custom_vjp
def fa_linear(x, w, b, *, feedback):
    """y = x Wᵀ + b whose backward sends δy B (B = ``feedback``, W's shape) to x, not δy W."""
    return x @ w.T + b


def _fa_fwd(x, w, b, *, feedback):
    return x @ w.T + b, (x, feedback)


def _fa_bwd(res, g):
    x, fb = res
    g = _raw(g)
    xr = _raw(x)
    g2 = g.reshape(-1, g.shape[-1])
    gx = (g2 @ _raw(fb)).reshape(*g.shape[:-1], fb.shape[-1])
    gw = g2.T @ xr.reshape(-1, xr.shape[-1])
    return gx, gw, g2.sum(axis=0)


fa_linear.defvjp(_fa_fwd, _fa_bwd)


# ------------------------------------------------------------------------------ DFA
def new_hub() -> dict:
    """The per-forward slot where the output's backward leaves the error e for the taps."""
    return {}


@custom_vjp
def dfa_output(z, *, hub):
    """The identity on the output z; its backward records e = z̄ in ``hub``."""
    return z


def _out_fwd(z, *, hub):
    return z, hub


def _out_bwd(hub, g):
    hub["e"] = _raw(g)
    return (g,)


dfa_output.defvjp(_out_fwd, _out_bwd)


@custom_vjp
def dfa_tap(h, *, hub, feedback):
    """The identity on a hidden output h; its backward returns e B (B = ``feedback``, of shape
    (outputs, h's width)) in place of the cotangent from the layer above."""
    return h


def _tap_fwd(h, *, hub, feedback):
    return h, (hub, feedback, h.shape)


def _tap_bwd(res, g):
    hub, fb, shape = res
    if "e" not in hub:
        raise RuntimeError("dfa_tap: the output's error is unknown; mark the network's output "
                           "with dfa_output(z, hub=hub) using the same hub")
    e = hub["e"]
    return ((e.reshape(-1, e.shape[-1]) @ _raw(fb)).reshape(shape).astype(_raw(g).dtype,
                                                                          copy=False),)


dfa_tap.defvjp(_tap_fwd, _tap_bwd)
