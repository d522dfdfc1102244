"""The engine at its edges: aliasing and version counters, thread-local grad mode, pytrees,
custom VJPs, checkpointing, flat parameters and the graph walk."""

import threading

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import nn
from tensorcalc.autodiff import graph as G
from tensorcalc.optim import FlatParameters, parameters_to_vector, vector_to_parameters

# ------------------------------------------------------------------ versions shared by views


def test_inplace_write_through_a_slice_is_seen():
    a = tc.tensor([1.0, 2.0])
    w = tc.tensor(np.ones(2), requires_grad=True)
    y = (a * w).sum()
    a[0:2].mul_(0.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_inplace_write_through_detach_is_seen():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = tc.exp(x)
    y.detach().mul_(0.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


@pytest.mark.parametrize("view", [
    lambda t: t.reshape(4), lambda t: t.T, lambda t: t[1], lambda t: tc.Tensor(t),
    lambda t: t.detach(), lambda t: t.reshape(2, 2)[:, 0],
], ids=["reshape", "T", "row", "Tensor(t)", "detach", "reshape-slice"])
def test_every_view_shares_the_version(view):
    a = tc.tensor(np.arange(4.0).reshape(2, 2))
    w = tc.tensor(np.ones((2, 2)), requires_grad=True)
    y = (a * w).sum()
    view(a).add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_a_copy_does_not_share_the_version():
    a = tc.tensor([1.0, 2.0])
    w = tc.tensor(np.ones(2), requires_grad=True)
    y = (a * w).sum()
    a.clone().mul_(0.0)
    tc.Tensor(a.numpy().copy()).mul_(0.0)
    y.backward()
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0])


# ------------------------------------------------------------------ grad mode per thread


def test_no_grad_in_one_thread_does_not_stop_another():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 3))
    x = rng.normal(size=(4, 3))
    want = 2 * x.T @ (x @ W)
    errors = []
    stop = threading.Event()

    def train():
        try:
            for _ in range(300):
                w = tc.tensor(W, requires_grad=True)
                loss = ((tc.tensor(x) @ w) ** 2).sum()
                loss.backward()
                np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-12)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def infer():
        while not stop.is_set():
            with tc.no_grad():
                assert not tc.is_grad_enabled()
                w = tc.tensor(W, requires_grad=True)
                assert not (tc.tensor(x) @ w).requires_grad

    inf = threading.Thread(target=infer)
    inf.start()
    trainers = [threading.Thread(target=train) for _ in range(2)]
    for t in trainers:
        t.start()
    for t in trainers:
        t.join()
    stop.set()
    inf.join()
    assert not errors, errors
    assert tc.is_grad_enabled()


def test_overlapping_no_grad_blocks_in_threads_leave_grad_on():
    barrier = threading.Barrier(2)

    def worker(first):
        with tc.no_grad():
            barrier.wait()
            if first:
                barrier.wait()   # leave second: the other thread exits its block first
        if not first:
            barrier.wait()

    ts = [threading.Thread(target=worker, args=(i == 0,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert tc.is_grad_enabled()
    x = tc.tensor([1.0], requires_grad=True)
    assert (x * 2).requires_grad


# ------------------------------------------------------------------ transforms: API edges


def test_jacobian_forward_mode_over_several_argnums():
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    jx, jy = tc.jacobian(lambda a, b: a * b, argnums=(0, 1), mode="forward")(x, y)
    np.testing.assert_allclose(jx.numpy(), np.diag(y))
    np.testing.assert_allclose(jy.numpy(), np.diag(x))
    rx, ry = tc.jacobian(lambda a, b: a * b, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(rx.numpy(), jx.numpy())
    with pytest.raises(ValueError, match="mode must be"):
        tc.jacobian(lambda a: a, mode="sideways")


def test_grad_over_a_dict_of_parameters_with_functional_call():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh(), nn.Linear(4, 1, rng=1))
    x = np.random.default_rng(1).normal(size=(5, 3))
    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.state_dict().items()}

    def loss(p):
        return (nn.functional_call(model, p, tc.tensor(x)) ** 2).mean()

    grads = tc.grad(loss)(params)
    assert isinstance(grads, dict) and list(grads) == list(params)
    ref = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh(), nn.Linear(4, 1, rng=1))
    for k, v in ref.named_parameters():
        v.data = params[k].copy()
    (ref(tc.tensor(x)) ** 2).mean().backward()
    for k, v in ref.named_parameters():
        np.testing.assert_allclose(grads[k].numpy(), v.grad.numpy(), rtol=1e-10)


def test_pytrees_through_vjp_jvp_hessian_hvp():
    p = {"a": np.array([1.0, 2.0]), "b": (np.array(3.0),)}
    f = lambda q: (q["a"] ** 2).sum() * q["b"][0]  # noqa: E731
    out, pull = tc.vjp(f, p)
    (g,) = pull(tc.tensor(np.array(1.0)))
    np.testing.assert_allclose(g["a"].numpy(), [6.0, 12.0])
    assert float(g["b"][0]) == 5.0
    t = {"a": np.array([1.0, 0.0]), "b": (np.array(0.0),)}
    _, d = tc.jvp(f, (p,), (t,))
    assert float(d) == 6.0
    H = tc.hessian(f)(p)
    np.testing.assert_allclose(H["a"]["a"].numpy(), np.diag([6.0, 6.0]))
    np.testing.assert_allclose(H["a"]["b"][0].numpy(), [2.0, 4.0])
    _, hv = tc.hvp(f, (p,), (t,))
    np.testing.assert_allclose(hv["a"].numpy(), [6.0, 0.0])
    assert float(hv["b"][0]) == 2.0
    with pytest.raises(ValueError, match="structure"):
        tc.jvp(f, (p,), ({"a": np.ones(2)},))


def test_tree_utilities_round_trip():
    tree = {"w": [1, 2], "b": (3, None, {"c": 4})}
    leaves, d = tc.tree_flatten(tree)
    assert leaves == [1, 2, 3, 4]
    assert tc.tree_unflatten(d, leaves) == tree
    assert tc.tree_map(lambda v: v * 10, tree) == {"w": [10, 20], "b": (30, None, {"c": 40})}


# ------------------------------------------------------------------ custom_vjp and checkpoint


@tc.custom_vjp
def _exp(x):
    return tc.exp(x)


def _exp_fwd(x):
    y = tc.exp(x)
    return y, y


def _exp_bwd(y, g):
    return (g * y,)


_exp.defvjp(_exp_fwd, _exp_bwd)


@tc.custom_vjp
def _clip_grad(x):
    return x


_clip_grad.defvjp(lambda x: (x, None), lambda res, g: (tc.clip(g, -1.0, 1.0),))


def test_custom_vjp_passes_the_generic_checks():
    x = np.array([0.3, -0.8, 1.1])
    tc.gradcheck(_exp, x)
    tc.gradgradcheck(_exp, x)
    H = tc.hessian(lambda v: _exp(v).sum())(x)
    np.testing.assert_allclose(H.numpy(), np.diag(np.exp(x)), rtol=1e-12)
    _, t = tc.jvp(_exp, (x,), (np.ones(3),))
    np.testing.assert_allclose(t.numpy(), np.exp(x), rtol=1e-12)


def test_custom_vjp_straight_through_rule_is_used():
    x = tc.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (_clip_grad(x) * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_custom_vjp_errors_are_named():
    @tc.custom_vjp
    def nothing(x):
        return x * 2

    x = tc.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="defvjp"):
        nothing(x).sum().backward()

    @tc.custom_vjp
    def bad(x, y):
        return x * y

    bad.defvjp(lambda x, y: (x * y, None), lambda r, g: (g,))
    y = tc.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="1 cotangents for 2"):
        bad(x, y).sum().backward()


def test_checkpoint_gives_the_same_gradients_and_keeps_no_activations():
    model = nn.Sequential(nn.Linear(3, 8, rng=0), nn.Tanh(), nn.Linear(8, 2, rng=1))
    x = tc.tensor(np.random.default_rng(0).normal(size=(5, 3)))
    model(x).sum().backward()
    ref = [p.grad.numpy().copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    y = tc.checkpoint(model, x)
    assert y.grad_fn == "custom_vjp"
    assert len(G.walk([y])) == 1           # one node: the segment's activations are not kept
    y.sum().backward()
    for r, p in zip(ref, model.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.numpy(), r, rtol=1e-6)


def test_checkpoint_of_a_plain_function_with_params_and_second_order():
    w = tc.tensor(np.array([0.5, -1.0]), requires_grad=True)
    fn = lambda v: tc.tanh(v * w)  # noqa: E731
    x = np.array([0.2, 0.7])
    g_ref = tc.grad(lambda v: tc.tanh(v * w).sum())(x)
    g_ck = tc.grad(lambda v: tc.checkpoint(fn, v, params=[w]).sum())(x)
    np.testing.assert_allclose(g_ck.numpy(), g_ref.numpy(), rtol=1e-12)
    H_ref = tc.hessian(lambda v: tc.tanh(v * w).sum())(x)
    H_ck = tc.hessian(lambda v: tc.checkpoint(fn, v, params=[w]).sum())(x)
    np.testing.assert_allclose(H_ck.numpy(), H_ref.numpy(), rtol=1e-10)


# ------------------------------------------------------------------ flat parameters


def test_flat_parameters_are_views():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Linear(4, 2, rng=1))
    before = parameters_to_vector(model.parameters()).copy()
    flat = FlatParameters(model.parameters())
    assert flat.numel == 3 * 4 + 4 + 4 * 2 + 2
    np.testing.assert_array_equal(flat.vector, before)
    flat.vector[:] = 0.5                      # writing θ changes the model
    assert all(np.all(p.numpy() == 0.5) for p in model.parameters())
    opt = tc.optim.SGD(model.parameters(), lr=0.1)
    x = tc.tensor(np.ones((2, 3)))
    model(x).sum().backward()
    g = flat.grad_vector()
    ref = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    np.testing.assert_array_equal(g, ref)
    g *= 2.0                                  # an in-place allreduce-style change ...
    assert np.all(model[0].bias.grad.numpy() == 2 * ref[12:16])   # ... reaches the grads
    opt.step()                                # and the optimiser's update shows in θ
    np.testing.assert_allclose(flat.vector, 0.5 - 0.1 * 2 * ref, rtol=1e-6)
    views = flat.unflatten(flat.vector)
    assert [v.shape for v in views] == [p.shape for p in model.parameters()]
    vector_to_parameters(np.zeros(flat.numel, dtype=np.float32), model.parameters())
    assert not flat.vector.any()
    with pytest.raises(ValueError, match="expected"):
        flat.assign(np.zeros(3))


def test_optimizer_step_accepts_a_closure():
    w = tc.tensor(np.array([3.0]), requires_grad=True)
    opt = tc.optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 9.0 and float(w.numpy()[0]) == 3.0 - 0.25 * 6.0


# ------------------------------------------------------------------ the graph walk


def test_trace_reads_in_the_models_terms():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.ReLU(), nn.Linear(4, 2, rng=1))
    x = tc.tensor(np.ones((5, 3)))
    loss = model(x).sum()
    g = G.trace(loss, model)
    mods = {s.module for s in g}
    assert {"0", "2"} <= mods
    assert "0.weight" in g.leaves and "2.bias" in g.leaves
    assert g.steps[-1].op == "sum" and g.steps[-1].module is None
    assert "graph:" in str(g) and "[0]" in str(g)
    walked = G.walk([loss])
    assert [n.seq for n in walked] == sorted(n.seq for n in walked)


def test_walk_is_iterative_on_a_deep_chain():
    x = tc.tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0
    assert len(G.walk([y])) == 20000
    y.backward()
    assert float(x.grad) == 1.0


# ------------------------------------------------- cotangents summed in place, never in sight
def test_cotangent_sums_never_write_into_an_array_someone_else_holds(monkeypatch):
    """A tensor used twice gets the sum of both contributions. The engine adds the second into
    the first's memory only where it alone holds that array (engine._plus): an array that a
    custom VJP returns and also keeps, a view of a kept buffer, or the cotangent passed to
    backward itself are left as they were."""
    from tensorcalc.autodiff import engine

    kept = np.arange(6.0).reshape(2, 3)
    buf = np.arange(12.0).reshape(2, 6)
    snapshot = kept.copy(), buf.copy()

    @tc.custom_vjp
    def f(x):
        return x * 1.0

    f.defvjp(lambda x: (x * 1.0, None), lambda res, g: (kept,))

    @tc.custom_vjp
    def h(x):
        return x * 1.0

    h.defvjp(lambda x: (x * 1.0, None), lambda res, g: (buf[:, :3],))  # a view of a kept buffer

    into = []
    real = engine.add_into
    monkeypatch.setattr(engine, "add_into", lambda a, b: into.append(a) or real(a, b))
    for fn in (f, h):
        for order in (0, 1):
            x = tc.tensor(np.zeros((2, 3)), requires_grad=True)
            y = x * 1.0
            # y's cotangent: the kept array (or view) and 2 — visited first (the op made
            # last), the kept one is the slot the other is added to; then kept + kept + 2
            z = (y * 2.0 + fn(y)) if order == 0 else (fn(y) + fn(y) + y * 2.0)
            z.sum().backward()
            expect = (1 + order) * (kept if fn is f else buf[:, :3]) + 2.0
            np.testing.assert_array_equal(x.grad.data, expect)
        np.testing.assert_array_equal(kept, snapshot[0])
        np.testing.assert_array_equal(buf, snapshot[1])
    assert all(a is not kept and (a.base is None or a.base is not buf) for a in into)

    # the cotangent given to backward is the caller's: never written
    x = tc.tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 3.0
    z = y + y
    g = np.full((2, 3), 5.0)
    g0 = g.copy()
    z.backward(g)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(x.grad.data, 30.0)


def test_cotangent_sums_go_in_place_where_the_engine_alone_holds_them(monkeypatch):
    """The common case — a tensor feeding two ops, each VJP a fresh array — is summed into the
    first array (no new memory), with the same values as the out-of-place sum."""
    from tensorcalc.autodiff import engine

    into = []
    real = engine.add_into
    monkeypatch.setattr(engine, "add_into", lambda a, b: into.append(a.shape) or real(a, b))
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((50, 40))
    x = tc.tensor(xv, requires_grad=True)
    y = tc.exp(x)
    (tc.sin(y) + y * y).sum().backward()
    assert into == [(50, 40)]
    ev = np.exp(xv)
    np.testing.assert_allclose(x.grad.data, (np.cos(ev) + 2 * ev) * ev, rtol=1e-12)
