"""Pieces every training run shares: seeding, devices, atomic files, checkpoints, metrics.

Plain functions, no trainer class: each task (``structrnn.tasks.*``) writes its own short loop
with these, the way a PyTorch user would.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "seed_everything", "resolve_device", "atomic_write", "write_json", "save_checkpoint",
    "load_checkpoint", "check_finite", "NonFiniteError", "append_jsonl", "rng_state",
    "set_rng_state",
]


class NonFiniteError(FloatingPointError):
    """A loss or an input turned NaN/Inf; the message names the epoch and the step."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cpu"``, ``"cuda:1"``... as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over
    ``path``: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a writer killed mid-write leaves its temporary file behind: the next write clears it
    # (one writer per path, as in a run folder where only rank 0 writes)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line (per-epoch metrics log)."""
    with open(path, "a") as f:
        f.write(json.dumps(obj, sort_keys=True) + "\n")


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """``torch.save(state)`` atomically. Keep the state to tensors, numbers, strings, lists and
    dicts so that :func:`load_checkpoint` can read it with ``weights_only=True``."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state() -> dict:
    """Every random generator's state, for an exact resume."""
    return {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    internal = tuple(int(v) for v in state["python"][:-1])
    gauss = state["python"][-1] or None
    random.setstate((state["python_version"], internal, gauss))
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


def check_finite(value: torch.Tensor, what: str, epoch: int, step: int) -> None:
    """Raise :class:`NonFiniteError` naming the epoch and step if ``value`` has NaN/Inf."""
    if not torch.isfinite(value).all():
        raise NonFiniteError(f"{what} is not finite at epoch {epoch}, step {step}; the last good "
                             "checkpoint is kept (try a smaller learning rate or --clip-grad)")
