"""A clean namespace: ``structrnn.__all__`` is the documented public API, and ``dir()`` of the
package and of its lazily loading sub-packages shows public names and sub-modules alone."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["structrnn", "structrnn.trees", "structrnn.graphs", "structrnn.datasets",
            "structrnn.datasets.molecules"]
PLUMBING = ("TYPE_CHECKING", "annotations", "lazy_exports")


def documented_names() -> list[str]:
    """The names of the first ``text`` block under "## The public API" of
    docs/architecture.md; a line that starts in the first column starts with its group's
    label (``cells``, ``trees`` ...), which is no name."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    section = text.split("## The public API", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    names = []
    for line in block.splitlines():
        words = line.replace(",", " ").split()
        names += words if line.startswith(" ") else words[1:]
    return names


def stray_names(module: ModuleType) -> list[str]:
    """What ``dir(module)`` lists beyond its public names, sub-modules and dunders."""
    public = set(module.__all__)
    return [n for n in dir(module) if n not in public
            and not (n.startswith("__") and n.endswith("__"))
            and not (isinstance(getattr(module, n, None), ModuleType)
                     and getattr(module, n).__name__ == f"{module.__name__}.{n}")]


def test_all_is_the_documented_api():
    import structrnn

    documented = documented_names()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert sorted(structrnn.__all__) == sorted(documented)


@pytest.mark.parametrize("package", PACKAGES)
def test_dir_shows_public_names_and_submodules_alone(package):
    module = importlib.import_module(package)
    assert stray_names(module) == []
    assert set(module.__all__) <= set(dir(module))  # lazy names too, before their first use
    for name in PLUMBING:
        assert name not in dir(module)
        with pytest.raises(AttributeError):
            getattr(module, name)


def test_dir_of_a_fresh_import_is_clean():
    # in a new interpreter: dir() right after the import, before any lazy name is loaded
    code = f"""
import importlib, json, types
out = {{}}
for package in {PACKAGES!r}:
    m = importlib.import_module(package)
    out[package] = [n for n in dir(m) if n not in m.__all__ and not n.startswith("__")
                    and not isinstance(getattr(m, n), types.ModuleType)]
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert json.loads(done.stdout) == {p: [] for p in PACKAGES}


def test_submodules_still_reachable_and_listed():
    import structrnn as sr

    for name in ("cells", "sequence", "levels", "trees", "graphs", "datasets"):
        assert name in dir(sr)
        assert getattr(sr, name).__name__ == f"structrnn.{name}"
