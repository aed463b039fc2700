"""Random boolean circuits: AND, OR, NOT and XOR gates over input bits, every gate's output the
target. A task where the order of a directed acyclic graph is the computation itself.

A circuit of depth ``D`` has a layer of inputs (2-6 bits by default) and ``D`` layers of gates
(2-5 a layer). A gate of layer ``d`` takes its first operand from layer ``d - 1`` (so the
longest path from an input to a gate of layer ``d`` has exactly ``d`` gates, and the circuit's
depth is ``D``) and, unless it is a NOT, a second, distinct operand from any earlier layer, the
inputs included. Gate kinds are drawn uniformly.

As PyG ``Data`` (:func:`to_data`), N nodes (inputs first, then the gates layer by layer):

| field | shape, type | meaning |
|---|---|---|
| ``x`` | (N, 6) float | one-hot kind (input, and, or, not, xor), the input's bit (0 at a gate) |
| ``y`` | (N,) long | the node's value: its bit for an input, the gate's output for a gate |
| ``edge_index`` | (2, E) long | operand -> gate (PyG's order: an operand comes before its gate) |
| ``level`` | (N,) long | 0 for an input, the gate's layer otherwise |
| ``depth`` | (1,) long | D (one entry per circuit in a batch) |

Every circuit is drawn from a NumPy stream named by the seed, the split and the depth
(:func:`make_circuits`), so a data set depends on these alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import Data

__all__ = ["KINDS", "NUM_FEATURES", "Circuit", "make_circuit", "evaluate", "to_data",
           "make_circuits", "circuit_rng"]

KINDS = ("input", "and", "or", "not", "xor")
INPUT, AND, OR, NOT, XOR = range(len(KINDS))
NUM_FEATURES = len(KINDS) + 1  # the one-hot kind and the input bit
# a split's stream: the seed, this number and the depth (see circuit_rng)
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class Circuit:
    """``kind`` (N,) one of :data:`KINDS` by index; ``operands`` one tuple of node ids per node
    (empty for an input); ``level`` (N,) the layer; ``bits`` the inputs' values (inputs are
    nodes ``0..len(bits) - 1``)."""

    kind: list[int]
    operands: list[tuple[int, ...]]
    level: list[int]
    bits: list[int]

    @property
    def depth(self) -> int:
        return max(self.level)


def make_circuit(rng: np.random.Generator, depth: int, width: tuple[int, int] = (2, 5),
                 inputs: tuple[int, int] = (2, 6)) -> Circuit:
    """A random circuit of exactly ``depth`` gate layers, ``width`` gates a layer and ``inputs``
    input bits (each drawn uniformly from ``[MIN, MAX]``)."""
    if depth < 1:
        raise ValueError(f"make_circuit: depth must be >= 1, got {depth}")
    if not (1 <= width[0] <= width[1] and 2 <= inputs[0] <= inputs[1]):
        raise ValueError(f"make_circuit: expected 1 <= width MIN <= MAX and 2 <= inputs MIN <= "
                         f"MAX, got width {width}, inputs {inputs}")
    n_in = int(rng.integers(inputs[0], inputs[1] + 1))
    kind, operands, level = [INPUT] * n_in, [()] * n_in, [0] * n_in
    bits = [int(b) for b in rng.integers(0, 2, n_in)]
    layer_start, layer_end = 0, n_in  # the previous layer: nodes layer_start..layer_end - 1
    for d in range(1, depth + 1):
        for _ in range(int(rng.integers(width[0], width[1] + 1))):
            k = int(rng.integers(AND, XOR + 1))
            first = int(rng.integers(layer_start, layer_end))
            if k == NOT:
                ops: tuple[int, ...] = (first,)
            else:  # any other earlier node
                second = int(rng.integers(0, layer_end - 1))
                ops = (first, second + (second >= first))
            kind.append(k)
            operands.append(ops)
            level.append(d)
        layer_start, layer_end = layer_end, len(kind)
    return Circuit(kind, operands, level, bits)


def evaluate(circuit: Circuit) -> list[int]:
    """Every node's value (nodes are in layer order, so one pass suffices)."""
    value = list(circuit.bits)
    for k, ops in zip(circuit.kind[len(value):], circuit.operands[len(value):], strict=True):
        a = value[ops[0]]
        b = value[ops[1]] if len(ops) > 1 else 0
        value.append({AND: a & b, OR: a | b, NOT: 1 - a, XOR: a ^ b}[k])
    return value


def to_data(circuit: Circuit) -> Data:
    """The circuit as PyG ``Data`` (the layout in the module's docstring)."""
    n = len(circuit.kind)
    x = torch.zeros(n, NUM_FEATURES)
    x[torch.arange(n), torch.tensor(circuit.kind)] = 1.0
    x[: len(circuit.bits), -1] = torch.tensor(circuit.bits, dtype=torch.float32)
    pairs = [(u, v) for v, ops in enumerate(circuit.operands) for u in ops]
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    return Data(x=x, y=torch.tensor(evaluate(circuit)), edge_index=edge_index,
                level=torch.tensor(circuit.level), depth=torch.tensor([circuit.depth]),
                num_nodes=n)


def circuit_rng(seed: int, split: str, depth: int | tuple[int, int]) -> np.random.Generator:
    """The NumPy stream of one split (``train``, ``val`` or ``test``) at one depth (or depth
    range): a function of the three alone."""
    depths = (depth, depth) if isinstance(depth, int) else tuple(depth)
    return np.random.default_rng(np.random.SeedSequence(
        [seed % 2**32, SPLITS[split], *depths]))


def make_circuits(seed: int, count: int, depth: int | tuple[int, int], split: str = "train",
                  width: tuple[int, int] = (2, 5),
                  inputs: tuple[int, int] = (2, 6)) -> list[Data]:
    """``count`` circuits as ``Data``, each of depth ``depth`` or of a depth drawn uniformly from
    ``[MIN, MAX]``; deterministic by ``seed``, ``split`` and ``depth``."""
    if split not in SPLITS:
        raise ValueError(f"make_circuits: split must be one of {tuple(SPLITS)}, got {split!r}")
    rng = circuit_rng(seed, split, depth)
    low, high = (depth, depth) if isinstance(depth, int) else depth
    return [to_data(make_circuit(rng, int(rng.integers(low, high + 1)), width, inputs))
            for _ in range(count)]
