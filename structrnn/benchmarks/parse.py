"""Parsing speed of :class:`structrnn.trees.parser.Parser`: sentences/s in batches and one
sentence at a time, on the sentences of an SST split (their own tokens: tokenisation is not
timed).

Protocol: a parser from ``--run`` (a run folder of ``structrnn train parser`` or a model file),
else a fresh one of the default size with the vocabulary of ``train.txt`` (speed does not depend
on the weights); eval mode, no gradients. One warm-up pass, then ``--repeats`` passes over the
sentences; the median pass gives sentences/s. ``batch`` parses all of them with ``--batch``
sentences per call (sorted by length inside, as ``Parser.parse`` does); ``single`` parses the
first ``--single`` sentences one call each. The machine, the threads and the load average are
printed with the figures, and one JSON line per mode.

    python -m structrnn.benchmarks.parse --run runs/parser --threads 1
    python benchmarks/bench_parse.py ...        # the same, from a source tree

``--data`` defaults to ``$STRUCTRNN_DATA/sst`` (else ``../shared/datasets/sst`` when present).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from structrnn.benchmarks import default_data
from structrnn.benchmarks.predict import machine, throughput


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="structrnn bench parse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    root = default_data()
    p.add_argument("--data", default=str(root / "sst") if root else None,
                   help="folder with the SST split files")
    p.add_argument("--run", default=None, help="a trained parser (run folder or model file)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--sentences", type=int, default=None, help="the first N sentences (all)")
    p.add_argument("--batch", type=int, default=256, help="sentences per call in batch mode")
    p.add_argument("--single", type=int, default=200,
                   help="sentences parsed one call each in single mode")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def load_parser(args: argparse.Namespace, data: Path):
    from structrnn.trees.parser import Parser

    if args.run:
        from structrnn.tasks.predictor import load

        return load(args.run).model, f"trained ({args.run})"
    from structrnn.tasks.parser.task import read_split

    train = read_split(data, "train") if (data / "train.txt").is_file() else \
        read_split(data, args.split)
    words, chars = Parser.build_vocabularies(t.leaves() for t in train)
    torch.manual_seed(0)
    return Parser(words, chars).eval(), "untrained, default size"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(args.data) if args.data else None
    if data is None or not (data / f"{args.split}.txt").is_file():
        print(f"structrnn bench parse: no SST {args.split}.txt in {data}; pass --data DIR",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from structrnn.tasks.parser.task import read_split

    sentences = [t.leaves() for t in read_split(data, args.split, args.sentences)]
    parser, kind = load_parser(args, data)
    single = sentences[: args.single]
    words = sum(map(len, sentences))
    print(f"machine: {machine()}")
    print(f"parser: {kind}; {len(sentences)} {args.split} sentences, {words} words "
          f"(mean {words / max(len(sentences), 1):.1f})")
    load_before = os.getloadavg()[0]
    with torch.no_grad():
        rates = {
            "batch": throughput(lambda: parser.parse_spans(sentences, args.batch),
                                len(sentences), args.repeats),
            "single": throughput(lambda: [parser.parse_spans([s], 1) for s in single],
                                 len(single), args.repeats)}
    load_after = os.getloadavg()[0]
    records = [{"mode": mode, "batch": args.batch if mode == "batch" else 1,
                "sentences": len(sentences) if mode == "batch" else len(single),
                "sentences_per_s": rate} for mode, rate in rates.items()]
    for r in records:
        print(f"{r['mode']:>6} (batch {r['batch']}): {r['sentences_per_s']:8.1f} sentences/s "
              f"({r['sentences']} sentences, median of {args.repeats} passes)")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    for r in records:
        print(json.dumps({**r, "threads": args.threads, "load": [load_before, load_after]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
