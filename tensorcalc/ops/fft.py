"""Real 2-D discrete Fourier transforms as real-linear primitives (real arithmetic only).

Complex numbers never enter the graph: a half spectrum is stored as a real array with a
(real, imaginary) axis, z[..., 0, :, :] = Re Z and z[..., 1, :, :] = Im Z, of shape
(..., 2, S₁, S₂//2 + 1). With F the 2-D DFT of size S = (S₁, S₂),
(F x)[k] = Σₙ x[n] e^{−2πi⟨k, n/S⟩}:

* rfft2:  x (..., H, W), H ≤ S₁, W ≤ S₂ (zero-padded to S)  ->  z = (Re, Im) of (F x)[:, :S₂//2+1]
* irfft2: z -> x = F⁻¹ Z (..., S₁, S₂), Z extended to the full spectrum by Hermitian symmetry
  (in columns 0 and S₂/2 only the part Hermitian along k₁ is used, as numpy does: the
  imaginary part is dropped outright only at the four self-conjugate points; see
  docs/math/convolution.md).

The adjoints, as maps between real vector spaces with the Euclidean inner product, carry the
*Hermitian weights* m[k₂] = 1 on the columns k₂ = 0 and k₂ = S₂/2 (S₂ even) and 2 on the other
columns, because an interior column of the half spectrum stands for two conjugate columns of the
full one:

    rfft2ᵀ(z̄)  = crop( S₁S₂ · irfft2(z̄ / m) )         irfft2ᵀ(x̄) = (m / S₁S₂) ⊙ rfft2(x̄)

(derivation: ⟨x̄, irfft2 Z⟩ = (1/S₁S₂) Σ_k m_k Re(Z_k · conj((F x̄)_k)) for real x̄).
"""

from __future__ import annotations

from ..autodiff.function import Linear, primitive
from ._util import data_of, public, shape_of


def _column_weights(g, s2, edge, interior):
    """A constant over the last axis (S₂//2 + 1): ``edge`` on the self-conjugate columns 0 and
    S₂/2 (S₂ even), ``interior`` elsewhere; in g's array module and dtype."""
    from ..backend import xp_of

    d = data_of(g)
    w = xp_of((d,)).full(s2 // 2 + 1, interior, dtype=d.dtype)
    w[0] = edge
    if s2 % 2 == 0:
        w[-1] = edge
    return w


@primitive
class Rfft2(Linear):
    """Real 2-D FFT over the last two axes, zero-padded to size s, as (Re, Im) on a new axis −3.

    Forward:  z = (Re, Im) of (F x)[k₁, k₂],  0 ≤ k₂ ≤ S₂/2   (F the size-S 2-D DFT)
    VJP:      x̄ = crop_{x.shape}( S₁S₂ · irfft2(z̄ / m) ),  m = 1 on columns 0 and S₂/2, else 2
    JVP:      ż = rfft2(ẋ)
    """

    @staticmethod
    def forward(xp, x, *, s):
        z = xp.fft.rfft2(x, s=s, axes=(-2, -1))
        return xp.stack([z.real, z.imag], axis=-3)

    @staticmethod
    def vjp(g, y, x, *, needs, s):
        from .indexing import getitem

        s1, s2 = s
        gx = Irfft2.apply(g * _column_weights(g, s2, 1.0 * s1 * s2, 0.5 * s1 * s2), s=s)
        h, w = shape_of(x)[-2:]
        if (h, w) != (s1, s2):
            gx = getitem(gx, (Ellipsis, slice(0, h), slice(0, w)))
        return (gx,)


@public
def rfft2(x, s=None):
    """Half spectrum of the 2-D DFT of real x (..., H, W) zero-padded to ``s`` (default (H, W)),
    as a real array (..., 2, S₁, S₂//2 + 1) holding (Re, Im)."""
    sh = shape_of(x)
    if len(sh) < 2:
        raise ValueError(f"rfft2: needs at least 2 axes, got shape {sh}")
    s = tuple(sh[-2:]) if s is None else tuple(int(v) for v in s)
    if len(s) != 2 or s[0] < sh[-2] or s[1] < sh[-1]:
        raise ValueError(f"rfft2: size s={s} must be ≥ the last two axes of x {sh[-2:]}")
    return Rfft2.apply(x, s=s)


@primitive
class Irfft2(Linear):
    """Inverse real 2-D FFT of a (Re, Im) half spectrum (axis −3) to a real (S₁, S₂) signal.

    Forward:  x = F⁻¹ Z,  Z = z[..., 0] + i z[..., 1] extended by Hermitian symmetry
    VJP:      z̄ = (m / S₁S₂) ⊙ rfft2(x̄),  m = 1 on columns 0 and S₂/2, else 2
    JVP:      ẋ = irfft2(ż)
    """

    @staticmethod
    def forward(xp, z, *, s):
        zc = z[..., 0, :, :] + 1j * z[..., 1, :, :]
        return xp.fft.irfft2(zc, s=s, axes=(-2, -1))

    @staticmethod
    def vjp(g, y, z, *, needs, s):
        s1, s2 = s
        return (Rfft2.apply(g, s=s) * _column_weights(g, s2, 1.0 / (s1 * s2), 2.0 / (s1 * s2)),)


@public
def irfft2(z, s):
    """Real signal (..., S₁, S₂) from a (Re, Im) half spectrum z (..., 2, S₁, S₂//2 + 1)."""
    sh = shape_of(z)
    s = tuple(int(v) for v in s)
    if len(sh) < 3 or sh[-3] != 2 or sh[-2] != s[0] or sh[-1] != s[1] // 2 + 1:
        raise ValueError(
            f"irfft2: expected z of shape (..., 2, {s[0]}, {s[1] // 2 + 1}) for s={s}, got {sh}"
        )
    return Irfft2.apply(z, s=s)
