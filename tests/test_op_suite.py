"""The generic suite (DESIGN.md §4): every spec in tests/op_db.py, in float64, fixed seed.

1. forward equals the NumPy reference;  2. VJP vs central differences (random projections);
3. JVP vs central differences;  4. JVP and VJP adjoint to rounding error;  5. second order: the
same checks on the pullback;  6. float32 in stays float32 out, inputs are not mutated.
Samples with ≥2-D inputs are also run on non-contiguous views.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_db import OPS

import tensorcalc as tc
from tensorcalc.diagnostics import gradcheck, gradgradcheck


def _noncontig(a):
    if a.ndim < 2:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    v = big[..., ::2]
    assert not v.flags.c_contiguous
    return v


def _inputs(spec, shapes, kw, seed):
    rng = np.random.default_rng(seed)
    if spec.gen is not None:
        xs = [np.asarray(a, dtype=np.float64) for a in spec.gen(rng, shapes, kw)]
    else:
        lo, hi = spec.domain
        xs = [rng.uniform(lo, hi, s) for s in shapes]
    for k in spec.kinks:
        for a in xs:
            near = np.abs(a - k) < spec.margin
            a[near] = k + np.where(a[near] >= k, 2, -2) * spec.margin
    return xs


def _cases():
    for spec in OPS:
        for si, shapes in enumerate(spec.shapes):
            for ki, kw in enumerate(spec.kwargs):
                yield pytest.param(spec, shapes, kw, id=f"{spec.name}-s{si}-k{ki}")


CASES = list(_cases())


def _as_tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


@pytest.mark.parametrize("spec,shapes,kw", [c for c in CASES if c.values[0].ref is not None])
def test_forward_matches_reference(spec, shapes, kw):
    xs = _inputs(spec, shapes, kw, 0)
    for variant in (xs, [_noncontig(a) for a in xs]):
        got = _as_tuple(spec.fn(*[tc.tensor(a) for a in variant], **kw))
        want = _as_tuple(spec.ref(*variant, **kw))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == np.float64 or not spec.keeps_dtype
            np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec,shapes,kw", CASES)
def test_first_order_vjp_jvp_adjoint(spec, shapes, kw):
    xs = _inputs(spec, shapes, kw, 1)
    fn = lambda *ts: spec.fn(*ts, **kw)
    kw_check = dict(eps=spec.eps, atol=spec.atol, rtol=spec.rtol, adjoint_tol=spec.adjoint_tol)
    gradcheck(fn, *xs, **kw_check)
    if any(a.ndim >= 2 for a in xs):
        gradcheck(fn, *[_noncontig(a) for a in xs], **kw_check)


@pytest.mark.parametrize("spec,shapes,kw", [c for c in CASES if c.values[0].order >= 2])
def test_second_order_pullback(spec, shapes, kw):
    xs = _inputs(spec, shapes, kw, 2)
    gradgradcheck(lambda *ts: spec.fn(*ts, **kw), *xs, eps=spec.eps,
                  atol=max(spec.atol, 1e-5), rtol=max(spec.rtol, 1e-4),
                  adjoint_tol=spec.adjoint_tol)


@pytest.mark.parametrize("spec,shapes,kw", CASES)
def test_float32_preserved_and_inputs_untouched(spec, shapes, kw):
    xs = [a.astype(np.float32) for a in _inputs(spec, shapes, kw, 3)]
    copies = [a.copy() for a in xs]
    ts = [tc.tensor(a, requires_grad=True) for a in xs]
    ys = _as_tuple(spec.fn(*ts, **kw))
    for y in ys:
        if not spec.keeps_dtype:
            break
        assert y.dtype == np.float32, f"{spec.name}: float32 in gave {y.dtype} out"
    live = [y for y in ys if y.requires_grad]
    if live:
        gs = tc.gradients(live, ts, grad_outputs=[np.ones(y.shape, np.float32) for y in live])
        for g, t in zip(gs, ts, strict=True):
            if g is not None:
                assert g.dtype == np.float32 and g.shape == t.shape
    for a, c, t in zip(xs, copies, ts, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(t.data, c)
