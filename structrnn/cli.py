"""The ``structrnn`` command: train, evaluate, predict, draw, demo, benchmark.

Every sub-command has ``--help`` with examples. A bad argument or a missing data set ends with
exit code 2 and one line saying what is wrong (and, for data, where we looked).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from structrnn._errors import InputError

EXAMPLES = """examples:
  structrnn demo                                    # a few seconds on the built-in treebank
  structrnn train sst --data DIR --epochs 10 --out runs/sst
  structrnn train sst --dataset synthetic --epochs 5 --out runs/synthetic
  structrnn train molecules --dataset esol --data DIR --out runs/esol
  structrnn train tu --data DIR --out runs/mutag
  structrnn train shortest-path --out runs/shortest_path
  structrnn eval runs/sst --split test
  structrnn predict runs/sst "a gorgeous , witty , seductive movie ."
  structrnn show "(3 (2 It) (4 (3 works) (2 .)))" --out tree.png
  structrnn show CCO --out ethanol.png
"""

# task name -> (module, one-line help, fixed defaults); a task's module is imported only when
# its command runs (or asks for --help), so that `structrnn --help` starts at once
TASKS = {
    "sst": ("structrnn.tasks.sentiment.task", "tree models of sentiment (SST or synthetic)", {}),
    "molecules": ("structrnn.tasks.molecules.task", "graph networks on molecules (SMILES)", {}),
    "tu": ("structrnn.tasks.molecules.task", "graph classification on a TU data set",
           {"dataset": "mutag"}),
    "shortest-path": ("structrnn.tasks.shortest_path.task",
                      "the graph_nets shortest-path demo", {}),
}


class UsageError(InputError):
    """A problem the user can fix: printed as one line, exit code 2."""


def _task_module(name: str):
    module_name = TASKS[name][0]
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"train {name}: {err} (pip install 'structrnn[all]')") from err


def _version() -> str:
    from structrnn import __version__

    return __version__


def build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; the flags of ``train TASK`` are added for ``task`` only."""
    parser = argparse.ArgumentParser(
        prog="structrnn", description="Recurrent cells over sequences, trees and graphs.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"structrnn {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train a model", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (_, summary, defaults) in TASKS.items():
        p = tasks.add_parser(name, help=summary, description=summary,
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name == task:
            _task_module(name).add_arguments(p)
            p.set_defaults(**defaults)

    ev = sub.add_parser("eval", help="evaluate a trained SST run on a split")
    ev.add_argument("run", help="run folder written by 'structrnn train sst'")
    ev.add_argument("--split", choices=["train", "dev", "test"], default="test")
    ev.add_argument("--data", default=None, help="SST folder (default: the run's)")

    pr = sub.add_parser("predict", help="predict the sentiment of a sentence or a PTB tree")
    pr.add_argument("run", help="run folder written by 'structrnn train sst'")
    pr.add_argument("text", help="a sentence (given a balanced binary tree) or a PTB tree")
    pr.add_argument("--png", default=None, help="also draw the predicted tree here")

    sh = sub.add_parser("show", help="draw a PTB tree or a SMILES molecule to an image")
    sh.add_argument("text", help="'(3 (2 It) (4 works))' or a SMILES such as CCO")
    sh.add_argument("--out", default="show.png")

    demo = sub.add_parser("demo", help="train on the built-in treebank and draw a tree")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=4)

    bench = sub.add_parser("bench", help="run a benchmark (structrnn.benchmarks)")
    bench.add_argument("name", choices=["sequence", "trees", "graphs", "molecules"])
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _task_in(argv: list[str]) -> str | None:
    """The TASK of ``train TASK ...`` (global options never precede it)."""
    if len(argv) >= 2 and argv[0] == "train" and argv[1] in TASKS:
        return argv[1]
    return None


def cmd_train(parser, args, argv) -> int:
    if args.config:
        from structrnn.training.options import apply_config, explicit_dests

        task_parser = parser._subparsers._group_actions[0].choices["train"]
        task_parser = task_parser._subparsers._group_actions[0].choices[args.task]
        args = apply_config(args, explicit_dests(task_parser, argv[2:]))
    module = _task_module(args.task)
    try:
        metrics = module.run(args)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        print(json.dumps(metrics, indent=2, default=str))
    return 0


def _load_run(run: str):
    from structrnn.tasks.sentiment.model import TreeSentiment
    from structrnn.training.checkpoint import load_checkpoint
    from structrnn.trees.vocab import Vocab

    folder = Path(run)
    for name in ("config.json", "vocab.json", "best.pt"):
        if not (folder / name).is_file():
            raise UsageError(f"{folder}: no {name}; is this a run folder of 'structrnn train sst'?")
    config = json.loads((folder / "config.json").read_text())
    vocab = Vocab.load(folder / "vocab.json")
    classes = 2 if config["binary"] else 5
    model = TreeSentiment(len(vocab), classes, config["model"], config["embed_dim"],
                          config["hidden"], config["dropout"])
    model.load_state_dict(load_checkpoint(folder / "best.pt")["model"])
    model.eval()
    return config, vocab, model


def cmd_eval(args) -> int:
    from structrnn.datasets.sst import SST, default_data_root
    from structrnn.tasks.sentiment.model import evaluate
    from structrnn.trees.loader import TreeLoader

    config, vocab, model = _load_run(args.run)
    if config["dataset"] != "sst":
        raise UsageError("eval: only SST runs can be evaluated on a split")
    root = Path(args.data or config["data"] or default_data_root() / "sst")
    try:
        data = SST(root, args.split, binary=config["binary"], vocab=vocab)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    import torch

    result = evaluate(model, TreeLoader(data, batch_size=256), torch.device("cpu"))
    shown = {k: v for k, v in result.items() if not k.startswith("root_")}
    shown["root_acc"] = result["root_acc"]
    print(json.dumps({"split": args.split, **shown}, indent=2))
    return 0


def sentence_tree(text: str):
    """A PTB tree as given, or a balanced binary tree over a sentence's tokens (no parser
    ships with structrnn; a real parse gives better predictions)."""
    from structrnn.trees.tree import Tree

    if text.lstrip().startswith("("):
        return Tree.from_ptb(text)
    tokens = text.split()
    if not tokens:
        raise UsageError("predict: the text is empty")
    nodes = [Tree("2", token=t) for t in tokens]
    while len(nodes) > 1:  # pair neighbours level by level
        paired = [Tree("2", [nodes[i], nodes[i + 1]]) for i in range(0, len(nodes) - 1, 2)]
        nodes = paired + ([nodes[-1]] if len(nodes) % 2 else [])
    return nodes[0]


def cmd_predict(args) -> int:
    from structrnn.trees.loader import collate_trees
    from structrnn.trees.ptb import ParseError

    config, vocab, model = _load_run(args.run)
    try:
        tree = sentence_tree(args.text)
    except ParseError as err:
        raise UsageError(f"predict: {err}") from err
    import torch

    data = tree.to_data(vocab)
    with torch.no_grad():
        logits = model(collate_trees([data]))
    pred = logits.argmax(-1)
    if logits.size(1) == 2:
        pred = pred * 4  # binary classes on the ends of the 5-point scale
    labelled = tree.copy()
    for node, label in zip(labelled.subtrees(), pred.tolist()):
        node.label = str(label)
    names = ["very negative", "negative", "neutral", "positive", "very positive"]
    print(labelled.to_ptb())
    print(f"sentence: {names[int(pred[0])]} ({int(pred[0])})")
    if args.png:
        from structrnn import viz

        viz.draw_tree(tree, args.png, pred)
        print(f"drawn: {args.png}")
    return 0


def cmd_show(args) -> int:
    text = args.text.strip()
    if text.startswith("("):
        from structrnn import viz
        from structrnn.trees.ptb import ParseError
        from structrnn.trees.tree import Tree

        try:
            tree = Tree.from_ptb(text)
        except ParseError as err:
            raise UsageError(f"show: {err}") from err
        viz.draw_tree(tree, args.out)
    else:
        try:
            from rdkit import Chem
            from rdkit.Chem import Draw
        except ImportError as err:
            raise UsageError("show: drawing molecules needs RDKit (pip install "
                             "'structrnn[chem]')") from err
        mol = Chem.MolFromSmiles(text)
        if mol is None:
            raise UsageError(f"show: {text!r} is neither a PTB tree nor a valid SMILES")
        Draw.MolToFile(mol, args.out, size=(400, 300))
    print(f"drawn: {args.out}")
    return 0


def cmd_demo(parser, args) -> int:
    argv = ["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "1000",
            "--epochs", str(args.epochs), "--hidden", "64", "--embed-dim", "64",
            "--dropout", "0.2", "--out", args.out, "--overwrite"]
    print("structrnn " + " ".join(argv), file=sys.stderr)
    train_args = build_parser("sst").parse_args(argv)
    metrics = _task_module("sst").run(train_args)
    print(f"\nsynthetic treebank, constituency Tree-LSTM: test root accuracy "
          f"{metrics['test_fine_root']:.3f} (fine-grained), all nodes "
          f"{metrics['test_fine_all_nodes']:.3f}")
    print(f"pictures: {args.out}/example_tree.png, {args.out}/learning_curves.png")
    return 0


def cmd_bench(args) -> int:
    # a module of the installed package, so that it runs outside the source tree too
    return subprocess.call([sys.executable, "-m", f"structrnn.benchmarks.{args.name}",
                            *args.args])


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default ``sys.argv[1:]``); returns the exit code: 0 done,
    1 stopped (a non-finite loss, an interrupt), 2 bad input (one line on stderr). Any other
    exception is a bug and keeps its traceback."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_task_in(argv))
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(parser, args, argv)
        if args.command == "demo":
            return cmd_demo(parser, args)
        handler = {"eval": cmd_eval, "predict": cmd_predict, "show": cmd_show,
                   "bench": cmd_bench}[args.command]
        return handler(args)
    except InputError as err:
        print(f"structrnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # NonFiniteError: the message names epoch and step
        print(f"structrnn {args.command}: stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"structrnn {args.command}: interrupted; the last finished epoch's checkpoint is "
              "kept (--resume continues)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
