"""Property-based tests (hypothesis) of the entry points: tree text, tree models, graph networks.

Budget: the "ci" profile (default) keeps this file short in ``make test``; ``make fuzz`` runs the
``@pytest.mark.slow`` variants, and ``HYPOTHESIS_PROFILE=fuzz`` multiplies every example count
(use both: ``HYPOTHESIS_PROFILE=fuzz pytest -m slow tests/test_fuzz.py``).

The profiles are applied per test (not loaded globally) so that they cannot leak into other
test modules.
"""

from __future__ import annotations

import os
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn.aggr import SoftmaxAggregation

from structrnn.cells import GRUCell, LSTMCell, RNNCell
from structrnn.graphs.models import (
    MPNN,
    DeepSets,
    EncodeProcessDecode,
    GraphIndependent,
    InteractionNetwork,
    NonLocal,
    RelationNetwork,
    mlp,
)
from structrnn.graphs.network import GraphNetwork
from structrnn.trees.data import TreeData
from structrnn.trees.loader import TreeLoader
from structrnn.trees.models import TreeLSTM
from structrnn.trees.ptb import ParseError
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

# -- budget --------------------------------------------------------------------------------------
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=10, deadline=None, derandomize=True,
                          database=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("fuzz", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=_QUIET)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "fuzz"):
    PROFILE = "ci"


def budget(examples: int) -> settings:
    """``examples`` in the ci profile; twenty times as many with HYPOTHESIS_PROFILE=fuzz."""
    base = settings.get_profile(PROFILE)
    scale = 20 if PROFILE == "fuzz" else 1
    return settings(base, max_examples=examples * scale)


DT = torch.float64
WS = " \t\n\r\f\v"

# -- 1. tree text -------------------------------------------------------------------------------
PIECES = ["(", ")", "(", ")", " ", "  ", "\t", "\n", "\r\n", "a", "2", "-LRB-", "\\/", "\u00a0",
          "é", "8\u00a01\\/2", "(2", "(3 x)", "()", ")("]
junk = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
any_text = st.text(max_size=60)

label_chars = st.characters(blacklist_characters="()" + WS, blacklist_categories=("Cs",))
labels = st.text(label_chars, min_size=1, max_size=4)
token_chars = st.characters(blacklist_characters="()", blacklist_categories=("Cs",))
tokens = st.text(token_chars, min_size=1, max_size=6).filter(lambda t: t.strip(WS) == t)
leaves = st.builds(lambda lab, tok: Tree(lab, token=tok), labels, st.none() | tokens)
trees = st.recursive(leaves, lambda kids: st.builds(Tree, labels, st.lists(kids, min_size=1,
                                                                          max_size=4)),
                     max_leaves=25)


@st.composite
def mutated_ptb(draw):
    """A valid tree's text with a few characters deleted, inserted or swapped."""
    text = list(draw(trees).to_ptb())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if action == "delete" and at < len(text):
            del text[at]
        elif action == "duplicate" and at < len(text):
            text.insert(at, text[at])
        else:
            text.insert(at, draw(st.sampled_from(["(", ")", " ", "\n", "x", "\u00a0"])))
    return "".join(text)


def parse_or_parse_error(text: str) -> None:
    """Either a tree that prints and parses back to itself, or a ParseError located inside the
    text; any other exception (IndexError, RecursionError...) fails the test."""
    try:
        tree = Tree.from_ptb(text)
    except ParseError as err:
        assert err.line >= 1 and err.column >= 1, err
        assert err.line <= text.count("\n") + 1, (err.line, text)
        assert f"line {err.line}, column {err.column}" in str(err)
        return
    assert Tree.from_ptb(tree.to_ptb()) == tree


@budget(60)
@given(st.one_of(junk, any_text, mutated_ptb()))
def test_any_text_parses_or_raises_parse_error(text):
    parse_or_parse_error(text)


def test_pathological_bracket_texts_raise_parse_error_not_recursion_error():
    deep = 100_000
    for text in ["(" * deep, ")" * deep, "(a " * deep, "(a " * deep + "b" + ")" * (deep - 1),
                 "(a " * deep + "b" + ")" * (deep + 1), "(a b)" * 3, "(a (b c) d)",
                 "(" + "a" * deep + " " + "\u00a0" * 10]:
        parse_or_parse_error(text)
    assert len(Tree.from_ptb("(a " * deep + "b" + ")" * deep)) == deep


@budget(60)
@given(trees)
def test_every_valid_tree_round_trips(tree):
    text = tree.to_ptb()
    assert Tree.from_ptb(text) == tree
    assert Tree.from_ptb(text).to_ptb() == text
    assert Tree.from_ptb("\n " + tree.pretty(width=10) + " \n") == tree
    assert Tree.from_networkx(tree.to_networkx()) == tree
    assert Tree.from_nltk(tree.to_nltk()) == tree
    data = tree.to_data(Vocab(tree.leaves() and sorted(set(tree.leaves()))))
    assert data.num_nodes == len(tree) and data.edge_index.shape == (2, len(tree) - 1)
    assert int(data.height[0]) == tree.height


# -- 2. Tree-LSTMs: batched == one by one --------------------------------------------------------
def random_parents(n: int, rng: random.Random, chain: float, max_children: int | None):
    """parent[i] < i for i > 0 (node 0 is the root); ``chain`` is the chance that node i hangs
    under node i - 1, so chain=1 gives a path of depth n - 1."""
    parent = [-1] * n
    count = [0] * n
    open_nodes, where = [0], {0: 0}
    for i in range(1, n):
        if rng.random() < chain and (max_children is None or count[i - 1] < max_children):
            p = i - 1
        else:
            p = open_nodes[rng.randrange(len(open_nodes))]
        parent[i] = p
        count[p] += 1
        if max_children is not None and count[p] == max_children:  # swap-remove p
            last = open_nodes.pop()
            if last != p:
                open_nodes[where[p]] = last
                where[last] = where[p]
            del where[p]
        where[i] = len(open_nodes)
        open_nodes.append(i)
    return parent


def data_from_parents(parent: list[int], rng: random.Random, vocab_size: int,
                      via_tree: bool) -> Data:
    """A tree ``Data`` as docs/architecture.md lays it out, either through ``Tree.to_data``
    (pre-order) or built here directly, with the node ids shuffled (so neither pre-order nor
    topological)."""
    n = len(parent)
    if via_tree:
        nodes = [Tree(str(rng.randrange(5))) for _ in range(n)]
        for i in range(1, n):
            nodes[parent[i]].children.append(nodes[i])
        for node in nodes:
            if not node.children and rng.random() < 0.8:
                node.token = f"w{rng.randrange(vocab_size + 3)}"  # some are unknown words
        return nodes[0].to_data(Vocab(f"w{i}" for i in range(vocab_size - 1)))
    pos, count, height = [0] * n, [0] * n, [0] * n
    for i in range(1, n):
        pos[i] = count[parent[i]]
        count[parent[i]] += 1
    for i in range(n - 1, 0, -1):
        height[parent[i]] = max(height[parent[i]], height[i] + 1)
    perm = list(range(n))
    rng.shuffle(perm)  # new id of old node i
    new = torch.tensor(perm)
    inv = torch.argsort(new)

    def shuffled(values):
        return torch.tensor(values)[inv]

    x = [rng.randrange(-1, vocab_size) for _ in range(n)]
    edge_index = torch.stack([new[1:], new[torch.tensor(parent[1:], dtype=torch.long)]]) \
        if n > 1 else torch.zeros(2, 0, dtype=torch.long)
    return TreeData(x=shuffled(x), edge_index=edge_index, child_index=shuffled(pos),
                    height=shuffled(height), y=torch.zeros(n, dtype=torch.long), num_nodes=n)


@st.composite
def forests(draw, max_nodes: int, max_children: int | None):
    """1-3 random trees; most are small, a few (about one draw in ten) up to ``max_nodes``."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        big = draw(st.integers(0, 9)) == 0
        n = draw(st.integers(1, max_nodes if big else 40))
        chain = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
        rng = random.Random(draw(st.integers(0, 2**32 - 1)))
        out.append(data_from_parents(random_parents(n, rng, chain, max_children), rng, 7,
                                     via_tree=draw(st.booleans())))
    return out


def features(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Token id -> a fixed random row; -1 (no token) -> zeros."""
    return table[x.clamp(min=0)] * (x >= 0).unsqueeze(1).to(table.dtype)


def reference_tree_lstm(model: TreeLSTM, x: torch.Tensor, data: Data) -> torch.Tensor:
    """Tai et al.'s equations node by node (plain Python, children before parents)."""
    cell, n = model.cell, data.num_nodes
    hs = cell.hidden_size
    kids: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for c, p in data.edge_index.t().tolist():
        kids[p].append((int(data.child_index[c]), c))
    h, c = [None] * n, [None] * n
    for v in sorted(range(n), key=lambda v: int(data.height[v])):
        wx = cell.weight_ih @ x[v] + cell.bias_ih
        if model.variant == "child-sum":
            hk = [h[k] for _, k in kids[v]]
            h_sum = sum(hk, torch.zeros(hs, dtype=DT))
            gates = wx + cell.weight_hh @ h_sum + cell.bias_hh
            i, _, g, o = gates.split(hs)
            o = torch.sigmoid(o)
            wf, bf = cell.weight_hh[hs:2 * hs], cell.bias_hh[hs:2 * hs]
            fc = [torch.sigmoid(wx[hs:2 * hs] + wf @ h[k] + bf) * c[k] for _, k in kids[v]]
            c[v] = torch.sigmoid(i) * torch.tanh(g) + sum(fc, torch.zeros(hs, dtype=DT))
        else:
            a = cell.arity
            slots_h = [torch.zeros(hs, dtype=DT) for _ in range(a)]
            slots_c = [torch.zeros(hs, dtype=DT) for _ in range(a)]
            for s, k in kids[v]:
                slots_h[s], slots_c[s] = h[k], c[k]
            gh = cell.weight_hh @ torch.cat(slots_h) + cell.bias_hh
            xi, xf, xg, xo = wx.split(hs)
            i = torch.sigmoid(xi + gh[:hs])
            g = torch.tanh(xg + gh[(1 + a) * hs:(2 + a) * hs])
            o = torch.sigmoid(xo + gh[(2 + a) * hs:])
            c[v] = i * g + sum(torch.sigmoid(xf + gh[(1 + s) * hs:(2 + s) * hs]) * slots_c[s]
                               for s in range(a))
        h[v] = o * torch.tanh(c[v])
    return torch.stack(h)


def check_batched_equals_single(model: TreeLSTM, forest: list[Data], table: torch.Tensor,
                                reference_up_to: int = 0) -> None:
    def run(batch):
        kw = {"schedule": batch.schedule} if "schedule" in batch else {}
        return model(features(batch.x, table), batch.edge_index, height=batch.height,
                     child_index=batch.child_index, **kw)

    with torch.no_grad():
        single = [run(Batch.from_data_list([d])) for d in forest]
        for d, h in zip(forest, single):
            # a plain call on the tensors (schedule derived, height derived) agrees too
            plain = model(features(d.x, table), d.edge_index, child_index=d.child_index)
            torch.testing.assert_close(plain, h, rtol=1e-12, atol=1e-12)
            if d.num_nodes <= reference_up_to:
                ref = reference_tree_lstm(model, features(d.x, table), d)
                torch.testing.assert_close(h, ref, rtol=1e-10, atol=1e-10)
        expected = torch.cat(single)
        (pyg,) = list(DataLoader(forest, batch_size=len(forest)))
        (ours,) = list(TreeLoader(forest, batch_size=len(forest)))
        torch.testing.assert_close(run(pyg), expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(run(ours), expected, rtol=1e-10, atol=1e-10)


def _models(hidden: int, arity: int) -> list[TreeLSTM]:
    torch.manual_seed(0)
    return [TreeLSTM(4, hidden, variant="child-sum").to(DT),
            TreeLSTM(4, hidden, variant="n-ary", arity=arity).to(DT)]


TABLE = torch.randn(7, 4, dtype=DT, generator=torch.Generator().manual_seed(1))


@budget(12)
@given(forests(max_nodes=5000, max_children=None))
def test_child_sum_tree_lstm_batched_equals_one_by_one(forest):
    check_batched_equals_single(_models(3, 2)[0], forest, TABLE, reference_up_to=12)


@budget(12)
@given(forests(max_nodes=5000, max_children=3), st.integers(3, 4))
def test_nary_tree_lstm_batched_equals_one_by_one(forest, arity):
    check_batched_equals_single(_models(3, arity)[1], forest, TABLE, reference_up_to=12)


@pytest.mark.slow
@budget(60)
@given(forests(max_nodes=5000, max_children=2))
def test_tree_lstms_batched_equals_one_by_one_many(forest):
    for model in _models(5, 2):
        check_batched_equals_single(model, forest, TABLE, reference_up_to=40)


@pytest.mark.slow
def test_depth_10000_chain_batched_with_small_trees():
    rng = random.Random(0)
    chain = data_from_parents(random_parents(10_001, rng, 1.0, None), rng, 7, via_tree=True)
    assert int(chain.height[0]) == 10_000
    small = [data_from_parents(random_parents(n, rng, 0.3, 2), rng, 7, via_tree=False)
             for n in (1, 2, 17)]
    for model in _models(4, 2):
        check_batched_equals_single(model, [small[0], chain, *small[1:]], TABLE)


# -- 3. graph networks: every configuration, any graph -------------------------------------------
D = 3  # width of x, edge_attr and u in the random graphs


@st.composite
def graph_batches(draw, max_nodes: int = 50, max_edges: int = 200):
    """1-3 graphs of 0-50 nodes and 0-200 edges (none without nodes), drawn with isolated
    nodes, self-loops and repeated edges."""
    graphs = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, max_nodes))
        m = draw(st.integers(0, max_edges)) if n else 0
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        # edges only among the first k nodes: the rest are isolated
        k = max(1, min(n, draw(st.integers(1, max(n, 1)))))
        ei = torch.randint(0, k, (2, m), generator=gen)
        if m and draw(st.booleans()):  # some self-loops and a duplicated edge
            ei[1, : m // 3] = ei[0, : m // 3]
            ei[:, -1] = ei[:, 0]
        graphs.append(Data(x=torch.randn(n, D, generator=gen, dtype=DT), edge_index=ei,
                           edge_attr=torch.randn(m, D, generator=gen, dtype=DT),
                           u=torch.randn(1, D, generator=gen, dtype=DT), num_nodes=n))
    return graphs


def _gn(edge_aggr="sum", global_aggr="mean") -> GraphNetwork:
    return GraphNetwork(mlp([4 * D, 5, 4]), mlp([D + 4 + D, 5, 6]), mlp([D + 6 + 4, 5, 2]),
                        edge_aggr=edge_aggr, global_aggr=global_aggr)


# name -> (factory, (node, edge, global) output widths; None = that output is not produced)
GN_CONFIGS = {
    **{f"GraphNetwork-{a}-{b}": ((lambda a=a, b=b: _gn(a, b)), (6, 4, 2))
       for a, b in [("sum", "mean"), ("mean", "sum"), ("max", "min"), ("min", "max")]},
    "GraphNetwork-softmax": (lambda: _gn(SoftmaxAggregation(learn=True),
                                         SoftmaxAggregation(t=0.5)), (6, 4, 2)),
    "GraphNetwork-cells": (lambda: GraphNetwork(GRUCell(3 * D, D), LSTMCell(2 * D, D),
                                                RNNCell(2 * D, D)), (D, D, D)),
    "GraphNetwork-no-global": (lambda: GraphNetwork(mlp([3 * D, 4]), mlp([D + 4, 5]),
                                                    edge_inputs=("edge", "sender", "receiver"),
                                                    node_inputs=("node", "edges")), (5, 4, None)),
    "GraphIndependent": (lambda: GraphIndependent(mlp([D, 2]), mlp([D, 3]), mlp([D, 4])),
                         (3, 2, 4)),
    "InteractionNetwork": (lambda: InteractionNetwork(mlp([3 * D, 4]), mlp([D + 4, 5]),
                                                      edge_aggr="mean"), (5, 4, None)),
    "DeepSets": (lambda: DeepSets(mlp([2 * D, 4]), mlp([4, 2])), (4, None, 2)),
    "RelationNetwork": (lambda: RelationNetwork(mlp([2 * D, 4]), mlp([4, 2])), (None, 4, 2)),
    "NonLocal": (lambda: NonLocal(4, heads=2), (4, None, None)),
    **{f"MPNN-{r}": ((lambda r=r: MPNN(D, 4, 2, 2, edge_dim=D, readout=r,
                                       edge_hidden=5)), None)
       for r in ("set2set", "sum", "mean", None)},
    "EncodeProcessDecode": (lambda: EncodeProcessDecode(D, D, D, node_out=2, edge_out=3,
                                                        global_out=1, hidden=4, steps=2),
                            (2, 3, 1)),
}


def run_config(name: str, model: nn.Module, b: Batch):
    """The model's outputs as ``(x, edge_attr, u)`` (entries None where not produced)."""
    g = b.num_graphs
    if name.startswith("MPNN"):
        out = model(b.x, b.edge_index, b.edge_attr, b.batch, g)
        return (out, None, None) if model.readout is None else (None, None, out)
    if name == "NonLocal":
        x = torch.cat([b.x, b.x[:, :1]], 1)  # NonLocal keeps the width: 4 channels
        out = model(x, b.edge_index, None, None, b.batch, g)
        return out[0], None, None
    if name == "EncodeProcessDecode":
        outs = model(b.x, b.edge_index, b.edge_attr, b.u, b.batch, g)
        assert len(outs) == 2
        return outs[-1]
    x, e, u = model(b.x, b.edge_index, b.edge_attr, b.u, b.batch, g)
    x, e, u = (s[0] if isinstance(s, tuple) else s for s in (x, e, u))
    keep = {"DeepSets": (x, None, u), "RelationNetwork": (None, e, u)}
    return keep.get(name, (x, e, u))


def check_config(name: str, graphs: list[Data]) -> None:
    factory, widths = GN_CONFIGS[name]
    torch.manual_seed(0)
    model = factory().to(DT)
    if name.startswith("MPNN"):
        widths = (2, None, None) if model.readout is None else (None, None, 2)
    b = Batch.from_data_list(graphs)
    rows = (b.num_nodes, b.num_edges, b.num_graphs)
    with torch.no_grad():
        outs = run_config(name, model, b)
        for what, out, r, w in zip(("x", "edge_attr", "u"), outs, rows, widths):
            if w is None:
                continue
            assert out is not None, (name, what)
            assert out.shape == (r, w), (name, what, tuple(out.shape), (r, w))
            assert torch.isfinite(out).all(), (name, what)
        # each graph alone gives the same rows (nothing leaks between graphs of a batch)
        alone = [run_config(name, model, Batch.from_data_list([g])) for g in graphs]
        for k, out in enumerate(outs):
            if out is not None and widths[k] is not None:
                torch.testing.assert_close(out, torch.cat([a[k] for a in alone]),
                                           rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(GN_CONFIGS))
@budget(4)
@given(graphs=graph_batches())
def test_every_gn_configuration_on_any_graph(name, graphs):
    check_config(name, graphs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GN_CONFIGS))
@budget(60)
@given(graphs=graph_batches())
def test_every_gn_configuration_on_any_graph_many(name, graphs):
    check_config(name, graphs)


def test_gn_on_degenerate_batches():
    """Hand-picked corners: one graph of no nodes, all isolated nodes, only self-loops."""
    gen = torch.Generator().manual_seed(3)
    empty = Data(x=torch.zeros(0, D, dtype=DT), edge_index=torch.zeros(2, 0, dtype=torch.long),
                 edge_attr=torch.zeros(0, D, dtype=DT), u=torch.randn(1, D, dtype=DT,
                                                                    generator=gen), num_nodes=0)
    isolated = Data(x=torch.randn(5, D, dtype=DT, generator=gen),
                    edge_index=torch.zeros(2, 0, dtype=torch.long),
                    edge_attr=torch.zeros(0, D, dtype=DT),
                    u=torch.randn(1, D, dtype=DT, generator=gen), num_nodes=5)
    loops = Data(x=torch.randn(3, D, dtype=DT, generator=gen),
                 edge_index=torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]]),
                 edge_attr=torch.randn(4, D, dtype=DT, generator=gen),
                 u=torch.randn(1, D, dtype=DT, generator=gen), num_nodes=3)
    for name in GN_CONFIGS:
        for graphs in ([empty], [isolated], [loops], [empty, loops, empty], [isolated, empty]):
            check_config(name, graphs)

