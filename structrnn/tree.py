"""Parse trees: PTB bracket text in and out, nltk / networkx conversion, and PyG ``Data``.

A :class:`Tree` node has a ``label``, ordered ``children`` and an optional ``token``; a node has
either a token or children (or neither), never both. Bracket text is the Penn Treebank form used
by the Stanford Sentiment Treebank (SST)::

    (3 (2 It) (4 (3 works) (2 .)))

A leaf's token is everything between its label and its closing bracket, kept exactly (SST has
tokens containing a no-break space U+00A0, e.g. ``8\\u00a01\\/2``, which ``str.split()`` would
cut; escapes such as ``\\/`` and ``-LRB-`` stay as written). Only ASCII whitespace separates a
label from what follows; brackets cannot occur inside a token (PTB writes ``-LRB-``/``-RRB-``).

:meth:`Tree.to_data` gives the layout of DESIGN.md section 2, one tree per ``Data``:

- nodes in pre-order, so the root is node 0 of its tree (in a PyG batch the roots are
  ``batch.ptr[:-1]``; no root mask is stored);
- ``edge_index`` (2, N-1) long, child -> parent (row 0 child, row 1 parent);
- ``pos`` (N,) long, the node's position among its parent's children (0 for the root);
  the slot of edge ``e`` is ``pos[edge_index[0, e]]``;
- ``height`` (N,) long, 0 for leaves, 1 + max over children;
- ``x`` (N,) long token ids from the vocabulary, -1 on nodes without a token;
- ``y`` (N,) long labels: ``int(label)`` for integer labels, else the id from ``label_vocab``,
  -1 where the label is not an integer (and no ``label_vocab`` is given);
- ``num_nodes``.

All fields are per node (except ``edge_index``, which PyG offsets), so PyG's ``DataLoader``
batches trees with no extra code. Nothing here recurses: a 100,000-deep chain parses, prints and
converts.
"""

from __future__ import annotations

import array
import gc
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from structrnn.vocab import Vocab

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import nltk
    from torch_geometric.data import Data

__all__ = ["Tree", "ParseError", "PTBFile", "read_ptb_file", "write_ptb_file"]

_WS = " \t\n\r\f\v"  # ASCII whitespace only: U+00A0 belongs to tokens
_PIECES = re.compile(r"[()]|[^()]+")
_ODD_WS = re.compile(r"[\t\n\r\f\v]")
_WS_RUN = re.compile(r"[ \t\n\r\f\v]+")
_INT = re.compile(r"-?[0-9]+\Z")
_REPR_LIMIT = 200


class ParseError(ValueError):
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


@contextmanager
def _gc_paused():
    """Trees hold no reference cycles, so the cyclic collector only slows building many nodes
    (it halves the time to read SST)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _new(label: str, token: str | None) -> Tree:
    """A node without validation (the parser has already checked the text)."""
    node = object.__new__(Tree)
    node.label = label
    node.children = []
    node.token = token
    return node


class Tree:
    """A parse-tree node: ``label`` (str), ``children`` (list of Tree), ``token`` (str or None).

    Mutable like a list; equality compares structure, labels and tokens. Every operation is
    iterative, so depth is limited only by memory.
    """

    __slots__ = ("label", "children", "token")
    __hash__ = None  # mutable

    def __init__(self, label: str | int, children: Iterable[Tree] | None = None,
                 token: str | None = None):
        label = str(label) if isinstance(label, int) else label
        if not isinstance(label, str) or not label or any(c in label for c in _WS + "()"):
            raise ValueError(f"label: expected a non-empty string without whitespace or brackets,"
                             f" got {label!r}")
        children = list(children) if children is not None else []
        for i, child in enumerate(children):
            if not isinstance(child, Tree):
                raise ValueError(f"children[{i}]: expected a Tree, got {type(child).__name__}")
        if token is not None:
            if not isinstance(token, str) or not token or "(" in token or ")" in token \
                    or token.strip(_WS) != token:
                raise ValueError("token: expected None or a non-empty string without brackets or "
                                 f"surrounding whitespace, got {token!r}")
            if children:
                raise ValueError(f"token: a node has either a token or children, got token "
                                 f"{token!r} and {len(children)} children")
        self.label = label
        self.children = children
        self.token = token

    # ---------------------------------------------------------------- parsing and printing
    @classmethod
    def from_ptb(cls, text: str) -> Tree:
        """Parse one tree from PTB bracket text (may span lines; surrounding whitespace is
        ignored). Raises :class:`ParseError` with the line and column of the problem."""
        with _gc_paused():
            return _parse(text)

    def to_ptb(self) -> str:
        """The tree as one line of PTB bracket text; ``from_ptb(t.to_ptb()) == t`` and SST lines
        print back byte-for-byte."""
        return "".join(self._ptb_pieces())

    def _ptb_pieces(self) -> Iterator[str]:
        stack: list[Any] = [self]
        while stack:
            item = stack.pop()
            if type(item) is str:
                yield item
            elif item.children:
                yield "(" + item.label
                stack.append(")")
                for child in reversed(item.children):
                    stack.append(child)
                    stack.append(" ")
            elif item.token is None:
                yield "(" + item.label + ")"
            else:
                yield "(" + item.label + " " + item.token + ")"

    def pretty(self, width: int = 80, indent: int = 2) -> str:
        """Indented multi-line PTB text: a subtree that fits in ``width`` stays on one line."""
        nodes, parents, _ = self._flatten()
        flat = [0] * len(nodes)
        for i in range(len(nodes) - 1, -1, -1):  # children come after parents in pre-order
            node = nodes[i]
            flat[i] += len(node.label) + 2 + (len(node.token) + 1 if node.token else 0)
            if i:
                flat[parents[i]] += flat[i] + 1
        index = {id(node): i for i, node in enumerate(nodes)}
        lines: list[str] = []
        stack: list[Any] = [(self, 0)]
        while stack:
            item = stack.pop()
            if item is None:
                lines[-1] += ")"
                continue
            node, depth = item
            pad = " " * (depth * indent)
            if depth * indent + flat[index[id(node)]] <= width or not node.children:
                lines.append(pad + node.to_ptb())
            else:
                lines.append(pad + "(" + node.label)
                stack.append(None)
                stack.extend((child, depth + 1) for child in reversed(node.children))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_ptb()

    def __repr__(self) -> str:
        text, size = [], 0
        for piece in self._ptb_pieces():
            text.append(piece)
            size += len(piece)
            if size > _REPR_LIMIT:
                head = "".join(text)[:_REPR_LIMIT]
                return f"<Tree {len(self)} nodes, height {self.height}: {head} ...>"
        return f"Tree.from_ptb({''.join(text)!r})"

    def __reduce__(self):
        # pickle (DataLoader workers, copy) through the text: the default would recurse
        return (_parse, (self.to_ptb(),))

    def copy(self) -> Tree:
        """A deep copy (iterative)."""
        return _parse(self.to_ptb())

    __copy__ = copy

    def __deepcopy__(self, memo: dict) -> Tree:
        return self.copy()

    # ---------------------------------------------------------------- structure
    def subtrees(self) -> Iterator[Tree]:
        """Every node, in pre-order (root first, then each child's subtree left to right)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def _flatten(self) -> tuple[list[Tree], list[int], list[int]]:
        """Pre-order nodes, each node's parent index (-1 for the root) and child position."""
        nodes: list[Tree] = []
        parents: list[int] = []
        positions: list[int] = []
        add_node, add_parent, add_position = nodes.append, parents.append, positions.append
        stack = [(self, -1, 0)]
        pop, push = stack.pop, stack.extend
        while stack:
            node, parent, position = pop()
            children = node.children
            if children:
                k = len(children)
                push(zip(reversed(children), repeat(len(nodes), k), range(k - 1, -1, -1)))
            add_node(node)
            add_parent(parent)
            add_position(position)
        return nodes, parents, positions

    @staticmethod
    def _heights(nodes: list[Tree], parents: list[int]) -> list[int]:
        heights = [0] * len(nodes)
        for i in range(len(nodes) - 1, 0, -1):  # reverse pre-order: children before parents
            p, h = parents[i], heights[i] + 1
            if h > heights[p]:
                heights[p] = h
        return heights

    def __len__(self) -> int:
        """Number of nodes."""
        count, stack = 0, [self]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.children)
        return count

    @property
    def height(self) -> int:
        """0 for a leaf, 1 + max over the children otherwise."""
        nodes, parents, _ = self._flatten()
        return self._heights(nodes, parents)[0]

    def is_leaf(self) -> bool:
        return not self.children

    def leaves(self) -> list[str]:
        """The tokens, left to right (as ``nltk.Tree.leaves``); nodes without a token are
        left out (:meth:`leaf_nodes` gives the nodes)."""
        return [node.token for node in self.subtrees() if node.token is not None]

    def leaf_nodes(self) -> list[Tree]:
        """The nodes without children, left to right."""
        return [node for node in self.subtrees() if not node.children]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tree):
            return NotImplemented
        stack = [(self, other)]
        while stack:
            a, b = stack.pop()
            if a.label != b.label or a.token != b.token or len(a.children) != len(b.children):
                return False
            stack.extend(zip(a.children, b.children))
        return True

    # ---------------------------------------------------------------- transformations
    def binarize(self, factor: str = "right",
                 label: str | Callable[[Tree], str] | None = None) -> Tree:
        """A new tree in which every node with more than two children is split into binary
        nodes. ``factor="right"``: ``(A a b c d)`` -> ``(A a (A' b (A' c d)))``; ``"left"``:
        ``(A (A' (A' a b) c) d)``. The new nodes' label ``A'`` is ``label`` (a string, or a
        function of the original node), by default the original node's label."""
        if factor not in ("left", "right"):
            raise ValueError(f"factor: expected 'left' or 'right', got {factor!r}")
        root_holder: list[Any] = [None]
        stack: list[tuple[Tree, list, int]] = [(self, root_holder, 0)]
        while stack:
            node, holder, slot = stack.pop()
            new = _new(node.label, node.token)
            holder[slot] = new
            kids = node.children
            k = len(kids)
            if k <= 2:
                new.children = [None] * k
                stack.extend((kids[i], new.children, i) for i in range(k))
                continue
            inner = node.label if label is None else label if isinstance(label, str) \
                else label(node)
            new.children = [None, None]
            cur = new.children
            if factor == "right":
                for i in range(k - 2):
                    stack.append((kids[i], cur, 0))
                    mid = _new(inner, None)
                    mid.children = [None, None]
                    cur[1] = mid
                    cur = mid.children
                stack.extend([(kids[k - 2], cur, 0), (kids[k - 1], cur, 1)])
            else:
                for i in range(k - 1, 1, -1):
                    stack.append((kids[i], cur, 1))
                    mid = _new(inner, None)
                    mid.children = [None, None]
                    cur[0] = mid
                    cur = mid.children
                stack.extend([(kids[0], cur, 0), (kids[1], cur, 1)])
        return root_holder[0]

    def collapse_unary(self, keep: str = "top", sep: str = "+",
                       collapse_leaves: bool = False) -> Tree:
        """A new tree in which each chain of single-child nodes becomes one node whose label is
        the chain's top label (``keep="top"``), bottom label (``"bottom"``) or all labels joined
        by ``sep`` (``"join"``, as nltk's ``collapse_unary``). A node above a token leaf is kept
        unless ``collapse_leaves``."""
        if keep not in ("top", "bottom", "join"):
            raise ValueError(f"keep: expected 'top', 'bottom' or 'join', got {keep!r}")
        root_holder: list[Any] = [None]
        stack: list[tuple[Tree, list, int]] = [(self, root_holder, 0)]
        while stack:
            node, holder, slot = stack.pop()
            labels = [node.label]
            end = node
            while len(end.children) == 1 and (end.children[0].children or collapse_leaves):
                end = end.children[0]
                labels.append(end.label)
            lab = labels[0] if keep == "top" else labels[-1] if keep == "bottom" \
                else sep.join(labels)
            new = _new(lab, end.token)
            new.children = [None] * len(end.children)
            holder[slot] = new
            stack.extend((child, new.children, i) for i, child in enumerate(end.children))
        return root_holder[0]

    # ---------------------------------------------------------------- conversions
    def to_data(self, vocab: Mapping[str, int] | Any,
                label_vocab: Mapping[str, int] | None = None) -> Data:
        """The tree as a ``torch_geometric.data.Data`` (layout in the module docstring).

        Args:
            vocab: token -> id (a :class:`~structrnn.Vocab`, which maps unknown tokens to its
                unknown id, or any mapping; a token missing from a plain mapping is an error).
            label_vocab: label -> class id; by default integer labels are used as they are and
                other labels become -1.

        Returns ``Data`` with ``x`` (N,), ``y`` (N,), ``pos`` (N,), ``height`` (N,) and
        ``edge_index`` (2, N-1), all long, nodes in pre-order.
        """
        from torch_geometric.data import Data

        nodes, parents, positions = self._flatten()
        n = len(nodes)
        tokens = [node.token for node in nodes]
        if isinstance(vocab, Vocab) and not vocab.lower and vocab.unk is not None:
            ids = vocab.token_to_id  # fast path: unknown tokens -> 0
            x = [-1 if token is None else ids.get(token, 0) for token in tokens]
        else:
            try:
                x = [-1 if token is None else vocab[token] for token in tokens]
            except KeyError as err:
                raise ValueError(f"vocab: token {err.args[0]!r} is not in the vocabulary (use a"
                                 " structrnn.Vocab, which maps unknown tokens to <unk>)") from None
        labels = [node.label for node in nodes]
        if label_vocab is None:
            table = {lab: int(lab) if _INT.match(lab) else -1 for lab in set(labels)}
        else:
            table = {lab: label_vocab.get(lab, -1) for lab in set(labels)}
        y = [table[lab] for lab in labels]
        heights = self._heights(nodes, parents)
        # one buffer for every field: per-call tensor overheads dominate for small trees
        buf = array.array("q", x)
        for row in (y, positions, heights, range(n), parents):
            buf.extend(row)
        fields = torch.frombuffer(buf, dtype=torch.long).view(6, n)
        x_, y_, pos_, height_ = fields[:4].unbind(0)
        edge_index = fields[4:, 1:].contiguous()  # rows: child ids, their parents
        return Data(x=x_, edge_index=edge_index, y=y_, pos=pos_, height=height_, num_nodes=n)

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph`` with nodes 0..N-1 in pre-order (root 0, also in
        ``g.graph["root"]``), edges parent -> child, node attributes ``label``, ``token``,
        ``pos`` (position under the parent)."""
        import networkx as nx

        nodes, parents, positions = self._flatten()
        g = nx.DiGraph(root=0)
        with _gc_paused():
            g.add_nodes_from((i, {"label": node.label, "token": node.token,
                                  "pos": positions[i]}) for i, node in enumerate(nodes))
            g.add_edges_from((parents[i], i) for i in range(1, len(nodes)))
        return g

    @classmethod
    def from_networkx(cls, g: nx.DiGraph, root: Any = None) -> Tree:
        """Build a tree from a rooted ``networkx.DiGraph`` (edges parent -> child). Node
        attributes: ``label`` (required), ``token`` (optional), ``pos`` (optional; orders the
        children, otherwise the graph's successor order). ``root`` defaults to
        ``g.graph["root"]``, else the only node with no incoming edge."""
        if g.number_of_nodes() == 0:
            raise ValueError("g: expected a tree, got a graph with no nodes")
        if not g.is_directed():
            raise ValueError("g: expected a directed graph (edges parent -> child)")
        if root is None:
            root = g.graph.get("root")
        if root is None:
            roots = [v for v, d in g.in_degree() if d == 0]
            if len(roots) != 1:
                raise ValueError(f"g: expected exactly one node with no incoming edge (the root), "
                                 f"got {len(roots)}")
            root = roots[0]
        if root not in g:
            raise ValueError(f"root: node {root!r} is not in the graph")
        bad = [v for v, d in g.in_degree() if d != (0 if v == root else 1)]
        if bad:
            raise ValueError(f"g: not a tree rooted at {root!r}: node {bad[0]!r} has in-degree "
                             f"{g.in_degree(bad[0])}")

        def make(v):
            attrs = g.nodes[v]
            if "label" not in attrs:
                raise ValueError(f"g: node {v!r} has no 'label' attribute")
            return cls(attrs["label"], token=attrs.get("token"))

        top = make(root)
        stack, seen = [(root, top)], 1
        with _gc_paused():
            while stack:
                v, node = stack.pop()
                succ = list(g.successors(v))
                if succ and node.token is not None:
                    raise ValueError(f"g: node {v!r} has a token and children")
                if all("pos" in g.nodes[s] for s in succ):
                    succ.sort(key=lambda s: g.nodes[s]["pos"])
                for s in succ:
                    child = make(s)
                    node.children.append(child)
                    stack.append((s, child))
                seen += len(succ)
        if seen != g.number_of_nodes():
            raise ValueError(f"g: {g.number_of_nodes() - seen} nodes are not reachable from the "
                             f"root {root!r} (a cycle?)")
        return top

    def to_nltk(self) -> nltk.Tree:
        """An ``nltk.Tree``: a token leaf ``(2 It)`` becomes ``nltk.Tree("2", ["It"])``."""
        from nltk import Tree as NLTKTree

        top = NLTKTree(self.label, [])
        stack = [(self, top)]
        while stack:
            node, out = stack.pop()
            if node.token is not None:
                out.append(node.token)
            for child in node.children:
                sub = NLTKTree(child.label, [])
                out.append(sub)
                stack.append((child, sub))
        return top

    @classmethod
    def from_nltk(cls, tree: nltk.Tree) -> Tree:
        """From an ``nltk.Tree``. A node whose children are all strings becomes a token leaf
        (several strings are joined by one space); a node mixing strings and subtrees is an
        error."""
        from nltk import Tree as NLTKTree

        if not isinstance(tree, NLTKTree):
            raise ValueError(f"tree: expected an nltk.Tree, got {type(tree).__name__}")
        holder: list[Any] = [None]
        stack = [(tree, holder, 0)]
        while stack:
            src, out, slot = stack.pop()
            strings = [c for c in src if isinstance(c, str)]
            if strings and len(strings) != len(src):
                raise ValueError(f"tree: node {src.label()!r} mixes tokens and subtrees")
            node = cls(src.label(), token=" ".join(strings) if strings else None)
            out[slot] = node
            if not strings:
                node.children = [None] * len(src)
                stack.extend((child, node.children, i) for i, child in enumerate(src))
        return holder[0]


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

    def fail(offset: int, reason: str) -> ParseError:
        return _error(text, offset, reason, line_offset, source)

    stack: list[Tree] = []
    opened: list[int] = []  # offset of each open '('
    root: Tree | None = None
    want_label = False
    for m in _PIECES.finditer(text):
        piece = m.group()
        start = m.start()
        if piece == "(":
            if want_label:
                raise fail(start, "missing label: '(' must be followed by a label")
            if not stack and root is not None:
                raise fail(start, "trailing garbage: a second tree starts after the end of the "
                                  "first (one tree per line)")
            if stack and stack[-1].token is not None:
                raise fail(start, "'(' after a token: a node has either a token or children")
            node = _new("", None)
            if stack:
                stack[-1].children.append(node)
            else:
                root = node
            stack.append(node)
            opened.append(start)
            want_label = True
        elif piece == ")":
            if not stack:
                raise fail(start, "unbalanced brackets: ')' has no matching '('")
            if want_label:  # only whitespace since the '('
                raise fail(opened[-1], "empty brackets '()': a node needs a label")
            stack.pop()
            opened.pop()
        elif want_label:
            body = piece.strip(_WS)
            if body:
                parts = _WS_RUN.split(body, 1)
                node = stack[-1]
                node.label = parts[0]
                if len(parts) > 1:
                    node.token = parts[1]
                want_label = False
        else:
            body = piece.lstrip(_WS)
            if body:
                at = start + len(piece) - len(body)
                if not stack:
                    raise fail(at, "trailing garbage after the end of the tree"
                               if root is not None else "expected '(' at the start of a tree")
                raise fail(at, "text after a subtree: a node has either children or a token")
    if stack:
        raise fail(opened[-1], "unbalanced brackets: this '(' is never closed (end of input)")
    if root is None:
        raise ParseError("empty input: expected a tree such as (2 word)", 1 + line_offset, 1,
                         text.split("\n", 1)[0], source)
    return root


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
    with open(path, "rb") as f, _gc_paused():
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
    from structrnn.train import atomic_write

    data = "".join(t.to_ptb() + "\n" for t in trees).encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))
