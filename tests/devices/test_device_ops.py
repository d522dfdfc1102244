"""The op table on another device: every spec of tests/op_db.py, forward, VJP, JVP and (for
order-2 specs) the VJP of the VJP, run on the device and compared with the CPU, which the
generic suite (tests/test_op_suite.py) checks against references and finite differences. Equal
to the CPU within rounding means right on the device; the stand-in also proves no op's forward
or rules reach for NumPy behind the device's back (that raises there, as it would on CuPy).
"""

from __future__ import annotations

import numpy as np
import pytest
from op_db import OPS

import tensorcalc as tc
from tensorcalc.autodiff.engine import gradients
from tensorcalc.backend import to_numpy


def _cases():
    for spec in OPS:
        yield pytest.param(spec, id=spec.name)


def _inputs(spec, seed=3):
    rng = np.random.default_rng(seed)
    shapes, kw = spec.shapes[0], spec.kwargs[-1]
    if spec.gen is not None:
        xs = [np.asarray(a, dtype=np.float64) for a in spec.gen(rng, shapes, kw)]
    else:
        lo, hi = spec.domain
        xs = [rng.uniform(lo, hi, s) for s in shapes]
    for k in spec.kinks:
        for a in xs:
            near = np.abs(a - k) < spec.margin
            a[near] = k + np.where(a[near] >= k, 2, -2) * spec.margin
    return xs, kw, rng


def _on(kw, device):
    """Keyword arrays (indices, targets, masks) go to the device with the operands."""
    return {k: (tc.backend.to_device(v, device) if isinstance(v, np.ndarray) else v)
            for k, v in kw.items()}


def _tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _run(spec, xs, kw, device, us, vs, order2):
    ts = [tc.tensor(a, device=device, requires_grad=True) for a in xs]
    kwd = _on(kw, device) if device != "cpu" else kw
    ys = [y for y in _tuple(spec.fn(*ts, **kwd)) if isinstance(y, tc.Tensor)]
    diff = [(y, tc.tensor(u, device=device)) for y, u in zip(ys, us, strict=True)
            if y.requires_grad]  # (slogdet's sign is a constant)
    gxs = gradients([y for y, _ in diff], ts, grad_outputs=[u for _, u in diff],
                    create_graph=order2)
    out = {"y": [to_numpy(y.data) for y in ys],
           "vjp": [None if g is None else to_numpy(tc.as_tensor(g).data) for g in gxs]}
    if order2:
        s = None
        for g, v in zip(gxs, vs, strict=True):
            if g is not None and g.requires_grad:
                term = (g * tc.tensor(v, device=device)).sum()
                s = term if s is None else s + term
        if s is not None:
            out["vjp2"] = [None if h is None else to_numpy(h.data)
                           for h in gradients(s, ts)]

    def f(*a):
        return [y for y in _tuple(spec.fn(*a, **kwd)) if isinstance(y, tc.Tensor)]

    _, dy = tc.jvp(f, [tc.tensor(a, device=device) for a in xs],
                   [tc.tensor(v, device=device) for v in vs])
    out["jvp"] = [None if d is None else to_numpy(tc.as_tensor(d).data) for d in _tuple(dy)]
    return out


@pytest.mark.parametrize("spec", list(_cases()))
def test_op_on_device_matches_cpu(spec, device):
    xs, kw, rng = _inputs(spec)
    with tc.no_grad():
        probe = [y for y in _tuple(spec.fn(*[tc.tensor(a) for a in xs], **kw))
                 if isinstance(y, tc.Tensor)]
    us = [rng.standard_normal(y.shape) for y in probe]
    vs = [rng.standard_normal(a.shape) for a in xs]
    order2 = spec.order >= 2
    if "rng" in kw:  # dropout: the device makes its own mask (tensorcalc.devices), so check
        # the law instead of the CPU's numbers: y ∈ {0, x/(1−p)} and x̄ = ȳ ⊙ y/x
        got = _run(spec, xs, kw, device, us, vs, False)
        x, y, gx = xs[0], got["y"][0], got["vjp"][0]
        scale = 1.0 / (1.0 - kw["p"])
        assert np.all(np.isclose(y, 0.0) | np.isclose(y, x * scale))
        np.testing.assert_allclose(gx, us[0] * y / x, rtol=1e-9, atol=1e-12)
        return
    want = _run(spec, xs, kw, "cpu", us, vs, order2)
    got = _run(spec, xs, kw, device, us, vs, order2)
    assert got.keys() == want.keys()
    for key in want:
        for g, w in zip(got[key], want[key], strict=True):
            assert (g is None) == (w is None), f"{spec.name} {key}: None on one device only"
            if w is not None:
                assert g.dtype == w.dtype, f"{spec.name} {key}: dtype {g.dtype} vs {w.dtype}"
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11,
                                           err_msg=f"{spec.name} {key} on {device}")


def test_mixing_devices_raises_naming_both(device):
    a = tc.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = tc.tensor([3.0, 4.0])
    with pytest.raises(RuntimeError, match=rf"mul: operands on different devices \({device} and "
                                           r"cpu\)"):
        a * b
    with pytest.raises(RuntimeError, match="different devices"):
        tc.matmul(b.reshape(1, 2), a.reshape(2, 1))
