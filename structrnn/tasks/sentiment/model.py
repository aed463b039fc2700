"""Parse-tree sentiment: the model that classifies every node of a tree, and its metrics.

The recipe follows Tai et al. (2015): 300-d embeddings, a Tree-LSTM of hidden size 150, dropout
0.5, a softmax classifier on every node, node-level cross-entropy on all labelled nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structrnn.cells import NaryLSTMCell
from structrnn.levels.schedule import TreeSchedule
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM

MODELS = ("tree-lstm", "child-sum-tree-lstm", "tree-gru", "rntn", "recursive-nn",
          "bi-tree-lstm")


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` whose CPU mask is a uniform draw kept where it is ``>= p``: the same
    Bernoulli(1 - p) mask and 1 / (1 - p) scaling, 3-4x faster than the ``bernoulli_`` that
    ``torch.nn.functional.dropout`` draws on the CPU (two dropouts were a tenth of an SST
    step). Elsewhere, in evaluation, or with p = 0 or 1, it is ``torch.nn.Dropout``."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.device.type != "cpu" or not 0.0 < self.p < 1.0:
            return super().forward(x)
        scale = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x.mul_(scale) if self.inplace else x * scale


class RecurrentDropoutNaryLSTMCell(NaryLSTMCell):
    """:class:`~structrnn.NaryLSTMCell` with recurrent dropout without memory loss (Semeniuta,
    Severyn & Barth 2016), the Tree-LSTM regulariser of Looks et al. (2017, TensorFlow Fold's
    ``BinaryTreeLSTMCell``): in training the candidate update ``g`` is dropped before it enters
    the memory,

        c = i ⊙ drop(g) + Σ_k f_k ⊙ c_k        h = o ⊙ tanh(c),

    so the children's memories flow to the parent intact while their contribution to the
    update, through ``U_g h``, is regularised. The mask is drawn afresh for every node (each
    row of each level, as Fold's per-call ``tf.nn.dropout``), not once per tree; the kept units
    are scaled by 1 / (1 - p). In evaluation (or with p = 0) it is the stock cell, though it
    runs op by op rather than through the fused kernel.
    """

    def __init__(self, input_size: int, hidden_size: int, arity: int = 2, bias: bool = True,
                 recurrent_dropout: float = 0.0, device=None, dtype=None) -> None:
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent_dropout: expected a probability in [0, 1), got "
                             f"{recurrent_dropout}")
        super().__init__(input_size, hidden_size, arity, bias, device=device, dtype=dtype)
        self.recurrent_dropout = Dropout(recurrent_dropout)

    def combine(self, x_proj, prev, index, size, child_index=None, pos=None):
        if not self.training or self.recurrent_dropout.p == 0.0:
            return super().combine(x_proj, prev, index, size, child_index, pos)
        pos = child_index if child_index is not None else pos
        return self._nary_step(x_proj, prev, index, size, pos, candidate=self.recurrent_dropout)


def _tree_lstm(embed_dim: int, hidden: int, recurrent_dropout: float = 0.0) -> TreeLSTM:
    encoder = TreeLSTM(embed_dim, hidden, variant="n-ary", arity=2)
    if recurrent_dropout > 0:  # the same parameters (names, shapes, init), another combine
        encoder.cell = RecurrentDropoutNaryLSTMCell(embed_dim, hidden, 2,
                                                    recurrent_dropout=recurrent_dropout)
    return encoder


_ENCODERS = {  # name -> (embed_dim, hidden) -> the encoder
    # the constituency (binary N-ary) Tree-LSTM of Tai et al. 2015
    "tree-lstm": _tree_lstm,
    "child-sum-tree-lstm": lambda e, h: TreeLSTM(e, h, variant="child-sum"),
    "tree-gru": TreeGRU, "rntn": lambda e, h: RNTN(h),
    "recursive-nn": lambda e, h: RecursiveNN(h), "bi-tree-lstm": BiTreeLSTM}


def build_encoder(name: str, embed_dim: int, hidden: int, recurrent_dropout: float = 0.0
                  ) -> tuple[nn.Module, int]:
    """The tree encoder for ``name`` and the width of its node states (``recurrent_dropout``:
    the ``tree-lstm``'s, :class:`RecurrentDropoutNaryLSTMCell`)."""
    if name not in _ENCODERS:
        raise ValueError(f"model: expected one of {MODELS}, got {name!r}")
    if recurrent_dropout:
        if name != "tree-lstm":
            raise ValueError(f"recurrent_dropout: only the tree-lstm model has it, got model "
                             f"{name!r}")
        return _tree_lstm(embed_dim, hidden, recurrent_dropout), hidden
    return _ENCODERS[name](embed_dim, hidden), hidden * (2 if name == "bi-tree-lstm" else 1)


class TreeSentiment(nn.Module):
    """Embedding -> tree encoder -> per-node classifier.

    Args:
        vocab_size: rows of the embedding.
        num_classes: 5 (fine-grained) or 2 (binary).
        model: one of :data:`MODELS`.
        embed_dim, hidden, dropout: sizes and the dropout rate (on embeddings and node states).
        vectors: optional (vocab_size, embed_dim) pretrained embedding rows.
        embed_init: without ``vectors``, draw the embedding from U(-embed_init, embed_init)
            (Tai et al.'s code uses 0.05) instead of ``nn.Embedding``'s N(0, 1).
        sparse_embedding: sparse gradients for the embedding (optimizers that take them, such
            as Adagrad, then update only the rows used).
        word_dropout: in training, the probability that a token is replaced by ``unk_id``.
            Without it the unknown word's row is never trained (every training word is in the
            vocabulary), yet dev and test words outside the vocabulary all read it.
        unk_id: row of the unknown word (None: the vocabulary has none).
        recurrent_dropout: ``tree-lstm`` only: the probability of dropping a unit of the
            cell's candidate update in training (:class:`RecurrentDropoutNaryLSTMCell`).

    ``forward(batch)`` takes a tree ``Batch`` (``x`` token ids, -1 on nodes without a token)
    and returns logits (N, num_classes), one row per node.
    """

    def __init__(self, vocab_size: int, num_classes: int = 5, model: str = "tree-lstm",
                 embed_dim: int = 300, hidden: int = 150, dropout: float = 0.5,
                 vectors: Tensor | None = None, embed_init: float | None = None,
                 sparse_embedding: bool = False, word_dropout: float = 0.0,
                 unk_id: int | None = 0, recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout: expected a probability in [0, 1), got {word_dropout}")
        if word_dropout > 0 and unk_id is None:
            raise ValueError("word_dropout needs an unknown word to drop to (unk_id is None)")
        self.word_dropout = word_dropout
        self.unk_id = unk_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, sparse=sparse_embedding)
        if vectors is not None:
            self.embedding.weight.data.copy_(vectors)
        elif embed_init is not None:
            nn.init.uniform_(self.embedding.weight, -embed_init, embed_init)
        self.model_name = model
        self.encoder, width = build_encoder(model, embed_dim, hidden, recurrent_dropout)
        # Recursive nets compose vectors of the hidden size: project the words to it.
        self.project = (nn.Linear(embed_dim, hidden) if model in ("rntn", "recursive-nn")
                        else None)
        self.dropout = Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def encode(self, x: Tensor, edge_index: Tensor, height: Tensor | None = None,
               child_index: Tensor | None = None, schedule: TreeSchedule | None = None
               ) -> Tensor:
        """Node states (N, width) from token ids ``x`` (N,) (-1 = no token: zero input);
        ``child_index`` (N,) each node's slot under its parent (the N-ary Tree-LSTM's)."""
        has_token = (x >= 0).unsqueeze(1)
        x = x.clamp(min=0)
        if self.training and self.word_dropout > 0:
            dropped = torch.rand(x.shape, device=x.device) < self.word_dropout
            x = x.masked_fill(dropped, self.unk_id)
        if isinstance(self.encoder, TreeLSTM) and x.device.type == "cpu":
            return self._encode_tokens(x, has_token.squeeze(1), edge_index, height,
                                       child_index, schedule)
        emb = self.embedding(x) * has_token
        emb = self.dropout(emb)
        if self.project is not None:
            emb = torch.tanh(self.project(emb)) * has_token
        return self.encoder(emb, edge_index, height=height, child_index=child_index,
                            schedule=schedule)

    def _encode_tokens(self, x: Tensor, has_token: Tensor, edge_index: Tensor,
                       height: Tensor | None, child_index: Tensor | None,
                       schedule: TreeSchedule | None) -> Tensor:
        """:meth:`encode` for a Tree-LSTM on the CPU, with the same states: only the M nodes
        with a token (about half of a sentence's tree, its leaves) are embedded, dropped out and
        projected, instead of N rows of which the rest are zeros. (The row ids are read on the
        host, free on the CPU; on a GPU that would be a synchronisation per batch, so there the
        dense path runs.)"""
        rows = has_token.nonzero().squeeze(1)  # (M,)
        emb = self.dropout(self.embedding(x.index_select(0, rows)))  # (M, embed_dim)
        return self.encoder(emb, edge_index, height=height, child_index=child_index,
                            schedule=schedule, x_rows=rows, num_nodes=x.numel())

    def forward(self, batch) -> Tensor:
        h = self.encode(batch.x, batch.edge_index, getattr(batch, "height", None),
                        getattr(batch, "child_index", None), getattr(batch, "schedule", None))
        return self.classifier(self.dropout(h))


def node_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over labelled nodes (``y >= 0``)."""
    return F.cross_entropy(logits, y, ignore_index=-1)


def root_index(batch) -> Tensor:
    """Row of each tree's root: nodes are in pre-order, so the first node of each tree."""
    return batch.ptr[:-1]


def ensemble_logits(models: nn.Module | Sequence[nn.Module], batch) -> Tensor:
    """(N, C) logits of one model, or of an ensemble: the log of its members' mean class
    probabilities (their softmax is that mean, so argmax, cross-entropy and
    :func:`binary_from_fine` read the ensemble's probabilities)."""
    if isinstance(models, nn.Module):
        return models(batch)
    if len(models) == 1:
        return models[0](batch)
    probs = torch.stack([m(batch).float().softmax(-1) for m in models]).mean(0)
    return probs.log()


def binary_from_fine(logits: Tensor) -> Tensor:
    """Binary prediction from 5-class logits: P(0) + P(1) against P(3) + P(4)."""
    p = logits.softmax(-1)
    return (p[:, 3:].sum(-1) > p[:, :2].sum(-1)).long()


@torch.no_grad()
def evaluate(model: TreeSentiment | Sequence[TreeSentiment], loader,
             device: torch.device) -> dict:
    """Root and all-node accuracies, the mean node loss, and the root predictions.

    ``model``: one model, or several whose class probabilities are averaged (an ensemble of
    seeds: :func:`ensemble_logits`).

    For a 5-class model also the binary root accuracy on trees with a non-neutral root
    (the fine-grained model's P(negative) vs P(positive), as Socher et al. 2013 report).
    """
    models = [model] if isinstance(model, nn.Module) else list(model)
    for m in models:
        m.eval()
    totals = {"root_correct": 0, "roots": 0, "node_correct": 0, "nodes": 0, "loss": 0.0,
              "bin_correct": 0, "bin_roots": 0}
    root_true, root_pred = [], []
    for batch in loader:
        batch = batch.to(device)
        logits = ensemble_logits(models, batch)
        labelled = batch.y >= 0
        pred = logits.argmax(-1)
        roots = root_index(batch)
        totals["loss"] += float(F.cross_entropy(logits[labelled], batch.y[labelled],
                                                reduction="sum"))
        totals["node_correct"] += int((pred == batch.y)[labelled].sum())
        totals["nodes"] += int(labelled.sum())
        y_root = batch.y[roots]
        keep = y_root >= 0
        totals["root_correct"] += int((pred[roots] == y_root)[keep].sum())
        totals["roots"] += int(keep.sum())
        root_true.append(y_root.cpu())
        root_pred.append(pred[roots].cpu())
        if logits.size(1) == 5:
            polar = y_root != 2
            bin_true = (y_root[polar] > 2).long()
            totals["bin_correct"] += int((binary_from_fine(logits[roots][polar]) == bin_true).sum())
            totals["bin_roots"] += int(polar.sum())
    out = {
        "root_acc": totals["root_correct"] / max(totals["roots"], 1),
        "all_nodes_acc": totals["node_correct"] / max(totals["nodes"], 1),
        "loss": totals["loss"] / max(totals["nodes"], 1),
        "root_true": torch.cat(root_true) if root_true else torch.empty(0, dtype=torch.long),
        "root_pred": torch.cat(root_pred) if root_pred else torch.empty(0, dtype=torch.long),
    }
    if totals["bin_roots"]:
        out["binary_root_acc"] = totals["bin_correct"] / totals["bin_roots"]
    return out
