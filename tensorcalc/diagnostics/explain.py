"""Explain: the mathematics of a model made visible, and checked.

``tc.explain(model_or_fn, *example_inputs, loss_fn=None)`` records one forward pass and returns an
:class:`Explanation`:

* ``str(e)`` / ``e.text()`` — the forward program in the model's own terms (module paths, shapes,
  dtypes, parameter counts), then the backward program in the order the engine runs it (reverse
  creation order), each step the op's VJP instantiated with this graph's names and shapes::

      ā₁ = z̄₂ W₂                        (2, 256)      [layers.2]
      z̄₁ = ā₁ ⊙ 1[z₁ > 0]               (2, 256)      [layers.1]

  and a summary: FLOPs forward and backward, bytes of saved activations, the largest tensors.
* ``e.text(collapse=True)`` — one block per layer (a Linear, a Conv2d, a ReLU) with the layer's
  own equations instead of its primitives.
* ``e.latex()`` — a LaTeX document; ``e.html()`` — a self-contained page with the equations as
  MathML, the graph drawn as SVG (each node clickable to its Forward/VJP/JVP, shapes and module).
* ``e.mlp()`` — for a Sequential of Linear + activation layers, the classic index form
  (zˡⱼ = Σₖ wˡⱼₖ aˡ⁻¹ₖ + bˡⱼ, δ recursion, ∂C/∂wˡⱼₖ = aˡ⁻¹ₖ δˡⱼ) with the layer sizes.
* ``e.verify()`` — evaluates the printed backward equations with a small independent interpreter
  (:mod:`._expr`, NumPy only, sharing no code with the primitives' rules) on the recorded forward
  values and compares the resulting gradients with the engine's: proof that the equations shown
  are the ones that ran.

Names. Parameters get W/b (θ for others) numbered by layer, the model input is x, constants
(targets, masks) c; a primitive's output is z after an affine map / matmul / unfold, a after an
activation, L for the final scalar and t otherwise. The legend maps every name to its module
path and shape.
"""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import mode as _mode
from ..autodiff.engine import gradients
from ..autodiff.function import REGISTRY
from ..autodiff.graph import walk
from ..tensor import Tensor
from ._expr import Bin, Fn, Ind, Neg, Num, Sym, Tr, Var

__all__ = ["explain", "Explanation", "VerifyResult", "op_math", "RULES"]

ACTIVATIONS = {"relu", "tanh", "sigmoid", "softplus", "erf", "atan", "exp", "abs"}
LINEAR_MAPS = {"affine", "matmul", "unfold"}


def op_math(name: str) -> dict:
    """The Forward / VJP / JVP lines (and the first docstring line) of primitive ``name``."""
    cls = REGISTRY[name]
    doc = (cls.__doc__ or "").strip().splitlines()
    out = {"summary": doc[0].strip() if doc else "", "structure": _structure(cls)}
    for line in doc:
        s = line.strip()
        for key in ("Forward", "VJP", "JVP"):
            if s.startswith(key + ":"):
                out[key] = s[len(key) + 1:].strip()
    return out


def _structure(cls) -> str:
    for base in cls.__mro__[1:]:
        if base.__name__ in ("Elementwise", "Linear", "Bilinear"):
            return base.__name__
    return "Function"


# ------------------------------------------------------------------------------ the rules
class _Ctx:
    """What a rule sees: ȳ, y, the inputs (expressions), their shapes, the op's keywords."""

    def __init__(self, g, y, xs, shapes, yshape, kw):
        self.g, self.y, self.xs, self.shapes, self.yshape, self.kw = g, y, xs, shapes, yshape, kw

    def back(self, e, i):
        """Sum a broadcast cotangent back to input i's shape (only where they differ)."""
        s = tuple(self.shapes[i])
        return e if s == tuple(self.yshape) else Fn("sum_to", [e], {"shape": s})


def _m(a, b):
    return Bin("⊙", a, b)


def _unary(fprime):
    return lambda c: {0: _m(c.g, fprime(c))}


def _pow_scalar(c):
    p = c.kw["p"]
    if p == 0:
        return {0: _m(c.g, Num(0))}
    if p == 1:
        return {0: c.g}
    if p == 2:
        return {0: _m(c.g, Bin("·", Num(2), c.xs[0]))}
    return {0: _m(c.g, Bin("·", Num(p), Bin("^", c.xs[0], Num(p - 1))))}


def _ext(c):
    ax, shape = c.kw["axis"], tuple(c.shapes[0])
    gk = Fn("broadcast_to", [c.g], {"shape": shape, "axis": ax}, show=["shape"])
    yk = Fn("broadcast_to", [c.y], {"shape": shape, "axis": ax}, show=["shape"])
    return {0: _m(gk, Fn("ties", [c.xs[0], yk], {"axis": ax}, show=[]))}


def _affine(c):
    x, w = c.xs[0], c.xs[1]
    n_out, n_in = c.shapes[1]
    g, xr = c.g, x
    if len(c.yshape) != 2:
        g = Fn("rows", [c.g], {"n": n_out}, show=[])
        xr = Fn("rows", [x], {"n": n_in}, show=[])
    gx = Bin("@", c.g, w) if len(c.yshape) == 2 else \
        Fn("reshape", [Bin("@", g, w)], {"shape": tuple(c.shapes[0])})
    out = {0: gx, 1: Bin("@", Tr(g), xr)}
    if len(c.xs) > 2:
        out[2] = Fn("sum", [g], {"axis": 0})
    return out


def _conv2d(c):
    geo = {k: c.kw[k] for k in ("stride", "padding", "dilation")}
    out = {0: Fn("conv_transpose", [c.g, c.xs[1]], {"size": tuple(c.shapes[0]), **geo},
                 show=["size", "stride", "padding"]),
           1: Fn("conv_wgrad", [c.xs[0], c.g], {"kernel": tuple(c.shapes[1][2:]), **geo},
                 show=["stride", "padding"])}
    if len(c.xs) > 2:
        out[2] = Fn("sum", [c.g], {"axis": (0, 2, 3)})
    return out


def _matmul(c):
    x, y = c.xs
    return {0: c.back(Bin("@", c.g, Tr(y)), 0), 1: c.back(Bin("@", Tr(x), c.g), 1)}


def _sce(c):
    ax = c.kw["axis"]
    z, q = c.xs
    gk = Fn("expand_dims", [c.g], {"axis": ax})
    qs = Fn("sum", [q], {"axis": ax, "keepdims": True}, show=["axis"])
    return {0: _m(gk, Bin("−", _m(qs, Fn("softmax", [z], {"axis": ax})), q)),
            1: _m(gk, Bin("−", Fn("lse", [z], {"axis": ax}), z))}


def _where_rule(c):
    m = c.kw["mask"]
    return {0: c.back(Fn("select", [c.g], {"mask": m, "keep": True}, show=[]), 0),
            1: c.back(Fn("select", [c.g], {"mask": m, "keep": False}, show=[]), 1)}


def _concat(c):
    ax, off, out = c.kw["axis"], 0, {}
    for i, s in enumerate(c.shapes):
        out[i] = Fn("slice", [c.g], {"axis": ax, "start": off, "stop": off + s[ax]})
        off += s[ax]
    return out


def _minmax(sign):
    def rule(c):
        x, y = c.xs
        a, b = (">", "<") if sign > 0 else ("<", ">")
        half = Num(0.5, "½")
        px = Bin("+", Ind(x, a, y), Bin("·", half, Ind(x, "=", y)))
        py = Bin("+", Ind(x, b, y), Bin("·", half, Ind(x, "=", y)))
        return {0: c.back(_m(c.g, px), 0), 1: c.back(_m(c.g, py), 1)}
    return rule


def _one_plus(e):
    return Bin("+", Num(1), e)


def _pdf(x):
    """φ(x) = exp(−x²/2)/√(2π), the standard normal density."""
    return Bin("·", Num(1 / math.sqrt(2 * math.pi), "1/√(2π)"),
               Fn("exp", [Neg(Bin("/", Bin("^", x, Num(2)), Num(2)))]))


RULES = {
    "add": lambda c: {0: c.back(c.g, 0), 1: c.back(c.g, 1)},
    "sub": lambda c: {0: c.back(c.g, 0), 1: Neg(c.back(c.g, 1))},
    "neg": lambda c: {0: Neg(c.g)},
    "mul": lambda c: {0: c.back(_m(c.g, c.xs[1]), 0), 1: c.back(_m(c.g, c.xs[0]), 1)},
    "div": lambda c: {0: c.back(Bin("/", c.g, c.xs[1]), 0),
                      1: Neg(c.back(Bin("/", _m(c.g, c.y), c.xs[1]), 1))},
    "maximum": _minmax(+1),
    "minimum": _minmax(-1),
    "pow": lambda c: {0: c.back(_m(c.g, _m(c.xs[1], Bin("^", c.xs[0],
                                                        Bin("−", c.xs[1], Num(1))))), 0),
                      1: c.back(_m(c.g, _m(c.y, Fn("log", [c.xs[0]]))), 1)},
    "pow_scalar": _pow_scalar,
    "exp": _unary(lambda c: c.y),
    "log": lambda c: {0: Bin("/", c.g, c.xs[0])},
    "log1p": lambda c: {0: Bin("/", c.g, _one_plus(c.xs[0]))},
    "expm1": _unary(lambda c: Bin("+", c.y, Num(1))),
    "sqrt": lambda c: {0: Bin("/", c.g, Bin("·", Num(2), c.y))},
    "abs": _unary(lambda c: Fn("sign", [c.xs[0]])),
    "sin": _unary(lambda c: Fn("cos", [c.xs[0]])),
    "cos": lambda c: {0: Neg(_m(c.g, Fn("sin", [c.xs[0]])))},
    "tanh": _unary(lambda c: Bin("−", Num(1), Bin("^", c.y, Num(2)))),
    "sigmoid": _unary(lambda c: _m(c.y, Bin("−", Num(1), c.y))),
    "relu": _unary(lambda c: Ind(c.xs[0], ">", Num(0))),
    "softplus": _unary(lambda c: Fn("σ", [c.xs[0]])),
    "erf": _unary(lambda c: Bin("·", Num(2 / math.sqrt(math.pi), "2/√π"),
                                Fn("exp", [Neg(Bin("^", c.xs[0], Num(2)))]))),
    "atan": lambda c: {0: Bin("/", c.g, _one_plus(Bin("^", c.xs[0], Num(2))))},
    "gelu": _unary(lambda c: Bin("+", Fn("Φ", [c.xs[0]]), _m(c.xs[0], _pdf(c.xs[0])))),
    "gelu_grad": _unary(lambda c: _m(_pdf(c.xs[0]), Bin("−", Num(2), Bin("^", c.xs[0], Num(2))))),
    "leaky_relu": _unary(lambda c: Bin("+", Ind(c.xs[0], ">", Num(0)), Bin(
        "·", Num(c.kw["negative_slope"]), Bin("−", Num(1), Ind(c.xs[0], ">", Num(0)))))),
    "matmul": _matmul,
    "affine": _affine,
    "sum": lambda c: {0: Fn("broadcast_to", [c.g], {"shape": tuple(c.shapes[0]),
                                                    "axis": c.kw["axis"]}, show=["shape"])},
    "max": _ext,
    "min": _ext,
    "logsumexp": lambda c: {0: _m(
        Fn("broadcast_to", [c.g], {"shape": tuple(c.shapes[0]), "axis": c.kw["axis"]},
           show=["shape"]),
        Fn("softmax", [c.xs[0]], {"axis": c.kw["axis"]}))},
    "softmax_cross_entropy": _sce,
    "reshape": lambda c: {0: Fn("reshape", [c.g], {"shape": tuple(c.shapes[0])})},
    "transpose": lambda c: {0: Fn("transpose", [c.g],
                                  {"axes": tuple(int(i) for i in np.argsort(c.kw["axes"]))})},
    "broadcast_to": lambda c: {0: Fn("sum_to", [c.g], {"shape": tuple(c.shapes[0])})},
    "sum_to": lambda c: {0: Fn("broadcast_to", [c.g], {"shape": tuple(c.shapes[0])})},
    "expand_dims": lambda c: {0: Fn("squeeze", [c.g], {"axis": c.kw["axis"]})},
    "squeeze": lambda c: {0: Fn("expand_dims", [c.g], {"axis": c.kw["axis"]})},
    "flip": lambda c: {0: Fn("flip", [c.g], {"axis": c.kw["axis"]})},
    "cast": lambda c: {0: Fn("cast", [c.g], {"dtype": str(np.dtype(_dtype_of(c.xs[0])))})},
    "get_item": lambda c: {0: Fn("scatter_add", [c.g], {"index": c.kw["index"],
                                                        "shape": tuple(c.shapes[0])},
                                 show=["shape"])},
    "scatter_add": lambda c: {0: Fn("gather", [c.g], {"index": c.kw["index"]}, show=[])},
    "take": lambda c: {0: Fn("take_back", [c.g], {"indices": c.kw["indices"],
                                                  "axis": c.kw["axis"],
                                                  "shape": tuple(c.shapes[0])},
                             show=["axis", "shape"])},
    "concat": _concat,
    "stack": lambda c: {i: Fn("index", [c.g], {"axis": c.kw["axis"], "i": i})
                        for i in range(len(c.shapes))},
    "pad": lambda c: {0: Fn("crop", [c.g], {"pad": c.kw["pad"]})},
    "where": _where_rule,
    "unfold": lambda c: {0: Fn("fold", [c.g], {"size": tuple(c.shapes[0]),
                                               **{k: c.kw[k] for k in
                                                  ("kernel", "stride", "padding", "dilation")}},
                               show=["size", "kernel", "stride"])},
    "conv2d": _conv2d,
    "max_pool2d": lambda c: {0: Fn("pool_route", [c.g, c.xs[0], c.y],
                                   {k: c.kw[k] for k in ("kernel", "stride", "padding",
                                                         "dilation")},
                                   show=["kernel", "stride"])},
    "fold": lambda c: {0: Fn("unfold", [c.g], {k: c.kw[k] for k in
                                               ("kernel", "stride", "padding", "dilation")},
                             show=["kernel", "stride"])},
    "inv": lambda c: {0: Neg(Bin("@", Bin("@", Tr(c.y), c.g), Tr(c.y)))},
}

# The solve rule needs B̄ (computed first) inside Ā; written out here so it stays one line each.
RULES["solve"] = lambda c: {
    1: Fn("solve", [Tr(c.xs[0]), c.g]),
    0: Neg(Bin("@", Fn("solve", [Tr(c.xs[0]), c.g]), Tr(c.y))),
}

#: Primitives the interpreter does not evaluate (their docstring math is still shown).
UNSUPPORTED = sorted(set(REGISTRY) - set(RULES))


def _dtype_of(e):
    return getattr(e, "dtype_hint", "float32")


# ------------------------------------------------------------------------------ forward text
def _fwd_expr(op, xs, kw):
    """The forward step as an expression (display only)."""
    if op == "affine":
        e = Bin("@", xs[0], Tr(xs[1]))
        return Bin("+", e, xs[2]) if len(xs) > 2 else e
    sym = {"add": "+", "sub": "−", "mul": "⊙", "div": "/", "matmul": "@"}
    if op in sym:
        return Bin(sym[op], xs[0], xs[1])
    if op == "neg":
        return Neg(xs[0])
    if op == "pow_scalar":
        return Bin("^", xs[0], Num(kw["p"]))
    if op == "pow":
        return Bin("^", xs[0], xs[1])
    shown = {k: v for k, v in kw.items() if _showable(v)}
    return Fn(op, xs, shown)


def _showable(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return True
    return isinstance(v, tuple) and all(_showable(u) for u in v) and len(str(v)) < 40


# ------------------------------------------------------------------------------ explanation
class _Val:
    """A named value of the recorded program."""

    __slots__ = ("sym", "shape", "dtype", "data", "kind", "path", "nbytes")

    def __init__(self, sym, data, kind, path=None):
        self.sym, self.data, self.kind, self.path = sym, data, kind, path
        self.shape = tuple(getattr(data, "shape", ()))
        self.dtype = str(getattr(data, "dtype", type(data).__name__))
        self.nbytes = int(getattr(data, "nbytes", 0))


class _FStep:
    __slots__ = ("index", "op", "out", "outs", "ins", "expr", "module", "mclass", "kw", "node",
                 "flops")


class _BStep:
    __slots__ = ("target", "accumulate", "expr", "shape", "module", "op", "index", "slot",
                 "opaque")


class VerifyResult:
    """The interpreter's gradients against the engine's, per differentiable leaf; and, for each
    op the interpreter has no rule for, its own VJP checked against central differences of its
    forward (``checks``: (op, module path, relative difference, tolerance))."""

    def __init__(self, rows, tol, checks=()):
        self.rows, self.tol = rows, tol  # (name, path, shape, rel_err)
        self.checks = list(checks)

    @property
    def ok(self) -> bool:
        return (all(r[3] <= self.tol for r in self.rows) and bool(self.rows)
                and all(c[2] <= c[3] for c in self.checks))

    def __bool__(self):
        return self.ok

    @property
    def max_error(self) -> float:
        return max((r[3] for r in self.rows), default=float("nan"))

    def __str__(self):
        lines = [f"verify: {'PASS' if self.ok else 'FAIL'} — {len(self.rows)} gradients, "
                 f"largest relative difference {self.max_error:.2e} (tolerance {self.tol:g})"]
        for name, path, shape, err in self.rows:
            flag = "ok " if err <= self.tol else "BAD"
            lines.append(f"  {flag} {name:<6} {path:<28} {str(shape):<16} {err:.2e}")
        if self.checks:
            lines.append("  ops without an interpreter rule: their own VJP, checked against "
                         "central differences of their forward, ⟨x̄, v⟩ vs (⟨ȳ, f(x + hv)⟩ − "
                         "⟨ȳ, f(x − hv)⟩)/2h for a random direction v:")
        for op, where, err, tol in self.checks:
            flag = "ok " if err <= tol else "BAD"
            lines.append(f"  {flag} VJP[{op}] {where:<24} relative difference {err:.2e} "
                         f"(tolerance {tol:g})")
        return "\n".join(lines)


class Explanation:
    """See the module docstring."""

    def __init__(self, model, fsteps, bsteps, vals, leaves, out_val, seed, title):
        self.model, self.fsteps, self.bsteps = model, fsteps, bsteps
        self.vals, self.leaves, self.out_val, self.seed = vals, leaves, out_val, seed
        self.title = title
        self.opaque: list = []
        self._loss_tensor = None

    # ---------------------------------------------------------------- figures
    @property
    def ops(self) -> dict:
        out: dict = {}
        for s in self.fsteps:
            out[s.op] = out.get(s.op, 0) + 1
        return out

    def flops(self) -> tuple[int, int]:
        fwd = sum(s.flops[0] for s in self.fsteps)
        bwd = sum(s.flops[1] for s in self.fsteps)
        return fwd, bwd

    def saved_bytes(self) -> int:
        """Bytes of the arrays the recorded graph holds for backward (inputs and outputs of
        every node, each array counted once)."""
        seen, total = set(), 0
        for s in self.fsteps:
            for a in list(s.node["datas"]) + [s.node["out"]]:
                for arr in (a if isinstance(a, tuple) else (a,)):
                    if isinstance(arr, np.ndarray) and id(arr) not in seen:
                        seen.add(id(arr))
                        total += arr.nbytes
        return total

    def largest(self, k: int = 5) -> list:
        vs = sorted(self.vals.values(), key=lambda v: -v.nbytes)
        return [(v.sym.text(), v.shape, v.nbytes, v.path or "") for v in vs[:k]]

    def num_parameters(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.leaves if v.kind == "param"))

    # ---------------------------------------------------------------- text
    def __str__(self):
        return self.text()

    def legend_lines(self) -> list[str]:
        out = []
        for v in self.leaves + [v for v in self.vals.values() if v.kind == "const"]:
            n = int(np.prod(v.shape)) if v.shape else 1
            what = {"param": "parameter", "input": "input", "const": "constant"}[v.kind]
            out.append(f"  {v.sym.text():<6} {what:<10} {v.path or '':<26} "
                       f"{str(v.shape):<16} {v.dtype:<8} {n:,} values")
        return out

    def forward_lines(self) -> list[str]:
        w = max((len(s.expr.text()) for s in self.fsteps), default=10)
        w = min(max(w, 20), 60)
        out = []
        for s in self.fsteps:
            v = self.vals[s.out]
            where = f"[{s.module}]" if s.module is not None else ""
            eq = f"{v.sym.text()} = {s.expr.text()}"
            out.append(f"  {eq:<{w + 6}} {str(v.shape):<16} {v.dtype:<8} {where}")
        return out

    def backward_lines(self) -> list[str]:
        w = 20
        for b in self.bsteps:
            w = max(w, len(self._beq(b)))
        w = min(w, 70)
        out = [f"  {self.seed}"]
        for b in self.bsteps:
            where = f"[{b.module}]" if b.module is not None else ""
            out.append(f"  {self._beq(b):<{w}}  {str(b.shape):<16} {where}")
        return out

    @staticmethod
    def _beq(b) -> str:
        return f"{b.target.text()} {'+=' if b.accumulate else '='} {b.expr.text()}"

    def summary_lines(self) -> list[str]:
        f, b = self.flops()
        out = [f"  FLOPs: forward {f:,}, backward {b:,} (about {b / max(f, 1):.1f}× forward)",
               f"  saved for backward: {_bytes(self.saved_bytes())} in "
               f"{len(self.fsteps)} recorded ops",
               f"  parameters: {self.num_parameters():,}",
               "  largest tensors:"]
        for name, shape, nb, path in self.largest():
            out.append(f"    {name:<6} {str(shape):<18} {_bytes(nb):>10}  {path}")
        return out

    def text(self, collapse: bool = False) -> str:
        """The explanation as terminal text; ``collapse=True`` shows one block per layer."""
        head = f"{self.title}: {len(self.fsteps)} primitive ops, {len(self.leaves)} " \
               f"differentiable leaves, {self.num_parameters():,} parameters"
        parts = [head, "", "names:"] + self.legend_lines()
        if collapse:
            parts += ["", "layers (forward, then the layer's backward equations):"]
            parts += self.layer_lines()
        else:
            parts += ["", "forward program (evaluation order):"] + self.forward_lines()
            parts += ["", "backward program (the order the engine runs it; each line the op's "
                      "VJP with this graph's names and shapes):"] + self.backward_lines()
        parts += ["", "summary:"] + self.summary_lines()
        return "\n".join(parts)

    # ---------------------------------------------------------------- layers (collapsed)
    def layer_blocks(self) -> list[dict]:
        """Consecutive forward steps of the same module, as blocks with layer equations."""
        blocks: list[dict] = []
        for s in self.fsteps:
            if blocks and blocks[-1]["module"] == s.module:
                blocks[-1]["steps"].append(s)
            else:
                blocks.append({"module": s.module, "mclass": s.mclass, "steps": [s]})
        for b in blocks:
            first, last = b["steps"][0], b["steps"][-1]
            ins = [r for r in first.ins if r is not None and self.vals[r].kind != "param"]
            syms = {"x": self.vals[ins[0]].sym if ins else Sym("x"),
                    "y": self.vals[last.out].sym, "W": Sym("W"), "b": Sym("b")}
            for s in b["steps"]:
                for r in s.ins:
                    v = self.vals.get(r) if r is not None else None
                    if v is not None and v.kind == "param" and v.sym.base in ("W", "b"):
                        syms[v.sym.base] = v.sym
            names = {k: v.text() for k, v in syms.items()}
            names.update({k + "b": v.barred().text() for k, v in syms.items()})
            x, y = names["x"], names["y"]
            eqs = LAYER_MATH.get(b["mclass"])
            if eqs is None:
                b["equations"] = [f"{y} = " + " ∘ ".join(s.op for s in reversed(b["steps"]))
                                  + f"({x})"]
            else:
                b["equations"] = [e.format(**names) for e in eqs]
            b["shape"] = self.vals[last.out].shape
        return blocks

    def layer_lines(self) -> list[str]:
        out = []
        for b in self.layer_blocks():
            ops = ", ".join(f"{k}×{v}" if v > 1 else k for k, v in
                            _count(s.op for s in b["steps"]).items())
            out.append(f"  [{b['module'] or '<model>'}] {b['mclass'] or ''}  -> "
                       f"{b['shape']}   ({len(b['steps'])} primitives: {ops})")
            for e in b["equations"]:
                out.append(f"      {e}")
        return out

    # ---------------------------------------------------------------- the classic MLP view
    def mlp(self) -> str | None:
        """Index form of a Sequential of Linear + activation layers (None for other models)."""
        return mlp_view(self.model)

    # ---------------------------------------------------------------- verify
    def verify(self, tol: float | None = None) -> VerifyResult:
        """Evaluate the printed backward equations with the independent interpreter and compare
        the leaves' gradients with the engine's: per leaf ‖g_interp − g_engine‖ / max(‖g_engine‖,
        ‖g_interp‖, 10⁻³ · the largest leaf gradient's norm) ≤ ``tol`` (default 2e-3 in float32,
        1e-9 in float64).

        An op the interpreter has no rule for (:attr:`opaque`: a fused scan, a ``custom_vjp``
        such as an ODE adjoint or feedback alignment, an FFT) is not taken on trust: its own
        VJP supplies its inputs' cotangents, and that VJP is checked against central
        differences of the op's forward (in float64 where the op runs in it) along a random
        direction — the check is listed in :attr:`VerifyResult.checks`."""
        env = {}
        checks, opaque_out = [], {}
        for v in self.vals.values():
            env[v.sym.key] = v.data
        env[self.out_val.sym.barred().key] = np.ones(self.out_val.shape,
                                                     dtype=self.out_val.data.dtype)
        with np.errstate(all="ignore"):
            for b in self.bsteps:
                if b.opaque:
                    if b.index not in opaque_out:
                        opaque_out[b.index] = self._opaque_vjp(b.index, env, checks)
                    val = np.asarray(opaque_out[b.index][b.slot])
                else:
                    val = np.asarray(b.expr.eval(env))
                key = b.target.key
                if val.shape != tuple(b.shape):
                    val = np.broadcast_to(val, b.shape)
                env[key] = env[key] + val if b.accumulate else val
        engine = self._engine_grads()
        dt = self.out_val.data.dtype
        if tol is None:
            tol = 1e-9 if dt == np.float64 else 2e-3
        # A gradient that is zero in exact arithmetic (a bias before batch norm) is rounding
        # noise in both; its difference is measured against the largest gradient's scale.
        # (Overflow-safe norms: a gradient of 1e200 squares past float64, and an infinite floor
        # would excuse every leaf.)
        floor = 1e-3 * max((n for n in (_norm(g) for g in engine if g is not None)
                            if math.isfinite(n)), default=0.0)
        rows = []
        for v, ge in zip(self.leaves, engine, strict=True):
            gi = env.get(v.sym.barred().key)
            if gi is None and ge is None:
                continue
            gi = np.zeros(v.shape) if gi is None else np.asarray(gi, dtype=np.float64)
            ge = np.zeros(v.shape) if ge is None else np.asarray(ge, dtype=np.float64)
            den = max(_norm(ge), _norm(gi), floor, 1e-30)
            err = _norm(gi - ge) / den if gi.shape == ge.shape else float("inf")
            if not math.isfinite(err):
                err = float("inf")
            rows.append((v.sym.text(), v.path or "", v.shape, err))
        return VerifyResult(rows, tol, checks)

    def _opaque_vjp(self, index, env, checks):
        """The input cotangents of recorded op ``index`` by its own VJP, and that VJP checked
        against central differences of its forward (appended to ``checks``)."""
        node = self._nodes[index]
        s = self.fsteps[index]
        outs = node.out if type(node.out) is tuple else (node.out,)
        gs = []
        for k, o in zip(s.outs, outs, strict=True):
            g = env.get(self.vals[k].sym.barred().key)
            gs.append(np.zeros_like(o) if g is None else
                      np.asarray(np.broadcast_to(g, o.shape), dtype=o.dtype))
        g = tuple(gs) if type(node.out) is tuple else gs[0]
        with _mode.no_grad():
            gxs = node.fn.vjp(g, node.out, *node.datas, needs=tuple(node.needs), **node.kw)
        gxs = [None if gx is None else np.asarray(getattr(gx, "data", gx)) for gx in gxs]
        err, tol = _fd_check(node, gs, gxs)
        checks.append((node.fn.name, s.module or "", err, tol))
        return {j: (np.zeros(np.shape(node.datas[j])) if gx is None else gx)
                for j, gx in enumerate(gxs)}

    def _engine_grads(self):
        t = self._loss_tensor
        go = None if not t.shape else Tensor(np.ones(t.shape, dtype=t.data.dtype))
        gs = gradients(t, self._leaf_tensors, grad_outputs=go, retain_graph=True)
        return [None if g is None else np.asarray(getattr(g, "data", g)) for g in gs]

    # ---------------------------------------------------------------- LaTeX / HTML
    def latex(self) -> str:
        """A standalone LaTeX document: names, forward and backward programs."""
        from .explain_html import latex_document
        return latex_document(self)

    def html(self, path: str | None = None) -> str:
        """A self-contained HTML page (MathML equations, SVG graph); written to ``path`` if
        given. Returns the HTML text."""
        from .explain_html import html_page
        page = html_page(self)
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
        return page


def _count(it) -> dict:
    out: dict = {}
    for k in it:
        out[k] = out.get(k, 0) + 1
    return out


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


#: Layer-level equations of the common layers ({x} input, {y} output of the block).
LAYER_MATH = {
    "Linear": ["{y} = {x} {W}ᵀ + {b}",
               "{xb} = {yb} {W},   {Wb} = {yb}ᵀ {x},   {bb} = Σ_rows {yb}"],
    "Conv2d": ["{y} = conv({x}, {W}) + {b}   (unfold({x}) · {W} as one GEMM, then NCHW)",
               "{xb} = fold({yb} {W})  (= conv_transpose({yb}, {W})),   "
               "{Wb} = unfold({x})ᵀ {yb},   {bb} = Σ_(n,h,w) {yb}"],
    "ReLU": ["{y} = max({x}, 0)", "{xb} = {yb} ⊙ 1[{x} > 0]"],
    "Tanh": ["{y} = tanh({x})", "{xb} = {yb} ⊙ (1 − {y}²)"],
    "Sigmoid": ["{y} = σ({x})", "{xb} = {yb} ⊙ {y} (1 − {y})"],
    "MaxPool2d": ["{y} = max over each k×k window of {x}",
                  "{xb} = {yb} routed to each window's arg-max (ties share equally)"],
    "AvgPool2d": ["{y} = mean over each k×k window of {x}",
                  "{xb} = fold({yb} / k²) (each input gets the mean of its windows' {yb})"],
    "BatchNorm2d": ["x̂ = ({x} − μ_B)/√(σ²_B + ε),   {y} = γ ⊙ x̂ + β   (per channel)",
                    "{xb} = (γ/√(σ²_B+ε)) ({yb} − mean({yb}) − x̂ mean({yb} ⊙ x̂)),   "
                    "γ̄ = Σ {yb} ⊙ x̂,   β̄ = Σ {yb}"],
    "BatchNorm1d": ["x̂ = ({x} − μ_B)/√(σ²_B + ε),   {y} = γ ⊙ x̂ + β",
                    "{xb} = (γ/√(σ²_B+ε)) ({yb} − mean({yb}) − x̂ mean({yb} ⊙ x̂)),   "
                    "γ̄ = Σ {yb} ⊙ x̂,   β̄ = Σ {yb}"],
    "Flatten": ["{y} = reshape({x}, (N, −1))", "{xb} = reshape({yb}, {x}.shape)"],
    "Dropout": ["{y} = {x} ⊙ m / (1 − p),  m ~ Bernoulli(1 − p)", "{xb} = {yb} ⊙ m / (1 − p)"],
}


# ------------------------------------------------------------------------------ FLOPs
def _flops(op, shapes, yshape, needs):
    """Multiply-adds counted as 2 FLOPs; elementwise ops as one per output element."""
    n_out = int(np.prod(yshape)) if yshape else 1
    if op == "affine":
        n_in = shapes[1][1]
        f = 2 * n_out * n_in
        b = f * (int(needs[0]) + int(needs[1])) + (n_out if len(needs) > 2 and needs[2] else 0)
        return f, b
    if op == "conv2d":  # (N, O, H_out, W_out) outputs, each a C·kh·kw dot product
        f = 2 * n_out * int(np.prod(shapes[1][1:]))
        b = f * (int(needs[0]) + int(needs[1])) + (n_out if len(needs) > 2 and needs[2] else 0)
        return f, b
    if op == "matmul":
        k = shapes[0][-1]
        f = 2 * n_out * k
        return f, f * (int(needs[0]) + int(needs[1]))
    if op in ("reshape", "transpose", "expand_dims", "squeeze", "get_item", "unfold",
              "fold", "pad", "concat", "stack", "flip", "broadcast_to", "cast", "take"):
        return 0, 0
    if op in ("sum", "max", "min", "logsumexp", "softmax_cross_entropy", "sum_to"):
        n_in = int(np.prod(shapes[0])) if shapes[0] else 1
        return n_in * (5 if op in ("logsumexp", "softmax_cross_entropy") else 1), \
            n_in * (5 if op in ("logsumexp", "softmax_cross_entropy") else 1)
    return n_out, 2 * n_out * max(1, sum(needs))


# ------------------------------------------------------------------------------ explain()
_LETTER = {"affine": "z", "matmul": "z", "conv2d": "z", "unfold": "u"}


def _fd_forward(node, datas):
    kw = dict(node.kw or {})
    if "res" in kw:  # a custom_vjp's residual slot: a fresh one, so the recorded stays intact
        kw["res"] = type(kw["res"])()
    with _mode.no_grad():
        out = node.fn.forward(np, *datas, **kw)
    return out if type(out) is tuple else (out,)


def _norm(a) -> float:
    """‖a‖₂ in float64 by BLAS nrm2 (scipy.linalg.norm of the flat array), which scales as it
    sums: no overflow in the squares of a gradient of 1e200 (inf or NaN entries give inf or
    NaN)."""
    import scipy.linalg

    return float(scipy.linalg.norm(np.asarray(a, dtype=np.float64).ravel(), check_finite=False))


def _fd_check(node, gs, gxs) -> tuple[float, float]:
    """Relative difference between ⟨x̄, v⟩ (the op's VJP) and the central difference
    (φ(x + hv) − φ(x − hv))/2h of φ(x) = Σₖ ⟨ȳₖ, fₖ(x)⟩, for a random direction v over the
    inputs the VJP answered for; in float64 when the forward accepts it (h = 10⁻⁶, tolerance
    10⁻⁵, with the VJP itself re-evaluated at float64 inputs), else in the op's own precision
    (h = 10⁻², tolerance 3·10⁻²)."""
    rng = np.random.default_rng(0)
    idx = [j for j, gx in enumerate(gxs) if gx is not None
           and np.issubdtype(np.asarray(node.datas[j]).dtype, np.floating)]
    if not idx:
        return 0.0, 1.0
    vs = {j: rng.standard_normal(np.shape(node.datas[j])) for j in idx}
    analytic = sum(float(np.vdot(np.asarray(gxs[j], dtype=np.float64), vs[j])) for j in idx)

    def phi(datas, h, dtype):
        d = list(datas)
        live = []
        for j in idx:
            d[j] = (np.asarray(d[j], dtype=np.float64) + h * vs[j]).astype(dtype)
            t = node.inputs[j]
            if isinstance(t, Tensor):  # a closure may read the live tensor (an ODE's θ)
                live.append((t, t.data))
                t.data = d[j]
        try:
            outs = _fd_forward(node, d)
        finally:
            for t, old in live:
                t.data = old
        return sum(float(np.vdot(np.asarray(g, dtype=np.float64),
                                 np.asarray(o, dtype=np.float64))) for g, o in
                   zip(gs, outs, strict=True))

    for dtype, h, tol in ((np.float64, 1e-6, 1e-5), (None, 1e-2, 3e-2)):
        try:
            datas = [np.asarray(d, dtype=np.float64) if j in idx else d
                     for j, d in enumerate(node.datas)] if dtype else list(node.datas)
            dt = dtype or np.asarray(node.datas[idx[0]]).dtype
            with np.errstate(all="ignore"):
                num = (phi(datas, h, dt) - phi(datas, -h, dt)) / (2 * h)
        except (TypeError, ValueError, FloatingPointError):
            continue
        if not math.isfinite(num):
            continue
        a = analytic
        if dtype is not None:  # the rule itself in float64 too: a float32 VJP's own rounding
            a64 = _vjp64(node, gs, datas, idx, vs)  # (reductions over 10⁴-10⁵ values) is
            a = analytic if a64 is None else a64  # not what this check is about
        den = max(abs(num), abs(a), 1e-30)
        return abs(num - a) / den, tol
    return float("inf"), 0.0


def _vjp64(node, gs, datas, idx, vs):
    """⟨x̄, v⟩ with the op's VJP evaluated at float64 inputs, cotangents and outputs; None where
    the op does not run in float64."""
    if not any(np.asarray(node.datas[j]).dtype != np.float64 for j in idx):
        return None
    kw = dict(node.kw or {})
    if "res" in kw:  # a custom_vjp: its residuals belong to the recorded forward
        return None
    try:
        outs = _fd_forward(node, datas)
        g64 = tuple(np.asarray(g, dtype=np.float64) for g in gs)
        with _mode.no_grad():
            gxs = node.fn.vjp(g64 if len(g64) > 1 else g64[0],
                              outs if len(outs) > 1 else outs[0], *datas,
                              needs=tuple(node.needs), **kw)
        total = 0.0
        for j in idx:
            gx = gxs[j]
            if gx is None:
                return None
            total += float(np.vdot(np.asarray(getattr(gx, "data", gx), dtype=np.float64),
                                   vs[j]))
        return total if math.isfinite(total) else None
    except (TypeError, ValueError, FloatingPointError, AttributeError):
        return None


def _as_tensor(a, grad):
    if isinstance(a, Tensor):
        if grad and not a.requires_grad:
            return Tensor(a.data, requires_grad=True)
        return a
    return Tensor(np.asarray(a), requires_grad=grad)


def explain(model_or_fn, *example_inputs, loss_fn=None, title: str | None = None) \
        -> Explanation:
    """Record one forward pass of ``model_or_fn(*example_inputs)`` (then ``loss_fn(output)``
    if given; otherwise a non-scalar output is summed) and explain it; see the module docstring.

    For a :class:`~tensorcalc.nn.Module` the parameters are the differentiable leaves and the
    inputs are data; for a plain function every input is differentiable."""
    from ..nn import Module

    is_model = isinstance(model_or_fn, Module)
    inputs = [_as_tensor(a, not is_model) for a in example_inputs]
    with _mode.enable_grad():
        out = model_or_fn(*inputs)
        if loss_fn is not None:
            out = loss_fn(out)
        if isinstance(out, dict):
            total = None
            for v in out.values():
                total = v if total is None else total + v
            out = total
        if isinstance(out, (tuple, list)):
            raise TypeError("explain: the function returns several outputs; pass loss_fn= "
                            "to reduce them to one scalar")
        if not isinstance(out, Tensor) or out._node is None:
            raise ValueError("explain: the output does not depend on any differentiable input "
                             "(does the model have parameters, or the function inputs?)")
    nodes = walk([out])
    title = title or (type(model_or_fn).__name__ if is_model
                      else getattr(model_or_fn, "__name__", "function"))
    # ---- names of leaves
    vals: dict = {}          # key -> _Val
    by_id: dict = {}         # id(tensor or array) -> key
    leaves: list = []
    leaf_tensors: list = []
    mod_path, mod_class, param_name = {}, {}, {}
    if is_model:
        for path, m in model_or_fn.named_modules():
            mod_path[id(m)] = path
            mod_class[path] = type(m).__name__
        layer_no: dict = {}
        used_names: set = set()
        for path, p in model_or_fn.named_parameters():
            owner, _, leafname = path.rpartition(".")
            if owner not in layer_no:
                layer_no[owner] = len(layer_no) + 1
            # weight → W, bias → b (weight_hh_l0 → W[1,hh_l0]), anything else θ; one name each
            head, _, rest = leafname.partition("_")
            base = {"weight": "W", "bias": "b"}.get(head, "θ")
            if base == "θ":
                rest = "" if leafname in ("", "weight", "bias") else leafname
            sub = layer_no[owner] if not rest else f"{layer_no[owner]},{rest}"
            sym = Sym(base, sub)
            while sym.key in used_names:
                sym = Sym(base, f"{sym.sub}′")
            used_names.add(sym.key)
            param_name[id(p)] = (sym, path)
    n_inputs = len(inputs)
    for i, t in enumerate(inputs):
        base = "x" if is_model else ("xyuvw"[i] if n_inputs <= 5 else "x")
        sub = None if (is_model and n_inputs == 1) or (not is_model and n_inputs <= 5) else i + 1
        param_name.setdefault(id(t), (Sym(base, sub), f"input {i}" if n_inputs > 1 else "input"))
    counters: dict = {}

    def fresh(letter):
        counters[letter] = counters.get(letter, 0) + 1
        return Sym(letter, counters[letter])

    def name_of(x, for_step=None):
        """The key of a node input: a step output, a leaf, a constant or a number."""
        if isinstance(x, Tensor):
            if x._node is not None and id(x._node) in node_out:
                return node_out[id(x._node)][x._index if x._node.multi else 0]
            if id(x) in by_id:
                return by_id[id(x)]
            if x._rg or id(x) in param_name:
                sym, path = param_name.get(id(x)) or (fresh("θ"), None)
                kind = "input" if path and path.startswith("input") else "param"
                v = _Val(sym, x.data, kind if (x._rg or kind == "input") else "const", path)
                vals[sym.key] = v
                by_id[id(x)] = sym.key
                if x._rg:
                    leaves.append(v)
                    leaf_tensors.append(x)
                return sym.key
            data = x.data
        else:
            data = x
        if np.ndim(data) == 0 and not isinstance(x, Tensor):
            return None  # a Python number: shown as itself
        if id(data) in by_id:
            return by_id[id(data)]
        sym = fresh("c")
        vals[sym.key] = _Val(sym, np.asarray(data), "const", None)
        by_id[id(data)] = sym.key
        return sym.key

    node_out: dict = {}
    fsteps, last = [], nodes[-1]
    for i, node in enumerate(nodes):
        op = node.fn.name
        ins = [name_of(x) for x in node.inputs]
        outs = node.out if type(node.out) is tuple else (node.out,)
        keys = []
        for o in outs:
            if node is last and len(outs) == 1 and np.ndim(o) == 0:
                sym = Sym("L")
            else:
                letter = "a" if op in ACTIVATIONS else _LETTER.get(op, "t")
                sym = fresh(letter)
            path = None
            if node.module is not None:
                path = mod_path.get(id(node.module), type(node.module).__name__)
            vals[sym.key] = _Val(sym, o, "value", path)
            keys.append(sym.key)
        node_out[id(node)] = keys
        s = _FStep()
        s.outs = keys
        s.index, s.op, s.out, s.ins, s.kw, s.node = i, op, keys[0], ins, dict(node.kw or {}), \
            {"datas": node.datas, "out": node.out}
        s.module = None if node.module is None else mod_path.get(id(node.module),
                                                                 type(node.module).__name__)
        s.mclass = mod_class.get(s.module) if s.module is not None else None
        if s.mclass is None and node.module is not None:
            s.mclass = type(node.module).__name__
        xs = [Var(vals[k].sym) if k is not None else Num(float(x))
              for k, x in zip(ins, node.inputs, strict=True)]
        s.expr = _fwd_expr(op, xs, s.kw)
        s.flops = _flops(op, [tuple(np.shape(d)) for d in node.datas],
                         vals[keys[0]].shape, node.needs)
        fsteps.append(s)
    out_key = node_out[id(last)][0]
    out_val = vals[out_key]
    seed = (f"{out_val.sym.barred().text()} = 1" if not out_val.shape else
            f"{out_val.sym.barred().text()} = 1  (ones{out_val.shape}: the output is summed)")
    # ---- backward program
    bsteps = []
    opaque: set = set()
    defined = {out_val.sym.barred().key}
    for s in reversed(fsteps):
        node_needs = nodes[s.index].needs
        keys = node_out[id(nodes[s.index])]
        if not any(vals[k].sym.barred().key in defined for k in keys):
            continue  # this step does not reach the output
        rule = RULES.get(s.op) if len(keys) == 1 else None
        y = vals[s.out]
        if rule is None:  # shown with its docstring's VJP; verify() says it cannot check it
            opaque.add(s.op)
            vjp = op_math(s.op).get("VJP", "(no VJP line)") if s.op in REGISTRY else "?"
            for j, k in enumerate(s.ins):
                if k is None or not node_needs[j]:
                    continue
                target = vals[k]
                b = _BStep()
                b.target = target.sym.barred()
                b.accumulate = b.target.key in defined
                defined.add(b.target.key)
                b.expr = Fn(f"VJP[{s.op}]", [Var(vals[q].sym.barred()) for q in keys],
                            {"rule": vjp})
                b.shape, b.module, b.op, b.index = target.shape, s.module, s.op, s.index
                b.slot, b.opaque = j, True
                bsteps.append(b)
            continue
        xs = []
        for k, x in zip(s.ins, nodes[s.index].inputs, strict=True):
            xs.append(Var(vals[k].sym) if k is not None else Num(float(x)))
        for k, e in zip(s.ins, xs, strict=True):
            if k is not None:
                e.dtype_hint = vals[k].dtype
        ctx = _Ctx(Var(y.sym.barred()), Var(y.sym), xs,
                   [tuple(np.shape(d)) for d in nodes[s.index].datas], y.shape, s.kw)
        contrib = rule(ctx)
        for j in sorted(contrib):
            k = s.ins[j]
            if k is None or not node_needs[j]:
                continue
            target = vals[k]
            b = _BStep()
            b.target = target.sym.barred()
            b.accumulate = b.target.key in defined
            defined.add(b.target.key)
            b.expr, b.shape, b.module, b.op, b.index = contrib[j], target.shape, s.module, \
                s.op, s.index
            b.slot, b.opaque = j, False
            bsteps.append(b)
    e = Explanation(model_or_fn, fsteps, bsteps, vals, leaves, out_val, seed, title)
    e.opaque = sorted(opaque)
    e._loss_tensor = out
    e._leaf_tensors = leaf_tensors
    e._nodes = nodes
    e._mod_class = mod_class
    return e


# ------------------------------------------------------------------------------ MLP index form
def mlp_view(model) -> str | None:
    """The seeds' index notation for a Sequential of Linear + activation layers."""
    from .. import nn

    if not isinstance(model, nn.Sequential):
        return None
    acts = {"ReLU": ("relu", "σ′(z) = 1[z > 0]"), "Tanh": ("tanh", "σ′(z) = 1 − tanh²(z)"),
            "Sigmoid": ("σ", "σ′(z) = σ(z)(1 − σ(z))"), "Identity": ("id", "σ′ = 1")}
    layers, pending = [], None
    for m in model:
        name = type(m).__name__
        if name == "Linear":
            if pending is not None:
                layers.append(pending)
            pending = [m, None]
        elif name in acts and pending is not None and pending[1] is None:
            pending[1] = name
        elif name == "Dropout":
            continue
        else:
            return None
    if pending is None:
        return None
    layers.append(pending)
    sizes = [layers[0][0].weight.shape[1]] + [m.weight.shape[0] for m, _ in layers]
    L = len(layers)
    sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    lines = [f"Multilayer perceptron, L = {L} layers, sizes "
             + " → ".join(f"n{str(i).translate(sup)} = {n}" for i, n in enumerate(sizes)),
             "",
             "forward, for l = 1..L and j = 1..nˡ:",
             "  zˡⱼ = Σₖ wˡⱼₖ aˡ⁻¹ₖ + bˡⱼ          (k = 1..nˡ⁻¹;  a⁰ = x)",
             "  aˡⱼ = σˡ(zˡⱼ)"]
    for i, (m, act) in enumerate(layers, 1):
        a = acts.get(act, ("id", "σ′ = 1"))[0] if act else "id (the logits)"
        lines.append(f"    layer {i}: w{str(i).translate(sup)} is {m.weight.shape[0]}×"
                     f"{m.weight.shape[1]}, b{str(i).translate(sup)} has "
                     f"{m.weight.shape[0]} entries, σ{str(i).translate(sup)} = {a}")
    lines += ["",
              "backward (δˡⱼ = ∂C/∂zˡⱼ, the error of neuron j in layer l):",
              "  δᴸⱼ = ∂C/∂zᴸⱼ                      (cross-entropy on softmax: softmax(zᴸ)ⱼ − yⱼ)",
              "  δˡⱼ = (Σₖ wˡ⁺¹ₖⱼ δˡ⁺¹ₖ) σˡ′(zˡⱼ)     i.e. δˡ = ((Wˡ⁺¹)ᵀ δˡ⁺¹) ⊙ σˡ′(zˡ)"]
    for _m, act in layers:
        if act in acts:
            lines.append(f"    {act}: {acts[act][1]}")
            break
    lines += ["  ∂C/∂wˡⱼₖ = aˡ⁻¹ₖ δˡⱼ",
              "  ∂C/∂bˡⱼ = δˡⱼ",
              "",
              "(over a batch, C is the mean loss and every sum also runs over the examples)"]
    return "\n".join(lines)


def mlp_gradients(model, x, delta_out):
    """The δ recursion of :func:`mlp_view` evaluated in NumPy: given the input batch ``x`` and
    δᴸ = ∂C/∂zᴸ, returns {parameter path: gradient} — a check of the index equations."""
    from .. import nn

    mods = list(model)
    zs, a_s, layers = [], [np.asarray(x, dtype=np.float64)], []
    idx = 0
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            w = m.weight.data.astype(np.float64)
            b = m.bias.data.astype(np.float64) if m.bias is not None else 0.0
            z = a_s[-1] @ w.T + b
            zs.append(z)
            layers.append((i, m, None))
            a_s.append(z)
            idx += 1
        elif type(m).__name__ in ("ReLU", "Tanh", "Sigmoid"):
            fn = {"ReLU": lambda z: np.maximum(z, 0), "Tanh": np.tanh,
                  "Sigmoid": lambda z: 1 / (1 + np.exp(-z))}[type(m).__name__]
            a_s[-1] = fn(zs[-1])
            layers[-1] = (layers[-1][0], layers[-1][1], type(m).__name__)
    grads = {}
    delta = np.asarray(delta_out, dtype=np.float64)
    for li in range(len(layers) - 1, -1, -1):
        i, m, _ = layers[li]
        grads[f"{i}.weight"] = delta.T @ a_s[li]
        if m.bias is not None:
            grads[f"{i}.bias"] = delta.sum(axis=0)
        if li > 0:
            prev = layers[li - 1][2]
            z = zs[li - 1]
            d = {"ReLU": (z > 0).astype(z.dtype), "Tanh": 1 - np.tanh(z) ** 2,
                 "Sigmoid": (1 / (1 + np.exp(-z))) * (1 - 1 / (1 + np.exp(-z))),
                 None: np.ones_like(z)}[prev]
            delta = (delta @ m.weight.data.astype(np.float64)) * d
    return grads

