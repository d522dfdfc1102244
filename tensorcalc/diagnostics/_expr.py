"""A tiny expression language for the backward equations that :mod:`.explain` prints.

One expression tree is rendered three ways — plain Unicode text (terminal), LaTeX and MathML —
and *evaluated* by a small interpreter on NumPy arrays that shares no code with the engine or the
primitives' rules (every function below is written here, from its definition). This is what makes
``explain(...).verify()`` a proof: the equations on the page are the program that is evaluated,
and its results are compared with the engine's gradients.
"""

from __future__ import annotations

import html
import math
import unicodedata

import numpy as np

_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_BAR = "\u0304"


def _shape(s) -> str:
    return "(" + ", ".join(str(int(n)) for n in s) + ("," if len(s) == 1 else "") + ")"


class Sym:
    """A named value: base letter, optional subscript, optional bar (a cotangent)."""

    __slots__ = ("base", "sub", "bar")

    def __init__(self, base: str, sub=None, bar: bool = False):
        self.base, self.sub, self.bar = base, sub, bar

    def barred(self) -> Sym:
        return Sym(self.base, self.sub, True)

    @property
    def key(self) -> str:
        return self.text()

    def text(self) -> str:
        b = unicodedata.normalize("NFC", self.base + (_BAR if self.bar else ""))
        if self.sub is None:
            return b
        s = str(self.sub)
        return b + (s.translate(_SUB) if s.isdigit() else f"[{s}]")

    def latex(self) -> str:
        b = self.base if len(self.base) == 1 else rf"\mathrm{{{self.base}}}"
        if self.bar:
            b = rf"\bar{{{b}}}"
        return b if self.sub is None else f"{b}_{{{_tex_escape(str(self.sub))}}}"

    def mathml(self) -> str:
        b = f"<mi>{html.escape(self.base)}</mi>"
        if self.bar:
            b = f"<mover accent=\"true\">{b}<mo>&#x00AF;</mo></mover>"
        if self.sub is None:
            return b
        return f"<msub>{b}<mn>{html.escape(str(self.sub))}</mn></msub>"


def _tex_escape(s: str) -> str:
    return s.replace("_", r"\_").replace("#", r"\#")


# ------------------------------------------------------------------------------ the tree
class Expr:
    prec = 9

    def text(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def __str__(self):
        return self.text()


class Var(Expr):
    def __init__(self, sym: Sym):
        self.sym = sym

    def text(self):
        return self.sym.text()

    def latex(self):
        return self.sym.latex()

    def mathml(self):
        return self.sym.mathml()

    def eval(self, env):
        return env[self.sym.key]


class Num(Expr):
    def __init__(self, value: float, shown: str | None = None):
        self.value, self.shown = value, shown

    def text(self):
        if self.shown:
            return self.shown
        v = self.value
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    def latex(self):
        if self.shown == "2/√π":
            return r"\tfrac{2}{\sqrt{\pi}}"
        if self.shown == "½":
            return r"\tfrac12"
        return self.text()

    def mathml(self):
        if self.shown == "2/√π":
            return "<mfrac><mn>2</mn><msqrt><mi>π</mi></msqrt></mfrac>"
        if self.shown == "½":
            return "<mfrac><mn>1</mn><mn>2</mn></mfrac>"
        return f"<mn>{html.escape(self.text())}</mn>"

    def eval(self, env):
        return self.value


_BIN = {  # op: (precedence, text, latex, mathml, numpy)
    "+": (1, "+", "+", "+", np.add),
    "−": (1, "−", "-", "−", np.subtract),
    "⊙": (2, "⊙", r"\odot", "⊙", np.multiply),
    "·": (2, "·", r"\cdot", "·", np.multiply),
    "/": (2, "/", "/", "/", np.divide),
    "@": (2, "", "", "", np.matmul),
    "^": (3, "^", "^", "^", np.power),
}


class Bin(Expr):
    def __init__(self, op: str, a: Expr, b: Expr):
        self.op, self.a, self.b = op, a, b
        self.prec = _BIN[op][0]

    def _wrap(self, e, how, right=False):
        s = getattr(e, how)()
        need = e.prec < self.prec or (right and e.prec == self.prec and self.op in "−/")
        if self.op == "^" and not right and e.prec < 9:
            need = True
        if not need:
            return s
        if how == "mathml":
            return f"<mrow><mo>(</mo>{s}<mo>)</mo></mrow>"
        if how == "latex":
            return rf"\left({s}\right)"
        return f"({s})"

    def text(self):
        a, b = self._wrap(self.a, "text"), self._wrap(self.b, "text", True)
        if self.op == "^":
            sup = b.translate(str.maketrans("0123456789−-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻"))
            return f"{a}{sup}" if b.replace("-", "").isdigit() else f"{a}**{b}"
        sep = " " if self.op == "@" else f" {_BIN[self.op][1]} "
        return f"{a}{sep}{b}"

    def latex(self):
        a, b = self._wrap(self.a, "latex"), self._wrap(self.b, "latex", True)
        if self.op == "^":
            return f"{{{a}}}^{{{b}}}"
        if self.op == "/":
            return rf"\frac{{{self.a.latex()}}}{{{self.b.latex()}}}"
        return f"{a} {_BIN[self.op][2]} {b}" if self.op != "@" else f"{a}\\,{b}"

    def mathml(self):
        a, b = self._wrap(self.a, "mathml"), self._wrap(self.b, "mathml", True)
        if self.op == "^":
            return f"<msup><mrow>{a}</mrow><mrow>{self.b.mathml()}</mrow></msup>"
        if self.op == "/":
            return f"<mfrac><mrow>{self.a.mathml()}</mrow><mrow>{self.b.mathml()}</mrow></mfrac>"
        if self.op == "@":
            return f"<mrow>{a}<mo>&#x2062;</mo>{b}</mrow>"
        return f"<mrow>{a}<mo>{_BIN[self.op][3]}</mo>{b}</mrow>"

    def eval(self, env):
        return _BIN[self.op][4](self.a.eval(env), self.b.eval(env))


class Neg(Expr):
    prec = 1

    def __init__(self, a: Expr):
        self.a = a

    def text(self):
        s = self.a.text()
        return f"−({s})" if self.a.prec < 2 else f"−{s}"

    def latex(self):
        s = self.a.latex()
        return rf"-\left({s}\right)" if self.a.prec < 2 else f"-{s}"

    def mathml(self):
        s = self.a.mathml()
        if self.a.prec < 2:
            s = f"<mo>(</mo>{s}<mo>)</mo>"
        return f"<mrow><mo>−</mo>{s}</mrow>"

    def eval(self, env):
        return -self.a.eval(env)


class Tr(Expr):
    """Transpose of the last two axes: aᵀ."""

    def __init__(self, a: Expr):
        self.a = a

    def text(self):
        s = self.a.text()
        return f"({s})ᵀ" if self.a.prec < 9 else f"{s}ᵀ"

    def latex(self):
        return f"{{{self.a.latex()}}}^{{\\top}}"

    def mathml(self):
        return f"<msup><mrow>{self.a.mathml()}</mrow><mi>T</mi></msup>"

    def eval(self, env):
        return np.swapaxes(self.a.eval(env), -1, -2)


class Ind(Expr):
    """Indicator 1[a ∘ b] (1 where the comparison holds, else 0)."""

    _ops = {">": (np.greater, ">", ">"), "<": (np.less, "<", "<"), "=": (np.equal, "=", "=")}

    def __init__(self, a: Expr, op: str, b: Expr):
        self.a, self.op, self.b = a, op, b

    def text(self):
        return f"1[{self.a.text()} {self.op} {self.b.text()}]"

    def latex(self):
        return rf"\mathbb{{1}}[{self.a.latex()} {self.op} {self.b.latex()}]"

    def mathml(self):
        return (f"<mrow><mn>𝟙</mn><mo>[</mo>{self.a.mathml()}<mo>{html.escape(self.op)}</mo>"
                f"{self.b.mathml()}<mo>]</mo></mrow>")

    def eval(self, env):
        a, b = self.a.eval(env), self.b.eval(env)
        dt = a.dtype if isinstance(a, np.ndarray) else np.asarray(b).dtype
        return self._ops[self.op][0](a, b).astype(dt)


class Fn(Expr):
    """A named function of expressions with keyword parameters (axes, shapes, indices).
    ``show`` lists the parameters printed (the others, e.g. an index array, still evaluate)."""

    def __init__(self, name: str, args, params=None, show=None):
        self.name, self.args, self.params = name, list(args), dict(params or {})
        self.show = list(self.params) if show is None else list(show)

    def _ptext(self):
        out = []
        for k in self.show:
            v = self.params[k]
            if isinstance(v, tuple) and all(isinstance(n, (int, np.integer)) for n in v):
                v = _shape(v)
            out.append(f"{k}={v}")
        return out

    def text(self):
        return f"{self.name}(" + ", ".join([a.text() for a in self.args] + self._ptext()) + ")"

    def latex(self):
        inner = ", ".join([a.latex() for a in self.args]
                          + [_tex_escape(p) for p in self._ptext()])
        return rf"\operatorname{{{_tex_escape(self.name)}}}\left({inner}\right)"

    def mathml(self):
        parts = [a.mathml() for a in self.args]
        parts += [f"<mtext>{html.escape(p)}</mtext>" for p in self._ptext()]
        return (f"<mrow><mi mathvariant=\"normal\">{html.escape(self.name)}</mi><mo>(</mo>"
                + "<mo>,</mo>".join(parts) + "<mo>)</mo></mrow>")

    def eval(self, env):
        return FUNCS[self.name](*[a.eval(env) for a in self.args], **self.params)


# ------------------------------------------------------------------------------ the interpreter
# Each function from its definition, in NumPy only (no tensorcalc code).
def _sum_to(g, shape):
    g = np.asarray(g)
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                      if n == 1 and g.shape[i + lead] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def _spread(g, axis, shape):
    """ȳ of a reduction over ``axis`` broadcast back to the input's ``shape``."""
    g = np.asarray(g)
    if g.ndim != len(shape):
        g = g.reshape(tuple(1 if i in axis else n for i, n in enumerate(shape)))
    return np.broadcast_to(g, shape)


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _lse(z, axis):
    m = z.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def _tie_share(x, y, axis):
    m = (x == y).astype(x.dtype)
    return m / m.sum(axis=axis, keepdims=True)


def _fold(cols, size, kernel, stride, padding, dilation):
    """The adjoint of _unfold: add every window row back onto the (padded) image."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    (p0, p1), (q0, q1) = padding
    n, c, h, w = size
    hp, wp = h + p0 + p1, w + q0 + q1
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    img = np.zeros((n, c, hp, wp), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            k = (i * kw + j) * c
            block = cols[:, :, k:k + c].reshape(n, ho, wo, c).transpose(0, 3, 1, 2)
            img[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                j * dw:j * dw + sw * (wo - 1) + 1:sw] += block
    return img[:, :, p0:p0 + h, q0:q0 + w]


def _unfold(x, kernel, stride, padding, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    (p0, p1), (q0, q1) = padding
    xp = np.pad(x, ((0, 0), (0, 0), (p0, p1), (q0, q1)))
    n, c, hp, wp = xp.shape
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, ho * wo, kh * kw * c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            k = (i * kw + j) * c
            patch = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                       j * dw:j * dw + sw * (wo - 1) + 1:sw]
            out[:, :, k:k + c] = patch.transpose(0, 2, 3, 1).reshape(n, ho * wo, c)
    return out


def _conv_transpose(g, w, size, stride, padding, dilation):
    """x̄ of conv2d (the transposed convolution): fold(ȳ_rows W_matᵀ), W_mat = W as (K, O)."""
    o, c, kh, kw = w.shape
    n, _, ho, wo = g.shape
    rows = np.transpose(g, (0, 2, 3, 1)).reshape(-1, o)
    wmat = np.transpose(w, (2, 3, 1, 0)).reshape(kh * kw * c, o)
    cols = (rows @ wmat.T).reshape(n, ho * wo, kh * kw * c)
    return _fold(cols, size, (kh, kw), stride, padding, dilation)


def _conv_wgrad(x, g, kernel, stride, padding, dilation):
    """W̄ of conv2d: unfold(x)ᵀ ȳ_rows, as (O, C, kh, kw)."""
    cols = _unfold(x, kernel, stride, padding, dilation)
    o, c = g.shape[1], x.shape[1]
    rows = np.transpose(g, (0, 2, 3, 1)).reshape(-1, o)
    gm = cols.reshape(-1, cols.shape[2]).T @ rows
    return np.transpose(gm.reshape(kernel[0], kernel[1], c, o), (3, 2, 0, 1))


def _pool_route(g, x, y, kernel, stride, padding, dilation):
    """x̄ of max pooling: each window's ȳ shared equally among its maxima, added back."""
    (p0, p1), (q0, q1) = padding
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p0, p1), (q0, q1)), constant_values=-np.inf)
    none = ((0, 0), (0, 0))
    cols = _unfold(xp, kernel, stride, none, dilation)
    L, kk = cols.shape[1], kernel[0] * kernel[1]
    cols = cols.reshape(n, L, kk, c)
    yr = np.transpose(y, (0, 2, 3, 1)).reshape(n, L, 1, c)
    gr = np.transpose(g, (0, 2, 3, 1)).reshape(n, L, 1, c)
    m = cols == yr
    back = (m * (gr / m.sum(axis=2, keepdims=True))).reshape(n, L, kk * c)
    img = _fold(back, xp.shape, kernel, stride, none, dilation)
    return img[:, :, p0:p0 + h, q0:q0 + w]


def _scatter_add(g, index, shape):
    out = np.zeros(shape, dtype=np.asarray(g).dtype)
    np.add.at(out, index, g)
    return out


def _slice_along(g, axis, start, stop):
    idx = [slice(None)] * np.ndim(g)
    idx[axis] = slice(start, stop)
    return g[tuple(idx)]


def _index_along(g, axis, i):
    return np.take(g, i, axis=axis)


def _take_back(g, indices, axis, shape):
    out = np.zeros(shape, dtype=g.dtype)
    idx = [slice(None)] * len(shape)
    idx[axis] = indices
    np.add.at(out, tuple(idx), g)
    return out


def _crop(g, pad):
    return g[tuple(slice(b, g.shape[i] - a) for i, (b, a) in enumerate(pad))]


def _rows(a, n):
    return np.reshape(a, (-1, n))


def _sigmoid(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) /
                    (1 + np.exp(-np.abs(x))))


FUNCS = {
    "sum_to": lambda g, shape: _sum_to(g, shape),
    "broadcast_to": lambda g, shape, axis=None: (_spread(g, axis, shape) if axis is not None
                                                 else np.broadcast_to(g, shape)),
    "reshape": lambda g, shape: np.reshape(g, shape),
    "transpose": lambda g, axes: np.transpose(g, axes),
    "expand_dims": lambda g, axis: np.expand_dims(g, axis),
    "squeeze": lambda g, axis: np.squeeze(g, axis),
    "flip": lambda g, axis: np.flip(g, axis),
    "cast": lambda g, dtype: np.asarray(g).astype(dtype),
    "sum": lambda g, axis, keepdims=False: np.sum(g, axis=axis, keepdims=keepdims),
    "rows": lambda a, n: _rows(a, n),
    "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "sign": np.sign,
    "σ": _sigmoid,
    "Φ": lambda x: __import__("scipy.special").special.ndtr(x),  # the normal CDF (GELU′)
    "softmax": lambda z, axis: _softmax(z, axis),
    "lse": lambda z, axis: _lse(z, axis),
    "ties": lambda x, y, axis: _tie_share(x, y, axis),
    "fold": lambda g, **kw: _fold(g, **kw),
    "unfold": lambda g, **kw: _unfold(g, **kw),
    "conv_transpose": lambda g, w, **kw: _conv_transpose(g, w, **kw),
    "conv_wgrad": lambda x, g, **kw: _conv_wgrad(x, g, **kw),
    "pool_route": lambda g, x, y, **kw: _pool_route(g, x, y, **kw),
    "scatter_add": lambda g, index, shape: _scatter_add(g, index, shape),
    "gather": lambda g, index: np.asarray(g)[index],
    "take_back": lambda g, indices, axis, shape: _take_back(g, indices, axis, shape),
    "slice": lambda g, axis, start, stop: _slice_along(g, axis, start, stop),
    "index": lambda g, axis, i: _index_along(g, axis, i),
    "crop": lambda g, pad: _crop(g, pad),
    "select": lambda g, mask, keep: np.where(mask if keep else ~np.asarray(mask, bool), g, 0),
    "solve": lambda a, b: np.linalg.solve(a, b),
}

PI = math.pi
