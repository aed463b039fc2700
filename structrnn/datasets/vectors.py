"""Pretrained word vectors from GloVe / word2vec text files, matched to a vocabulary."""

from __future__ import annotations

import gzip
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from structrnn._errors import InputError
from structrnn.trees.vocab import Vocab

__all__ = ["load_word_vectors", "file_dim", "Coverage"]

log = logging.getLogger("structrnn")


class Coverage(NamedTuple):
    """How much of the vocabulary the file covered.

    ``found`` / ``total`` vocabulary entries got a vector (``fraction``); ``missing`` lists the
    tokens that did not; ``bad_lines`` the 1-based line numbers skipped as malformed."""

    found: int
    total: int
    fraction: float
    missing: list[str]
    bad_lines: list[int]
    dim: int

    def __str__(self) -> str:
        bad = f", {len(self.bad_lines)} bad lines skipped" if self.bad_lines else ""
        return (f"word vectors: {self.found} / {self.total} vocabulary tokens found "
                f"({100 * self.fraction:.1f}%), dim {self.dim}{bad}")


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _lines(path: Path) -> Iterator[tuple[int, list[str] | None]]:
    """``(1-based line number, fields)`` of each line; ``fields`` is None for a line that is
    not UTF-8. Fields are split on single spaces only: a token may hold U+00A0."""
    with _open(path) as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None
                continue
            yield number, line.rstrip("\r\n").rstrip(" ").split(" ")


def _is_header(number: int, fields: list[str]) -> bool:
    """word2vec's first line ``count dim``."""
    return number == 1 and len(fields) == 2 and all(p.isdigit() for p in fields)


def file_dim(path: str | os.PathLike) -> tuple[int, bool]:
    """``(dim, has_header)``: the dimension a word-vector file declares in its word2vec header,
    else that of its first line with a vector. InputError when no line holds one."""
    path = Path(path)
    for number, fields in _lines(path):
        if fields is None or len(fields) < 2:
            continue
        if _is_header(number, fields):
            return int(fields[1]), True
        return len(fields) - 1, False
    raise InputError(f"{path}: no word vectors found (empty file, or every line is bad)")


def _parse(fields: list[str]) -> np.ndarray | None:
    """The vector of a line, or None when a number does not parse or is not finite (a NaN/Inf
    row would poison training)."""
    try:
        vector = np.asarray(fields[1:], dtype=np.float32)  # parsed in C
    except ValueError:
        return None
    return vector if np.isfinite(vector).all() else None


def load_word_vectors(path: str | os.PathLike, vocab: Vocab, dim: int | None = None,
                      lower_fallback: bool = True, init_std: float = 0.1,
                      generator: torch.Generator | None = None,
                      verbose: bool = False) -> tuple[torch.Tensor, Coverage]:
    """Read a GloVe or word2vec text file (plain or gzip; a word2vec ``count dim`` header line
    is recognised), streaming line by line, and return ``(vectors, coverage)``.

    ``vectors`` is (len(vocab), dim) float32: row ``vocab[token]`` holds the token's vector;
    tokens not in the file get ``normal(0, init_std)`` (drawn from ``generator``). A token is
    looked up exactly first, then (``lower_fallback``) by its lower-cased form. Fields are
    separated by single spaces, so a token may contain other characters such as U+00A0.

    ``dim`` is the file's own (its header's, else its first line's, see :func:`file_dim`) when
    None; a ``dim`` that differs from the file's raises
    :class:`~structrnn._errors.InputError` naming both and the file. A line whose number of
    fields is not ``dim + 1`` or whose numbers do not parse is skipped and reported
    (``coverage.bad_lines`` and a warning); numbers are parsed only for the words the vocabulary
    needs, so other lines are checked by their field count alone.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no word-vector file at {path}")
    found, header = file_dim(path)
    if dim is not None and dim != found:
        raise InputError(f"{path}: the file's vectors have {found} dimensions (from its "
                         f"{'header' if header else 'first line'}), but dim={dim} was asked "
                         f"for; ask for {found} or leave the dimension to the file")
    dim = found
    exact = vocab.token_to_id
    by_lower: dict[str, list[int]] = {}
    if lower_fallback:
        for token, i in exact.items():
            by_lower.setdefault(token.lower(), []).append(i)
    rows: dict[int, np.ndarray] = {}
    exact_hit: set[int] = set()
    bad: list[int] = []
    for number, fields in _lines(path):
        if header and number == 1:
            continue
        if fields is None or len(fields) != dim + 1:
            bad.append(number)
            continue
        i = exact.get(fields[0])
        targets = [i] if i is not None else []
        targets += [j for j in by_lower.get(fields[0], ()) if j not in exact_hit and j != i]
        if not targets:
            continue
        vector = _parse(fields)
        if vector is None:
            bad.append(number)
            continue
        for j in targets:
            rows[j] = vector
        if i is not None:
            exact_hit.add(i)
    out = torch.randn(len(vocab), dim, generator=generator) * init_std
    if rows:
        ids = torch.tensor(list(rows), dtype=torch.long)
        out[ids] = torch.from_numpy(np.stack(list(rows.values())))
    missing = [t for t, i in exact.items() if i not in rows]
    coverage = Coverage(len(rows), len(vocab), len(rows) / max(len(vocab), 1), missing, bad, dim)
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
        warnings.warn(f"{path}: skipped {len(bad)} malformed line(s) (expected {dim + 1} fields "
                      f"per line, finite numbers): lines {shown}", stacklevel=2)
    log.info("%s", coverage)
    if verbose:
        print(coverage)
    return out, coverage
