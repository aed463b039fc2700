"""Child-Sum Tree-LSTM training throughput on SST: structrnn vs a per-node implementation vs DGL.

Protocol (the same as the peer scripts of ``--peers``, so the figures compare): the first N
trees of SST train.txt, vocabulary of all of train, a random frozen 300-d embedding, x = 0 on
internal nodes, hidden 150, a 5-way classifier on every node, summed cross-entropy, backward,
Adagrad (lr 0.05). Per batch size: a fresh model (seed 0), one warm-up batch, then --repeats passes
over the N trees; the median pass gives trees/s. Collation is inside the timed loop.

Implementations, each in its own subprocess (so peak RSS is its own), interleaved round by round:
  structrnn  level-batched: structrnn's Tree-LSTM cell on tree batches (``batch_trees`` and the
             schedule, as ``structrnn train sst`` collates), the words alone projected
             (``x_rows``), the whole pass one autograd node (structrnn.levels.kernels.child_sum)
  op-by-op   the same, with fused=False: one batched LSTMCell.combine per level, autograd
             recording every operation (what a user-defined cell gets)
  compiled   op-by-op with ``compile=True``: the cell step through torch.compile (only with
             --compiled; the first batches pay the compilation, kept out of the timing)
  per-node   treelstm.pytorch's node_forward: plain ops per node on the same weights, Python
             recursion over children, one tree at a time, one backward per tree
  dgl        PEERS/dgl_treelstm.py in its own venv (--dgl-python), when both are present

    structrnn bench trees --trees 1000 --batch 25,256 --rounds 2 --threads 1,2 --json out.json
    python benchmarks/bench_trees.py ...        # the same, from a source tree

``--data`` defaults to ``$STRUCTRNN_DATA/sst`` (else ``../shared/datasets/sst`` when present),
``--peers`` to ``peers/`` beside ``$STRUCTRNN_DATA`` (else ``../shared/peers`` when present).
Every run prints the machine, the threads and the 1-minute load before and after; a load above
0.5 before the start means something else shared the CPU, and the JSON says so (``quiet``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from structrnn._env import load_1m, machine
from structrnn.benchmarks import default_data, default_peers, package_pythonpath

DEFAULT_DGL_PYTHON = Path.home() / ".cache" / "peer-venv-dgl" / "bin" / "python"
IMPLS = ("structrnn", "op-by-op", "per-node")
QUIET_LOAD = 0.5  # a 1-minute load above this before a run: the figures are upper bounds


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line(info: dict) -> str:
    return (f"machine: {info['platform']}, {info['cpu']}, {info['cores']} CPUs, python "
            f"{info['python']}, torch {info['torch']}, {info['threads']} thread(s), "
            f"load {info['load_1m']} (1 min)")


def bench_record(name: str, argv: list[str] | None, info: dict, summary: list[dict],
                 **extra) -> dict:
    """What ``--json`` writes (what ``benchmarks/figures.py`` renders): the benchmark, its
    command (``argv``: the arguments its ``main`` parsed, None for ``sys.argv[1:]``), the
    machine, the 1-minute load before (``info``) and now, whether the machine was quiet,
    ``summary`` rows (``what``, ``figure``) and anything in ``extra``. No path of this machine
    goes in: the command is spelled from the benchmark's module, and an absolute path anywhere
    becomes its last two parts (``datasets/sst``), so the file can be committed."""
    load_after = load_1m()
    args = sys.argv[1:] if argv is None else list(argv)
    record = {"benchmark": name,
              "command": shlex.join(["python", f"structrnn/benchmarks/{name}.py",
                                     *portable(args)]),
              "machine": info,
              "load_before": info["load_1m"], "load_after": load_after,
              "quiet": info["load_1m"] <= QUIET_LOAD, **extra, "summary": summary}
    return portable(record)


def portable(value):
    """``value`` (JSON-like) with every absolute path among its strings cut to its last two
    parts."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return "/".join(Path(value).parts[-2:])
    return value


def write_json(path: str | None, record: dict) -> None:
    """``record`` to ``path`` (atomically), when a path is given."""
    if path:
        from structrnn._io import write_json as write

        write(path, record)
        print(f"wrote {path}")


# ----------------------------------------------------------------------------- one implementation
def load(args):
    import torch

    from structrnn.trees.ptb import read_ptb_file
    from structrnn.trees.vocab import Vocab

    trees = read_ptb_file(Path(args.data) / "train.txt").trees
    vocab = Vocab.build(trees)  # all of train, <unk> first
    trees = trees[: args.trees]
    data = [t.to_data(vocab) for t in trees]
    torch.manual_seed(args.seed)
    return trees, vocab, data


def make_parts(vocab_size: int, hidden: int):
    """Embedding (frozen), the shared cell, the per-node classifier."""
    import torch

    import structrnn as sr

    embedding = torch.nn.Embedding(vocab_size, 300)
    embedding.weight.requires_grad_(False)
    cell = sr.LSTMCell(300, hidden)
    classifier = torch.nn.Linear(hidden, 5)
    return embedding, cell, classifier


def structrnn_step(parts, opt, batch, fused=True, compile=False):
    import torch.nn.functional as F

    from structrnn.levels.run import run_up

    embedding, cell, classifier = parts
    rows = (batch.x >= 0).nonzero().squeeze(1)  # the words: x = 0 on every other node
    h = run_up(cell, embedding(batch.x[rows]), batch.edge_index, schedule=batch.schedule,
               num_nodes=batch.num_nodes, fused=fused, x_rows=rows, compile=compile)
    loss = F.cross_entropy(classifier(h), batch.y, reduction="sum")
    opt.zero_grad()
    loss.backward()
    opt.step()


def per_node_tree(parts, data):
    """One tree, one node at a time, recursion over the children: treelstm.pytorch's
    node_forward written with plain ops on the shared cell's weights (gate order i, f, g, o)."""
    import torch
    import torch.nn.functional as F

    embedding, cell, classifier = parts
    H = cell.hidden_size
    w_ih, w_hh, b_ih, b_hh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    iog = torch.cat([torch.arange(0, H), torch.arange(2 * H, 4 * H)])
    w_iog, b_iog = w_hh[iog], b_hh[iog]
    w_f, b_f = w_hh[H:2 * H], b_hh[H:2 * H]
    children: list[list[int]] = [[] for _ in range(data.num_nodes)]
    for c, p in data.edge_index.t().tolist():
        children[p].append(c)
    x_all = embedding(data.x.clamp(min=0)) * (data.x >= 0).unsqueeze(1)
    states: dict[int, tuple] = {}

    def visit(v):
        for c in children[v]:
            visit(c)
        if children[v]:
            child_h = torch.cat([states[c][0] for c in children[v]])
            child_c = torch.cat([states[c][1] for c in children[v]])
        else:
            child_h = child_c = x_all.new_zeros(1, H)
        gx = F.linear(x_all[v:v + 1], w_ih, b_ih)
        gi, gf, gg, go = gx.split(H, dim=1)
        i, g, o = (torch.cat([gi, gg, go], 1)
                   + F.linear(child_h.sum(0, keepdim=True), w_iog, b_iog)).split(H, dim=1)
        f = torch.sigmoid(F.linear(child_h, w_f, b_f) + gf)
        c = torch.sigmoid(i) * torch.tanh(g) + (f * child_c).sum(0, keepdim=True)
        states[v] = (torch.sigmoid(o) * torch.tanh(c), c)

    visit(0)
    h = torch.cat([states[v][0] for v in range(data.num_nodes)])
    return classifier(h)


def per_node_step(parts, opt, chunk):
    import torch.nn.functional as F

    opt.zero_grad()
    for data in chunk:
        F.cross_entropy(per_node_tree(parts, data), data.y, reduction="sum").backward()
    opt.step()


def run_one(args) -> None:
    import torch

    from structrnn.trees.convert import batch_trees
    from structrnn.trees.loader import TreeLoader

    torch.set_num_threads(args.threads)
    sys.setrecursionlimit(10_000)
    trees, vocab, data = load(args)
    base_rss = rss_mb()
    n_nodes = sum(d.num_nodes for d in data)
    bs = args.batch_size
    torch.manual_seed(args.seed)
    parts = make_parts(len(vocab), args.hidden)
    params = [p for m in parts for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adagrad(params, lr=0.05)
    chunks = [data[i:i + bs] for i in range(0, len(data), bs)]
    # the collation structrnn train sst uses: batch_trees, then the schedule
    collate = TreeLoader([], collate_fn=batch_trees).collate_fn
    if args.impl == "per-node":
        def step(c):
            per_node_step(parts, opt, c)
    else:
        def step(c):
            structrnn_step(parts, opt, collate(c), fused=args.impl == "structrnn",
                           compile=args.impl == "compiled")
    warm = chunks if args.impl == "compiled" else chunks[:1]  # compiling for the level sizes
    for c in warm:
        step(c)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for c in chunks:
            step(c)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    biggest = max(sum(d.num_nodes for d in c) for c in chunks)
    print(json.dumps({
        "impl": args.impl, "batch": bs, "trees_per_s": round(len(data) / med, 1),
        "nodes_per_s": round(n_nodes / med, 1), "times_s": [round(t, 3) for t in times],
        "peak_rss_mb": round(rss_mb() - base_rss, 2), "largest_batch_nodes": biggest,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "loadavg_1m": load_1m()}), flush=True)


# ----------------------------------------------------------------------------- driver
def run_child(cmd: list[str]) -> list[dict]:
    # the child imports the same structrnn as this process, installed or a source tree
    env = dict(os.environ, PYTHONPATH=package_pythonpath())
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"failed: {shlex.join(cmd)}\n{out.stderr[-2000:]}", file=sys.stderr)
        return []
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def dgl_script(args: argparse.Namespace) -> Path | None:
    """The DGL peer script when it and its venv's python are present; else a line saying why
    the peer is skipped, and None."""
    script = Path(args.peers) / "dgl_treelstm.py" if args.peers else None
    if script is None or not script.is_file():
        print(f"dgl: skipped (no peer script {script or 'dgl_treelstm.py'}; pass --peers)")
        return None
    if not Path(args.dgl_python).is_file():
        print(f"dgl: skipped (no {args.dgl_python}; run {script.parent / 'setup_dgl.sh'})")
        return None
    return script


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    data, peers = default_data(), default_peers()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(data / "sst") if data else None,
                   help="folder with SST train.txt")
    p.add_argument("--peers", default=str(peers) if peers else None,
                   help="folder of the peer scripts (dgl_treelstm.py)")
    p.add_argument("--trees", type=int, default=1000)
    p.add_argument("--batch", default="25,256")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all peers")
    p.add_argument("--threads", default="2", help="torch threads; a list runs each: 1,2")
    p.add_argument("--hidden", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-node-trees", type=int, default=None,
                   help="trees for the slow per-node peer (default: --trees)")
    p.add_argument("--no-per-node", action="store_true", help="leave out the per-node peer")
    p.add_argument("--compiled", action="store_true",
                   help="also time the op-by-op path with the cell step under torch.compile")
    p.add_argument("--dgl-python", default=str(DEFAULT_DGL_PYTHON),
                   help="python of a venv with dgl (PEERS/setup_dgl.sh makes one)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write the machine, the load, every record and the summary as JSON")
    p.add_argument("--impl", choices=(*IMPLS, "compiled"), help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def no_sst(data: str | None) -> bool:
    """True (and says so on stderr) when ``data`` holds no SST train.txt."""
    if data and (Path(data) / "train.txt").is_file():
        return False
    print(f"no SST train.txt in {data or '(no --data)'} (pass --data or set $STRUCTRNN_DATA)",
          file=sys.stderr)
    return True


def announce(threads: str | int) -> dict:
    """Print the command line and the machine (threads, load); return :func:`machine`'s."""
    info = machine(threads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(machine_line(info))
    return info


def main(argv: list[str] | None = None) -> int:
    """Run from a command line (``argv``, default ``sys.argv[1:]``); 0 done, 2 no data."""
    args = parse_args(argv)
    if args.impl:
        args.threads = int(args.threads)
        run_one(args)
        return 0
    if no_sst(args.data):
        return 2
    info = announce(args.threads)
    results = measure_all(args)
    sizes = [int(b) for b in args.batch.split(",")]
    summary = summarise(results, sizes, [int(t) for t in args.threads.split(",")])
    record = bench_record("trees", argv, info, summary, results=results)
    print(f"load (1 min): {info['load_1m']} before, {record['load_after']} after"
          + ("" if record["quiet"] else " -- not a quiet machine: the figures are upper bounds"))
    write_json(args.json, record)
    return 0


def measure_all(args: argparse.Namespace) -> list[dict]:
    """Every implementation, batch size and thread count, interleaved round by round."""
    dgl = dgl_script(args)
    impls = [i for i in IMPLS if not (args.no_per_node and i == "per-node")]
    if args.compiled:
        impls.insert(2, "compiled")
    results: list[dict] = []
    for rnd in range(1, args.rounds + 1):
        for threads in args.threads.split(","):
            common = ["--data", args.data, "--threads", threads, "--hidden", str(args.hidden),
                      "--seed", str(args.seed), "--repeats", str(args.repeats)]
            for bs in [int(b) for b in args.batch.split(",")]:
                for impl in impls:
                    n = args.trees if impl != "per-node" else (args.per_node_trees or args.trees)
                    cmd = [sys.executable, "-m", "structrnn.benchmarks.trees", "--impl", impl,
                           "--batch-size", str(bs), "--trees", str(n), *common]
                    for rec in run_child(cmd):
                        results.append(rec | {"round": rnd})
                        print(json.dumps(results[-1]), flush=True)
            if dgl is not None:
                cmd = [args.dgl_python, str(dgl), "--trees", str(args.trees),
                       "--batch", args.batch, *common]
                for rec in run_child(cmd):
                    results.append(rec | {"round": rnd, "impl": "dgl"})
                    print(json.dumps(results[-1]), flush=True)
    return results


def summarise(results: list[dict], sizes: list[int], threads: list[int]) -> list[dict]:
    """The median over rounds per implementation, batch size and thread count, the ratios,
    printed as a table; one summary row per thread count (for the README)."""
    def med(impl, bs, t, key="trees_per_s"):
        vals = [r[key] for r in results
                if r["impl"] == impl and r["batch"] == bs and r["threads"] == t]
        return statistics.median(vals) if vals else float("nan")

    print("\nmedian over rounds, trees/s (forward + backward + Adagrad step):")
    print(f"{'threads':>7} {'batch':>6} {'structrnn':>10} {'op-by-op':>9} {'compiled':>9} "
          f"{'per-node':>9} {'dgl':>8} {'vs dgl':>7} {'vs op-by-op':>12} {'vs per-node':>12}")
    rows = []
    for t in threads:
        parts = []
        for bs in sizes:
            ours, ops = med("structrnn", bs, t), med("op-by-op", bs, t)
            comp, naive, dgl = med("compiled", bs, t), med("per-node", bs, t), med("dgl", bs, t)
            print(f"{t:>7} {bs:>6} {ours:>10.1f} {ops:>9.1f} {comp:>9.1f} {naive:>9.1f} "
                  f"{dgl:>8.1f} {ours / dgl:>6.2f}x {ours / ops:>11.2f}x {ours / naive:>11.1f}x")
            text = (f"batch {bs}: {ours:,.0f} trees/s = {ours / dgl:.2f}x DGL 2.1, "
                    f"{ours / ops:.2f}x our op-by-op path")
            if comp == comp:  # not NaN: the compiled path ran
                text += f" ({ours / comp:.2f}x the compiled op-by-op path)"
            if naive == naive:
                text += f", {ours / naive:.1f}x per-node"
            parts.append(text)
        rows.append({"what": f"Child-Sum Tree-LSTM training on SST ({t} thread(s))",
                     "figure": "; ".join(parts)})
    if len(sizes) > 1:
        # peak RSS grows with the largest batch; the slope between two batch sizes removes the
        # fixed cost (libraries, allocator arenas, optimizer state)
        lo, hi, t = min(sizes), max(sizes), threads[0]
        d_rss = med("structrnn", hi, t, "peak_rss_mb") - med("structrnn", lo, t, "peak_rss_mb")
        d_nodes = (med("structrnn", hi, t, "largest_batch_nodes")
                   - med("structrnn", lo, t, "largest_batch_nodes"))
        print(f"structrnn peak RSS: {1000 * d_rss / d_nodes:.2f} MB per 1,000 nodes of a batch "
              f"(slope between batch {lo} and {hi})")
    return rows


if __name__ == "__main__":
    sys.exit(main())
