"""The run flags every ``structrnn train`` sub-command takes, and the config they make.

``--config RUN/config.json`` replays a run: the file's values, then every flag typed on the
command line (explicit flags win, even when they equal the default).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from structrnn._errors import InputError

__all__ = ["add_run_arguments", "apply_config", "run_config", "set_threads", "default_workers",
           "check_flags"]


def add_run_arguments(p: argparse.ArgumentParser, *, out: str, epochs: int | None,
                      seed: int | None = 0, batch_size: int | None = None) -> None:
    """Add the shared run flags to a task's parser (``out``, ``epochs``, ``seed``,
    ``batch_size``: the task's defaults; no ``--batch-size`` flag when None)."""
    g = p.add_argument_group("run (shared by every task)")
    g.add_argument("--out", default=out, help="run folder")
    g.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    if batch_size is not None:
        g.add_argument("--batch-size", type=int, default=batch_size, help="global batch size "
                       "(under torchrun split evenly between the processes)")
    g.add_argument("--seed", type=int, default=seed, help="random seed")
    g.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (under torchrun: cuda:LOCAL_RANK)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (None: torch's default, every core)")
    g.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help="processes that collate the next training batches while the model "
                        "steps (default: 2, or 0 on a machine of 1-2 cores)")
    g.add_argument("--amp", action="store_true",
                   help="mixed precision (float16 autocast + GradScaler) on CUDA; ignored, "
                        "with a notice, on the CPU")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999 per "
                        "step); it is the model validated, selected and saved")
    g.add_argument("--clip-grad", type=float, default=None, metavar="NORM",
                   help="clip the gradient norm to NORM (the norms are logged per epoch)")
    g.add_argument("--clip-grad-value", type=float, default=None, metavar="V",
                   help="clip every gradient element to [-V, V]")
    g.add_argument("--check-every", type=int, default=50, metavar="N",
                   help="read the loss on the host (progress, non-finite check) every N steps")
    g.add_argument("--tensorboard", action="store_true",
                   help="also log to OUT/tensorboard (needs the tensorboard package)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (exact)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that already holds a run, deleting it")
    g.add_argument("--config", default=None, metavar="FILE",
                   help="replay a run: read its config.json (flags on the command line win)")


def default_workers() -> int:
    """``--workers``' default: two collating processes, none where they would take the cores
    the training step needs (two cores or fewer)."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(2, cores - 1)


_UNSET = object()


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the flags typed in ``argv`` (whatever their value), as ``parser``
    itself reads them (``--flag=value``, and an abbreviation where the parser allows one).

    argparse fills in a default only where the namespace it is given lacks the attribute, so
    parsing into a namespace that holds a marker for every destination leaves the marker on
    exactly the flags that were not typed.
    """
    marked = argparse.Namespace(**{a.dest: _UNSET for a in parser._actions  # no public list
                                   if a.dest is not argparse.SUPPRESS})
    parsed, _ = parser.parse_known_args(argv, marked)
    return {dest for dest, value in vars(parsed).items() if value is not _UNSET}


def apply_config(args: argparse.Namespace, explicit: set[str]) -> argparse.Namespace:
    """``args`` with the values of ``args.config`` (a run's config.json) for every flag that was
    not typed on the command line."""
    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"--config: no file {path}")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"--config {path}: not JSON ({err})") from err
    merged = vars(args).copy()
    for key, value in values.items():
        if key in merged and key not in explicit and key not in ("out", "resume", "overwrite",
                                                                 "config"):
            merged[key] = value
    return argparse.Namespace(**merged)


def run_config(args: argparse.Namespace, keys: tuple[str, ...], task: str) -> dict[str, Any]:
    """The config.json of a run: the ``task`` (what ``structrnn.load`` dispatches on), the
    task's ``keys`` and the run flags that change results."""
    shared = ("epochs", "seed", "amp", "ema", "clip_grad", "clip_grad_value")
    config: dict[str, Any] = {"task": task}
    for key in (*keys, *shared):
        value = getattr(args, key, None)
        config[key] = str(value) if isinstance(value, os.PathLike) else value
    return config


def check_flags(args: argparse.Namespace, least: dict[str, int],
                ranges: dict[str, int] | None = None) -> None:
    """InputError naming the flag for a count below its ``least`` value, or a ``MIN MAX`` pair
    outside ``low <= MIN <= MAX`` (``ranges``: flag -> low); the pairs become lists, as
    config.json reads them back (a tuple would differ from it on --resume)."""
    for flag, low in least.items():
        if getattr(args, flag) < low:
            raise InputError(f"--{flag.replace('_', '-')}: expected >= {low}, got "
                             f"{getattr(args, flag)}")
    for flag, low in (ranges or {}).items():
        first, last = getattr(args, flag)
        if not low <= first <= last:
            raise InputError(f"--{flag.replace('_', '-')}: expected {low} <= MIN <= MAX, got "
                             f"{first} {last}")
        setattr(args, flag, [first, last])


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's intra-op threads (default: torch's own, every core)."""
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads: expected >= 1, got {threads}")
        torch.set_num_threads(threads)
