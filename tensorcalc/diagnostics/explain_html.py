"""LaTeX and HTML renderings of an :class:`~tensorcalc.diagnostics.explain.Explanation`.

The HTML page is self-contained: equations as MathML (rendered natively by current browsers, no
script library), the recorded graph as an inline SVG laid out in layers (a node's column is the
length of the longest path from the leaves; Graphviz is not needed), and a small script that shows
a clicked node's Forward / VJP / JVP (the primitive's docstring lines), its instantiated VJP
equations, shapes and module.
"""

from __future__ import annotations

import html
import json

from .explain import LAYER_MATH, op_math

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666} table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
td.sh{font-family:ui-monospace,monospace;color:#555;white-space:nowrap}
td.mod{color:#2c6e9b;font-family:ui-monospace,monospace}
math{font-size:15px} .graph{overflow:auto;border:1px solid #ddd;background:#fcfcfc;max-height:560px}
.node rect{fill:#eef4fb;stroke:#2c6e9b;rx:5} .node.leaf rect{fill:#fff4e5;stroke:#c77700}
.node.const rect{fill:#f2f2f2;stroke:#999} .node.sel rect{stroke-width:3;fill:#d7e8fa}
.node text{font:11px ui-monospace,monospace;pointer-events:none} .node{cursor:pointer}
.edge{stroke:#9aa;stroke-width:1;fill:none}
#panel{border:1px solid #2c6e9b;background:#f7fbff;padding:8px 12px;margin-top:8px;min-height:60px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12.5px}
.cards span{display:inline-block;margin:0 18px 6px 0} .cards b{font-size:18px;display:block}
"""

_JS = """
const D = JSON.parse(document.getElementById('nodes').textContent);
function show(id){
  document.querySelectorAll('.node').forEach(n=>n.classList.remove('sel'));
  const g = document.getElementById('n'+id); if(g) g.classList.add('sel');
  const d = D[id]; let h = '<b>'+d.title+'</b> <span class="sub">'+d.where+'</span><br>';
  if(d.doc) h += '<div class="sub">'+d.doc+'</div>';
  const row = c => '<tr>'+c.map(x=>'<td>'+x+'</td>').join('')+'</tr>';
  if(d.math) h += '<table>'+d.math.map(row).join('')+'</table>';
  if(d.fwd) h += '<div>forward: '+d.fwd+'</div>';
  if(d.bwd && d.bwd.length)
    h += '<div>backward (this graph):</div><table>'+d.bwd.map(r=>row([r])).join('')+'</table>';
  document.getElementById('panel').innerHTML = h;
}
document.querySelectorAll('.node').forEach(n=>n.addEventListener('click',()=>show(n.dataset.id)));
if(location.hash && D[location.hash.slice(1)]) show(location.hash.slice(1));  // page.html#s12
"""


def _m(inner: str, block: bool = False) -> str:
    attr = ' display="block"' if block else ""
    return f"<math{attr}>{inner}</math>"


def _eq_ml(lhs, op, rhs_ml) -> str:
    return _m(f"<mrow>{lhs}<mo>{html.escape(op)}</mo>{rhs_ml}</mrow>")


def _graph_svg(ex) -> tuple[str, dict]:
    """Layered layout of leaves, constants and steps; returns (svg, node data by id)."""
    vals = ex.vals
    col: dict = {}
    items = []  # (id, key, kind, label, sublabel)
    data: dict = {}
    used_consts = set()
    for s in ex.fsteps:
        for k in s.ins:
            if k is not None and vals[k].kind != "value":
                used_consts.add(k)
    for k in sorted(used_consts, key=lambda k: (vals[k].kind != "input", k)):
        v = vals[k]
        col[k] = 0
        nid = f"v{len(items)}"
        items.append((nid, k, "leaf" if v.kind in ("param", "input") else "const",
                      v.sym.text(), str(v.shape)))
        data[nid] = {"title": html.escape(f"{v.sym.text()} — {v.kind}"),
                     "where": html.escape(v.path or ""),
                     "doc": html.escape(f"shape {v.shape}, {v.dtype}")}
    bwd_by_step: dict = {}
    for b in ex.bsteps:
        bwd_by_step.setdefault(b.index, []).append(
            _eq_ml(b.target.mathml(), "+=" if b.accumulate else "=", b.expr.mathml()))
    for s in ex.fsteps:
        c = 1 + max((col.get(k, 0) for k in s.ins if k is not None), default=0)
        col[s.out] = c
        nid = f"s{s.index}"
        v = vals[s.out]
        items.append((nid, s.out, "step", f"{v.sym.text()} {s.op}", str(v.shape)))
        mth = op_math(s.op)
        rows = [[k, html.escape(mth[k])] for k in ("Forward", "VJP", "JVP") if k in mth]
        data[nid] = {"title": html.escape(f"#{s.index} {s.op} → {v.sym.text()} {v.shape} "
                                          f"{v.dtype}"),
                     "where": html.escape(f"[{s.module}] {s.mclass or ''}"
                                          if s.module is not None else ""),
                     "doc": html.escape(f"{mth['structure']}: {mth['summary']}"),
                     "math": rows,
                     "fwd": _eq_ml(v.sym.mathml(), "=", s.expr.mathml()),
                     "bwd": bwd_by_step.get(s.index, [])}
    # rows within a column in order of appearance
    per_col: dict = {}
    pos = {}
    for _nid, k, _kind, _a, _b in items:
        c = col[k]
        r = per_col.get(c, 0)
        per_col[c] = r + 1
        pos[k] = (c, r, nid)
    W, H, GX, GY = 150, 34, 44, 12
    width = (max(per_col) + 1) * (W + GX) + 20
    height = max(per_col.values()) * (H + GY) + 20

    def xy(k):
        c, r, _ = pos[k]
        return 10 + c * (W + GX), 10 + r * (H + GY)

    parts = []
    for s in ex.fsteps:
        x2, y2 = xy(s.out)
        for k in s.ins:
            if k is None or k not in pos:
                continue
            x1, y1 = xy(k)
            parts.append(f'<path class="edge" d="M{x1 + W},{y1 + H / 2} C{x1 + W + GX / 2},'
                         f'{y1 + H / 2} {x2 - GX / 2},{y2 + H / 2} {x2},{y2 + H / 2}"/>')
    for nid, k, kind, a, b in items:
        x, y = xy(k)
        cls = {"step": "node", "leaf": "node leaf", "const": "node const"}[kind]
        parts.append(f'<g class="{cls}" id="n{nid}" data-id="{nid}"><rect x="{x}" y="{y}" '
                     f'width="{W}" height="{H}"/><text x="{x + 6}" y="{y + 14}">'
                     f'{html.escape(a[:22])}</text><text x="{x + 6}" y="{y + 28}" '
                     f'fill="#666">{html.escape(b[:22])}</text></g>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
           + "".join(parts) + "</svg>")
    return svg, data


def html_page(ex) -> str:
    f, b = ex.flops()
    svg, data = _graph_svg(ex)
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>explain: {html.escape(ex.title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>explain: {html.escape(ex.title)}</h1>",
           f"<div class='sub'>{len(ex.fsteps)} primitive ops · {len(ex.leaves)} "
           f"differentiable leaves · {ex.num_parameters():,} parameters</div>",
           "<div class='cards' style='margin-top:10px'>",
           f"<span><b>{f:,}</b>FLOPs forward</span><span><b>{b:,}</b>FLOPs backward</span>",
           f"<span><b>{ex.saved_bytes() / 2**20:.2f} MiB</b>saved for backward</span></div>",
           "<h2>The graph</h2><div class='sub'>Click a node: its primitive's Forward / VJP / JVP"
           " and the backward equations it contributes here. Orange: parameters and inputs; "
           "grey: constants.</div>",
           f"<div class='graph'>{svg}</div><div id='panel' class='sub'>(no node selected)</div>"]
    # names
    out.append("<h2>Names</h2><table><tr><th>name</th><th>what</th><th>module path</th>"
               "<th>shape</th><th>dtype</th></tr>")
    for v in ex.leaves + [v for v in ex.vals.values() if v.kind == "const"]:
        out.append(f"<tr><td>{_m(v.sym.mathml())}</td><td>{v.kind}</td><td class='mod'>"
                   f"{html.escape(v.path or '')}</td><td class='sh'>{v.shape}</td>"
                   f"<td class='sh'>{v.dtype}</td></tr>")
    out.append("</table>")
    # layers
    out.append("<h2>Layers (collapsed view)</h2><table><tr><th>module</th><th>layer</th>"
               "<th>equations</th><th>output</th><th>primitives</th></tr>")
    for blk in ex.layer_blocks():
        eqs = "<br>".join(html.escape(e) for e in blk["equations"])
        ops = ", ".join(s.op for s in blk["steps"])
        out.append(f"<tr><td class='mod'>{html.escape(blk['module'] or '<model>')}</td>"
                   f"<td>{html.escape(blk['mclass'] or '')}</td><td>{eqs}</td>"
                   f"<td class='sh'>{blk['shape']}</td><td class='sub'>{html.escape(ops)}</td>"
                   "</tr>")
    out.append("</table>")
    # forward
    out.append("<h2>Forward program</h2><table>")
    for s in ex.fsteps:
        v = ex.vals[s.out]
        out.append(f"<tr><td><a href='#' onclick='show(\"s{s.index}\");return false'>"
                   f"#{s.index}</a></td><td>{_eq_ml(v.sym.mathml(), '=', s.expr.mathml())}</td>"
                   f"<td class='sh'>{v.shape} {v.dtype}</td><td class='mod'>"
                   f"{html.escape(s.module or '')}</td></tr>")
    out.append("</table>")
    # backward
    out.append(f"<h2>Backward program</h2><div class='sub'>In the order the engine runs it, "
               f"from the seed {html.escape(ex.seed)}; each line is the primitive's VJP "
               "with this graph's names and shapes.</div><table>")
    for bs in ex.bsteps:
        eq = _eq_ml(bs.target.mathml(), "+=" if bs.accumulate else "=", bs.expr.mathml())
        out.append(f"<tr><td>{eq}"
                   f"</td><td class='sh'>{bs.shape}</td><td class='mod'>"
                   f"{html.escape(bs.module or '')}</td><td class='sub'>{bs.op}</td></tr>")
    out.append("</table>")
    mlp = ex.mlp()
    if mlp:
        out.append(f"<h2>The classic MLP view</h2><pre>{html.escape(mlp)}</pre>")
    out.append("<h2>Summary</h2><pre>" + html.escape("\n".join(ex.summary_lines())) + "</pre>")
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    out.append(f"<script type='application/json' id='nodes'>{blob}</script>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out)


def latex_document(ex) -> str:
    lines = [r"\documentclass{article}", r"\usepackage{amsmath,amssymb}",
             r"\usepackage[margin=2cm]{geometry}", r"\begin{document}",
             rf"\section*{{{ex.title}: forward and backward programs}}",
             r"\subsection*{Forward}", r"\begin{align*}"]
    for s in ex.fsteps:
        v = ex.vals[s.out]
        lines.append(rf"{v.sym.latex()} &= {s.expr.latex()} && {_tshape(v.shape)}\\")
    lines += [r"\end{align*}", r"\subsection*{Backward}", r"\begin{align*}"]
    for b in ex.bsteps:
        op = "\\mathrel{+}=" if b.accumulate else "="
        lines.append(rf"{b.target.latex()} &{op} {b.expr.latex()} && {_tshape(b.shape)}\\")
    lines += [r"\end{align*}"]
    blocks = [blk for blk in ex.layer_blocks() if blk["mclass"] in LAYER_MATH]
    if blocks:
        lines.append(r"\subsection*{Layers}\begin{itemize}")
        for blk in blocks:
            lines.append(rf"\item \texttt{{{blk['module']}}} ({blk['mclass']}): "
                         + "; ".join(_tex_text(e) for e in blk["equations"]))
        lines.append(r"\end{itemize}")
    lines.append(r"\end{document}")
    return "\n".join(lines)


def _tshape(s) -> str:
    return r"\text{" + str(tuple(s)) + "}"


def _tex_text(s: str) -> str:
    return r"\text{" + s.replace("_", r"\_").replace("{", "").replace("}", "") + "}"
