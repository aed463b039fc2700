"""A tree sentiment run as one module of tensors, for ``torch.export`` and ONNX.

:class:`DeployedSentiment` is the run's :class:`~structrnn.tasks.sentiment.model.TreeSentiment`
in evaluation, with its tree encoder's level loop unrolled to a ``max_height`` fixed at export
time (:class:`structrnn.export.Unrolled`): the embedding of the token ids, the encoder and the
per-node classifier, plus the softmax. Reading sentences into trees (tokenising, the balanced
tree or a parser's) stays in Python: :func:`tree_inputs` makes the inputs of a list of
:class:`~structrnn.Tree`.

Inputs, in order (``N`` nodes of the batch's trees, ``E = N - trees`` edges)::

    x            (N,)    int64  token ids, -1 on nodes without a token (inner nodes)
    edge_index   (2, E)  int64  child -> parent
    child_index  (N,)    int64  each node's slot under its parent (read by the N-ary
                                Tree-LSTM, ``tree-lstm``; the other encoders ignore it)

Outputs: ``logits`` (N, C) and ``probabilities`` (N, C), one row per node in the inputs' order
(a tree's root is its first node). A tree deeper than ``max_height`` is never a wrong answer:
:func:`structrnn.export.check_height` raises :class:`~structrnn.InputError` naming both heights
(run it before onnxruntime, where the outputs are NaN), the ``torch.export`` program raises
``RuntimeError`` and this module in eager PyTorch the ``InputError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from structrnn._errors import InputError
from structrnn.export import Unrolled
from structrnn.tasks.sentiment.model import TreeSentiment

__all__ = ["DeployedSentiment", "tree_inputs", "check_trees", "INPUT_NAMES", "OUTPUT_NAMES"]

INPUT_NAMES = ("x", "edge_index", "child_index")
OUTPUT_NAMES = ("logits", "probabilities")


class DeployedSentiment(nn.Module):
    """A tree sentiment model with its encoder unrolled to ``max_height`` (see the module).

    Args:
        model: the run's :class:`~structrnn.tasks.sentiment.model.TreeSentiment` (its weights
            are shared, not copied).
        max_height: the deepest tree (longest leaf-to-root path, in edges) the file computes.

    Raises:
        InputError: an encoder without an unrolled form (``rntn``, ``recursive-nn``: a node
            without children is its word vector, not the zero state the unrolled rounds start
            from), or a ``max_height`` that is not an integer >= 0.
    """

    def __init__(self, model: TreeSentiment, max_height: int) -> None:
        super().__init__()
        if model.project is not None:
            raise InputError(f"format: a {model.model_name!r} sentiment run has no torch.export "
                             "/ ONNX form yet (its leaves are word vectors, not zero states, "
                             "which the unrolled level loop assumes); export format='structrnn'")
        self.embedding, self.classifier = model.embedding, model.classifier
        self.encoder = Unrolled(model.encoder, max_height)
        self.max_height = max_height

    def extra_repr(self) -> str:
        return f"max_height={self.max_height}"

    def forward(self, x: Tensor, edge_index: Tensor, child_index: Tensor
                ) -> tuple[Tensor, Tensor]:
        has_token = (x >= 0).unsqueeze(1)
        emb = self.embedding(x.clamp(min=0)) * has_token
        h = self.encoder(emb, edge_index, child_index)
        logits = self.classifier(h)
        return logits, logits.softmax(-1)


def tree_inputs(trees: Sequence, vocab) -> tuple[Tensor, Tensor, Tensor]:
    """The inputs of :class:`DeployedSentiment` for a list of :class:`~structrnn.Tree` and the
    run's vocabulary."""
    from structrnn.trees.loader import collate_trees

    batch = collate_trees([tree.to_data(vocab) for tree in trees])
    return batch.x, batch.edge_index, batch.child_index


def check_trees(trees: Sequence, vocab, max_height: int) -> None:
    """:func:`structrnn.export.check_height` for trees (before running an exported file)."""
    from structrnn.export import check_height

    x, edge_index, _ = tree_inputs(trees, vocab)
    check_height(edge_index, x.numel(), max_height, "trees")
