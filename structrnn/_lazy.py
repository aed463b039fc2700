"""Names a package exports without importing their modules up front (PEP 562).

``import structrnn`` must stay cheap: PyTorch Geometric alone doubles its import time, and
RDKit, nltk, networkx and matplotlib are optional. A package lists such names here; the module
that defines one is imported on first access (``sr.GraphNetwork``,
``from structrnn import GraphNetwork``), and the value is then cached in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]],
                 submodules: Iterable[str] = ()) -> tuple[Callable[[str], Any],
                                                          Callable[[], list[str]]]:
    """The ``(__getattr__, __dir__)`` pair for ``package``.

    Args:
        package: the package's ``__name__``.
        exports: module (absolute, or relative to ``package`` with a leading dot) -> the names
            it defines that ``package`` exports.
        submodules: sub-modules reachable as attributes without an explicit import
            (``structrnn.datasets`` after ``import structrnn``).

    ``__dir__`` lists the public names (``__all__`` and the lazy names), the public
    sub-modules (those in ``submodules`` and those imported so far) and the module's dunder
    attributes: completion and ``dir()`` show every public name before any is loaded, and
    nothing of the package's own plumbing (``TYPE_CHECKING``, this function, private helpers).
    """
    namespace = sys.modules[package].__dict__
    where = {name: module for module, names in exports.items() for name in names}
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in subs:
            return importlib.import_module(f"{package}.{name}")
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later look-ups skip this hook
        return value

    def __dir__() -> list[str]:
        dunders = {n for n in namespace if n.startswith("__") and n.endswith("__")}
        loaded = {n for n, v in namespace.items() if not n.startswith("_")
                  and isinstance(v, ModuleType) and v.__name__ == f"{package}.{n}"}
        return sorted(set(namespace.get("__all__", ())) | set(where) | subs | loaded | dunders)

    return __getattr__, __dir__
