"""The PTB bracket grammar: one tree from bracket text, and the :class:`ParseError` that names
the line and the column of a problem.

The parser builds the nodes of whatever tree class it is given, so that it sits below
:class:`~structrnn.trees.tree.Tree` (whose ``from_ptb`` calls it) and imports no tree module;
:mod:`structrnn.trees.ptb` is the public face (``parse_ptb``, files).
"""

from __future__ import annotations

import re
from typing import Any

from structrnn._errors import InputError

__all__ = ["ParseError", "parse", "WHITESPACE"]

WHITESPACE = " \t\n\r\f\v"  # ASCII whitespace only: U+00A0 belongs to tokens
_WS = WHITESPACE

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


def _parse_fast(text: str, cls: type) -> Any:
    """The common case (brackets and single spaces, as SST): the same tree as :func:`_parse`,
    or None whenever anything is unusual, and then :func:`_parse` decides (and locates errors).
    No offsets are tracked, which makes it about twice as fast."""
    if _ODD_WS.search(text):
        return None
    new = object.__new__
    stack: list[Any] = []
    root = None
    want_label = False
    for piece in _PIECES.findall(text):
        if piece == "(":
            if want_label:
                return None
            node = new(cls)
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


def parse(text: str, cls: type, line_offset: int = 0, source: str | None = None) -> Any:
    """One tree from PTB bracket text, its nodes made as ``cls`` (the tree type: a class with
    ``label``, ``children`` and ``token`` slots) without calling its constructor (the text has
    been checked here). ``line_offset`` and ``source`` place errors in a file. Raises
    :class:`ParseError` with the line and column of the problem."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    tree = _parse_fast(text, cls)
    if tree is not None:
        return tree
    return _CheckedParse(text, cls, line_offset, source).run()


class _CheckedParse:
    """The careful parse: every piece checked, every error located (line and column)."""

    def __init__(self, text: str, cls: type, line_offset: int, source: str | None) -> None:
        self.text, self.cls, self.line_offset, self.source = text, cls, line_offset, source
        self.stack: list[Any] = []
        self.opened: list[int] = []  # offset of each open '('
        self.root: Any = None
        self.want_label = False

    def fail(self, offset: int, reason: str) -> ParseError:
        return _error(self.text, offset, reason, self.line_offset, self.source)

    def run(self) -> Any:
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
        node = object.__new__(self.cls)
        node.label, node.children, node.token = "", [], None
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


