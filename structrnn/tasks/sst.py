"""``structrnn train sst``: train a tree model on the Stanford Sentiment Treebank (or on the
built-in synthetic treebank) with progress bars, atomic checkpoints, exact resume, metrics
and pictures.

Run layout (``--out RUN``): ``config.json``, ``metrics.json`` (final figures),
``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (last epoch, for ``--resume``),
``best.pt`` (best dev root accuracy), ``vocab.json``, ``learning_curves.png``,
``confusion.png``, ``example_tree.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from structrnn.datasets.sst import SST, default_data_root
from structrnn.datasets.synthetic import SyntheticSentiment
from structrnn.schedule import TreeLoader
from structrnn.tasks.sentiment import MODELS, TreeSentiment, evaluate, node_loss
from structrnn.train import (
    append_jsonl,
    check_finite,
    load_checkpoint,
    resolve_device,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_json,
)
from structrnn.vocab import Vocab

CONFIG_KEYS = ("dataset", "data", "model", "epochs", "batch_size", "lr", "embed_lr",
               "weight_decay", "dropout", "hidden", "embed_dim", "binary", "vectors", "seed",
               "max_trees", "synthetic_trees", "clip_grad")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["sst", "synthetic"], default="sst",
                   help="sst (needs --data) or the built-in synthetic treebank")
    p.add_argument("--data", default=None,
                   help="folder with train.txt/dev.txt/test.txt (default $STRUCTRNN_DATA/sst)")
    p.add_argument("--download", action="store_true",
                   help="fetch the official SST archive into --data when it is missing")
    p.add_argument("--model", choices=MODELS, default="tree-lstm",
                   help="tree-lstm is the constituency (binary N-ary) Tree-LSTM of Tai et al.")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate")
    p.add_argument("--embed-lr", type=float, default=0.1, help="learning rate of the embeddings")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--hidden", type=int, default=150)
    p.add_argument("--embed-dim", type=int, default=300)
    p.add_argument("--binary", action="store_true",
                   help="train on the binary task (neutral roots dropped, 0-1 vs 3-4)")
    p.add_argument("--vectors", default=None,
                   help="GloVe/word2vec text file (gz or plain) to initialise the embeddings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-trees", type=int, default=None,
                   help="use only the first N trees of each split (quick runs)")
    p.add_argument("--synthetic-trees", type=int, default=2000,
                   help="training trees of the synthetic treebank")
    p.add_argument("--clip-grad", type=float, default=None, help="clip the gradient norm")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default="runs/sst", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


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
    return train, dev, test


def make_optimizer(model: TreeSentiment, args) -> torch.optim.Optimizer:
    """Adagrad (Tai et al. 2015); the embeddings get their own rate and no weight decay."""
    embed = list(model.embedding.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
    return torch.optim.Adagrad([
        {"params": rest, "lr": args.lr, "weight_decay": args.weight_decay},
        {"params": embed, "lr": args.embed_lr, "weight_decay": 0.0},
    ])


def build_model(args, vocab: Vocab, num_classes: int) -> TreeSentiment:
    vectors = None
    if args.vectors:
        from structrnn.datasets.vectors import load_word_vectors

        vectors, coverage = load_word_vectors(args.vectors, vocab, dim=args.embed_dim)
        print(f"word vectors: {coverage}")
    return TreeSentiment(len(vocab), num_classes, args.model, args.embed_dim, args.hidden,
                         args.dropout, vectors)


def _summary(prefix: str, result: dict) -> dict:
    keep = {"root_acc": "root", "all_nodes_acc": "all_nodes", "loss": "loss",
            "binary_root_acc": "binary_root"}
    return {f"{prefix}_{short}": result[k] for k, short in keep.items() if k in result}


def run(args) -> dict:
    """Train, select on dev root accuracy, evaluate on test; returns the final metrics."""
    out = Path(args.out)
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    device = resolve_device(args.device)
    seed_everything(args.seed)
    train, dev, test = load_splits(args)
    num_classes = train.num_classes
    model = build_model(args, train.vocab, num_classes).to(device)
    optimizer = make_optimizer(model, args)
    start_epoch, best, history = 1, {"dev_root": -1.0, "epoch": 0}, []
    checkpoint_path = out / "checkpoint.pt"
    if args.resume:
        state = load_checkpoint(checkpoint_path)
        # everything but the number of epochs must match: resuming may extend a run
        changed = sorted(k for k in config if k != "epochs" and state["config"].get(k) != config[k])
        if changed:
            raise ValueError(f"--resume: the run in {out} used other settings ({changed}); "
                             "pass the same arguments or a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        write_json(out / "config.json", config)
        set_rng_state(state["rng"])
        print(f"resuming {out} after epoch {state['epoch']}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config)
        train.vocab.save(out / "vocab.json")
        (out / "metrics.jsonl").unlink(missing_ok=True)
    eval_loaders = {name: TreeLoader(ds, batch_size=256) for name, ds in
                    (("dev", dev), ("test", test))}
    for epoch in range(start_epoch, args.epochs + 1):
        model.train()
        shuffle = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        loader = TreeLoader(train, batch_size=args.batch_size, shuffle=True, generator=shuffle)
        began, total_loss, steps = time.perf_counter(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", disable=args.no_progress,
                   leave=False)
        for step, batch in enumerate(bar, 1):
            batch = batch.to(device)
            loss = node_loss(model(batch), batch.y)
            check_finite(loss, "the training loss", epoch, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
            total_loss += float(loss.detach())
            steps += 1
            bar.set_postfix(loss=f"{total_loss / steps:.3f}")
        seconds = time.perf_counter() - began
        dev_result = evaluate(model, eval_loaders["dev"], device)
        record = {"epoch": epoch, "train_loss": total_loss / max(steps, 1),
                  "epoch_seconds": seconds, **_summary("dev", dev_result)}
        history.append(record)
        append_jsonl(out / "metrics.jsonl", record)
        print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, dev root acc "
              f"{dev_result['root_acc']:.4f} ({seconds:.1f} s)")
        if dev_result["root_acc"] > best["dev_root"]:
            best = {"dev_root": dev_result["root_acc"], "epoch": epoch}
            save_checkpoint(out / "best.pt", model=model.state_dict(), config=config,
                            epoch=epoch)
        save_checkpoint(checkpoint_path, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), epoch=epoch, best=best,
                        history=history, config=config, rng=rng_state())
    return finish(model, out, config, best, history, eval_loaders, test, device)


def finish(model, out: Path, config: dict, best: dict, history: list, eval_loaders: dict,
           test, device) -> dict:
    """Reload the best epoch, evaluate it, write metrics.json and the pictures."""
    if (out / "best.pt").is_file():
        model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
    dev_result = evaluate(model, eval_loaders["dev"], device)
    test_result = evaluate(model, eval_loaders["test"], device)
    binary = config["binary"]
    metrics = {
        "dev_fine_root": None if binary else dev_result["root_acc"],
        "test_fine_root": None if binary else test_result["root_acc"],
        "test_binary_root": (test_result["root_acc"] if binary
                             else test_result.get("binary_root_acc")),
        "test_fine_all_nodes": None if binary else test_result["all_nodes_acc"],
        "dev_root": dev_result["root_acc"],
        "test_root": test_result["root_acc"],
        "epoch_seconds": [h["epoch_seconds"] for h in history],
        "best_epoch": best["epoch"],
        "epochs": len(history),
    }
    write_json(out / "metrics.json", metrics)
    draw_pictures(model, out, history, test_result, test, device)
    return metrics


def draw_pictures(model, out: Path, history, test_result, test, device) -> None:
    try:
        from structrnn import viz
    except ImportError:  # pragma: no cover - matplotlib missing
        return
    viz.plot_learning_curves(history, out / "learning_curves.png",
                             keys=["train_loss", "dev_loss", "dev_root", "dev_all_nodes"])
    viz.plot_confusion(test_result["root_true"], test_result["root_pred"], out / "confusion.png")
    if len(test):
        model.eval()
        with torch.no_grad():
            batch = next(iter(TreeLoader(test[:1], batch_size=1))).to(device)
            logits = model(batch)
        # binary classes drawn as the ends of the 5-class scale
        predicted = logits.argmax(-1).cpu() * (4 if logits.size(1) == 2 else 1)
        viz.draw_tree(test.trees[0], out / "example_tree.png", predicted,
                      title="predicted sentiment (0 very negative ... 4 very positive)")
