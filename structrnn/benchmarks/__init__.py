"""Benchmarks against peer libraries, shipped with the package so that ``structrnn bench NAME``
(``python -m structrnn.benchmarks.NAME``) runs from an installed copy too.

``sequence`` (sr.LSTM vs torch.nn.LSTM), ``trees`` (Tree-LSTM training on SST vs a per-node
implementation and DGL), ``graphs`` (one GraphNetwork round vs PyG's MetaLayer), ``molecules``
(featurisation and training throughput vs PyG). Data sets and peer scripts live outside the
package: each benchmark takes them from flags whose defaults are :func:`default_data` and
:func:`default_peers`, and skips a peer that is absent with a line saying so.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data", "default_peers", "package_pythonpath"]


def _existing(path: Path) -> Path | None:
    return path if path.is_dir() else None


def default_data() -> Path | None:
    """``$STRUCTRNN_DATA``, else ``../shared/datasets`` beside the current directory when it
    exists, else None: the folder holding one folder per data set (``sst/``, ``esol/`` ...)."""
    env = os.environ.get("STRUCTRNN_DATA")
    if env:
        return Path(env)
    return _existing(Path.cwd().parent / "shared" / "datasets")


def default_peers() -> Path | None:
    """The folder of the peer scripts (``dgl_treelstm.py`` ...): ``peers/`` beside
    ``$STRUCTRNN_DATA``, else ``../shared/peers`` beside the current directory, when either
    exists; else None."""
    env = os.environ.get("STRUCTRNN_DATA")
    candidates = ([Path(env).parent / "peers"] if env else []) + \
        [Path.cwd().parent / "shared" / "peers"]
    return next((p for p in candidates if p.is_dir()), None)


def package_pythonpath() -> str:
    """A ``PYTHONPATH`` that makes a child process import this very ``structrnn`` (installed or
    a source tree), with the caller's own entries after it."""
    import structrnn

    root = str(Path(structrnn.__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
