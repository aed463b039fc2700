"""Several parsers as one: their span scores averaged, decoded once by CKY.

A run of ``structrnn train parser --seeds S1,S2,...`` holds one parser per seed; its
predictor parses with all of them. The mean of K charts scores a tree as the mean of its K
scores (a tree's score is the sum of its spans' scores), so CKY of the mean chart finds the
tree the K parsers agree on best, not a vote of their K separate trees.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from structrnn.trees.parser import Parser
from structrnn.trees.spans import Span, cky

__all__ = ["mean_span_scores", "parse_spans"]


@torch.no_grad()
def mean_span_scores(parsers: Sequence[Parser], sentences: Sequence[Sequence[str]]
                     ) -> tuple[Tensor, Tensor]:
    """The parsers' mean chart of one batch of tokenised sentences.

    Returns:
        scores (B, N + 1, N + 1): ``[b, i, j]`` the mean score of span ``(i, j)`` of sentence
        b (0 outside ``0 <= i < j <= lengths[b]``), on the first parser's device; lengths (B,).
    """
    if not parsers:
        raise ValueError("parsers: expected at least one parser, got none")
    charts, lengths = [], None
    for parser in parsers:
        parser.eval()
        batch = parser.encode(sentences).to(parser.device)
        charts.append(parser(batch).float().to(parsers[0].device))
        lengths = batch.lengths
    return torch.stack(charts).mean(0), lengths


def parse_spans(parsers: Sequence[Parser], sentences: Sequence[Sequence[str]],
                batch_size: int = 128) -> list[list[Span]]:
    """The spans (pre-order ``(i, j)`` pairs) of each sentence's best tree under the
    parsers' mean chart: :meth:`Parser.parse_spans` for an ensemble (one parser: the same).
    Sentences are batched by length; the order of the input is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if len(parsers) == 1:
        return parsers[0].parse_spans(sentences, batch_size)
    order = sorted(range(len(sentences)), key=lambda k: len(sentences[k]))
    out: list[list[Span]] = [[] for _ in sentences]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        scores, lengths = mean_span_scores(parsers, [sentences[k] for k in chunk])
        for k, spans in zip(chunk, cky(scores, lengths).span_lists(), strict=True):
            out[k] = spans
    return out
