"""Parse trees: PTB bracket text in and out, nltk / networkx conversion, and PyG ``Data``.

A :class:`Tree` node has a ``label``, ordered ``children`` and an optional ``token``; a node has
either a token or children (or neither), never both. Bracket text is the Penn Treebank form used
by the Stanford Sentiment Treebank (SST)::

    (3 (2 It) (4 (3 works) (2 .)))

A leaf's token is everything between its label and its closing bracket, kept exactly (SST has
tokens containing a no-break space U+00A0, e.g. ``8\\u00a01\\/2``, which ``str.split()`` would
cut; escapes such as ``\\/`` and ``-LRB-`` stay as written). Only ASCII whitespace separates a
label from what follows; brackets cannot occur inside a token (PTB writes ``-LRB-``/``-RRB-``).

:meth:`Tree.to_data` gives the layout of docs/architecture.md ("Data layout"), one tree per
``Data``:

- nodes in pre-order, so the root is node 0 of its tree (in a PyG batch the roots are
  ``batch.ptr[:-1]``; no root mask is stored);
- ``edge_index`` (2, N-1) long, child -> parent (row 0 child, row 1 parent);
- ``child_index`` (N,) long, the node's position among its parent's children (0 for the
  root); the slot of edge ``e`` is ``child_index[edge_index[0, e]]`` (``pos`` is left to PyG's
  meaning, node coordinates: a tree batch has none);
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

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

from structrnn.trees import convert
from structrnn.trees.brackets import WHITESPACE, parse
from structrnn.trees.convert import gc_paused, node_heights

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import nltk
    from torch_geometric.data import Data

# gc_paused, node_heights and WHITESPACE live below Tree (in convert and brackets, which import no
# tree module); they stay importable from here
__all__ = ["Tree", "gc_paused", "node_heights", "new_node", "WHITESPACE"]

_WS = WHITESPACE
_REPR_LIMIT = 200
_BAD_LABEL = re.compile("[" + re.escape(_WS) + "()]")


def new_node(label: str, token: str | None) -> Tree:
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
        with gc_paused():
            return parse(text, cls)

    def to_ptb(self, labels: Sequence[str | int] | None = None) -> str:
        """The tree as one line of PTB bracket text; ``from_ptb(t.to_ptb()) == t`` and SST lines
        print back byte-for-byte.

        Args:
            labels: one label per node in pre-order (as :meth:`subtrees` lists them), printed
                instead of the nodes' own (a prediction per node); the tree is not changed.
        """
        if labels is None:
            return "".join(self._ptb_pieces())
        names = [str(label) if isinstance(label, int) else label for label in labels]
        bad = [x for x in names if not isinstance(x, str) or not x]
        if bad or _BAD_LABEL.search("".join(names)):
            bad = bad or [x for x in names if _BAD_LABEL.search(x)]
            raise ValueError(f"labels: expected non-empty strings without whitespace or "
                             f"brackets, got {bad[0]!r}")
        used = [0]
        try:
            text = "".join(self._ptb_pieces(names, used))
        except IndexError:
            text = None
        if text is None or used[0] != len(names):
            raise ValueError(f"labels: expected one label per node ({len(self)}), got "
                             f"{len(names)}")
        return text

    def _ptb_pieces(self, labels: list[str] | None = None,
                    used: list[int] | None = None) -> Iterator[str]:
        """The pieces of :meth:`to_ptb`; with ``labels``, the k-th node visited (pre-order)
        prints ``labels[k]``, and ``used[0]`` counts the nodes."""
        stack: list[Any] = [self]
        k = 0
        while stack:
            item = stack.pop()
            if type(item) is str:
                yield item
                continue
            label = item.label if labels is None else labels[k]
            k += 1
            if item.children:
                yield "(" + label
                stack.append(")")
                for child in reversed(item.children):
                    stack.append(child)
                    stack.append(" ")
            elif item.token is None:
                yield "(" + label + ")"
            else:
                yield "(" + label + " " + item.token + ")"
        if used is not None:
            used[0] = k

    def pretty(self, width: int = 80, indent: int = 2) -> str:
        """Indented multi-line PTB text: a subtree that fits in ``width`` stays on one line."""
        nodes, parents, _ = self.flatten()
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
        return (type(self).from_ptb, (self.to_ptb(),))

    def copy(self) -> Tree:
        """A deep copy (iterative)."""
        return type(self).from_ptb(self.to_ptb())

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

    def flatten(self) -> tuple[list[Tree], list[int], list[int]]:
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
        nodes, parents, _ = self.flatten()
        return node_heights(nodes, parents)[0]

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
            new = new_node(node.label, node.token)
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
                    mid = new_node(inner, None)
                    mid.children = [None, None]
                    cur[1] = mid
                    cur = mid.children
                stack.extend([(kids[k - 2], cur, 0), (kids[k - 1], cur, 1)])
            else:
                for i in range(k - 1, 1, -1):
                    stack.append((kids[i], cur, 1))
                    mid = new_node(inner, None)
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
            new = new_node(lab, end.token)
            new.children = [None] * len(end.children)
            holder[slot] = new
            stack.extend((child, new.children, i) for i, child in enumerate(end.children))
        return root_holder[0]

    # ---------------------------------------------------------------- conversions
    def to_data(self, vocab: Mapping[str, int] | Any,
                label_vocab: Mapping[str, int] | None = None) -> Data:
        """The tree as a PyG ``Data``: see :func:`structrnn.trees.convert.tree_to_data`."""
        return convert.tree_to_data(self, vocab, label_vocab)

    def to_networkx(self) -> nx.DiGraph:
        """See :func:`structrnn.trees.convert.tree_to_networkx`."""
        return convert.tree_to_networkx(self)

    @classmethod
    def from_networkx(cls, g: nx.DiGraph, root: Any = None) -> Tree:
        """Build a tree from a rooted ``networkx.DiGraph``: see
        :func:`structrnn.trees.convert.networkx_to_tree`."""
        return convert.networkx_to_tree(cls, g, root)

    def to_nltk(self) -> nltk.Tree:
        """See :func:`structrnn.trees.convert.tree_to_nltk`."""
        return convert.tree_to_nltk(self)

    @classmethod
    def from_nltk(cls, tree: nltk.Tree) -> Tree:
        """From an ``nltk.Tree``: see :func:`structrnn.trees.convert.nltk_to_tree`."""
        return convert.nltk_to_tree(cls, tree)
