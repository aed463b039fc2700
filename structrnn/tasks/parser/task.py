"""``structrnn train parser``: learn a binary constituency parser (:class:`Parser`) from the
unlabeled bracketings of a treebank in PTB form (the Stanford Sentiment Treebank's
``train.txt``, model selection on ``dev.txt``, figures on ``test.txt``).

The labels of the treebank are ignored: a tree is its set of spans. The gold trees are binarised
(right-factored) for training when they are not binary already (SST's are). Model selection is
on dev unlabeled bracket F1 (:func:`structrnn.trees.spans.bracket_f1`); ``metrics.json`` holds
dev and test F1 of the selected model and, scored the same way on the same sentences, three
baselines: right-branching with the sentence-final punctuation at the top, left-branching and
balanced.

Run layout (``--out RUN``): ``config.json``, ``metrics.jsonl``, ``metrics.json``,
``checkpoint.pt``, ``best.pt`` (the selected weights with the vocabularies and settings under
``"parser"``: :meth:`Parser.from_spec`), ``learning_curves.png``, ``example_tree.png``.

With ``--seeds S1,S2,...`` the run is an ensemble: one parser per seed in ``units/seedS/``
(the same vocabularies, their own weights and batch order), parsing together by their mean
span scores decoded once by CKY (:mod:`structrnn.tasks.parser.ensemble`). ``metrics.json``
then holds each seed's figures (``"units"``), their mean and standard deviation
(``"test_f1": {"mean", "std"}`` ...) and the ensemble's (``"ensemble": {"dev_f1", "test_f1"
...}``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from structrnn._errors import InputError
from structrnn.tasks.parser.ensemble import parse_spans
from structrnn.training import distributed
from structrnn.training.logging import notice
from structrnn.training.options import add_run_arguments
from structrnn.training.seeds import add_seeds_argument, seed_units, settle_seeds
from structrnn.training.task import Plan, Task
from structrnn.trees.parser import Parser, ParserBatch, hinge_loss
from structrnn.trees.ptb import read_ptb_file
from structrnn.trees.spans import (
    balanced_spans,
    bracket_f1,
    is_punctuation,
    left_branching_spans,
    right_branching_spans,
    spans_to_tree,
    tree_spans,
)
from structrnn.trees.tree import Tree

__all__ = ["TASK", "add_arguments", "read_split", "data_folder", "score", "baselines",
           "CONFIG_KEYS", "PARSER_KEYS"]

# the flags that are Parser settings (their values go to Parser(**...))
PARSER_KEYS = ("embed_dim", "char_dim", "char_hidden", "hidden", "layers", "mlp_hidden",
               "dropout", "word_dropout")
CONFIG_KEYS = ("data", "vectors", *PARSER_KEYS, "lr", "lr_decay", "batch_size", "max_trees",
               "seeds")
SPLIT_FILES = {"train": "train.txt", "dev": "dev.txt", "val": "dev.txt", "test": "test.txt"}
BASELINES = {
    "right_branching": lambda tokens: right_branching_spans(
        len(tokens), bool(tokens) and is_punctuation(tokens[-1])),
    "left_branching": lambda tokens: left_branching_spans(len(tokens)),
    "balanced": lambda tokens: balanced_spans(len(tokens)),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="folder with train.txt/dev.txt/test.txt, one PTB tree a line "
                        "(default $STRUCTRNN_DATA/sst)")
    p.add_argument("--vectors", default=None,
                   help="GloVe/word2vec text file (gz or plain) to initialise the word "
                        "embeddings, e.g. ../shared/datasets/vectors/sst-glove.6B.50d.txt.gz")
    p.add_argument("--embed-dim", type=int, default=None,
                   help="word embedding size (default: the --vectors file's, else 100)")
    p.add_argument("--char-dim", type=int, default=32, help="character embedding size")
    p.add_argument("--char-hidden", type=int, default=50,
                   help="hidden size of the character BiLSTM (per direction)")
    p.add_argument("--hidden", type=int, default=200,
                   help="hidden size of the sentence BiLSTM (per direction)")
    p.add_argument("--layers", type=int, default=2, help="layers of the sentence BiLSTM")
    p.add_argument("--mlp-hidden", type=int, default=200, help="hidden size of the span MLP")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--word-dropout", type=float, default=0.3, metavar="A",
                   help="in training, replace a word seen c times by the unknown word with "
                        "probability A / (A + c): rare words often, frequent ones hardly ever "
                        "(trains the unknown word's vector; the characters still spell it)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-decay", type=float, default=1.0, metavar="G",
                   help="multiply the learning rate by G after every epoch")
    p.add_argument("--max-trees", type=int, default=None,
                   help="use only the first N trees of each split (quick runs)")
    add_seeds_argument(p)
    add_run_arguments(p, out="runs/parser", epochs=10, batch_size=32)


# ----------------------------------------------------------------------------------- data
def data_folder(data: str | Path | None) -> Path:
    """``--data``, else ``$STRUCTRNN_DATA/sst`` (``~/.cache/structrnn/sst``)."""
    from structrnn._paths import data_root

    return Path(data) if data else data_root() / "sst"


def read_split(folder: str | Path, split: str, max_trees: int | None = None) -> list[Tree]:
    """The trees of ``split`` (train, dev or val, test) in ``folder``; every leaf must hold a
    word. InputError naming the file when it is missing or a tree has an empty leaf."""
    if split not in SPLIT_FILES:
        raise InputError(f"split: expected one of {', '.join(SPLIT_FILES)}, got {split!r}")
    path = Path(folder) / SPLIT_FILES[split]
    if not path.is_file():
        raise InputError(f"no {path.name} in {path.parent} (--data: a folder with train.txt, "
                         "dev.txt and test.txt, one PTB tree a line)")
    ptb = read_ptb_file(path)
    trees = ptb.trees[:max_trees] if max_trees else ptb.trees
    for tree, line in zip(trees, ptb.line_numbers, strict=False):
        if any(leaf.token is None for leaf in tree.leaf_nodes()):
            raise InputError(f"{path}, line {line}: a leaf without a word")
    return trees


def _gold_spans(tree: Tree) -> torch.Tensor:
    """(2n - 1, 2) long: the spans of the (binarised) tree, what the hinge loss compares."""
    return torch.tensor(sorted(tree_spans(tree.binarize())), dtype=torch.long)


def score(parser: Parser | Sequence[Parser], trees: list[Tree], batch_size: int = 256) -> dict:
    """Bracket F1 (precision, recall, exact match) of ``parser`` (or of several parsers'
    mean span scores, :func:`~structrnn.tasks.parser.ensemble.parse_spans`) on ``trees``' own
    words."""
    parsers = [parser] if isinstance(parser, Parser) else list(parser)
    found = parse_spans(parsers, [t.leaves() for t in trees], batch_size)
    result = bracket_f1(trees, found)
    return {k: result[k] for k in ("f1", "precision", "recall", "exact")}


def baselines(trees: list[Tree]) -> dict[str, float]:
    """Bracket F1 of the right-branching (punctuation at the top), left-branching and
    balanced trees on ``trees``' words."""
    return {name: bracket_f1(trees, [make(t.leaves()) for t in trees])["f1"]
            for name, make in BASELINES.items()}


# ----------------------------------------------------------------------------------- training
def batch_loss(model, batch: ParserBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean hinge loss per sentence (under DDP: this process's sum scaled so that DDP's
    gradient average is the single-process gradient of the global batch)."""
    losses = hinge_loss(model(batch).float(), batch.lengths, batch.gold)
    return distributed.global_mean_loss(losses.sum(), len(batch))


class TrainBatches:
    """This process's batches of one epoch, encoded as they are drawn.

    A permutation of the sentences seeded by ``seed`` and ``epoch`` (a resumed run draws the
    same batches) is cut into pools of ``POOL`` global batches; each pool is sorted by length
    and cut into global batches of ``batch_size``, and the batches come in a seeded random
    order. Sentences of one batch have similar lengths, so the LSTMs run fewer padded steps (the
    per-step cost dominates on the CPU). Under torchrun each process takes every W-th sentence
    of every global batch.
    """

    POOL = 50

    def __init__(self, examples: list, parser: Parser, batch_size: int, seed: int,
                 epoch: int) -> None:
        self.examples, self.parser = examples, parser
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(examples), generator=gen).tolist()
        world = distributed.world_size()
        batches = []
        for start in range(0, len(order), batch_size * self.POOL):
            pool = sorted(order[start:start + batch_size * self.POOL],
                          key=lambda k: len(examples[k][0]))
            batches += [pool[k:k + batch_size] for k in range(0, len(pool), batch_size)]
        # every process needs a share of every batch (DDP steps together)
        batches = [b for b in batches if len(b) >= world]
        self.batches = [batches[k] for k in torch.randperm(len(batches), generator=gen)]
        self.rank, self.world = distributed.rank(), world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            mine = [self.examples[k] for k in batch[self.rank::self.world]]
            yield self.parser.encode([t for t, _ in mine], [g for _, g in mine])


def build_parser(args, train: list[Tree]) -> Parser:
    """The untrained parser: vocabularies of the training words, optional pretrained
    vectors."""
    words, chars = Parser.build_vocabularies(t.leaves() for t in train)
    vectors = None
    if args.vectors:
        from structrnn.datasets.vectors import load_word_vectors

        vectors, coverage = load_word_vectors(args.vectors, words, dim=args.embed_dim)
        notice(str(coverage))
    return Parser(words, chars, vectors, **{k: getattr(args, k) for k in PARSER_KEYS})


def prepare(args) -> tuple[list[Tree], list[Tree], list[Tree]]:
    """Check the flags that could fail late, fill in the embedding size; the three splits."""
    settle_seeds(args)
    if args.vectors and not Path(args.vectors).is_file():
        raise InputError(f"--vectors: no file {args.vectors}")
    if args.embed_dim is None:
        from structrnn.datasets.vectors import file_dim

        args.embed_dim = file_dim(args.vectors)[0] if args.vectors else 100
    root = data_folder(args.data)
    return tuple(read_split(root, s, args.max_trees) for s in ("train", "dev", "test"))


def build(args, data, unit: dict, device: torch.device) -> Plan:
    train, dev, _ = data
    model = build_parser(args, train).to(device)
    examples = [(t.leaves(), _gold_spans(t)) for t in train]
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = (torch.optim.lr_scheduler.ExponentialLR(optimizer, args.lr_decay)
                 if args.lr_decay != 1.0 else None)
    return Plan(model, optimizer, batch_loss, lambda m: score(m, dev), scheduler=scheduler,
                batches=lambda epoch: TrainBatches(examples, model, args.batch_size, args.seed,
                                                   epoch),
                best_extra=lambda: {"parser": model.spec()})


def _figures(parser: Parser | Sequence[Parser], dev: list[Tree], test: list[Tree]) -> dict:
    dev_scores, test_scores = score(parser, dev), score(parser, test)
    return {"dev_f1": dev_scores["f1"], "test_f1": test_scores["f1"],
            "test_precision": test_scores["precision"], "test_recall": test_scores["recall"],
            "test_exact": test_scores["exact"]}


def _mean_std(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0}


def finish(args, data, fitted: list, device) -> tuple[dict, dict]:
    """Score the selected parser (or every seed's and their ensemble) on dev and test next to
    the baselines; the metrics and the pictures."""
    train, dev, test = data
    parsers, history = [f.model for f in fitted], fitted[0].history
    sizes = {"train_trees": len(train), "dev_trees": len(dev), "test_trees": len(test)}
    base = {"baselines_test_f1": baselines(test), "baselines_dev_f1": baselines(dev)}
    if getattr(args, "seeds", None) is None:
        metrics = {**_figures(parsers[0], dev, test), **base, **fitted[0].result.summary(),
                   **sizes}
    else:
        units = [{"unit": f.unit["name"], "seed": f.unit["init_seed"],
                  **_figures(f.model, dev, test), **f.result.summary()} for f in fitted]
        keys = ("dev_f1", "test_f1", "test_precision", "test_recall", "test_exact")
        metrics = {"seeds": list(args.seeds),
                   **{k: _mean_std([u[k] for u in units]) for k in keys},
                   "ensemble": _figures(parsers, dev, test), "units": units, **base,
                   "epoch_seconds": [s for u in units for s in u["epoch_seconds"]],
                   "best_epoch": [u["best_epoch"] for u in units], **sizes}
    return metrics, pictures(parsers, history, test)


def pictures(parser: Parser | Sequence[Parser], history: list[dict], test: list[Tree]) -> dict:
    """Learning curves and the parse of the first test sentence."""
    from structrnn import viz

    parsers = [parser] if isinstance(parser, Parser) else list(parser)
    drawn = {"learning_curves.png": lambda path: viz.plot_learning_curves(
        history, path, keys=["train_loss", "dev_f1"])}
    if test:
        tokens = test[0].leaves()
        tree = spans_to_tree(tokens, parse_spans(parsers, [tokens])[0])
        drawn["example_tree.png"] = lambda path: viz.draw_tree(
            tree, path, title="parsed (structrnn train parser)")
    return drawn


TASK = Task("parser", "a constituency parser learned from the treebank's own trees",
            "structrnn.tasks.parser.predictor", add_arguments, CONFIG_KEYS, prepare, build,
            finish, select="f1", prefix="dev", units=seed_units)
