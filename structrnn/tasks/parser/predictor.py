"""Raw sentences -> PTB trees with a trained parser (``structrnn parse``).

::

    import structrnn as sr

    parser = sr.load("runs/parser")                  # a run of structrnn train parser, or a file
    parser.predict(["A witty, seductive movie."])
    # [{"input": ..., "tokens": [...], "tree": "(X (X (X A) ...) (X .))", "error": None}]
    parser.predict_file("sentences.txt", "trees.txt")  # one PTB tree a line, in order
    parser.evaluate("test")                            # bracket F1 on the treebank's test split

``parser.model`` is the :class:`~structrnn.trees.parser.Parser` itself (``.parse`` gives
:class:`~structrnn.Tree` objects). A parser has the model-file format of every task:
``Parser.save`` and ``structrnn export`` write the same file, and ``Parser.load``,
``structrnn.load`` and ``structrnn parse`` read it, or the run folder itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from structrnn._errors import InputError
from structrnn.tasks.predictor import Predictor, chunks
from structrnn.training.logging import notice
from structrnn.training.logging import progress as progress_bar
from structrnn.trees.parser import Parser
from structrnn.trees.spans import spans_to_tree

__all__ = ["ParserPredictor", "PREDICTOR"]


class ParserPredictor(Predictor):
    """A trained :class:`~structrnn.trees.parser.Parser` with the ``Predictor`` interface."""

    tasks = ("parser",)

    @classmethod
    def from_run(cls, folder: Path, config: dict, device: torch.device) -> ParserPredictor:
        return cls("parser", config, [Parser.load(folder, map_location=device)], device)

    @classmethod
    def from_export(cls, state: dict, device: torch.device) -> ParserPredictor:
        return cls("parser", state["config"], [Parser.from_saved(state, "the model file")],
                   device)

    def export_state(self) -> dict[str, Any]:
        return {"parser": self.model.spec()}

    # ------------------------------------------------------------------------------ predict
    def predict(self, sentences: Sequence[str | Sequence[str]], *, batch_size: int = 256,
                progress: bool | None = None, png: str | Path | None = None) -> list[dict]:
        """Parse each sentence (a string, or a list of tokens).

        Returns:
            one dict per sentence, in order: ``input``, ``tokens`` (the leaves), ``tree`` (PTB
            bracket text, every node labelled ``X``) and ``error`` (None, or why this sentence
            has no tree: e.g. it is empty; the others are parsed as usual).
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        results: list[dict] = []
        for k, sentence in enumerate(sentences):
            results.append({"input": sentence, "tokens": None, "tree": None, "error": None})
            try:
                tokens = self.model.tokens_of(sentence, f"sentence {k}")
            except InputError as err:
                results[-1]["error"] = str(err)
                continue
            results[-1]["tokens"] = tokens
            if not tokens:
                results[-1]["error"] = "empty sentence: no tokens to parse"
        todo = [r for r in results if r["error"] is None]
        bar = progress_bar(total=len(todo), enabled=bool(progress), desc="parse")
        for _, batch in chunks(todo, batch_size):
            found = self.model.parse_spans([r["tokens"] for r in batch], batch_size)
            for r, spans in zip(batch, found, strict=True):
                r["tree"] = spans_to_tree(r["tokens"], spans).to_ptb()
            bar.update(len(batch))
        bar.close()
        if png and todo:
            self._draw(todo[0]["tree"], png)
        return results

    @staticmethod
    def _draw(ptb: str, path: str | Path) -> None:
        from structrnn import viz
        from structrnn.trees.tree import Tree

        try:
            viz.draw_tree(Tree.from_ptb(ptb), path, title="parse")
        except ImportError as err:
            notice(f"no picture: {err}")

    def predict_file(self, source: str | Path, destination: str | Path | None,
                     **options: Any) -> int:
        """Parse ``source``, one sentence a line, into ``destination`` (stdout when None): one
        PTB tree a line, in the same order. A blank line stays blank; a line that cannot be
        parsed gives ``# error: REASON``. Returns the number of lines."""
        path = Path(source)
        if not path.is_file():
            raise InputError(f"--input: no file {path}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise InputError(f"--input {path}: not UTF-8 text ({err})") from err
        results = self.predict(lines, **options)
        out = []
        for line, r in zip(lines, results, strict=True):
            if r["error"] is None:
                out.append(r["tree"])
            else:
                out.append("" if not line.strip() else f"# error: {r['error']}")
        text = "".join(line + "\n" for line in out)
        if destination is None:
            sys.stdout.write(text)
        else:
            from structrnn._io import atomic_write

            atomic_write(destination, lambda f: f.write(text.encode("utf-8")))
        return len(lines)

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """Bracket F1 on ``split`` of the treebank (the run's ``--data``, or ``data``), with
        the baselines scored the same way."""
        from structrnn.tasks.parser.task import baselines, data_folder, read_split, score

        trees = read_split(data_folder(data or self.config.get("data")), split)
        return {**score(self.model, trees), "sentences": len(trees),
                "baselines_f1": baselines(trees)}


PREDICTOR = ParserPredictor
