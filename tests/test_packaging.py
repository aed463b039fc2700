"""Packaging and the contract of docs/architecture.md: the version, ``python -m structrnn``,
lazy imports, the public names, the one-way dependencies between the sub-packages, and the strict
API-reference build."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "structrnn"
BUILD_API = REPO / "docs" / "build_api.py"
OPTIONAL = ("torch_geometric", "rdkit", "nltk", "networkx", "matplotlib", "tensorboard")


def python(code: str, *args: str, cwd: Path | None = None, env: dict | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (or ``python args`` when ``code`` is empty) in a fresh process."""
    command = [sys.executable, *(["-c", textwrap.dedent(code)] if code else []), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd or REPO,
                            env=full_env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{command[:3]} exited {result.returncode}:\n{result.stderr}")
    return result


def pyproject_version() -> str:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# ------------------------------------------------------------------ version and python -m
def test_version_is_the_pyproject_version():
    out = python("import structrnn; print(structrnn.__version__)").stdout.strip()
    assert out == pyproject_version()


def test_version_of_an_uninstalled_source_tree_comes_from_its_pyproject(tmp_path):
    """No distribution metadata (a plain checkout on sys.path): the version pyproject declares,
    read from its [project] table and not from another table's ``version`` key."""
    shutil.copytree(PACKAGE, tmp_path / "structrnn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=77"]

        [tool.other]
        version = "0.0.1"

        [project]
        name = "structrnn"
        dependencies = [
            "torch>=2.3",
        ]
        version = "9.8.7"

        [tool.more]
        version = "1.2.3"
        """))
    code = f"""
        import importlib.metadata as metadata, sys
        def not_installed(name):
            raise metadata.PackageNotFoundError(name)
        metadata.version = not_installed
        sys.path.insert(0, {str(tmp_path)!r})
        import structrnn
        assert structrnn.__file__.startswith({str(tmp_path)!r}), structrnn.__file__
        print(structrnn.__version__)
        """
    assert python(code).stdout.strip() == "9.8.7"


def test_python_dash_m_runs_the_command_and_exits_with_its_code(tmp_path):
    helped = python("", "-m", "structrnn", "--help", cwd=tmp_path)
    assert helped.stdout.startswith("usage: structrnn")
    version = python("", "-m", "structrnn", "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"structrnn {pyproject_version()}"
    bad = python("", "-m", "structrnn", "show", "(3 (2 a", "--out", str(tmp_path / "t.png"),
                 cwd=tmp_path, check=False)
    assert bad.returncode == 2, bad.stderr  # main() returned 2; __main__ passed it to sys.exit
    assert "line 1" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "t.png").exists()


# ------------------------------------------------------------------ lazy imports
def test_import_structrnn_loads_no_optional_dependency():
    code = f"""
        import json, sys
        import structrnn, structrnn.trees, structrnn.graphs, structrnn.levels
        import structrnn.datasets, structrnn.datasets.molecules
        before = sorted(m for m in {OPTIONAL!r} if m in sys.modules)
        names = dir(structrnn)
        graph_network = structrnn.GraphNetwork   # first use loads PyG
        print(json.dumps([before, "GraphNetwork" in names,
                          "torch_geometric" in sys.modules,
                          graph_network.__module__]))
        """
    before, listed, loaded, module = json.loads(python(code).stdout)
    assert before == []
    assert listed and loaded and module == "structrnn.graphs.network"


def test_lazy_names_are_the_defining_modules_objects():
    import structrnn as sr
    import structrnn.datasets as datasets
    from structrnn import GraphNetwork, TreeLoader, collate_trees
    from structrnn.graphs.network import GraphNetwork as defined
    from structrnn.trees import loader

    assert GraphNetwork is defined and sr.GraphNetwork is defined
    assert TreeLoader is loader.TreeLoader and collate_trees is loader.collate_trees
    assert datasets.SST.__module__ == "structrnn.datasets.sst"
    assert sr.datasets is datasets and sr.viz.pyplot  # sub-packages without an import
    with pytest.raises(AttributeError, match="'structrnn' has no attribute 'NoSuchThing'"):
        sr.NoSuchThing  # noqa: B018
    assert not hasattr(sr.graphs, "tree_to_data")


@pytest.mark.parametrize("package", ["structrnn", "structrnn.trees", "structrnn.graphs",
                                     "structrnn.levels", "structrnn.datasets",
                                     "structrnn.datasets.molecules"])
def test_every_name_in_all_resolves_and_is_listed_by_dir(package):
    import importlib

    module = importlib.import_module(package)
    assert len(module.__all__) == len(set(module.__all__)), "a name is listed twice"
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert set(module.__all__) <= set(dir(module))


def test_the_public_names_of_the_contract():
    """docs/architecture.md, "The public API" (the first design's names): each one imports and
    is what the contract says it is."""
    import torch

    import structrnn as sr
    from structrnn import (  # noqa: F401
        GRU,
        LSTM,
        RNN,
        GraphNetwork,
        GRUCell,
        LSTMCell,
        NaryLSTMCell,
        ParseError,
        RNNCell,
        Tree,
        TreeLSTM,
    )

    for cell in (sr.RNNCell(3, 4, bias=True, nonlinearity="tanh"), sr.GRUCell(3, 4, bias=True),
                 sr.LSTMCell(3, 4, bias=True)):
        assert cell.input_size == 3 and cell.hidden_size == 4
    assert isinstance(sr.NaryLSTMCell(3, 4, arity=2), sr.NaryLSTMCell)
    assert issubclass(sr.LSTM, torch.nn.Module) and issubclass(sr.GRU, torch.nn.Module)
    tree = sr.Tree.from_ptb("(3 (2 It) (4 (3 works) (2 .)))")
    assert tree.to_ptb() == "(3 (2 It) (4 (3 works) (2 .)))"
    for method in ("from_nltk", "to_nltk", "from_networkx", "to_networkx", "to_data"):
        assert callable(getattr(sr.Tree, method))
    with pytest.raises(sr.ParseError):
        sr.Tree.from_ptb("(3 (2 It)")
    assert issubclass(sr.ParseError, sr.InputError) and issubclass(sr.InputError, ValueError)
    assert isinstance(sr.TreeLSTM(3, 4, variant="child-sum").cell, sr.LSTMCell)
    assert isinstance(sr.TreeLSTM(3, 4, variant="n-ary", arity=2).cell, sr.NaryLSTMCell)
    assert issubclass(sr.GraphNetwork, torch.nn.Module)
    for name in ("Vocab", "TreeLoader", "collate_trees", "TreeGRU", "RecursiveNN", "RNTN",
                 "BiTreeLSTM", "GraphIndependent", "InteractionNetwork", "DeepSets",
                 "RelationNetwork", "MPNN", "NonLocal", "EncodeProcessDecode", "read_ptb_file",
                 "write_ptb_file", "PTBFile", "run_up", "run_down", "run_schedule",
                 "tree_schedule", "RNNCellBase"):
        assert name in sr.__all__ and getattr(sr, name) is not None


def test_pyproject_declares_what_users_expect():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = config["project"]
    assert project["license"] == "MIT"  # PEP 639: License-Expression, no license classifier
    for classifier in ("Programming Language :: Python :: 3.10",
                       "Programming Language :: Python :: 3.11",
                       "Programming Language :: Python :: 3.12", "Typing :: Typed",
                       "Topic :: Scientific/Engineering :: Artificial Intelligence",
                       "Development Status :: 3 - Alpha"):
        assert classifier in project["classifiers"]
    assert "torch>=2.3" in project["dependencies"]  # torch.amp.GradScaler(device)
    extras = project["optional-dependencies"]
    assert extras["docs"] == ["pdoc"]
    everything = extras["all"][0]
    assert all(name in everything for name in ("tensorboard", "docs", "viz", "chem", "dev"))
    lint = config["tool"]["ruff"]["lint"]
    assert "C90" in lint["select"] and lint["mccabe"]["max-complexity"] == 15


def test_py_typed_ships_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["structrnn"]


# ------------------------------------------------------------------ pictures need the viz extra
def test_viz_pyplot_says_which_extra_to_install(monkeypatch):
    from structrnn import viz

    assert viz.pyplot().get_backend().lower() == "agg"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'structrnn\[viz\]'"):
        viz.pyplot()


# ------------------------------------------------------------------ the dependency rules
# docs/architecture.md: dependencies run one way, from a higher layer to a lower one:
# cells <- levels <- sequence, trees, graphs <- datasets, viz, export <- training <- tasks <- cli.
LAYERS = {"cells": 1, "levels": 2, "sequence": 3, "crf": 3, "trees": 3, "graphs": 3, "datasets": 4,
          "viz": 4, "export": 4, "training": 5, "tasks": 6, "cli": 7, "__main__": 7,
          "benchmarks": 7, "serve": 7}
FACADE = 3  # the root package re-exports layers 1-3


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def structrnn_imports(path: Path) -> set[str]:
    """Every structrnn module ``path`` imports, anywhere in the file (functions and
    TYPE_CHECKING blocks too), including the modules of its lazy exports. ``from pkg import
    sub`` counts as importing ``pkg.sub`` only, ``from pkg import name`` as importing ``pkg``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def absolute(module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = package
        for _ in range(level - 1):
            base = base.rpartition(".")[0]
        return f"{base}.{module}" if module else base

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module, node.level)
            subs = {f"{base}.{a.name}" for a in node.names if is_module(f"{base}.{a.name}")}
            found |= subs
            if len(subs) < len(node.names):
                found.add(base)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports"
              and len(node.args) > 1 and isinstance(node.args[1], ast.Dict)):
            found |= {absolute(k.value.lstrip("."), len(k.value) - len(k.value.lstrip(".")))
                      for k in node.args[1].keys if isinstance(k, ast.Constant)}
    return {m for m in found if m == "structrnn" or m.startswith("structrnn.")}


def layer(module: str) -> int:
    parts = module.split(".")
    if module == "structrnn":
        return FACADE
    if parts[1].startswith("_") and parts[1] != "__main__":
        return 0  # private helpers (_io, _paths, _errors, _checks, _lazy) sit below everything
    return LAYERS[parts[1]]


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    return {module_name(p): structrnn_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_import_scanner_sees_every_kind_of_import():
    assert "structrnn.cells" in structrnn_imports(PACKAGE / "graphs" / "network.py")
    assert structrnn_imports(PACKAGE / "trees" / "__init__.py") >= {"structrnn.trees.loader",
                                                                     "structrnn.trees.models"}
    assert "structrnn.cli" in structrnn_imports(PACKAGE / "__main__.py")


def test_every_module_has_a_layer(import_graph):
    for module in import_graph:
        if module != "structrnn":
            layer(module)  # KeyError: a new top-level module needs a place in LAYERS


def test_dependencies_run_one_way(import_graph):
    wrong = [f"{module} (layer {layer(module)}) imports {dep} (layer {layer(dep)})"
             for module, deps in import_graph.items() for dep in deps
             if module != "structrnn" and layer(dep) > layer(module)]
    assert wrong == []


def test_trees_and_graphs_never_import_each_other(import_graph):
    for module, deps in import_graph.items():
        for mine, theirs in (("structrnn.trees", "structrnn.graphs"),
                             ("structrnn.graphs", "structrnn.trees")):
            if module == mine or module.startswith(mine + "."):
                assert not [d for d in deps if d == theirs or d.startswith(theirs + ".")], module


def test_cells_know_no_structure(import_graph):
    assert all(layer(dep) == 0 for dep in import_graph["structrnn.cells"]), \
        import_graph["structrnn.cells"]


STRUCTURES = ("cells", "levels", "sequence", "crf", "trees", "graphs", "datasets")


def test_the_training_core_knows_no_structure(import_graph):
    """Issue 24: ``training/`` is generic; what batches trees or graphs (a loader class, a
    collate function) is the task's argument, not an import of the core."""
    wrong = [f"{module} imports {dep}" for module, deps in import_graph.items()
             if module.startswith("structrnn.training") for dep in deps
             if dep.split(".")[1] in STRUCTURES]
    assert wrong == []


def test_only_the_command_line_imports_cli_and_tasks(import_graph):
    for module, deps in import_graph.items():
        top = module.split(".")[1] if "." in module else ""
        if any(d == "structrnn.cli" for d in deps):  # the entry points only
            assert module in ("structrnn.cli", "structrnn.__main__") or top == "benchmarks", \
                module
        task_deps = {d for d in deps if d == "structrnn.tasks" or d.startswith("structrnn.tasks.")}
        if module == "structrnn":  # structrnn.load, exported lazily: the one way up
            assert task_deps <= {"structrnn.tasks.predictor"}, task_deps
        elif task_deps:
            # the entry points (cli, benchmarks, serve) and the tasks themselves
            assert top in ("tasks", "cli", "benchmarks", "serve"), module


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_loop_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_a_module_that_imports_it_back(import_graph):
    """An import counts wherever it sits (in a function, under TYPE_CHECKING): no loops, short
    or long, anywhere in the package (the root package's lazy exports aside: it is the
    facade every module may reach)."""
    graph = {m: {d for d in deps if d != "structrnn"} for m, deps in import_graph.items()
             if m != "structrnn"}
    assert import_cycles(graph) == []



def test_training_imports_no_structure_package(import_graph):
    structures = ("trees", "graphs", "levels", "datasets", "sequence", "crf")
    for module, deps in import_graph.items():
        if module.startswith("structrnn.training"):
            assert not [d for d in deps if d.split(".")[1:2] and d.split(".")[1] in structures], \
                module


def test_at_most_eight_public_modules_at_the_top():
    public = sorted(p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("_"))
    assert len(public) <= 8, public


# ------------------------------------------------------------------ CI and make
FAKE_MAKE = """#!/usr/bin/env bash
echo "$1" >> "$MAKE_LOG"
[ "$1" != "$FAIL_TARGET" ]
"""


@pytest.mark.parametrize("failing, status", [("none", 0), ("lint", 1), ("test", 1)])
def test_ci_runs_lint_and_test_and_fails_on_either(tmp_path, failing, status):
    (tmp_path / "make").write_text(FAKE_MAKE)
    (tmp_path / "make").chmod(0o755)
    log = tmp_path / "make.log"
    result = subprocess.run([str(REPO / ".ci" / "run")], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
                                 "MAKE_LOG": str(log), "FAIL_TARGET": failing}, timeout=60)
    assert result.returncode == status, result.stderr
    assert log.read_text().split() == ["lint", "test"]  # both run, whichever fails


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lint_is_ruff_and_make_docs_builds_the_reference():
    planned = subprocess.run(["make", "-n", "lint", "docs"], capture_output=True, text=True,
                             cwd=REPO, timeout=60).stdout
    assert "ruff check ." in planned
    assert "docs/build_api.py --out site" in planned
    # the CPU build of torch 2.13.0 is installed only when no torch is present
    assert '$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0' in (
        REPO / "Makefile").read_text()


# ------------------------------------------------------------------ make docs
DOCUMENTED = '''\
"""A package: :func:`.good.f`, :mod:`docpkg.good`."""
'''
GOOD = '''\
"""Fine: :func:`f`, :class:`docpkg.good.A`, :meth:`A.m`, :class:`ValueError`,
:class:`~collections.OrderedDict`, :func:`not_installed_anywhere.f`."""


def f() -> int:
    """One."""
    return 1


class A:
    """Calls :func:`f`; :meth:`m` too."""

    def m(self) -> int:
        """See :class:`A`."""
        return f()
'''


def build_api(tmp_path: Path, *packages: str) -> subprocess.CompletedProcess:
    return python("", str(BUILD_API), "--out", str(tmp_path / "site"), *packages,
                  env={"PYTHONPATH": str(tmp_path)}, check=False)


def test_api_reference_builds_and_fails_on_a_broken_reference(tmp_path):
    pytest.importorskip("pdoc")
    package = tmp_path / "docpkg"
    package.mkdir()
    (package / "__init__.py").write_text(DOCUMENTED)
    (package / "good.py").write_text(GOOD)
    built = build_api(tmp_path, "docpkg")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "docpkg" / "good.html").is_file()
    (package / "bad.py").write_text('"""See :func:`docpkg.good.g` and :class:`Missing`."""\n')
    broken = build_api(tmp_path, "docpkg")
    assert broken.returncode == 1
    assert "docpkg.bad: the docstring refers to 'docpkg.good.g', which names nothing" \
        in broken.stderr
    assert "'Missing'" in broken.stderr


def test_api_reference_fails_on_a_pdoc_warning(tmp_path):
    pytest.importorskip("pdoc")
    package = tmp_path / "warnpkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Fine."""\n\n\ndef f(x: "Nowhere") -> None:\n'
                                         '    """An annotation naming nothing."""\n')
    failed = build_api(tmp_path, "warnpkg")
    assert failed.returncode == 1
    assert "UserWarning: Error parsing type annotation Nowhere for warnpkg.f" in failed.stderr
    (package / "__init__.py").write_text('"""Lists a name it lacks."""\n__all__ = ["gone"]\n')
    failed = build_api(tmp_path, "warnpkg")
    assert failed.returncode == 1
    assert "warnpkg.__all__ lists 'gone', which does not exist" in failed.stderr
