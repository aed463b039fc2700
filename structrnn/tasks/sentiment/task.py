"""``structrnn train sst``: train a tree model on the Stanford Sentiment Treebank (or on the
built-in synthetic treebank) with progress bars, atomic checkpoints, exact resume, metrics
and pictures.

Run layout (``--out RUN``): ``config.json``, ``metrics.json`` (final figures),
``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (last epoch, for ``--resume``),
``best.pt`` (best dev root accuracy), ``vocab.json``, ``learning_curves.png``,
``confusion.png``, ``example_tree.png``, and with ``--tensorboard`` a ``tensorboard/`` folder.

Many processes: under ``torchrun`` (``WORLD_SIZE > 1``) each process trains on its shard of every
global batch with ``DistributedDataParallel`` (:mod:`structrnn.training.distributed`);
``--batch-size`` is
the global batch size and the weights after each step equal those of one process on the same
global batch. Rank 0 alone evaluates and writes files. One process iterates the same batches
(``DistributedSampler`` order with one replica), so a run's figures do not depend on the number
of processes (except for dropout masks, drawn per process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from structrnn._io import append_jsonl, atomic_write, write_json
from structrnn.datasets.sst import SST, default_data_root
from structrnn.datasets.synthetic import SyntheticSentiment
from structrnn.tasks.sentiment.model import MODELS, TreeSentiment, evaluate, node_loss
from structrnn.training import distributed
from structrnn.training.checkpoint import (
    check_finite,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from structrnn.trees.loader import TreeLoader
from structrnn.trees.vocab import Vocab

CONFIG_KEYS = ("dataset", "data", "model", "epochs", "batch_size", "lr", "embed_lr",
               "weight_decay", "dropout", "hidden", "embed_dim", "embed_init", "binary",
               "vectors", "init_from", "ema", "word_dropout", "seed", "max_trees",
               "synthetic_trees", "clip_grad")


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
    p.add_argument("--batch-size", type=int, default=25,
                   help="global batch size (under torchrun split evenly between the processes)")
    p.add_argument("--lr", type=float, default=0.05, help="Adagrad learning rate")
    p.add_argument("--embed-lr", type=float, default=0.1, help="learning rate of the embeddings")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--word-dropout", type=float, default=0.0, metavar="P",
                   help="in training, replace each word by the unknown word with probability P, "
                        "so that the unknown word's vector (read by every dev/test word outside "
                        "the training vocabulary) is trained")
    p.add_argument("--hidden", type=int, default=150)
    p.add_argument("--embed-dim", type=int, default=300)
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-trees", type=int, default=None,
                   help="use only the first N trees of each split (quick runs)")
    p.add_argument("--synthetic-trees", type=int, default=2000,
                   help="training trees of the synthetic treebank")
    p.add_argument("--clip-grad", type=float, default=None, help="clip the gradient norm")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999 per "
                        "step); it is the model evaluated, selected and saved")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (under torchrun: cuda:LOCAL_RANK)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (float16 autocast + GradScaler) on CUDA; ignored, with a "
                        "warning, on the CPU")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to OUT/tensorboard (needs the tensorboard package)")
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


def build_model(args, vocab: Vocab, num_classes: int, sparse: bool = False) -> TreeSentiment:
    """The model ``args`` describe; ``sparse``: sparse embedding gradients (see ``_run``)."""
    vectors = None
    if args.vectors:
        from structrnn.datasets.vectors import load_word_vectors

        vectors, coverage = load_word_vectors(args.vectors, vocab, dim=args.embed_dim)
        print(f"word vectors: {coverage}")
    return TreeSentiment(len(vocab), num_classes, args.model, args.embed_dim, args.hidden,
                         args.dropout, vectors, getattr(args, "embed_init", None), sparse,
                         getattr(args, "word_dropout", 0.0), vocab.unk_id)


def make_ema(model: TreeSentiment, decay: float | None):
    """An exponential moving average of ``model``'s weights (PyTorch's ``AveragedModel``), or
    None without ``decay``."""
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"--ema: expected a decay in (0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def init_from_run(model: TreeSentiment, run: str | Path, vocab: Vocab) -> str:
    """Copy a trained run's weights into ``model``: embedding rows by word (the vocabularies
    of two tasks differ), every other tensor whose name and shape match. Returns a summary."""
    run = Path(run)
    state = dict(load_checkpoint(run / "best.pt")["model"])
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


def _summary(prefix: str, result: dict) -> dict:
    keep = {"root_acc": "root", "all_nodes_acc": "all_nodes", "loss": "loss",
            "binary_root_acc": "binary_root"}
    return {f"{prefix}_{short}": result[k] for k, short in keep.items() if k in result}


def amp_enabled(requested: bool, device: torch.device) -> bool:
    """Mixed precision runs on CUDA only; elsewhere ``--amp`` is ignored with a warning."""
    if requested and device.type != "cuda":
        if distributed.is_main():
            print(f"warning: --amp needs a CUDA device; training on {device} in float32",
                  file=sys.stderr)
        return False
    return requested


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``; a ValueError naming the fix if the
    ``tensorboard`` package (not a dependency of structrnn) is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError("--tensorboard: the tensorboard package is not installed "
                         "(pip install tensorboard), or leave out --tensorboard") from err
    return SummaryWriter


def train_loader(train, args, epoch: int):
    """This process's batches for ``epoch``: a ``DistributedSampler`` permutation seeded by
    ``seed`` and ``epoch``, so one process and many see the same global batches."""
    seed = args.seed * 100_003
    return distributed.distributed_loader(
        train, args.batch_size, shuffle=True, seed=seed, epoch=epoch,
        # the loader's own seed draw comes from here, not from the global stream (dropout)
        generator=torch.Generator().manual_seed(seed + epoch))


def batch_loss(model, batch, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss to back-propagate and the global batch's mean node loss (for logging).

    One process: the mean cross-entropy over labelled nodes. Many: this process's sum divided
    by the global number of labelled nodes, times the number of processes, so that DDP's
    gradient average is the single-process gradient of the global batch.
    """
    with torch.autocast(batch.y.device.type, dtype=torch.float16, enabled=amp):
        logits = model(batch)
    if not distributed.is_distributed():
        loss = node_loss(logits.float(), batch.y)
        return loss, loss.detach()
    loss_sum = F.cross_entropy(logits.float(), batch.y, ignore_index=-1, reduction="sum")
    return distributed.global_mean_loss(loss_sum, (batch.y >= 0).sum())


def load_resume_state(path: Path) -> dict:
    """Rank 0 reads the checkpoint and sends it to every process (no shared disk needed);
    a missing file raises on every process."""
    state, error = None, None
    if distributed.is_main():
        try:
            state = load_checkpoint(path)
        except FileNotFoundError as err:
            error = str(err)
    state, error = distributed.broadcast_object((state, error))
    if error:
        raise FileNotFoundError(error)
    return state


def run(args) -> dict:
    """Train, select on dev root accuracy, evaluate on test; returns the final metrics.

    Under torchrun every process calls this; all of them return rank 0's metrics.
    """
    device = distributed.device_for_rank(args.device)
    launched = distributed.init_from_env(device)
    try:
        return _run(args, device)
    finally:
        if launched:
            distributed.cleanup()


def _run(args, device: torch.device) -> dict:
    out = Path(args.out)
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    if args.batch_size < 1 or args.batch_size % world:
        raise ValueError(f"--batch-size: the global batch size must be a multiple of the "
                         f"number of processes ({world}), got {args.batch_size}")
    amp = amp_enabled(getattr(args, "amp", False), device)
    writer_class = summary_writer_class() if getattr(args, "tensorboard", False) else None
    seed_everything(args.seed)
    train, dev, test = load_splits(args)
    num_classes = train.num_classes
    # Sparse embedding gradients let Adagrad touch only the rows of the batch's words instead
    # of all 16k x 300 (1.4x faster SST epochs, the same arithmetic). clip_grad_norm_ and the
    # NCCL all-reduce take dense gradients only, so those runs keep them dense.
    sparse = world == 1 and not args.clip_grad
    # torch says once, from inside Adagrad, that it skips checks on the sparse tensor it built
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    model = build_model(args, train.vocab, num_classes, sparse=sparse)
    if getattr(args, "init_from", None) and not args.resume:
        message = init_from_run(model, args.init_from, train.vocab)
        if main:
            print(message)
    model = model.to(device)
    optimizer = make_optimizer(model, args)
    ema = make_ema(model, getattr(args, "ema", None))
    scored = ema.module if ema is not None else model  # what dev selects and best.pt holds
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    if rank:  # the same initial weights everywhere (DDP broadcasts rank 0's), other dropout
        torch.manual_seed(args.seed * 1_000_003 + rank)
    start_epoch, best, history = 1, {"dev_root": -1.0, "epoch": 0}, []
    checkpoint_path = out / "checkpoint.pt"
    if args.resume:
        state = load_resume_state(checkpoint_path)
        # everything but the number of epochs must match: resuming may extend a run
        changed = sorted(k for k in config if k != "epochs" and state["config"].get(k) != config[k])
        if changed:
            raise ValueError(f"--resume: the run in {out} used other settings ({changed}); "
                             "pass the same arguments or a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if amp and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        ranks = state.get("rng_ranks")
        set_rng_state(ranks[rank] if ranks and len(ranks) == world else state["rng"])
        if main:
            write_json(out / "config.json", config)
            # the log as of the checkpoint: a crash after an epoch's line but before its
            # checkpoint would otherwise log that epoch twice
            lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in history).encode()
            atomic_write(out / "metrics.jsonl", lambda f: f.write(lines))
            print(f"resuming {out} after epoch {state['epoch']}")
    elif main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config)
        train.vocab.save(out / "vocab.json")
        (out / "metrics.jsonl").unlink(missing_ok=True)
    writer = writer_class(log_dir=str(out / "tensorboard")) if writer_class and main else None
    ddp_model = distributed.wrap(model, device)
    eval_loaders = {name: TreeLoader(ds, batch_size=256) for name, ds in
                    (("dev", dev), ("test", test))}
    for epoch in range(start_epoch, args.epochs + 1):
        ddp_model.train()
        loader = train_loader(train, args, epoch)
        began, total_loss, steps = time.perf_counter(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{args.epochs}",
                   disable=args.no_progress or not main, leave=False)
        for step, batch in enumerate(bar, 1):
            batch = batch.to(device)
            loss, shown = batch_loss(ddp_model, batch, amp)
            check_finite(shown, "the training loss", epoch, step)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # the scaler is a no-op without --amp
            if args.clip_grad:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            total_loss += float(shown)
            steps += 1
            bar.set_postfix(loss=f"{total_loss / steps:.3f}")
            if writer:
                writer.add_scalar("train/step_loss", float(shown), (epoch - 1) * len(loader) + step)
        seconds = time.perf_counter() - began
        if main:
            dev_result = evaluate(scored, eval_loaders["dev"], device)
        # after evaluating (its loaders draw from the global generator), for an exact resume;
        # a collective: every process calls it
        rngs = distributed.all_gather_object(rng_state())
        if not main:
            continue
        record = {"epoch": epoch, "train_loss": total_loss / max(steps, 1),
                  "epoch_seconds": seconds, **_summary("dev", dev_result)}
        history.append(record)
        append_jsonl(out / "metrics.jsonl", record)
        if writer:
            for key, value in record.items():
                if key != "epoch":
                    writer.add_scalar(f"epoch/{key}", value, epoch)
            writer.flush()
        print(f"epoch {epoch}: train loss {record['train_loss']:.4f}, dev root acc "
              f"{dev_result['root_acc']:.4f} ({seconds:.1f} s)")
        if dev_result["root_acc"] > best["dev_root"]:
            best = {"dev_root": dev_result["root_acc"], "epoch": epoch}
            save_checkpoint(out / "best.pt", model=scored.state_dict(), config=config,
                            epoch=epoch)
        save_checkpoint(checkpoint_path, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                        ema=ema.state_dict() if ema is not None else None,
                        epoch=epoch, best=best, history=history, config=config, rng=rngs[0],
                        rng_ranks=rngs if world > 1 else None)
    if writer:
        writer.close()
    metrics = finish(scored, out, config, best, history, eval_loaders, test, device) if main \
        else None
    return distributed.broadcast_object(metrics)


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
