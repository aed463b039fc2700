"""``structrnn train shortest-path``: find the shortest path in a graph (the graph_nets demo,
Battaglia et al. 2018).

Random geometric graphs (:mod:`structrnn.tasks.shortest_path.data`) with a start and an end
node; the targets are the nodes and edges on the shortest path, weighted by distance. An
EncodeProcessDecode model (GraphIndependent encoder, a GraphNetwork core run ``--steps`` rounds
with shared weights and skip connections, decoder) is trained with a loss after every round, on
the shared training core (:func:`structrnn.training.loop.fit`): epochs over the training graphs,
the epoch chosen by the fraction of held-out training-size graphs solved exactly, gradients
clipped to norm 1 (``--clip-grad``), exact ``--resume``, DDP under ``torchrun``. The selected
model is then tested on graphs of the training sizes and on graphs LARGER than any seen in
training.

    structrnn train shortest-path --out runs/shortest_path          # 24 epochs, ~40 s (1 core)
    python examples/shortest_path.py --epochs 2 --train-graphs 64 --val-graphs 16 \\
        --test-graphs 16 --out runs/sp_tiny                          # seconds

Run layout (``--out RUN``): ``config.json``, ``metrics.jsonl`` (one line per epoch),
``checkpoint.pt``, ``best.pt``, ``metrics.json`` (written first), ``solved_graph.png`` (needs
matplotlib; skipped with a notice without it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from structrnn._errors import InputError
from structrnn.graphs.models import EncodeProcessDecode
from structrnn.tasks.shortest_path.data import (
    Splits,
    make_dataset,
    make_graph,
    make_splits,
    to_data,
)
from structrnn.training import distributed
from structrnn.training.checkpoint import seed_everything
from structrnn.training.logging import notice
from structrnn.training.loop import FitOptions, FitResult, fit
from structrnn.training.options import (
    add_run_arguments,
    apply_config,
    explicit_dests,
    run_config,
    set_threads,
)
from structrnn.training.run_folder import RunFolder, open_run

__all__ = ["add_arguments", "run", "main", "build_model", "per_step_loss", "batch_loss",
           "evaluate", "make_graph", "to_data", "make_dataset", "make_splits"]

CONFIG_KEYS = ("train_graphs", "val_graphs", "test_graphs", "train_nodes", "test_nodes",
               "steps", "test_steps", "hidden", "lr", "batch_size")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The task's flags and the shared run flags."""
    p.add_argument("--train-graphs", type=int, default=2000, help="training graphs")
    p.add_argument("--val-graphs", type=int, default=200,
                   help="held-out graphs of the training sizes that choose the epoch")
    p.add_argument("--test-graphs", type=int, default=200,
                   help="test graphs of each test set (training sizes, larger sizes)")
    p.add_argument("--train-nodes", type=int, nargs=2, default=[8, 16], metavar=("MIN", "MAX"),
                   help="node counts of the training, validation and same-size test graphs")
    p.add_argument("--test-nodes", type=int, nargs=2, default=[16, 32], metavar=("MIN", "MAX"),
                   help="node counts of the larger test graphs")
    p.add_argument("--steps", type=int, default=10, help="message-passing rounds in training")
    p.add_argument("--test-steps", type=int, default=None,
                   help="rounds in validation and test (default 2 x --steps: the core's weights "
                        "are shared, so larger graphs may use more rounds)")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32,
                   help="global batch size (under torchrun split evenly between the processes)")
    # 24 epochs of 2000 graphs in batches of 32: the 1500 steps the demo always trained for
    add_run_arguments(p, out="runs/shortest_path", epochs=24)
    # gradient norms run at 10-40 and a run without clipping can blow up mid-way (seed 0: the
    # train loss went 0.39 -> 0.82 at epoch 12, 34% of the large graphs solved; clipped: 52%);
    # --clip-grad 0 turns it off
    p.set_defaults(clip_grad=1.0)


def main(argv: list[str] | None = None) -> dict:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); returns the metrics."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    if args.config:
        args = apply_config(args, explicit_dests(p, argv))
    return run(args)


def build_model(args: argparse.Namespace) -> EncodeProcessDecode:
    """Node input ``[is_start, is_end]``, edge input ``[distance]``, two classes per node and
    per edge (on the path or not), no global output."""
    return EncodeProcessDecode(node_in=2, edge_in=1, global_in=None, node_out=2, edge_out=2,
                               hidden=args.hidden, steps=args.steps)


# -- loss and evaluation -------------------------------------------------------------------------
def per_step_loss(outputs: list[tuple], batch: Batch) -> Tensor:
    """Mean over the rounds of node + edge cross-entropy (graph_nets' per-step loss).

    ``outputs``: one ``(x (N, 2), edge_attr (E, 2), None)`` per round -> a scalar."""
    losses = [F.cross_entropy(x.float(), batch.y) + F.cross_entropy(e.float(), batch.edge_y)
              for x, e, _ in outputs]
    return torch.stack(losses).mean()


def batch_loss(model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor]:
    """The loss to back-propagate and the global batch's per-step loss (for logging).

    One process: :func:`per_step_loss`. Many: node and edge terms each become this process's
    sum over the global count (:func:`structrnn.training.distributed.global_mean_loss`), so
    that DDP's gradient average is the single-process gradient of the global batch.
    """
    outputs = model(batch)
    if not distributed.is_distributed():
        loss = per_step_loss(outputs, batch)
        return loss, loss.detach()
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
    tensor). The model is evaluated in eval mode and left in the mode it had."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    right = torch.zeros(2, dtype=torch.long, device=device)  # nodes right, edges right
    nodes = edges = 0
    solved: list[Tensor] = []
    with eval_mode(model):
        for batch in DataLoader(graphs, batch_size=batch_size):
            batch = batch.to(device)
            x, e, _ = model(batch, steps=steps)[-1]
            node_ok, edge_ok = x.argmax(1) == batch.y, e.argmax(1) == batch.edge_y
            wrong = torch.zeros(batch.num_graphs, dtype=torch.long, device=device)
            wrong.index_add_(0, batch.batch, (~node_ok).long())
            wrong.index_add_(0, batch.batch[batch.edge_index[0]], (~edge_ok).long())
            right += torch.stack([node_ok.sum(), edge_ok.sum()])
            nodes, edges = nodes + node_ok.numel(), edges + edge_ok.numel()
            solved.append(wrong == 0)
    mask = torch.cat(solved).cpu() if solved else torch.zeros(0, dtype=torch.bool)
    node_ok, edge_ok = right.tolist()  # the one host read
    return {"node_accuracy": node_ok / max(nodes, 1), "edge_accuracy": edge_ok / max(edges, 1),
            "solved": int(mask.sum()) / max(len(mask), 1), "solved_mask": mask}


def _figures(result: dict) -> dict:
    """The numbers of an :func:`evaluate` result (what the epoch log keeps)."""
    return {k: result[k] for k in ("node_accuracy", "edge_accuracy", "solved")}


# -- the run -------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    """Train, select on the validation graphs, test on the same sizes and on larger graphs;
    write ``metrics.json``, then ``solved_graph.png``; return the metrics.

    Under torchrun every process calls this; all of them return rank 0's metrics.
    """
    set_threads(args.threads)
    device = distributed.device_for_rank(args.device)
    launched = distributed.init_from_env(device)
    try:
        return _run(args, device)
    finally:
        if launched:
            distributed.cleanup()


def _check_sizes(args: argparse.Namespace) -> None:
    world = distributed.world_size()
    if args.batch_size < 1 or args.batch_size % world:
        raise InputError(f"--batch-size: the global batch size must be a multiple of the "
                         f"number of processes ({world}), got {args.batch_size}")
    for flag in ("train_graphs", "val_graphs", "test_graphs", "steps"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')}: expected >= 1, got "
                             f"{getattr(args, flag)}")
    for flag in ("train_nodes", "test_nodes"):
        low, high = getattr(args, flag)
        if not 2 <= low <= high:  # a start and a distinct end node
            raise InputError(f"--{flag.replace('_', '-')}: expected 2 <= MIN <= MAX, got "
                             f"{low} {high}")


def _run(args: argparse.Namespace, device: torch.device) -> dict:
    _check_sizes(args)
    # lists, as config.json reads them back (a tuple would differ from it on --resume)
    args.train_nodes, args.test_nodes = list(args.train_nodes), list(args.test_nodes)
    config = run_config(args, CONFIG_KEYS, "shortest-path")
    folder = open_run(args.out, config, args.resume, args.overwrite, args.tensorboard)
    seed_everything(args.seed)
    splits = make_splits(args.seed, args.train_graphs, args.val_graphs, args.test_graphs,
                         tuple(args.train_nodes), tuple(args.test_nodes))
    model = build_model(args).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    test_steps = args.test_steps or 2 * args.steps
    loader_seed = args.seed * 100_003

    def train_batches(epoch: int) -> DataLoader:
        # the order is a function of the seed and the epoch, so a resumed run draws the same
        # batches; the loader's own seed draw comes from its generator, not the global stream
        return distributed.distributed_loader(
            splits.train, args.batch_size, shuffle=True, seed=loader_seed, epoch=epoch,
            loader_class=DataLoader, generator=torch.Generator().manual_seed(loader_seed + epoch))

    result = fit(model, optimizer, train_batches=train_batches, loss=batch_loss,
                 validate=lambda m: _figures(evaluate(m, splits.val, test_steps, device)),
                 folder=folder, options=FitOptions.from_args(args), device=device,
                 config=config, select="solved", resume=args.resume)
    metrics = None
    if distributed.is_main():
        metrics = finish(result, folder, args, splits, device,
                         steps_per_epoch=len(train_batches(1)))
    return distributed.broadcast_object(metrics)


def finish(result: FitResult, folder: RunFolder, args: argparse.Namespace, splits: Splits,
           device: torch.device, steps_per_epoch: int) -> dict:
    """Test the selected model, write ``metrics.json``, then the picture; return the metrics."""
    model, history = result.model, result.history
    test_steps = args.test_steps or 2 * args.steps
    same = evaluate(model, splits.test_same, test_steps, device)
    large = evaluate(model, splits.test_large, test_steps, device)
    seconds = [h["epoch_seconds"] for h in history]
    metrics = {
        "train_iters": steps_per_epoch * len(history), "train_seconds": round(sum(seconds), 1),
        "final_loss": history[-1]["train_loss"] if history else None,
        "train_nodes": list(args.train_nodes), "test_nodes": list(args.test_nodes),
        "train_steps": args.steps, "test_steps": test_steps,
        "test_node_accuracy": large["node_accuracy"],
        "test_edge_accuracy": large["edge_accuracy"], "test_solved": large["solved"],
        "same_size_node_accuracy": same["node_accuracy"],
        "same_size_edge_accuracy": same["edge_accuracy"], "same_size_solved": same["solved"],
        "val_solved": result.best_score, "best_epoch": result.best_epoch,
        "epochs": len(history), "epoch_seconds": seconds,
    }
    folder.write_metrics(metrics)  # first: a picture that fails must not lose the figures
    notice(f"test on {args.test_nodes[0]}-{args.test_nodes[1]} nodes: node acc "
           f"{metrics['test_node_accuracy']:.3f}, edge acc {metrics['test_edge_accuracy']:.3f}, "
           f"solved {metrics['test_solved']:.3f} | same size: solved "
           f"{metrics['same_size_solved']:.3f} | best epoch {result.best_epoch} of "
           f"{len(history)} -> {folder.path}")
    draw_solved_graph(model, splits.test_large, large["solved_mask"], test_steps, device,
                      folder, args.train_nodes)
    return metrics


# -- the picture ---------------------------------------------------------------------------------
def draw_solved_graph(model: nn.Module, graphs: list[Data], solved_mask: Tensor, steps: int,
                      device: torch.device, folder: RunFolder, train_nodes: list[int]) -> None:
    """``solved_graph.png``: the model's path on the first solved test graph (the first graph
    when none is solved); skipped with a notice without matplotlib."""
    solved = solved_mask.nonzero().flatten().tolist()
    k = solved[0] if solved else 0
    with eval_mode(model), torch.no_grad():
        x, e, _ = model(Batch.from_data_list([graphs[k]]).to(device), steps=steps)[-1]
    title = (f"{graphs[k].num_nodes} nodes ({'solved' if solved else 'not solved'}); "
             f"trained on {train_nodes[0]}-{train_nodes[1]}")
    folder.picture("solved_graph.png", lambda path: draw(
        graphs[k], x.argmax(1).cpu(), e.argmax(1).cpu(), path, title))


def draw(data: Data, node_pred: Tensor, edge_pred: Tensor, path: Path, title: str) -> Path:
    """Graph at its positions; predicted path in red, start square, end star.

    ``node_pred`` (N,) and ``edge_pred`` (E,): 1 on the predicted path."""
    from structrnn import viz

    plt = viz.pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    pos = data.pos.numpy()
    for j, (a, b) in enumerate(data.edge_index.t().tolist()):
        if a < b:
            on = bool(edge_pred[j])
            ax.plot(*pos[[a, b]].T, color="crimson" if on else "0.75", lw=3 if on else 1,
                    zorder=1)
    colors = ["crimson" if int(p) else "steelblue" for p in node_pred]
    ax.scatter(pos[:, 0], pos[:, 1], c=colors, s=60, zorder=2)
    start, end = int(data.x[:, 0].argmax()), int(data.x[:, 1].argmax())
    ax.scatter(*pos[start], marker="s", s=200, facecolors="none", edgecolors="k", zorder=3,
               label="start")
    ax.scatter(*pos[end], marker="*", s=300, facecolors="none", edgecolors="k", zorder=3,
               label="end")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    ax.set_xticks([])
    ax.set_yticks([])
    return viz.save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    main()
