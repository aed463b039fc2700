"""Models out of Python: ``torch.export`` programs (``.pt2``) and ONNX files (``.onnx``).

::

    import structrnn as sr

    lstm = sr.LSTM(8, 16, batch_first=True)
    sr.export_model(lstm, (torch.randn(2, 5, 8),), "lstm.pt2")                 # torch.export
    sr.export_model(gin, (x, edge_index), "gin.onnx", format="onnx", check=True)

    # a tree or DAG model: the level loop unrolled to a height fixed at export time
    sr.export_model(tree_lstm, (x, edge_index), "tree.onnx", format="onnx", max_height=32)

A tree or DAG model (:class:`~structrnn.TreeLSTM`, :class:`~structrnn.TreeGRU`,
:class:`~structrnn.BiTreeLSTM`, :class:`~structrnn.DAGRecurrent` with sum aggregation) reads its
levels from the data, which no exported graph can hold; :func:`unrolled` wraps it in
:class:`Unrolled`, which computes the same states with every shape fixed by the inputs
(:func:`structrnn.levels.unrolled.run_unrolled`), exact up to ``max_height``. A deeper input is
an error, never a wrong answer: :class:`~structrnn.InputError` naming both heights in eager
PyTorch, a ``RuntimeError`` from the ``torch.export`` program (an ``_assert_async`` in its graph),
and NaN outputs from ONNX, which has no assertion (check with :func:`check_height` before
running it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from structrnn._errors import InputError
from structrnn.cells import LSTMCell, NaryLSTMCell, state_from_tuple, state_tuple
from structrnn.graphs.dag import DAGRecurrent
from structrnn.levels.unrolled import graph_height, run_unrolled
from structrnn.trees.models import BiTreeLSTM, TreeGRU, TreeLSTM

__all__ = ["export_model", "FORMATS", "Unrolled", "unrolled", "check_height"]

FORMATS = ("torch", "onnx")
TOO_DEEP = "the input is deeper than the max_height this model was exported with"


def check_height(edge_index: Tensor, num_nodes: int, max_height: int, what: str = "input"
                 ) -> None:
    """Raise :class:`~structrnn.InputError` when the trees or DAGs of ``edge_index``
    (predecessor -> node) are deeper than ``max_height`` (before running an exported file)."""
    height = graph_height(edge_index, num_nodes)
    cycle = height >= num_nodes > 0  # an acyclic graph's longest path has < num_nodes edges
    if height > max_height or cycle:
        deep = "has a cycle" if cycle else f"has height {height}"
        raise InputError(f"{what}: the graph {deep}, but the model was exported with "
                         f"max_height={max_height}; export it again with a larger max_height")


class Unrolled(nn.Module):
    """A tree or DAG model with its level loop unrolled to ``max_height`` (see the module).

    Shares the wrapped model's parameters. ``forward(x, edge_index, child_index=None)``:
    ``x`` (N, input_size), ``edge_index`` (2, E) child -> parent (a DAG's u -> v),
    ``child_index`` (N,) each node's slot under its parent (N-ary Tree-LSTM only). Returns the
    model's ``h`` (N, width), or the full state (``(h, c)`` for LSTM cells) with
    ``return_state=True``.
    """

    def __init__(self, model: nn.Module, max_height: int, return_state: bool = False) -> None:
        super().__init__()
        if not isinstance(max_height, int) or max_height < 0:
            raise InputError(f"max_height: expected an integer >= 0, got {max_height!r}")
        if isinstance(model, DAGRecurrent) and model.aggr != "sum":
            raise InputError(f"model: DAGRecurrent(aggr={model.aggr!r}) has no "
                             "unrolled form; only aggr='sum' exports")
        if not isinstance(model, TreeLSTM | TreeGRU | BiTreeLSTM | DAGRecurrent):
            raise InputError(f"model: expected TreeLSTM, TreeGRU, BiTreeLSTM or DAGRecurrent, "
                             f"got {type(model).__name__} (its cell does not treat a node "
                             "without children as one with a zero state)")
        self.model, self.max_height, self.return_state = model, max_height, return_state
        self.nary = isinstance(model, TreeLSTM) and isinstance(model.cell, NaryLSTMCell)

    def extra_repr(self) -> str:
        return f"max_height={self.max_height}"

    def forward(self, x: Tensor, edge_index: Tensor, child_index: Tensor | None = None):
        m, k = self.model, self.max_height
        if self.nary and child_index is None:
            raise InputError("child_index: required by the N-ary TreeLSTM (each child's slot)")
        if isinstance(m, DAGRecurrent):
            passes, too_deep = [], None
            if m.direction != "backward":
                state, too_deep = run_unrolled(m.cell, x, edge_index, k)
                passes.append(state)
            if m.direction != "forward":
                cell = m.backward_cell if m.direction == "both" else m.cell
                state, deep = run_unrolled(cell, x, edge_index.flip(0), k)
                passes.append(state)
                too_deep = deep if too_deep is None else too_deep | deep
            state = state_from_tuple([torch.cat(p, 1) for p in
                                      zip(*map(state_tuple, passes), strict=True)])
        elif isinstance(m, BiTreeLSTM):
            (h_up, c_up), too_deep = run_unrolled(m.up.cell, x, edge_index, k)
            # top-down: a node's one predecessor is its parent; no depth exceeds the height
            (h_down, c_down), _ = run_unrolled(m.down_cell, h_up, edge_index.flip(0), k)
            state = (torch.cat([h_up, h_down], 1), torch.cat([c_up, c_down], 1))
        else:
            slot = child_index.index_select(0, edge_index[0]) if self.nary else None
            state, too_deep = run_unrolled(m.cell, x, edge_index, k, slot=slot)
        self._refuse(too_deep, edge_index, x.size(0))
        parts = [torch.where(too_deep, torch.full_like(t, float("nan")), t)
                 for t in state_tuple(state)]
        if not self.return_state and isinstance(self._cell(), LSTMCell | NaryLSTMCell):
            return parts[0]
        return state_from_tuple(parts)

    def _cell(self) -> nn.Module:
        return self.model.up.cell if isinstance(self.model, BiTreeLSTM) else self.model.cell

    def _refuse(self, too_deep: Tensor, edge_index: Tensor, num_nodes: int) -> None:
        if torch.compiler.is_exporting() or torch.compiler.is_compiling():
            # a runtime check inside the exported program (ONNX drops it: the NaN remains)
            torch._assert_async(~too_deep, TOO_DEEP)
        elif bool(too_deep):  # eager: the actual height, named
            check_height(edge_index, num_nodes, self.max_height, "edge_index")


def unrolled(model: nn.Module, max_height: int, return_state: bool = False) -> Unrolled:
    """``model`` (a tree or DAG model) as :class:`Unrolled`, exact up to ``max_height``."""
    return Unrolled(model, max_height, return_state)


def _needs_unrolling(module: nn.Module) -> bool:
    return isinstance(module, TreeLSTM | TreeGRU | BiTreeLSTM | DAGRecurrent)


def _require(*names: str) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise InputError(f"format='onnx' needs {name}, which is not installed "
                             "(pip install 'structrnn[export]')") from err


def _outputs(value: Any) -> list[Tensor]:
    """The tensors of a module's output, flattened in order (as ONNX lists them)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Sequence):
        return [t for v in value for t in _outputs(v)]
    raise TypeError(f"export_model: outputs must be tensors or tuples of them, got "
                    f"{type(value).__name__}")


def export_model(module: nn.Module, example_inputs: Tensor | tuple, path: str | Path,
                 format: str = "torch", dynamic_shapes: Any = None, *,
                 max_height: int | None = None, check: bool = False,
                 input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None,
                 metadata: Mapping[str, Any] | None = None,
                 rtol: float = 1e-5, atol: float = 1e-5) -> Path:
    """Write ``module`` as a ``torch.export`` program or an ONNX file.

    Args:
        module: any ``nn.Module`` that ``torch.export`` can trace (put in eval mode here); a
            tree or DAG model is wrapped in :class:`Unrolled` (then ``max_height`` is required).
        example_inputs: the positional inputs of one call (a tensor or a tuple of tensors).
        path: the file to write (``.pt2`` for ``"torch"``, ``.onnx`` for ``"onnx"``).
        format: ``"torch"`` (``torch.export.export`` + ``torch.export.save``; read back with
            ``torch.export.load(path).module()``) or ``"onnx"`` (``torch.onnx.export(...,
            dynamo=True)``, one self-contained file).
        dynamic_shapes: as ``torch.export.export`` takes it (e.g. ``({0: Dim("N")}, {1:
            Dim("E")})`` for ``(x, edge_index)``); None fixes every shape to the example's.
        max_height: the deepest tree or DAG the exported file computes exactly.
        check: after writing, run the file on ``example_inputs`` (``torch.export.load`` or
            onnxruntime) and compare with the eager module (``torch.testing.assert_close``:
            an ``AssertionError`` when they differ).
        input_names, output_names: the ONNX graph's names (default: the forward's argument
            names, and ``output``, ``output_1`` ...).
        metadata: strings (other values as JSON) stored in the file: ONNX ``metadata_props``,
            or ``extra_files["structrnn.json"]`` of the ``.pt2`` archive.
        rtol, atol: the tolerance of ``check``.

    Returns:
        The path written.

    Raises:
        InputError: an unknown ``format``; ``format="onnx"`` without onnx / onnxscript (or
            ``check`` without onnxruntime): the ``export`` extra; a tree or DAG model without
            ``max_height``.
    """
    if format not in FORMATS:
        raise InputError(f"format: expected one of {', '.join(map(repr, FORMATS))}, "
                         f"got {format!r}")
    if format == "onnx":
        _require("onnx", "onnxscript", *(["onnxruntime"] if check else []))
    if _needs_unrolling(module):
        if max_height is None:
            raise InputError(f"max_height: required to export {type(module).__name__} (its "
                             "level loop is unrolled to a height fixed at export time)")
        module = Unrolled(module, max_height)
    elif max_height is not None:
        raise InputError(f"max_height: only for tree and DAG models, not "
                         f"{type(module).__name__}")
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    if format == "torch":
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
        extra = {"structrnn.json": json.dumps(meta)} if meta else None
        torch.export.save(program, path, extra_files=extra)
    else:
        _export_onnx(module, args, path, dynamic_shapes, input_names, output_names, meta)
    if check:
        with torch.no_grad():
            expected = _outputs(module(*args))
        got = _run_file(path, format, args)
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            torch.testing.assert_close(g, e, rtol=rtol, atol=atol,
                                       msg=lambda m, i=i: f"{path}: output {i}: {m}")
    return path


def _export_onnx(module: nn.Module, args: tuple, path: Path, dynamic_shapes: Any,
                 input_names: Sequence[str] | None, output_names: Sequence[str] | None,
                 meta: dict[str, str]) -> None:
    import onnx

    program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=dynamic_shapes,
                                input_names=input_names, output_names=output_names,
                                external_data=False, verbose=False)
    model = program.model_proto
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp))
    tmp.replace(path)


def _run_file(path: Path, format: str, args: tuple) -> list[Tensor]:
    """The outputs of the written file on ``args`` (torch.export.load or onnxruntime)."""
    if format == "torch":
        with torch.no_grad():
            return _outputs(torch.export.load(path).module()(*args))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {name: a.detach().cpu().numpy() for name, a in zip(names, args, strict=False)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]
