"""PTB bracket text: parse one tree or a whole file, print trees back, and the
:class:`ParseError` that names the line and the column of a problem."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from structrnn._errors import InputError
from structrnn.trees.tree import WHITESPACE as _WS
from structrnn.trees.tree import Tree, gc_paused, new_node

__all__ = ["ParseError", "PTBFile", "parse_ptb", "read_ptb_file", "write_ptb_file"]

_PIECES = re.compile(r"[()]|[^()]+")
_ODD_WS = re.compile(r"[\t\n\r\f\v]")
_WS_RUN = re.compile(r"[ \t\n\r\f\v]+")


class ParseError(InputError):
    """Malformed tree text. ``line`` and ``column`` are 1-based (columns count characters); the
    message quotes the line around the error with a caret under the column."""

    def __init__(self, reason: str, line: int, column: int, text_line: str | None = None,
                 source: str | None = None, message: str | None = None):
        self.reason = reason
        self.line = line
        self.column = column
        self.source = source
        self.errors: list[ParseError] = [self]  # every bad line, for a whole file
        if message is None:
            where = f"{source}: " if source else ""
            message = f"{where}line {line}, column {column}: {reason}"
            if text_line is not None:
                message += "\n" + _quote(text_line, column)
        super().__init__(message)


def _quote(text_line: str, column: int, width: int = 72) -> str:
    """The line around ``column`` with a caret under it (long lines cut to ``width``)."""
    start = max(0, min(column - 1 - width // 2, len(text_line) - width))
    shown = text_line[start:start + width]
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + width < len(text_line) else ""
    caret = " " * (len(prefix) + column - 1 - start) + "^"
    return f"  {prefix}{shown}{suffix}\n  {caret}"


def _error(text: str, offset: int, reason: str, line_offset: int = 0,
           source: str | None = None) -> ParseError:
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    if line_end < 0:
        line_end = len(text)
    line = text.count("\n", 0, offset) + 1 + line_offset
    return ParseError(reason, line, offset - line_start + 1, text[line_start:line_end], source)


def parse_ptb(text: str) -> Tree:
    """Parse one tree from PTB bracket text (may span lines; surrounding whitespace is ignored).
    Raises :class:`ParseError` with the line and column of the problem."""
    with gc_paused():
        return _parse(text)


def _parse_fast(text: str) -> Tree | None:
    """The common case (brackets and single spaces, as SST): the same tree as :func:`_parse`,
    or None whenever anything is unusual, and then :func:`_parse` decides (and locates errors).
    No offsets are tracked, which makes it about twice as fast."""
    if _ODD_WS.search(text):
        return None
    new = object.__new__
    stack: list[Tree] = []
    root = None
    want_label = False
    for piece in _PIECES.findall(text):
        if piece == "(":
            if want_label:
                return None
            node = new(Tree)
            node.children = []
            node.token = None
            if stack:
                top = stack[-1]
                if top.token is not None:
                    return None
                top.children.append(node)
            elif root is None:
                root = node
            else:
                return None
            stack.append(node)
            want_label = True
        elif piece == ")":
            if want_label or not stack:
                return None
            stack.pop()
        elif want_label:
            label, _, token = piece.partition(" ")
            if not label:
                return None
            node = stack[-1]
            node.label = label
            if token:
                if token[0] == " " or token[-1] == " ":
                    return None
                node.token = token
            want_label = False
        elif piece.strip(" "):
            return None
    return root if not stack else None


def _parse(text: str, line_offset: int = 0, source: str | None = None) -> Tree:
    """Iterative PTB parser over bracket / text pieces (see :meth:`Tree.from_ptb`)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    tree = _parse_fast(text)
    if tree is not None:
        return tree
    return _CheckedParse(text, line_offset, source).run()


class _CheckedParse:
    """The careful parse: every piece checked, every error located (line and column)."""

    def __init__(self, text: str, line_offset: int, source: str | None) -> None:
        self.text, self.line_offset, self.source = text, line_offset, source
        self.stack: list[Tree] = []
        self.opened: list[int] = []  # offset of each open '('
        self.root: Tree | None = None
        self.want_label = False

    def fail(self, offset: int, reason: str) -> ParseError:
        return _error(self.text, offset, reason, self.line_offset, self.source)

    def run(self) -> Tree:
        for m in _PIECES.finditer(self.text):
            piece, start = m.group(), m.start()
            if piece == "(":
                self.open(start)
            elif piece == ")":
                self.close(start)
            elif self.want_label:
                self.label(piece)
            else:
                self.stray_text(piece, start)
        if self.stack:
            raise self.fail(self.opened[-1],
                            "unbalanced brackets: this '(' is never closed (end of input)")
        if self.root is None:
            raise ParseError("empty input: expected a tree such as (2 word)",
                             1 + self.line_offset, 1, self.text.split("\n", 1)[0], self.source)
        return self.root

    def open(self, start: int) -> None:
        stack = self.stack
        if self.want_label:
            raise self.fail(start, "missing label: '(' must be followed by a label")
        if not stack and self.root is not None:
            raise self.fail(start, "trailing garbage: a second tree starts after the end of "
                                   "the first (one tree per line)")
        if stack and stack[-1].token is not None:
            raise self.fail(start, "'(' after a token: a node has either a token or children")
        node = new_node("", None)
        if stack:
            stack[-1].children.append(node)
        else:
            self.root = node
        stack.append(node)
        self.opened.append(start)
        self.want_label = True

    def close(self, start: int) -> None:
        if not self.stack:
            raise self.fail(start, "unbalanced brackets: ')' has no matching '('")
        if self.want_label:  # only whitespace since the '('
            raise self.fail(self.opened[-1], "empty brackets '()': a node needs a label")
        self.stack.pop()
        self.opened.pop()

    def label(self, piece: str) -> None:
        body = piece.strip(_WS)
        if body:
            parts = _WS_RUN.split(body, 1)
            node = self.stack[-1]
            node.label = parts[0]
            if len(parts) > 1:
                node.token = parts[1]
            self.want_label = False

    def stray_text(self, piece: str, start: int) -> None:
        body = piece.lstrip(_WS)
        if body:
            at = start + len(piece) - len(body)
            if not self.stack:
                raise self.fail(at, "trailing garbage after the end of the tree"
                                if self.root is not None else "expected '(' at the start of a tree")
            raise self.fail(at, "text after a subtree: a node has either children or a token")


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
                trees.append(_parse(line, number - 1, source))
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
