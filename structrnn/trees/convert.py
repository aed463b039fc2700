"""Conversions of a :class:`~structrnn.trees.tree.Tree`: to PyG ``Data`` (the layout of
``docs/architecture.md``), to and from networkx and nltk. ``Tree.to_data`` and friends call these.
"""

from __future__ import annotations

import array
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from structrnn.trees.tree import Tree, gc_paused, node_heights
from structrnn.trees.vocab import Vocab

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import nltk
    from torch_geometric.data import Data

__all__ = ["tree_to_data", "tree_to_networkx", "tree_from_networkx", "tree_to_nltk",
           "tree_from_nltk"]

_INT = re.compile(r"-?[0-9]+\Z")


def tree_to_data(tree: Tree, vocab: Mapping[str, int] | Any,
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

    nodes, parents, positions = tree.flatten()
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
    heights = node_heights(nodes, parents)
    # one buffer for every field: per-call tensor overheads dominate for small trees
    buf = array.array("q", x)
    for row in (y, positions, heights, range(n), parents):
        buf.extend(row)
    fields = torch.frombuffer(buf, dtype=torch.long).view(6, n)
    x_, y_, pos_, height_ = fields[:4].unbind(0)
    edge_index = fields[4:, 1:].contiguous()  # rows: child ids, their parents
    return Data(x=x_, edge_index=edge_index, y=y_, pos=pos_, height=height_, num_nodes=n)

def tree_to_networkx(tree: Tree) -> nx.DiGraph:
    """A ``networkx.DiGraph`` with nodes 0..N-1 in pre-order (root 0, also in
    ``g.graph["root"]``), edges parent -> child, node attributes ``label``, ``token``,
    ``pos`` (position under the parent)."""
    import networkx as nx

    nodes, parents, positions = tree.flatten()
    g = nx.DiGraph(root=0)
    with gc_paused():
        g.add_nodes_from((i, {"label": node.label, "token": node.token,
                              "pos": positions[i]}) for i, node in enumerate(nodes))
        g.add_edges_from((parents[i], i) for i in range(1, len(nodes)))
    return g

def tree_from_networkx(g: nx.DiGraph, root: Any = None) -> Tree:
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
        return Tree(attrs["label"], token=attrs.get("token"))

    top = make(root)
    stack, seen = [(root, top)], 1
    with gc_paused():
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

def tree_to_nltk(tree: Tree) -> nltk.Tree:
    """An ``nltk.Tree``: a token leaf ``(2 It)`` becomes ``nltk.Tree("2", ["It"])``."""
    from nltk import Tree as NLTKTree

    top = NLTKTree(tree.label, [])
    stack = [(tree, top)]
    while stack:
        node, out = stack.pop()
        if node.token is not None:
            out.append(node.token)
        for child in node.children:
            sub = NLTKTree(child.label, [])
            out.append(sub)
            stack.append((child, sub))
    return top

def tree_from_nltk(tree: nltk.Tree) -> Tree:
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
        node = Tree(src.label(), token=" ".join(strings) if strings else None)
        out[slot] = node
        if not strings:
            node.children = [None] * len(src)
            stack.extend((child, node.children, i) for i, child in enumerate(src))
    return holder[0]
