"""Raw sentences -> PTB trees with a trained parser (``structrnn parse``).

::

    import structrnn as sr

    parser = sr.load("runs/parser")                  # a run of structrnn train parser, or a file
    parser.predict(["A witty, seductive movie."])
    # [{"input": ..., "tokens": [...], "tree": "(X (X (X A) ...) (X .))", "error": None}]
    parser.predict_file("sentences.txt", "trees.txt")  # one PTB tree a line, in order
    parser.evaluate("test")                            # bracket F1 on the treebank's test split

``parser.model`` is the :class:`~structrnn.trees.parser.Parser` itself (``.parse`` gives
:class:`~structrnn.Tree` objects). A run of ``--seeds`` loads one parser per seed
(``parser.models``), which parse together: CKY of their mean span scores. A parser has the
model-file format of every task: ``Parser.save`` and ``structrnn export`` write the same file,
and ``Parser.load``, ``structrnn.load`` and ``structrnn parse`` read it, or the run folder
itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from structrnn._errors import InputError
from structrnn.tasks.parser.ensemble import parse_spans
from structrnn.tasks.predictor import Predictor, read_lines, write_output
from structrnn.training.logging import notice
from structrnn.training.seeds import seed_folders
from structrnn.trees.parser import Parser
from structrnn.trees.spans import spans_to_tree
from structrnn.trees.tree import Tree

__all__ = ["ParserPredictor", "PREDICTOR"]


class ParserPredictor(Predictor):
    """A trained :class:`~structrnn.trees.parser.Parser` with the ``Predictor`` interface.

    :meth:`predict` parses each sentence (a string, or a list of tokens); besides
    ``batch_size`` and ``progress`` it takes ``png`` (draw the first tree there). One dict per
    sentence, in order: ``input``, ``tokens`` (the leaves), ``tree`` (PTB bracket text, every
    node labelled ``X``) and ``error`` (None, or why this sentence has no tree).
    """

    tasks = ("parser",)

    @classmethod
    def from_run(cls, folder: Path, config: dict, device: torch.device) -> ParserPredictor:
        """The run's parser (``best.pt``), or for a run of ``--seeds`` every seed's
        (``units/seedS/best.pt``): an ensemble."""
        return cls("parser", config, [Parser.load(f, map_location=device)
                                      for f in seed_folders(folder, config)], device)

    @classmethod
    def from_export(cls, state: dict, device: torch.device) -> ParserPredictor:
        first = Parser.from_saved(state, "the model file")
        # an ensemble's members share the vocabularies and settings of "parser"
        rest = [Parser.from_spec(state["parser"], weights) for weights in state["models"][1:]]
        return cls("parser", state["config"], [first, *rest], device)

    def export_state(self) -> dict[str, Any]:
        return {"parser": self.model.spec()}

    # ------------------------------------------------------------------------------ predict
    predict_options: ClassVar[dict[str, Any]] = {"png": None}

    def check_inputs(self, inputs: Any) -> list:
        """A single string is one sentence."""
        return super().check_inputs([inputs] if isinstance(inputs, str) else inputs)

    def read_input(self, item: Any, options: dict[str, Any]) -> list[str]:
        """The sentence's tokens; InputError when it is not text or has none."""
        tokens = self.model.tokens_of(item)
        if not tokens:
            raise InputError("empty sentence: no tokens to parse")
        return tokens

    def forward_batch(self, inputs: list[list[str]], options: dict[str, Any]) -> list[Tree]:
        """The best tree of each tokenised sentence (an ensemble's: CKY of its members' mean
        span scores)."""
        found = parse_spans(self.models, inputs, len(inputs))
        return [spans_to_tree(tokens, spans) for tokens, spans in zip(inputs, found, strict=True)]

    def make_row(self, item: Any, index: int, output: Tree | None,
                 options: dict[str, Any]) -> dict:
        """``input``, ``tokens`` and ``tree`` (PTB text; None without ``output``)."""
        return {"input": item, "tokens": None if output is None else output.leaves(),
                "tree": None if output is None else output.to_ptb(), "error": None}

    def finish(self, rows: list[dict], options: dict[str, Any]) -> None:
        """``png``: draw the first tree."""
        first = next((r["tree"] for r in rows if r["error"] is None), None)
        if options["png"] and first is not None:
            self._draw(first, options["png"])

    @staticmethod
    def _draw(ptb: str, path: str | Path) -> None:
        from structrnn import viz

        try:
            viz.draw_tree(Tree.from_ptb(ptb), path, title="parse")
        except ImportError as err:
            notice(f"no picture: {err}")

    def predict_file(self, source: str | Path, destination: str | Path | None,
                     **options: Any) -> int:
        """Parse ``source``, one sentence a line, into ``destination`` (stdout when None): one
        PTB tree a line, in the same order. A blank line stays blank; a line that cannot be
        parsed gives ``# error: REASON``. Returns the number of lines."""
        lines = read_lines(source)
        results = self.predict(lines, **options)
        out = []
        for line, r in zip(lines, results, strict=True):
            if r["error"] is None:
                out.append(r["tree"])
            else:
                out.append("" if not line.strip() else f"# error: {r['error']}")
        write_output(destination, "".join(line + "\n" for line in out))
        return len(lines)

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """Bracket F1 on ``split`` of the treebank (the run's ``--data``, or ``data``), with
        the baselines scored the same way."""
        from structrnn.tasks.parser.task import baselines, data_folder, read_split, score

        trees = read_split(data_folder(data or self.config.get("data")), split)
        return {**score(self.models, trees), "sentences": len(trees),
                "baselines_f1": baselines(trees)}


PREDICTOR = ParserPredictor
