"""Contract tests: the house rules of DESIGN.md §2/§4 checked mechanically."""

from __future__ import annotations

import ast
import pathlib
import re

from op_db import OPS

import tensorcalc  # noqa: F401  (registers every primitive)
from tensorcalc.autodiff.function import REGISTRY, Bilinear, Elementwise, Linear

PKG = pathlib.Path(tensorcalc.__file__).parent


def test_every_primitive_has_a_spec():
    covered = {c for s in OPS for c in s.covers} | {s.name for s in OPS}
    missing = sorted(set(REGISTRY) - covered)
    assert not missing, f"primitives without a spec in tests/op_db.py: {missing}"


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
