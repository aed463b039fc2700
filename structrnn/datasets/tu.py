"""TU Dortmund graph sets (MUTAG, PROTEINS, ...) through PyG's ``TUDataset``, never downloading.

``TUDataset`` wants ``root/NAME/raw/NAME_*.txt`` and writes ``root/NAME/processed``. Shared data
directories are often read-only and often hold the raw files directly (``mutag/MUTAG_A.txt``),
so :func:`tu_dataset` finds the raw files in any of the usual layouts and, unless they already
sit in a writable ``NAME/raw``, links them into a cache directory keyed by their content.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from torch_geometric.datasets import TUDataset

from structrnn._io import is_writable
from structrnn._paths import cache_dir as default_cache_dir
from structrnn._paths import data_root

__all__ = ["tu_dataset", "find_tu_raw_dir", "OfflineTUDataset"]


class OfflineTUDataset(TUDataset):
    """``TUDataset`` that refuses to download: missing raw files are an error, not a fetch."""

    def download(self) -> None:
        raise FileNotFoundError(
            f"TU data set {self.name!r}: raw files not found in {self.raw_dir} and structrnn "
            "never downloads them; put NAME_A.txt, NAME_graph_indicator.txt, ... there")


def find_tu_raw_dir(root: str | os.PathLike, name: str) -> Path:
    """The directory holding ``{name}_A.txt``: ``root/NAME/raw``, ``root/NAME``,
    ``root/name`` (lower case), ``root/name/raw`` or ``root`` itself."""
    root = Path(root)
    candidates = [root / name / "raw", root / name, root / name.lower() / "raw",
                  root / name.lower(), root]
    for d in candidates:
        if (d / f"{name}_A.txt").is_file() and (d / f"{name}_graph_indicator.txt").is_file():
            return d
    raise FileNotFoundError(
        f"TU data set {name!r}: no {name}_A.txt and {name}_graph_indicator.txt in any of "
        f"{[str(c) for c in candidates]} (set --data / STRUCTRNN_DATA; nothing is downloaded)")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # e.g. file systems without symlinks
        shutil.copyfile(src, dst)


def tu_dataset(root: str | os.PathLike | None = None, name: str = "MUTAG",
               cache_dir: str | os.PathLike | None = None, **kwargs) -> TUDataset:
    """Load the TU set ``name`` from ``root`` (default :func:`structrnn._paths.data_root`:
    ``$STRUCTRNN_DATA``, else ``~/.cache/structrnn``) with PyG.

    Graph ``y`` is a class index (0..C-1, PyG maps MUTAG's -1/1 to 0/1), ``x`` the one-hot node
    labels, ``edge_attr`` the one-hot edge labels when the set has them. ``kwargs`` go to
    ``TUDataset`` (``transform``, ``use_node_attr``, ...). Processed files are written to
    ``root/NAME/processed`` when ``root/NAME/raw`` holds the files and is writable, else under
    ``cache_dir`` (default ``$STRUCTRNN_CACHE`` or ``~/.cache/structrnn``) in ``tu/NAME-<hash>``.
    """
    root = data_root(root)
    raw = find_tu_raw_dir(root, name)
    if raw == root / name / "raw" and is_writable(raw.parent):
        return OfflineTUDataset(str(root), name, **kwargs)
    files = sorted(p for p in raw.iterdir() if p.name.startswith(f"{name}_") and p.is_file())
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + p.read_bytes())
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    work = base / "tu" / f"{name}-{digest.hexdigest()[:12]}"
    work_raw = work / name / "raw"
    work_raw.mkdir(parents=True, exist_ok=True)
    for p in files:
        if not (work_raw / p.name).exists():
            _link_or_copy(p, work_raw / p.name)
    return OfflineTUDataset(str(work), name, **kwargs)
