"""Spans of binary trees: a tree's constituents, evalb-style bracket F1, CKY decoding of the
highest-scoring binary tree, and the trivial baselines (right-, left-branching, balanced).

A span ``(i, j)`` covers the words ``i .. j-1`` of a sentence of ``n`` words (half-open word
offsets, ``0 <= i < j <= n``; the offsets are the fenceposts between the words). A binary tree
over ``n`` words has exactly ``2n - 1`` spans: the ``n`` words, the whole sentence and ``n - 2``
others.

Everything here is about unlabeled bracketings; :func:`spans_to_tree` writes one label (``X``)
on every node so that the result reads like a treebank tree. :func:`cky` is vectorised over the
spans of a length and over the sentences of a batch: its only Python loops run over span
lengths (the chart) and over tree depth (the backtracking), never over spans or nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from structrnn._errors import InputError
from structrnn.trees.tree import Tree

__all__ = ["tree_spans", "bracket_f1", "cky", "CKYResult", "spans_to_tree", "right_branching",
           "left_branching", "balanced", "right_branching_spans", "left_branching_spans",
           "balanced_spans", "is_punctuation"]

Span = tuple[int, int]


# ----------------------------------------------------------------------------------- spans
def tree_spans(tree: Tree) -> set[Span]:
    """The spans of every node of ``tree`` over its leaves (the nodes without children), as
    half-open leaf offsets: a leaf ``k`` gives ``(k, k + 1)``, the root ``(0, n)``. Nodes of a
    unary chain share one span. Iterative: any depth works."""
    nodes, parents, _ = tree.flatten()
    start = [0] * len(nodes)
    end = [0] * len(nodes)
    offset = 0
    for v, node in enumerate(nodes):  # pre-order: leaves come left to right
        start[v] = offset
        if not node.children:
            offset += 1
            end[v] = offset
    for v in range(len(nodes) - 1, 0, -1):  # children before parents
        p = parents[v]
        end[p] = max(end[p], end[v])
    return set(zip(start, end, strict=True))


def _scored(spans: Iterable[Span], n: int) -> set[Span]:
    """The spans the F1 counts: length >= 2, the whole sentence left out."""
    return {(i, j) for i, j in spans if j - i >= 2 and (i, j) != (0, n)}


def bracket_f1(gold_trees: Sequence[Tree], predicted_trees: Sequence[Tree | Iterable[Span]]
               ) -> dict[str, float | int]:
    """Unlabeled bracket precision, recall and F1 of ``predicted_trees`` against
    ``gold_trees``, evalb-style.

    Convention: a bracket is a span of two or more leaves; the span of the whole sentence is
    left out (every tree has it), and so are single words; spans of a unary chain count once;
    punctuation counts like any word (SST has no punctuation-free convention, and every tree of
    the corpus is scored on all its leaves). The figures are micro-averaged over the corpus:
    precision = matched / predicted brackets, recall = matched / gold brackets, both summed
    over all sentences (evalb's "Bracketing" figures, not a mean of sentence scores). With no
    predicted (gold) brackets at all, precision (recall) is 1.0 when the other side has none
    either, else 0.0.

    Args:
        gold_trees: the reference trees.
        predicted_trees: trees, or span collections such as :func:`cky`'s, over the same
            number of leaves as their gold tree.

    Returns:
        ``precision``, ``recall``, ``f1`` (fractions in [0, 1]), ``exact`` (the fraction of
        sentences whose brackets all match), ``matched``, ``gold``, ``predicted`` (bracket
        counts) and ``sentences``.

    Raises:
        InputError: the lists differ in length, or a pair differs in its number of leaves.
    """
    if len(gold_trees) != len(predicted_trees):
        raise InputError(f"bracket_f1: {len(gold_trees)} gold trees but {len(predicted_trees)} "
                         "predicted ones")
    matched = n_gold = n_pred = exact = 0
    for k, (gold, pred) in enumerate(zip(gold_trees, predicted_trees, strict=True)):
        gold_spans = tree_spans(gold)
        n = max(j for _, j in gold_spans)
        pred_spans = tree_spans(pred) if isinstance(pred, Tree) else set(map(tuple, pred))
        m = max((j for _, j in pred_spans), default=0)
        if m != n:
            raise InputError(f"bracket_f1: sentence {k}: the gold tree has {n} leaves, the "
                             f"predicted one {m}")
        g, p = _scored(gold_spans, n), _scored(pred_spans, n)
        both = len(g & p)
        matched, n_gold, n_pred = matched + both, n_gold + len(g), n_pred + len(p)
        exact += both == len(g) == len(p)
    precision = matched / n_pred if n_pred else float(n_gold == 0)
    recall = matched / n_gold if n_gold else float(n_pred == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "exact": exact / len(gold_trees) if len(gold_trees) else 1.0,
            "matched": matched, "gold": n_gold, "predicted": n_pred,
            "sentences": len(gold_trees)}


# ----------------------------------------------------------------------------------- CKY
class CKYResult(NamedTuple):
    """The best binary tree of every sentence of a batch.

    Attributes:
        spans: (S, 3) long, rows ``(b, i, j)``: every span of every best tree (``2 n_b - 1``
            for sentence ``b``), sentence by sentence, each tree in pre-order (a node before its
            children, the left child's subtree before the right's).
        ptr: (B + 1,) long, sentence ``b``'s spans are rows ``ptr[b]:ptr[b + 1]``.
        score: (B,) the total score of each best tree (the sum of its spans' scores).
    """

    spans: Tensor
    ptr: Tensor
    score: Tensor

    def span_lists(self) -> list[list[Span]]:
        """The spans of each tree as Python ``(i, j)`` pairs, in pre-order."""
        rows = self.spans[:, 1:].tolist()
        bounds = self.ptr.tolist()
        return [[tuple(r) for r in rows[a:b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _as_lengths(lengths: Tensor | Sequence[int], batch: int, n: int) -> Tensor:
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if lengths.shape != (batch,):
        raise ValueError(f"cky: lengths must have shape ({batch},), one per sentence, got "
                         f"{tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > n):
        raise ValueError(f"cky: every length must be in 1..{n} (the scores are "
                         f"({batch}, {n + 1}, {n + 1})), got {lengths.tolist()}")
    return lengths


def cky(span_scores: Tensor, lengths: Tensor | Sequence[int]) -> CKYResult:
    """The highest-scoring binary tree of every sentence, where a tree's score is the sum of
    the scores of its spans.

    The chart ``best[b, i, j]`` (the best subtree over words ``i..j-1``) is filled one span
    length at a time, for every start and every sentence at once::

        best[:, i, i + l] = score[:, i, i + l] + max_k (best[:, i, k] + best[:, k, i + l])

    and the trees are read back top-down one depth at a time (both vectorised, no autograd:
    the chart runs under ``torch.no_grad``; score a tree's spans with ``span_scores[b, i, j]``
    to differentiate). A padded sentence's chart entries beyond its length are computed but
    never read.

    Args:
        span_scores: (B, N + 1, N + 1) float, ``[b, i, j]`` the score of span ``(i, j)`` for
            ``0 <= i < j <= lengths[b]``; other entries are ignored (they must be finite).
        lengths: (B,) the number of words of each sentence, in 1..N.

    Returns:
        :class:`CKYResult` (spans in pre-order per sentence, their offsets, the best scores).
    """
    if span_scores.dim() != 3 or span_scores.size(1) != span_scores.size(2):
        raise ValueError(f"cky: span_scores must have shape (B, N + 1, N + 1), got "
                         f"{tuple(span_scores.shape)}")
    batch, n = span_scores.size(0), span_scores.size(1) - 1
    lengths = _as_lengths(lengths, batch, n)
    with torch.no_grad():
        scores = span_scores.detach()
        best, split = _chart(scores, n)
        rows = torch.arange(batch, device=scores.device)
        total = best[rows, 0, lengths.to(scores.device)]
        spans = _backtrack(split, lengths.to(scores.device))
    ptr = torch.zeros(batch + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(2 * lengths - 1, 0)
    return CKYResult(spans.cpu(), ptr, total)


def _chart(scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The CKY chart ``best`` (B, N+1, N+1) and the best split point ``split`` of each span."""
    device = scores.device
    best = torch.zeros_like(scores)
    split = torch.zeros(scores.shape, dtype=torch.long, device=device)
    fence = torch.arange(n + 1, device=device)
    best[:, fence[:-1], fence[1:]] = scores[:, fence[:-1], fence[1:]]  # single words
    for length in range(2, n + 1):
        starts = fence[: n - length + 1]                              # (S,)
        ends = starts + length
        ks = starts[:, None] + fence[None, 1:length]                  # (S, length - 1)
        # every split point of every span of this length, for every sentence: (B, S, length-1)
        both = best[:, starts[:, None], ks] + best[:, ks, ends[:, None]]
        value, arg = both.max(-1)
        best[:, starts, ends] = scores[:, starts, ends] + value
        split[:, starts, ends] = starts + 1 + arg
    return best, split


def _backtrack(split: Tensor, lengths: Tensor) -> Tensor:
    """Every span of every best tree, (S, 3) rows ``(b, i, j)`` sorted into pre-order: read
    top-down, all the spans of one depth of all the sentences at once."""
    batch, size = split.size(0), split.size(1)
    b = torch.arange(batch, device=split.device)
    i = torch.zeros_like(b)
    j = lengths.clone()
    found = []
    while b.numel():
        found.append(torch.stack([b, i, j], 1))
        inner = j - i >= 2
        b, i, j = b[inner], i[inner], j[inner]
        k = split[b, i, j]
        b, i, j = torch.cat([b, b]), torch.cat([i, k]), torch.cat([k, j])
    spans = torch.cat(found)
    # pre-order of a binary tree: by start, and among the spans of one start (a chain of
    # ancestors) the longest first
    key = (spans[:, 0] * size + spans[:, 1]) * size + (size - 1 - spans[:, 2])
    return spans[torch.argsort(key)]


# ----------------------------------------------------------------------------------- trees
def spans_to_tree(tokens: Sequence[str], spans: Iterable[Span], label: str = "X") -> Tree:
    """The tree of a bracketing: one node per distinct span (the words and the whole sentence
    are added when missing), every node labelled ``label``, the leaves holding ``tokens``.
    A bracketing need not be binary (a node gets as many children as its largest sub-spans).

    Raises:
        ValueError: no tokens, a span outside ``0..len(tokens)``, or two spans that cross.
    """
    n = len(tokens)
    if n == 0:
        raise ValueError("spans_to_tree: no tokens")
    chosen = {(int(i), int(j)) for i, j in spans}
    bad = [s for s in chosen if not 0 <= s[0] < s[1] <= n]
    if bad:
        raise ValueError(f"spans_to_tree: span {min(bad)} is outside the {n} words")
    if n == 1:
        return Tree(label, token=tokens[0])
    chosen |= {(k, k + 1) for k in range(n)} | {(0, n)}
    ordered = sorted(chosen, key=lambda s: (s[0], -s[1]))
    root = Tree(label)
    stack: list[tuple[Span, Tree]] = [((0, n), root)]
    for i, j in ordered[1:]:
        while stack[-1][0][1] <= i:  # the open spans that end before this one starts
            stack.pop()
        (_, top_end), parent = stack[-1]
        if j > top_end:
            raise ValueError(f"spans_to_tree: span {(i, j)} crosses span {stack[-1][0]}")
        node = Tree(label, token=tokens[i]) if j - i == 1 else Tree(label)
        parent.children.append(node)
        stack.append(((i, j), node))
    return root


def is_punctuation(token: str) -> bool:
    """A token with no letter or digit (``.``, ``!``, ``...``, ``--``, ``''``)."""
    return not any(c.isalnum() for c in token)


def right_branching_spans(n: int, punctuation_last: bool = False) -> list[Span]:
    """``(0, n), (1, n), ...``; with ``punctuation_last`` (and n >= 3) the last word hangs
    from the root and the rest branches right below it, as SST attaches a sentence-final
    period."""
    if punctuation_last and n >= 3:
        return [(0, n)] + [(i, n - 1) for i in range(n - 2)] + [(k, k + 1) for k in range(n)]
    return [(i, n) for i in range(n - 1)] + [(k, k + 1) for k in range(n)]


def left_branching_spans(n: int) -> list[Span]:
    """``(0, n), (0, n - 1), ..., (0, 2)`` and the words."""
    return [(0, j) for j in range(2, n + 1)] + [(k, k + 1) for k in range(n)]


def balanced_spans(n: int) -> list[Span]:
    """The balanced tree of :func:`structrnn.trees.tokenize.balanced_tree` (what structrnn
    puts over a raw sentence without a parser): neighbours paired level by level, an odd one
    out moving up as it is."""
    level = [(k, k + 1) for k in range(n)]
    out = list(level)
    while len(level) > 1:
        paired = [(level[k][0], level[k + 1][1]) for k in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
        out += paired
    return out


def right_branching(tokens: Sequence[str], label: str = "X") -> Tree:
    """The right-branching baseline with the sentence-final punctuation (see
    :func:`is_punctuation`) attached at the top, as the treebank attaches it."""
    last = bool(tokens) and is_punctuation(tokens[-1])
    return spans_to_tree(tokens, right_branching_spans(len(tokens), last), label)


def left_branching(tokens: Sequence[str], label: str = "X") -> Tree:
    """The left-branching baseline: ``((((w1 w2) w3) w4) ...)``."""
    return spans_to_tree(tokens, left_branching_spans(len(tokens)), label)


def balanced(tokens: Sequence[str], label: str = "X") -> Tree:
    """The balanced baseline (:func:`balanced_spans`)."""
    return spans_to_tree(tokens, balanced_spans(len(tokens)), label)
