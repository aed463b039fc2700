"""Argument checks that fail early with the argument's name, the expected and the actual shape."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def _fmt(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def check_shape(t: Tensor, name: str, expected: Sequence[int | None], owner: str) -> None:
    """Raise ValueError unless ``t.shape`` matches ``expected`` (None matches any size)."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{owner}: {name} must be a Tensor, got {type(t).__name__}")
    ok = t.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, t.shape))
    if not ok:
        raise ValueError(f"{owner}: {name} must have shape {_fmt(expected)}, "
                         f"got {tuple(t.shape)}")


def check_rows(tensors: Sequence[Tensor], name: str, owner: str) -> None:
    """All tensors of a state tuple must have the same number of rows."""
    rows = {t.size(0) for t in tensors}
    if len(rows) > 1:
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise ValueError(f"{owner}: the tensors of {name} must have the same number of rows, "
                         f"got {shapes}")


def check_index(index: Tensor, name: str, length: int, size: int, owner: str) -> None:
    """``index`` must be a 1-D integer tensor of ``length`` entries with values in [0, size)."""
    if not isinstance(index, Tensor) or index.dtype.is_floating_point or index.dtype.is_complex:
        raise ValueError(f"{owner}: {name} must be an integer (long) Tensor")
    if index.dim() != 1 or index.numel() != length:
        raise ValueError(f"{owner}: {name} must have shape ({length},) (one entry per "
                         f"predecessor row), got {tuple(index.shape)}")
    if length == 0:
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0:
        raise ValueError(f"{owner}: {name} has a negative entry ({lo})")
    if hi >= size:
        raise ValueError(f"{owner}: {name} has entry {hi} but only {size} result rows; "
                         f"size must be at least max({name}) + 1 = {hi + 1}")
