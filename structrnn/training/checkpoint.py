"""Checkpoints and random state: atomic ``torch.save``, ``weights_only`` loading, every
generator's state for an exact resume, seeding and the device choice."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structrnn._io import atomic_write

__all__ = [
    "seed_everything", "resolve_device", "save_checkpoint", "load_checkpoint", "rng_state",
    "set_rng_state",
]


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
    """Every random generator's state, for an exact resume: Python's, NumPy's, torch's CPU
    generator and, when CUDA is initialised, every CUDA device's generator."""
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2] or 0],
        "python_version": random.getstate()[0],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    internal = tuple(int(v) for v in state["python"][:-1])
    gauss = state["python"][-1] or None
    random.setstate((state["python_version"], internal, gauss))
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        # a checkpoint from another number of GPUs keeps the fresh streams: the weights and
        # the batch order still resume exactly, only dropout masks differ
        torch.cuda.set_rng_state_all(cuda)
