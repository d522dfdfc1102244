"""Convolution (composites only: every derivative comes from the primitives).

Convention (as in every deep-learning library): "convolution" is the cross-correlation

    y[n, o, h, w] = b[o] + Σ_{c, i, j} x_pad[n, c, h·s₁ + i·d₁, w·s₂ + j·d₂] · W[o, c, i, j]

with output size per axis  H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1.

Algorithm: one group is the ``conv2d`` primitive of ``ops/windows.py``: ``cols = unfold(x)``
(N, L, kh·kw·C), channels fastest, then ``Y = cols.reshape(N·L, K) @ W`` with W rearranged to
(kh·kw·C, O); the product is the output in channels-last memory and the returned
(N, O, H_out, W_out) tensor is a transposed view of it. Reverse mode: W̄ = colsᵀ Ȳ and
x̄ = fold(Ȳ Wᵀ) — on arrays computed without the (N·L, K) cotangent (per kernel offset, see the
primitive). Groups split C and O into G blocks: unfold + a batched matmul over the G blocks.
Input dtypes: x of another dtype is cast to the weight's, complex x is rejected (the policy of
every layer family, ``functional._dtypes``).
"""

from __future__ import annotations

from .. import ops
from ..ops._util import shape_of
from ..ops.windows import Conv2d, Fold, Unfold, norm_padding, pair, window_geometry
from ._dtypes import operand


def _check_conv(who, xs, ws, groups, bs, transposed=False):
    if len(xs) != 4:
        raise ValueError(f"{who}: expected input of shape (N, C, H, W), got {tuple(xs)}")
    if len(ws) != 4:
        kind = "(C_in, C_out/groups, kh, kw)" if transposed else "(C_out, C_in/groups, kh, kw)"
        raise ValueError(f"{who}: expected a weight of shape {kind}, got {tuple(ws)}")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{who}: groups must be a positive int, got {groups!r}")
    c = xs[1]
    if transposed:
        cin, cout = ws[0], ws[1] * groups
        if c != cin:
            raise ValueError(
                f"{who}: input has {c} channels but the weight {tuple(ws)} expects C_in = {cin} "
                f"(input {tuple(xs)})"
            )
    else:
        cout, cin = ws[0], ws[1] * groups
        if c != cin:
            raise ValueError(
                f"{who}: input {tuple(xs)} has C = {c} channels but the weight {tuple(ws)} "
                f"with groups={groups} expects C = weight.shape[1]·groups = {cin}"
            )
    if c % groups or cout % groups:
        raise ValueError(f"{who}: groups={groups} must divide C_in = {c} and C_out = {cout}")
    if bs is not None and tuple(bs) != (cout,):
        raise ValueError(f"{who}: bias must have shape ({cout},), got {tuple(bs)}")
    return cout


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with W (O, C/groups, kh, kw):

        y[n,o,h,w] = b[o] + Σ_{c ∈ group(o), i, j} x_pad[n, c, h·s₁ + i·d₁, w·s₂ + j·d₂]·W[o,c,i,j]
        (H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1)

    ``padding``: int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (stride 1:
    H_out = H, also for even kernels, the odd pad unit at the end). ``groups`` = G splits the
    channels into G independent convolutions (G = C: depthwise). Computed as unfold + one GEMM
    (batched over G).
    """
    xs, ws = shape_of(x), shape_of(w)
    o = _check_conv("conv2d", xs, ws, groups, None if b is None else shape_of(b))
    x = operand(x, w, "conv2d")
    if isinstance(padding, str) and padding == "same" and stride not in (1, (1, 1)):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride {stride}")
    k, s, p, d, (ho, wo) = window_geometry("conv2d", xs, ws[2:], stride, padding, dilation)
    n, c = xs[0], xs[1]
    if groups == 1:  # the convolution primitive (ops/windows.py): unfold + one GEMM
        bias = () if b is None else (b,)  # a missing bias is no operand (as in affine)
        return Conv2d.apply(x, w, *bias, stride=s, padding=p, dilation=d)
    cols = Unfold.apply(x, kernel=k, stride=s, padding=p, dilation=d)  # (N, L, kh·kw·C)
    nl, kk = n * ho * wo, k[0] * k[1]
    g, cg, og = groups, c // groups, o // groups
    cg_cols = ops.transpose(ops.reshape(cols, (nl, kk, g, cg)), (2, 0, 1, 3))
    cg_cols = ops.reshape(cg_cols, (g, nl, kk * cg))
    wg = ops.transpose(ops.reshape(w, (g, og, cg, k[0], k[1])), (0, 3, 4, 2, 1))
    wg = ops.reshape(wg, (g, kk * cg, og))
    y = ops.reshape(ops.transpose(ops.matmul(cg_cols, wg), (1, 0, 2)), (nl, o))
    if b is not None:
        y = y + b
    return ops.transpose(ops.reshape(y, (n, ho, wo, o)), (0, 3, 1, 2))


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of x (N, C, L) with W (O, C/groups, k): conv2d on (N, C, 1, L).

    y[n, o, t] = b[o] + Σ_{c, j} x_pad[n, c, t·s + j·d] W[o, c, j],
    L_out = ⌊(L + 2p − d(k−1) − 1)/s⌋ + 1.
    """
    xs, ws = shape_of(x), shape_of(w)
    if len(xs) != 3:
        raise ValueError(f"conv1d: expected input of shape (N, C, L), got {tuple(xs)}")
    if len(ws) != 3:
        raise ValueError(
            f"conv1d: expected a weight of shape (C_out, C_in/groups, k), got {tuple(ws)}")
    x = operand(x, w, "conv1d")

    def one(v, name):
        if isinstance(v, (tuple, list)):
            if len(v) != 1:
                raise ValueError(f"conv1d: {name} must be an int or a 1-tuple, got {v!r}")
            v = v[0]
        return v

    stride, dilation = one(stride, "stride"), one(dilation, "dilation")
    if isinstance(padding, str):
        pad2 = padding
    else:
        pad2 = (0, one(padding, "padding"))
    try:
        y = conv2d(ops.expand_dims(x, 2), ops.expand_dims(w, 2), b, (1, stride), pad2,
                   (1, dilation), groups)
    except ValueError as e:
        raise ValueError(str(e).replace("conv2d", "conv1d", 1)) from None
    return ops.squeeze(y, 2)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution: the adjoint of conv2d(·, W) with respect to its input.

    x (N, C_in, H, W), W (C_in, C_out/groups, kh, kw) -> y (N, C_out, H_out, W_out) with
    H_out = (H − 1)s − 2p + d(k − 1) + output_padding + 1, and
    ⟨y, z⟩ = ⟨x, conv2d(z, W)⟩ for every z (bias aside): y = fold(x_rows · W) + b.
    ``output_padding`` (< stride) adds rows/columns at the end, to pick one of the
    input sizes a strided conv maps to the same output size.
    """
    xs, ws = shape_of(x), shape_of(w)
    o = _check_conv("conv_transpose2d", xs, ws, groups, None if b is None else shape_of(b),
                    transposed=True)
    x = operand(x, w, "conv_transpose2d")
    who = "conv_transpose2d"
    if isinstance(padding, str):
        raise ValueError(f"{who}: padding must be an int or pairs, got {padding!r}")
    k, s, d = tuple(ws[2:]), pair(stride, "stride", who, 1), pair(dilation, "dilation", who, 1)
    p = norm_padding(padding, who)
    op = (output_padding, output_padding) if isinstance(output_padding, int) \
        else tuple(output_padding)
    # PyTorch allows output_padding < max(stride, dilation); the col2im here (fold) supports
    # only < stride, so that is the rule (a larger value would otherwise fail deep inside fold).
    if len(op) != 2 or any(a < 0 or a >= si for a, si in zip(op, s, strict=True)):
        raise ValueError(
            f"{who}: output_padding {output_padding!r} must be ≥ 0 and < stride = {tuple(s)}"
        )
    n, cin, h, wd = xs
    size = tuple((hi - 1) * si - (pi[0] + pi[1]) + di * (ki - 1) + opi + 1
                 for hi, si, pi, di, ki, opi in zip((h, wd), s, p, d, k, op, strict=True))
    if min(size) < 1:
        raise ValueError(
            f"{who}: output size H_out = (H − 1)s − 2p + d(k − 1) + output_padding + 1 = {size} "
            f"is not positive for input {tuple(xs)}, weight {tuple(ws)}, stride {s}, padding {p}"
        )
    kk, nl = k[0] * k[1], n * h * wd
    rows = ops.transpose(x, (0, 2, 3, 1))  # (N, H, W, C_in)
    if groups == 1:
        wm = ops.reshape(ops.transpose(w, (0, 2, 3, 1)), (cin, kk * o))  # cols (i, j, c_out)
        cols = ops.matmul(ops.reshape(rows, (nl, cin)), wm)
    else:
        g, cg, og = groups, cin // groups, o // groups
        r = ops.transpose(ops.reshape(rows, (nl, g, cg)), (1, 0, 2))  # (G, N·H·W, C_in/G)
        wg = ops.reshape(ops.transpose(ops.reshape(w, (g, cg, og, k[0], k[1])), (0, 1, 3, 4, 2)),
                         (g, cg, kk * og))
        cols = ops.reshape(ops.matmul(r, wg), (g, nl, kk, og))
        cols = ops.transpose(cols, (1, 2, 0, 3))  # (N·H·W, kh·kw, G, C_out/G)
    cols = ops.reshape(cols, (n, h * wd, kk * o))
    y = Fold.apply(cols, size=size, kernel=k, stride=s, padding=p, dilation=d)
    if b is not None:
        y = y + ops.reshape(b, (o, 1, 1))
    return y

