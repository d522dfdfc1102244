"""Data augmentation for image batches: label-preserving random transforms, composable, seeded.

Every transform works batch-wise on a NumPy array (N, C, H, W) or (N, H, W) (a Tensor is
accepted and a Tensor returned), draws one independent random parameter set per image, and
keeps the dtype. Randomness is explicit: each transform holds a ``numpy.random.Generator``
(``rng``: Generator or int seed), and a call may pass ``rng=`` to use another one. Called as
``t(x)`` it returns the augmented batch; ``t(x, y)`` returns ``(x_aug, y)`` with the labels
untouched (the transforms are label-preserving by construction: small crops, flips, affine
maps, noise and occlusions that do not change what the image shows).

>>> aug = Compose([RandomCrop(28, padding=2), RandomAffine(10, translate=0.1)], rng=0)
>>> xb_aug, yb = aug(xb, yb)
"""

from __future__ import annotations

import numpy as np

from ..backend import as_rng


def _as_nchw(x):
    """(array (N, C, H, W), undo) — accepts (N, H, W) and Tensors; undo restores the form."""
    from ..tensor import Tensor

    is_t = isinstance(x, Tensor)
    a = x.numpy() if is_t else np.asarray(x)
    if a.ndim not in (3, 4):
        raise ValueError(f"augment: expected a batch of shape (N, C, H, W) or (N, H, W), got "
                         f"{a.shape}")
    three = a.ndim == 3
    a4 = a[:, None] if three else a

    def undo(b):
        b = b[:, 0] if three else b
        return Tensor(b) if is_t else b

    return a4, undo


def _cast(b, dtype):
    """Back to the input dtype (rounded and clipped for integer images)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(b), info.min, info.max).astype(dtype)
    return b.astype(dtype, copy=False)


class Transform:
    """Base class: holds ``self.rng``; subclasses implement ``_apply(x4, rng)`` on (N, C, H, W)."""

    def __init__(self, rng=None):
        self.rng = as_rng(rng)

    def __call__(self, x, y=None, rng=None):
        r = self.rng if rng is None else as_rng(rng)
        a4, undo = _as_nchw(x)
        out = undo(_cast(self._apply(a4, r), a4.dtype))
        return out if y is None else (out, y)

    def _apply(self, x, rng):  # pragma: no cover - abstract
        raise NotImplementedError  # abstract: subclasses define it

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "rng")
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order. With ``rng`` given (here or per call) every transform draws from
    that one generator (one seed reproduces the whole pipeline); otherwise each uses its own."""

    def __init__(self, transforms, rng=None):
        self.transforms = list(transforms)
        self.rng = None if rng is None else as_rng(rng)

    def __call__(self, x, y=None, rng=None):
        r = rng if rng is not None else self.rng
        for t in self.transforms:
            x = t(x, rng=r)
        return x if y is None else (x, y)


class RandomCrop(Transform):
    """Pad every side by ``padding`` (with ``fill``), then cut a random (size × size) window:
    a translation by up to ±padding pixels when size = H. Offsets (i, j) ~ U{0..H+2p−size}."""

    def __init__(self, size, padding=0, fill=0.0, rng=None):
        super().__init__(rng)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.padding, self.fill = int(padding), fill

    def _apply(self, x, rng):
        n, c, h, w = x.shape
        p, (sh, sw) = self.padding, self.size
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        hp, wp = h + 2 * p, w + 2 * p
        if sh > hp or sw > wp:
            raise ValueError(f"RandomCrop: size {self.size} is larger than the padded image "
                             f"({hp}, {wp})")
        i = rng.integers(0, hp - sh + 1, n)
        j = rng.integers(0, wp - sw + 1, n)
        v = np.lib.stride_tricks.sliding_window_view(x, (sh, sw), axis=(2, 3))
        return np.ascontiguousarray(v[np.arange(n), :, i, j])  # (N, C, sh, sw)


class RandomHorizontalFlip(Transform):
    """Mirror each image left–right with probability p: x[..., w] ← x[..., W − 1 − w]."""

    def __init__(self, p=0.5, rng=None):
        super().__init__(rng)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def _apply(self, x, rng):
        flip = rng.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class RandomAffine(Transform):
    """Random rotation, translation and scaling about the image centre c:

        x_out(p) = x_in(c + S⁻¹ R(−θ)(p − c − t))   (inverse warp, sampled at p_in)

    θ ~ U(−degrees, degrees) (or U(lo, hi) for a pair; positive θ turns the image
    counter-clockwise as displayed with row 0 at the top), t = (t_y, t_x) with
    t_y ~ U(−translate·H, translate·H),
    s ~ U(scale) (isotropic). ``order`` 1 = bilinear, 0 = nearest (scipy.ndimage); pixels
    mapped from outside the image get ``fill``.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, order=1, fill=0.0, rng=None):
        super().__init__(rng)
        lo_hi = (-float(degrees), float(degrees)) if np.isscalar(degrees) else tuple(degrees)
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
            raise ValueError(f"RandomAffine: degrees must be a number or a (lo, hi) range, got "
                             f"{degrees!r}")
        self.degrees = lo_hi
        self.translate = translate
        self.scale = scale
        if order not in (0, 1):
            raise ValueError(f"RandomAffine: order must be 0 (nearest) or 1 (bilinear), got "
                             f"{order}")
        self.order, self.fill = order, fill

    def _apply(self, x, rng):
        from scipy.ndimage import map_coordinates

        n, c, h, w = x.shape
        theta = np.deg2rad(rng.uniform(*self.degrees, n))
        if self.translate:
            tr = self.translate
            ty = rng.uniform(-tr, tr, n) * h
            tx = rng.uniform(-tr, tr, n) * w
        else:
            ty = tx = np.zeros(n)
        s = rng.uniform(*self.scale, n) if self.scale else np.ones(n)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
        dy = yy[None] - cy - ty[:, None, None]
        dx = xx[None] - cx - tx[:, None, None]
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        inv_s = (1.0 / s)[:, None, None]
        src_y = cy + inv_s * (cos * dy + sin * dx)  # R(−θ) applied to (dy, dx)
        src_x = cx + inv_s * (-sin * dy + cos * dx)
        flat = x.reshape(n * c, h, w).astype(np.float64, copy=False)
        k = np.repeat(np.arange(n * c, dtype=np.float64), h * w).reshape(n * c, h, w)
        coords = np.stack([k, np.repeat(src_y, c, axis=0), np.repeat(src_x, c, axis=0)])
        out = map_coordinates(flat, coords, order=self.order, mode="constant", cval=self.fill)
        return out.reshape(n, c, h, w)


class GaussianNoise(Transform):
    """Additive noise x + σ·ε, ε ~ N(0, 1) per pixel; optionally clipped to ``clip`` = (lo, hi)."""

    def __init__(self, std=0.1, clip=None, rng=None):
        super().__init__(rng)
        if std < 0:
            raise ValueError(f"GaussianNoise: std must be ≥ 0, got {std}")
        self.std, self.clip = std, clip

    def _apply(self, x, rng):
        out = x + self.std * rng.standard_normal(x.shape)
        if self.clip is not None:
            out = np.clip(out, *self.clip)
        return out


class Cutout(Transform):
    """Occlude one random (size × size) square per image with ``fill`` (DeVries & Taylor, 2017);
    the centre is uniform over the image, so the square may be cut off at the border."""

    def __init__(self, size, fill=0.0, rng=None):
        super().__init__(rng)
        if size < 1:
            raise ValueError(f"Cutout: size must be ≥ 1, got {size}")
        self.size, self.fill = int(size), fill

    def _apply(self, x, rng):
        n, c, h, w = x.shape
        cy = rng.integers(0, h, n)
        cx = rng.integers(0, w, n)
        y0, x0 = cy - self.size // 2, cx - self.size // 2
        rows = np.arange(h)[None, :]
        cols = np.arange(w)[None, :]
        mr = (rows >= y0[:, None]) & (rows < y0[:, None] + self.size)  # (N, H)
        mc = (cols >= x0[:, None]) & (cols < x0[:, None] + self.size)  # (N, W)
        mask = mr[:, None, :, None] & mc[:, None, None, :]
        return np.where(mask, np.asarray(self.fill, dtype=x.dtype), x)


__all__ = ["Transform", "Compose", "RandomCrop", "RandomHorizontalFlip", "RandomAffine",
           "GaussianNoise", "Cutout"]
