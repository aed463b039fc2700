"""The served runs: each loaded predictor with its name, what ``GET /v1/models`` says of it, the
guards in front of its ``predict`` and one :class:`~structrnn.serve.batching.Batcher` per set of
options."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structrnn.serve.batching import Batcher
from structrnn.tasks.predictor import FORMAT_VERSION, Predictor

__all__ = ["ServeSettings", "ServedModel", "model_name", "named_runs"]

SENTIMENT_TASKS = ("sst",)
MOLECULE_TASKS = ("molecules",)


@dataclass
class ServeSettings:
    """The limits and the batching of ``structrnn serve`` (its flags of the same names).

    Attributes:
        max_batch: the most items one batched ``predict`` call takes (1: no batching).
        max_wait_ms: how long a batch that is not full waits for more requests.
        max_body: the most bytes of a request body (larger: 413).
        max_items: the most inputs of one request (more: 413).
        max_words: the most words of one sentence (longer: its row says so; a parser's CKY
            is cubic in the words, so one huge sentence must not hold the server).
    """

    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_body: int = 1 << 20
    max_items: int = 1024
    max_words: int = 512

    def __post_init__(self) -> None:
        for key in ("max_batch", "max_body", "max_items", "max_words"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected >= 1, got {getattr(self, key)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: expected >= 0, got {self.max_wait_ms}")


def model_name(path: str | Path) -> str:
    """A served model's name: its run folder's base name (a model file's, without ``.pt``)."""
    path = Path(path)
    return path.stem if path.is_file() else path.resolve().name


def named_runs(runs: Sequence[str | Path] | Mapping[str, str | Path | Predictor]) -> dict:
    """``{name: run}``: each run named by :func:`model_name`; ValueError when two share one."""
    if isinstance(runs, Mapping):
        return dict(runs)
    named: dict[str, str | Path] = {}
    for run in runs:
        name = model_name(run)
        if name in named:
            raise ValueError(f"runs: two runs named {name!r} ({named[name]} and {run}); a "
                             "model's name is its folder's base name")
        named[name] = run
    return named


def _words(item: str, limit: int) -> int:
    """The words of a sentence as the predictor counts them (the leaves of PTB text), or 0 when
    there can be no more than ``limit``: every token comes from at least one character, so a
    text of at most ``limit`` characters needs no tokenising here (predict tokenises it)."""
    if len(item) <= limit:
        return 0
    text = item.strip()
    if text.startswith("("):
        return text.count("(")  # an upper bound on the leaves, without parsing
    from structrnn.trees.tokenize import tokenize

    return len(tokenize(text))


@dataclass
class ServedModel:
    """One loaded run.

    Attributes:
        name: its name in the URLs.
        predictor: the loaded :class:`~structrnn.tasks.predictor.Predictor`.
        settings: the server's limits.
        parser: the parser predictor raw sentences go through (sentiment runs), or None.
        parser_name: its name, for the page.
        incoming: the requests on their way to a batcher (see
            :class:`~structrnn.serve.batching.Batcher`), or None.
    """

    name: str
    predictor: Predictor
    settings: ServeSettings
    parser: Predictor | None = None
    parser_name: str | None = None
    incoming: Callable[[], int] | None = None
    _batchers: dict[bool, Batcher] = field(default_factory=dict)
    _templates: dict[tuple, dict] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.predictor.task

    def options(self, nodes: bool) -> dict[str, Any]:
        """The ``predict`` options of a request."""
        if self.task not in SENTIMENT_TASKS:
            return {}
        options: dict[str, Any] = {"nodes": nodes, "progress": False}
        if self.parser is not None:
            options["parser"] = self.parser
        return options

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says of this model."""
        p = self.predictor
        info: dict[str, Any] = {"name": self.name, "task": self.task,
                                "format_version": FORMAT_VERSION}
        if self.task in SENTIMENT_TASKS:
            info.update(targets=["sentiment"], labels=list(p.class_names),
                        tree=f"parsed by {self.parser_name}" if self.parser else "balanced")
        elif hasattr(p, "target_names"):
            from structrnn.serve.chemistry import target_units

            info.update(targets=list(p.target_names), kind=p.kind,
                        labels=None if p.classes is None else [list(range(c))
                                                              for c in p.classes],
                        units={t: target_units(t, p.kind) for t in p.target_names},
                        ensemble=len(p.models))
        else:
            info.update(targets=None, labels=None)
        return info

    def error_row(self, options: dict[str, Any]) -> Callable[[Any, str], dict]:
        """(item, reason) -> a row shaped as ``predict``'s rows of unreadable inputs: every
        prediction key None (the keys of ``predict([""])``, an input no task reads)."""
        key = tuple(sorted((k, v) for k, v in options.items() if k != "parser"))
        if key not in self._templates:
            try:
                self._templates[key] = self.predictor.predict([""], **options)[0]
            except Exception:  # noqa: BLE001 - a task that raises for it: the plain shape
                self._templates[key] = {"input": None, "error": None}
        template = self._templates[key]

        def row(item: Any, reason: str) -> dict:
            text = item if isinstance(item, str) else repr(item)
            return {**dict.fromkeys(template), "input": text, "error": reason}

        return row

    def _guarded(self, options: dict[str, Any]) -> Callable[[list[Any]], list[dict]]:
        """``predict`` with ``options``, sentences over ``max_words`` answered without it."""
        error_row, limit = self.error_row(options), self.settings.max_words
        predict = self.predictor.predict

        def run(items: list[Any]) -> list[dict]:
            if self.task not in SENTIMENT_TASKS:
                return predict(items, **options)
            long = {k: n for k, item in enumerate(items) if isinstance(item, str)
                    and (n := _words(item, limit)) > limit}
            if not long:
                return predict(items, **options)
            rest = [item for k, item in enumerate(items) if k not in long]
            rows = iter(predict(rest, **options) if rest else [])
            return [error_row(item, f"sentence too long: {long[k]} words, this server "
                                    f"predicts at most {limit} (--max-words)")
                    if k in long else next(rows) for k, item in enumerate(items)]

        return run

    def batch_counts(self) -> dict[str, int]:
        """The ``predict`` calls made so far and the inputs they took (batching at work when
        there are fewer calls than inputs)."""
        return {"predict_calls": sum(b.batches for b in self.batchers()),
                "inputs": sum(b.items for b in self.batchers())}

    def batcher(self, nodes: bool, executor: Executor) -> Batcher:
        """The batcher of requests with these options (requests batch with their own kind)."""
        if nodes not in self._batchers:
            options = self.options(nodes)
            self._batchers[nodes] = Batcher(self._guarded(options), self.settings.max_batch,
                                            self.settings.max_wait_ms, executor,
                                            self.error_row(options), self.incoming)
        return self._batchers[nodes]

    def batchers(self) -> list[Batcher]:
        """The batchers made so far (one per set of options)."""
        return list(self._batchers.values())
