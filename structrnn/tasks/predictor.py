"""Trained models as products: load a run folder or an exported file, predict on raw input.

::

    import structrnn as sr

    predictor = sr.load("runs/esol")            # a run folder, or a file from .save()
    predictor.predict(["CCO", "c1ccccc1"])      # one plain dict per input
    predictor.save("esol.pt")                   # one file: weights, vocabulary, scalers, config

Every task has a :class:`Predictor` subclass (``structrnn/tasks/TASK/predictor.py``) that knows
how to read its raw inputs (sentences, PTB trees, SMILES, networkx graphs, PyG ``Data``) and
how to put its outputs back into real units. A prediction never raises for one bad input: its
dict carries the reason under ``"error"`` and the other inputs are predicted as usual.

The exported file is a plain dict that ``torch.load(path, weights_only=True)`` reads: tensors,
numbers, strings, lists and dicts only, with ``format`` and ``version`` checked on loading.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from structrnn._errors import InputError
from structrnn.training.checkpoint import load_checkpoint, resolve_device, save_checkpoint

__all__ = ["Predictor", "load", "FORMAT", "FORMAT_VERSION", "PREDICTORS", "chunks"]

FORMAT = "structrnn.model"
FORMAT_VERSION = 1
# task (config.json's "task") -> the module whose PREDICTOR class serves it
PREDICTORS = {
    "sst": "structrnn.tasks.sentiment.predictor",
    "molecules": "structrnn.tasks.molecules.predictor",
    "tu": "structrnn.tasks.molecules.predictor",
    "shortest-path": "structrnn.tasks.shortest_path.predictor",
    "parser": "structrnn.tasks.parser.predictor",
    "circuits": "structrnn.tasks.circuits.predictor",
}


class Predictor:
    """A trained model of one task with everything it needs to predict on raw input.

    Attributes:
        task: the task's name (``"sst"``, ``"molecules"``, ``"tu"``, ``"shortest-path"``).
        config: the run's ``config.json``.
        models: the trained ``nn.Module`` s in eval mode (several for an ensemble of seeds or
            folds); :attr:`model` is the first.
        device: where they run.

    Subclasses implement :meth:`from_run`, :meth:`predict`, :meth:`export_state` and
    :meth:`from_export` (and :meth:`predict_file` and :meth:`evaluate` for the command line).
    """

    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, task: str, config: dict, models: Sequence[nn.Module],
                 device: torch.device) -> None:
        self.task, self.config, self.device = task, config, device
        self.models = [m.to(device).eval() for m in models]

    @property
    def model(self) -> nn.Module:
        """The (first) trained model: a plain ``nn.Module``."""
        return self.models[0]

    def __repr__(self) -> str:
        kind = f"an ensemble of {len(self.models)}" if len(self.models) > 1 else "one model"
        return f"<{type(self).__name__} task={self.task!r}, {kind} on {self.device}>"

    # -- what a task implements -----------------------------------------------------------------
    @classmethod
    def from_run(cls, folder: Path, config: dict, device: torch.device) -> Predictor:
        """The predictor of the run in ``folder`` (its best weights)."""
        raise NotImplementedError

    @classmethod
    def from_export(cls, state: dict, device: torch.device) -> Predictor:
        """The predictor saved by :meth:`save` (``state`` as ``torch.load`` read it)."""
        raise NotImplementedError

    def export_state(self) -> dict[str, Any]:
        """The task's part of the exported file (vocabulary, scalers ...): plain values and
        tensors only, so that ``weights_only=True`` reads it."""
        raise NotImplementedError

    def predict(self, inputs: Sequence[Any], **options: Any) -> list[dict]:
        """One plain dict per input, in order: ``"input"``, the prediction, ``"error"``."""
        raise NotImplementedError

    def predict_file(self, source: str | Path, destination: str | Path | None,
                     **options: Any) -> int:
        """Predict every record of ``source`` into ``destination`` (stdout when None);
        returns the number of records."""
        raise InputError(f"predict --input: task {self.task!r} reads no input files")

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """The run's figures on ``split`` of its data set (``data``: another root)."""
        raise InputError(f"eval: task {self.task!r} cannot be evaluated on a split")

    # -- shared ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the whole predictor to one file (atomically); :func:`load` reads it back."""
        state = {"format": FORMAT, "version": FORMAT_VERSION, "task": self.task,
                 "config": json.loads(json.dumps(self.config)),
                 "models": [m.state_dict() for m in self.models], **self.export_state()}
        return save_checkpoint(path, **state)

    export = save


def chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """``(start, items[start:start + size])`` over ``items``: batches for prediction."""
    if size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {size}")
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def _predictor_class(task: str | None, where: Path) -> type[Predictor]:
    if task not in PREDICTORS:
        raise InputError(f"{where}: unknown task {task!r} (known: {', '.join(PREDICTORS)})")
    try:
        module = importlib.import_module(PREDICTORS[task])
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("structrnn"):
            raise  # a module of our own missing is a bug, not bad input
        raise InputError(f"{where}: predicting with a {task!r} model needs {err.name} "
                         "(pip install 'structrnn[all]')") from err
    return module.PREDICTOR


def _infer_task(folder: Path, config: dict) -> str | None:
    """The task of a run written before config.json named it."""
    if config.get("task"):
        return config["task"]
    if (folder / "vocab.json").is_file():
        return "sst"
    if "dataset" in config and "readout" in config:
        return "tu" if config["dataset"] == "mutag" else "molecules"
    if "train_nodes" in config:
        return "shortest-path"
    return None


def load(path: str | Path, device: str | torch.device | None = None) -> Predictor:
    """The predictor of a run folder or of a file written by :meth:`Predictor.save`.

    Args:
        path: ``RUN/`` (its ``config.json`` names the task) or an exported ``.pt`` file.
        device: where the models run (default: the CPU; ``"auto"`` picks CUDA when there).

    Raises:
        InputError: the path is neither, the file's format is unknown or newer than this
            version of structrnn reads, or something it needs is missing (named).
    """
    path = Path(path)
    device = resolve_device(device) if isinstance(device, str) else (
        device if device is not None else torch.device("cpu"))
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise InputError(f"{path}: no config.json; is this a run folder of "
                             "'structrnn train'?")
        config = json.loads(config_path.read_text())
        return _predictor_class(_infer_task(path, config), path).from_run(path, config, device)
    if not path.is_file():
        raise InputError(f"{path}: no such run folder or model file")
    try:
        state = load_checkpoint(path, map_location=device)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"{path}: not a structrnn model file ({err})") from err
    if isinstance(state, dict) and state.get("format") == "structrnn.Parser":
        raise InputError(f"{path}: a parser file of the first format; convert it once with "
                         "Parser.load(path).save(path) (structrnn.trees.parser.Parser)")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a structrnn model file (no format {FORMAT!r})")
    if int(state.get("version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path}: model format version {state['version']} is newer than this "
                         f"structrnn reads ({FORMAT_VERSION}); upgrade structrnn")
    missing = [k for k in ("task", "config", "models") if k not in state]
    if missing:
        raise InputError(f"{path}: the model file lacks {', '.join(missing)}")
    return _predictor_class(state["task"], path).from_export(state, device)
