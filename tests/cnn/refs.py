"""Direct-loop NumPy references for the window ops (deliberately naive: one output at a time).

Used by the op_db specs (forward vs reference) and by tests/cnn. Argument conventions follow
tensorcalc's functions exactly (same keyword names and defaults).
"""

from __future__ import annotations

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding, kernel=None, dilation=(1, 1)):
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        out = []
        for k, d in zip(kernel, dilation, strict=True):
            t = d * (k - 1)
            out.append((t // 2, t - t // 2))
        return tuple(out)
    if isinstance(padding, int):
        return ((padding, padding),) * 2
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def _out(n, k, s, p, d):
    return (n + p[0] + p[1] - d * (k - 1) - 1) // s + 1


def unfold(x, kernel, stride=1, padding=0, dilation=1):
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    p = _pads(padding, k, d)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0)) + p)
    ho, wo = _out(h, k[0], s[0], p[0], d[0]), _out(w, k[1], s[1], p[1], d[1])
    out = np.zeros((n, ho * wo, k[0] * k[1] * c), dtype=x.dtype)
    for b in range(n):
        for i0 in range(ho):
            for j0 in range(wo):
                for i in range(k[0]):
                    for j in range(k[1]):
                        for ch in range(c):
                            out[b, i0 * wo + j0, (i * k[1] + j) * c + ch] = \
                                xp[b, ch, i0 * s[0] + i * d[0], j0 * s[1] + j * d[1]]
    return out


def fold(cols, output_size, kernel, stride=1, padding=0, dilation=1):
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    p = _pads(padding, k, d)
    h, w = output_size
    n, _, kk = cols.shape
    c = kk // (k[0] * k[1])
    ho, wo = _out(h, k[0], s[0], p[0], d[0]), _out(w, k[1], s[1], p[1], d[1])
    y = np.zeros((n, c, h + p[0][0] + p[0][1], w + p[1][0] + p[1][1]), dtype=cols.dtype)
    for b in range(n):
        for i0 in range(ho):
            for j0 in range(wo):
                for i in range(k[0]):
                    for j in range(k[1]):
                        for ch in range(c):
                            y[b, ch, i0 * s[0] + i * d[0], j0 * s[1] + j * d[1]] += \
                                cols[b, i0 * wo + j0, (i * k[1] + j) * c + ch]
    return y[:, :, p[0][0]:p[0][0] + h, p[1][0]:p[1][0] + w]


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    s, d = _pair(stride), _pair(dilation)
    o, cg, kh, kw = w.shape
    p = _pads(padding, (kh, kw), d)
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0)) + p)
    ho, wo = _out(h, kh, s[0], p[0], d[0]), _out(wd, kw, s[1], p[1], d[1])
    og = o // groups
    y = np.zeros((n, o, ho, wo), dtype=np.result_type(x, w))
    for bi in range(n):
        for oc in range(o):
            g = oc // og
            for i0 in range(ho):
                for j0 in range(wo):
                    acc = 0.0 if b is None else b[oc]
                    for ci in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += xp[bi, g * cg + ci, i0 * s[0] + i * d[0],
                                          j0 * s[1] + j * d[1]] * w[oc, ci, i, j]
                    y[bi, oc, i0, j0] = acc
    return y


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, int):
        padding = (0, padding)
    return conv2d(x[:, :, None, :], w[:, :, None, :], b, (1, stride), padding, (1, dilation),
                  groups)[:, :, 0, :]


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Scatter form: every input pixel adds x·W into its (strided, dilated) output window."""
    s, d, op = _pair(stride), _pair(dilation), _pair(output_padding)
    p = _pads(padding)
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cout, cig = cog * groups, cin // groups
    hout = (h - 1) * s[0] - p[0][0] - p[0][1] + d[0] * (kh - 1) + op[0] + 1
    wout = (wd - 1) * s[1] - p[1][0] - p[1][1] + d[1] * (kw - 1) + op[1] + 1
    y = np.zeros((n, cout, hout + p[0][0] + p[0][1], wout + p[1][0] + p[1][1]))
    for bi in range(n):
        for ci in range(cin):
            g = ci // cig
            for i0 in range(h):
                for j0 in range(wd):
                    for co in range(cog):
                        for i in range(kh):
                            for j in range(kw):
                                y[bi, g * cog + co, i0 * s[0] + i * d[0], j0 * s[1] + j * d[1]] \
                                    += x[bi, ci, i0, j0] * w[ci, co, i, j]
    y = y[:, :, p[0][0]:p[0][0] + hout, p[1][0]:p[1][0] + wout]
    if b is not None:
        y = y + b[:, None, None]
    return y


def _pool(x, kernel_size, stride, padding, dilation, reduce, pad_value):
    k = _pair(kernel_size)
    s = k if stride is None else _pair(stride)
    d = _pair(dilation)
    p = _pads(padding)
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0)) + p, constant_values=pad_value)
    inside = np.pad(np.ones((h, w)), p)
    ho, wo = _out(h, k[0], s[0], p[0], d[0]), _out(w, k[1], s[1], p[1], d[1])
    y = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for i0 in range(ho):
        for j0 in range(wo):
            hs = [i0 * s[0] + i * d[0] for i in range(k[0])]
            ws = [j0 * s[1] + j * d[1] for j in range(k[1])]
            win = xp[:, :, hs][:, :, :, ws]
            y[:, :, i0, j0] = reduce(win, inside[np.ix_(hs, ws)])
    return y


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    return _pool(x, kernel_size, stride, padding, dilation,
                 lambda win, m: win.max(axis=(2, 3)), -np.inf)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    def red(win, m):
        cnt = win.shape[2] * win.shape[3] if count_include_pad else m.sum()
        return win.sum(axis=(2, 3)) / cnt

    return _pool(x, kernel_size, stride, padding, 1, red, 0.0)


def adaptive_avg_pool2d(x, output_size):
    oh, ow = _pair(output_size)
    n, c, h, w = x.shape
    y = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            h0, h1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            w0, w1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


def global_avg_pool2d(x, keepdims=False):
    return x.mean(axis=(2, 3), keepdims=keepdims)


def dft2(x, s):
    """Half-spectrum (Re, Im) of the 2-D DFT by the defining sum (no FFT)."""
    s1, s2 = s
    xp = np.zeros(x.shape[:-2] + (s1, s2))
    xp[..., :x.shape[-2], :x.shape[-1]] = x
    f2 = s2 // 2 + 1
    e1 = np.exp(-2j * np.pi * np.outer(np.arange(s1), np.arange(s1)) / s1)
    e2 = np.exp(-2j * np.pi * np.outer(np.arange(s2), np.arange(f2)) / s2)
    z = np.einsum("kh,...hw,wl->...kl", e1, xp, e2)
    return np.stack([z.real, z.imag], axis=-3)


def idft2(z, s):
    """Inverse of dft2 by the defining sum over the Hermitian-extended spectrum."""
    s1, s2 = s
    f2 = s2 // 2 + 1
    zc = z[..., 0, :, :] + 1j * z[..., 1, :, :]
    m = np.full(f2, 2.0)
    m[0] = 1.0
    if s2 % 2 == 0:
        m[-1] = 1.0
    e1 = np.exp(2j * np.pi * np.outer(np.arange(s1), np.arange(s1)) / s1)
    e2 = np.exp(2j * np.pi * np.outer(np.arange(f2), np.arange(s2)) / s2)
    rows = np.einsum("hk,...kl->...hl", e1, zc)  # complex inverse DFT over axis −2
    # x = Re Σ_l m_l rows_l e^{iθ_l}: interior columns stand for a conjugate pair (m = 2);
    # of the self-conjugate columns only the real part counts (as in numpy's irfft)
    return np.einsum("...hl,l,lw->...hw", rows, m, e2).real / (s1 * s2)
