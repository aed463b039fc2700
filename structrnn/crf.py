"""``CRF``: a linear-chain conditional random field over the outputs of a sequence tagger.

A tagger (``sr.LSTM`` + ``nn.Linear``) scores every tag of every element on its own: the
*emissions*. A linear-chain CRF adds a score for every pair of consecutive tags (and for the
first and last tag), so the best tag sequence is chosen as a whole: in BMES segmentation an
``M`` can never follow an ``E``, and the CRF learns that from the data. For tags ``y_1..y_n``::

    score(y) = start[y_1] + Σ_t emission[t, y_t] + Σ_{t>1} transition[y_{t-1}, y_t] + end[y_n]
    log p(y | x) = score(y) - log Σ_{y'} exp score(y')

The sum over all ``num_tags ** n`` sequences is the forward algorithm (one ``logsumexp`` per
step over the batch); the best sequence is Viterbi decoding (the same recursion with ``max``).
Both loop over time steps only: every sequence of the batch and every tag pair is one tensor op.
The interface follows ``pytorch-crf`` (Kemal Kurniawan), written here so that structrnn needs no
extra package: ``CRF(num_tags, batch_first)``, ``forward(emissions, tags, mask)`` returns the
log-likelihood, ``decode(emissions, mask)`` the best tag lists.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from structrnn._checks import check_shape

__all__ = ["CRF", "REDUCTIONS"]

REDUCTIONS = ("none", "sum", "mean", "token_mean")


class CRF(nn.Module):
    """Linear-chain CRF with start and end transitions.

    Args:
        num_tags: K, the number of tags.
        batch_first: inputs are (batch, seq_len, ...) instead of (seq_len, batch, ...).

    Parameters: ``start_transitions`` (K,), ``end_transitions`` (K,), ``transitions`` (K, K)
    with ``transitions[i, j]`` the score of tag ``j`` right after tag ``i``; all drawn from
    U(-0.1, 0.1) as in pytorch-crf.

    Shapes (time-major; swap the first two dimensions with ``batch_first``): ``emissions``
    (T, B, K) float, ``tags`` (T, B) long, ``mask`` (T, B) bool, True on the elements of each
    sequence. Sequences are left-aligned: each mask column is ones then zeros, with at least
    one one (a packed batch padded by ``pad_packed_sequence`` is). ``mask=None`` means all on.
    """

    def __init__(self, num_tags: int, batch_first: bool = False) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"CRF: num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}" + (", batch_first=True" if self.batch_first else "")

    # -- the public calls ----------------------------------------------------------------------
    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None,
                reduction: str = "sum") -> Tensor:
        """The log-likelihood ``log p(tags | emissions)`` of each sequence, reduced.

        Args:
            emissions: (T, B, K) scores of each tag at each step (e.g. a tagger's logits).
            tags: (T, B) long, the gold tags (anything where ``mask`` is off).
            mask: (T, B) bool, or None for all on.
            reduction: ``"none"`` (B,), ``"sum"``, ``"mean"`` over sequences, or
                ``"token_mean"`` (the sum divided by the number of unmasked elements).

        Returns:
            The log-likelihood: minus it is the loss to minimise.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"CRF: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        emissions, mask = self._time_major(emissions, mask)
        tags = self._time_major_tags(tags, emissions, mask)
        llh = self._score(emissions, tags, mask) - self._log_partition(emissions, mask)
        if reduction == "none":
            return llh
        if reduction == "sum":
            return llh.sum()
        if reduction == "mean":
            return llh.mean()
        return llh.sum() / mask.sum().to(llh.dtype)

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """``log Σ_y exp score(y)`` over every tag sequence of each sequence's length: (B,)."""
        emissions, mask = self._time_major(emissions, mask)
        return self._log_partition(emissions, mask)

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """The unnormalised score of the given tag sequences: (B,)."""
        emissions, mask = self._time_major(emissions, mask)
        return self._score(emissions, self._time_major_tags(tags, emissions, mask), mask)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor | None = None) -> list[list[int]]:
        """Viterbi decoding: the highest-scoring tag sequence of each sequence of the batch,
        as B lists of each sequence's length."""
        emissions, mask = self._time_major(emissions, mask)
        best = self._viterbi(emissions, mask)  # (T, B)
        lengths = mask.sum(0).tolist()
        return [best[:n, b].tolist() for b, n in enumerate(lengths)]

    # -- the algorithms (time-major) -----------------------------------------------------------
    def _score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        steps = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (T, B)
        score = self.start_transitions[tags[0]] + (emitted * steps).sum(0)
        if tags.size(0) > 1:
            score = score + (self.transitions[tags[:-1], tags[1:]] * steps[1:]).sum(0)
        last = tags.gather(0, (mask.sum(0) - 1).unsqueeze(0)).squeeze(0)
        return score + self.end_transitions[last]

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        alpha = self.start_transitions + emissions[0]  # (B, K): log-sum of paths ending in k
        for t in range(1, emissions.size(0)):
            # (B, K_prev, 1) + (K_prev, K) + (B, 1, K): every pair of tags, summed out over prev
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions
                                   + emissions[t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[t].unsqueeze(1), step, alpha)  # ended: carried as it is
        return torch.logsumexp(alpha + self.end_transitions, dim=1)

    def _viterbi(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """The best tags (T, B); past a sequence's end they repeat its last tag."""
        T, B, K = emissions.shape
        best = self.start_transitions + emissions[0]
        keep = torch.arange(K, device=emissions.device).expand(B, K)
        pointers = []
        for t in range(1, T):
            step, arg = (best.unsqueeze(2) + self.transitions).max(dim=1)
            on = mask[t].unsqueeze(1)
            best = torch.where(on, step + emissions[t], best)
            # past the end a tag points to itself, so the trace-back walks through unchanged
            pointers.append(torch.where(on, arg, keep))
        tag = (best + self.end_transitions).argmax(dim=1)  # (B,)
        path = [tag]
        for arg in reversed(pointers):
            tag = arg.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        return torch.stack(path[::-1])

    # -- checks --------------------------------------------------------------------------------
    def _time_major(self, emissions: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        check_shape(emissions, "emissions", (None, None, self.num_tags), "CRF")
        if self.batch_first:
            emissions = emissions.transpose(0, 1)
            mask = None if mask is None else mask.transpose(0, 1)
        T, B = emissions.shape[:2]
        if T == 0:
            raise ValueError("CRF: emissions has no time step (seq_len 0)")
        if mask is None:
            return emissions, emissions.new_ones((T, B), dtype=torch.bool)
        check_shape(mask, "mask", (T, B), "CRF")
        mask = mask.bool()
        # one host synchronisation: a hole in a mask would silently change the result
        if not bool(mask[0].all()) or bool((mask[1:] & ~mask[:-1]).any()):
            raise ValueError("CRF: each sequence's mask must be ones then zeros, starting with "
                             "a one (left-aligned sequences of length >= 1)")
        return emissions, mask

    def _time_major_tags(self, tags: Tensor, emissions: Tensor, mask: Tensor) -> Tensor:
        tags = tags.transpose(0, 1) if self.batch_first else tags
        check_shape(tags, "tags", tuple(emissions.shape[:2]), "CRF")
        if tags.dtype != torch.long:
            raise ValueError(f"CRF: tags must be a long tensor, got {tags.dtype}")
        # padding may hold anything (-100, say): a valid id there, whose score the mask drops
        return tags.masked_fill(~mask, 0)
