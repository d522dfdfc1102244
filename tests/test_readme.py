"""The README's Python examples run as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    runnable = [b for b in blocks if "@primitive" not in b]  # the Tanh excerpt is from ops/
    assert runnable
    for code in runnable:
        exec(compile(code, "README.md", "exec"), {})


def test_readme_quickstart_has_exactly_the_two_commands():
    text = README.read_text()
    quick = text.split("## Quickstart", 1)[1].split("##", 1)[0]
    block = re.search(r"```\n(.*?)```", quick, re.S).group(1).split()
    assert block == ["make", "demo", "make", "test"]
