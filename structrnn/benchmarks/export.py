"""A molecule run's ONNX file against eager PyTorch: the file's size, and the time per batch of
molecules of the same computation (every member with its readout, target scaling and ensemble
mean: :class:`~structrnn.tasks.molecules.deployed.DeployedMolecules`) in eager PyTorch and in
onnxruntime, timed side by side in one process, on the same inputs, with the same number of
threads.

The run is ``--run`` (a molecule run folder or exported ``.pt`` file), else a small built-in
TPSA run trained first in a temporary folder (``--model``, default the task's default body
``gn-gru``; ``--hidden``, ``--steps``, ``--train-molecules``, ``--epochs``). The batch is the
first ``--molecules`` of RDKit's shipped NCI molecules, featurised once (featurisation is
Python's in both cases and is not timed). Each round times one eager call, then one onnxruntime
call; the figures are the median and the best of ``--rounds`` rounds after one warm-up call
each. The outputs are compared too (the largest absolute difference is printed).

    structrnn bench export [--run RUN] [--molecules 64] [--threads 1] [--rounds 50]
    python benchmarks/bench_export.py ...      # the same, from a source tree
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from structrnn.benchmarks.predict import builtin_smiles, machine

__all__ = ["main"]


def train_run(args: argparse.Namespace, folder: Path) -> Path:
    """A built-in TPSA run (one seed) of ``args.model`` in ``folder``."""
    from structrnn.tasks.molecules import task
    from structrnn.training.task import train

    out = folder / "molecules"
    train(task.TASK, ["--dataset", "builtin", "--max-molecules", str(args.train_molecules),
                      "--epochs", str(args.epochs), "--seeds", "0", "--model", args.model,
                      "--hidden", str(args.hidden), "--steps", str(args.steps),
                      "--no-progress", "--out", str(out)])
    return out


def side_by_side(eager, session, inputs: tuple, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per call of ``eager(*inputs)`` and of the onnxruntime ``session``, alternating
    call by call (a change of the machine's load hits both alike)."""
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
    with torch.no_grad():
        eager(*inputs)
        session.run(None, feeds)
        t_eager, t_ort = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            eager(*inputs)
            t_eager.append(time.perf_counter() - start)
            start = time.perf_counter()
            session.run(None, feeds)
            t_ort.append(time.perf_counter() - start)
    return t_eager, t_ort


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with ``argv`` (default ``sys.argv[1:]``); prints and returns the
    figures."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a molecule run folder or model file (default: "
                                               "train one first)")
    p.add_argument("--molecules", type=int, default=64, help="molecules per batch")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--threads", type=int, default=1,
                   help="torch's and onnxruntime's intra-op threads")
    g = p.add_argument_group("the run trained when none is given")
    g.add_argument("--model", default="gn-gru")
    g.add_argument("--train-molecules", type=int, default=300)
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--hidden", type=int, default=64)
    g.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    import onnxruntime

    from structrnn.datasets.molecules.graphs import from_smiles
    from structrnn.tasks.molecules.deployed import graph_inputs
    from structrnn.tasks.predictor import load

    torch.set_num_threads(args.threads)
    print("command: structrnn bench export " + " ".join(argv))
    print(f"machine before: {machine()}")
    with tempfile.TemporaryDirectory(prefix="structrnn-bench-export-") as tmp:
        run = Path(args.run) if args.run else train_run(args, Path(tmp))
        predictor = load(run)
        path = predictor.export(Path(tmp) / "model.onnx", format="onnx", check=True)
        size = path.stat().st_size
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
        module = predictor.deployable().module
        inputs = graph_inputs([from_smiles(s) for s in builtin_smiles(args.molecules)])
        with torch.no_grad():
            want = module(*inputs)[0]
        feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}
        diff = (torch.from_numpy(session.run(None, feeds)[0]) - want).abs().max().item()
        t_eager, t_ort = side_by_side(module, session, inputs, args.rounds)
    config = predictor.config
    figures = {
        "model": config.get("model"), "readout": config.get("readout"),
        "hidden": config.get("hidden"), "steps": config.get("steps"),
        "members": len(predictor.models), "onnx_bytes": size,
        "molecules": args.molecules, "atoms": int(inputs[0].size(0)),
        "eager_ms": 1e3 * statistics.median(t_eager), "onnx_ms": 1e3 * statistics.median(t_ort),
        "eager_best_ms": 1e3 * min(t_eager), "onnx_best_ms": 1e3 * min(t_ort),
        "max_abs_diff": diff, "threads": args.threads, "rounds": args.rounds,
    }
    figures["eager_over_onnx"] = figures["eager_ms"] / figures["onnx_ms"]
    print(f"run: {run if args.run else 'trained here'}; model {figures['model']}, readout "
          f"{figures['readout']}, hidden {figures['hidden']}, steps {figures['steps']}, "
          f"{figures['members']} member(s)")
    print(f"ONNX file: {size / 1024:.1f} kB")
    print(f"batch: {args.molecules} molecules ({figures['atoms']} atoms); median (best) of "
          f"{args.rounds} rounds, {args.threads} thread(s) each")
    print(f"  eager PyTorch   {figures['eager_ms']:8.2f} ms ({figures['eager_best_ms']:.2f})")
    print(f"  onnxruntime     {figures['onnx_ms']:8.2f} ms ({figures['onnx_best_ms']:.2f})")
    print(f"  eager / onnxruntime: {figures['eager_over_onnx']:.2f}; largest difference "
          f"{diff:.1e}")
    print(f"machine after: {machine()}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
