"""Where ``structrnn train sst`` spends its time: the phases of a run, in seconds and as a share.

Each run is ``structrnn train sst --data DIR --epochs E --threads T --no-progress`` in a fresh
process (so the imports are real), timed from outside and, inside, phase by phase:

  start-up    the interpreter, until this module's first line
  import      torch, PyTorch Geometric and the task's modules
  data        the three splits (parsed, or read from the processed cache)
  setup       the model, the optimizer, the loaders, the run folder
  epochs      the training epochs (``metrics.json["epoch_seconds"]``)
  validation  per epoch: the dev evaluation and the checkpoints
  evaluation  the selected model on dev and test, metrics.json
  pictures    learning curves, confusion matrix, an example tree (matplotlib)
  exit        the interpreter's shutdown once the run is done (its last garbage collection
              walks every object torch and PyG created)

with trees/s of the first epoch against the kernel benchmark's figure on the same machine
(``structrnn.benchmarks.trees``, structrnn, batch 25, the same threads) and the peak memory
(the largest resident set of the run's process). The processed-data cache lives in a fresh
folder for this benchmark: the first run parses the treebank (a cold start), the next ones
read the cache (warm), unless the data folder is writable and already holds one.

    python -m structrnn.benchmarks.sst --data DIR --threads 2 --runs 2 --json sst.json
    python benchmarks/bench_sst.py ...                 # the same, from a source tree
    python -m structrnn.benchmarks.sst --data DIR -- --max-trees 500   # flags for train sst

Every run prints the machine, the threads and the 1-minute load; a load above 0.5 before the
start means the figures are upper bounds (``quiet: false`` in the JSON).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # this module's first line: the end of the interpreter's start-up

import argparse  # noqa: E402 - the clock above starts before every import
import json  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

PHASES = ("start-up", "import", "data", "setup", "epochs", "validation", "evaluation",
          "pictures", "exit", "other")


# ----------------------------------------------------------------------------- inside a run
def run_child(args: argparse.Namespace, train_args: list[str]) -> None:
    """One ``train sst`` run with its phases timed; the record goes to ``args.record``."""
    import resource

    marks: dict[str, float] = {"main": time.perf_counter()}
    import torch  # noqa: F401 - the import phase: what the command imports before it works
    import torch_geometric  # noqa: F401

    from structrnn import cli
    from structrnn.tasks.sentiment import task

    marks["imported"] = time.perf_counter()
    spans: dict[str, float] = {}

    def timed(name: str, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spans[name] = spans.get(name, 0.0) + time.perf_counter() - start
                marks.setdefault(f"{name}_start", start)
        return wrapper

    import dataclasses

    from structrnn.training import task as protocol
    from structrnn.training.run_folder import RunFolder

    load_splits = timed("load_splits", task.load_splits)
    sizes: list[int] = []

    def counting(*a, **kw):
        splits = load_splits(*a, **kw)
        sizes.append(len(splits[0]))  # the training trees
        return splits

    task.load_splits = counting
    protocol.fit = timed("fit", protocol.fit)
    RunFolder.picture = timed("draw_pictures", RunFolder.picture)
    task.TASK = dataclasses.replace(task.TASK, finish=timed("finish", task.TASK.finish))
    argv = ["train", "sst", "--data", args.data, "--epochs", str(args.epochs), "--threads",
            str(args.threads), "--no-progress", "--out", args.out, "--overwrite", *train_args]
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the run's summary: not ours to print
        code = cli.main(argv)
    end = time.perf_counter()
    if code:
        raise SystemExit(f"structrnn {shlex.join(argv)} exited with {code}")
    metrics = json.loads((Path(args.out) / "metrics.json").read_text())
    epochs = sum(metrics["epoch_seconds"])
    data_end = marks["load_splits_start"] + spans["load_splits"]
    phases = {"import": marks["imported"] - marks["main"], "data": spans["load_splits"],
              "setup": marks["fit_start"] - data_end, "epochs": epochs,
              "validation": spans["fit"] - epochs,
              "evaluation": spans["finish"],
              "pictures": spans.get("draw_pictures", 0.0)}
    inside = end - _T0
    phases["other"] = inside - (marks["main"] - _T0) - sum(phases.values())
    config = json.loads((Path(args.out) / "config.json").read_text())
    train_trees = sizes[0]
    record = {"phases": phases, "inside_s": inside, "main_s": marks["main"] - _T0,
              "epoch_seconds": metrics["epoch_seconds"], "train_trees": train_trees,
              "trees_per_s": train_trees / metrics["epoch_seconds"][0],
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "test_root": metrics.get("test_root"), "config": config,
              "finished_at": time.time()}  # the wall clock at the end: the exit's cost
    Path(args.record).write_text(json.dumps(record))


# ----------------------------------------------------------------------------- the driver
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    from structrnn.benchmarks import default_data

    data = default_data()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(data / "sst") if data else None,
                   help="folder with SST train.txt, dev.txt, test.txt")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=2,
                   help="runs in fresh processes: the first with an empty cache, then warm")
    p.add_argument("--kernel-trees", type=int, default=1000,
                   help="trees of the kernel benchmark run beside (0: none)")
    p.add_argument("--json", default=None, metavar="FILE", help="write everything as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--record", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:  # what follows goes to structrnn train sst
        cut = argv.index("--")
        return p.parse_args(argv[:cut]), argv[cut + 1:]
    return p.parse_args(argv), []


def main(argv: list[str] | None = None) -> int:
    """Run from a command line; 0 done, 2 no data."""
    args, train_args = parse_args(argv)
    if args.child:
        run_child(args, train_args)
        return 0
    from structrnn.benchmarks.trees import announce, bench_record, no_sst, write_json

    if no_sst(args.data):
        return 2
    info = announce(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-sst-") as tmp:
        runs = [one_run(args, train_args, Path(tmp), i) for i in range(args.runs)]
    kernel = kernel_figure(args) if args.kernel_trees else None
    report(runs, kernel)
    record = bench_record("sst", argv, info, summary(runs, kernel, args),
                          train_args=train_args, runs=runs, kernel=kernel)
    print(f"load (1 min): {info['load_1m']} before, {record['load_after']} after"
          + ("" if record["quiet"] else " -- not a quiet machine: the figures are upper bounds"))
    write_json(args.json, record)
    return 0


def one_run(args: argparse.Namespace, train_args: list[str], tmp: Path, i: int) -> dict:
    """One ``train sst`` in a fresh process, with the benchmark's own cache folder."""
    from structrnn.benchmarks import package_pythonpath

    record = tmp / f"run{i}.json"
    cmd = [sys.executable, "-m", "structrnn.benchmarks.sst", "--child", "--data", args.data,
           "--epochs", str(args.epochs), "--threads", str(args.threads), "--out",
           str(tmp / f"run{i}"), "--record", str(record), "--", *train_args]
    env = dict(os.environ, PYTHONPATH=package_pythonpath(), STRUCTRNN_CACHE=str(tmp / "cache"))
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, ended = time.perf_counter() - start, time.time()
    if done.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{done.stderr[-3000:]}")
    rec = json.loads(record.read_text())
    rec["wall_s"] = wall
    exit_s = ended - rec.pop("finished_at")  # the interpreter's shutdown after the work
    spawn_s = wall - exit_s - rec["inside_s"]  # its start, until this module's first line
    rec["phases"] = {"start-up": spawn_s + rec["main_s"], **rec["phases"], "exit": exit_s}
    rec["phases"]["other"] = wall - sum(v for k, v in rec["phases"].items() if k != "other")
    rec["cache"] = "cold" if i == 0 else "warm"
    print(json.dumps({k: rec[k] for k in ("cache", "wall_s", "trees_per_s", "peak_rss_mb")}),
          flush=True)
    return rec


def kernel_figure(args: argparse.Namespace) -> dict | None:
    """The kernel benchmark's structrnn figure (batch 25) with the same threads, now."""
    from structrnn.benchmarks.trees import run_child as run_trees_child

    cmd = [sys.executable, "-m", "structrnn.benchmarks.trees", "--impl", "structrnn",
           "--batch-size", "25", "--trees", str(args.kernel_trees), "--data", args.data,
           "--threads", str(args.threads), "--repeats", "3"]
    records = run_trees_child(cmd)
    return records[0] if records else None


def report(runs: list[dict], kernel: dict | None) -> None:
    print(f"\n{'phase':<11}" + "".join(f"{r['cache'] + ' run ' + str(i + 1):>22}"
                                       for i, r in enumerate(runs)))
    for phase in PHASES:
        cells = []
        for r in runs:
            s = r["phases"][phase]
            cells.append(f"{s:9.2f} s {100 * s / r['wall_s']:6.1f} %  ")
        print(f"{phase:<11}" + "".join(f"{c:>22}" for c in cells))
    print(f"{'total':<11}" + "".join(f"{r['wall_s']:9.2f} s {100.0:6.1f} %  " for r in runs))
    for i, r in enumerate(runs):
        print(f"run {i + 1} ({r['cache']}): first epoch {r['epoch_seconds'][0]:.2f} s = "
              f"{r['trees_per_s']:,.0f} trees/s over {r['train_trees']} trees; peak RSS "
              f"{r['peak_rss_mb']:,.0f} MB; test root {r['test_root']}")
    if kernel:
        best = statistics.median(r["trees_per_s"] for r in runs)
        print(f"kernel benchmark (Child-Sum, frozen embedding, batch 25, same threads): "
              f"{kernel['trees_per_s']:,.0f} trees/s; train sst reaches "
              f"{best / kernel['trees_per_s']:.2f}x of it")


def summary(runs: list[dict], kernel: dict | None, args: argparse.Namespace) -> list[dict]:
    """Rows for the README's figures table."""
    rows = []
    for r in runs:
        ph = r["phases"]
        shares = ", ".join(f"{k} {ph[k]:.1f} s" for k in PHASES if ph[k] >= 0.05)
        rows.append({"what": f"structrnn train sst --epochs {args.epochs}, {r['cache']} cache "
                             f"({args.threads} thread(s))",
                     "figure": f"{r['wall_s']:.1f} s end to end ({shares}); epoch "
                               f"{r['epoch_seconds'][0]:.2f} s = {r['trees_per_s']:,.0f} trees/s"
                               + (f" ({r['trees_per_s'] / kernel['trees_per_s']:.2f}x the "
                                  f"kernel benchmark's {kernel['trees_per_s']:,.0f})"
                                  if kernel else "")
                               + f"; peak RSS {r['peak_rss_mb']:,.0f} MB"})
    return rows


if __name__ == "__main__":
    sys.exit(main())
