"""The ``structrnn`` command: train, evaluate, predict, draw, demo, benchmark.

Every sub-command has ``--help`` with examples. A bad argument or a missing data set ends with
exit code 2 and one line saying what is wrong (and, for data, where we looked). ``predict`` and
``parse`` never stop for one bad input: they exit 0, and that input's row says why (its
``"error"``, or ``# error: REASON`` for ``parse``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys

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
  structrnn serve runs/sst runs/esol --parser runs/parser   # http://127.0.0.1:8000/
"""

# task name -> (the module of its declaration, the declaration's name, one-line help); a task's
# module is imported only when its command runs (or asks for --help), so that `structrnn --help`
# starts at once
TASKS = {
    "sst": ("structrnn.tasks.sentiment.task", "TASK",
            "tree models of sentiment (SST or synthetic)"),
    "molecules": ("structrnn.tasks.molecules.task", "TASK",
                  "graph networks on molecules (SMILES)"),
    "tu": ("structrnn.tasks.molecules.task", "TU", "graph classification on a TU data set"),
    "shortest-path": ("structrnn.tasks.shortest_path.task", "TASK",
                      "the graph_nets shortest-path demo"),
    "circuits": ("structrnn.tasks.circuits.task", "TASK",
                 "random boolean circuits: a cell over DAG levels against graph networks"),
    "parser": ("structrnn.tasks.parser.task", "TASK",
               "a constituency parser learned from the treebank's own trees"),
}


PREDICT_EXAMPLES = """examples:
  structrnn predict runs/sst "a gorgeous, witty, seductive movie."
  structrnn predict runs/sst --input sentences.txt --output preds.jsonl
  structrnn predict runs/esol CCO c1ccccc1
  structrnn predict runs/esol --input new.csv --smiles-col smiles --output preds.csv
"""

EXPORT_EXAMPLES = """examples:
  structrnn export runs/esol esol.pt                       # structrnn.load("esol.pt") reads it
  structrnn export runs/esol esol.onnx --format onnx       # for onnxruntime (molecule runs)
  structrnn export runs/sst sst.onnx --format onnx --max-height 40   # tree runs: unrolled
"""


class UsageError(InputError):
    """A problem the user can fix: printed as one line, exit code 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse without its traps: a flag must be spelled in full (an abbreviation such as
    ``--epo`` would escape the typed-flag detection of a ``--config`` replay), and a usage
    error is one line on stderr, exit code 2. Its sub-parsers are of the same class."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if "unrecognized arguments" in message:
            message += " (flags are spelled in full)"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _task(name: str):
    """The declaration (:class:`~structrnn.training.task.Task`) of ``train name``."""
    module_name, attribute, _ = TASKS[name]
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except ImportError as err:
        raise UsageError(f"train {name}: {err} (pip install 'structrnn[all]')") from err


def _version() -> str:
    from structrnn import __version__

    return __version__


def build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; the flags of ``train TASK`` are added for ``task`` only."""
    parser = _ArgumentParser(
        prog="structrnn", description="Recurrent cells over sequences, trees and graphs.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"structrnn {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train a model", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (_, _, summary) in TASKS.items():
        p = tasks.add_parser(name, help=summary, description=summary,
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name == task:
            _task(name).add_arguments(p)

    ev = sub.add_parser("eval", help="evaluate a trained run on a split of its data")
    ev.add_argument("run", help="run folder or exported model file")
    ev.add_argument("--split", choices=["train", "dev", "val", "test"], default="test")
    ev.add_argument("--data", default=None, help="data root or folder (default: the run's)")
    ev.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")

    pr = sub.add_parser("predict", help="predict with a trained run or model file",
                        epilog=PREDICT_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("run", help="run folder or exported model file")
    pr.add_argument("inputs", nargs="*", metavar="INPUT",
                    help="sentences or PTB trees (sst), SMILES (molecules) ...")
    pr.add_argument("--input", default=None, metavar="FILE",
                    help="a file of inputs: text (one sentence or PTB tree a line) or a CSV")
    pr.add_argument("--output", default=None, metavar="FILE",
                    help="where the predictions go (JSON lines; a CSV for a CSV input); "
                         "default stdout")
    pr.add_argument("--smiles-col", default=None, help="molecules: the CSV's SMILES column")
    pr.add_argument("--nodes", action="store_true",
                    help="trees: also a prediction for every phrase")
    pr.add_argument("--png", default=None, help="trees: draw the first predicted tree here")
    pr.add_argument("--parser", default=None, metavar="RUN",
                    help="sentences: parse them with this parser run (structrnn train parser) "
                         "instead of a balanced tree")
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")

    pa = sub.add_parser("parse", help="parse raw sentences into PTB trees with a trained parser")
    pa.add_argument("run", help="run folder of 'structrnn train parser' or its model file")
    pa.add_argument("inputs", nargs="*", metavar="SENTENCE")
    pa.add_argument("--input", default=None, metavar="FILE", help="one sentence a line")
    pa.add_argument("--output", default=None, metavar="FILE",
                    help="one PTB tree a line, in the same order (default stdout)")
    pa.add_argument("--png", default=None, help="also draw the first tree here")
    pa.add_argument("--batch-size", type=int, default=256)
    pa.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    pa.add_argument("--no-progress", action="store_true", help="no progress bar")

    ex = sub.add_parser("export", help="write a trained run to one model file",
                        epilog=EXPORT_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("run", help="run folder")
    ex.add_argument("file", help="the model file to write")
    ex.add_argument("--format", choices=("structrnn", "torch", "onnx"), default="structrnn",
                    help="structrnn: read back with structrnn.load (default); torch: a "
                         "torch.export program (.pt2); onnx: an ONNX file for onnxruntime "
                         "(pip install 'structrnn[export]')")
    ex.add_argument("--check", action="store_true",
                    help="run the written file on the export's example and compare with "
                         "PyTorch")
    ex.add_argument("--max-height", type=int, default=None,
                    help="tree runs, torch/onnx: the deepest tree the file computes (its level "
                         "loop is unrolled that far; default 32)")

    sh = sub.add_parser("show", help="draw a PTB tree or a SMILES molecule to an image")
    sh.add_argument("text", help="'(3 (2 It) (4 works))' or a SMILES such as CCO")
    sh.add_argument("--out", default="show.png")

    demo = sub.add_parser("demo", help="train on the built-in treebank and draw a tree")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--epochs", type=int, default=4)

    _serve_arguments(sub)

    bench = sub.add_parser("bench", help="run a benchmark (structrnn.benchmarks)")
    bench.add_argument("name", choices=["sequence", "trees", "graphs", "molecules", "predict",
                                        "dags", "sst", "parse", "serve", "export", "accuracy"])
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _serve_arguments(sub) -> None:
    sv = sub.add_parser("serve", help="serve trained runs: a JSON API and a page (HTTP)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="Serve runs over HTTP: POST /v1/models/NAME/predict, "
                                    "GET /v1/models, /health, /ready, the page at /, OpenAPI "
                                    "at /docs. NAME is a run folder's base name.")
    sv.add_argument("runs", nargs="+", metavar="RUN", help="run folders or model files")
    sv.add_argument("--parser", default=None, metavar="PARSER_RUN",
                    help="parse sentences with this parser run (default: a balanced tree)")
    sv.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-batch", type=int, default=64,
                    help="the most inputs one batched forward takes (1: no batching)")
    sv.add_argument("--max-wait-ms", type=float, default=5.0,
                    help="how long a batch that is not full waits for more requests")
    sv.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                    help="larger request bodies get 413")
    sv.add_argument("--max-items", type=int, default=1024,
                    help="requests with more inputs get 413")
    sv.add_argument("--max-words", type=int, default=512,
                    help="longer sentences get an error row")
    sv.add_argument("--access-log", action="store_true", help="log every request")


def cmd_serve(args) -> int:
    from pathlib import Path

    try:
        from structrnn.serve.models import ServeSettings, named_runs
        from structrnn.serve.server import serve
    except ImportError as err:
        raise UsageError(f"{err} (pip install 'structrnn[serve]')") from err
    for run in [*args.runs, *([args.parser] if args.parser else [])]:
        if not Path(run).exists():
            raise UsageError(f"{run}: no such run folder or model file")
    try:
        settings = ServeSettings(args.max_batch, args.max_wait_ms, args.max_body,
                                 args.max_items, args.max_words)
        named_runs(args.runs)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return serve(args.runs, args.parser, host=args.host, port=args.port, settings=settings,
                 access_log=args.access_log)


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
    from structrnn.training.task import run_task

    try:
        metrics = run_task(_task(args.task), args)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone reports
        print(json.dumps(metrics, indent=2, default=str))
    return 0


def cmd_eval(args) -> int:
    from structrnn.tasks.predictor import load

    predictor = load(args.run, args.device)
    try:
        result = predictor.evaluate(args.split, args.data)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err
    print(json.dumps({"split": args.split, **result}, indent=2, default=str))
    return 0


def cmd_predict(args) -> int:
    from structrnn.tasks.predictor import load

    if bool(args.inputs) == bool(args.input):
        raise UsageError("predict: give the inputs on the command line or --input FILE "
                         "(one of the two)")
    predictor = load(args.run, args.device)
    # a bar for large inputs (the predictor decides), none with --no-progress
    options = {"batch_size": args.batch_size, "progress": False if args.no_progress else None}
    options.update({k: v for k, v in (("smiles_col", args.smiles_col), ("png", args.png),
                                      ("parser", args.parser)) if v is not None})
    if args.nodes:
        options["nodes"] = True
    return _write_predictions(predictor, args, options, "predictions",
                              lambda r: json.dumps(r, default=str))


def _write_predictions(predictor, args, options: dict, what: str, render) -> int:
    """``--input FILE`` through the predictor's own file format, or the command line's
    inputs rendered one line each, to ``--output`` (atomically) or stdout."""
    if args.input:
        count = predictor.predict_file(args.input, args.output, **options)
        if args.output:
            print(f"{count} {what} -> {args.output}", file=sys.stderr)
        return 0
    lines = "".join(render(r) + "\n" for r in predictor.predict(args.inputs, **options))
    if args.output:
        from structrnn._io import atomic_write

        atomic_write(args.output, lambda f: f.write(lines.encode()))
    else:
        sys.stdout.write(lines)
    return 0


def cmd_parse(args) -> int:
    from structrnn.tasks.predictor import load

    if bool(args.inputs) == bool(args.input):
        raise UsageError("parse: give the sentences on the command line or --input FILE "
                         "(one of the two)")
    predictor = load(args.run, args.device)
    if predictor.task != "parser":
        raise UsageError(f"parse: {args.run} is a {predictor.task!r} run, not a parser "
                         "(structrnn train parser)")
    options = {"batch_size": args.batch_size, "progress": False if args.no_progress else None}
    if args.png:
        options["png"] = args.png
    return _write_predictions(
        predictor, args, options, "trees",
        lambda r: r["tree"] if r["error"] is None else f"# error: {r['error']}")


def cmd_export(args) -> int:
    from structrnn.tasks.predictor import load

    options = {} if args.max_height is None else {"max_height": args.max_height}
    path = load(args.run).export(args.file, format=args.format, check=args.check, **options)
    print(f"exported {args.run} -> {path}", file=sys.stderr)
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
    from structrnn.training.task import run_task

    metrics = run_task(_task("sst"), train_args)
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
        handler = {"eval": cmd_eval, "predict": cmd_predict, "parse": cmd_parse,
                   "export": cmd_export, "serve": cmd_serve,
                   "show": cmd_show, "bench": cmd_bench}[args.command]
        return handler(args)
    except InputError as err:
        print(f"structrnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # NonFiniteError: the message names epoch and step
        print(f"structrnn {args.command}: stopped: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `structrnn eval RUN | head`: the reader left, nothing is lost
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"structrnn {args.command}: interrupted; the last finished epoch's checkpoint is "
              "kept (--resume continues)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
