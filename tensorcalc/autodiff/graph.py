"""One walk over a recorded graph, and a readable view of it.

Every consumer of the tape — forward mode (tangents pushed in evaluation order), the engine's
pruning of a gradient to the requested variables, the transforms' test for outer variables, and
the diagnostics (explain, curvature) — needs the same thing: the nodes between some outputs and
some stopping points, in evaluation order. :func:`walk` is that walk (iterative, so a 10⁵-node
RNN graph is fine).

:func:`trace` turns it into a :class:`Graph` a person can read in the model's own terms: each
step's op, input and output shapes and dtypes, and the path of the module that produced it
(``layers.2``, from the :class:`~tensorcalc.nn.Module` that was running when the node was
recorded)::

    g = tc.autodiff.graph.trace(loss, model)
    print(g)          # #0 matmul  (32, 784) @ (784, 256) -> (32, 256)   [layers.0] ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tensor import Tensor

__all__ = ["walk", "trace", "Graph", "Step"]


def walk(outputs, *, stop=(), since: int = 0, freed: str = "raise") -> list:
    """The nodes that produced ``outputs``, in creation (= evaluation) order.

    ``stop``: tensors whose producing nodes are not entered (a transform's variables);
    ``since``: nodes created before this sequence number are not entered; ``freed``: what to do
    at a node whose saved arrays backward has freed — "raise" or "skip".
    """
    stop_ids = {id(t) for t in stop}
    seen: dict = {}
    stack = [y._node for y in outputs
             if isinstance(y, Tensor) and y._node is not None and id(y) not in stop_ids
             and y._node.seq >= since]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        if node.inputs is None:
            if freed == "skip":
                continue
            raise RuntimeError(
                f"the graph at {node.fn.name} was already freed by backward; pass "
                "retain_graph=True to the backward that ran before"
            )
        seen[id(node)] = node
        for x in node.inputs:
            if (isinstance(x, Tensor) and x._node is not None and id(x) not in stop_ids
                    and x._node.seq >= since and id(x._node) not in seen):
                stack.append(x._node)
    return sorted(seen.values(), key=lambda n: n.seq)


def _shape_of(x):
    return tuple(getattr(x, "shape", ()))


@dataclass
class Step:
    """One recorded op, as :func:`trace` shows it."""

    index: int
    op: str
    inputs: list            # per positional input: ("leaf", name, shape) | ("step", i, shape)
                            # | ("const", None, shape)
    shapes: list            # output shape(s)
    dtype: str
    module: str | None      # path of the module that produced it ("" = the root model)
    kw: dict = field(default_factory=dict)

    def __str__(self):
        ins = []
        for kind, ref, shape in self.inputs:
            if kind == "step":
                ins.append(f"#{ref}{shape}")
            elif kind == "leaf":
                ins.append(f"{ref}{shape}")
            else:
                ins.append(f"const{shape}")
        outs = ", ".join(str(s) for s in self.shapes)
        where = f"   [{self.module or '<model>'}]" if self.module is not None else ""
        return f"#{self.index:<4} {self.op:<22} {', '.join(ins)} -> {outs} {self.dtype}{where}"


class Graph:
    """The recorded program behind some outputs: ``steps`` in evaluation order."""

    def __init__(self, steps, leaves):
        self.steps = steps
        self.leaves = leaves          # {name: shape} of the leaves that require grad

    def __len__(self):
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    def ops(self) -> dict:
        """How many times each op occurs."""
        out: dict = {}
        for s in self.steps:
            out[s.op] = out.get(s.op, 0) + 1
        return out

    def __str__(self):
        head = f"graph: {len(self.steps)} ops, {len(self.leaves)} differentiable leaves"
        return "\n".join([head] + [str(s) for s in self.steps])


def trace(outputs, model=None, *, names: dict | None = None) -> Graph:
    """The graph behind ``outputs`` (a Tensor or a list), readable: ops, shapes, and — given the
    ``model`` that ran — module paths and parameter names for the leaves. ``names`` maps extra
    leaf tensors to names (``{"x": x}``)."""
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    nodes = walk(outs)
    mod_path: dict = {}
    leaf_name: dict = {}
    if model is not None and hasattr(model, "named_modules"):
        for path, m in model.named_modules():
            mod_path[id(m)] = path
        for path, p in model.named_parameters():
            leaf_name[id(p)] = path
    for k, v in (names or {}).items():
        leaf_name[id(v)] = k
    index = {id(n): i for i, n in enumerate(nodes)}
    steps = []
    leaves: dict = {}
    for i, node in enumerate(nodes):
        ins = []
        for x in node.inputs:
            if isinstance(x, Tensor) and x._node is not None and id(x._node) in index:
                ins.append(("step", index[id(x._node)], _shape_of(x)))
            elif isinstance(x, Tensor) and x._rg:
                name = leaf_name.get(id(x)) or f"leaf{len(leaves)}"
                leaf_name[id(x)] = name
                leaves[name] = _shape_of(x)
                ins.append(("leaf", name, _shape_of(x)))
            else:
                ins.append(("const", None, _shape_of(x)))
        out = node.out if type(node.out) is tuple else (node.out,)
        module = None
        if node.module is not None:
            module = mod_path.get(id(node.module), type(node.module).__name__)
        steps.append(Step(i, node.fn.name, ins, [_shape_of(o) for o in out],
                          str(getattr(out[0], "dtype", "")), module,
                          {k: v for k, v in (node.kw or {}).items()
                           if isinstance(v, (int, float, str, tuple, bool, type(None)))}))
    return Graph(steps, leaves)
