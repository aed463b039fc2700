"""Trained models as products: load a run folder or an exported file, predict on raw input.

::

    import structrnn as sr

    predictor = sr.load("runs/esol")            # a run folder, or a file from .save()
    predictor.predict(["CCO", "c1ccccc1"])      # one plain dict per input
    predictor.save("esol.pt")                   # one file: weights, vocabulary, scalers, config
    predictor.export("esol.onnx", format="onnx")  # the model alone, for onnxruntime

Every task has a :class:`Predictor` subclass (``structrnn/tasks/TASK/predictor.py``). The base
class owns :meth:`Predictor.predict`: chunks, device, no-grad, progress bar and per-row errors.
A task implements three things:

- :meth:`~Predictor.read_input`: one raw input (a sentence, PTB tree, SMILES, networkx graph,
  PyG ``Data`` ...) -> what the model reads; raises with the reason for a bad one;
- :meth:`~Predictor.forward_batch`: a list of read inputs -> one output each;
- :meth:`~Predictor.make_row`: one input and its output -> a plain dict (its output None: the
  same keys with None, for an input that failed).

A prediction never raises for one bad input: whatever that input causes (it cannot be read, or
the model fails on it) marks its row, ``{"input": ..., <the task's keys>: None, "error":
"reason"}``, and the other inputs are predicted as usual. When a batched forward pass fails, the
chunk is forwarded one input at a time, so only the culprit's row is marked.

The exported file is a plain dict that ``torch.load(path, weights_only=True)`` reads: tensors,
numbers, strings, lists and dicts only, with ``format`` and ``version`` checked on loading.
:meth:`Predictor.export` also writes the model out of Python (``format="torch"``: a
``torch.export`` program, ``"onnx"``: an ONNX file) for the tasks that have a
:meth:`Predictor.deployable` form; featurisation then stays with the caller.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn
from torch_geometric.data import Data

from structrnn._errors import InputError
from structrnn._io import atomic_write
from structrnn.training.checkpoint import load_checkpoint, resolve_device, save_checkpoint
from structrnn.training.logging import progress as progress_bar

__all__ = ["Predictor", "load", "FORMAT", "FORMAT_VERSION", "PREDICTORS", "PROGRESS_FROM",
           "chunks", "Deployable", "EXPORT_FORMATS"]

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
PROGRESS_FROM = 1000  # progress=None shows a bar for more inputs than this
# Predictor.export's formats: structrnn's own file (structrnn.load reads it), torch.export, ONNX
EXPORT_FORMATS = ("structrnn", "torch", "onnx")


class Deployable(NamedTuple):
    """What :meth:`Predictor.export` hands to :func:`structrnn.export.export_model`: a module
    of tensors in, tensors out, an example call and how its shapes vary."""

    module: nn.Module
    example_inputs: tuple
    dynamic_shapes: Any
    input_names: list[str]
    output_names: list[str]
    metadata: dict[str, Any]


class Predictor:
    """A trained model of one task with everything it needs to predict on raw input.

    Attributes:
        task: the task's name (``"sst"``, ``"molecules"``, ``"tu"``, ``"shortest-path"``).
        config: the run's ``config.json``.
        models: the trained ``nn.Module`` s in eval mode (several for an ensemble of seeds or
            folds); :attr:`model` is the first.
        device: where they run.

    Subclasses implement :meth:`build_model` (or :meth:`from_run` and :meth:`from_export`),
    :meth:`export_state` when they keep more than weights and config, the three steps of
    :meth:`predict` (:meth:`read_input`, :meth:`forward_batch`, :meth:`make_row`), and
    :meth:`evaluate` (and :meth:`predict_file` when its input is not JSON lines) for the
    command line.
    """

    tasks: ClassVar[tuple[str, ...]] = ()
    # predict's task-specific keyword options and their defaults
    predict_options: ClassVar[dict[str, Any]] = {}
    # inputs per forward pass when predict is not told
    default_batch_size: ClassVar[int] = 256
    # one input of these types given where a list is expected is refused (beside str and dict)
    single_input_types: ClassVar[tuple[type, ...]] = ()

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
    def build_model(cls, config: dict, weights: dict, where: str) -> nn.Module:
        """The run's model with ``weights`` loaded (``where``: the file, for errors)."""
        raise NotImplementedError

    @classmethod
    def from_run(cls, folder: Path, config: dict, device: torch.device) -> Predictor:
        """The predictor of the run in ``folder`` (its best weights)."""
        weights = best_state(folder)["model"]
        return cls(cls.tasks[0], config, [cls.build_model(config, weights, f"{folder}")], device)

    @classmethod
    def from_export(cls, state: dict, device: torch.device) -> Predictor:
        """The predictor saved by :meth:`save` (``state`` as ``torch.load`` read it)."""
        model = cls.build_model(state["config"], state["models"][0], "the model file")
        return cls(state["task"], state["config"], [model], device)

    def export_state(self) -> dict[str, Any]:
        """The task's part of the exported file (vocabulary, scalers ...): plain values and
        tensors only, so that ``weights_only=True`` reads it."""
        return {}

    def read_input(self, item: Any, options: dict[str, Any]) -> Any:
        """One raw input as the model reads it (a tree, a graph ...). Raises (an
        :class:`~structrnn.InputError`, ValueError ...) with the reason when it cannot be read:
        that becomes the input's ``"error"``. ``options``: :meth:`predict`'s task options."""
        raise NotImplementedError

    def forward_batch(self, inputs: list[Any], options: dict[str, Any]) -> Sequence[Any]:
        """The models' outputs for a list of read inputs: one per input, in order (on the
        CPU, ready for :meth:`make_row`). Runs under ``torch.no_grad()``."""
        raise NotImplementedError

    def make_row(self, item: Any, index: int, output: Any, options: dict[str, Any]) -> dict:
        """The plain dict of one input: ``"input"`` (the raw input, or ``index``, its position
        in :meth:`predict`'s list, where the input is not text) and the prediction's keys;
        ``output`` None: the input failed, the same keys with None. :meth:`predict` sets
        ``"error"`` (kept where this dict places it, else appended)."""
        raise NotImplementedError

    def predict_file(self, source: str | Path, destination: str | Path | None,
                     **options: Any) -> int:
        """Predict a text file, one input a line, into JSON lines.

        Blank lines are skipped; every row carries its 1-based ``"line"`` in ``source``, in the
        file's order. ``destination`` is written atomically (stdout when None). ``options``
        are those of :meth:`predict`. Returns the number of predictions.
        """
        lines = [(n, line) for n, line in enumerate(read_lines(source), 1) if line.strip()]
        rows = self.predict([text for _, text in lines], **options)
        write_output(destination, "".join(json.dumps({"line": n, **r}) + "\n"
                                          for (n, _), r in zip(lines, rows, strict=True)))
        return len(rows)

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """The run's figures on ``split`` of its data set (``data``: another root)."""
        raise InputError(f"eval: task {self.task!r} cannot be evaluated on a split")

    # -- hooks a task may refine ----------------------------------------------------------------
    def check_inputs(self, inputs: Any) -> list[Any]:
        """``inputs`` as a list; InputError for one input given where a list is expected."""
        kind = type(inputs).__module__.split(".")[0]
        if (isinstance(inputs, (str, bytes, dict, *self.single_input_types))
                or kind in ("networkx", "torch_geometric") or not hasattr(inputs, "__iter__")):
            raise InputError(f"inputs: expected a list of inputs, got one "
                             f"{type(inputs).__name__}; wrap it in a list: predict([...])")
        return list(inputs)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The task options of one :meth:`predict` call, defaults filled in; InputError for one
        the task does not know."""
        unknown = sorted(set(options) - set(self.predict_options))
        if unknown:
            known = ", ".join(["batch_size", "progress", *self.predict_options])
            raise InputError(f"predict: {', '.join(unknown)}: not an option of a {self.task} "
                             f"run (its options: {known})")
        return {**self.predict_options, **options}

    def read_chunk(self, items: Sequence[Any], options: dict[str, Any]) -> list[Any]:
        """:meth:`read_input` of every item; an item that cannot be read gives an
        :class:`~structrnn.InputError` with the reason in its place."""
        read = []
        for item in items:
            try:
                read.append(self.read_input(item, options))
            except Exception as err:  # noqa: BLE001 - any failure of one input is its row's
                read.append(row_error(err))
        return read

    def finish(self, rows: list[dict], options: dict[str, Any]) -> None:
        """After the last chunk: whatever the options ask of all rows (a picture ...)."""

    # -- predicting -----------------------------------------------------------------------------
    def predict(self, inputs: Sequence[Any], *, batch_size: int | None = None,
                progress: bool | None = None, **options: Any) -> list[dict]:
        """One plain dict per input, in order: ``"input"``, the prediction, ``"error"``.

        Args:
            inputs: a list of the task's raw inputs.
            batch_size: inputs per forward pass (default :attr:`default_batch_size`).
            progress: a progress bar on stderr: None shows one for more than
                :data:`PROGRESS_FROM` inputs, True always, False never.
            options: the task's options (:attr:`predict_options`).

        Raises:
            InputError: ``inputs`` is one input instead of a list, an unknown option, or
                ``batch_size`` < 1. An input that cannot be predicted does not raise: its dict
                says why under ``"error"`` and its prediction keys are None.
        """
        items = self.check_inputs(inputs)
        options = self.check_options(options)
        size = self.default_batch_size if batch_size is None else batch_size
        if not isinstance(size, int) or size < 1:
            raise InputError(f"batch_size: expected an integer >= 1, got {size!r}")
        show = len(items) > PROGRESS_FROM if progress is None else bool(progress)
        rows: list[dict] = []
        with torch.no_grad(), progress_bar(total=len(items), enabled=show, desc="predict",
                                           unit="input") as bar:
            for start, chunk in chunks(items, size):
                rows += self._predict_chunk(chunk, start, options)
                bar.update(len(chunk))
        self.finish(rows, options)
        return rows

    def _predict_chunk(self, items: Sequence[Any], start: int,
                       options: dict[str, Any]) -> list[dict]:
        read = self.read_chunk(items, options)
        good = [k for k, r in enumerate(read) if not isinstance(r, InputError)]
        for k, out in zip(good, self._forward([read[k] for k in good], options), strict=True):
            read[k] = out
        rows = []
        for k, (item, out) in enumerate(zip(items, read, strict=True)):
            error = out if isinstance(out, InputError) else None
            row = None
            if error is None:
                try:
                    row = self.make_row(item, start + k, out, options)
                except Exception as err:  # noqa: BLE001 - this input's output, its row
                    error = row_error(err)
            if row is None:
                row = self.make_row(item, start + k, None, options)
            row["error"] = None if error is None else str(error)
            rows.append(row)
        return rows

    def _forward(self, inputs: list[Any], options: dict[str, Any]) -> list[Any]:
        """:meth:`forward_batch` of ``inputs``; when it fails, each input alone, so that an
        input the model fails on gives its own error (an InputError in its place)."""
        if not inputs:
            return []
        try:
            outputs = list(self.forward_batch(inputs, options))
        except Exception as err:  # noqa: BLE001 - which input caused it is found below
            if len(inputs) == 1:
                return [row_error(err, "the model failed on this input: ")]
            return [out for x in inputs for out in self._forward([x], options)]
        if len(outputs) != len(inputs):
            raise RuntimeError(f"{type(self).__name__}.forward_batch returned {len(outputs)} "
                               f"outputs for {len(inputs)} inputs")
        return outputs

    # -- shared ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the whole predictor to one file (atomically); :func:`load` reads it back."""
        state = {"format": FORMAT, "version": FORMAT_VERSION, "task": self.task,
                 "config": json.loads(json.dumps(self.config)),
                 "models": [m.state_dict() for m in self.models], **self.export_state()}
        return save_checkpoint(path, **state)

    def deployable(self, **options: Any) -> Deployable:
        """The run as one module of tensors for ``torch.export`` / ONNX (a task that has one
        overrides this)."""
        raise InputError(f"format: task {self.task!r} exports only format='structrnn' "
                         "(its models have no torch.export / ONNX form yet)")

    def export(self, path: str | Path, format: str = "structrnn", *, check: bool = False,
               **options: Any) -> Path:
        """Write the predictor to ``path``.

        Args:
            format: ``"structrnn"`` (the default: :meth:`save`'s file, which :func:`load`
                reads), ``"torch"`` (a ``torch.export`` program, ``.pt2``) or ``"onnx"`` (an
                ONNX file for onnxruntime; the ``export`` extra). The last two hold the
                model alone, with what :meth:`deployable` puts inside; their inputs, outputs
                and units are in the file's metadata.
            check: run the written file on the example and compare with eager PyTorch.
            options: the task's :meth:`deployable` options.
        """
        if format not in EXPORT_FORMATS:
            raise InputError(f"format: expected one of {', '.join(map(repr, EXPORT_FORMATS))},"
                             f" got {format!r}")
        if format == "structrnn":
            return self.save(path)
        from structrnn.export import export_model

        d = self.deployable(**options)
        return export_model(d.module, d.example_inputs, path, format, d.dynamic_shapes,
                            input_names=d.input_names, output_names=d.output_names,
                            metadata=d.metadata, check=check)


def chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """``(start, items[start:start + size])`` over ``items``: batches for prediction."""
    if size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {size}")
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def read_lines(source: str | Path) -> list[str]:
    """The lines of the UTF-8 text file ``source`` (``--input``), without their line ends;
    InputError when it is missing or not UTF-8."""
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--input {source}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"--input {source}: not UTF-8 text ({err})") from err
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def write_output(destination: str | Path | None, text: str) -> None:
    """``text`` (UTF-8) to the file ``destination``, atomically, or to stdout when None."""
    if destination is None:
        sys.stdout.write(text)
    else:
        data = text.encode("utf-8")
        atomic_write(destination, lambda f: f.write(data))


def best_state(folder: str | Path) -> dict:
    """``folder/best.pt``, the run's selected weights; InputError when it is not there."""
    path = Path(folder) / "best.pt"
    if not path.is_file():
        raise InputError(f"{folder}: no best.pt (the trained weights); is the run's first "
                         "epoch finished?")
    return load_checkpoint(path, map_location="cpu")


def load_weights(model: nn.Module, weights: dict, where: str) -> nn.Module:
    """``model`` with ``weights`` loaded, in eval mode; InputError when they do not fit."""
    try:
        model.load_state_dict(weights)
    except (ValueError, RuntimeError) as err:
        raise InputError(f"{where}: the weights do not fit the model its config describes "
                         f"({err})") from err
    return model.eval()


def split_part(split: str) -> str:
    """``--split`` as the data's part: test, val (also for dev) or train."""
    part = {"test": "test", "val": "val", "dev": "val", "train": "train"}.get(split)
    if part is None:
        raise InputError(f"--split: expected test, val, dev or train, got {split!r}")
    return part


def is_networkx(obj: Any) -> bool:
    """A networkx graph, without importing networkx when it was never used."""
    return type(obj).__module__.startswith("networkx.")


def check_graph(data: Data, node_in: int | None, edge_in: int, what: str) -> Data:
    """A clean copy of ``data`` (``x``, ``edge_index``, ``edge_attr``, ``smiles``) after
    checking its shapes against the model's; ValueError naming the mismatch. ``node_in`` None:
    the model computes its node inputs (one-hot degrees), ``x`` is not read; ``edge_in`` 0: the
    model uses no edge features, ``edge_attr`` is not read."""
    x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
    if node_in is not None and (x is None or x.dim() != 2 or x.size(1) != node_in):
        shape = None if x is None else tuple(x.shape)
        raise ValueError(f"x: expected (num_nodes, {node_in}) node features {what}, got {shape}")
    if edge_index is None or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError("edge_index: expected (2, num_edges)")
    if edge_in and (edge_attr is None or edge_attr.dim() != 2 or edge_attr.size(1) != edge_in
                    or edge_attr.size(0) != edge_index.size(1)):
        shape = None if edge_attr is None else tuple(edge_attr.shape)
        raise ValueError(f"edge_attr: expected ({edge_index.size(1)}, {edge_in}) edge features "
                         f"{what}, got {shape}")
    num_nodes = int(data.num_nodes) if x is None or node_in is None else x.size(0)
    if edge_index.numel() and not 0 <= int(edge_index.min()) <= int(edge_index.max()) \
            < num_nodes:
        raise ValueError(f"edge_index: node ids outside 0..{num_nodes - 1}")
    clean = Data(x=None if node_in is None else x.float(), edge_index=edge_index.long(),
                 edge_attr=edge_attr.float() if edge_in else None, num_nodes=num_nodes)
    if isinstance(getattr(data, "smiles", None), str):
        clean.smiles = data.smiles
    return clean


def row_error(err: Exception, prefix: str = "") -> InputError:
    """The reason one input failed, as the InputError that stands for it in a chunk."""
    reason = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
    return InputError(prefix + reason)


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
