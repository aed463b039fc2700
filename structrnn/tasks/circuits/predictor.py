"""A trained circuits run as a predictor: boolean circuits in, every gate's value out.

::

    import structrnn as sr

    predictor = sr.load("runs/circuits")            # a run folder, or a file from .save()
    predictor.predict([{"inputs": {"a": 1, "b": 0},
                        "gates": {"c": ["and", "a", "b"], "d": ["not", "c"],
                                  "e": ["xor", "d", "a"]}}])
    # [{"input": 0, "values": {"c": 0, "d": 1, "e": 0}, "probabilities": {...},
    #   "solved": True, "error": None}]
    predictor.evaluate("test")                      # metrics.json's "test", re-generated

A circuit is given in one of these forms:

- a dict ``{"inputs": {NAME: 0 or 1, ...}, "gates": {NAME: [KIND, OPERAND, ...], ...}}``
  (or its JSON text, which is what ``structrnn predict RUN '{...}'`` and a JSON-lines
  ``--input`` file hold): ``KIND`` is ``and``, ``or``, ``xor`` (two operands) or ``not`` (one);
  an operand names an input or another gate, in any order, as long as there is no cycle;
- a ``networkx.DiGraph`` whose edges run operand -> gate and whose nodes carry ``kind``
  (``input`` and the gate kinds above) and, for an input, ``bit`` (0 or 1);
- a :class:`~structrnn.datasets.circuits.Circuit` or a PyG ``Data`` of
  :func:`~structrnn.datasets.circuits.to_data` (the task's own), its nodes named by index.

A circuit that cannot be read (an unknown kind, a wrong number of operands, an operand that
names nothing, a cycle, an input without a bit) has its reason under ``"error"``; the others are
predicted as usual. ``predict`` takes ``batch_size`` (default 64) and ``progress``;
``predict_file`` one circuit a line as JSON.
"""

from __future__ import annotations

import argparse
import json
from graphlib import CycleError, TopologicalSorter
from typing import Any, ClassVar

import torch
from torch import nn
from torch_geometric.data import Batch, Data

from structrnn._errors import InputError
from structrnn.datasets.circuits import (
    INPUT,
    KINDS,
    NUM_FEATURES,
    Circuit,
    evaluate,
    make_circuits,
    to_data,
)
from structrnn.tasks.predictor import Predictor, is_networkx, load_weights, split_part

__all__ = ["CircuitsPredictor", "PREDICTOR", "read_circuit"]


def _circuit_of(nodes: dict[Any, tuple[str, list, Any]]) -> tuple[Circuit, list]:
    """A :class:`Circuit` (inputs first, then the gates layer by layer) and the node names in
    its order, from ``{name: (kind, operand names, bit or None)}``."""
    for name, (kind, operands, bit) in nodes.items():
        if kind not in KINDS:
            raise ValueError(f"node {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        arity = 0 if kind == "input" else 1 if kind == "not" else 2
        if len(operands) != arity:
            raise ValueError(f"node {name!r}: {kind!r} takes {arity} operand(s), got "
                             f"{len(operands)}")
        missing = [o for o in operands if o not in nodes]
        if missing:
            raise ValueError(f"node {name!r}: operand {missing[0]!r} is no node of the circuit")
        if kind == "input" and bit not in (0, 1, False, True):
            raise ValueError(f"input {name!r}: expected a bit 0 or 1, got {bit!r}")
    try:
        order = list(TopologicalSorter({n: ops for n, (_, ops, _) in nodes.items()})
                     .static_order())
    except CycleError as err:
        raise ValueError(f"the gates form a cycle: {' -> '.join(map(repr, err.args[1]))}") \
            from None
    level: dict[Any, int] = {}
    for name in order:
        level[name] = 1 + max((level[o] for o in nodes[name][1]), default=-1)
    if not any(level.values()):
        raise ValueError("the circuit has no gate")
    position = {name: k for k, name in enumerate(nodes)}
    names = sorted(nodes, key=lambda n: (level[n], position[n]))
    index = {name: k for k, name in enumerate(names)}
    circuit = Circuit(kind=[KINDS.index(nodes[n][0]) for n in names],
                      operands=[tuple(index[o] for o in nodes[n][1]) for n in names],
                      level=[level[n] for n in names],
                      bits=[int(nodes[n][2]) for n in names if level[n] == 0])
    return circuit, names


def _from_gates(item: dict) -> tuple[Circuit, list]:
    unknown = set(item) - {"inputs", "gates"}
    if unknown or not isinstance(item.get("inputs"), dict) or not isinstance(
            item.get("gates"), dict):
        raise ValueError('expected {"inputs": {NAME: BIT}, "gates": {NAME: [KIND, OPERAND, '
                         f'...]}}, got the keys {sorted(item)}')
    nodes: dict[Any, tuple[str, list, Any]] = {n: ("input", [], b)
                                               for n, b in item["inputs"].items()}
    for name, gate in item["gates"].items():
        if name in nodes:
            raise ValueError(f"{name!r} is both an input and a gate")
        if not isinstance(gate, list | tuple) or not gate:
            raise ValueError(f"gate {name!r}: expected [KIND, OPERAND, ...], got {gate!r}")
        kind = str(gate[0]).lower()
        if kind == "input":
            raise ValueError(f"gate {name!r}: an input goes under \"inputs\"")
        nodes[name] = (kind, list(gate[1:]), None)
    return _circuit_of(nodes)


def _from_networkx(g) -> tuple[Circuit, list]:
    if not g.is_directed():
        raise ValueError("expected a networkx DiGraph (edges run operand -> gate)")
    nodes = {}
    for name, attrs in g.nodes(data=True):
        kind = attrs.get("kind")
        nodes[name] = (str(kind).lower() if kind is not None else None,
                       list(g.predecessors(name)), attrs.get("bit"))
    return _circuit_of(nodes)


def _check_data(data: Data) -> Data:
    if data.x is None or data.x.dim() != 2 or data.x.size(1) != NUM_FEATURES:
        raise ValueError(f"Data: expected x of shape (N, {NUM_FEATURES}) as to_data builds it, "
                         f"got {None if data.x is None else tuple(data.x.shape)}")
    if data.edge_index is None or "depth" not in data:
        raise ValueError("Data: expected edge_index and depth, as to_data builds them")
    return data


def read_circuit(item: Any) -> tuple[Data, list, list[int] | None]:
    """One circuit in any of the module's forms -> (``Data``, node names in its order, every
    node's true value or None when unknown). ValueError: why it cannot be read."""
    if isinstance(item, str):
        try:
            item = json.loads(item)
        except json.JSONDecodeError as err:
            raise ValueError(f"not a circuit: invalid JSON ({err})") from None
    if isinstance(item, Data):
        data = _check_data(item)
        truth = data.y.tolist() if data.y is not None else None
        return data, list(range(data.num_nodes)), truth
    if isinstance(item, Circuit):
        circuit, names = item, list(range(len(item.kind)))
    elif isinstance(item, dict):
        circuit, names = _from_gates(item)
    elif is_networkx(item):
        circuit, names = _from_networkx(item)
    else:
        raise ValueError("expected a circuit as a dict of gates (or its JSON), a networkx "
                         f"DiGraph, a Circuit or a PyG Data, got {type(item).__name__}")
    return to_data(circuit), names, evaluate(circuit)


class CircuitsPredictor(Predictor):
    """A trained circuits model (``dag``, ``gn`` or ``gn-depth``) with the ``Predictor``
    interface."""

    tasks = ("circuits",)

    @classmethod
    def build_model(cls, config: dict, weights: dict, where: str) -> nn.Module:
        """The ``--model`` of the config (``dag``, ``gn``, ``gn-depth``) with ``weights``."""
        from structrnn.tasks.circuits.task import build_model

        # --aggregation was renamed --aggr: the model reads either spelling of the config
        aggregation = config.get("aggr", config.get("aggregation", "sum"))
        args = argparse.Namespace(**{**config, "aggr": aggregation, "aggregation": aggregation})
        return load_weights(build_model(args), weights, where)

    default_batch_size: ClassVar[int] = 64
    single_input_types: ClassVar[tuple[type, ...]] = (Data, Circuit)

    def check_inputs(self, inputs: Any) -> list:
        """A single string is one circuit (its JSON)."""
        return super().check_inputs([inputs] if isinstance(inputs, str) else inputs)

    def read_input(self, item: Any, options: dict[str, Any]) -> tuple[Data, list, list | None]:
        """:func:`read_circuit`: the circuit's ``Data``, node names and true values."""
        return read_circuit(item)

    def forward_batch(self, inputs: list[tuple[Data, list, list | None]],
                      options: dict[str, Any]) -> list[tuple[Data, list, list | None, list]]:
        """Per circuit: what :meth:`read_input` gave and every node's probability of 1."""
        batch = Batch.from_data_list([data for data, _, _ in inputs]).to(self.device)
        p_one = torch.softmax(self.model(batch).float(), 1)[:, 1].cpu()
        ptr = batch.ptr.tolist()
        return [(*read, p_one[a:b].tolist())
                for read, a, b in zip(inputs, ptr[:-1], ptr[1:], strict=True)]

    def make_row(self, item: Any, index: int, output: tuple | None,
                 options: dict[str, Any]) -> dict:
        """``{"input": the circuit's index, "values": {gate: 0 or 1}, "probabilities": {gate:
        the model's probability of 1}, "solved": whether every value is the gate's true
        output (None when unknown), "error"}``; None in the prediction keys without
        ``output``."""
        row = {"input": index, "values": None, "probabilities": None, "solved": None,
               "error": None}
        if output is None:
            return row
        data, names, truth, probs = output
        gates = [i for i in range(len(names)) if data.x[i, INPUT] == 0]
        values = {names[i]: int(probs[i] > 0.5) for i in gates}
        row.update(values=values, probabilities={names[i]: probs[i] for i in gates},
                   solved=None if truth is None else all(values[names[i]] == truth[i]
                                                         for i in gates))
        return row

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """The run's figures on its generated circuits, re-created from the config's seed and
        shapes: ``test`` gives metrics.json's ``"test"`` (per test depth), ``val``/``dev`` and
        ``train`` the same figures on those circuits (gate and circuit accuracy, loss, the
        majority baseline)."""
        from structrnn.tasks.circuits.task import evaluate as evaluate_model

        if data is not None:
            raise InputError("eval --data: the circuits are generated from the run's seed; "
                             "there is no data folder to give")
        c, part = self.config, split_part(split)
        shape = {"width": tuple(c["width"]), "inputs": tuple(c["inputs"])}
        if part == "test":
            return {"test": {str(d): evaluate_model(self.model, make_circuits(
                c["seed"], c["test_circuits"], d, "test", **shape), self.device)
                for d in c["test_depths"]}}
        circuits = make_circuits(c["seed"], c[f"{part}_circuits"], tuple(c["train_depth"]),
                                 part, **shape)
        return {part: evaluate_model(self.model, circuits, self.device)}


PREDICTOR = CircuitsPredictor
