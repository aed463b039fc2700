"""``structrnn train shortest-path``: find the shortest path in a graph (the graph_nets demo,
Battaglia et al. 2018).

Random geometric graphs (:mod:`structrnn.tasks.shortest_path.data`) with a start and an end
node; the targets are the nodes and edges on the shortest path, weighted by distance. An
EncodeProcessDecode model (GraphIndependent encoder, a GraphNetwork core run ``--steps`` rounds
with shared weights, the encoder's output concatenated to the core's input at every round,
decoder) is trained with a loss after every round, on the shared training core
(:func:`structrnn.training.loop.fit`), gradients clipped to norm 1 (``--clip-grad``), exact
``--resume``, DDP under ``torchrun``. The model is then tested on graphs of the training sizes
(8-16 nodes) and on graphs LARGER than any seen in training (16-32 nodes), with the training
rounds (``--test-steps``, default ``--steps``).

The defaults are the recipe that holds on the larger graphs (docs/graphs.md has the ablation):
the demo's model with a GRU cell as the core's update (``--core gru``) and max aggregation of
the edges onto their node (``--aggr max``, a Bellman-Ford relaxation takes a minimum over the
neighbours), a latent size of 64 (``--hidden``), 15 rounds (``--steps``) in training and test,
16000 training graphs, 10 epochs (5000 steps) with a cosine learning-rate decay from 1e-3, and
the last epoch's model kept (``--select last``).

    structrnn train shortest-path --out runs/shortest_path  # 10 epochs, ~13 min of one core
    python examples/shortest_path.py --epochs 2 --train-graphs 64 --val-graphs 16 \\
        --test-graphs 16 --out runs/sp_tiny                          # seconds

Run layout (``--out RUN``): ``config.json``, ``metrics.jsonl`` (one line per epoch),
``checkpoint.pt``, ``best.pt``, ``metrics.json`` (written first), then the pictures (they need
matplotlib; skipped with a notice without it): ``solved_graph.png`` (the predicted path) and
``steps_solved.png`` / ``steps_unsolved.png`` (the largest solved and unsolved test graphs,
the node and edge predictions after every round, and the target).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.data.data import BaseData
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from structrnn import viz
from structrnn.graphs._renamed import renamed
from structrnn.graphs.models import CORE_UPDATES, EncodeProcessDecode
from structrnn.graphs.network import batch_of, count_graphs
from structrnn.tasks.shortest_path.data import (
    Splits,
    make_dataset,
    make_graph,
    make_splits,
    to_data,
)
from structrnn.training import distributed
from structrnn.training.logging import notice
from structrnn.training.options import add_run_arguments, check_flags
from structrnn.training.task import Fitted, Plan, Task, train_loader

__all__ = ["TASK", "add_arguments", "build_model", "PathModel", "scale_edges",
           "per_step_loss", "batch_loss", "evaluate", "make_graph", "to_data", "make_dataset",
           "make_splits"]

CONFIG_KEYS = ("train_graphs", "val_graphs", "test_graphs", "train_nodes", "test_nodes",
               "steps", "test_steps", "hidden", "lr", "batch_size", "core", "aggr",
               "layer_norm", "edge_scale", "lr_schedule", "select")
# the model of a config without these keys: runs from before the options existed (the demo's)
LEGACY_MODEL = {"core": "mlp", "aggr": "sum", "layer_norm": True, "edge_scale": "none"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The task's flags and the shared run flags."""
    p.add_argument("--train-graphs", type=int, default=16000,
                   help="training graphs (each seen once an epoch; drawn in a fraction of a "
                        "second per thousand)")
    p.add_argument("--val-graphs", type=int, default=200,
                   help="held-out graphs of the training sizes that choose the epoch")
    p.add_argument("--test-graphs", type=int, default=200,
                   help="test graphs of each test set (training sizes, larger sizes)")
    p.add_argument("--train-nodes", type=int, nargs=2, default=[8, 16], metavar=("MIN", "MAX"),
                   help="node counts of the training, validation and same-size test graphs")
    p.add_argument("--test-nodes", type=int, nargs=2, default=[16, 32], metavar=("MIN", "MAX"),
                   help="node counts of the larger test graphs")
    p.add_argument("--steps", type=int, default=15,
                   help="message-passing rounds in training (the demo's: 10; a 16-32-node test "
                        "graph's path has up to 14 edges)")
    p.add_argument("--test-steps", type=int, default=None,
                   help="rounds in validation and test (default: --steps). More rounds than "
                        "in training can drift: a GRU + max model trained on 10 rounds solved "
                        "88%% of the larger graphs after 20 rounds with seed 0, 48%% with "
                        "seed 1 (76-80%% after 10-12). The core's weights are shared, so any "
                        "number runs")
    p.add_argument("--hidden", type=int, default=64,
                   help="latent size (the demo's: 16; seeds 0-2 solved 79.5, 84.5 and 61%% of "
                        "the larger graphs with 16, and 97.5, 96.5 and 94.5%% with 64)")
    p.add_argument("--core", choices=CORE_UPDATES, default="gru",
                   help="the core's update: the demo's MLP, or a GRU/LSTM cell whose input is "
                        "the MLP's output and whose state is the previous round's latent")
    p.add_argument("--aggr", choices=("sum", "mean", "max", "attention"), default="max",
                   help="how the core reduces the edges onto their receiving node")
    p.add_argument("--layer-norm", action=argparse.BooleanOptionalAction, default=True,
                   help="LayerNorm after every latent MLP (the demo's)")
    p.add_argument("--edge-scale", choices=("none", "mean"), default="none",
                   help="divide every edge length by its graph's mean edge length (inside the "
                        "model, so prediction does it too): larger graphs have shorter edges, "
                        "and the shortest path does not change under a common scale")
    p.add_argument("--select", choices=("last", "solved"), default="last",
                   help="the model kept: the last epoch's (the end of the schedule), or the "
                        "epoch that solves the most validation graphs. Those are of the "
                        "training sizes, where the models saturate (96-99%%), and their best "
                        "epoch is often an early one that solves fewer LARGER graphs (seed 0: "
                        "epoch 8, 74%% of the 16-32-node graphs; the last epoch 88.5%%)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="Adam learning rate (with 3e-3, hidden 16 and 16000 graphs, seed 1 "
                        "stalled early and solved 36%% of the larger graphs)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine",
                   help="the learning rate per epoch: constant, or a cosine decay to zero over "
                        "--epochs")
    # 10 epochs of 16000 graphs in batches of 32: 5000 steps (the demo's own run: 10000 steps
    # of fresh graphs); the larger model solves 90% of the validation graphs after one epoch
    add_run_arguments(p, out="runs/shortest_path", epochs=10, batch_size=32)
    # gradient norms run at 10-40 and a run without clipping can blow up mid-way (seed 0: the
    # train loss went 0.39 -> 0.82 at epoch 12, 34% of the large graphs solved; clipped: 52%);
    # --clip-grad 0 turns it off
    p.set_defaults(clip_grad=1.0)


class PathModel(EncodeProcessDecode):
    """:class:`~structrnn.graphs.models.EncodeProcessDecode` for the task: node input
    ``[is_start, is_end]``, edge input ``[distance]``, two classes per node and per edge (on the
    path or not), no global output; with ``edge_scale="mean"`` every edge length is divided by
    its graph's mean edge length before the encoder (no parameters: the weights' names are
    EncodeProcessDecode's)."""

    def __init__(self, hidden: int, steps: int, core: str = "mlp", aggr: str = "sum",
                 layer_norm: bool = True, edge_scale: str = "none") -> None:
        super().__init__(2, hidden, steps, 2, edge_dim=1, edge_out_channels=2,
                         layer_norm=layer_norm, core_update=core, aggr=aggr)
        if edge_scale not in ("none", "mean"):
            raise ValueError(f"PathModel: edge_scale must be 'none' or 'mean', got "
                             f"{edge_scale!r}")
        self.edge_scale = edge_scale

    @renamed(steps="num_layers")
    def forward(self, x: Tensor | BaseData, edge_index: Tensor | None = None,
                edge_attr: Tensor | None = None, u: Tensor | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None,
                num_layers: int | None = None) -> list[tuple]:
        """As :meth:`EncodeProcessDecode.forward` (a ``Batch`` or the tensors)."""
        if isinstance(x, BaseData):
            batch, num_graphs = batch_of(x)
            x, edge_index, edge_attr, u = x.x, x.edge_index, x.edge_attr, getattr(x, "u", None)
        if self.edge_scale == "mean" and edge_attr is not None:
            edge_attr = scale_edges(edge_attr, edge_index, batch, num_graphs)
        return super().forward(x, edge_index, edge_attr, u, batch, num_graphs, num_layers)


def scale_edges(edge_attr: Tensor, edge_index: Tensor, batch: Tensor | None,
                num_graphs: int | None) -> Tensor:
    """``edge_attr`` (E, F) divided by the mean of its graph's edges (per column); ``batch``
    (N,) the graph of each node, None for one graph."""
    if batch is None:
        return edge_attr / edge_attr.mean(0, keepdim=True).clamp_min(1e-12)
    graph = batch[edge_index[0]]
    size = count_graphs(batch, None, num_graphs)
    mean = scatter(edge_attr, graph, dim=0, dim_size=size, reduce="mean")
    return edge_attr / mean.clamp_min(1e-12)[graph]


def build_model(args: argparse.Namespace) -> PathModel:
    """The model of the flags (or of a run's config: a key it lacks takes the value runs had
    before the option existed, :data:`LEGACY_MODEL`)."""
    options = {k: getattr(args, k, v) for k, v in LEGACY_MODEL.items()}
    return PathModel(args.hidden, args.steps, **options)


# -- loss and evaluation -------------------------------------------------------------------------
def per_step_loss(outputs: list[tuple], batch: Batch) -> Tensor:
    """Mean over the rounds of node + edge cross-entropy (graph_nets' per-step loss).

    ``outputs``: one ``(x (N, 2), edge_attr (E, 2), None)`` per round -> a scalar."""
    losses = [F.cross_entropy(x.float(), batch.y) + F.cross_entropy(e.float(), batch.edge_y)
              for x, e, _ in outputs]
    return torch.stack(losses).mean()


def batch_loss(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """:func:`per_step_loss`, to back-propagate and for the log; its node and edge terms each
    a :func:`~structrnn.training.distributed.global_mean_loss` under DDP."""
    outputs = model(batch)
    rounds = len(outputs)
    node_sum = sum(F.cross_entropy(x.float(), batch.y, reduction="sum")
                   for x, _, _ in outputs) / rounds
    edge_sum = sum(F.cross_entropy(e.float(), batch.edge_y, reduction="sum")
                   for _, e, _ in outputs) / rounds
    node_loss, node_mean = distributed.global_mean_loss(node_sum, batch.y.numel())
    edge_loss, edge_mean = distributed.global_mean_loss(edge_sum, batch.edge_y.numel())
    return node_loss + edge_loss, node_mean + edge_mean


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, back in the mode it had after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, graphs: list[Data], steps: int,
             device: torch.device | str | None = None, batch_size: int = 64) -> dict:
    """Node and edge accuracy after ``steps`` rounds, and ``solved``: the fraction of graphs
    whose every node and edge is right. ``solved_mask`` (G,) says which graphs are (a CPU bool
    tensor), ``wrong`` (G,) how many nodes and edges each gets wrong (CPU long). The model is
    evaluated in eval mode and left in the mode it had."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    right = torch.zeros(2, dtype=torch.long, device=device)  # nodes right, edges right
    nodes = edges = 0
    wrongs: list[Tensor] = []
    with eval_mode(model):
        for batch in DataLoader(graphs, batch_size=batch_size):
            batch = batch.to(device)
            x, e, _ = model(batch, num_layers=steps)[-1]
            node_ok, edge_ok = x.argmax(1) == batch.y, e.argmax(1) == batch.edge_y
            wrong = torch.zeros(batch.num_graphs, dtype=torch.long, device=device)
            wrong.index_add_(0, batch.batch, (~node_ok).long())
            wrong.index_add_(0, batch.batch[batch.edge_index[0]], (~edge_ok).long())
            right += torch.stack([node_ok.sum(), edge_ok.sum()])
            nodes, edges = nodes + node_ok.numel(), edges + edge_ok.numel()
            wrongs.append(wrong)
    wrong = torch.cat(wrongs).cpu() if wrongs else torch.zeros(0, dtype=torch.long)
    mask = wrong == 0
    node_ok, edge_ok = right.tolist()  # the one host read
    return {"node_accuracy": node_ok / max(nodes, 1), "edge_accuracy": edge_ok / max(edges, 1),
            "solved": int(mask.sum()) / max(len(mask), 1), "solved_mask": mask, "wrong": wrong}


def _figures(result: dict) -> dict:
    """The numbers of an :func:`evaluate` result (what the epoch log keeps)."""
    return {k: result[k] for k in ("node_accuracy", "edge_accuracy", "solved")}


# -- the run -------------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> Splits:
    """Check the counts and sizes, settle the flags config.json records; the graphs."""
    # at least a start and a distinct end node
    check_flags(args, dict.fromkeys(("train_graphs", "val_graphs", "test_graphs", "steps"), 1),
                {"train_nodes": 2, "test_nodes": 2})
    # the number, not None, in config.json: a predictor reads None as the old default, 2 x steps
    args.test_steps = args.test_steps or args.steps
    return make_splits(args.seed, args.train_graphs, args.val_graphs, args.test_graphs,
                       tuple(args.train_nodes), tuple(args.test_nodes))


def build(args: argparse.Namespace, splits: Splits, unit: dict, device: torch.device) -> Plan:
    model = build_model(args).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = None
    if args.lr_schedule == "cosine":  # stepped once per epoch by fit, saved for --resume
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loader = train_loader(splits.train, args.batch_size, args.seed * 100_003, args.workers,
                          DataLoader)
    epoch_now = [0]  # the epoch being trained: the score of --select last

    def batches(epoch: int) -> DataLoader:
        epoch_now[0] = epoch
        return loader(epoch)

    def validate(m: nn.Module) -> dict:
        figures = _figures(evaluate(m, splits.val, args.test_steps, device))
        return figures | {"epoch": epoch_now[0]} if args.select == "last" else figures

    return Plan(model, optimizer, batch_loss, validate, batches=batches, scheduler=scheduler)


def finish(args: argparse.Namespace, splits: Splits, fitted: list[Fitted], device):
    """Test the selected model on the training sizes and on larger graphs; the metrics and
    the pictures."""
    result = fitted[0].result
    model, history, test_steps = result.model, result.history, args.test_steps
    same = evaluate(model, splits.test_same, test_steps, device)
    large = evaluate(model, splits.test_large, test_steps, device)
    seconds = [h["epoch_seconds"] for h in history]
    metrics = {
        "train_iters": math.ceil(len(splits.train) / args.batch_size) * len(history),
        "train_seconds": round(sum(seconds), 1),
        "final_loss": history[-1]["train_loss"] if history else None,
        "train_nodes": list(args.train_nodes), "test_nodes": list(args.test_nodes),
        "train_steps": args.steps, "test_steps": test_steps,
        "test_node_accuracy": large["node_accuracy"],
        "test_edge_accuracy": large["edge_accuracy"], "test_solved": large["solved"],
        "same_size_node_accuracy": same["node_accuracy"],
        "same_size_edge_accuracy": same["edge_accuracy"], "same_size_solved": same["solved"],
        "val_solved": result.best_record().get("val_solved"), **result.summary()}
    notice(f"test on {args.test_nodes[0]}-{args.test_nodes[1]} nodes: node acc "
           f"{metrics['test_node_accuracy']:.3f}, edge acc {metrics['test_edge_accuracy']:.3f}, "
           f"solved {metrics['test_solved']:.3f} | same size: solved "
           f"{metrics['same_size_solved']:.3f} | best epoch {result.best_epoch} of "
           f"{len(history)} -> {args.out}")
    graphs = splits.test_large
    return metrics, {**solved_picture(model, graphs, large["solved_mask"], test_steps, device,
                                      args.train_nodes),
                     **step_pictures(model, graphs, large["wrong"], test_steps, device)}


# -- the pictures (drawn by structrnn.viz) -------------------------------------------------------
def _outputs(model: nn.Module, graph: Data, steps: int, device) -> list[tuple]:
    with eval_mode(model), torch.no_grad():
        return model(Batch.from_data_list([graph]).to(device), num_layers=steps)


def solved_picture(model: nn.Module, graphs: list[Data], solved_mask: Tensor, steps: int,
                   device: torch.device, train_nodes: list[int]) -> dict:
    """``solved_graph.png``: the model's path on the first solved test graph (the first graph
    when none is solved)."""
    solved = solved_mask.nonzero().flatten().tolist()
    k = solved[0] if solved else 0
    x, e, _ = _outputs(model, graphs[k], steps, device)[-1]
    title = (f"{graphs[k].num_nodes} nodes ({'solved' if solved else 'not solved'}); "
             f"trained on {train_nodes[0]}-{train_nodes[1]}")
    return {"solved_graph.png": lambda path: viz.draw_path(
        graphs[k], x.argmax(1).cpu(), e.argmax(1).cpu(), path, title)}


def pick_pictured(graphs: list[Data], wrong: Tensor) -> dict[str, tuple[int, str]]:
    """The graphs of the step pictures: ``{"solved": (k, note), "unsolved": (k, note)}``, the
    largest solved and the largest unsolved graph (``wrong`` (G,) the wrong nodes and edges of
    each). Without any solved graph, "solved" is the graph with the fewest wrong; without any
    unsolved one, "unsolved" is the largest graph; ``note`` says so."""
    sizes = torch.tensor([g.num_nodes for g in graphs])
    # the most nodes first, then the fewest mistakes (solved graphs: zero), then the first
    order = sorted(range(len(graphs)), key=lambda k: (-int(sizes[k]), int(wrong[k]), k))
    solved = [k for k in order if wrong[k] == 0]
    unsolved = [k for k in order if wrong[k] > 0]
    picked = {"solved": (solved[0], "solved") if solved else
              (min(order, key=lambda k: (int(wrong[k]), -int(sizes[k]))),
               "no test graph solved: the one with the fewest mistakes"),
              "unsolved": (unsolved[0], "not solved") if unsolved else
              (order[0], "every test graph solved: the largest")}
    return picked


def step_pictures(model: nn.Module, graphs: list[Data], wrong: Tensor, steps: int,
                  device: torch.device) -> dict:
    """``steps_solved.png`` and ``steps_unsolved.png``: the model's per-round node and edge
    probabilities on the largest solved and the largest unsolved test graph (see
    :func:`pick_pictured`), and the target."""
    drawn = {}
    for kind, (k, note) in pick_pictured(graphs, wrong).items():
        outputs = _outputs(model, graphs[k], steps, device)
        node_p = torch.stack([torch.softmax(x.float(), 1)[:, 1] for x, _, _ in outputs]).cpu()
        edge_p = torch.stack([torch.softmax(e.float(), 1)[:, 1] for _, e, _ in outputs]).cpu()
        title = f"test graph {k}, {graphs[k].num_nodes} nodes: {note}"
        drawn[f"steps_{kind}.png"] = (lambda path, k=k, n=node_p, e=edge_p, t=title:
                                      viz.draw_path_steps(graphs[k], n, e, path, t))
    return drawn


TASK = Task("shortest-path", "the graph_nets shortest-path demo",
            "structrnn.tasks.shortest_path.predictor", add_arguments, CONFIG_KEYS, prepare,
            build, finish, select=lambda args: "epoch" if args.select == "last" else "solved")
