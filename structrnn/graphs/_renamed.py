"""Old keyword spellings of the graph modules, accepted for one release with a FutureWarning.

The modules take PyG's names (``in_channels``, ``hidden_channels``, ``num_layers``,
``out_channels``, ``edge_dim``, ``aggr``); :func:`renamed` maps a call in the old spelling onto
the new names before the call, so that the signature itself shows only the new names.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["renamed"]


def renamed(old_order: Sequence[str] = (), old_defaults: Mapping[str, Any] | None = None,
            **old_to_new: str) -> Callable:
    """Decorate a method so that ``old=value`` is passed on as ``new=value`` with one
    ``FutureWarning`` per call (Python shows it once per calling line).

    ``old_order``: the old positional order. A call that uses an old keyword binds its
    positional arguments in that order (``MPNN(11, 4, hidden=64, steps=3)`` meant
    ``node_in=11, edge_in=4``); a call in the new spelling is passed on untouched. Giving a
    value under both spellings is a TypeError naming them. ``old_defaults``: the defaults the
    old signature had where the new one differs (``MPNN``'s ``out_channels`` was 1), applied to
    an old-spelling call that leaves them out.
    """

    def wrap(method: Callable) -> Callable:
        owner = method.__qualname__.split(".")[0]

        @functools.wraps(method)
        def call(self, *args: Any, **kwargs: Any):
            old = [k for k in old_to_new if k in kwargs]
            if not old:
                return method(self, *args, **kwargs)
            if args and old_order:
                if len(args) > len(old_order):
                    raise TypeError(f"{owner}: {len(args)} positional arguments in the old "
                                    f"order {tuple(old_order)}, which has {len(old_order)}")
                for name, value in zip(old_order, args, strict=False):
                    if name in kwargs:
                        raise TypeError(f"{owner}: got {name}= twice (positionally in the old "
                                        f"order and by keyword)")
                    kwargs[name] = value
                args = ()
                old = [k for k in old_to_new if k in kwargs]
            for name in old:
                new = old_to_new[name]
                if new in kwargs:
                    raise TypeError(f"{owner}: got both {name}= (the old name) and {new}=; "
                                    f"pass {new}= only")
                kwargs[new] = kwargs.pop(name)
            for name, value in (old_defaults or {}).items():
                kwargs.setdefault(name, value)
            spelled = ", ".join(f"{k}= -> {old_to_new[k]}=" for k in old)
            warnings.warn(f"{owner}: old argument names ({spelled}); the old spelling is "
                          f"deprecated and goes in the next release", FutureWarning,
                          stacklevel=2)
            return method(self, *args, **kwargs)

        return call

    return wrap
