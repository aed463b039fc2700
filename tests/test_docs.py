"""Every ```python block of docs/*.md runs, in order, one namespace per file (a later block may
use names from an earlier one), so the tutorials cannot drift from the library."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
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
