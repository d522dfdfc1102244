"""FFT convolution = direct convolution (the convolution theorem), values and gradients."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.ops import irfft2, rfft2

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("k", [(1, 1), (2, 3), (3, 3), (5, 5), (7, 4)])
@pytest.mark.parametrize("padding", [0, 1, (2, 0), "same"])
def test_fft_conv_equals_direct_conv_float64(k, padding):
    x = RNG.standard_normal((2, 3, 9, 8))
    w = RNG.standard_normal((4, 3) + k)
    b = RNG.standard_normal(4)
    direct = F.conv2d(tc.tensor(x), tc.tensor(w), tc.tensor(b), padding=padding).numpy()
    fft = F.conv2d_fft(tc.tensor(x), tc.tensor(w), tc.tensor(b), padding=padding).numpy()
    assert fft.shape == direct.shape
    np.testing.assert_allclose(fft, direct, rtol=0, atol=1e-10 * np.abs(direct).max())


def test_fft_conv_gradients_equal_direct_conv_gradients():
    x, w = RNG.standard_normal((2, 3, 7, 6)), RNG.standard_normal((4, 3, 3, 2))
    g = RNG.standard_normal((2, 4, 7, 6))
    grads = []
    for f in (F.conv2d, F.conv2d_fft):
        xt, wt = tc.tensor(x, requires_grad=True), tc.tensor(w, requires_grad=True)
        (f(xt, wt, padding="same") * tc.tensor(g)).sum().backward()
        grads.append((xt.grad.numpy(), wt.grad.numpy()))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_fft_conv_gradcheck_and_second_order():
    x, w = RNG.standard_normal((1, 2, 5, 5)), RNG.standard_normal((2, 2, 3, 3))
    tc.gradcheck(lambda a, c: F.conv2d_fft(a, c, padding=1), x, w)
    tc.gradgradcheck(lambda a, c: F.conv2d_fft(a, c, padding=1), x, w)


def test_fft_conv_float32():
    x, w = tc.randn(2, 3, 8, 8, rng=0), tc.randn(4, 3, 3, 3, rng=1)
    y = F.conv2d_fft(x, w, padding=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), F.conv2d(x, w, padding=1).numpy(), atol=1e-4)


@pytest.mark.parametrize("s", [(4, 6), (5, 7), (6, 5)])
def test_rfft2_irfft2_round_trip_and_adjoint_weights(s):
    x = RNG.standard_normal((2, 3) + s)
    z = rfft2(tc.tensor(x))
    np.testing.assert_allclose(irfft2(z, s).numpy(), x, atol=1e-12)
    # ⟨rfft2 x, u⟩ = ⟨x, rfft2ᵀ u⟩ with the Hermitian column weights of the docstring
    u = RNG.standard_normal(z.shape)
    _, back = tc.vjp(lambda t: rfft2(t), tc.tensor(x))
    lhs = (z.numpy() * u).sum()
    rhs = (x * back(tc.tensor(u))[0].numpy()).sum()
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_fft_conv_bad_input():
    with pytest.raises(ValueError, match="conv2d_fft"):
        F.conv2d_fft(tc.randn(1, 2, 4, 4), tc.randn(3, 3, 3, 3))
    with pytest.raises(ValueError, match="conv2d_fft: input .* too small"):
        F.conv2d_fft(tc.randn(1, 2, 2, 2), tc.randn(3, 2, 3, 3))
    with pytest.raises(ValueError, match="rfft2"):
        rfft2(tc.randn(4, 4), s=(3, 4))
