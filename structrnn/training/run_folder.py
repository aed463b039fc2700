"""One run-folder layout for every task.

::

    RUN/
      config.json      the settings (replay with --config RUN/config.json --out NEW)
      metrics.jsonl    one line per epoch (rewritten as of the checkpoint on --resume)
      metrics.json     the final figures
      checkpoint.pt    the last epoch: weights, optimizer, scaler, EMA, random streams
      best.pt          the selected model (best validation score) and what predicting needs
      *.png            pictures (optional: without matplotlib they are skipped with a notice)
      tensorboard/     with --tensorboard
      units/NAME/      a run of several seeds or folds: one such folder per unit

A fresh run never writes into a folder that holds a run unless ``overwrite`` is given; a resumed
run needs its checkpoint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from structrnn._errors import InputError
from structrnn._io import atomic_write, write_json
from structrnn.training import distributed, logging

__all__ = ["RunFolder", "open_run", "VOLATILE_KEYS"]

RUN_FILES = ("config.json", "metrics.json", "metrics.jsonl", "checkpoint.pt", "best.pt",
             "tune.db", "conformal.json")
# what a run leaves that is worth keeping: a folder with only config.json (a run stopped before
# its first checkpoint, perhaps with a best.pt of that epoch) may be started again
KEPT_FILES = ("metrics.json", "checkpoint.pt")
# settings a resumed run may change: they do not change what the checkpoint means
VOLATILE_KEYS = frozenset({"task", "epochs", "device", "threads", "no_progress", "tensorboard",
                           "out", "resume", "overwrite", "config", "check_every",
                           "workers"})


class RunFolder:
    """The paths of a run (or of one unit of a run) and the few writes they need.

    Only rank 0 writes; on the other ranks the writing methods do nothing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    metrics = property(lambda self: self.path / "metrics.json")
    log = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    best = property(lambda self: self.path / "best.pt")

    def unit(self, name: str) -> RunFolder:
        """The folder of one unit (a seed, a fold) of this run."""
        return RunFolder(self.path / "units" / name)

    def holds_a_run(self) -> bool:
        """A checkpoint, a best model or final metrics, here or in a unit."""
        return any((self.path / name).exists() for name in KEPT_FILES) or \
            any((self.path / "units").glob("*/checkpoint.pt"))

    def clear(self) -> None:
        """Delete the files of a previous run (the folder and anything else in it stay)."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in ("units", "tensorboard"):
            shutil.rmtree(self.path / name, ignore_errors=True)

    def write_config(self, config: dict) -> None:
        if distributed.is_main():
            write_json(self.config, config)

    def write_metrics(self, metrics: dict) -> None:
        if distributed.is_main():
            write_json(self.metrics, metrics)

    def append_log(self, record: dict) -> None:
        if distributed.is_main():
            self.path.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")

    def rewrite_log(self, records: list[dict]) -> None:
        """The log as of a checkpoint: an epoch logged after its checkpoint is dropped."""
        if distributed.is_main():
            data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
            atomic_write(self.log, lambda f: f.write(data))

    def read_log(self) -> list[dict]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def picture(self, name: str, draw: Callable[[Path], Any]) -> Path | None:
        """Call ``draw(path)`` for ``RUN/name``; without matplotlib (or RDKit's drawing) the
        picture is skipped with a notice and the run goes on. Returns the path or None."""
        if not distributed.is_main():
            return None
        path = self.path / name
        try:
            draw(path)
        except ImportError as err:
            logging.notice(f"no {name}: {err} (pip install 'structrnn[viz]')")
            return None
        return path


def open_run(out: str | Path, config: dict, resume: bool = False, overwrite: bool = False,
             tensorboard: bool = False) -> RunFolder:
    """The run folder ``out`` for a fresh run (refusing one that already holds a run unless
    ``overwrite``) or for ``resume`` (which needs its checkpoint or its units), with
    ``config.json`` written. Bad flags stop here, before anything is written."""
    folder = RunFolder(out)
    if tensorboard:
        logging.summary_writer_class()  # fails now, not after training, without the package
    if resume:
        if not (folder.checkpoint.is_file() or any((folder.path / "units").glob("*/*.pt"))):
            raise InputError(f"--resume: no checkpoint at {folder.checkpoint}; nothing to "
                             "resume")
        if folder.config.is_file():
            check_same_settings(json.loads(folder.config.read_text()), config, folder.path)
    elif folder.holds_a_run():
        if not overwrite:
            raise InputError(f"--out {folder.path} already holds a run; pass --resume to "
                             "continue it, --overwrite to replace it, or another --out")
        if distributed.is_main():
            folder.clear()
    distributed.barrier()  # nobody reads the folder while rank 0 clears it
    folder.write_config(config)
    return folder


def check_same_settings(old: dict, new: dict, where: Path | str) -> None:
    """A resumed run must use the settings its checkpoint was trained with (but the
    :data:`VOLATILE_KEYS`, e.g. more epochs)."""
    changed = sorted(k for k in set(old) | set(new)
                     if k not in VOLATILE_KEYS and old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise InputError(f"--resume: the run in {where} used other settings ({shown}); pass "
                         "the same arguments or a new --out")
