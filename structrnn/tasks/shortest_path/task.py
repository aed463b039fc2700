"""Find the shortest path in a graph (the graph_nets demo, Battaglia et al. 2018).

Random geometric graphs (networkx; a minimum spanning tree keeps them connected) with a start
and an end node; the targets are the nodes and edges on the shortest path, weighted by distance.
An EncodeProcessDecode model (GraphIndependent encoder, a GraphNetwork core run ``--steps``
rounds with shared weights and skip connections, decoder) is trained with a loss after every
round. It is tested on graphs LARGER than any seen in training.

    python examples/shortest_path.py                      # ~2-3 minutes on 2 CPU cores
    python examples/shortest_path.py --iters 20 --train-graphs 64 --test-graphs 16   # seconds

Writes ``metrics.json``, ``checkpoint.pt`` and ``solved_graph.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from tqdm import tqdm

from structrnn._io import write_json
from structrnn.graphs.models import EncodeProcessDecode
from structrnn.training.checkpoint import load_checkpoint, save_checkpoint, seed_everything


# -- data ----------------------------------------------------------------------------------------
def make_graph(rng: np.random.Generator, num_nodes: int, degree: float = 4.0,
               min_path_edges: int = 2) -> tuple[nx.Graph, int, int, list[int]]:
    """A random geometric graph in the unit square joined by its Euclidean minimum spanning tree
    (so it is connected), a start and an end node, and the shortest path between them.

    Edges carry ``distance``; nodes carry ``pos``. The radius keeps the mean degree near
    ``degree`` whatever the size. Start and end are drawn until the path has at least
    ``min_path_edges`` edges (or the graph is too small for that).
    """
    pos = {i: tuple(p) for i, p in enumerate(rng.random((num_nodes, 2)))}
    radius = math.sqrt(degree / (math.pi * num_nodes))
    g = nx.random_geometric_graph(num_nodes, radius, pos=pos)
    complete = nx.complete_graph(num_nodes)
    for a, b in complete.edges:
        complete[a][b]["distance"] = math.dist(pos[a], pos[b])
    g.add_edges_from(nx.minimum_spanning_tree(complete, weight="distance").edges)
    for a, b in g.edges:
        g[a][b]["distance"] = math.dist(pos[a], pos[b])
    for _ in range(20):
        start, end = (int(v) for v in rng.choice(num_nodes, 2, replace=False))
        path = nx.shortest_path(g, start, end, weight="distance")
        if len(path) - 1 >= min_path_edges:
            break
    return g, start, end, path


def to_data(g: nx.Graph, start: int, end: int, path: list[int]) -> Data:
    """Node input ``[is_start, is_end]``, edge input ``[distance]`` (both directions); targets
    ``y`` (node on the path) and ``edge_y`` (edge on the path, either direction)."""
    n = g.number_of_nodes()
    pairs = list(g.edges) + [(b, a) for a, b in g.edges]
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    on_path = set(zip(path[:-1], path[1:]))
    on_path |= {(b, a) for a, b in on_path}
    x = torch.zeros(n, 2)
    x[start, 0] = x[end, 1] = 1.0
    y = torch.zeros(n, dtype=torch.long)
    y[path] = 1
    dist = torch.tensor([[g[a][b]["distance"]] for a, b in pairs], dtype=torch.float32)
    edge_y = torch.tensor([int(p in on_path) for p in pairs], dtype=torch.long)
    pos = torch.tensor([g.nodes[i]["pos"] for i in range(n)], dtype=torch.float32)
    return Data(x=x, edge_index=edge_index, edge_attr=dist.reshape(-1, 1), y=y, edge_y=edge_y,
                pos=pos, num_nodes=n)


def make_dataset(rng: np.random.Generator, count: int, nodes: tuple[int, int]) -> list[Data]:
    """``count`` graphs with a node count drawn uniformly from ``[nodes[0], nodes[1]]``."""
    return [to_data(*make_graph(rng, int(rng.integers(nodes[0], nodes[1] + 1))))
            for _ in range(count)]


# -- training and evaluation ---------------------------------------------------------------------
def per_step_loss(outputs: list, batch: Batch) -> torch.Tensor:
    """Mean over the rounds of node + edge cross-entropy (graph_nets' per-step loss)."""
    losses = [F.cross_entropy(x, batch.y) + F.cross_entropy(e, batch.edge_y)
              for x, e, _ in outputs]
    return torch.stack(losses).mean()


@torch.no_grad()
def evaluate(model: EncodeProcessDecode, graphs: list[Data], steps: int,
             batch_size: int = 64) -> dict:
    """Node/edge accuracy and the fraction of graphs whose every node and edge is right."""
    model.eval()
    node_ok = edge_ok = nodes = edges = solved = 0
    preds = []
    for batch in DataLoader(graphs, batch_size=batch_size):
        x, e, _ = model(batch, steps=steps)[-1]
        xn, en = x.argmax(1) == batch.y, e.argmax(1) == batch.edge_y
        node_ok, edge_ok = node_ok + int(xn.sum()), edge_ok + int(en.sum())
        nodes, edges = nodes + xn.numel(), edges + en.numel()
        wrong = torch.zeros(batch.num_graphs, dtype=torch.long)
        wrong.index_add_(0, batch.batch, (~xn).long())
        wrong.index_add_(0, batch.batch[batch.edge_index[0]], (~en).long())
        solved += int((wrong == 0).sum())
        edge_graph = batch.batch[batch.edge_index[0]]
        preds += [(x.argmax(1)[batch.batch == i], e.argmax(1)[edge_graph == i],
                   bool(wrong[i] == 0)) for i in range(batch.num_graphs)]
    model.train()
    return {"node_accuracy": node_ok / max(nodes, 1), "edge_accuracy": edge_ok / max(edges, 1),
            "solved": solved / max(len(graphs), 1), "_preds": preds}


def draw(data: Data, node_pred: torch.Tensor, edge_pred: torch.Tensor, path: Path,
         title: str) -> None:
    """Graph at its positions; predicted path in red, start square, end star."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/shortest_path", help="output directory")
    p.add_argument("--iters", type=int, default=1500, help="training steps (batches)")
    p.add_argument("--time-budget", type=float, default=150.0,
                   help="stop training after this many seconds")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-graphs", type=int, default=2000)
    p.add_argument("--test-graphs", type=int, default=200)
    p.add_argument("--train-nodes", type=int, nargs=2, default=(8, 16), metavar=("MIN", "MAX"))
    p.add_argument("--test-nodes", type=int, nargs=2, default=(16, 32), metavar=("MIN", "MAX"))
    p.add_argument("--steps", type=int, default=10, help="message-passing rounds")
    p.add_argument("--test-steps", type=int, default=None,
                   help="rounds at test time (default 2 x --steps: the core's weights are "
                        "shared, so larger graphs may use more rounds)")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (small graphs gain nothing from more on a shared CPU)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run from a command line (``argv``); returns the metrics."""
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> dict:
    """Train, test on larger graphs, write metrics.json and a PNG; return the metrics."""
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)
    train = make_dataset(rng, args.train_graphs, tuple(args.train_nodes))
    test_same = make_dataset(rng, args.test_graphs, tuple(args.train_nodes))
    test_large = make_dataset(rng, args.test_graphs, tuple(args.test_nodes))
    model = EncodeProcessDecode(node_in=2, edge_in=1, global_in=None, node_out=2, edge_out=2,
                                hidden=args.hidden, steps=args.steps)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    start_iter, elapsed = 0, 0.0
    ckpt = out / "checkpoint.pt"
    if args.resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_iter, elapsed = int(state["iter"]), float(state["seconds"])
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=False)
    batches = iter(())
    t0 = time.perf_counter() - elapsed
    bar = tqdm(range(start_iter, args.iters), desc="train", disable=args.no_progress,
               initial=start_iter, total=args.iters)
    it, loss = start_iter, float("nan")
    for it in bar:
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        loss_t = per_step_loss(model(batch), batch)
        opt.zero_grad()
        loss_t.backward()
        opt.step()
        loss = float(loss_t.detach())
        bar.set_postfix(loss=f"{loss:.3f}")
        if (it + 1) % 200 == 0:
            save_checkpoint(ckpt, model=model.state_dict(), optimizer=opt.state_dict(),
                            iter=it + 1, seconds=time.perf_counter() - t0)
        if time.perf_counter() - t0 > args.time_budget:
            break
    bar.close()
    train_seconds = time.perf_counter() - t0
    done = it + 1 if args.iters > start_iter else start_iter
    save_checkpoint(ckpt, model=model.state_dict(), optimizer=opt.state_dict(), iter=done,
                    seconds=train_seconds)
    test_steps = args.test_steps or 2 * args.steps
    same = evaluate(model, test_same, test_steps)
    large = evaluate(model, test_large, test_steps)
    metrics = {
        "train_iters": done, "train_seconds": round(train_seconds, 1), "final_loss": loss,
        "train_nodes": list(args.train_nodes), "test_nodes": list(args.test_nodes),
        "train_steps": args.steps, "test_steps": test_steps,
        "test_node_accuracy": large["node_accuracy"],
        "test_edge_accuracy": large["edge_accuracy"], "test_solved": large["solved"],
        "same_size_node_accuracy": same["node_accuracy"],
        "same_size_edge_accuracy": same["edge_accuracy"], "same_size_solved": same["solved"],
    }
    solved = [i for i, (_, _, ok) in enumerate(large["_preds"]) if ok]
    k = solved[0] if solved else 0
    node_pred, edge_pred, ok = large["_preds"][k]
    draw(test_large[k], node_pred, edge_pred, out / "solved_graph.png",
         f"{test_large[k].num_nodes} nodes ({'solved' if ok else 'not solved'}); "
         f"trained on {args.train_nodes[0]}-{args.train_nodes[1]}")
    write_json(out / "metrics.json", metrics)
    print(f"test on {args.test_nodes[0]}-{args.test_nodes[1]} nodes: node acc "
          f"{metrics['test_node_accuracy']:.3f}, edge acc {metrics['test_edge_accuracy']:.3f}, "
          f"solved {metrics['test_solved']:.3f} | same size: solved "
          f"{metrics['same_size_solved']:.3f} | {done} iters in {train_seconds:.0f}s -> {out}")
    return metrics


if __name__ == "__main__":
    main()
