"""TU Dortmund graph sets (MUTAG, PROTEINS, ...) through PyG's ``TUDataset``, never downloading.

Any set of the TU format trains: node labels (one-hot), continuous node attributes
(``NAME_node_attributes.txt``, kept in front of the labels by :func:`load_tu`), both, or neither
(then the nodes get one-hot degrees, the usual protocol: :func:`degree_features`); edge labels
and edge attributes when the set has them, none otherwise. :class:`TUInfo` says which.

``TUDataset`` wants ``root/NAME/raw/NAME_*.txt`` and writes ``root/NAME/processed``. Shared data
directories are often read-only and often hold the raw files directly (``mutag/MUTAG_A.txt``),
so :func:`tu_dataset` finds the raw files in any of the usual layouts and, unless they already
sit in a writable ``NAME/raw``, links them into a cache directory keyed by their content.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.datasets import TUDataset

from structrnn._io import is_writable
from structrnn._paths import cache_dir as default_cache_dir
from structrnn._paths import data_root

__all__ = ["tu_dataset", "find_tu_raw_dir", "OfflineTUDataset", "load_tu", "TUInfo",
           "degree_features", "DEGREE_CAP"]

# one-hot degrees stop here: a node of a higher degree shares the last slot (social networks
# have hubs of degree thousands, which would make the one-hot vector as wide)
DEGREE_CAP = 64


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


@dataclass
class TUInfo:
    """What a TU set holds, as :func:`load_tu` read it.

    Attributes:
        name: the set's name.
        node_attributes: leading columns of ``x`` that are continuous attributes.
        node_labels: one-hot node-label columns after them.
        edge_attributes, edge_labels: the same for ``edge_attr``.
        max_degree: set when the nodes have neither labels nor attributes: the one-hot degree
            features then have ``max_degree + 1`` columns (higher degrees share the last).
        classes: the number of graph classes.
    """

    name: str
    node_attributes: int
    node_labels: int
    edge_attributes: int
    edge_labels: int
    max_degree: int | None
    classes: int

    @property
    def node_features(self) -> int:
        """The width of a node's input: attributes and labels, or the one-hot degree."""
        if self.max_degree is not None:
            return self.max_degree + 1
        return self.node_attributes + self.node_labels

    @property
    def edge_features(self) -> int:
        return self.edge_attributes + self.edge_labels

    def describe(self) -> str:
        """One line for the run's notices: what the nodes and edges carry."""
        if self.max_degree is not None:
            nodes = (f"no node labels or attributes: one-hot degrees 0..{self.max_degree} "
                     f"(capped at {DEGREE_CAP}; a higher degree shares the last slot)")
        else:
            parts = [f"{self.node_attributes} continuous attributes (standardised on each "
                     "training split)" if self.node_attributes else "",
                     f"{self.node_labels} one-hot labels" if self.node_labels else ""]
            nodes = "nodes: " + " and ".join(p for p in parts if p)
        if self.edge_features:
            parts = [f"{self.edge_attributes} attributes" if self.edge_attributes else "",
                     f"{self.edge_labels} one-hot labels" if self.edge_labels else ""]
            edges = "edges: " + " and ".join(p for p in parts if p)
        else:
            edges = "no edge labels or attributes: the models see no edge features"
        return f"TU set {self.name}: {self.classes} classes; {nodes}; {edges}"


def degree_features(edge_index: Tensor, num_nodes: int, width: int) -> Tensor:
    """(num_nodes, width) one-hot node degrees (edges counted at their receiver, so an
    undirected graph stored in both directions counts each neighbour once), clamped to
    ``width - 1``."""
    degree = torch.bincount(edge_index[1], minlength=num_nodes)[:num_nodes]
    return torch.nn.functional.one_hot(degree.clamp(max=width - 1), width).float()


def load_tu(root: str | os.PathLike | None = None, name: str = "MUTAG",
            cache_dir: str | os.PathLike | None = None,
            degree_cap: int = DEGREE_CAP) -> tuple[TUDataset, TUInfo]:
    """The TU set ``name`` with every feature it has (:func:`tu_dataset` with node and edge
    attributes kept) and a :class:`TUInfo` saying what they are.

    Raises:
        ValueError: the set has no graph labels, or has graph attributes (a regression set).
    """
    ds = tu_dataset(root, name, cache_dir, use_node_attr=True, use_edge_attr=True)
    y = ds._data.y
    if y is None:
        raise ValueError(f"TU set {name!r}: no {name}_graph_labels.txt; graph classification "
                         "needs the graph labels")
    if y.is_floating_point():
        raise ValueError(f"TU set {name!r} has graph attributes (a regression set); only "
                         "classification sets are supported")
    max_degree = None
    if ds.num_node_attributes + ds.num_node_labels == 0:
        highest = max((int(torch.bincount(g.edge_index[1]).max()) for g in ds
                       if g.edge_index.numel()), default=0)
        max_degree = min(highest, degree_cap)
    info = TUInfo(name, ds.num_node_attributes, ds.num_node_labels, ds.num_edge_attributes,
                  ds.num_edge_labels, max_degree, int(y.max()) + 1)
    return ds, info
