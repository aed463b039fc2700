"""What a run tells its user: progress bars and notices on stderr (rank 0 only), TensorBoard
scalars when asked. The final summary, one JSON object, goes to stdout from the command line."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from structrnn._errors import InputError
from structrnn.training import distributed

__all__ = ["notice", "progress", "summary_writer_class", "open_tensorboard", "log_scalars"]


def notice(message: str) -> None:
    """One line on stderr, from rank 0 only (stdout is kept for the final JSON summary)."""
    if distributed.is_main():
        print(message, file=sys.stderr, flush=True)


def progress(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, shown on rank 0 when ``enabled``; ``leave=False`` by default."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not enabled or not distributed.is_main(), file=sys.stderr,
                **kwargs)


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``. The ``tensorboard`` package is optional:
    without it ``--tensorboard`` is an InputError naming the fix."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise InputError("--tensorboard: the tensorboard package is not installed "
                         "(pip install tensorboard), or leave out --tensorboard") from err
    return SummaryWriter


def open_tensorboard(log_dir: str | Path, enabled: bool):
    """A ``SummaryWriter`` on ``log_dir`` on rank 0 when ``enabled``, else None."""
    if not enabled or not distributed.is_main():
        return None
    return summary_writer_class()(log_dir=str(log_dir))


def log_scalars(writer, prefix: str, record: dict, step: int) -> None:
    """Every number of ``record`` (but ``epoch``) as ``prefix/key`` at ``step``."""
    if writer is None:
        return
    for key, value in record.items():
        if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
            writer.add_scalar(f"{prefix}/{key}", value, step)
    writer.flush()
