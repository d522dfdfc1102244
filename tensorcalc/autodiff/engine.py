"""Reverse mode: walk the recorded program backwards, pulling cotangents through each node's VJP.

Given outputs y with cotangents ȳ, the engine visits nodes in reverse topological order (by
decreasing creation ``seq``, with a heap — iterative, so a chain of 10⁵ ops works), calls each
node's ``vjp`` and accumulates x̄ for every input: a tensor used twice receives the sum of both
contributions (the multivariable chain rule), added into the first's memory where the engine
alone holds that array (:func:`_plus`). For ops that broadcast, x̄ is summed back to x's
shape (``sum_to``, the transpose of ``broadcast_to``). Each x̄ is checked against x's shape and
dtype, naming the op when they differ. After a node's VJP has run, its saved arrays are released
unless ``retain_graph``.
"""

from __future__ import annotations

import heapq
import sys

from ..backend import add_into, xp_of
from ..tensor import Tensor
from . import function as F
from . import mode
from .graph import walk


def zeros_like(x):
    """Zeros shaped like ``x`` (array, Tensor or scalar), of the same kind."""
    T = Tensor
    if isinstance(x, T):
        return T._wrap(xp_of((x.data,)).zeros_like(x.data), None, 0)
    if type(x) in _SCALARS:  # a Python constant operand: a Python zero works on every device
        return type(x)(0)
    return xp_of((x,)).zeros_like(x)


_SCALARS = (float, int, complex)


def _ones_like(x):
    return xp_of((x,)).ones_like(x)


def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x), True
    return [x], False


def _accumulate(a, b):
    return b if a is None else a + b


_getrefcount = sys.getrefcount


def _plus(a, b):
    """a + b for a cotangent slot: written into a's own memory where nothing but the engine
    can see a — an array (not a Tensor: no graph is being recorded) that the caller's slot and
    local name alone reference (4 references with this call's), writeable, whose chain of
    ``base`` arrays each only that view references, of b's shape and dtype — as PyTorch's
    engine accumulates into a buffer it alone holds; a new array otherwise. The bits are the
    same either way (one IEEE addition per value, a's operand first); in place the sum needs
    no new memory, and big arrays go over the kernel pool (backend.add_into)."""
    if type(a) is Tensor or _getrefcount(a) > 4 or getattr(a, "shape", None) != b.shape \
            or a.dtype != b.dtype or not a.flags.writeable:
        return a + b
    base = a.base
    while base is not None:
        if _getrefcount(base) > 3:  # (the view's reference, this name, the call's argument)
            return a + b
        base = getattr(base, "base", None) if hasattr(base, "flags") else False
    if base is False:  # memory owned by some other kind of object
        return a + b
    return add_into(a, b)


def _fit(node, i, gx, x):
    """Bring cotangent ``gx`` to input ``x``'s shape and dtype, or raise naming the op."""
    fn = node.fn
    xshape = x.shape
    if gx.shape != xshape:
        if fn.broadcasts:
            gx = _sum_to().apply(gx, shape=xshape)
        if gx.shape != xshape:
            raise RuntimeError(
                f"{fn.name}: vjp returned a cotangent of shape {tuple(gx.shape)} for input {i} "
                f"of shape {tuple(xshape)}"
            )
    if gx.dtype != x.dtype:
        out = node.out[0] if type(node.out) is tuple else node.out
        if out is not None and out.dtype != x.dtype:
            gx = gx.astype(x.dtype)  # adjoint of the implicit type promotion
        else:
            raise RuntimeError(
                f"{fn.name}: vjp returned a {gx.dtype} cotangent for {x.dtype} input {i}"
            )
    return gx


def _sum_to():
    """The ``sum_to`` primitive, found through the registry (ops sit above the engine)."""
    return F.REGISTRY["sum_to"]


def _check_versions(node):
    for i, (x, v) in enumerate(zip(node.inputs, node.versions, strict=True)):
        if v is not None and x._version != v:
            raise RuntimeError(
                f"{node.fn.name}: input {i} (shape {tuple(x.shape)}) was modified in place after "
                f"it was saved for backward (version {v} -> {x._version}); "
                "use an out-of-place op or clone() it first"
            )
    refs = node.outref if type(node.outref) is tuple else (node.outref,)
    saved = node.outversions or (0,) * len(refs)
    for r, v in zip(refs, saved, strict=True):
        y = r() if r is not None else None
        if y is not None and y._version != v:
            raise RuntimeError(
                f"{node.fn.name}: its output (shape {tuple(y.shape)}) was modified in place after "
                "it was saved for backward; use an out-of-place op or clone() it first"
            )


def _prune(outputs, wrt):
    """For a gradient with respect to ``wrt`` only: each node's ``needs`` restricted to the
    inputs from which some tensor of ``wrt`` can be reached.

    Backward then stops at ``wrt``: it neither differentiates branches that lead elsewhere
    (parameters, when only the input gradient is asked for) nor walks past an intermediate
    ``wrt`` tensor into the graph that produced it — which a nested transform relies on, since
    its input is an alias node of the outer transform's traced value. Returns {node: needs}.
    """
    wrt_leaf = set()
    wrt_out = set()
    for t in wrt:
        if t._node is None:
            wrt_leaf.add(id(t))
        else:
            wrt_out.add((id(t._node), t._index))
    reach: dict = {}
    needs: dict = {}
    for node in walk(outputs):
        eff = []
        anyone = False
        for x, n in zip(node.inputs, node.needs, strict=True):
            ok = False
            if n:
                xn = x._node
                if xn is None:
                    ok = id(x) in wrt_leaf
                else:
                    ok = (id(xn), x._index) in wrt_out or reach[id(xn)]
            eff.append(ok)
            anyone = anyone or ok
        reach[id(node)] = anyone
        needs[node] = tuple(eff)
    return needs


def _output_tensors(node):
    """The node's output(s) as Tensors connected to the graph (for create_graph)."""
    T = Tensor
    refs = node.outref if type(node.outref) is tuple else (node.outref,)
    ys = [r() for r in refs]
    if any(y is None for y in ys):
        # The output Tensor was dropped; recompute it from the (alive) inputs with recording on.
        with mode.enable_grad():
            y = node.fn.apply(*node.inputs, **node.kw)
        return y
    if type(node.out) is tuple:
        return tuple(ys)
    y = ys[0]
    assert isinstance(y, T)
    return y


def run_backward(outputs, grad_outputs, wrt=None, create_graph=False, retain_graph=None,
                 accumulate=False):
    """Core reverse sweep. Returns {id(t): grad} for the tensors in ``wrt`` (or, with
    ``accumulate``, adds into ``.grad`` of every leaf reached)."""
    T = Tensor
    state = mode.state
    if retain_graph is None:
        retain_graph = create_graph
    grads: dict = {}  # node -> cotangent (or list of them for a multi-output node)
    leaf: dict = {}  # id(leaf tensor) -> [tensor, cotangent]
    heap: list = []
    heappush, heappop = heapq.heappush, heapq.heappop
    want_nodes: dict = {}  # node -> list of (index, tensor) for intermediate wrt tensors
    pruned = None
    if wrt is not None:
        for t in wrt:
            if t._node is not None:
                want_nodes.setdefault(t._node, []).append((t._index, t))
        if not accumulate:
            pruned = _prune(outputs, wrt)
    captured: dict = {}

    def push(t, g):
        _push(t, g, grads, leaf, heap)

    for y, g in zip(outputs, grad_outputs, strict=True):
        if create_graph and not isinstance(g, T):
            g = T._wrap(g, None, 0)
        if not create_graph and isinstance(g, T):
            g = g.data
        push(y, g)

    anomaly = state.anomaly
    epoch = mode.versions.inplace_epoch
    prev_mode = state.grad
    state.grad = create_graph
    try:
        while heap:
            node = heappop(heap)[1]
            g = grads.pop(node)
            inputs = node.inputs
            if inputs is None:
                raise RuntimeError(
                    f"backward through the graph a second time ({node.fn.name}): its saved "
                    "arrays were freed; pass retain_graph=True to the first backward"
                )
            if node.epoch != epoch:
                _check_versions(node)
            if want_nodes and node in want_nodes:
                for idx, t in want_nodes[node]:
                    captured[id(t)] = g[idx] if type(g) is list else g
            needs = node.needs
            if pruned is not None:
                needs = pruned[node]
                if True not in needs:  # nothing of wrt lies beyond: left intact, not entered
                    continue
            fn = node.fn
            if type(g) is list:  # multi-output: missing cotangents are zero
                g = tuple(xp_of((o,)).zeros(o.shape, dtype=o.dtype) if gi is None else gi
                          for gi, o in zip(g, node.out, strict=True))
                if create_graph:
                    g = tuple(gi if isinstance(gi, T) else T._wrap(gi, None, 0) for gi in g)
            if create_graph:
                gxs = fn.vjp(g, _output_tensors(node), *inputs, needs=needs, **node.kw)
            else:
                gxs = fn.vjp(g, node.out, *node.datas, needs=needs, **node.kw)
            if anomaly:
                F._check_finite(fn, "backward", tuple(gxs))
            for i, need in enumerate(needs):
                if not need:
                    continue
                gx = gxs[i]
                if gx is None:
                    continue
                x = inputs[i]
                xd = x.data
                if gx.shape != xd.shape or (gx.dtype is not xd.dtype and gx.dtype != xd.dtype):
                    gx = _fit(node, i, gx, x)
                # inline push
                xn = x._node
                if xn is None:
                    e = leaf.get(id(x))
                    if e is None:
                        leaf[id(x)] = [x, gx]
                    else:
                        prev = e[1]
                        e[1] = _plus(prev, gx)  # (prev: a slot and a name, as below)
                elif type(xn.out) is tuple:
                    push(x, gx)
                else:
                    prev = grads.get(xn, _MISSING)
                    if prev is _MISSING:
                        heappush(heap, (-xn.seq, xn))
                        grads[xn] = gx
                    else:
                        grads[xn] = _plus(prev, gx)
            if not retain_graph:
                node.inputs = node.datas = node.out = node.kw = None
    finally:
        state.grad = prev_mode

    if accumulate:
        for t, g in leaf.values():
            if not isinstance(g, T):
                g = T._wrap(g, None, 0)
            t.grad = g if t.grad is None else t.grad + g
        return None
    result = {}
    for t in wrt:
        if t._node is None:
            e = leaf.get(id(t))
            result[id(t)] = None if e is None else e[1]
        else:
            result[id(t)] = captured.get(id(t))
    return result


_MISSING = object()


def _push(t, g, grads, leaf, heap):
    """Add cotangent ``g`` to tensor ``t``'s slot (a leaf, or an output of a node)."""
    node = t._node
    if node is None:
        if t._rg:
            e = leaf.get(id(t))
            if e is None:
                leaf[id(t)] = [t, g]
            else:
                e[1] = e[1] + g
        return
    if type(node.out) is tuple:
        lst = grads.get(node)
        if lst is None:
            lst = grads[node] = [None] * len(node.out)
            heapq.heappush(heap, (-node.seq, node))
        lst[t._index] = _accumulate(lst[t._index], g)
    else:
        prev = grads.get(node, _MISSING)
        if prev is _MISSING:
            heapq.heappush(heap, (-node.seq, node))
            grads[node] = g
        else:
            grads[node] = prev + g


def _default_grad_outputs(outputs, grad_outputs, who):
    if grad_outputs is None:
        gos = []
        for y in outputs:
            if y.data.size != 1:
                raise RuntimeError(
                    f"{who}: output of shape {tuple(y.shape)} is not a scalar; pass "
                    "grad_outputs (the cotangent ȳ, same shape as the output)"
                )
            gos.append(_ones_like(y.data))
        return gos
    gos, _ = _as_list(grad_outputs)
    if len(gos) != len(outputs):
        raise ValueError(f"{who}: {len(outputs)} outputs but {len(gos)} grad_outputs")
    T = Tensor
    fixed = []
    for y, g in zip(outputs, gos, strict=True):
        if g is None:
            g = _ones_like(y.data)
        elif not isinstance(g, T):
            g = xp_of((y.data,)).asarray(g, dtype=y.dtype)
        if tuple(g.shape) != tuple(y.shape):
            raise ValueError(
                f"{who}: grad_output of shape {tuple(g.shape)} for output of shape "
                f"{tuple(y.shape)}"
            )
        fixed.append(g)
    return fixed


def _check_outputs(outputs, who):
    T = Tensor
    for y in outputs:
        if not isinstance(y, T):
            raise TypeError(f"{who}: outputs must be Tensors, got {type(y).__name__}")
        if not y._rg:
            raise RuntimeError(
                f"{who}: output does not require grad (no input required grad, or it was "
                "computed under no_grad)"
            )


def gradients(outputs, wrt, grad_outputs=None, create_graph=False, retain_graph=None,
              allow_unused=True):
    """d(outputs)/d(wrt) contracted with ``grad_outputs``: the vector-Jacobian product.

    Returns one gradient per tensor in ``wrt`` (a single one if ``wrt`` is a Tensor). With
    ``create_graph=True`` the gradients are themselves differentiable. An input the outputs do
    not depend on gets ``None`` (or an error if ``allow_unused`` is False).
    """
    outs, _ = _as_list(outputs)
    wrts, many = _as_list(wrt)
    _check_outputs(outs, "gradients")
    gos = _default_grad_outputs(outs, grad_outputs, "gradients")
    res = run_backward(outs, gos, wrt=wrts, create_graph=create_graph,
                       retain_graph=retain_graph)
    T = Tensor
    out = []
    for t in wrts:
        g = res[id(t)]
        if g is None and not allow_unused:
            raise RuntimeError(f"gradients: an input of shape {tuple(t.shape)} was not used")
        if g is not None and not isinstance(g, T):
            g = T._wrap(g, None, 0)
        out.append(g)
    return out if many else out[0]


def backward(tensor, grad_output=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensor)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
    outs = [tensor]
    if grad_output is None and tensor._node is not None and tensor.data.size == 1:
        gos = [_ones_like(tensor.data)]  # the common case: a scalar loss
    else:
        _check_outputs(outs, "backward")
        gos = _default_grad_outputs(outs, None if grad_output is None else [grad_output],
                                    "backward")
    run_backward(outs, gos, create_graph=create_graph, retain_graph=retain_graph,
                 accumulate=True)
