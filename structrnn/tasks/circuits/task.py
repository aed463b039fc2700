"""``structrnn train circuits``: compute every gate of a random boolean circuit.

The circuits (:mod:`structrnn.datasets.circuits`: AND, OR, NOT and XOR gates over input bits,
deterministic by seed) are trained on at depths ``--train-depth`` (default 1-8) and tested at
the largest training depth and at deeper circuits (``--test-depths``, default 8 16 32). Three
models, each predicting every gate's value from the gate kinds and the input bits:

- ``dag``: :class:`~structrnn.graphs.dag.DAGRecurrent` (an LSTM or GRU cell, ``--cell``) run
  once over the circuit's topological levels, operands before gates, then a classifier on every
  node: one cell application per node, whatever the depth.
- ``gn``: the encode-process-decode graph network of the graph_nets demos
  (:class:`~structrnn.graphs.models.EncodeProcessDecode`) on the operand -> gate edges, its core
  run a fixed ``--rounds`` times (default 8, the deepest training circuit: enough rounds for
  every training gate to hear from every input), in training and in testing alike.
- ``gn-depth``: the same network run as many rounds as each circuit is deep (up to 32 in
  testing), its prediction read after the last of them.

On the shared training core (:func:`structrnn.training.loop.fit`): the loss is the cross-entropy
of every gate (the inputs are given), the epoch is chosen by that loss on held-out circuits of
the training depths (their circuit accuracy ties at 1.0 long before the loss stops falling);
``metrics.json`` holds per-gate and per-circuit accuracy at each test depth, with the accuracy
of always answering the majority value.

    structrnn train circuits --model dag --out runs/circuits_dag
    structrnn train circuits --model gn --out runs/circuits_gn
    structrnn train circuits --model gn-depth --out runs/circuits_gn_depth
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from structrnn._errors import InputError
from structrnn.cells import GRUCell, LSTMCell
from structrnn.datasets.circuits import INPUT, NUM_FEATURES, make_circuits
from structrnn.graphs.dag import DAGRecurrent
from structrnn.graphs.models import EncodeProcessDecode, mlp
from structrnn.training import distributed
from structrnn.training.logging import notice
from structrnn.training.options import add_run_arguments, check_flags
from structrnn.training.task import Fitted, Plan, Task

__all__ = ["TASK", "add_arguments", "build_model", "CircuitDAG", "CircuitGN",
           "batch_loss", "evaluate", "CONFIG_KEYS"]

MODELS = ("dag", "gn", "gn-depth")
CONFIG_KEYS = ("model", "cell", "aggr", "hidden", "rounds", "train_circuits",
               "val_circuits", "test_circuits", "train_depth", "test_depths", "width", "inputs",
               "lr", "batch_size")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The task's flags and the shared run flags."""
    add_run_arguments(p, out="runs/circuits", epochs=30, batch_size=32)
    # as the other graph tasks: an occasional large gradient must not undo an epoch
    p.set_defaults(clip_grad=1.0)
    p.add_argument("--model", choices=MODELS, default="dag",
                   help="dag: a cell over the topological levels; gn: a graph network run "
                        "--rounds rounds; gn-depth: a graph network run as many rounds as the "
                        "circuit is deep")
    # seed 0, 20 epochs: the LSTM solved 93% of the depth-32 circuits, the GRU 63%
    p.add_argument("--cell", choices=("gru", "lstm"), default="lstm",
                   help="the dag model's cell (Child-Sum LSTM or GRU)")
    p.add_argument("--aggr", "--aggregation", dest="aggr", choices=("sum", "attention"),
                   default="sum", help="how the dag model's cell takes a gate's operands "
                   "(--aggregation: the old spelling, going in the next release)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--rounds", type=int, default=8, help="the gn model's rounds")
    p.add_argument("--train-circuits", type=int, default=4000)
    p.add_argument("--val-circuits", type=int, default=200,
                   help="held-out circuits of the training depths that choose the epoch")
    p.add_argument("--test-circuits", type=int, default=500, help="circuits of each test depth")
    p.add_argument("--train-depth", type=int, nargs=2, default=[1, 8], metavar=("MIN", "MAX"),
                   help="depths of the training and validation circuits")
    p.add_argument("--test-depths", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--width", type=int, nargs=2, default=[2, 5], metavar=("MIN", "MAX"),
                   help="gates per layer")
    p.add_argument("--inputs", type=int, nargs=2, default=[2, 6], metavar=("MIN", "MAX"),
                   help="input bits per circuit")


# -- the models ----------------------------------------------------------------------------------
class CircuitDAG(nn.Module):
    """:class:`DAGRecurrent` forward over the circuit, then a two-layer classifier on every
    node's ``h``: ``Batch`` -> logits (N, 2)."""

    def __init__(self, hidden: int, cell: str = "lstm", aggr: str = "sum") -> None:
        super().__init__()
        cell_class = {"gru": GRUCell, "lstm": LSTMCell}[cell]
        self.dag = DAGRecurrent(cell_class(NUM_FEATURES, hidden), aggr=aggr)
        self.head = mlp([hidden, hidden, 2])

    def forward(self, batch: Batch) -> Tensor:
        return self.head(self.dag(batch.x, batch.edge_index, batch.num_nodes))


class CircuitGN(nn.Module):
    """:class:`EncodeProcessDecode` on the operand -> gate edges (edge input: a constant 1):
    ``rounds`` rounds, or with ``rounds=None`` as many rounds as each circuit's ``depth``, read
    per circuit after its own last round. ``Batch`` -> logits (N, 2)."""

    def __init__(self, hidden: int, rounds: int | None) -> None:
        super().__init__()
        self.rounds = rounds
        self.net = EncodeProcessDecode(node_in=NUM_FEATURES, edge_in=1, node_out=2,
                                       hidden=hidden, steps=rounds or 1)

    def forward(self, batch: Batch) -> Tensor:
        if batch.batch is None:  # one circuit as a Data
            graph, num_graphs = batch.x.new_zeros(batch.num_nodes, dtype=torch.long), 1
        else:
            graph, num_graphs = batch.batch, batch.num_graphs
        edge_attr = batch.x.new_ones(batch.edge_index.size(1), 1)
        steps = self.rounds if self.rounds is not None else int(batch.depth.max())
        outputs = self.net(batch.x, batch.edge_index, edge_attr, batch=graph,
                           num_graphs=num_graphs, steps=steps)
        if self.rounds is not None:
            return outputs[-1][0]
        # each circuit's nodes after as many rounds as that circuit is deep
        stacked = torch.stack([x for x, _, _ in outputs])  # (rounds, N, 2)
        node = torch.arange(batch.num_nodes, device=stacked.device)
        return stacked[batch.depth[graph] - 1, node]


def build_model(args: argparse.Namespace) -> nn.Module:
    """The ``--model`` with its flags."""
    if args.model == "dag":
        return CircuitDAG(args.hidden, args.cell, args.aggr)
    return CircuitGN(args.hidden, args.rounds if args.model == "gn" else None)


# -- loss and evaluation -------------------------------------------------------------------------
def batch_loss(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """The gates' mean cross-entropy (the inputs are given, not predicted): the loss to
    back-propagate and its detached value; under DDP each process's sum over the global count
    (:func:`structrnn.training.distributed.global_mean_loss`)."""
    gate = (batch.x[:, INPUT] == 0).to(batch.x.dtype)
    total = (F.cross_entropy(model(batch).float(), batch.y, reduction="none") * gate).sum()
    return distributed.global_mean_loss(total, gate.sum())


@torch.no_grad()
def evaluate(model: nn.Module, circuits: list[Data], device: torch.device | str,
             batch_size: int = 64) -> dict[str, float]:
    """``gate_accuracy`` (every gate of every circuit), ``circuit_accuracy`` (circuits with every
    gate right) and ``majority_gate_accuracy`` (always answering the commoner value). The model
    is evaluated in eval mode and left in the mode it had."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(4, dtype=torch.long, device=device)  # right, gates, ones, solved
    loss = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for batch in DataLoader(circuits, batch_size=batch_size):
            batch = batch.to(device)
            gate = batch.x[:, INPUT] == 0
            logits = model(batch).float()
            loss += (F.cross_entropy(logits, batch.y, reduction="none") * gate).sum().double()
            wrong = (logits.argmax(1) != batch.y) & gate
            per_circuit = torch.zeros(batch.num_graphs, dtype=torch.long, device=device)
            per_circuit.index_add_(0, batch.batch, wrong.long())
            counts += torch.stack([(gate & ~wrong).sum(), gate.sum(), (batch.y * gate).sum(),
                                   (per_circuit == 0).sum()])
    finally:
        model.train(was_training)
    right, gates, ones, solved = counts.tolist()  # the one host read (and the loss's)
    gates = max(gates, 1)
    return {"gate_accuracy": right / gates, "circuit_accuracy": solved / max(len(circuits), 1),
            "loss": float(loss) / gates, "majority_gate_accuracy": max(ones, gates - ones) / gates}


# -- the run -------------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> tuple[list[Data], list[Data]]:
    """Check every count and range flag; the training and validation circuits."""
    check_flags(args, dict.fromkeys(("train_circuits", "val_circuits", "test_circuits",
                                     "hidden", "rounds"), 1),
                {"train_depth": 1, "width": 1, "inputs": 2})
    if min(args.test_depths) < 1:
        raise InputError(f"--test-depths: expected depths >= 1, got {args.test_depths}")
    args.test_depths = list(args.test_depths)
    depths = tuple(args.train_depth)
    return tuple(make_circuits(args.seed, n, depths, split, **_shape(args))
                 for n, split in ((args.train_circuits, "train"), (args.val_circuits, "val")))


def _shape(args: argparse.Namespace) -> dict:
    return {"width": tuple(args.width), "inputs": tuple(args.inputs)}


def build(args: argparse.Namespace, data, unit: dict, device: torch.device) -> Plan:
    model = build_model(args).to(device)
    return Plan(model, torch.optim.Adam(model.parameters(), lr=args.lr), batch_loss,
                lambda m: evaluate(m, data[1], device), train_set=data[0],
                loader_class=DataLoader)


def finish(args: argparse.Namespace, data, fitted: list[Fitted], device: torch.device):
    """Test the selected model at every depth: the metrics (no pictures)."""
    result = fitted[0].result
    tests = {str(d): evaluate(result.model, make_circuits(args.seed, args.test_circuits, d,
                                                          "test", **_shape(args)), device)
             for d in args.test_depths}
    seconds = [h["epoch_seconds"] for h in result.history]
    metrics = {
        "model": args.model, "cell": args.cell if args.model == "dag" else None,
        "rounds": args.rounds if args.model == "gn" else
        ("depth" if args.model == "gn-depth" else None),
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "train_depth": list(args.train_depth), "test": tests,
        "val_loss": result.best_score,
        "val_circuit_accuracy": result.best_record().get("val_circuit_accuracy"),
        "train_seconds": round(sum(seconds), 1),
        "final_loss": result.history[-1]["train_loss"] if result.history else None,
        **result.summary()}
    shown = ", ".join(f"depth {d}: gates {t['gate_accuracy']:.3f}, circuits "
                      f"{t['circuit_accuracy']:.3f}" for d, t in tests.items())
    notice(f"{args.model}: {shown} | best epoch {result.best_epoch} of "
           f"{len(result.history)} -> {args.out}")
    return metrics, {}


TASK = Task("circuits", "random boolean circuits: a cell over DAG levels against graph networks",
            "structrnn.tasks.circuits.predictor", add_arguments, CONFIG_KEYS, prepare, build,
            finish, select="loss", mode="min")
