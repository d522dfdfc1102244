"""The generic suite (DESIGN.md §4): every spec in tests/op_db.py, in float64, fixed seed.

1. forward equals the NumPy reference;  2. VJP vs central differences (random projections);
3. JVP vs central differences;  4. JVP and VJP adjoint to rounding error;  5. second order: the
same checks on the pullback;  6. float32 in stays float32 out, inputs are not mutated;
7. special values: at each documented edge point (0, ±inf, ties, kinks, huge logits) the
forward value and the VJP are the documented limits and the JVP carries no NaN, in float64 and
float32. Samples with ≥2-D inputs are also run on non-contiguous views.
"""

from __future__ import annotations

import numpy as np
import pytest
from op_db import FINITE, OPS

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


# ---------------------------------------------------------------- 7. special values


SPECIAL = [pytest.param(spec, sv, id=f"{spec.name}-sv{i}")
           for spec in OPS for i, sv in enumerate(spec.special)]
_TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}


def _expect(got, want, what, tol):
    """``got`` equals the documented ``want`` (±inf included) or, for FINITE, is finite; a NaN
    matches nothing."""
    got = np.asarray(got, dtype=np.float64)
    assert not np.isnan(got).any(), f"{what}: NaN in {got}"
    if isinstance(want, str):
        assert want == FINITE
        assert np.isfinite(got).all(), f"{what}: expected finite, got {got}"
        return
    want = np.asarray(want, dtype=np.float64)
    assert want.shape in (got.shape, ()), f"{what}: shape {got.shape}, documented {want.shape}"
    np.testing.assert_allclose(got, want, err_msg=what, **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("spec,sv", SPECIAL)
def test_special_values(spec, sv, dtype):
    tol = _TOL[dtype]
    with np.errstate(all="ignore"):  # ±inf at the edges is the point; NaN is checked below
        xs = [a.astype(dtype) for a in sv.inputs]  # huge float64 edge points: ±inf in float32
        ts = [tc.tensor(a, requires_grad=True) for a in xs]
        ys = _as_tuple(spec.fn(*ts, **sv.kw))
        want = sv.value if len(ys) > 1 else (sv.value,)
        assert len(want) == len(ys), f"{spec.name}: {len(ys)} outputs, {len(want)} documented"
        for i, (y, w) in enumerate(zip(ys, want, strict=True)):
            _expect(y.numpy(), w, f"{spec.name} forward, output {i}", tol)
        # VJP of ȳ = 1 on every differentiable output: the documented gradient limits
        live = [y for y in ys if y.requires_grad]
        gs = tc.gradients(live, ts, grad_outputs=[np.ones(y.shape, y.dtype) for y in live])
        for i, (g, t, w) in enumerate(zip(gs, ts, sv.grads, strict=True)):
            g = np.zeros(t.shape) if g is None else g.numpy()
            _expect(g, w, f"{spec.name} VJP, input {i}", tol)
        # JVP: a tangent of ones on one input at a time (the others constants)
        for i, w in enumerate(sv.grads):
            def f(xi, i=i):
                args = [xi if j == i else tc.tensor(a) for j, a in enumerate(xs)]
                return spec.fn(*args, **sv.kw)

            _, dys = tc.jvp(f, (xs[i],), (np.ones_like(xs[i]),))
            dys = [None if d is None else
                   np.asarray(d.numpy() if hasattr(d, "numpy") else d, dtype=np.float64)
                   for d in _as_tuple(dys)]
            assert len(dys) == len(ys)
            for d in dys:
                assert d is None or not np.isnan(d).any(), \
                    f"{spec.name} JVP along input {i}: NaN in {d}"
            if not isinstance(w, str) and np.isfinite(w).all():
                # ⟨1, J·1⟩ = ⟨Jᵀ·1, 1⟩ over the differentiable outputs
                lhs = sum(float(d.sum()) for d, y in zip(dys, ys, strict=True)
                          if d is not None and y.requires_grad)
                np.testing.assert_allclose(lhs, float(np.sum(w)), err_msg=f"{spec.name} JVP "
                                           f"along input {i} vs its VJP", **tol)


def test_issue8_nan_where_the_derivative_exists():
    """The four reproductions of issue 8 item 3, as a user meets them (each gave NaN before)."""
    x = tc.tensor(np.array([0.0, 2.0]), requires_grad=True)
    y = tc.tensor(np.array([3.0, 0.0]), requires_grad=True)
    tc.pow(x, y).sum().backward()  # ∂/∂y at x = 0: 0·log 0 = 0
    np.testing.assert_array_equal(y.grad.numpy(), [0.0, np.log(2.0)])
    x0 = tc.tensor(np.zeros(3), requires_grad=True)
    (x0 ** 0).sum().backward()
    np.testing.assert_array_equal(x0.grad.numpy(), np.zeros(3))
    for ddof in (0, 1):
        c = tc.tensor(np.full((2, 4), 0.5), requires_grad=True)
        c.std(axis=1, ddof=ddof).sum().backward()
        np.testing.assert_array_equal(c.grad.numpy(), np.zeros((2, 4)))
    # one batch whose targets are all ignored must not poison the weights
    lin = tc.nn.Linear(3, 4, rng=0, dtype=np.float64)
    F = tc.functional
    for lossf in (lambda z: F.cross_entropy(z, np.array([2, 2]), ignore_index=2),
                  lambda z: F.nll_loss(F.log_softmax(z, 1), np.array([2, 2]), ignore_index=2)):
        lin.zero_grad()
        loss = lossf(lin(tc.tensor(np.ones((2, 3)))))
        loss.backward()
        assert loss.item() == 0.0
        assert np.all(lin.weight.grad.numpy() == 0) and np.all(lin.bias.grad.numpy() == 0)
