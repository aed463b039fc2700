"""Trees: the :class:`Tree` type (:mod:`.tree`), PTB text (:mod:`.ptb`), conversions to nltk,
networkx and PyG ``Data`` (:mod:`.convert`), vocabularies (:mod:`.vocab`), batches that carry
their level schedule (:mod:`.loader`) and the recursive models (:mod:`.models`: Tree-LSTM,
Tree-GRU, recursive NN, RNTN, bidirectional Tree-LSTM).

The data layout of a tree and of a batch of trees is in ``docs/architecture.md``. Nothing here
imports :mod:`structrnn.graphs`. :class:`TreeLoader` and :func:`collate_trees` need PyTorch
Geometric and are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from structrnn._lazy import lazy_exports
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM
from structrnn.trees.ptb import ParseError, PTBFile, parse_ptb, read_ptb_file, write_ptb_file
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

if TYPE_CHECKING:  # pragma: no cover
    from structrnn.trees.loader import TreeLoader, collate_trees

__all__ = ["Tree", "ParseError", "PTBFile", "parse_ptb", "read_ptb_file", "write_ptb_file",
           "Vocab", "TreeLoader", "collate_trees", "TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN",
           "BiTreeLSTM"]

__getattr__, __dir__ = lazy_exports(__name__, {".loader": ["TreeLoader", "collate_trees"]})
del annotations, TYPE_CHECKING, lazy_exports  # plumbing, not public names
