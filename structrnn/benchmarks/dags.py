"""DAG recurrence, forward + backward: structrnn.DAGRecurrent against a per-node topological loop.

Workload: a batch of random boolean circuits (:mod:`structrnn.datasets.circuits`, ``--depth``
gate layers of 2-5 gates, 2-6 inputs; nodes with one or two predecessors and any number of
successors), the 6 node features as input, one cell (Child-Sum ``LSTMCell`` or ``GRUCell``,
``--hidden``) run forward over the DAG, the loss the sum of every node's state, backward.
Three contenders on the same weights, each finding its own order on every call:

  structrnn  DAGRecurrent: the levels found by vectorised propagation, one batched cell call per
             level (the LSTM through its fused kernel: the pass is one autograd node)
  op-by-op   the same levels with fused=False: autograd records every operation of each level
             (LSTM only: a GRU has no fused kernel, so it always runs this way)
  per-node   a Python loop in topological order (Kahn's algorithm over the batch), one
             ``cell.combine`` per node on its predecessors' states, the input matmul done once

Rounds are interleaved after a warm-up (the order alternates), the median of the repeats is the
figure; the states of the three are compared once before timing.

    structrnn bench dags [--graphs 64] [--depth 16] [--hidden 64] [--cell lstm] [--repeats 7]
    python benchmarks/bench_dags.py ...         # the same, from a source tree
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch_geometric.data import Batch

from structrnn.cells import GRUCell, LSTMCell, state_tuple
from structrnn.datasets.circuits import NUM_FEATURES, make_circuits
from structrnn.graphs.dag import DAGRecurrent


def per_node(cell, x: Tensor, edge_index: Tensor) -> tuple[Tensor, ...]:
    """Every node in topological order, one ``combine`` call each (Kahn's algorithm)."""
    n = x.size(0)
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for u, v in edge_index.t().tolist():
        preds[v].append(u)
        succs[u].append(v)
    waiting = [len(p) for p in preds]
    ready = [v for v in range(n) if not waiting[v]]
    xp = cell.project_input(x)
    states: list = [None] * n
    while ready:
        v = ready.pop()
        prev, index = None, None
        if preds[v]:
            parts = zip(*(states[u] for u in preds[v]), strict=True)
            prev = tuple(torch.cat(p) for p in parts)
            prev = prev if len(prev) > 1 else prev[0]
            index = torch.zeros(len(preds[v]), dtype=torch.long)
        states[v] = state_tuple(cell.combine(xp[v:v + 1], prev, index, 1))
        for w in succs[v]:
            waiting[w] -= 1
            if not waiting[w]:
                ready.append(w)
    return tuple(torch.cat(p) for p in zip(*states, strict=True))


def main(argv: list[str] | None = None) -> int:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); prints the figures (and
    writes them to ``--json``)."""
    from structrnn.benchmarks.trees import bench_record, machine, write_json

    args = parse_args(argv)
    info = machine(args.threads)
    results = compare(args)
    base = results["per-node"]["median_s"]
    what = (f"{args.cell.upper()} cell over DAG levels (sr.DAGRecurrent), forward + backward, "
            f"{args.graphs} circuits of depth {args.depth}, hidden {args.hidden}, "
            f"{args.threads} thread(s)")
    figure = ", ".join(f"{name} {results[name]['nodes_per_s']:,.0f} nodes/s = "
                       f"{base / results[name]['median_s']:.0f}x a per-node topological loop"
                       for name in results if name not in ("per-node", "loadavg"))
    write_json(args.json, bench_record("dags", argv, info, [{"what": what, "figure": figure}],
                                       results={k: v for k, v in results.items()
                                                if k != "loadavg"}))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graphs", type=int, default=64, help="circuits in the batch")
    p.add_argument("--depth", type=int, default=16, help="gate layers of each circuit")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="FILE", help="write the figures as JSON")
    return p.parse_args(argv)


def compare(args: argparse.Namespace) -> dict:
    """Time the contenders; returns ``{name: {"median_s", "nodes_per_s"}}`` and the loads."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}")
    batch = Batch.from_data_list(make_circuits(args.seed, args.graphs, args.depth, "test"))
    x, edge_index, n = batch.x, batch.edge_index, batch.num_nodes
    cell = {"lstm": LSTMCell, "gru": GRUCell}[args.cell](NUM_FEATURES, args.hidden)
    print(f"batch: {args.graphs} circuits of depth {args.depth}, {n} nodes, "
          f"{edge_index.size(1)} edges, {args.depth + 1} levels; {args.cell} cell, hidden "
          f"{args.hidden}, float32, forward + backward")
    contenders: dict[str, Callable[[], tuple[Tensor, ...]]] = {
        "structrnn": lambda: state_tuple(DAGRecurrent(cell)(x, edge_index, return_state=True)),
        "op-by-op": lambda: state_tuple(DAGRecurrent(cell, fused=False)(x, edge_index,
                                                                        return_state=True)),
        "per-node": lambda: per_node(cell, x, edge_index),
    }
    if args.cell != "lstm":  # no fused kernel: "structrnn" already runs op by op
        del contenders["op-by-op"]
    with torch.no_grad():  # the same function, checked once
        ref = contenders["per-node"]()
        for name in [k for k in contenders if k != "per-node"]:
            err = max(float((a - b).abs().max()) for a, b in zip(contenders[name](), ref,
                                                                  strict=True))
            print(f"max |{name} - per-node| (float32): {err:.2e}")
    return measure(contenders, cell, n, args)


def measure(contenders: dict, cell, n: int, args: argparse.Namespace) -> dict:
    """Interleaved timings of forward + backward; prints and returns the medians."""
    def once(fn) -> float:
        began = time.perf_counter()
        sum(t.sum() for t in fn()).backward()
        cell.zero_grad(set_to_none=True)
        return time.perf_counter() - began

    names = list(contenders)
    for _ in range(args.warmup):
        for name in names:
            once(contenders[name])
    seconds: dict[str, list[float]] = {name: [] for name in names}
    loads = []
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds[name].append(once(contenders[name]))
        loads.append(os.getloadavg()[0])
    results = {}
    for name in names:
        med = statistics.median(seconds[name])
        results[name] = {"median_s": med, "nodes_per_s": n / med}
        print(f"{name:10s} median {1e3 * med:8.1f} ms  ({n / med:9.0f} nodes/s)  all: "
              + " ".join(f"{1e3 * t:.1f}" for t in seconds[name]))
    base = results["per-node"]["median_s"]
    for name in [k for k in names if k != "per-node"]:
        print(f"speed-up of {name} over per-node: {base / results[name]['median_s']:.1f}x")
    print(f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f} "
          f"on {os.cpu_count()} CPUs")
    results["loadavg"] = loads
    return results


if __name__ == "__main__":
    sys.exit(main())
