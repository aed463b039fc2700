"""Every ```python block of docs/*.md runs, in order, one namespace per file (a later block may
use names from an earlier one), so the tutorials cannot drift from the library; the package tree
of docs/architecture.md names every module; README and docs point to docs/architecture.md."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block."""
    text = path.read_text()
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_block_extraction():
    text = "intro\n```python\na = 1\n```\n```bash\nno\n```\n```python\nb = a\n```\n"
    assert [m.group(1) for m in BLOCK.finditer(text)] == ["a = 1\n", "b = a\n"]


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_tutorial_runs(path, tmp_path, monkeypatch):
    blocks = python_blocks(path)
    assert blocks, f"{path.name} has no python code block"
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # files a tutorial writes land here
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend on a shared machine
    namespace = {"__name__": f"docs_{path.stem}"}
    try:
        for line, code in blocks:
            # compiled under the doc's name and line, so a traceback points into the markdown
            exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)


NOT_RUN = "# not run:"  # a README block whose first line starts so needs a data set or a run


def test_readme_runs(tmp_path, monkeypatch):
    """The README's ```python blocks (sequences, trees, graphs, export) run in order, in one
    namespace, like a tutorial. A block whose first line is ``# not run: needs ...`` is skipped:
    it needs a data set or a trained run that a test cannot have (its reason is that line)."""
    blocks = python_blocks(REPO / "README.md")
    ran = [(line, code) for line, code in blocks if not code.startswith(NOT_RUN)]
    skipped = [code.splitlines()[0] for _, code in blocks if code.startswith(NOT_RUN)]
    assert len(ran) >= 3, "the README's sequence, tree and graph examples"
    assert all(len(reason) > len(NOT_RUN) + 5 for reason in skipped), skipped
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace = {"__name__": "readme"}
    try:
        for line, code in ran:
            exec(compile("\n" * (line - 1) + code, str(REPO / "README.md"), "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "tree.pt2").is_file() and (tmp_path / "dmpnn.pt2").is_file()


# ------------------------------------------------------------------ docs/architecture.md
TREE_LINE = re.compile(r"^( *)(\S+)")


def architecture_tree() -> set[str]:
    """The paths the package tree of docs/architecture.md lists (its first ```text block that
    starts with ``structrnn/``; two spaces of indent per level)."""
    text = (DOCS / "architecture.md").read_text()
    block = next(b for b in re.findall(r"^```text\n(.*?)^```", text, re.S | re.M)
                 if b.startswith("structrnn/"))
    listed, stack = set(), []
    for line in block.splitlines():
        indent, name = TREE_LINE.match(line).groups()
        depth = len(indent) // 2
        stack[depth:] = [name.rstrip("/")]
        listed.add("/".join(stack) + ("/" if name.endswith("/") else ""))
    return listed


def test_tree_parser():
    assert TREE_LINE.match("    run.py   a b").groups() == ("    ", "run.py")


def test_architecture_lists_every_module():
    listed = architecture_tree()
    files = {p.relative_to(REPO).as_posix()
             for p in (REPO / "structrnn").rglob("*.py") if "__pycache__" not in p.parts}
    # a sub-package's __init__.py goes with its folder's line
    expected = {f for f in files if not f.endswith("/__init__.py") or f.count("/") == 1}
    folders = {f.rsplit("/", 1)[0] + "/" for f in files if f.endswith("/__init__.py")}
    assert sorted(expected - listed) == [], "modules missing from docs/architecture.md"
    assert sorted(listed - expected - folders) == [], "listed in docs/architecture.md, not there"


def test_the_docs_point_to_architecture_not_to_the_old_design():
    readme = (REPO / "README.md").read_text()
    assert "docs/architecture.md" in readme
    for path in [REPO / "README.md", *DOCS.glob("*.md")]:
        assert "DESIGN.md" not in path.read_text(), path.name
