"""Build the HTML API reference from the docstrings with pdoc, strictly (``make docs``).

    python docs/build_api.py                 # structrnn -> site/
    python docs/build_api.py --out DIR PACKAGE ...

The build fails (exit 1, one line per problem) on

- any warning pdoc gives (a module that does not import, an annotation that does not resolve, a
  failed include) and any warning the documented modules give while pdoc imports them;
  warnings of third-party libraries (a deprecation inside PyG) do not count;
- any cross-reference in a rendered docstring (``:class:`Tree```, ``:func:`.sst.to_binary```,
  ``:mod:`structrnn.cells```, ...) that names nothing: pdoc itself would silently print it as
  plain code. A reference is looked up in its class, its module, the packages above the module
  and the built-ins; a dotted one also as an absolute name. A reference into a library that is not
  installed cannot be checked and is let through.

Docstrings are Google style with reStructuredText roles (pdoc's ``google`` format).
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import pkgutil
import re
import sys
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const|py:\w+):`([^`]+)`")
_MISSING = object()


def _getattr_chain(obj: Any, parts: list[str]) -> Any:
    for part in parts:
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def _absolute(name: str) -> bool | None:
    """True when ``a.b.c`` names a module or an attribute of one, False when it does not, None
    when the top-level package is not installed (nothing can be said)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            if cut == 1:
                return None
            continue
        return _getattr_chain(module, parts[cut:]) is not _MISSING
    return None  # pragma: no cover - the loop always returns


def resolves(target: str, module: ModuleType, scope: Any = None) -> bool:
    """Whether the reference ``target`` (as written in a docstring of ``module``, inside the class
    ``scope`` if given) names something."""
    name = target.strip().lstrip("~").removesuffix("()")
    if "<" in name:  # "text <target>" form
        name = name[name.index("<") + 1:].rstrip(">").strip()
    if name.startswith("."):
        package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(
            ".")[0]
        while name.startswith(".."):
            name, package = name[1:], package.rpartition(".")[0]
        name = f"{package}{name}"
    parts = name.split(".")
    scopes: list[Any] = [s for s in (scope, module) if s is not None]
    package = module.__name__
    while "." in package:  # the packages above: structrnn.trees, structrnn
        package = package.rpartition(".")[0]
        scopes.append(sys.modules[package])
    scopes.append(builtins)
    if scope is None and len(parts) == 1:  # ":meth:`combine`" in a module docstring
        scopes += [c for c in vars(module).values()
                   if isinstance(c, type) and c.__module__ == module.__name__]
    if any(_getattr_chain(s, parts) is not _MISSING for s in scopes):
        return True
    if len(parts) > 1 or name in sys.modules:
        found = _absolute(name)
        return found is None or found
    return False


def _own_docstring(doc) -> bool:
    """Whether the docstring pdoc shows was written here, not inherited (``forward`` takes
    ``nn.Module.forward``'s, whose references are torch's business)."""
    import pdoc.doc

    if isinstance(doc, (pdoc.doc.Class, pdoc.doc.Function)):
        return getattr(doc.obj, "__doc__", None) is not None
    return True


def _documented(mod) -> Iterator[tuple[str, str, Any]]:
    """``(qualified name, docstring, class scope)`` of the module and every member pdoc
    renders (classes with their own members), for docstrings written in this module."""
    import pdoc.doc

    yield mod.fullname, mod.docstring, None
    for member in mod.members.values():
        if member.taken_from[0] != mod.modulename:
            continue  # re-exported: checked where it is defined
        if _own_docstring(member):
            yield member.fullname, member.docstring, getattr(member, "obj", None) if isinstance(
                member, pdoc.doc.Class) else None
        if isinstance(member, pdoc.doc.Class):
            for sub in member.own_members:
                if _own_docstring(sub):
                    yield sub.fullname, sub.docstring, member.obj


def broken_references(modules: dict[str, Any]) -> list[str]:
    """One line per docstring reference that names nothing, over pdoc's module docs."""
    problems = []
    for mod in modules.values():
        for fullname, docstring, scope in _documented(mod):
            for target in ROLE.findall(docstring or ""):
                if not resolves(target, mod.obj, scope):
                    problems.append(f"{fullname}: the docstring refers to {target!r}, which names "
                                    "nothing")
    return problems


def _write(modules: dict[str, Any], out: Path) -> None:
    """What ``pdoc.pdoc(..., output_directory=out)`` writes, for modules already loaded."""
    import pdoc.render

    for module in modules.values():
        page = out / f"{module.fullname.replace('.', '/')}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
    for name, text in (("index.html", pdoc.render.html_index(modules)),
                       ("search.js", pdoc.render.search_index(modules))):
        if text:
            (out / name).write_text(text, encoding="utf-8")


def public_modules(top: str, problems: list[str]) -> list[str]:
    """``top`` and every module below it whose dotted name has no part starting with ``_``.
    pdoc itself descends only into sub-modules listed in a package's ``__all__``."""
    names = [top]
    module = importlib.import_module(top)
    if hasattr(module, "__path__"):
        def failed(name: str) -> None:
            problems.append(f"{name} does not import: {sys.exc_info()[1]!r}")

        for info in pkgutil.walk_packages(module.__path__, f"{top}.", onerror=failed):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


def prepare(module: ModuleType, problems: list[str]) -> None:
    """Make ``module`` as pdoc needs it to be.

    - Names a package exports lazily (PEP 562 ``__getattr__``) are loaded into its namespace;
      pdoc looks in ``__dict__`` only. A name in ``__all__`` that does not exist is a problem.
    - A NamedTuple's constructor gets its field annotations evaluated in the module: with
      postponed annotations they are strings, and the generated ``__new__`` lives in a namespace
      of its own, where pdoc cannot resolve ``list[Tree]``.
    """
    for name in getattr(module, "__all__", ()):
        try:
            getattr(module, name)
        except AttributeError:
            problems.append(f"{module.__name__}.__all__ lists {name!r}, which does not exist")
    for obj in list(vars(module).values()):
        if (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
                and obj.__module__ == module.__name__):
            try:
                obj.__new__.__annotations__ = typing.get_type_hints(obj)
            except Exception as err:  # an annotation naming nothing
                problems.append(f"{module.__name__}.{obj.__name__}: a field annotation does not "
                                f"resolve: {err!r}")


def build(tops: list[str], out: Path) -> list[str]:
    """Render the packages ``tops`` (importable names) with all their public modules into
    ``out``; the problems found (empty when the build is clean)."""
    import pdoc
    import pdoc.doc
    import pdoc.render

    pdoc.render.configure(docformat="google", footer_text="structrnn API reference")
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [name for top in tops for name in public_modules(top, problems)]
        for name in names:
            prepare(importlib.import_module(name), problems)
        modules = {name: pdoc.doc.Module.from_name(name) for name in names}
        _write(modules, out)
    # a warning counts when it comes from pdoc or from the documented code itself
    roots = [Path(pdoc.__file__).resolve().parent]
    for top in tops:
        file = Path(modules[top].obj.__file__).resolve()
        roots.append(file.parent if modules[top].is_package else file)
    for w in caught:
        origin = Path(w.filename).resolve()
        if any(origin == root or origin.is_relative_to(root) for root in roots):
            first = str(w.message).strip().splitlines()[0]
            problems.append(f"{w.category.__name__}: {first} ({w.filename}:{w.lineno})")
    return problems + broken_references(modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", default=["structrnn"],
                        help="importable package or module names (default: structrnn)")
    parser.add_argument("--out", type=Path, default=Path("site"), help="output folder")
    args = parser.parse_args(argv)
    problems = build(args.packages, args.out)
    for line in problems:
        print(f"make docs: {line}", file=sys.stderr)
    if problems:
        print(f"make docs: {len(problems)} problem(s); the reference in {args.out} is incomplete",
              file=sys.stderr)
        return 1
    print(f"API reference: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
