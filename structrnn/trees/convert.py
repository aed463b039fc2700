"""Conversions of a :class:`~structrnn.trees.tree.Tree`: to PyG ``Data`` (the layout of
``docs/architecture.md``), to and from networkx and nltk. ``Tree.to_data`` and friends call these.

This module sits below :mod:`structrnn.trees.tree` and imports no tree module: it reads a tree
through its ``label``, ``children``, ``token`` and :meth:`~structrnn.Tree.flatten`, and builds
one through the tree class it is given (``Tree.from_networkx`` passes itself).
"""

from __future__ import annotations

import array
import copy
import gc
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from structrnn.trees.vocab import Vocab

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx
    import nltk
    from torch_geometric.data import Batch, Data

__all__ = ["tree_to_data", "tree_to_networkx", "networkx_to_tree", "tree_to_nltk",
           "nltk_to_tree", "token_ids", "FlatTrees", "flatten_trees", "flat_to_data",
           "batch_trees", "trees_to_batch", "flat_to_batch", "gc_paused", "node_heights",
           "LEGACY_SLOT_KEY"]

# A structrnn.trees.Tree, read by its attributes (tree.py imports this module, not the reverse).
Tree = Any
_INT = re.compile(r"-?[0-9]+\Z")
# The name tree Data gave each node's slot before it became ``child_index`` (PyG reads ``pos``
# as node coordinates); readers of files written then map it to ``child_index``.
LEGACY_SLOT_KEY = "pos"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Trees hold no reference cycles, so the cyclic collector only slows building many nodes
    (it halves the time to read SST)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def node_heights(nodes: list[Tree], parents: list[int]) -> list[int]:
    """Each node's height (0 for a leaf) from :meth:`Tree.flatten`'s pre-order lists."""
    heights = [0] * len(nodes)
    for i in range(len(nodes) - 1, 0, -1):  # reverse pre-order: children before parents
        p, h = parents[i], heights[i] + 1
        if h > heights[p]:
            heights[p] = h
    return heights


def token_ids(tokens: list[str | None], vocab: Mapping[str, int] | Any) -> list[int]:
    """Ids of ``tokens`` (-1 for None: a node without a token). A :class:`~structrnn.Vocab`
    maps unknown tokens to its unknown id; a plain mapping must hold every token."""
    if isinstance(vocab, Vocab) and not vocab.lower and vocab.unk is not None:
        ids, unk = vocab.token_to_id, vocab.unk_id  # fast path: one dict lookup per token
        return [-1 if token is None else ids.get(token, unk) for token in tokens]
    try:
        return [-1 if token is None else vocab[token] for token in tokens]
    except KeyError as err:
        raise ValueError(f"vocab: token {err.args[0]!r} is not in the vocabulary (use a"
                         " structrnn.Vocab, which maps unknown tokens to <unk>)") from None


def _label_table(labels: Iterable[str], label_vocab: Mapping[str, int] | None) -> dict[str, int]:
    if label_vocab is None:
        return {lab: int(lab) if _INT.match(lab) else -1 for lab in set(labels)}
    return {lab: label_vocab.get(lab, -1) for lab in set(labels)}


def tree_to_data(tree: Tree, vocab: Mapping[str, int] | Any,
                 label_vocab: Mapping[str, int] | None = None) -> Data:
    """The tree as a ``torch_geometric.data.Data`` (layout in the module docstring).

    Args:
        vocab: token -> id (a :class:`~structrnn.Vocab`, which maps unknown tokens to its
            unknown id, or any mapping; a token missing from a plain mapping is an error).
        label_vocab: label -> class id; by default integer labels are used as they are and
            other labels become -1.

    Returns ``Data`` with ``x`` (N,), ``y`` (N,), ``child_index`` (N,), ``height`` (N,) and
    ``edge_index`` (2, N-1), all long, nodes in pre-order. (No ``pos``: in PyG that is node
    coordinates.)
    """
    from structrnn.trees.data import TreeData

    nodes, parents, positions = tree.flatten()
    n = len(nodes)
    x = token_ids([node.token for node in nodes], vocab)
    labels = [node.label for node in nodes]
    table = _label_table(labels, label_vocab)
    y = [table[lab] for lab in labels]
    heights = node_heights(nodes, parents)
    # one buffer for every field: per-call tensor overheads dominate for small trees
    buf = array.array("q", x)
    for row in (y, positions, heights, range(n), parents):
        buf.extend(row)
    fields = torch.frombuffer(buf, dtype=torch.long).view(6, n)
    x_, y_, slot_, height_ = fields[:4].unbind(0)
    edge_index = fields[4:, 1:].contiguous()  # rows: child ids, their parents
    return TreeData(x=x_, edge_index=edge_index, y=y_, child_index=slot_, height=height_,
                    num_nodes=n)


class FlatTrees(NamedTuple):
    """Many trees side by side without a vocabulary: one row per node of all of them, each
    tree's nodes in pre-order (what :func:`tree_to_data` gives a tree, token strings instead of
    ids). :func:`flat_to_data` turns it into one ``Data`` per tree; plain tensors and strings,
    so it is what a processed-data cache stores.

    Attributes:
        num_nodes: (T,) nodes of each tree.
        y, child_index, height: (total,) as on ``Data``.
        parent: (total,) the parent's index within its tree, -1 at a root.
        tokens: the tokens of the nodes that have one, in row order.
        token_rows: (K,) the row of each token.
    """

    num_nodes: Tensor
    y: Tensor
    child_index: Tensor
    height: Tensor
    parent: Tensor
    tokens: list[str]
    token_rows: Tensor

    @property
    def num_trees(self) -> int:
        return self.num_nodes.numel()

    def offsets(self) -> Tensor:
        """(T,) the first row of each tree."""
        return torch.cumsum(self.num_nodes, 0) - self.num_nodes

    def take(self, index: Tensor) -> FlatTrees:
        """The trees ``index`` (T',) long, in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        counts = self.num_nodes[index]
        starts = self.offsets()[index]
        total = int(counts.sum())
        # the rows of the chosen trees: each tree's start plus 0 .. n-1
        shift = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts,
                                        output_size=total)
        rows = torch.arange(total) + shift
        new_row = torch.full((self.y.numel(),), -1, dtype=torch.long)
        new_row[rows] = torch.arange(total)
        moved = new_row[self.token_rows]
        kept = torch.nonzero(moved >= 0).squeeze(1)
        order = torch.argsort(moved[kept])  # tokens follow their rows
        kept = kept[order]
        tokens = [self.tokens[i] for i in kept.tolist()]
        return FlatTrees(counts, self.y[rows], self.child_index[rows], self.height[rows],
                         self.parent[rows], tokens, moved[kept])


def flatten_trees(trees: Iterable[Tree], label_vocab: Mapping[str, int] | None = None
                  ) -> FlatTrees:
    """:class:`FlatTrees` of ``trees`` (labels as in :func:`tree_to_data`)."""
    counts: list[int] = []
    labels: list[str] = []
    positions: list[int] = []
    heights: list[int] = []
    parents: list[int] = []
    tokens: list[str] = []
    token_rows: list[int] = []
    with gc_paused():
        for tree in trees:
            nodes, up, where = tree.flatten()
            base = len(labels)
            counts.append(len(nodes))
            labels.extend([node.label for node in nodes])
            positions.extend(where)
            heights.extend(node_heights(nodes, up))
            parents.extend(up)
            for i, node in enumerate(nodes):
                if node.token is not None:
                    tokens.append(node.token)
                    token_rows.append(base + i)
        table = _label_table(labels, label_vocab)
        y = [table[lab] for lab in labels]

    def long(values: list[int]) -> Tensor:
        return torch.frombuffer(array.array("q", values), dtype=torch.long) if values \
            else torch.empty(0, dtype=torch.long)

    return FlatTrees(long(counts), long(y), long(positions), long(heights), long(parents),
                     tokens, long(token_rows))


def flat_to_data(flat: FlatTrees, vocab: Mapping[str, int] | Any) -> list[Data]:
    """One ``Data`` per tree of ``flat``, equal to :func:`tree_to_data` of each tree (token ids
    from ``vocab`` as there). Built with whole-array operations: the per-tree work is slicing
    one buffer, so a treebank converts in a fraction of the time."""
    n = flat.num_nodes
    total, count = flat.y.numel(), n.numel()
    x = torch.full((total,), -1, dtype=torch.long)
    x[flat.token_rows] = torch.tensor(token_ids(flat.tokens, vocab), dtype=torch.long)
    # each tree gets one block: x, y, child_index, height (n each), then edge_index (2, n - 1)
    first = flat.offsets()
    block = 6 * first - 2 * torch.arange(count)  # blocks of 6n - 2
    tree = torch.repeat_interleave(torch.arange(count), n, output_size=total)
    local = torch.arange(total) - first[tree]
    start, size = block[tree] + local, n[tree]
    buf = torch.empty(max(6 * total - 2 * count, 0), dtype=torch.long)
    for k, field in enumerate((x, flat.y, flat.child_index, flat.height)):
        buf[start + k * size] = field
    inner = torch.nonzero(local > 0).squeeze(1)  # every node but the roots has an edge
    edge_at = (block[tree] + 4 * size + local - 1)[inner]
    buf[edge_at] = local[inner]
    buf[edge_at + size[inner] - 1] = flat.parent[inner]
    return _tree_data_list(buf, n.tolist())


def _tree_data_list(buf: Tensor, sizes: list[int]) -> list[Data]:
    """The ``Data`` of every block of ``buf`` (see :func:`flat_to_data`)."""
    from structrnn.trees.data import TreeData

    out, at = [], 0
    new = _data_factory()
    with gc_paused():
        for n in sizes:
            blk = buf[at:at + 6 * n - 2]
            x_, y_, slot_, height_ = blk[:4 * n].view(4, n).unbind(0)
            edge_index = blk[4 * n:].view(2, n - 1)
            fields = {"x": x_, "edge_index": edge_index, "y": y_, "child_index": slot_,
                      "height": height_, "num_nodes": n}
            out.append(new(**fields) if new else TreeData(**fields))
            at += 6 * n - 2
    return out


def _data_factory() -> Callable[..., Data] | None:
    """A maker of ``Data`` about five times faster than the constructor (a copy of a template
    whose attribute store is refilled, as ``Data.__copy__`` does), or None when this PyG's
    ``Data`` does not keep its attributes the way the copy assumes (checked on a sample)."""
    from structrnn.trees.data import TreeData

    keys = _TREE_KEYS
    template = TreeData()

    def make(**fields: Any) -> Data:
        out = copy.copy(template)
        out._store._mapping.update(fields)
        return out

    try:
        sample = {"x": torch.zeros(2, dtype=torch.long),
                  "edge_index": torch.zeros(2, 1, dtype=torch.long),
                  "y": torch.ones(2, dtype=torch.long),
                  "child_index": torch.zeros(2, dtype=torch.long),
                  "height": torch.tensor([1, 0]), "num_nodes": 2}
        fast, slow = make(**sample), TreeData(**sample)
        same = (list(fast.keys()) == list(slow.keys()) and fast.num_nodes == 2
                and all(torch.equal(fast[k], slow[k]) for k in keys[:-1])
                and fast._store._parent() is fast)
    except Exception:  # noqa: BLE001 - any surprise: use the constructor
        return None
    return make if same else None


def tree_to_networkx(tree: Tree) -> nx.DiGraph:
    """A ``networkx.DiGraph`` with nodes 0..N-1 in pre-order (root 0, also in
    ``g.graph["root"]``), edges parent -> child, node attributes ``label``, ``token``,
    ``child_index`` (position under the parent)."""
    import networkx as nx

    nodes, parents, positions = tree.flatten()
    g = nx.DiGraph(root=0)
    with gc_paused():
        g.add_nodes_from((i, {"label": node.label, "token": node.token,
                              "child_index": positions[i]}) for i, node in enumerate(nodes))
        g.add_edges_from((parents[i], i) for i in range(1, len(nodes)))
    return g

def networkx_to_tree(cls: type, g: nx.DiGraph, root: Any = None) -> Tree:
    """Build a tree of class ``cls`` from a rooted ``networkx.DiGraph`` (edges parent ->
    child). Node attributes: ``label`` (required), ``token`` (optional), ``child_index``
    (optional, ``pos`` in graphs written before the rename; orders the children, otherwise the
    graph's successor order). ``root`` defaults to ``g.graph["root"]``, else the only node with
    no incoming edge."""
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
    with gc_paused():
        while stack:
            v, node = stack.pop()
            succ = list(g.successors(v))
            if succ and node.token is not None:
                raise ValueError(f"g: node {v!r} has a token and children")
            _order_children(g, succ)
            for s in succ:
                child = make(s)
                node.children.append(child)
                stack.append((s, child))
            seen += len(succ)
    if seen != g.number_of_nodes():
        raise ValueError(f"g: {g.number_of_nodes() - seen} nodes are not reachable from the "
                         f"root {root!r} (a cycle?)")
    return top

def _order_children(g: nx.DiGraph, succ: list) -> None:
    """Sort ``succ`` by their ``child_index`` attributes (or the old ``pos``) when all have one."""
    for key in ("child_index", LEGACY_SLOT_KEY):
        if all(key in g.nodes[s] for s in succ):
            succ.sort(key=lambda s: g.nodes[s][key])
            return


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

def nltk_to_tree(cls: type, tree: nltk.Tree) -> Tree:
    """A tree of class ``cls`` from an ``nltk.Tree``. A node whose children are all strings
    becomes a token leaf (several strings are joined by one space); a node mixing strings and
    subtrees is an error."""
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


# -- batches ---------------------------------------------------------------------------------------
_TREE_KEYS = ("x", "edge_index", "y", "child_index", "height", "num_nodes")
_NODE_KEYS = ("x", "y", "child_index", "height")


def batch_trees(data_list: list[Data]) -> Batch:
    """``Batch.from_data_list(data_list)`` for :class:`~structrnn.trees.data.TreeData` (the
    fields of :func:`tree_to_data`, nothing else), the same batch in a fraction of the time:
    one concatenation per field and the offsets from one cumulative sum, where PyG's generic
    collation inspects every attribute of every tree. Any other ``Data`` (other fields,
    another class) goes to ``Batch.from_data_list``. Pass it as a :class:`~structrnn.TreeLoader`'s
    ``collate_fn`` to have the schedule attached too.
    """
    from torch_geometric.data import Batch

    template = _batch_template()
    stores = [_tree_store(d) for d in data_list]
    if template is None or not data_list or any(s is None for s in stores):
        return Batch.from_data_list(data_list)
    sizes = [s["num_nodes"] for s in stores]
    counts = torch.tensor(sizes)
    ptr = torch.zeros(len(sizes) + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=ptr[1:])
    total = sum(sizes)
    edges = [s["edge_index"] for s in stores]
    edge_ptr = torch.zeros_like(ptr)
    torch.cumsum(torch.tensor([e.size(1) for e in edges]), 0, out=edge_ptr[1:])
    edge_index = torch.cat(edges, 1)
    edge_index += torch.repeat_interleave(ptr[:-1], edge_ptr.diff(),
                                          output_size=edge_index.size(1))
    fields = {k: torch.cat([s[k] for s in stores]) for k in _NODE_KEYS}
    out = copy.copy(template)
    out._store._mapping.update(
        x=fields["x"], edge_index=edge_index, y=fields["y"], child_index=fields["child_index"],
        height=fields["height"], num_nodes=total,
        batch=torch.repeat_interleave(counts, output_size=total), ptr=ptr)
    zeros = torch.zeros(len(sizes), dtype=torch.long)
    out._store.__dict__.update(
        _num_nodes=sizes, _num_graphs=len(sizes),
        _slice_dict={"x": ptr, "edge_index": edge_ptr, "y": ptr, "child_index": ptr,
                     "height": ptr},
        _inc_dict={"x": zeros, "edge_index": ptr[:-1], "y": zeros, "child_index": zeros,
                   "height": zeros})
    return out


def trees_to_batch(trees: Sequence[Tree], vocab: Mapping[str, int] | Any,
                   label_vocab: Mapping[str, int] | None = None) -> Batch:
    """``Batch.from_data_list([tree_to_data(t, vocab, label_vocab) for t in trees])``, the same
    batch (fields, order, slices) without a ``Data`` per tree: one pass over the nodes
    (:func:`flatten_trees`) and whole-array operations (:func:`flat_to_batch`). What a
    predictor needs for a request's few trees, where a ``Data`` per tree costs more than the
    tree's share of the forward pass."""
    if not trees:
        raise ValueError("trees: expected at least one tree, got none")
    return flat_to_batch(flatten_trees(trees, label_vocab), vocab)


def flat_to_batch(flat: FlatTrees, vocab: Mapping[str, int] | Any) -> Batch:
    """``Batch.from_data_list(flat_to_data(flat, vocab))`` built directly from the flat rows
    (falls back to that when this PyG lays a batch out otherwise than :func:`batch_trees`
    assumes)."""
    template = _batch_template()
    if template is None:
        from torch_geometric.data import Batch

        return Batch.from_data_list(flat_to_data(flat, vocab))
    counts = flat.num_nodes
    count, total = counts.numel(), flat.y.numel()
    ptr = torch.zeros(count + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=ptr[1:])
    edge_ptr = torch.zeros_like(ptr)
    torch.cumsum(counts - 1, 0, out=edge_ptr[1:])  # a tree of n nodes has n - 1 edges
    x = torch.full((total,), -1, dtype=torch.long)
    x[flat.token_rows] = torch.tensor(token_ids(flat.tokens, vocab), dtype=torch.long)
    batch = torch.repeat_interleave(counts, output_size=total)
    # every node but the roots (parent -1) has an edge, in row order as each tree lists them
    child = torch.nonzero(flat.parent >= 0).squeeze(1)
    edge_index = torch.stack([child, flat.parent[child] + ptr[batch[child]]])
    out = copy.copy(template)
    out._store._mapping.update(
        x=x, edge_index=edge_index, y=flat.y, child_index=flat.child_index, height=flat.height,
        num_nodes=total, batch=batch, ptr=ptr)
    zeros = torch.zeros(count, dtype=torch.long)
    out._store.__dict__.update(
        _num_nodes=counts.tolist(), _num_graphs=count,
        _slice_dict={"x": ptr, "edge_index": edge_ptr, "y": ptr, "child_index": ptr,
                     "height": ptr},
        _inc_dict={"x": zeros, "edge_index": ptr[:-1], "y": zeros, "child_index": zeros,
                   "height": zeros})
    return out


def _tree_store(data: Data) -> dict[str, Any] | None:
    """The attribute mapping of a :class:`TreeData` (exactly the fields of
    :func:`tree_to_data`), or None. PyG concatenates each of them along the node dimension
    and offsets only ``edge_index``, whatever their dtypes and widths, as
    :func:`batch_trees` does."""
    from structrnn.trees.data import TreeData

    if type(data) is not TreeData:
        return None
    mapping = data._store._mapping
    if tuple(mapping) != _TREE_KEYS or not isinstance(mapping["num_nodes"], int):
        return None
    return mapping


_TEMPLATE: list[Batch | None] = []  # the template of batch_trees, made on first use


def _batch_template() -> Batch | None:
    """A one-tree batch from ``Batch.from_data_list`` whose copies :func:`batch_trees` fills,
    or None when this PyG lays a batch out otherwise than assumed (checked on a sample)."""
    if _TEMPLATE:
        return _TEMPLATE[0]
    from torch_geometric.data import Batch

    from structrnn.trees.data import TreeData

    def tree(n: int, shift: int) -> TreeData:
        ids = torch.arange(n) + shift
        return TreeData(x=ids, edge_index=torch.stack([ids[1:] - shift, torch.zeros(n - 1,
                                                                                dtype=torch.long)]),
                    y=ids + 1, child_index=ids % 2, height=ids * 0, num_nodes=n)

    sample = [tree(3, 0), tree(1, 5), tree(2, 7)]
    _TEMPLATE.append(Batch.from_data_list(sample[:1]))
    try:
        got, want = batch_trees(sample), Batch.from_data_list(sample)
        same = _same_batch(got, want)
    except Exception:  # noqa: BLE001 - any surprise: PyG's own collation
        same = False
    if not same:
        _TEMPLATE[0] = None
    return _TEMPLATE[0]


def _same_batch(a: Batch, b: Batch) -> bool:
    """Equal fields (in the same order) and equal bookkeeping (graph count, node counts,
    slices and increments)."""
    def equal(u: Any, v: Any) -> bool:
        if torch.is_tensor(u):
            return torch.is_tensor(v) and u.dtype == v.dtype and torch.equal(u, v)
        if isinstance(u, dict):
            return (isinstance(v, dict) and list(u) == list(v)
                    and all(equal(u[k], v[k]) for k in u))
        return u == v

    def private(batch: Batch) -> dict[str, Any]:
        return {k: v for k, v in batch._store.__dict__.items() if k not in ("_parent", "_mapping")}

    return (type(a) is type(b) and list(a.keys()) == list(b.keys())
            and all(equal(a[k], b[k]) for k in a.keys()) and equal(private(a), private(b)))
