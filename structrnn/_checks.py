"""Argument checks that fail early with the argument's name, the expected and the actual shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


def format_shape(shape: Sequence[int | None]) -> str:
    """``(3, *, 4)``: a shape as the messages print it (None: any size)."""
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def check_shape(t: Tensor, name: str, expected: Sequence[int | None], owner: str) -> None:
    """Raise ValueError unless ``t.shape`` matches ``expected`` (None matches any size)."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{owner}: {name} must be a Tensor, got {type(t).__name__}")
    ok = t.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, t.shape))
    if not ok:
        raise ValueError(f"{owner}: {name} must have shape {format_shape(expected)}, "
                         f"got {tuple(t.shape)}")


def check_rows(tensors: Sequence[Tensor], name: str, owner: str) -> None:
    """All tensors of a state tuple must have the same number of rows."""
    # compared pairwise, not collected in a set: under torch.export a size is a symbol
    if any(t.size(0) != tensors[0].size(0) for t in tensors[1:]):
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise ValueError(f"{owner}: the tensors of {name} must have the same number of rows, "
                         f"got {shapes}")


class IndexSpec(NamedTuple):
    """One index argument to check: ``length`` entries, each in ``[0, size)``."""

    index: Tensor
    name: str
    length: int
    size: int


def check_index(index: Tensor, name: str, length: int, size: int, owner: str) -> None:
    """``index`` must be a 1-D integer tensor of ``length`` entries with values in [0, size)."""
    check_indices([IndexSpec(index, name, length, size)], owner)


def check_indices(specs: Sequence[IndexSpec], owner: str) -> None:
    """:func:`check_index` for several index arguments of one call, reading all their bounds
    back in one host synchronisation (a GPU waits once per call, not twice per argument).

    Meta tensors hold no values: only their dtype and shape are checked.
    """
    for spec in specs:
        _check_index_form(spec, owner)
    valued = [s for s in specs if s.index.numel() and not s.index.is_meta]
    if not valued:
        return
    ends = torch.stack([e.long() for s in valued for e in torch.aminmax(s.index)]).tolist()
    for k, spec in enumerate(valued):
        lo, hi = ends[2 * k], ends[2 * k + 1]
        if lo < 0:
            raise ValueError(f"{owner}: {spec.name} has a negative entry ({lo})")
        if hi >= spec.size:
            raise ValueError(f"{owner}: {spec.name} has entry {hi} but only {spec.size} result "
                             f"rows; size must be at least max({spec.name}) + 1 = {hi + 1}")


def _check_index_form(spec: IndexSpec, owner: str) -> None:
    index, name, length = spec.index, spec.name, spec.length
    if (not isinstance(index, Tensor) or index.dtype.is_floating_point or index.dtype.is_complex
            or index.dtype == torch.bool):
        raise ValueError(f"{owner}: {name} must be an integer (long) Tensor")
    if index.dim() != 1 or index.numel() != length:
        raise ValueError(f"{owner}: {name} must have shape ({length},) (one entry per "
                         f"predecessor row), got {tuple(index.shape)}")
