"""tensorcalc explain / op / ops (in-process, through the CLI's command table)."""

import re

from tensorcalc import cli


def _run(capsys, *argv):
    rc = cli.COMMANDS[argv[0]](list(argv[1:]))
    return rc, capsys.readouterr().out


def test_explain_mlp_prints_programs_and_verifies(capsys, tmp_path):
    html = tmp_path / "mlp.html"
    rc, out = _run(capsys, "explain", "mlp", "--verify", "--html", str(html))
    assert rc == 0
    assert "forward program" in out and "backward program" in out
    assert "(2, 256)" in out and "verify: PASS" in out and "the classic MLP view" in out
    assert html.read_text(encoding="utf-8").count("<math") > 10


def test_explain_lenet_collapsed_and_latex(capsys):
    rc, out = _run(capsys, "explain", "lenet", "--collapse")
    assert rc == 0 and "[features.0] Conv2d" in out and "(2, 6, 28, 28)" in out
    rc, tex = _run(capsys, "explain", "lenet", "--latex")
    assert rc == 0 and tex.startswith(r"\documentclass") and tex.rstrip().endswith(
        r"\end{document}")


def test_op_runs_the_check_live_and_ops_lists_every_primitive(capsys):
    rc, out = _run(capsys, "op", "tanh")
    assert rc == 0 and "VJP:      x̄ = ȳ ⊙ (1 − y²)" in out and "check: PASS" in out
    rc, out = _run(capsys, "op", "nosuchop")
    assert rc == 2
    rc, out = _run(capsys, "ops", "--markdown")
    assert rc == 0 and re.search(r"\| `relu` \| Elementwise \|", out)
