"""Reverse-mode engine: accumulation, deep graphs, memory, versioning, modes, errors."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tensorcalc as tc


def test_reused_input_accumulates():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x + x * 3.0).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3)


def test_backward_accumulates_into_grad_across_calls():
    x = tc.tensor([1.0, -1.0], requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_chain_of_10000_ops_has_no_recursion_limit():
    x = tc.tensor(1.0, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert np.isclose(x.grad.item(), 1.0001**10_000)


def test_saved_arrays_freed_after_backward_and_second_backward_errors():
    x = tc.tensor(np.ones(4), requires_grad=True)
    h = tc.exp(x)
    y = h.sum()
    node = h._node
    y.backward()
    assert node.inputs is None and node.out is None
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = tc.tensor(np.ones(3), requires_grad=True)
    y = tc.exp(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.e)


def test_graph_released_when_output_dropped():
    x = tc.tensor(np.ones(3), requires_grad=True)
    y = tc.exp(x)
    ref = weakref.ref(y._node)
    del y
    gc.collect()
    assert ref() is None, "a node kept alive by a reference cycle"


def test_no_grad_records_nothing_and_enable_grad_reenables():
    x = tc.tensor([1.0], requires_grad=True)
    with tc.no_grad():
        y = x * 2.0
        with tc.enable_grad():
            z = x * 2.0
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn == "mul"


def test_gradients_wrt_intermediate_and_unused():
    x = tc.tensor([1.0, 2.0], requires_grad=True)
    u = tc.tensor([5.0], requires_grad=True)
    h = x * 3.0
    y = (h * h).sum()
    gh, gx, gu = tc.gradients(y, [h, x, u])
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(gx.numpy(), 18 * x.numpy())
    assert gu is None
    with pytest.raises(RuntimeError, match="not used"):
        tc.gradients((x * 1.0).sum(), [u], allow_unused=False)


def test_broadcast_gradients_are_summed_back():
    a = tc.tensor(np.ones((3, 1)), requires_grad=True)
    b = tc.tensor(np.arange(4.0), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,)
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), 6.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, 3.0))


def test_mixed_dtype_gradient_cast_back_to_each_input():
    a = tc.tensor(np.ones(3, np.float32), requires_grad=True)
    b = tc.tensor(np.ones(3, np.float64), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_create_graph_gives_differentiable_gradients():
    x = tc.tensor(np.array([0.3, -0.7]), requires_grad=True)
    (g,) = [tc.gradients((x**3).sum(), x, create_graph=True)]
    assert g.requires_grad
    (h,) = [tc.gradients(g.sum(), x)]
    np.testing.assert_allclose(h.numpy(), 6 * x.numpy())


def test_repr_shows_shape_dtype_and_op():
    x = tc.tensor([[0.0, 1.0, 2.0]], requires_grad=True)  # Python floats -> float32
    assert tc.tensor(np.zeros(2)).dtype == np.float64  # an array keeps its dtype
    r = repr(x.exp())
    assert "dtype=float32" in r and "grad_fn=exp" in r
    big = repr(tc.zeros((10, 10, 10)))
    assert "shape=(10, 10, 10)" in big


def test_numpy_interop():
    t = tc.tensor([[1.0, 2.0]])
    a = np.asarray(t)
    assert isinstance(a, np.ndarray) and a.shape == (1, 2)
    assert (np.ones((1, 2)) + t).grad_fn is None  # ndarray ⊕ Tensor defers to the Tensor
    assert isinstance(np.ones((1, 2)) + t, tc.Tensor)
    assert tc.tensor(3.5).item() == 3.5


def test_creation_and_default_dtype():
    assert tc.zeros((2, 2)).dtype == np.float32
    assert tc.ones(3, dtype=np.float64).dtype == np.float64
    assert tc.arange(5).dtype.kind == "i"
    assert tc.eye(3).numpy().trace() == 3
    r1 = tc.randn(3, 4, rng=0).numpy()
    r2 = tc.randn(3, 4, rng=0).numpy()
    np.testing.assert_array_equal(r1, r2)
    assert tc.linspace(0, 1, 5).shape == (5,)
    assert tc.full((2,), 7.0).numpy().tolist() == [7.0, 7.0]
    assert tc.uniform((100,), -1, 1, rng=1).numpy().min() >= -1


def test_integer_and_bool_tensors_index_and_mask():
    x = tc.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    idx = tc.tensor(np.array([2, 0]))
    mask = x > 5.0
    assert mask.dtype == np.bool_ and not mask.requires_grad
    y = x[idx].sum() + x[mask].sum()
    y.backward()
    expect = np.zeros((3, 4))
    expect[[2, 0]] += 1
    expect[x.numpy() > 5] += 1
    np.testing.assert_allclose(x.grad.numpy(), expect)


def test_tensor_methods_match_numpy():
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    t = tc.tensor(a, dtype=np.float64)
    np.testing.assert_allclose(t.mean(axis=1).numpy(), a.mean(axis=1))
    np.testing.assert_allclose(t.var().numpy(), a.var())
    np.testing.assert_allclose(t.std(axis=-1).numpy(), a.std(axis=-1))
    np.testing.assert_allclose(t.permute(2, 0, 1).numpy(), a.transpose(2, 0, 1))
    np.testing.assert_allclose(t.mT.numpy(), np.swapaxes(a, -1, -2))
    np.testing.assert_allclose(t.reshape(6, 4).T.numpy(), a.reshape(6, 4).T)
    np.testing.assert_allclose(t.unsqueeze(0).squeeze(0).numpy(), a)
    np.testing.assert_allclose(t.flatten(1).numpy(), a.reshape(2, 12))
    assert t.argmax(axis=-1).numpy().tolist() == a.argmax(-1).tolist()
    np.testing.assert_allclose(t.clip(-0.5, 0.5).numpy(), a.clip(-0.5, 0.5))
    np.testing.assert_allclose(tc.where(t > 0, t, 0.0).numpy(), np.where(a > 0, a, 0))
    parts = tc.split(t, 2, axis=2)
    np.testing.assert_allclose(tc.concat(parts, axis=2).numpy(), a)
    np.testing.assert_allclose(tc.flip(t, 0).numpy(), a[::-1])
    np.testing.assert_allclose(tc.pad(t, 1).numpy(), np.pad(a, 1))
    np.testing.assert_allclose(t.logsumexp(axis=0).numpy(), np.log(np.exp(a).sum(0)))
    np.testing.assert_allclose(t.max(axis=(0, 2)).numpy(), a.max(axis=(0, 2)))


def test_max_ties_share_gradient_equally():
    x = tc.tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0.5, 0.5, 0])


def test_stability_of_primitive_set():
    big = tc.tensor(np.array([-1e4, 0.0, 1e4]), requires_grad=True)
    y = tc.sigmoid(big).sum() + tc.softplus(big).sum() + tc.logsumexp(big)
    y.backward()
    assert np.isfinite(y.item()) and np.all(np.isfinite(big.grad.numpy()))


def test_softmax_gradients_accurate_in_float32_at_large_logits():
    # exp(x − lse) with lse rounded to float32 at 1e4 would be off by ~1e-3 relative
    z = np.array([[1e4, 1e4 + 1.0, 1e4 - 2.0]], dtype=np.float32)
    p = np.exp(z.astype(np.float64) - z.max()) / np.exp(z.astype(np.float64) - z.max()).sum()
    for f in (lambda t: tc.logsumexp(t, axis=1).sum(),
              lambda t: tc.softmax_cross_entropy(t, tc.tensor([[0.0, 0.0, 0.0]]), axis=1).sum()
              + tc.logsumexp(t, axis=1).sum()):
        t = tc.tensor(z, requires_grad=True)
        f(t).backward()
        assert t.grad.dtype == np.float32
        np.testing.assert_allclose(t.grad.numpy(), p, rtol=1e-6)


def test_functional_softmax_accurate_in_float32_at_large_logits():
    z = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.0]], dtype=np.float32)
    d = z.astype(np.float64) - z.max()
    want = d - np.log(np.exp(d).sum())
    got = tc.log_softmax(tc.tensor(z), axis=1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(tc.softmax(tc.tensor(z), axis=1).numpy(), np.exp(want), rtol=1e-6)
    # a row with one −inf entry (masked) gets probability 0 there; the others stay exact
    part = tc.softmax(tc.tensor(np.array([[0.0, -np.inf, 0.0]], dtype=np.float32)))
    np.testing.assert_array_equal(part.numpy(), [[0.5, 0.0, 0.5]])
