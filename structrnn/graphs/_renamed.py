"""Old keyword spellings of the graph modules, accepted for one release with a FutureWarning.

The modules take PyG's names (``in_channels``, ``hidden_channels``, ``num_layers``,
``out_channels``, ``edge_dim``, ``aggr``); :func:`renamed` maps a keyword of the old spelling
onto its new name before the call, so that the signature itself shows only the new names.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["renamed"]


def renamed(**old_to_new: str) -> Callable:
    """Decorate a method so that ``old=value`` is passed on as ``new=value`` with a
    ``FutureWarning`` (shown once per calling line, Python's default for warnings); giving both
    spellings is a TypeError naming them."""

    def wrap(method: Callable) -> Callable:
        owner = method.__qualname__.split(".")[0]

        @functools.wraps(method)
        def call(self, *args: Any, **kwargs: Any):
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{owner}: got both {old}= (the old name) and {new}=; "
                                    f"pass {new}= only")
                warnings.warn(f"{owner}: {old}= is deprecated, use {new}= (PyG's name); the "
                              f"old spelling goes in the next release", FutureWarning,
                              stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return method(self, *args, **kwargs)

        return call

    return wrap
