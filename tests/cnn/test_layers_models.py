"""Conv/pool layers and the model families: shapes, parameters, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc import nn
from tensorcalc.models import VGG, InceptionBlock, InceptionNet, LeNet5, ResNet
from tensorcalc.models.resnet import BasicBlock


def test_conv2d_layer_is_the_function_of_its_parameters():
    layer = nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0)
    assert layer.weight.shape == (4, 3, 3, 3) and layer.bias.shape == (4,)
    x = tc.randn(2, 3, 7, 7, rng=1)
    want = F.conv2d(x, layer.weight, layer.bias, stride=2, padding=1).numpy()
    np.testing.assert_array_equal(layer(x).numpy(), want)
    bound = 1 / np.sqrt(27)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound


def test_layer_gradcheck_float64():
    layer = nn.Conv2d(2, 3, 3, padding=1, groups=1, rng=0, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4))
    tc.gradcheck(lambda a, w, b: nn.functional_call(layer, {"weight": w, "bias": b}, a),
                 x, layer.weight.numpy(), layer.bias.numpy())


def test_layer_seeds_reproduce():
    a, b = nn.Conv2d(3, 4, 3, rng=5), nn.Conv2d(3, 4, 3, rng=5)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    assert not np.array_equal(a.weight.numpy(), nn.Conv2d(3, 4, 3, rng=6).weight.numpy())


def test_layer_shapes():
    x = tc.randn(2, 3, 8, 8, rng=0)
    assert nn.Conv2d(3, 6, 3, padding="same", groups=3, rng=0)(x).shape == (2, 6, 8, 8)
    assert nn.Conv2d(3, 6, 3, padding=1, algorithm="fft", rng=0)(x).shape == (2, 6, 8, 8)
    assert nn.ConvTranspose2d(3, 5, 2, stride=2, rng=0)(x).shape == (2, 5, 16, 16)
    assert nn.Conv1d(3, 4, 3, padding=1, rng=0)(tc.randn(2, 3, 9, rng=0)).shape == (2, 4, 9)
    assert nn.MaxPool2d(2)(x).shape == (2, 3, 4, 4)
    assert nn.MaxPool2d(3, stride=2, padding=1)(x).shape == (2, 3, 4, 4)
    assert nn.AvgPool2d(2)(x).shape == (2, 3, 4, 4)
    assert nn.AdaptiveAvgPool2d((3, 5))(x).shape == (2, 3, 3, 5)
    assert nn.GlobalAvgPool2d()(x).shape == (2, 3)


def test_layer_bad_input_names_the_layer():
    conv = nn.Conv2d(3, 8, 5, rng=0)
    with pytest.raises(ValueError, match=r"Conv2d\(3 -> 8.*has 4 channels, expected 3"):
        conv(tc.randn(2, 4, 28, 28))
    with pytest.raises(ValueError, match=r"Conv2d\(3 -> 8.*too small.*H_out = "):
        conv(tc.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="Conv2d: stride must be ≥ 1"):
        nn.Conv2d(3, 8, 3, stride=0)
    with pytest.raises(ValueError, match="Conv2d: padding"):
        nn.Conv2d(3, 8, 3, padding=-1)
    with pytest.raises(ValueError, match="algorithm='fft'"):
        nn.Conv2d(3, 8, 3, stride=2, algorithm="fft")
    with pytest.raises(ValueError, match="Conv1d"):
        nn.Conv1d(3, 4, 3, rng=0)(tc.randn(2, 3, 2))


@pytest.mark.parametrize("make,in_ch,size,k", [
    (lambda c: LeNet5(c, 10, rng=0), 1, 28, 10),
    (lambda c: LeNet5(c, 7, rng=0, activation="tanh", pool="avg"), 3, 28, 7),
    (lambda c: VGG(c, 5, rng=0, widths=(8, 16), depth=1, dropout=0.2), 1, 28, 5),
    (lambda c: ResNet(c, 10, rng=0, widths=(8, 16), blocks=1), 3, 16, 10),
    (lambda c: InceptionNet(c, 4, rng=0, width=8), 1, 16, 4),
])
def test_model_forward_shapes_and_backward(make, in_ch, size, k):
    m = make(in_ch)
    x = tc.randn(3, in_ch, size, size, rng=0)
    y = m(x)
    assert y.shape == (3, k) and y.dtype == np.float32
    y.sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


def test_lenet5_is_the_classic_architecture():
    m = LeNet5(rng=0)
    # conv 1->6 5x5 (156) + conv 6->16 5x5 (2416) + 400·120+120 + 120·84+84 + 84·10+10
    assert m.num_parameters() == 156 + 2416 + 48120 + 10164 + 850


def test_resnet_block_skip_connection_and_downsampling():
    blk = BasicBlock(4, 8, stride=2, rng=0)
    assert isinstance(blk.shortcut, nn.Sequential)  # 1×1 conv + BN on the skip path
    assert blk(tc.randn(2, 4, 8, 8, rng=0)).shape == (2, 8, 4, 4)
    same = BasicBlock(4, 4, rng=0)
    assert isinstance(same.shortcut, nn.Identity)
    # with F ≡ 0 (zero last BN scale) the block is relu(x): the identity path
    same.bn2.weight.data[...] = 0
    x = tc.randn(2, 4, 5, 5, rng=1)
    np.testing.assert_allclose(same(x).numpy(), np.maximum(x.numpy(), 0), atol=1e-6)


def test_inception_block_concatenates_branches():
    blk = InceptionBlock(4, 3, (2, 5), (2, 4), 6, rng=0)
    assert blk(tc.randn(2, 4, 6, 6, rng=0)).shape == (2, 3 + 5 + 4 + 6, 6, 6)


def test_tiny_model_gradcheck_float64():
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=0, dtype=np.float64), nn.Tanh(),
                      nn.MaxPool2d(2), nn.Conv2d(2, 3, 2, rng=1, dtype=np.float64),
                      nn.GlobalAvgPool2d(), nn.Linear(3, 2, rng=2, dtype=np.float64))
    names = [n for n, _ in m.named_parameters()]
    params = [p.numpy().copy() for _, p in m.named_parameters()]
    x = np.random.default_rng(3).standard_normal((2, 1, 6, 6))

    def f(xx, *ps):
        return nn.functional_call(m, dict(zip(names, ps, strict=True)), xx)

    tc.gradcheck(f, x, *params)


def test_lenet5_overfits_a_small_batch():
    from tensorcalc import optim

    rng = np.random.default_rng(0)
    x = tc.tensor(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))
    y = rng.integers(0, 10, 8)
    m = LeNet5(rng=0)
    opt = optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.4 * losses[0]  # 2.3 -> ~0.56 in 20 Adam steps
