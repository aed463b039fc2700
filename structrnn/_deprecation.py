"""Old public spellings kept for one release: each warns once per process, then works."""

from __future__ import annotations

import warnings
from typing import Any

_WARNED: set[str] = set()


def warn_once(key: str, message: str, stacklevel: int = 3) -> None:
    """A ``DeprecationWarning`` with ``message``, the first time ``key`` is seen."""
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def renamed(owner: str, old: str, new: str, old_value: Any, new_value: Any,
            default: Any = None, stacklevel: int = 4) -> Any:
    """The value of argument ``new``, taking the deprecated ``old`` spelling when that is the
    one given (with a warning, once). Both given is a ``TypeError``."""
    if old_value is default:
        return new_value
    if new_value is not default:
        raise TypeError(f"{owner}: got both {new}= and its old name {old}=; pass {new}= only")
    warn_once(f"{owner}.{old}", f"{owner}: {old}= is deprecated, use {new}= (the old name "
              "goes in the next release)", stacklevel)
    return old_value
