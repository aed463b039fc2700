"""Sentence sentiment with a sequence network: the baselines of Tai et al. (2015, Table 2).

A sequence model reads a sentence's words in order -- the tree's leaves left to right -- with
``sr.LSTM`` or ``sr.GRU`` (uni- or bidirectional, one or more layers), pools the states (the
last state, or the mean or the max over the words) and classifies the sentence. It has no phrase
nodes: it is trained and scored on the root label only (:func:`root_labels_only`), so a run's
``all_nodes`` figures are its root figures.

``tree-lstm-as-sequence`` runs the cell of the constituency Tree-LSTM (``--model tree-lstm``)
along the sentence instead: each word a node whose one child (slot 0) is the previous word's
node (:func:`structrnn.sequence.run_cell`). Started from a trained tree run with
``--init-from RUN``, it shows how much of the Tree-LSTM's gain is the structure: the same cell,
the same words and vectors, no tree. ``lstm-as-tree`` goes the other way: the cell of a
sequence LSTM (``--model lstm``, read by name with ``--init-from``) run bottom-up over the parse
tree (Child-Sum: a forget gate per child; :class:`SequenceCellOnTree`), scored on the root like
the sequence models.

``SequenceSentiment`` takes the embedding, word dropout and classifier of
:class:`~structrnn.tasks.sentiment.model.TreeSentiment` unchanged and the same batches of trees;
only the encoder differs, so everything around it (the task, the metrics, the run folder, the
predictor) treats both kinds alike. Every node's row of the output is its sentence's.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from structrnn.cells import NaryLSTMCell
from structrnn.levels.run import run_up
from structrnn.levels.schedule import TreeSchedule
from structrnn.sequence import GRU, LSTM, run_cell
from structrnn.tasks.sentiment.model import TreeSentiment

__all__ = ["SEQUENCE_MODELS", "POOLS", "SequenceSentiment", "SentenceEncoder",
           "SequenceCellOnTree", "is_sequence_model", "root_labels_only", "leaf_sequences"]

SEQUENCE_MODELS = ("lstm", "bilstm", "gru", "bigru", "tree-lstm-as-sequence", "lstm-as-tree")
POOLS = ("last", "mean", "max")


def is_sequence_model(name: str) -> bool:
    """True for the names of :data:`SEQUENCE_MODELS`."""
    return name in SEQUENCE_MODELS


def leaf_sequences(x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each tree's leaves left to right, from a batch of trees in the layout of
    ``docs/architecture.md`` (nodes in pre-order, trees one after the other, edges child ->
    parent).

    Returns ``padded`` (B, L, F): the rows of ``x`` (N, F) at each tree's leaves, zero-padded;
    ``lengths`` (B,) on the CPU (one host synchronisation), and ``tree`` (N,) each node's tree.
    The batch must hold at least one tree.
    A root is the one node that is nobody's child, and pre-order puts it first in its tree, so
    the trees are the runs that start at the roots; pre-order also visits the leaves (the nodes
    without children) from left to right.
    """
    flag = torch.zeros(x.size(0), dtype=torch.bool, device=x.device)
    is_root = ~flag.index_fill(0, edge_index[0], True)
    is_leaf = ~flag.index_fill(0, edge_index[1], True)
    tree = is_root.long().cumsum(0) - 1
    leaves = is_leaf.nonzero().squeeze(1)
    leaf_tree = tree[leaves]
    # every tree has a leaf (a lone root is one), so the counts cover every tree
    lengths = torch.bincount(leaf_tree).cpu()
    first = (torch.cumsum(lengths, 0) - lengths).to(x.device)  # each tree's first leaf
    column = torch.arange(len(leaves), device=x.device) - first[leaf_tree]
    padded = x.new_zeros(len(lengths), int(lengths.max()), x.size(1))
    padded = padded.index_put((leaf_tree, column), x[leaves])
    return padded, lengths, tree


def _pool(states: Tensor, lengths: Tensor, last: Tensor, pool: str) -> Tensor:
    """(B, L, W) padded states -> (B, W): the final state ``last``, or the mean or the max over
    each sequence's own steps."""
    if pool == "last":
        return last
    on = (torch.arange(states.size(1)) < lengths.unsqueeze(1)).to(states.device).unsqueeze(2)
    if pool == "mean":
        return (states * on).sum(1) / lengths.to(states.device, states.dtype).unsqueeze(1)
    return states.masked_fill(~on, float("-inf")).max(1).values


class SentenceEncoder(nn.Module):
    """A sequence network over every tree's leaves, left to right; each node gets its tree's
    pooled sentence vector.

    Args:
        kind: ``"lstm"``, ``"gru"`` or ``"tree-lstm-as-sequence"`` (the N-ary Tree-LSTM cell,
            ``.cell``, with the names of :class:`~structrnn.TreeLSTM`, so a tree run's weights
            load into it by name).
        input_size, hidden_size: I and H.
        bidirectional, layers, dropout: of ``sr.LSTM`` / ``sr.GRU`` (dropout between layers).
        pool: ``"last"`` (the final state of the last layer: both directions' for a
            bidirectional network), ``"mean"`` or ``"max"`` over the words.

    ``forward(x, edge_index, ...)`` takes the tree encoders' arguments: ``x`` (N, I) node inputs
    (the words' vectors on the leaves), ``edge_index`` (2, E) child -> parent; returns
    (N, width), ``width = H * (2 if bidirectional else 1)``.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, bidirectional: bool = False,
                 layers: int = 1, dropout: float = 0.0, pool: str = "last") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool: expected one of {POOLS}, got {pool!r}")
        if kind == "tree-lstm-as-sequence" and (bidirectional or layers != 1):
            raise ValueError("tree-lstm-as-sequence runs the tree's one cell left to right: "
                             f"one layer, one direction (got layers={layers}, "
                             f"bidirectional={bidirectional})")
        self.kind, self.pool = kind, pool
        self.input_size = input_size
        self.width = hidden_size * (1 + bidirectional)
        if kind == "tree-lstm-as-sequence":
            self.cell = NaryLSTMCell(input_size, hidden_size, arity=2)
        else:
            network = {"lstm": LSTM, "gru": GRU}[kind]
            self.rnn = network(input_size, hidden_size, num_layers=layers, batch_first=True,
                               bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                child_index: Tensor | None = None, schedule: TreeSchedule | None = None
                ) -> Tensor:
        padded, lengths, tree = leaf_sequences(x, edge_index)
        return self.sentences(padded, lengths)[tree]

    def sentences(self, padded: Tensor, lengths: Tensor) -> Tensor:
        """(B, L, I) padded word vectors and their (B,) lengths (CPU) -> (B, width)."""
        packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        if self.kind == "tree-lstm-as-sequence":
            out, (h, _) = run_cell(self.cell, packed)
            last = h
        else:
            out, hidden = self.rnn(packed)
            h_n = hidden[0] if isinstance(hidden, tuple) else hidden
            D = 1 + self.rnn.bidirectional
            last = torch.cat(list(h_n[-D:]), dim=1)  # the top layer, every direction
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=padded.size(1))
        return _pool(states, lengths, last, self.pool)


class SequenceCellOnTree(nn.Module):
    """A sequence LSTM's cell run bottom-up over the tree: the Child-Sum Tree-LSTM pass with the
    weights of ``rnn`` (an ``sr.LSTM`` of one layer), kept under their sequence names
    (``rnn.weight_ih_l0``, ...) so that a sequence run's weights load into it by name.

    Arguments and result as :class:`~structrnn.TreeLSTM`: ``x`` (N, I) node inputs,
    ``edge_index`` (2, E) child -> parent; returns ``h`` (N, H).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.width = input_size, hidden_size
        self.rnn = LSTM(input_size, hidden_size)

    def forward(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
                child_index: Tensor | None = None, schedule: TreeSchedule | None = None
                ) -> Tensor:
        # the layer's cell holds no weights of its own: bind the network's for the pass
        weights = {f"cell.{n}": getattr(self.rnn, f"{n}_l0")
                   for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        return torch.func.functional_call(_UpPass(self.rnn.cells["l0"]), weights,
                                          (x, edge_index, height, schedule))


class _UpPass(nn.Module):
    """``run_up`` of one cell, as a module (what ``functional_call`` binds weights around)."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x, edge_index, height, schedule):
        return run_up(self.cell, x, edge_index, height, None, schedule)


class SequenceSentiment(TreeSentiment):
    """Embedding -> sequence network over the words -> pooled state -> classifier.

    Arguments as :class:`~structrnn.tasks.sentiment.model.TreeSentiment` (``model`` one of
    :data:`SEQUENCE_MODELS`), plus ``layers`` and ``pool`` (see :class:`SentenceEncoder`).
    ``forward(batch)`` takes the same tree ``Batch`` and returns (N, num_classes): every node's
    row is its sentence's logits (``lstm-as-tree``: each node's own); the root's row is the
    prediction. Train with :func:`root_labels_only` data.
    """

    def __init__(self, vocab_size: int, num_classes: int = 5, model: str = "lstm",
                 embed_dim: int = 300, hidden: int = 150, dropout: float = 0.5,
                 vectors: Tensor | None = None, embed_init: float | None = None,
                 sparse_embedding: bool = False, word_dropout: float = 0.0,
                 unk_id: int | None = 0, layers: int = 1, pool: str = "last") -> None:
        if not is_sequence_model(model):
            raise ValueError(f"model: expected one of {SEQUENCE_MODELS}, got {model!r}")
        # TreeSentiment builds the embedding, word dropout and dropout; its tree encoder and
        # classifier, built here at width 1 as a stand-in, are replaced just below
        super().__init__(vocab_size, num_classes, "tree-gru", embed_dim, 1, dropout, vectors,
                         embed_init, sparse_embedding, word_dropout, unk_id)
        self.model_name, self.layers, self.pool = model, layers, pool
        bidirectional = model in ("bilstm", "bigru")
        kind = model.removeprefix("bi") if bidirectional else model
        if model == "lstm-as-tree":
            if layers != 1 or pool != "last":
                raise ValueError("lstm-as-tree runs one LSTM cell up the tree and reads the "
                                 f"root: no layers or pooling (got layers={layers}, "
                                 f"pool={pool!r})")
            self.encoder = SequenceCellOnTree(embed_dim, hidden)
        else:
            self.encoder = SentenceEncoder(kind, embed_dim, hidden, bidirectional, layers,
                                           dropout, pool)
        self.classifier = nn.Linear(self.encoder.width, num_classes)


def root_labels_only(dataset):
    """A copy of a :class:`~structrnn.datasets.sst.TreeDataset` whose trees keep the root label
    only (every other node -1, which the losses and metrics skip): what a sequence model is
    trained and scored on. The trees and the vocabulary are shared; ``Data`` are shallow
    copies with a new ``y``."""
    sub = dataset[:]
    sub.data = [_root_label_only(d) for d in sub.data]
    return sub


def _root_label_only(data):
    y = torch.full_like(data.y, -1)
    y[0] = data.y[0]  # pre-order: the root is node 0
    out = copy.copy(data)  # a new store: the original keeps its labels
    out.y = y
    return out
