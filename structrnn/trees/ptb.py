"""PTB bracket text: parse one tree or a whole file, print trees back, and the
:class:`ParseError` that names the line and the column of a problem. (The grammar itself is in
:mod:`structrnn.trees.brackets`, below the :class:`Tree` type.)"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from structrnn.trees.brackets import WHITESPACE as _WS
from structrnn.trees.brackets import ParseError, parse
from structrnn.trees.tree import Tree, gc_paused

__all__ = ["ParseError", "PTBFile", "parse_ptb", "read_ptb_file", "write_ptb_file"]


def parse_ptb(text: str) -> Tree:
    """Parse one tree from PTB bracket text (may span lines; surrounding whitespace is ignored).
    Raises :class:`ParseError` with the line and column of the problem."""
    with gc_paused():
        return parse(text, Tree)


class PTBFile(NamedTuple):
    """What :func:`read_ptb_file` read: the good trees, their line numbers, and one
    :class:`ParseError` per bad line (``error.line`` is the file's line number)."""

    trees: list[Tree]
    line_numbers: list[int]
    errors: list[ParseError]

    @property
    def skipped_lines(self) -> list[int]:
        return [e.line for e in self.errors]


def read_ptb_file(path: str | os.PathLike, on_error: str = "raise",
                  encoding: str = "utf-8") -> PTBFile:
    """Read a file with one PTB tree per line (the SST format); blank lines are ignored.

    Every line is checked, so all bad lines are reported, not just the first:
    ``on_error="raise"`` raises one :class:`ParseError` (of the first bad line) whose message
    lists every bad line; ``"skip"`` returns the good trees and warns with the count and line
    numbers of the skipped ones (also in ``result.errors``). A file with no tree is an error.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tree file at {path}")
    trees: list[Tree] = []
    numbers: list[int] = []
    errors: list[ParseError] = []
    source = str(path)
    with open(path, "rb") as f, gc_paused():
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as err:
                column = len(raw[:err.start].decode(encoding, errors="replace")) + 1
                errors.append(ParseError(f"not valid {encoding}: {err.reason}", number, column,
                                         raw.decode(encoding, errors="replace").rstrip("\r\n"),
                                         source))
                continue
            line = line.rstrip("\r\n")
            if not line.strip(_WS):
                continue
            try:
                trees.append(parse(line, Tree, number - 1, source))
                numbers.append(number)
            except ParseError as err:
                errors.append(err)
    if errors:
        shown = "\n".join(f"  line {e.line}, column {e.column}: {e.reason}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        summary = (f"{source}: {len(errors)} bad line(s) "
                   f"({', '.join(str(e.line) for e in errors[:50])}"
                   f"{', ...' if len(errors) > 50 else ''})")
        if on_error == "raise":
            first = errors[0]
            err = ParseError(first.reason, first.line, first.column, source=source,
                             message=f"{summary}\n{shown}{more}\nthe first one:\n{first}")
            err.errors = errors
            raise err
        warnings.warn(f"{summary} skipped; {len(trees)} trees read", stacklevel=2)
    if not trees and not errors:
        raise ParseError(f"empty input: {source} holds no tree", 1, 1, None, None)
    return PTBFile(trees, numbers, errors)


def write_ptb_file(path: str | os.PathLike, trees: Iterable[Tree]) -> Path:
    """Write one tree per line, atomically."""
    from structrnn._io import atomic_write

    data = "".join(t.to_ptb() + "\n" for t in trees).encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
