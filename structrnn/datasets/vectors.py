"""Pretrained word vectors from GloVe / word2vec text files, matched to a vocabulary."""

from __future__ import annotations

import gzip
import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from structrnn.trees.vocab import Vocab

__all__ = ["load_word_vectors", "Coverage"]

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

    A line whose number of fields is not ``dim + 1`` or whose numbers do not parse is skipped
    and reported (``coverage.bad_lines`` and a warning); numbers are parsed only for the words
    the vocabulary needs, so other lines are checked by their field count alone. ``dim``
    defaults to the header's, else to the first line's.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no word-vector file at {path}")
    exact = vocab.token_to_id
    by_lower: dict[str, list[int]] = {}
    if lower_fallback:
        for token, i in exact.items():
            by_lower.setdefault(token.lower(), []).append(i)
    rows: dict[int, np.ndarray] = {}
    exact_hit: set[int] = set()
    bad: list[int] = []
    with _open(path) as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n").rstrip(" ")
            except UnicodeDecodeError:
                bad.append(number)
                continue
            fields = line.split(" ")
            if number == 1 and len(fields) == 2 and all(p.isdigit() for p in fields):
                header_dim = int(fields[1])  # word2vec: "count dim"
                if dim is not None and dim != header_dim:
                    raise ValueError(f"dim: the header of {path} says {header_dim}, got {dim}")
                dim = header_dim
                continue
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    bad.append(number)
                    dim = None
                    continue
            if len(fields) != dim + 1:
                bad.append(number)
                continue
            word = fields[0]
            i = exact.get(word)
            targets = [i] if i is not None else []
            targets += [j for j in by_lower.get(word, ()) if j not in exact_hit and j != i]
            if not targets:
                continue
            try:
                vector = np.asarray(fields[1:], dtype=np.float32)  # parsed in C
            except ValueError:
                bad.append(number)
                continue
            if not np.isfinite(vector).all():  # a NaN/Inf row would poison training
                bad.append(number)
                continue
            for j in targets:
                rows[j] = vector
            if i is not None:
                exact_hit.add(i)
    if dim is None:
        raise ValueError(f"{path}: no word vectors found (empty file, or every line is bad)")
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
