"""A trained sentiment run as a product: sentences, PTB trees or :class:`~structrnn.Tree` s in,
a sentiment per sentence (and per phrase) out.

::

    import structrnn as sr

    predictor = sr.load("runs/sst")                  # or a file written by predictor.save()
    [result] = predictor.predict(["a gorgeous, witty, seductive movie."])
    result["label"], result["label_name"], result["probs"]    # 4 'very positive' [...]
    result["tokens"], result["unknown_share"], result["tree"]  # treebank tokens, 0.0 'balanced'

An input is one of

- a raw sentence (a ``str``): tokenised as the treebank is
  (:func:`structrnn.trees.tokenize.tokenize`), then a balanced binary tree is put over the
  tokens (:func:`structrnn.trees.tokenize.balanced_tree`; ``"tree": "balanced"``), or, with
  ``parser=`` (a run or model file of ``structrnn train parser``, or its loaded predictor), the
  parser's tree (``"tree": "parsed"``);
- PTB bracket text (a ``str`` that starts with ``(``) or a :class:`~structrnn.Tree`: that tree
  as it is (``"tree": "gold"`` when every label is a sentiment class 0..4, as in SST, else
  ``"given"``). A sentence that itself starts with a bracket is read as a tree: pass
  ``balanced_tree(tokenize(text))`` for it.

Each result is a plain dict (JSON-ready): ``input``, ``label`` (0..4, or 0/1 for a binary run),
``label_name``, ``probs`` (one float per class, summing to 1), ``tokens``, ``unknown_words``
(the distinct tokens outside the run's vocabulary, in order), ``unknown_share`` (their share of
the tokens), ``tree`` (which tree was used), ``ptb`` (that tree with the predicted class on every
node), ``error`` (None, or why the input could not be read: then the prediction fields are None)
and, with ``nodes=True``, ``nodes``: one ``{"span", "label", "probs"}`` per node in pre-order
(root first).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import Tensor

from structrnn._errors import InputError
from structrnn.datasets.sst import CLASS_LABELS, SST, TreeDataset, default_data_root
from structrnn.levels.schedule import tree_schedule
from structrnn.tasks.predictor import (
    PROGRESS_FROM,
    Deployable,
    Predictor,
    best_state,
    load,
    load_weights,
)
from structrnn.tasks.sentiment.model import TreeSentiment, ensemble_logits
from structrnn.tasks.sentiment.model import evaluate as evaluate_model
from structrnn.training.seeds import seed_folders
from structrnn.trees.convert import trees_to_batch
from structrnn.trees.loader import TreeLoader
from structrnn.trees.tokenize import balanced_tree, tokenize
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

__all__ = ["SentimentPredictor", "PREDICTOR", "CLASS_NAMES", "PROGRESS_THRESHOLD"]

CLASS_NAMES = {5: ("very negative", "negative", "neutral", "positive", "very positive"),
               2: ("negative", "positive")}
PROGRESS_THRESHOLD = PROGRESS_FROM  # progress=None shows a bar for more inputs than this
# The exported file's default bound on a tree's height (SST's deepest gold tree is about 30
# edges deep; a balanced tree of 2**32 tokens is 32), and the trees it is traced on.
EXPORT_MAX_HEIGHT = 32
EXPORT_EXAMPLES = ("(3 (2 It) (4 (3 works) (2 .)))", "a gorgeous , witty , seductive movie .")
SPLITS = {"train": "train", "dev": "dev", "val": "dev", "test": "test"}
_FIELDS = ("label", "label_name", "probs", "tokens", "unknown_words", "unknown_share", "tree",
           "ptb")


class SentimentPredictor(Predictor):
    """A :class:`~structrnn.tasks.sentiment.model.TreeSentiment` model with its vocabulary
    (a run of ``--seeds``: one model per seed in :attr:`models`, whose class probabilities, at
    the root and at every node, are averaged).

    Attributes:
        vocab: the run's token vocabulary (a :class:`~structrnn.Vocab`, unknown word at id 0).
        class_names: a name per class (5 fine-grained classes, or 2 for a binary run).

    Build one with :func:`structrnn.load` (a run folder of ``structrnn train sst`` or an
    exported file), not directly. :meth:`predict` takes raw sentences, PTB bracket strings or
    :class:`~structrnn.Tree` s, and the options ``nodes`` (a prediction for every node, in
    pre-order, under ``"nodes"``), ``png`` (draw the first predicted tree, coloured by class,
    to this file) and ``parser`` (a run folder, model file or loaded predictor of ``structrnn
    train parser``: raw sentences get its tree instead of the balanced one). A tree whose
    nodes have more children than the model takes is an error of its own row.
    """

    tasks: ClassVar[tuple[str, ...]] = ("sst",)

    def __init__(self, config: dict, model: TreeSentiment | Sequence[TreeSentiment],
                 vocab: Vocab, device: torch.device, task: str = "sst") -> None:
        models = [model] if isinstance(model, torch.nn.Module) else list(model)
        super().__init__(task, config, models, device)
        self.vocab = vocab
        self.class_names = CLASS_NAMES[models[0].classifier.out_features]
        # the most children a node may have: the cells' arity (None: any number)
        arities = [m.arity for model in models for m in model.modules()
                   if isinstance(getattr(m, "arity", None), int)]
        self.arity = min(arities) if arities else None

    # -- loading and saving ---------------------------------------------------------------------
    @classmethod
    def from_run(cls, folder: Path, config: dict, device: torch.device) -> SentimentPredictor:
        """The run's best model (``best.pt``; a run of ``--seeds``: every seed's
        ``units/seedS/best.pt``, an ensemble) with its vocabulary (``vocab.json``, else the
        token list ``best.pt`` keeps)."""
        folder = Path(folder)
        states = [best_state(f) for f in seed_folders(folder, config)]
        state = states[0]
        if (folder / "vocab.json").is_file():
            try:
                vocab = Vocab.load(folder / "vocab.json")
            except ValueError as err:
                raise InputError(str(err)) from err
        elif "vocab" in state:
            vocab = _vocab_from_list(state["vocab"])
        else:
            raise InputError(f"{folder}: no vocab.json, and best.pt keeps no vocabulary")
        models = [_build_model(config, vocab, st["model"], str(f))
                  for st, f in zip(states, seed_folders(folder, config), strict=True)]
        return cls(config, models, vocab, device)

    @classmethod
    def from_export(cls, state: dict, device: torch.device) -> SentimentPredictor:
        """The predictor :meth:`save` wrote (``state`` as ``torch.load`` read it)."""
        if "vocab" not in state:
            raise InputError("the model file lacks vocab (the token list of the sst task)")
        vocab = _vocab_from_list(state["vocab"], state.get("vocab_unk", "<unk>"),
                                 bool(state.get("vocab_lower", False)))
        models = [_build_model(state["config"], vocab, weights, "the model file")
                  for weights in state["models"]]
        return cls(state["config"], models, vocab, device, state.get("task", "sst"))

    def export_state(self) -> dict[str, Any]:
        """The vocabulary as a list of tokens (the unknown word first), its unknown word and
        whether it lower-cases."""
        return {"vocab": list(self.vocab), "vocab_unk": self.vocab.unk,
                "vocab_lower": self.vocab.lower}

    def deployable(self, max_height: int = EXPORT_MAX_HEIGHT,
                   examples: Sequence[str] = EXPORT_EXAMPLES, **options: Any) -> Deployable:
        """The tree model with its level loop unrolled to ``max_height`` as one module
        (:class:`~structrnn.tasks.sentiment.deployed.DeployedSentiment`; its docstring lists
        the inputs and outputs), traced on ``examples`` (sentences or PTB text) with dynamic
        numbers of nodes and edges. A deeper tree is an error, never a wrong answer
        (:func:`~structrnn.tasks.sentiment.deployed.check_trees` before onnxruntime)."""
        from torch.export import Dim

        from structrnn.tasks.sentiment.deployed import (
            INPUT_NAMES,
            OUTPUT_NAMES,
            DeployedSentiment,
            tree_inputs,
        )

        if options:
            raise InputError(f"export: unknown option(s) {', '.join(options)} for a sentiment "
                             "run (max_height, examples)")
        if len(self.models) > 1:
            raise InputError(f"format: an ensemble of {len(self.models)} sentiment models "
                             "exports only format='structrnn' so far")
        if not isinstance(self.model, TreeSentiment):
            raise InputError(f"format: a sequence sentiment run ({self.config.get('model')!r}) "
                             "exports only format='structrnn' so far")
        module = DeployedSentiment(copy.deepcopy(self.model).cpu(), max_height).eval()
        trees = [_read_input(e)[0] for e in examples]
        inputs = tree_inputs(trees, self.vocab)
        nodes, edges = Dim("nodes", min=2), Dim("edges", min=1)
        shapes = ({0: nodes}, {1: edges}, {0: nodes})
        meta = {"structrnn.task": self.task, "structrnn.model": self.config.get("model"),
                "structrnn.max_height": max_height, "structrnn.classes": list(self.class_names),
                "structrnn.inputs": list(INPUT_NAMES), "structrnn.outputs": list(OUTPUT_NAMES),
                "structrnn.vocab": list(self.vocab), "structrnn.vocab_lower": self.vocab.lower,
                "structrnn.docs": "structrnn.tasks.sentiment.deployed"}
        return Deployable(module, inputs, shapes, list(INPUT_NAMES), list(OUTPUT_NAMES), meta)

    # -- predicting -----------------------------------------------------------------------------
    predict_options: ClassVar[dict[str, Any]] = {"nodes": False, "png": None, "parser": None}
    single_input_types: ClassVar[tuple[type, ...]] = (Tree,)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options with ``parser`` loaded (a path) and checked to be a parser."""
        options = super().check_options(options)
        parser = options["parser"]
        if isinstance(parser, (str, Path)):
            parser = load(parser, self.device)
        if parser is not None and (not isinstance(parser, Predictor) or parser.task != "parser"):
            what = getattr(parser, "task", type(parser).__name__)
            raise InputError(f"parser: expected a parser (a run of 'structrnn train parser', its "
                             f"model file or predictor), got {what!r}")
        return {**options, "parser": parser}

    def read_input(self, item: Any, options: dict[str, Any]) -> tuple[Tree, str]:
        """The tree to predict on and which it is (gold, given or balanced); InputError (a
        ParseError for bad PTB text) when there is none, or when a node has more children than
        the model's cell takes."""
        tree, kind = _read_input(item)
        if kind != "balanced" or (self.arity is not None and self.arity < 2):
            self._check_children(tree)  # (a balanced tree's nodes have at most 2 children)
        return tree, kind

    def read_chunk(self, items: Sequence[Any], options: dict[str, Any]) -> list[Any]:
        """With a parser, the raw sentences' balanced trees replaced by the parser's."""
        read = super().read_chunk(items, options)
        if options["parser"] is None:
            return read
        _parse_raw(options["parser"], items, read)
        for i, r in enumerate(read):
            try:
                if not isinstance(r, InputError) and r[1] == "parsed":
                    self._check_children(r[0])
            except InputError as err:
                read[i] = InputError(f"parser: {err}")
        return read

    def _check_children(self, tree: Tree) -> None:
        most = max(len(node.children) for node in tree.subtrees())
        if self.arity is not None and most > self.arity:
            raise InputError(f"a node has {most} children, but the {self.config.get('model')} "
                             f"model takes at most {self.arity} (binarize the tree: "
                             "Tree.binarize())")

    def forward_batch(self, inputs: list[tuple[Tree, str]],
                      options: dict[str, Any]) -> list[tuple[Tree, str, Tensor, Tensor]]:
        """Per tree: the tree, its kind, the predicted class (N,) and the probabilities (N, C)
        of its nodes, in pre-order, on the CPU (an ensemble's: its members' mean)."""
        batch = _tree_batch([tree for tree, _ in inputs], self.vocab, self.device)
        logits = ensemble_logits(self.models, batch).float()
        # argmax of the logits, as the evaluation takes it (softmax could tie rounded values)
        pred, probs = logits.argmax(-1).cpu(), logits.softmax(-1).cpu()
        ptr = batch.ptr.tolist()
        return [(tree, kind, pred[a:b], probs[a:b])
                for (tree, kind), a, b in zip(inputs, ptr[:-1], ptr[1:], strict=True)]

    def make_row(self, item: Any, index: int,
                 output: tuple[Tree, str, Tensor, Tensor] | None,
                 options: dict[str, Any]) -> dict:
        """The keys of the module docstring; every prediction key None without ``output``."""
        if output is None:
            row = {"input": _input_text(item), **dict.fromkeys(_FIELDS), "error": None}
            return {**row, "nodes": None} if options["nodes"] else row
        tree, kind, pred, probs = output
        tokens = tree.leaves()
        unknown = [t for t in tokens if t not in self.vocab]
        labels = pred.tolist()
        label = labels[0]
        result = {"input": _input_text(item), "label": label,
                  "label_name": self.class_names[label], "probs": probs[0].tolist(),
                  "tokens": tokens, "unknown_words": list(dict.fromkeys(unknown)),
                  "unknown_share": len(unknown) / len(tokens), "tree": kind,
                  "ptb": tree.to_ptb(labels), "error": None}
        if options["nodes"]:
            result["nodes"] = [{"span": span, "label": p, "probs": row}
                               for span, p, row in zip(node_spans(tree), labels,
                                                       probs.tolist(), strict=True)]
        return result

    def finish(self, rows: list[dict], options: dict[str, Any]) -> None:
        """``png``: draw the first predicted tree."""
        if options["png"] is not None:
            self._draw(rows, options["png"])

    def _draw(self, results: list[dict], png: str | Path) -> None:
        """The first prediction's tree, every node coloured by its predicted class."""
        first = next((r for r in results if r["error"] is None), None)
        if first is None:
            raise InputError(f"png: no input could be read, so there is no tree to draw to {png}")
        from structrnn import viz

        tree = Tree.from_ptb(first["ptb"])
        # a binary run's classes drawn on the ends of the 5-point colour scale
        scale = 4 if len(self.class_names) == 2 else 1
        try:
            viz.draw_tree(tree, png, [int(n.label) * scale for n in tree.subtrees()],
                          title=f"predicted sentiment ({first['tree']} tree)")
        except ImportError as err:
            raise InputError(f"png: {err}") from err

    # -- evaluating -----------------------------------------------------------------------------
    def evaluate(self, split: str = "test", data: str | Path | None = None) -> dict:
        """The run's figures on ``split`` of its data, as training reported them.

        Args:
            split: ``"train"``, ``"dev"`` (or ``"val"``) or ``"test"``.
            data: a folder with SST-format ``train.txt``/``dev.txt``/``test.txt`` (or a data root
                holding ``sst/``); default: the run's own data (its ``--data``, else
                ``$STRUCTRNN_DATA/sst``; a synthetic run's treebank is generated again from its
                settings). The run's ``--max-trees`` applies to its own data only.

        Returns:
            ``root_acc``, ``all_nodes_acc``, ``loss`` (mean node cross-entropy), for a 5-class
            model ``binary_root_acc``, and ``trees`` (how many were scored).
        """
        if split not in SPLITS:
            raise InputError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        dataset = self._split_data(SPLITS[split], data)
        result = evaluate_model(self.models, TreeLoader(dataset, batch_size=256), self.device)
        figures = {k: v for k, v in result.items() if not isinstance(v, Tensor)}
        return {**figures, "trees": len(dataset)}

    def _split_data(self, split: str, data: str | Path | None) -> TreeDataset:
        """The trees of ``split`` under this predictor's vocabulary."""
        config, binary = self.config, bool(self.config.get("binary"))
        if data is None and config.get("dataset") == "synthetic":
            from structrnn.tasks.sentiment.task import load_splits

            args = SimpleNamespace(**{"model": "tree-lstm", "synthetic_trees": 2000, "seed": 0,
                                      "max_trees": None, **config, "binary": binary})
            trees = dict(zip(("train", "dev", "test"), load_splits(args), strict=True))[split].trees
            return TreeDataset(trees, vocab=self.vocab, binary=binary)
        root = Path(data or config.get("data") or default_data_root() / "sst")
        if not (root / f"{split}.txt").is_file() and (root / "sst" / f"{split}.txt").is_file():
            root = root / "sst"
        try:
            dataset = SST(root, split, binary=binary, vocab=self.vocab)
        except FileNotFoundError as err:
            raise InputError(str(err)) from err
        max_trees = config.get("max_trees")
        return dataset[:max_trees] if max_trees and data is None else dataset


PREDICTOR = SentimentPredictor


def node_spans(tree: Tree) -> list[str]:
    """The words under each node of ``tree``, joined by spaces, in pre-order (root first)."""
    nodes, parents, _ = tree.flatten()
    # a subtree is a run of the pre-order, so its words are a run of the leaves: the words
    # before each node, and each node's count summed up from its children
    words = [node.token for node in nodes if node.token is not None]
    starts = list(accumulate((node.token is not None for node in nodes), initial=0))
    counts = [int(node.token is not None) for node in nodes]
    for i in range(len(nodes) - 1, 0, -1):
        counts[parents[i]] += counts[i]
    return [" ".join(words[a:a + n]) for a, n in zip(starts, counts)]


def _tree_batch(trees: list[Tree], vocab: Vocab, device: torch.device) -> Any:
    """``collate_trees([t.to_data(vocab) for t in trees]).to(device)``, the same batch and
    schedule, built without a ``Data`` per tree (:func:`~structrnn.trees.convert.trees_to_batch`;
    a request's few trees cost more to convert one by one than to run)."""
    batch = trees_to_batch(trees, vocab)
    batch.schedule = tree_schedule(batch.edge_index, batch.num_nodes, batch.height)
    return batch if device.type == "cpu" else batch.to(device)


def _read_input(item: Any) -> tuple[Tree, str]:
    """The tree to predict on and which it is: gold, given or balanced. Raises
    :class:`~structrnn.InputError` (a :class:`~structrnn.ParseError` for bad PTB text)."""
    if isinstance(item, Tree):
        tree = item
    elif isinstance(item, str):
        text = item.strip()
        if text.startswith("("):
            tree = Tree.from_ptb(text)
        else:
            tokens = tokenize(text)
            if not tokens:
                raise InputError("empty sentence: there is no word to predict from")
            return balanced_tree(tokens), "balanced"
    else:
        raise InputError(f"expected a sentence, PTB text or a Tree, got {type(item).__name__}")
    if not tree.leaves():
        raise InputError("the tree has no words to predict from")
    gold = all(node.label in CLASS_LABELS for node in tree.subtrees())
    return tree, "gold" if gold else "given"


def _parse_raw(parser: Predictor, chunk: Sequence[Any],
               read: list[tuple[Tree, str] | InputError]) -> None:
    """Replace the balanced trees of ``read`` by ``parser``'s trees of those sentences (or by
    the parser's error), in place."""
    todo = [i for i, r in enumerate(read) if not isinstance(r, InputError) and r[1] == "balanced"]
    if not todo:
        return
    for i, parsed in zip(todo, parser.predict([chunk[i] for i in todo]), strict=True):
        try:
            if parsed.get("error") is not None or not isinstance(parsed.get("tree"), str):
                raise InputError(parsed.get("error") or "no tree")
            read[i] = (Tree.from_ptb(parsed["tree"]), "parsed")
        except InputError as err:
            read[i] = InputError(f"parser: {err}")


def _input_text(item: Any) -> str:
    if isinstance(item, Tree):
        return item.to_ptb()
    return item if isinstance(item, str) else repr(item)


def _vocab_from_list(tokens: Sequence[str], unk: str | None = "<unk>",
                     lower: bool = False) -> Vocab:
    """A :class:`~structrnn.Vocab` from its token list (the unknown word first, when it has
    one), as ``list(vocab)`` gives it."""
    tokens = list(tokens)
    if unk is not None and (not tokens or tokens[0] != unk):
        raise InputError(f"vocab: expected the unknown word {unk!r} first, got "
                         f"{tokens[:1]!r}")
    return Vocab(tokens[1:] if unk is not None else tokens, unk=unk, lower=lower)


def _build_model(config: dict, vocab: Vocab, weights: dict, where: str) -> TreeSentiment:
    """The model ``config`` describes with ``weights`` loaded, in eval mode."""
    missing = [k for k in ("model", "embed_dim", "hidden") if config.get(k) is None]
    if missing:
        raise InputError(f"{where}: the config lacks {', '.join(missing)}")
    rows = weights.get("embedding.weight")
    if rows is not None and rows.size(0) != len(vocab):
        raise InputError(f"{where}: the vocabulary has {len(vocab)} tokens but the weights "
                         f"{rows.size(0)} embedding rows")
    from structrnn.tasks.sentiment.task import build_model

    # the weights replace the initial embedding: no vectors file is read
    args = SimpleNamespace(**{"dropout": 0.0, **config, "vectors": None, "embed_init": None,
                              "word_dropout": 0.0})
    return load_weights(build_model(args, vocab, 2 if config.get("binary") else 5), weights,
                        where)
