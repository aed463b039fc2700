"""One graph-network round, forward + backward: structrnn.GraphNetwork vs PyG's MetaLayer.

Both run the SAME three 2-layer MLPs (hidden 128) on the same batch of random graphs (~30 nodes,
~120 edges each), arranged the same way (edge [e, x_s, x_r, u], node [x, sum e', u], global
[u, mean x', mean e']). Runs are interleaved (ours, peer, peer, ours, ...) after a warm-up and
the median of the repeats is compared; ratio = ours / MetaLayer time (< 1: ours faster).

    structrnn bench graphs [--graphs 256] [--hidden 128] [--iters 5] [--repeats 7]
    python benchmarks/bench_graphs.py ...       # the same, from a source tree

The peer's workload is ../shared/peers/pyg_metalayer.py's (random graphs, made here).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import torch
import torch_geometric
from torch import nn
from torch_geometric.nn import MetaLayer
from torch_geometric.utils import scatter

from structrnn.graphs.models import mlp
from structrnn.graphs.network import GraphNetwork


class PeerEdge(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, src, dst, edge_attr, u, edge_batch):
        return self.net(torch.cat([edge_attr, src, dst, u[edge_batch]], 1))


class PeerNode(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, edge_index, edge_attr, u, batch):
        agg = scatter(edge_attr, edge_index[1], dim=0, dim_size=x.size(0), reduce="sum")
        return self.net(torch.cat([x, agg, u[batch]], 1))


class PeerGlobal(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, edge_index, edge_attr, u, batch):
        g = u.size(0)
        xm = scatter(x, batch, dim=0, dim_size=g, reduce="mean")
        em = scatter(edge_attr, batch[edge_index[0]], dim=0, dim_size=g, reduce="mean")
        return self.net(torch.cat([u, xm, em], 1))


def random_batch(n_graphs: int, d: int, gen: torch.Generator):
    """As ../shared/peers/pyg_metalayer.py: nodes ~U[25, 35], 4 x nodes random edges."""
    n = torch.randint(25, 36, (n_graphs,), generator=gen)
    batch = torch.repeat_interleave(torch.arange(n_graphs), n)
    offset = torch.cumsum(n, 0) - n
    edge_graph = torch.repeat_interleave(torch.arange(n_graphs), 4 * n)
    local = (torch.rand(2, edge_graph.numel(), generator=gen) * n[edge_graph]).long()
    edge_index = local + offset[edge_graph]
    x = torch.randn(batch.numel(), d, generator=gen)
    e = torch.randn(edge_index.size(1), d, generator=gen)
    u = torch.randn(n_graphs, d, generator=gen)
    return x, edge_index, e, u, batch


def main(argv: list[str] | None = None) -> int:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); prints the figures (and
    writes them to ``--json``)."""
    from structrnn.benchmarks.trees import bench_record, machine, write_json

    args = parse_args(argv)
    info = machine(args.threads)
    results = compare(args)
    what = (f"one GN round (edge, node, global MLPs), forward + backward, {args.graphs} graphs, "
            f"hidden {args.hidden}, {args.threads} thread(s)")
    figure = (f"{results['leaf inputs']['ratio']:.2f}x PyG MetaLayer's time "
              f"({results['inputs need grad']['ratio']:.2f}x when the inputs need grad)")
    write_json(args.json, bench_record("graphs", argv, info,
                                       [{"what": what, "figure": figure}],
                                       results={k: {"ratio": v["ratio"]}
                                                for k, v in results.items()}))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graphs", type=int, default=256)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--iters", type=int, default=5, help="rounds per timed repeat")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    return p.parse_args(argv)


def compare(args: argparse.Namespace) -> dict:
    """Time both blocks with leaf inputs and with inputs that need grad; returns per setting
    ``{"ratio", "median_s", "loadavg"}``."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print("command:", shlex.join([sys.executable] + sys.argv))
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, torch_geometric "
          f"{torch_geometric.__version__}, threads {torch.get_num_threads()}")
    d = args.hidden
    x, edge_index, e, u, batch = random_batch(args.graphs, d, torch.Generator().manual_seed(0))
    print(f"batch: {args.graphs} graphs, {x.size(0)} nodes, {edge_index.size(1)} edges, "
          f"hidden {d}")
    edge_net, node_net, global_net = (mlp([4 * d, d, d]), mlp([3 * d, d, d]), mlp([3 * d, d, d]))
    ours = GraphNetwork(edge_net, node_net, global_net)
    peer = MetaLayer(PeerEdge(edge_net), PeerNode(node_net), PeerGlobal(global_net))
    num_graphs = args.graphs

    def run(block, **kw):
        def step():
            for _ in range(args.iters):
                x2, e2, u2 = block(x, edge_index, e, u, batch, **kw)
                (x2.square().mean() + e2.square().mean() + u2.square().mean()).backward()
                for t in (x, e, u):
                    t.grad = None
        return step

    with torch.no_grad():  # same function, checked once
        a, b = ours(x, edge_index, e, u, batch), peer(x, edge_index, e, u, batch)
        err = max((s - t).abs().max().item() for s, t in zip(a, b))
    print(f"max |ours - metalayer| on this batch (float32): {err:.2e}")
    results = {}
    for setting in ("leaf inputs", "inputs need grad"):
        if setting == "inputs need grad":  # as inside a deeper model (encoder, earlier round)
            for t in (x, e, u):
                t.requires_grad_(True)
        print(f"-- {setting} (x, edge_attr, u requires_grad={x.requires_grad})")
        impls = {"structrnn": run(ours, num_graphs=num_graphs), "metalayer": run(peer)}
        results[setting] = measure(impls, args)
    return results


def measure(impls: dict, args) -> dict:
    for fn in impls.values():  # warm-up
        fn()
    times = {k: [] for k in impls}
    loads = []
    for r in range(args.repeats):
        order = list(impls) if r % 2 == 0 else list(impls)[::-1]
        for name in order:
            t0 = time.perf_counter()
            impls[name]()
            times[name].append((time.perf_counter() - t0) / args.iters)
        loads.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["structrnn"] / med["metalayer"]
    for k, v in times.items():
        print(f"{k:10s} median {1e3 * med[k]:7.1f} ms/round  "
              f"({args.graphs / med[k]:7.0f} graphs/s)  all: "
              + " ".join(f"{1e3 * t:.1f}" for t in v))
    print(f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"ratio structrnn / MetaLayer = {ratio:.3f} (target <= 1.0)")
    return {"ratio": ratio, "median_s": med, "loadavg": loads}


if __name__ == "__main__":
    sys.exit(main())
