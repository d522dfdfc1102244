"""Pytrees: nested dicts, lists and tuples whose leaves are arrays, Tensors or numbers.

The transforms (``grad``, ``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``hvp``) take and return
pytrees, as JAX and torch.func do: ``tc.grad(loss)(params)`` with ``params`` a dict of arrays
returns a dict of gradients with the same keys. ``None`` is an empty subtree (no leaves).

    leaves, tree = tree_flatten({"w": w, "b": [b1, b2]})   # leaves [w, b1, b2]
    tree_unflatten(tree, [gw, gb1, gb2])                   # {"w": gw, "b": [gb1, gb2]}

Dicts keep their insertion order; tuples keep their type (named tuples included).
"""

from __future__ import annotations

__all__ = ["tree_flatten", "tree_unflatten", "tree_map", "TreeDef"]


class TreeDef:
    """The structure of a pytree without its leaves."""

    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind, meta=None, children=()):
        self.kind = kind          # "leaf" | "none" | "dict" | "list" | "tuple"
        self.meta = meta          # dict keys, or the tuple type
        self.children = children

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    @property
    def is_leaf(self) -> bool:
        return self.kind == "leaf"

    def __eq__(self, other):
        return (isinstance(other, TreeDef) and self.kind == other.kind
                and self.meta == other.meta and self.children == other.children)

    def __hash__(self):
        return hash((self.kind, str(self.meta), self.children))

    def __repr__(self):
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":
            body = ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.meta, self.children,
                                                             strict=True))
            return "{" + body + "}"
        inner = ", ".join(repr(c) for c in self.children)
        return f"[{inner}]" if self.kind == "list" else f"({inner})"


_LEAF = TreeDef("leaf")


def tree_flatten(tree) -> tuple[list, TreeDef]:
    """The leaves of ``tree`` in order, and its structure."""
    leaves: list = []

    def go(x):
        if x is None:
            return TreeDef("none")
        if isinstance(x, dict):
            keys = tuple(x)
            return TreeDef("dict", keys, tuple(go(x[k]) for k in keys))
        if isinstance(x, list):
            return TreeDef("list", None, tuple(go(v) for v in x))
        if isinstance(x, tuple):
            return TreeDef("tuple", type(x), tuple(go(v) for v in x))
        leaves.append(x)
        return _LEAF

    return leaves, go(tree)


def tree_unflatten(treedef: TreeDef, leaves):
    """Rebuild a pytree of structure ``treedef`` from ``leaves`` (in flatten order)."""
    it = iter(leaves)

    def go(d):
        if d.kind == "leaf":
            return next(it)
        if d.kind == "none":
            return None
        if d.kind == "dict":
            return {k: go(c) for k, c in zip(d.meta, d.children, strict=True)}
        vals = [go(c) for c in d.children]
        if d.kind == "list":
            return vals
        t = d.meta
        return t(*vals) if hasattr(t, "_fields") else t(vals)

    out = go(treedef)
    rest = list(it)
    if rest:
        raise ValueError(f"tree_unflatten: {len(rest)} leaves too many for {treedef!r}")
    return out


def tree_map(fn, tree, *rest):
    """``fn`` applied leaf by leaf to ``tree`` (and to the matching leaves of ``rest``)."""
    leaves, d = tree_flatten(tree)
    others = []
    for r in rest:
        lr, dr = tree_flatten(r)
        if dr != d:
            raise ValueError(f"tree_map: structures differ: {d!r} and {dr!r}")
        others.append(lr)
    return tree_unflatten(d, [fn(*xs) for xs in zip(leaves, *others, strict=True)])
