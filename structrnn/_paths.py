"""Where data sets are read from and where processed files are cached."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "cache_dir"]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` when given, else ``$STRUCTRNN_DATA``, else ``~/.cache/structrnn``: the folder
    holding one folder per data set (``sst/``, ``esol/``, ``MUTAG/`` ...)."""
    if root is not None:
        return Path(root)
    env = os.environ.get("STRUCTRNN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "structrnn"


def cache_dir() -> Path:
    """``$STRUCTRNN_CACHE`` or ``~/.cache/structrnn``: where processed data goes when the data
    folder is read-only."""
    env = os.environ.get("STRUCTRNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "structrnn"
