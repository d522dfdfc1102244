"""Every layer through tc.gradcheck as a function of (input, *params), in float64; plus what
each layer computes, checked against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.nn as nn


def layer_fn(module):
    """(x, *params) -> module(x) with the parameters replaced (functional_call)."""
    names = [n for n, _ in module.named_parameters()]

    def f(x, *ps):
        return nn.functional_call(module, dict(zip(names, ps, strict=True)), x)

    return f, [p.numpy().astype(np.float64) for _, p in module.named_parameters()]


def check_layer(module, x, second_order=True):
    module.double()
    f, ps = layer_fn(module)
    tc.gradcheck(f, np.asarray(x, np.float64), *ps)
    if second_order:
        tc.gradgradcheck(f, np.asarray(x, np.float64), *ps, atol=1e-5, rtol=1e-4)


R = np.random.default_rng(0)

LAYERS = [
    ("Linear", lambda: nn.Linear(4, 3, rng=0), R.normal(size=(5, 4))),
    ("Linear_3d", lambda: nn.Linear(4, 3, rng=0), R.normal(size=(2, 5, 4))),
    ("Linear_1d", lambda: nn.Linear(4, 3, rng=0), R.normal(size=(4,))),
    ("Linear_nobias", lambda: nn.Linear(4, 3, bias=False, rng=0), R.normal(size=(5, 4))),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(3), R.normal(size=(6, 3))),
    ("BatchNorm1d_3d", lambda: nn.BatchNorm1d(3), R.normal(size=(2, 3, 4))),
    ("BatchNorm1d_eval", lambda: _eval(nn.BatchNorm1d(3)), R.normal(size=(6, 3))),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(2), R.normal(size=(2, 2, 3, 3))),
    ("LayerNorm", lambda: nn.LayerNorm(4), R.normal(size=(3, 4))),
    ("LayerNorm_2axes", lambda: nn.LayerNorm((3, 4)), R.normal(size=(2, 3, 4))),
    ("GroupNorm", lambda: nn.GroupNorm(2, 4), R.normal(size=(2, 4, 3))),
    ("PReLU", lambda: nn.PReLU(), R.normal(size=(3, 4))),
    ("PReLU_channels", lambda: nn.PReLU(3, init=0.1), R.normal(size=(2, 3, 4))),
    ("Sequential_MLP", lambda: nn.Sequential(nn.Linear(4, 5, rng=1), nn.Tanh(),
                                             nn.Linear(5, 2, rng=2)), R.normal(size=(3, 4))),
    ("Flatten", lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 2, rng=3)),
     R.normal(size=(2, 2, 3))),
    ("Identity", lambda: nn.Identity(), R.normal(size=(2, 3))),
    ("Dropout_eval", lambda: _eval(nn.Dropout(0.5)), R.normal(size=(2, 3))),
]

ACTIVATIONS = [
    nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.LeakyReLU(0.1), nn.ELU(0.7), nn.SELU(), nn.CELU(1.5),
    nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.Mish(), nn.Softplus(2.0), nn.Softsign(),
    nn.Hardsigmoid(), nn.Hardswish(), nn.Hardtanh(-0.5, 0.5), nn.ReLU6(), nn.LogSigmoid(),
    nn.Softmax(axis=1), nn.LogSoftmax(axis=-1),
]


def _eval(m):
    if hasattr(m, "running_mean"):
        m.running_mean.data[...] = [0.3, -0.1, 0.2]
        m.running_var.data[...] = [0.5, 2.0, 1.5]
    return m.eval()


def _away_from_kinks(x, kinks=(-6.0, -3.0, -0.5, 0.0, 0.5, 3.0, 6.0), margin=0.05):
    x = np.array(x)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, 2, -2) * margin
    return x


@pytest.mark.parametrize("name,make,x", LAYERS, ids=[n for n, _, _ in LAYERS])
def test_layer_gradcheck(name, make, x):
    check_layer(make(), _away_from_kinks(x))


@pytest.mark.parametrize("act", ACTIVATIONS, ids=[type(a).__name__ for a in ACTIVATIONS])
def test_activation_module_gradcheck(act):
    x = _away_from_kinks(np.random.default_rng(1).uniform(-4, 4, (3, 5)))
    check_layer(act, x)


def test_embedding_gradcheck_in_weights():
    emb = nn.Embedding(5, 3, padding_idx=1, rng=0).double()
    idx = np.array([[0, 1, 4], [4, 4, 2]])
    tc.gradcheck(lambda w: nn.functional_call(emb, {"weight": w}, idx), emb.weight.numpy())
    w = tc.tensor(emb.weight.numpy(), requires_grad=True)
    g = tc.gradients(nn.functional_call(emb, {"weight": w}, idx).sum(), w)
    np.testing.assert_array_equal(g.numpy()[:, 0], [1, 0, 1, 0, 3])  # pad row: no gradient
    assert np.all(emb.weight.numpy()[1] == 0)
    out = emb(idx)
    assert out.shape == (2, 3, 3) and np.all(out.numpy()[0, 1] == 0)
    with pytest.raises(IndexError, match=r"index 5 is outside \[0, 5\)"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([0.5]))


def test_dropout_training_gradcheck_with_fixed_mask():
    d = nn.Dropout(0.4)

    def f(x):
        d.rng = np.random.default_rng(7)  # the same mask at every evaluation
        return d(x)

    tc.gradcheck(f, np.random.default_rng(0).normal(size=(4, 5)))


def test_linear_computes_x_wT_plus_b_with_w_jk_from_input_k_to_neuron_j():
    lin = nn.Linear(3, 2, rng=0)
    assert lin.weight.shape == (2, 3) and lin.bias.shape == (2,)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    x = np.eye(3, dtype=np.float32)  # unit input k
    y = lin(tc.tensor(x)).numpy()
    for k in range(3):
        for j in range(2):
            assert y[k, j] == pytest.approx(w[j, k] + b[j], rel=1e-6)
    bound = 1 / np.sqrt(3)
    big = nn.Linear(100, 50, rng=1)
    assert np.abs(big.weight.numpy()).max() <= 0.1 and np.abs(big.bias.numpy()).max() <= 0.1
    assert np.abs(lin.weight.numpy()).max() <= bound
    assert big.weight.dtype == np.float32
    np.testing.assert_array_equal(nn.Linear(4, 2, rng=5).weight.numpy(),
                                  nn.Linear(4, 2, rng=5).weight.numpy())


def test_linear_gradients_are_contiguous_like_the_weights():
    lin = nn.Linear(6, 4, rng=0)
    lin(tc.randn(5, 6, rng=0)).sum().backward()
    assert lin.weight.grad.data.flags.c_contiguous and lin.weight.grad.dtype == np.float32


def test_linear_bad_input_message():
    lin = nn.Linear(784, 256, rng=0)
    with pytest.raises(ValueError) as e:
        lin(tc.zeros((32, 28, 28)))
    assert str(e.value) == "Linear(784 -> 256): x[..., 784] expected, got (32, 28, 28)"
    with pytest.raises(ValueError, match=r"linear: x\[\.\.\., 4\] @ Wᵀ\[4, 3\] needs x's last"):
        tc.functional.linear(tc.zeros((2, 5)), tc.zeros((3, 4)))


def test_layer_norm_and_group_norm_values_and_errors():
    x = np.random.default_rng(0).normal(3, 2, (4, 6)).astype(np.float32)
    y = nn.LayerNorm(6)(tc.tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(1), 1, atol=1e-3)
    with pytest.raises(ValueError, match=r"layer_norm: x\[\.\.\., 5\] expected"):
        nn.LayerNorm(5)(tc.tensor(x))
    with pytest.raises(ValueError, match="divisible"):
        tc.functional.group_norm(tc.zeros((2, 6, 3)), 4)
    with pytest.raises(ValueError, match="do not split"):
        nn.GroupNorm(4, 6)


def test_prelu_learns_its_slope_and_checks_channels():
    p = nn.PReLU(3)
    x = tc.tensor(-np.ones((2, 3, 4), np.float32))
    p(x).sum().backward()
    np.testing.assert_allclose(p.weight.grad.numpy(), [-8, -8, -8])
    with pytest.raises(ValueError, match=r"prelu: 3 slopes need x of shape \(N, 3, \.\.\.\)"):
        p(tc.zeros((2, 4)))


def test_activation_modules_match_functional():
    x = tc.randn(3, 4, rng=0)
    F = tc.functional
    pairs = [(nn.ReLU(), F.relu), (nn.GELU("tanh"), lambda t: F.gelu(t, "tanh")),
             (nn.LeakyReLU(0.2), lambda t: F.leaky_relu(t, 0.2)), (nn.SiLU(), F.silu),
             (nn.Softmax(0), lambda t: F.softmax(t, 0)), (nn.Hardtanh(), F.hard_tanh)]
    for m, f in pairs:
        np.testing.assert_array_equal(m(x).numpy(), f(x).numpy())
        assert m(x).dtype == np.float32
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    assert nn.Swish is nn.SiLU and F.swish is F.silu


def test_activations_at_kinks_and_saturation():
    F = tc.functional
    x = tc.tensor(np.array([-1e4, -3.0, 0.0, 3.0, 6.0, 1e4]), requires_grad=True)
    for f in (F.relu, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.softplus,
              F.softsign, F.hard_sigmoid, F.hard_swish, F.hard_tanh, F.relu6, F.log_sigmoid,
              F.sigmoid, F.tanh, lambda t: F.gelu(t, "tanh")):
        y = f(x)
        (g,) = [tc.gradients(y.sum(), x)]
        assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(g.numpy())), f
    g = tc.gradients(F.relu6(x).sum(), x).numpy()
    np.testing.assert_array_equal(g, [0, 0, 0, 1, 0, 0])  # 0 at both kinks
    g = tc.gradients(F.leaky_relu(x, 0.1).sum(), x).numpy()
    np.testing.assert_allclose(g, [0.1, 0.1, 0.1, 1, 1, 1])  # slope a at 0


@pytest.mark.parametrize("residual", [False, True], ids=["", "residual"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_with_fused_relu_is_relu_after_batch_norm(channels_last, residual):
    """BatchNorm2d(relu=True) — one primitive in training — gives relu(BatchNorm2d(x)), and
    bn(x, residual=r) gives relu(BatchNorm2d(x) + r): the output, x̄, r̄, γ̄, β̄ and the running
    statistics; in eval mode too."""
    rng = np.random.default_rng(3)
    xa = rng.standard_normal((6, 4, 5, 5)).astype(np.float32)
    ra = rng.standard_normal((6, 4, 5, 5)).astype(np.float32)
    if channels_last:  # a conv output's memory: the compiled kernels' path
        xa = np.ascontiguousarray(xa.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        ra = np.ascontiguousarray(ra.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    g = tc.tensor(rng.standard_normal(xa.shape).astype(np.float32))
    wb = rng.standard_normal((2, 4)).astype(np.float32)
    out = {}
    for fused in (True, False):
        bn = nn.BatchNorm2d(4, relu=fused)
        bn.weight.data[...], bn.bias.data[...] = wb
        x = tc.tensor(xa, requires_grad=True)
        r = tc.tensor(ra, requires_grad=True)
        if fused:
            y = bn(x, residual=r) if residual else bn(x)
        else:
            y = tc.relu(bn(x) + r) if residual else tc.relu(bn(x))
        (y * g).sum().backward()
        bn.eval()
        if fused:
            ye = bn(xa, residual=ra) if residual else bn(xa)
        else:
            ye = tc.relu(bn(xa) + ra) if residual else tc.relu(bn(xa))
        out[fused] = (y.data, x.grad.data, bn.weight.grad.data, bn.bias.grad.data,
                      bn.running_mean.data, bn.running_var.data, ye.data,
                      r.grad.data if residual else np.zeros(1))
        if fused:
            assert "relu=True" in repr(bn)
            assert residual or r.grad is None
    assert (out[True][0] == 0).any() and (out[True][0] > 0).any()
    for a, b in zip(out[True], out[False], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_batch_norm_residual_must_match_x():
    bn = nn.BatchNorm2d(4, relu=True)
    x = tc.tensor(np.ones((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="residual must have x's shape"):
        bn(x, residual=tc.tensor(np.ones((2, 4, 3, 1), np.float32)))
    with pytest.raises(ValueError, match="dtype float32"):
        bn(x, residual=tc.tensor(np.ones((2, 4, 3, 3), np.float64)))
    bn.eval()  # no silent broadcast in eval mode either
    with pytest.raises(ValueError, match="residual must have x's shape"):
        bn(x, residual=tc.tensor(np.ones((2, 4, 3, 1), np.float32)))
