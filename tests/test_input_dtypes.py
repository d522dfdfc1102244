"""Input dtypes at layers and losses (issue 8): the parameters decide, complex is refused.

Each layer family (dense, bilinear, convolution, normalisation, embedding) is checked the same
way: a float64 array into a float32 layer gives float32 out, and the input's gradient comes
back in float64; complex input raises a TypeError naming the function.
"""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc

nn, F = tc.nn, tc.functional

LAYERS = {  # name: (layer factory, input shape, the function named in the error)
    "linear": (lambda: nn.Linear(4, 3, rng=0), (2, 4), "linear"),
    "conv1d": (lambda: nn.Conv1d(2, 3, 3, rng=0), (2, 2, 6), "conv1d"),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3, rng=0), (2, 2, 5, 5), "conv2d"),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(2, 3, 3, rng=0), (2, 2, 4, 4),
                         "conv_transpose2d"),
    "batch_norm": (lambda: nn.BatchNorm2d(2), (3, 2, 2, 2), "batch_norm"),
    "layer_norm": (lambda: nn.LayerNorm(4), (3, 4), "layer_norm"),
    "group_norm": (lambda: nn.GroupNorm(2, 4), (3, 4, 2), "group_norm"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float64_input_is_cast_to_the_parameters_dtype(name):
    make, shape, _ = LAYERS[name]
    layer = make()
    assert all(p.dtype == np.float32 for p in layer.parameters())
    x = tc.tensor(np.random.default_rng(0).normal(size=shape), requires_grad=True)
    assert x.dtype == np.float64
    y = layer(x)
    assert y.dtype == np.float32, f"{name}: float64 into a float32 layer gave {y.dtype}"
    y.sum().backward()
    assert x.grad.dtype == np.float64 and np.isfinite(x.grad.numpy()).all()
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())
    # the same values as a float32 input (the cast is the whole difference)
    y32 = layer(tc.tensor(x.numpy().astype(np.float32)))
    np.testing.assert_allclose(y.numpy(), y32.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_complex_input_is_refused_by_name(name):
    make, shape, who = LAYERS[name]
    x = np.ones(shape) * (1 + 1j)
    with pytest.raises(TypeError, match=rf"^{who}: complex input \(complex128\) is not "):
        make()(x)


def test_bilinear_and_embedding_follow_the_same_rule():
    bl = nn.Bilinear(2, 3, 4, rng=0)
    y = bl(np.ones((5, 2)), np.ones((5, 3)))
    assert y.dtype == np.float32
    with pytest.raises(TypeError, match="bilinear: complex x1"):
        bl(np.ones((5, 2)) + 0j, np.ones((5, 3)))
    emb = nn.Embedding(5, 3, rng=0)
    assert emb(np.array([0, 4])).dtype == np.float32
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        emb(np.array([0, 4]) + 0j)


def test_integer_input_is_cast_too():
    lin = nn.Linear(3, 2, rng=0)
    assert lin(np.arange(6).reshape(2, 3)).dtype == np.float32


LOSSES = {
    "mse_loss": lambda x: F.mse_loss(x, np.zeros(3)),
    "l1_loss": lambda x: F.l1_loss(x, np.zeros(3)),
    "huber_loss": lambda x: F.huber_loss(x, np.zeros(3)),
    "binary_cross_entropy_with_logits": lambda x: F.binary_cross_entropy_with_logits(
        x, np.zeros(3)),
    "binary_cross_entropy": lambda x: F.binary_cross_entropy(x * 0.5, np.zeros(3)),
    "kl_div": lambda x: F.kl_div(x, np.full(3, 0.5)),
    "cross_entropy": lambda x: F.cross_entropy(x.reshape(1, 3), np.array([1])),
    "nll_loss": lambda x: F.nll_loss(x.reshape(1, 3), np.array([1])),
    "multi_margin_loss": lambda x: F.multi_margin_loss(x.reshape(1, 3), np.array([1])),
    "hinge_embedding_loss": lambda x: F.hinge_embedding_loss(x, np.array([1, -1, 1])),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_refuse_complex_input(name):
    with pytest.raises(TypeError, match=rf"^{name}: complex input \(complex128\)"):
        LOSSES[name](tc.tensor(np.full(3, 0.2 + 0.1j)))
    # a real input is fine (the check is on the dtype only)
    assert np.isfinite(LOSSES[name](tc.tensor(np.full(3, 0.2))).item())


def test_losses_refuse_complex_targets_and_cast_float_targets():
    with pytest.raises(TypeError, match=r"mse_loss: complex target"):
        F.mse_loss(tc.tensor(np.zeros(3, np.float32)), np.zeros(3) + 0j)
    assert F.mse_loss(tc.tensor(np.zeros(3, np.float32)), np.ones(3)).dtype == np.float32


def test_tc_train_is_an_attribute():
    import subprocess
    import sys

    code = "import tensorcalc as tc; print(tc.train.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "tensorcalc.train", out.stderr
