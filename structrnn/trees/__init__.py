"""Trees: the :class:`Tree` type, PTB text, conversions, vocabularies, batches and the recursive
models (Tree-LSTM, Tree-GRU, recursive NN, RNTN)."""

from structrnn.trees.loader import TreeLoader, collate_trees
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM
from structrnn.trees.ptb import ParseError, PTBFile, parse_ptb, read_ptb_file, write_ptb_file
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

__all__ = ["Tree", "ParseError", "PTBFile", "parse_ptb", "read_ptb_file", "write_ptb_file",
           "Vocab", "TreeLoader", "collate_trees", "TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN",
           "BiTreeLSTM"]
