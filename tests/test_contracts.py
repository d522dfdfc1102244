"""Contract tests: the house rules of DESIGN.md §2/§4 checked mechanically."""

from __future__ import annotations

import ast
import pathlib
import re

from op_db import OPS

import tensorcalc  # noqa: F401  (registers every primitive)
from tensorcalc.autodiff.function import REGISTRY, Bilinear, Elementwise, Function, Linear

PKG = pathlib.Path(tensorcalc.__file__).parent


def test_every_primitive_has_a_spec():
    covered = {c for s in OPS for c in s.covers} | {s.name for s in OPS}
    missing = sorted(set(REGISTRY) - covered)
    assert not missing, f"primitives without a spec in tests/op_db.py: {missing}"


def test_every_primitive_has_special_values_in_its_own_spec():
    """Its own spec: the one named after it, or whose ``covers`` starts with it."""
    have = {n for s in OPS if s.special for n in (s.name, *s.covers[:1])}
    missing = sorted(set(REGISTRY) - have)
    assert not missing, f"primitives without special values in tests/op_db.py: {missing}"


# The modules that may define Function subclasses besides ops/: the engine's own base
# structures, and the class behind tc.custom_vjp.
_ENGINE_MODULES = {"tensorcalc.autodiff.function", "tensorcalc.autodiff.custom",
                   "tensorcalc.autodiff.transforms"}


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_function_subclass_lives_in_ops():
    import tensorcalc.autodiff.custom  # noqa: F401  (custom_vjp's class, allowed)

    for cls in _all_subclasses(Function):
        mod = cls.__module__
        if not mod.startswith("tensorcalc"):
            continue  # deliberately wrong classes defined inside tests
        assert mod.startswith("tensorcalc.ops.") or mod in _ENGINE_MODULES, \
            f"{cls.__qualname__} (a Function) is defined in {mod}: primitives live in ops/"
    for name, cls in REGISTRY.items():
        assert cls.__module__.startswith("tensorcalc.ops."), \
            f"primitive {name!r} is registered from {cls.__module__}, not from ops/"


def _function_bases(tree):
    """Names (and module aliases) through which a module reaches autodiff.function."""
    names, aliases = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.endswith("function") and "autodiff" in node.module or \
                    node.level and node.module == "function":
                names |= {a.asname or a.name for a in node.names}
            elif node.module.endswith("autodiff"):
                aliases |= {a.asname or a.name for a in node.names if a.name == "function"}
        elif isinstance(node, ast.ImportFrom) and node.level and not node.module:
            aliases |= {a.asname or a.name for a in node.names if a.name == "function"}
    return names, aliases


def test_no_function_subclass_is_written_outside_ops():
    """Static: also modules nothing has imported (class X(Function), class Y(F.Elementwise))."""
    allowed = {PKG / "autodiff" / f for f in ("function.py", "custom.py", "transforms.py")}
    for path in PKG.rglob("*.py"):
        if (PKG / "ops") in path.parents or path in allowed:
            continue
        tree = ast.parse(path.read_text())
        names, aliases = _function_bases(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for b in node.bases:
                hit = (isinstance(b, ast.Name) and b.id in names) or (
                    isinstance(b, ast.Attribute) and isinstance(b.value, ast.Name)
                    and b.value.id in aliases)
                assert not hit, f"{path}: class {node.name} derives from the engine's Function " \
                    "structures; primitives live in ops/ (or use tc.custom_vjp)"


def test_every_primitive_has_the_three_docstring_lines():
    for name, cls in REGISTRY.items():
        doc = cls.__doc__ or ""
        for key in ("Forward:", "VJP:", "JVP:"):
            assert re.search(rf"^\s*{key}\s+\S", doc, re.M), f"{name}: docstring lacks '{key}'"


def test_every_primitive_declares_its_rules():
    for name, cls in REGISTRY.items():
        assert "forward" in vars(cls) or any("forward" in vars(b) for b in cls.__mro__[1:-2])
        if issubclass(cls, Elementwise):
            assert hasattr(cls, "derivative"), name
        elif issubclass(cls, (Linear, Bilinear)):
            assert any("vjp" in vars(b) for b in cls.__mro__ if b not in (Linear, Bilinear)), name
        else:
            assert hasattr(cls, "vjp") and hasattr(cls, "jvp"), name


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_ops_never_import_numpy():
    for path in (PKG / "ops").glob("*.py"):
        bad = [m for m in _imports(path) if m.split(".")[0] in ("numpy", "scipy", "cupy")]
        assert not bad, f"{path.name} imports {bad}: ops receive xp instead"


def test_no_derivative_code_outside_ops():
    pat = re.compile(r"def\s+(vjp|jvp|derivative)\s*\(")
    for sub in ("functional", "nn", "optim", "models", "train", "data", "recipes"):
        for path in (PKG / sub).rglob("*.py"):
            assert not pat.search(path.read_text()), f"{path} defines a derivative rule"
