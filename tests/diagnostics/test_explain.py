"""tc.explain: the programs it prints (every op and shape of the MLP and LeNet-5 recipes' graphs),
verify() against the engine for every shipped recipe's model and for random compositions of
primitives, and verify() failing when a rule is deliberately broken."""

import importlib
import inspect
import re
import unicodedata

import numpy as np
import pytest

import tensorcalc as tc
import tensorcalc.functional as F
from tensorcalc.autodiff.function import REGISTRY
from tensorcalc.diagnostics.explain import RULES, explain, mlp_gradients
from tensorcalc.models import LeNet5, build_mlp

X = importlib.import_module("tensorcalc.diagnostics.explain")  # tc.explain is the function


def _mlp_case(batch=3):
    m = build_mlp(784, (256, 128), 10, np.random.default_rng(0))
    x = np.random.default_rng(1).random((batch, 784)).astype(np.float32)
    y = np.array([3, 4, 1][:batch])
    return m, x, y


def test_mlp_program_ops_and_shapes():
    m, x, y = _mlp_case()
    e = explain(m, x, loss_fn=lambda z: F.cross_entropy(z, y))
    fwd = [(s.op, e.vals[s.out].shape, s.module) for s in e.fsteps]
    assert fwd == [("affine", (3, 256), "0"), ("relu", (3, 256), "1"),
                   ("affine", (3, 128), "2"), ("relu", (3, 128), "3"),
                   ("affine", (3, 10), "4"), ("softmax_cross_entropy", (3,), None),
                   ("sum", (), None)]
    text = e.text()
    assert "z₁ = x W₁ᵀ + b₁" in text and "a₁ = relu(z₁)" in text
    # the backward program in engine order: each line its VJP, instantiated, with its shape
    back = [(e._beq(b), b.shape) for b in e.bsteps]
    back = [(unicodedata.normalize("NFC", s), sh) for s, sh in back]
    assert ("z̄₂ = ā₂ ⊙ 1[z₂ > 0]", (3, 128)) in back
    assert ("W̄₁ = z̄₁ᵀ x", (256, 784)) in back
    assert ("b̄₃ = sum(z̄₃, axis=0)", (10,)) in back
    assert [b.target.text() for b in e.bsteps][:3] == ["t̄₁", "z̄₃", "ā₂"]
    # every parameter's cotangent shape is the parameter's shape
    shapes = {b.target.text(): b.shape for b in e.bsteps}
    for path, p in m.named_parameters():
        sym = next(v.sym for v in e.leaves if v.path == path)
        assert shapes[sym.barred().text()] == p.shape
    assert e.num_parameters() == m.num_parameters() == 235_146
    f, b = e.flops()
    assert f == 2 * 3 * (784 * 256 + 256 * 128 + 128 * 10) + 3 * 256 + 3 * 128 + 5 * 30 + 3
    assert b > f
    assert "FLOPs: forward" in text and "largest tensors" in text


def test_lenet_program_ops_and_shapes():
    m = LeNet5(1, 10, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).random((2, 1, 28, 28)).astype(np.float32)
    y = np.array([1, 7])
    e = explain(m, x, loss_fn=lambda z: F.cross_entropy(z, y))
    # every recorded op and its output shape, checked against the engine's own trace
    g = tc.autodiff.graph.trace(F.cross_entropy(m(tc.tensor(x)), y), m)
    assert [(s.op, e.vals[s.out].shape, s.module) for s in e.fsteps] == \
        [(s.op, s.shapes[0], s.module) for s in g.steps]
    ops = e.ops
    assert ops["conv2d"] == 2 and ops["max_pool2d"] == 2 and ops["affine"] == 3 \
        and ops["relu"] == 4
    conv2 = [s for s in e.fsteps if s.op == "conv2d"][1]
    assert e.vals[conv2.out].shape == (2, 16, 10, 10)
    back = {unicodedata.normalize("NFC", e._beq(b)) for b in e.bsteps}
    pat = unicodedata.normalize("NFC", r"t̄[₀-₉]+ = conv_transpose\(z̄₂, W₂, size=\(2, 6, 14, 14\)")
    assert any(re.match(pat, s) for s in back), back
    collapsed = e.text(collapse=True)
    assert "[features.0] Conv2d" in collapsed and "[classifier.1] Linear" in collapsed
    assert re.search(r"z₃ = t[₀-₉]+ W₃ᵀ \+ b₃", collapsed)
    assert e.verify().ok


# Every shipped recipe with a model (new recipes join automatically); a study or RL recipe
# without one (dqn, mdp, ...) is explained from Python with its own example inputs.
SMALL = {"limit": 64}
# ode-mnist's default ODE block differentiates by the adjoint ODE at rtol = atol = 1e-3: that
# rule is exact only to the solver's tolerance, and central differences through an adaptive
# solver are noisy at that level, so its numerical check reports the adjoint's error (about
# 10 %); here it runs backpropagation through the solver (every step interpreted). The adjoint
# custom_vjp itself is checked on ode-spiral (to 1e-8).
OVERRIDES = {"ode-mnist": {"adjoint": False}}
SLOW = {"localization"}  # its data builder draws every canvas (~20 s on 2 shared cores)


def _recipes_with_models():
    from tensorcalc.train import pipeline as P
    P._discover()
    return sorted(r.name for r in P.list_recipes() if r.model is not None)


def _recipe_case(name):
    from tensorcalc.train import pipeline as P
    recipe = P.get_recipe(name)
    over = {k: v for k, v in SMALL.items() if k in recipe.config({})}
    over.update(OVERRIDES.get(name, {}))
    try:
        cfg = recipe.config(over)
        data = P.prepare_data(recipe, cfg)
    except P.RecipeError:  # char-lstm refuses --limit 64 (its windows/targets off by one)
        cfg = recipe.config(OVERRIDES.get(name, {}))
        data = P.prepare_data(recipe, cfg)
    model = recipe.model(cfg, data, np.random.default_rng(0))
    vae = "eps" in inspect.signature(model.forward).parameters
    if recipe.evaluate is not None and not vae:  # RL: Q-values of random observations
        lin = next(m for m in model.modules() if type(m).__name__ == "Linear")
        x = np.random.default_rng(1).standard_normal((2, lin.in_features)).astype(np.float32)
        return model, (x,), lambda q: (q * q).mean()
    loss_fn = recipe.loss(cfg, data) if recipe.loss else P.default_loss(data)
    x, y = data.train[0][:2], data.train[1][:2]
    args = (x,)
    if vae:  # a VAE: the noise is an input
        mu = model.encode(tc.tensor(x))[0]
        args = (x, np.random.default_rng(2).standard_normal(mu.shape).astype(np.float32))

    def loss(z):
        try:
            return loss_fn(z, y)
        except (ValueError, TypeError, AttributeError):  # a recipe with its own Step
            first = z[0] if isinstance(z, tuple) else z
            if first.ndim >= 2 and np.issubdtype(np.asarray(y).dtype, np.integer):
                return F.cross_entropy(first.reshape((-1, first.shape[-1])),  # char-lstm
                                       np.asarray(y).reshape(-1))
            return sum((t * t).mean() for t in (z if isinstance(z, tuple) else (z,)))

    return model, args, loss


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in _recipes_with_models()])
def test_verify_every_recipe_model(name):
    model, args, loss = _recipe_case(name)
    e = explain(model, *args, loss_fn=loss)
    assert len(e.fsteps) > 0 and e.bsteps
    res = e.verify()
    assert res.ok, str(res)
    assert len(res.rows) == len([p for p in model.parameters() if p.requires_grad])
    # an op without an interpreter rule (a fused scan, a custom_vjp) is checked numerically
    assert {c[0] for c in res.checks} == set(e.opaque)


def test_the_recipe_list_is_not_empty():
    assert {"mlp", "lenet", "resnet", "vgg", "inception"} <= set(_recipes_with_models())


_UNARY = [tc.tanh, tc.sigmoid, tc.relu, tc.exp, tc.sin, tc.cos, tc.softplus, tc.atan, tc.erf,
          lambda t: tc.log1p(t * t), lambda t: tc.sqrt(t * t + 1), lambda t: t ** 3,
          tc.abs, lambda t: -t, lambda t: tc.expm1(t * 0.5)]
_BINARY = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b,
           lambda a, b: a / (b * b + 1), tc.maximum, tc.minimum,
           lambda a, b: tc.pow(a * a + 1, b)]
_REDUCE = [lambda t: t.sum(axis=1, keepdims=True), lambda t: tc.logsumexp(t, axis=1,
                                                                             keepdims=True),
           lambda t: t.max(axis=1, keepdims=True), lambda t: t.reshape((3, 4)).transpose(),
           lambda t: tc.concat([t, t * 2], axis=1)[:, 1:4]]


@pytest.mark.parametrize("seed", range(12))
def test_verify_random_compositions(seed):
    rng = np.random.default_rng(seed)
    a0, b0 = rng.standard_normal((4, 3)), rng.standard_normal((1, 3))
    w0 = rng.standard_normal((3, 3))

    def f(a, b, w):
        vals = [a, b, a @ w]
        for _ in range(6):
            kind = rng.integers(3)
            if kind == 0:
                vals.append(_UNARY[rng.integers(len(_UNARY))](vals[rng.integers(len(vals))]))
            elif kind == 1:
                i, j = rng.integers(len(vals), size=2)
                vals.append(_BINARY[rng.integers(len(_BINARY))](vals[i], vals[j]))
            else:
                t = vals[rng.integers(len(vals))]
                if t.shape == (4, 3):
                    r = _REDUCE[rng.integers(len(_REDUCE))](t)
                    if r.shape == (3, 4):
                        r = r.transpose()
                    vals.append(r)
        out = vals[-1]
        for v in vals[2:-1]:
            out = out + v.sum() * 0.1
        return (out * out).sum()

    e = explain(f, a0, b0, w0)
    res = e.verify()
    assert res.ok, str(res) + "\n" + e.text()
    assert res.tol == 1e-9  # float64 in: the interpreter and the engine agree to rounding


def test_verify_fails_when_an_engine_rule_is_broken(monkeypatch):
    m, x, y = _mlp_case()
    relu = REGISTRY["relu"]
    rule = relu.vjp  # the engine's rule (its own fused VJP), halved

    def broken(*a, **k):
        out = rule(*a, **k)
        return tuple(None if g is None else g * 0.5 for g in out) if isinstance(out, tuple) \
            else out * 0.5

    monkeypatch.setattr(relu, "vjp", staticmethod(broken))
    res = explain(m, x, loss_fn=lambda z: F.cross_entropy(z, y)).verify()
    assert not res.ok
    bad = {r[1] for r in res.rows if r[3] > res.tol}
    # the broken ReLU sits between layers 0 and 2: layers 0 and 2 are wrong, the last is not
    assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= bad
    assert "4.weight" not in bad


def test_verify_fails_when_a_printed_equation_is_wrong(monkeypatch):
    monkeypatch.setitem(RULES, "tanh", lambda c: {0: X.Bin("⊙", c.g, c.y)})
    e = explain(lambda a: tc.tanh(a).sum(), np.linspace(-1, 1, 5))
    # the wrong equation is the one printed, and verify() catches it
    assert unicodedata.normalize("NFC", "x̄ = ā₁ ⊙ a₁") in e.text()
    res = e.verify()
    assert not res.ok and res.max_error > 0.1


def test_every_primitive_has_a_rule_or_is_declared_unsupported():
    # every Elementwise / Linear / Bilinear primitive (all but the FFT pair) is evaluated by the
    # interpreter; the others missing are fused or decomposition ops (eigh, svd, lstm_scan, ...)
    missing = {n for n in set(REGISTRY) - set(RULES)
               if X.op_math(n)["structure"] != "Function" and n not in ("rfft2", "irfft2")}
    assert not missing, missing
    for n in ("affine", "softmax_cross_entropy", "logsumexp", "max", "inv", "solve"):
        assert n in RULES


def test_mlp_index_form_and_its_delta_recursion():
    m, x, y = _mlp_case()
    view = explain(m, x).mlp()
    assert "zˡⱼ = Σₖ wˡⱼₖ aˡ⁻¹ₖ + bˡⱼ" in view and "∂C/∂wˡⱼₖ = aˡ⁻¹ₖ δˡⱼ" in view
    assert "n⁰ = 784 → n¹ = 256 → n² = 128 → n³ = 10" in view
    # the δ recursion, evaluated, gives the engine's gradients
    params = dict(m.named_parameters())
    loss = F.cross_entropy(m(tc.tensor(x)), y)
    grads = tc.autodiff.engine.gradients(loss, list(params.values()))
    z = m(tc.tensor(x)).data.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(10)[y]) / len(y)
    mine = mlp_gradients(m, x, delta)
    for (k, _), g in zip(params.items(), grads, strict=True):
        np.testing.assert_allclose(mine[k], g, rtol=1e-3, atol=1e-6)
    assert explain(LeNet5(1, 10, rng=0), np.zeros((1, 1, 28, 28), np.float32)).mlp() is None


def test_latex_and_html_renderings(tmp_path):
    m, x, y = _mlp_case(2)
    e = explain(m, x, loss_fn=lambda z: F.cross_entropy(z, y))
    tex = e.latex()
    assert tex.startswith(r"\documentclass") and r"\bar{z}_{2}" in tex and r"\odot" in tex
    assert tex.count(r"\begin{align*}") == tex.count(r"\end{align*}") == 2
    page = e.html(str(tmp_path / "e.html"))
    assert (tmp_path / "e.html").read_text(encoding="utf-8") == page
    assert page.count("<math") >= len(e.fsteps) + len(e.bsteps)
    assert "<svg" in page and page.count('class="node') >= len(e.fsteps) + len(e.leaves)
    assert "x̄ = ȳ ⊙ [x &gt; 0]" in page  # the relu docstring's VJP line, shown on click


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "RNN"])
def test_fused_scans_are_checked_numerically_and_a_broken_rule_fails(layer, monkeypatch):
    m = getattr(tc.nn, layer)(5, 7, rng=0)
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)

    def loss(out):
        return ((out[0] if isinstance(out, tuple) else out) ** 2).sum()

    e = explain(m, x, loss_fn=loss)
    op = {"LSTM": "lstm_scan", "GRU": "gru_scan", "RNN": "rnn_scan"}[layer]
    assert e.opaque == [op]
    res = e.verify()
    assert res.ok and res.checks[0][0] == op and res.checks[0][2] < 1e-5, str(res)
    assert "central differences" in str(res)
    cls = REGISTRY[op]
    vjp = cls.vjp
    monkeypatch.setattr(cls, "vjp", staticmethod(
        lambda *a, **k: tuple(None if g is None else g * 1.01 for g in vjp(*a, **k))))
    bad = explain(m, x, loss_fn=loss).verify()
    assert not bad.ok and bad.checks[0][2] > 1e-3, str(bad)


def test_a_custom_vjp_is_checked_against_its_forward():
    @tc.custom_vjp
    def cube(x):
        return x ** 3

    def fwd(x):
        return x ** 3, x

    def right(x, g):
        return (3 * x * x * g,)

    def wrong(x, g):  # a straight-through rule: not the derivative, and verify() says so
        return (g,)

    x = np.linspace(-1, 1, 6)
    cube.defvjp(fwd, right)
    res = explain(lambda a: (tc.sin(cube(a)) ** 2).sum(), x).verify()
    assert res.ok and res.checks[0][0] == "custom_vjp" and res.checks[0][2] < 1e-6
    cube.defvjp(fwd, wrong)
    res = explain(lambda a: (tc.sin(cube(a)) ** 2).sum(), x).verify()
    assert not res.ok and "BAD VJP[custom_vjp]" in str(res)
