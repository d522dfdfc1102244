"""Forward mode: trace the program once, then push tangents through it in evaluation order.

For y = f(x) and a tangent ẋ, ẏ = J ẋ. The program is recorded as usual (primals marked as
requiring grad); its nodes between the primals and the outputs are then visited by increasing
``seq`` (creation order is an evaluation order), and each node's ``jvp`` maps its inputs'
tangents to its output's. Tangents of inputs outside the traced region are zero (``None``).

Because the recorded program may itself contain backward nodes (a gradient computed with
``create_graph=True``), pushing tangents through ``grad(f)`` gives forward-over-reverse
Hessian-vector products.
"""

from __future__ import annotations

from ..tensor import Tensor
from . import function as F
from . import mode
from .graph import walk


def push_tangents(primals, tangents, outputs, create_graph=False, since=0):
    """Given traced ``outputs`` of ``primals``, return the output tangents J·tangents.

    ``since``: a node sequence number no larger than that of any node depending on the primals
    (nodes older than it are not visited).
    """
    tan: dict = {}  # id(primal) -> its tangent
    for p, t in zip(primals, tangents, strict=True):
        tan[id(p)] = t
    node_tan: dict = {}

    def tangent_of(x):
        if not isinstance(x, Tensor):
            return None
        t = tan.get(id(x))
        if t is not None or x._node is None:
            return t
        v = node_tan.get(id(x._node))
        if v is None:
            return None
        return v[x._index] if type(x._node.out) is tuple else v

    with mode.set_grad_enabled(create_graph):
        # the nodes between the primals and the outputs; the walk stops at the primals (one may
        # be an alias node of an outer transform's variable) and at nodes older than them
        for node in walk(outputs, stop=primals, since=since):
            dxs = tuple(tangent_of(x) for x in node.inputs)
            if all(d is None for d in dxs):
                continue
            if create_graph:
                ins = node.inputs
                from .engine import _output_tensors

                y = _output_tensors(node)
            else:
                ins = node.datas
                dxs = tuple(d.data if isinstance(d, Tensor) else d for d in dxs)
                y = node.out
            dy = node.fn.jvp(dxs, y, *ins, **node.kw)
            node_tan[id(node)] = _fit_tangent(node, dy)
    return [tangent_of(y) for y in outputs]


def _fit_tangent(node, dy):
    """Broadcast a tangent up to its output's shape (an op whose inputs broadcast)."""
    if type(node.out) is tuple or dy is None:
        return dy
    if tuple(dy.shape) != tuple(node.out.shape):
        dy = F.REGISTRY["broadcast_to"].apply(dy, shape=tuple(node.out.shape))
    if dy.dtype != node.out.dtype:
        dy = F.REGISTRY["cast"].apply(dy, dtype=node.out.dtype)
    return dy
