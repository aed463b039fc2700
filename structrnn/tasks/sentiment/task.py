"""``structrnn train sst``: train a tree model on the Stanford Sentiment Treebank (or on the
built-in synthetic treebank) with progress bars, atomic checkpoints, exact resume, metrics
and pictures.

Run layout (``--out RUN``): ``config.json``, ``metrics.json`` (final figures),
``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (last epoch, for ``--resume``),
``best.pt`` (best dev root accuracy), ``vocab.json``, ``learning_curves.png``,
``confusion.png``, ``example_tree.png``, and with ``--tensorboard`` a ``tensorboard/`` folder.

With ``--seeds S1,S2,...`` the run is an ensemble: one model per seed, each with its own
``units/seedS/`` (``best.pt``, ``checkpoint.pt``, ``metrics.jsonl``), on the same data and
vocabulary. ``metrics.json`` then holds each seed's figures (``"units"``), their mean and
standard deviation (``"test_fine_root": {"mean", "std"}`` ...) and the ensemble's, whose class
probabilities are the members' mean (``"ensemble": {"test_fine_root", "test_binary_root"
...}``); the pictures are the ensemble's.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from structrnn import viz
from structrnn._errors import InputError
from structrnn.datasets.sst import SST, default_data_root
from structrnn.datasets.synthetic import SyntheticSentiment
from structrnn.tasks.sentiment.model import MODELS, TreeSentiment, ensemble_logits, evaluate
from structrnn.tasks.sentiment.sequence_model import (
    POOLS,
    SEQUENCE_MODELS,
    SequenceSentiment,
    is_sequence_model,
    root_labels_only,
)
from structrnn.training import distributed
from structrnn.training.checkpoint import load_checkpoint
from structrnn.training.logging import notice
from structrnn.training.options import add_run_arguments
from structrnn.training.seeds import (
    add_seeds_argument,
    seed_folders,
    seed_units,
    settle_seeds,
)
from structrnn.training.task import Fitted, Plan, Task
from structrnn.trees.convert import batch_trees
from structrnn.trees.loader import TreeLoader
from structrnn.trees.vocab import Vocab

__all__ = ["TASK", "add_arguments", "load_splits", "build_model", "make_optimizer",
           "init_from_run"]

# torch says once, from inside Adagrad, that it skips checks on the sparse tensor it built
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")

CONFIG_KEYS = ("dataset", "data", "model", "batch_size", "lr", "embed_lr", "weight_decay",
               "dropout", "hidden", "embed_dim", "embed_init", "binary", "vectors", "init_from",
               "word_dropout", "max_trees", "synthetic_trees", "layers", "pool", "seeds",
               "recurrent_dropout")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["sst", "synthetic"], default="sst",
                   help="sst (needs --data) or the built-in synthetic treebank")
    p.add_argument("--data", default=None,
                   help="folder with train.txt/dev.txt/test.txt (default $STRUCTRNN_DATA/sst)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official SST archive into --data when it is missing")
    p.add_argument("--model", choices=MODELS + SEQUENCE_MODELS, default="tree-lstm",
                   help="tree-lstm is the constituency (binary N-ary) Tree-LSTM of Tai et al.; "
                        "lstm, bilstm, gru, bigru read the words in order and are trained on "
                        "the root label only; tree-lstm-as-sequence runs the Tree-LSTM's cell "
                        "along the words (start it from a tree-lstm run with --init-from)")
    p.add_argument("--layers", type=int, default=None,
                   help="sequence models: stacked layers (default 1)")
    p.add_argument("--pool", choices=POOLS, default=None,
                   help="sequence models: the sentence vector is the last state (default) or "
                        "the mean or max over the words")
    p.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate")
    p.add_argument("--embed-lr", type=float, default=0.1, help="learning rate of the embeddings")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--word-dropout", type=float, default=0.0, metavar="P",
                   help="in training, replace each word by the unknown word with probability P, "
                        "so that the unknown word's vector (read by every dev/test word outside "
                        "the training vocabulary) is trained")
    p.add_argument("--recurrent-dropout", type=float, default=0.0, metavar="P",
                   help="tree-lstm: in training, drop each unit of the cell's candidate update "
                        "with probability P before it enters the memory (recurrent dropout "
                        "without memory loss, Semeniuta et al. 2016, as Looks et al. 2017; a "
                        "fresh mask per node)")
    p.add_argument("--hidden", type=int, default=150)
    p.add_argument("--embed-dim", type=int, default=None,
                   help="embedding size (default: the --vectors file's, else 300)")
    p.add_argument("--embed-init", type=float, default=None, metavar="S",
                   help="random embeddings from U(-S, S) (Tai et al.'s code: 0.05) instead of "
                        "N(0, 1); no effect on words --vectors covers")
    p.add_argument("--binary", action="store_true",
                   help="train on the binary task (neutral roots dropped, 0-1 vs 3-4)")
    p.add_argument("--vectors", default=None,
                   help="GloVe/word2vec text file (gz or plain) to initialise the embeddings")
    p.add_argument("--init-from", default=None, metavar="RUN",
                   help="start from RUN's best model (e.g. a fine-grained run for --binary): the "
                        "embedding rows of shared words, the encoder and, when the classes "
                        "match, the classifier")
    p.add_argument("--max-trees", type=int, default=None,
                   help="use only the first N trees of each split (quick runs)")
    p.add_argument("--synthetic-trees", type=int, default=2000,
                   help="training trees of the synthetic treebank")
    add_seeds_argument(p)
    add_run_arguments(p, out="runs/sst", epochs=10, batch_size=25)


def load_splits(args) -> tuple[SST, SST, SST]:
    """Train, dev and test sets, sharing the training vocabulary."""
    if args.dataset == "synthetic":
        n = args.synthetic_trees
        train = SyntheticSentiment(n, seed=args.seed, binary=args.binary)
        dev = SyntheticSentiment(max(n // 5, 50), seed=args.seed + 1, vocab=train.vocab,
                                 binary=args.binary)
        test = SyntheticSentiment(max(n // 5, 50), seed=args.seed + 2, vocab=train.vocab,
                                  binary=args.binary)
    else:
        root = Path(args.data) if args.data else default_data_root() / "sst"
        train = SST(root, "train", binary=args.binary, download=args.download)
        dev = SST(root, "dev", binary=args.binary, vocab=train.vocab)
        test = SST(root, "test", binary=args.binary, vocab=train.vocab)
    if args.max_trees:
        train, dev, test = (s[: args.max_trees] for s in (train, dev, test))
    if is_sequence_model(args.model):  # no phrase nodes: trained and scored on the root
        train, dev, test = (root_labels_only(s) for s in (train, dev, test))
    return train, dev, test


def make_optimizer(model: TreeSentiment, args) -> torch.optim.Optimizer:
    """Adagrad (Tai et al. 2015); the embeddings get their own rate and no weight decay."""
    embed = list(model.embedding.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
    return torch.optim.Adagrad([
        {"params": rest, "lr": args.lr, "weight_decay": args.weight_decay},
        {"params": embed, "lr": args.embed_lr, "weight_decay": 0.0},
    ])


def build_model(args, vocab: Vocab, num_classes: int, sparse: bool = False) -> TreeSentiment:
    """The model ``args`` describe; ``sparse``: sparse embedding gradients (see ``_run``)."""
    vectors = None
    if args.vectors:
        from structrnn.datasets.vectors import load_word_vectors

        vectors, coverage = load_word_vectors(args.vectors, vocab, dim=args.embed_dim)
        notice(f"word vectors: {coverage}")
    if is_sequence_model(args.model):
        return SequenceSentiment(len(vocab), num_classes, args.model, args.embed_dim,
                                 args.hidden, args.dropout, vectors,
                                 getattr(args, "embed_init", None), sparse,
                                 getattr(args, "word_dropout", 0.0), vocab.unk_id,
                                 getattr(args, "layers", None) or 1,
                                 getattr(args, "pool", None) or "last")
    return TreeSentiment(len(vocab), num_classes, args.model, args.embed_dim, args.hidden,
                         args.dropout, vectors, getattr(args, "embed_init", None), sparse,
                         getattr(args, "word_dropout", 0.0), vocab.unk_id,
                         getattr(args, "recurrent_dropout", None) or 0.0)


def init_from_run(model: TreeSentiment, run: str | Path, vocab: Vocab) -> str:
    """Copy a trained run's weights into ``model``: embedding rows by word (the vocabularies
    of two tasks differ), every other tensor whose name and shape match (of an ensemble run,
    its first seed's model). Returns a summary."""
    run = Path(run)
    config_path = run / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    state = dict(load_checkpoint(seed_folders(run, config)[0] / "best.pt")["model"])
    old_vocab = Vocab.load(run / "vocab.json")
    old_rows = state.pop("embedding.weight")
    pairs = [(i, old_vocab[t]) for i, t in enumerate(vocab) if t in old_vocab]
    if pairs:
        new_ids, old_ids = (torch.tensor(p) for p in zip(*pairs))
        with torch.no_grad():
            model.embedding.weight[new_ids] = old_rows[old_ids].to(model.embedding.weight)
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    skipped = sorted(set(own) - set(kept) - {"embedding.weight"})
    return (f"initialised from {run}: {len(pairs)}/{len(vocab)} word vectors, "
            f"{len(kept)} tensors" + (f", kept fresh: {', '.join(skipped)}" if skipped else ""))


def batch_loss(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean cross-entropy over labelled nodes, to back-propagate and for the log (under
    DDP: :func:`~structrnn.training.distributed.global_mean_loss`)."""
    loss_sum = F.cross_entropy(model(batch).float(), batch.y, ignore_index=-1, reduction="sum")
    return distributed.global_mean_loss(loss_sum, (batch.y >= 0).sum())


def prepare(args) -> tuple[SST, SST, SST]:
    """Settle ``--seeds`` (the data come from the first), fill in the embedding size, load the
    splits."""
    settle_seeds(args)
    rate = getattr(args, "recurrent_dropout", 0.0) or 0.0
    if not 0.0 <= rate < 1.0 or (rate and args.model != "tree-lstm"):
        raise InputError(f"--recurrent-dropout: expected a probability in [0, 1) with --model "
                         f"tree-lstm, got {rate} with --model {args.model}")
    if args.embed_dim is None:
        from structrnn.datasets.vectors import file_dim

        args.embed_dim = file_dim(args.vectors)[0] if args.vectors else 300
    return load_splits(args)


def build(args, data, unit: dict, device: torch.device) -> Plan:
    train, dev, _ = data
    # Sparse embedding gradients let Adagrad touch only the rows of the batch's words instead
    # of all 16k x 300 (1.4x faster SST epochs, the same arithmetic). Clipping and the
    # all-reduce of DDP take dense gradients only, so those runs keep them dense.
    sparse = (distributed.world_size() == 1 and not args.clip_grad
              and not args.clip_grad_value)
    model = build_model(args, train.vocab, train.num_classes, sparse=sparse)
    if getattr(args, "init_from", None) and not args.resume:
        notice(init_from_run(model, args.init_from, train.vocab))
    model = model.to(device)
    if distributed.is_main():
        train.vocab.save(Path(args.out) / "vocab.json")
    dev_loader = TreeLoader(dev, batch_size=256, collate_fn=batch_trees)
    return Plan(model, make_optimizer(model, args), batch_loss,
                lambda m: _summary(evaluate(m, dev_loader, device)), train_set=train,
                loader_class=TreeLoader, loader_kwargs={"collate_fn": batch_trees},
                best_extra=lambda: {"vocab": list(train.vocab)})


def _summary(result: dict) -> dict:
    keep = {"root_acc": "root", "all_nodes_acc": "all_nodes", "loss": "loss",
            "binary_root_acc": "binary_root"}
    return {short: result[k] for k, short in keep.items() if k in result}


FIGURES = ("dev_fine_root", "test_fine_root", "test_binary_root", "test_fine_all_nodes",
           "dev_root", "test_root")


def figures(models, dev, test, binary: bool, device) -> tuple[dict, dict]:
    """The figures of one model or of an ensemble (its members' probabilities averaged) on dev
    and test, and the test evaluation (root predictions for the confusion matrix)."""
    dev_result, test_result = (evaluate(models, TreeLoader(s, batch_size=256,
                                                           collate_fn=batch_trees), device)
                               for s in (dev, test))
    found = {
        "dev_fine_root": None if binary else dev_result["root_acc"],
        "test_fine_root": None if binary else test_result["root_acc"],
        "test_binary_root": (test_result["root_acc"] if binary
                             else test_result.get("binary_root_acc")),
        "test_fine_all_nodes": None if binary else test_result["all_nodes_acc"],
        "dev_root": dev_result["root_acc"],
        "test_root": test_result["root_acc"],
    }
    return found, test_result


def mean_std(values: list) -> dict | None:
    """``{"mean", "std"}`` (sample std, 0 for one value) of ``values``; None when they are."""
    if any(v is None for v in values):
        return None
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0}


def finish(args, data, fitted: list[Fitted], device) -> tuple[dict, dict]:
    """Evaluate the selected model (or every seed's and their ensemble); the metrics and the
    pictures."""
    _, dev, test = data
    binary = args.binary
    models = [f.model for f in fitted]
    if getattr(args, "seeds", None) is None:
        found, test_result = figures(models[0], dev, test, binary, device)
        metrics = {**found, **fitted[0].result.summary()}
    else:
        units = []
        for f in fitted:
            found, _ = figures(f.model, dev, test, binary, device)
            units.append({"unit": f.unit["name"], "seed": f.unit["init_seed"], **found,
                          **f.result.summary()})
        ensemble, test_result = figures(models, dev, test, binary, device)
        metrics = {"seeds": list(args.seeds),
                   **{k: mean_std([u[k] for u in units]) for k in FIGURES},
                   "ensemble": ensemble, "units": units,
                   "epoch_seconds": [s for u in units for s in u["epoch_seconds"]],
                   "best_epoch": [u["best_epoch"] for u in units]}
    history = fitted[0].history
    pictures = {
        "learning_curves.png": lambda path: viz.plot_learning_curves(
            history, path, keys=["train_loss", "dev_loss", "dev_root", "dev_all_nodes"]),
        "confusion.png": lambda path: viz.plot_confusion(
            test_result["root_true"], test_result["root_pred"], path)}
    if len(test):
        with torch.no_grad():
            logits = ensemble_logits(models, next(iter(TreeLoader(test[:1], batch_size=1)))
                                     .to(device))
        # binary classes drawn as the ends of the 5-class scale
        predicted = logits.argmax(-1).cpu() * (4 if logits.size(1) == 2 else 1)
        pictures["example_tree.png"] = lambda path: viz.draw_tree(
            test.trees[0], path, predicted,
            title="predicted sentiment (0 very negative ... 4 very positive)")
    return metrics, pictures


TASK = Task("sst", "tree models of sentiment (SST or synthetic)",
            "structrnn.tasks.sentiment.predictor", add_arguments, CONFIG_KEYS, prepare, build,
            finish, select="root", prefix="dev", units=seed_units)
