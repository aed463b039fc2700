"""structrnn: one recurrent cell interface for sequences, trees and graphs.

Cells (:mod:`structrnn.cells`) take ``(x, prev, index=None, size=None)``; the same cell runs
along a sequence (:class:`LSTM`), bottom-up over a tree (:class:`TreeLSTM`) or as the update
function of a graph network (:class:`GraphNetwork`).
"""

from structrnn.cells import GRUCell, LSTMCell, NaryLSTMCell, RNNCell, RNNCellBase
from structrnn.graphs.models import (
    MPNN,
    DeepSets,
    EncodeProcessDecode,
    GraphIndependent,
    InteractionNetwork,
    NonLocal,
    RelationNetwork,
)
from structrnn.graphs.network import GraphNetwork
from structrnn.levels.run import run_down, run_schedule, run_up
from structrnn.levels.schedule import tree_schedule
from structrnn.sequence import GRU, LSTM, RNN
from structrnn.trees.loader import TreeLoader, collate_trees
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM
from structrnn.trees.ptb import ParseError, PTBFile, read_ptb_file, write_ptb_file
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

__version__ = "0.1.0"

__all__ = [
    "RNNCellBase", "RNNCell", "GRUCell", "LSTMCell", "NaryLSTMCell",
    "RNN", "GRU", "LSTM",
    "Tree", "ParseError", "read_ptb_file", "write_ptb_file", "PTBFile", "Vocab",
    "TreeLSTM", "TreeGRU", "RecursiveNN", "RNTN", "BiTreeLSTM", "run_up", "run_down",
    "run_schedule",
    "tree_schedule", "collate_trees", "TreeLoader",
    "GraphNetwork", "GraphIndependent", "InteractionNetwork", "DeepSets", "RelationNetwork",
    "MPNN", "NonLocal", "EncodeProcessDecode",
]
