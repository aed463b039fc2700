"""A tree model of sentiment as a product: train it, save it to one file, load it back, predict
on raw sentences. Only the Python API::

    python examples/sentiment.py                       # the built-in synthetic treebank, seconds
    python examples/sentiment.py --trees 2000 --epochs 8 --out runs/sentiment

The synthetic treebank composes sentiment as SST does (negation flips, the clause after "but"
decides); its words are lower-case and it has no punctuation, so ``The`` and ``!`` below are
unknown words, which every result reports. A raw sentence gets a balanced binary tree over its
tokens (``"tree": "balanced"``); a PTB tree given as input is used as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import structrnn
from structrnn.tasks.sentiment import task as sst_task
from structrnn.training.task import train as train_task

SENTENCES = [
    "the plot was great",
    "the acting was not good",
    "its music seems very dull",
    "the ending was awful but the cast was brilliant",
    "The script was not bad!",
    "(3 (2 (2 the) (2 story)) (3 (2 is) (3 charming)))",   # a PTB tree: used as given
]


def train(out: Path, trees: int, epochs: int, hidden: int) -> dict:
    """``structrnn train sst --dataset synthetic``, in this process."""
    return train_task(sst_task.TASK, [
        "--dataset", "synthetic", "--synthetic-trees", str(trees), "--epochs", str(epochs),
        "--hidden", str(hidden), "--embed-dim", str(hidden), "--dropout", "0", "--lr", "0.1",
        "--no-progress", "--overwrite", "--out", str(out)])


def main(argv: list[str] | None = None) -> list[dict]:
    """Train, save, load, predict; prints one line per sentence and returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=600, help="synthetic training trees")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("runs/example_sentiment"))
    args = parser.parse_args(argv)

    metrics = train(args.out, args.trees, args.epochs, args.hidden)
    print(f"trained: test root accuracy {metrics['test_fine_root']:.3f}")

    model_file = structrnn.load(args.out).save(args.out / "sentiment.pt")  # one file
    predictor = structrnn.load(model_file)                                  # read it back
    print(f"saved and loaded back: {model_file} ({predictor})")

    results = predictor.predict(SENTENCES)
    for r in results:
        unknown = f", unknown: {' '.join(r['unknown_words'])}" if r["unknown_words"] else ""
        print(f"{r['label_name']:>13} ({max(r['probs']):.2f}, {r['tree']} tree{unknown})  "
              f"{' '.join(r['tokens'])}")
    return results


if __name__ == "__main__":
    main()
