"""Token vocabulary: token <-> id, with an unknown token at id 0."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = ["Vocab"]

_FORMAT = "structrnn.Vocab"


class Vocab:
    """Maps tokens to ids 0..len-1. The unknown token (default ``"<unk>"``) is id 0 and every
    token not in the vocabulary maps to it; with ``unk=None`` an unknown token is a ``KeyError``.
    With ``lower=True`` tokens are lower-cased before lookup (and when building), and so is
    ``unk`` (``unk="<UNK>"`` is stored as ``"<unk>"``, so a saved vocabulary loads back).

    There is no padding token: tree ``Data`` marks nodes without a token by ``x == -1``.
    """

    def __init__(self, tokens: Iterable[str] = (), unk: str | None = "<unk>",
                 lower: bool = False):
        if unk is not None and lower:
            unk = unk.lower()  # the id-0 token is looked up lower-cased like every other
        self.unk = unk
        self.lower = lower
        self.tokens: list[str] = []
        self.token_to_id: dict[str, int] = {}
        self.counts: Counter[str] | None = None  # token counts, when built by :meth:`build`
        for token in ([unk] if unk is not None else []) + list(tokens):
            if not isinstance(token, str):
                raise ValueError(f"tokens: expected strings, got {type(token).__name__} "
                                 f"{token!r}")
            if lower:
                token = token.lower()
            if token in self.token_to_id:
                if token == unk:
                    continue
                raise ValueError(f"tokens: {token!r} occurs twice")
            self.token_to_id[token] = len(self.tokens)
            self.tokens.append(token)

    @classmethod
    def build(cls, sources: Iterable[Any], min_count: int = 1, max_size: int | None = None,
              unk: str | None = "<unk>", lower: bool = False) -> Vocab:
        """Count tokens and keep those seen at least ``min_count`` times, most frequent first
        (ties in alphabetical order), at most ``max_size`` tokens besides ``unk``.

        ``sources``: :class:`~structrnn.Tree` objects (their tokens are counted) or lists of
        token strings (a bare string is refused: it would be counted character by character).
        """
        if min_count < 1:
            raise ValueError(f"min_count: expected >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        for i, source in enumerate(sources):
            if isinstance(source, str):
                raise ValueError(f"sources[{i}]: expected a Tree or a list of tokens, got the "
                                 f"string {source[:40]!r} (split it first)")
            tokens = source.leaves() if hasattr(source, "leaves") else source
            counts.update([t.lower() for t in tokens] if lower else tokens)
        if unk is not None:
            counts.pop(unk.lower() if lower else unk, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max_size]
        vocab = cls(kept, unk=unk, lower=lower)
        vocab.counts = counts
        return vocab

    @property
    def unk_id(self) -> int | None:
        return None if self.unk is None else 0

    def __len__(self) -> int:
        return len(self.tokens)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tokens)

    def __contains__(self, token: object) -> bool:
        if isinstance(token, str) and self.lower:
            token = token.lower()
        return token in self.token_to_id

    def __getitem__(self, token: str) -> int:
        """The token's id; an unknown token gives the unknown id (``KeyError`` if ``unk`` is
        None)."""
        if self.lower:
            token = token.lower()
        i = self.token_to_id.get(token)
        if i is None:
            if self.unk is None:
                raise KeyError(token)
            return 0
        return i

    def get(self, token: str, default: int | None = None) -> int | None:
        """The token's id, or ``default`` when it is not in the vocabulary."""
        return self.token_to_id.get(token.lower() if self.lower else token, default)

    def lookup_ids(self, tokens: Iterable[str]) -> list[int]:
        return [self[t] for t in tokens]

    def lookup_tokens(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """The tokens of ``ids`` (ints or a 1-D tensor)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"ids: expected ids in [0, {len(self.tokens)}), got {i}")
            out.append(self.tokens[i])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return (self.tokens, self.unk, self.lower) == (other.tokens, other.unk, other.lower)

    __hash__ = None

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.tokens[:5])
        more = ", ..." if len(self.tokens) > 5 else ""
        return f"Vocab({len(self)} tokens: [{head}{more}], unk={self.unk!r}, lower={self.lower})"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON, atomically."""
        from structrnn._io import write_json

        return write_json(path, {"format": _FORMAT, "version": 1, "unk": self.unk,
                                 "lower": self.lower, "tokens": self.tokens})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Read a vocabulary written by :meth:`save`.

        Args:
            path: the JSON file :meth:`save` wrote (not a run folder: a run's vocabulary is
                ``RUN/vocab.json``).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a vocabulary (not JSON, another format, or its first
                token is not the unknown token).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no vocabulary file at {path}")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a vocabulary file (invalid JSON: {err})") from None
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a vocabulary file (expected format {_FORMAT!r})")
        tokens = obj["tokens"]
        unk = obj["unk"]
        if unk is not None:
            if not tokens or tokens[0] != unk:
                raise ValueError(f"{path}: the unknown token {unk!r} must be id 0")
            tokens = tokens[1:]
        return cls(tokens, unk=unk, lower=obj["lower"])
