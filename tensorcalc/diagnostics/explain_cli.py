"""``tensorcalc explain RECIPE``, ``op NAME`` and ``ops`` (registered in cli.py).

    tensorcalc explain mlp                      forward + backward programs, summary (text)
    tensorcalc explain lenet --collapse         one block per layer with its equations
    tensorcalc explain lenet --html e.html      the page: MathML equations, clickable graph
    tensorcalc explain mlp --latex              a LaTeX document on stdout (--latex FILE: to a file)
    tensorcalc explain mlp --verify             also evaluate the printed equations and compare
    tensorcalc op tanh                          one primitive's math and its numerical check, live
    tensorcalc ops [--markdown]                 every primitive: structure, Forward, VJP, JVP
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .explain import explain, op_math


def recipe_explanation(name: str, batch: int = 2, seed: int = 0):
    """The Explanation of recipe ``name``'s model on ``batch`` training examples."""
    from ..train import pipeline as P

    recipe = P.get_recipe(name)
    if recipe.model is None:
        raise P.RecipeError(f"recipe {name!r} is a study of several runs; explain one of the "
                            "recipes it composes")
    cfg = recipe.config({})
    data = P.prepare_data(recipe, cfg)
    model = recipe.model(cfg, data, np.random.default_rng(seed))
    loss_fn = recipe.loss(cfg, data) if recipe.loss else P.default_loss(data)
    x, y = data.train[0][:batch], data.train[1][:batch]

    def loss(z):
        try:
            return loss_fn(z, y)
        except (ValueError, TypeError):  # a recipe with its own Step: logits first
            from .. import functional as F
            logits = z[0]
            return F.cross_entropy(logits.reshape((-1, logits.shape[-1])),
                                   np.asarray(y).reshape(-1))

    return explain(model, x, loss_fn=loss, title=f"{name} ({type(model).__name__}, batch "
                   f"{batch})")


def cmd_explain(argv):
    p = argparse.ArgumentParser(prog="tensorcalc explain",
                                description="The mathematics of a recipe's model: its forward "
                                "program, its backward program (each VJP instantiated), a "
                                "summary; --html/--latex for a page or a paper.")
    p.add_argument("recipe")
    p.add_argument("--batch", type=int, default=2, help="example batch size [2]")
    p.add_argument("--collapse", action="store_true", help="one block per layer")
    p.add_argument("--html", metavar="FILE", help="write the HTML page here")
    p.add_argument("--latex", metavar="FILE", nargs="?", const="-",
                   help="LaTeX document (to FILE, or stdout)")
    p.add_argument("--verify", action="store_true",
                   help="evaluate the printed equations independently and compare with the "
                        "engine (exit 1 on a mismatch)")
    a = p.parse_args(argv)
    if a.batch < 1:
        p.error("--batch must be >= 1")
    e = recipe_explanation(a.recipe, a.batch)
    if a.latex == "-":
        print(e.latex())
        return 0
    print(e.text(collapse=a.collapse))
    mlp = e.mlp()
    if mlp and not a.collapse:
        print("\nthe classic MLP view:\n" + mlp)
    if a.latex:
        with open(a.latex, "w", encoding="utf-8") as f:
            f.write(e.latex())
        print(f"\nLaTeX: {a.latex}")
    if a.html:
        e.html(a.html)
        print(f"\nHTML: {a.html}")
    if a.verify:
        res = e.verify()
        print("\n" + str(res))
        return 0 if res.ok else 1
    return 0


def cmd_op(argv):
    from ..autodiff.function import REGISTRY

    p = argparse.ArgumentParser(prog="tensorcalc op",
                                description="One primitive's math, and its numerical check "
                                "(VJP against central differences) run live.")
    p.add_argument("name")
    a = p.parse_args(argv)
    if a.name not in REGISTRY:
        print(f"tensorcalc op: no primitive {a.name!r}; `tensorcalc ops` lists them",
              file=sys.stderr)
        return 2
    m = op_math(a.name)
    print(f"{a.name} ({m['structure']}): {m['summary']}")
    for k in ("Forward", "VJP", "JVP"):
        if k in m:
            print(f"    {k + ':':<9} {m[k]}")
    res = _live_check(a.name)
    print(res)
    return 0 if res.startswith("check: PASS") or res.startswith("check: not run") else 1


def _live_check(name):
    """Explain + verify + gradcheck on a small float64 example of an elementwise or common op."""
    import tensorcalc as tc

    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 1.5, (3, 4))
    w = rng.uniform(0.2, 1.5, (4, 3))
    examples = {
        "affine": (lambda a, b: tc.ops.affine(a, b), (x, w.T.copy())),
        "matmul": (lambda a, b: a @ b, (x, w)),
        "softmax_cross_entropy": (lambda a: tc.softmax_cross_entropy(a, np.eye(4)[[0, 1, 2]]),
                                  (x,)),
    }
    fn = examples.get(name, (None, None))[0]
    args = examples.get(name, (None, None))[1]
    if fn is None:
        f = getattr(tc, name, None)
        if f is None or name in ("reshape", "transpose", "sum_to", "broadcast_to"):
            return "check: not run (no example input for this primitive here; the test " \
                   "suite checks it: tests/op_db.py)"
        if name in ("add", "sub", "mul", "div", "maximum", "minimum", "pow"):
            fn, args = f, (x, x[::-1].copy())
        else:
            fn, args = f, (x,)
    try:
        ok = tc.gradcheck(fn, *args)
        e = explain(lambda *t: fn(*t), *args)
        v = e.verify()
    except Exception as err:  # noqa: BLE001 - reported, not hidden
        return f"check: FAIL ({type(err).__name__}: {err})"
    lines = [f"check: {'PASS' if ok and v.ok else 'FAIL'} on a float64 example {args[0].shape}: "
             "gradcheck (VJP and JVP against central differences) and the instantiated VJP "
             "evaluated independently:"]
    lines += ["    " + b for b in e.backward_lines()]
    lines.append("    " + str(v).splitlines()[0])
    return "\n".join(lines)


def ops_reference(markdown: bool = False) -> str:
    """Every primitive with its structure and its three rules."""
    from ..autodiff.function import REGISTRY

    rows = []
    for name in sorted(REGISTRY):
        m = op_math(name)
        rows.append((name, m["structure"], m["summary"], m.get("Forward", ""), m.get("VJP", ""),
                     m.get("JVP", "")))
    if not markdown:
        out = []
        for r in rows:
            out.append(f"{r[0]} ({r[1]}): {r[2]}")
            for k, v in zip(("Forward", "VJP", "JVP"), r[3:], strict=True):
                if v:
                    out.append(f"    {k + ':':<9} {v}")
        return "\n".join(out)
    out = ["# The primitives", "",
           "Generated by `tensorcalc ops --markdown` from the primitives' docstrings "
           f"({len(rows)} primitives). x̄ is the cotangent of x, ẋ its tangent; every rule is "
           "checked numerically by tests/test_op_suite.py, and `tensorcalc op NAME` runs the "
           "check live.", "",
           "| primitive | structure | Forward | VJP | JVP |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"`{r[0]}`", r[1]] + [c.replace("|", "\\|") for c in r[3:]]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def cmd_ops(argv):
    p = argparse.ArgumentParser(prog="tensorcalc ops",
                                description="Every primitive with its structure and rules.")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (docs/ops.md)")
    a = p.parse_args(argv)
    print(ops_reference(a.markdown))
    return 0
