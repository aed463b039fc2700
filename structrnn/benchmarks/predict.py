"""Prediction throughput: molecules/s of ``structrnn.load(run).predict`` and sentences/s of a
sentiment run.

1. Molecules, on RDKit's 5,000 shipped NCI molecules (the first ``--molecules`` that RDKit
   reads): featurisation alone (``from_smiles`` per molecule, what every prediction starts
   with), ``predict(smiles)`` in batches of ``--batch-size``, and one molecule per call
   (``--single`` calls, the latency of an interactive use). The run is ``--run`` (a molecule
   run folder or exported file), else a tiny built-in TPSA run trained first in a temporary
   folder (``--hidden``, ``--steps``, ``--train-molecules``, ``--epochs``).
2. Sentences, when ``structrnn.tasks.sentiment.predictor`` exists: ``predict(sentences)`` of
   ``--sentiment-run``, else of a tiny run trained first on the synthetic treebank, over its
   sentences; otherwise one line says it was skipped.

Each figure is the median of ``--rounds`` rounds, after one warm-up call.

    structrnn bench predict [--run RUN] [--molecules 5000] [--threads 1]
    python benchmarks/bench_predict.py ...      # the same, from a source tree
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["main", "machine", "builtin_smiles", "throughput"]


def machine() -> str:
    """The platform, the cores, torch's threads and the load averages (1, 5, 15 min)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{platform.platform()}; {platform.processor() or platform.machine()}; "
            f"{os.cpu_count()} cores; python {platform.python_version()}; torch "
            f"{torch.__version__}; torch threads {torch.get_num_threads()}; load {load}")


def builtin_smiles(count: int) -> list[str]:
    """The first ``count`` molecules of RDKit's ``first_5K.smi`` that RDKit reads."""
    from rdkit import Chem, rdBase

    from structrnn.datasets.molecules.builtin import builtin_smiles_path

    out = []
    with rdBase.BlockLogs():
        for line in builtin_smiles_path().read_text().splitlines():
            if len(out) >= count:
                break
            smiles = line.split()[0] if line.strip() else ""
            if smiles and Chem.MolFromSmiles(smiles) is not None:
                out.append(smiles)
    return out


def throughput(fn: Callable[[], object], items: int, rounds: int) -> float:
    """Items per second of ``fn()`` (which handles ``items`` items): the median of ``rounds``
    timed calls after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return items / statistics.median(times)


def train_molecule_run(args: argparse.Namespace, folder: Path) -> Path:
    """A tiny built-in TPSA run (one seed) in ``folder``."""
    from structrnn.tasks.molecules import task
    from structrnn.training.task import train

    out = folder / "molecules"
    train(task.TASK, ["--dataset", "builtin", "--max-molecules", str(args.train_molecules),
                      "--epochs", str(args.epochs), "--seeds", "0", "--hidden",
                      str(args.hidden), "--steps", str(args.steps), "--no-progress", "--out",
                      str(out)])
    return out


def bench_molecules(args: argparse.Namespace, folder: Path) -> dict:
    from structrnn.datasets.molecules.graphs import from_smiles
    from structrnn.tasks.predictor import load

    run = Path(args.run) if args.run else train_molecule_run(args, folder)
    predictor = load(run)
    smiles = builtin_smiles(args.molecules)
    single = smiles[:args.single]
    print(f"molecules: {len(smiles)} of RDKit's NCI set; run {run if args.run else 'tiny '}"
          f"{'' if args.run else f'(trained here: hidden {args.hidden}, steps {args.steps})'}; "
          f"{predictor!r}")
    figures = {
        "featurise_mol_per_s": throughput(lambda: [from_smiles(s) for s in smiles],
                                          len(smiles), args.rounds),
        "predict_batch_mol_per_s": throughput(
            lambda: predictor.predict(smiles, batch_size=args.batch_size, progress=False),
            len(smiles), args.rounds),
        "predict_single_mol_per_s": throughput(
            lambda: [predictor.predict([s], progress=False) for s in single], len(single),
            args.rounds),
    }
    print(f"  featurisation only       {figures['featurise_mol_per_s']:10.1f} molecules/s")
    print(f"  predict, batch {args.batch_size:<9} {figures['predict_batch_mol_per_s']:10.1f} "
          "molecules/s")
    print(f"  predict, one per call    {figures['predict_single_mol_per_s']:10.1f} molecules/s "
          f"({len(single)} calls)")
    return figures


def train_sentiment_run(args: argparse.Namespace, folder: Path) -> Path:
    """A tiny run on the synthetic treebank in ``folder``."""
    from structrnn.tasks.sentiment import task
    from structrnn.training.task import train

    out = folder / "sentiment"
    train(task.TASK, ["--dataset", "synthetic", "--synthetic-trees", "200", "--epochs", "1",
                      "--hidden", str(args.hidden), "--no-progress", "--out", str(out)])
    return out


def bench_sentences(args: argparse.Namespace, folder: Path) -> dict | None:
    if importlib.util.find_spec("structrnn.tasks.sentiment.predictor") is None:
        print("sentences: skipped (structrnn.tasks.sentiment.predictor is not in this version)")
        return None
    from structrnn.datasets.synthetic import generate_sentiment_trees
    from structrnn.tasks.predictor import load

    run = Path(args.sentiment_run) if args.sentiment_run else train_sentiment_run(args, folder)
    predictor = load(run)
    sentences = [" ".join(t.leaves()) for t in generate_sentiment_trees(args.sentences, seed=1)]
    rate = throughput(lambda: predictor.predict(sentences, batch_size=args.batch_size,
                                                progress=False), len(sentences), args.rounds)
    print(f"sentences: {len(sentences)} synthetic sentences; run {run}; {predictor!r}")
    print(f"  predict, batch {args.batch_size:<9} {rate:10.1f} sentences/s")
    return {"predict_batch_sentences_per_s": rate}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark with ``argv`` (default ``sys.argv[1:]``); prints and returns the
    figures."""
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a molecule run folder or model file (default: "
                                               "train a tiny one first)")
    p.add_argument("--molecules", type=int, default=5000, help="molecules to predict")
    p.add_argument("--single", type=int, default=200, help="one-molecule calls to time")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    p.add_argument("--sentiment-run", default=None, help="a sentiment run (default: train a "
                                                         "tiny synthetic one first)")
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--skip-sentences", action="store_true")
    g = p.add_argument_group("the tiny runs trained when none is given")
    g.add_argument("--train-molecules", type=int, default=200)
    g.add_argument("--epochs", type=int, default=1)
    g.add_argument("--hidden", type=int, default=64)
    g.add_argument("--steps", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command: structrnn bench predict " + " ".join(argv))
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="structrnn-bench-predict-") as tmp:
        figures = {"molecules": bench_molecules(args, Path(tmp))}
        if args.skip_sentences:
            print("sentences: skipped (--skip-sentences)")
        else:
            figures["sentences"] = bench_sentences(args, Path(tmp))
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
