"""Trees, levels and DAGs as PyTorch and PyG citizens (issue 23, items 3-5 for tree models):

- one return convention: ``h`` by default, the cell's state with ``return_state=True``, the same
  for a tree model and the tree given as a DAG;
- the child slot is ``child_index``, and ``pos`` is left to PyG (transforms that read it);
- ``reset_parameters()`` and a ``repr`` with sizes on every tree model, ``BiTreeLSTM`` and
  ``DAGRecurrent``; a user cell without ``reset_parameters`` is an error, never shared weights;
- files written in the old layout (slot named ``pos``) still load;
- no import loop between the tree modules.

Every number is checked against a reference written here: a plain per-node loop over the tree
with the cell's weights, or ``torch.nn`` cells with copied weights.
"""

from __future__ import annotations

import argparse
import warnings
import zlib
from pathlib import Path

import networkx as nx
import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Batch, Data

import structrnn as sr
from structrnn import _deprecation
from structrnn.datasets.sst import SST
from structrnn.graphs.dag import DAGRecurrent
from structrnn.levels.run import run_down, run_schedule, run_up
from structrnn.trees.data import TreeData
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM
from tests.test_packaging import structrnn_imports
from tests.test_sst_data import CACHED_LINES, assert_same_dataset, write_split

DT = torch.double
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_deprecations():
    """Each test sees the first use of an old spelling (they warn once per process)."""
    _deprecation._WARNED.clear()
    yield
    _deprecation._WARNED.clear()


def random_tree(n: int, gen: torch.Generator, max_children: int | None = None):
    """Child -> parent edges of a random tree (node 0 the root, parents before children) and
    each node's slot under its parent."""
    parent, slot, count = [], [0], [0] * n
    for i in range(1, n):
        while True:
            p = int(torch.randint(0, i, (1,), generator=gen))
            if max_children is None or count[p] < max_children:
                break
        parent.append(p)
        slot.append(count[p])
        count[p] += 1
    ei = torch.stack([torch.arange(1, n), torch.tensor(parent, dtype=torch.long)]) if n > 1 \
        else torch.zeros(2, 0, dtype=torch.long)
    return ei, torch.tensor(slot, dtype=torch.long)


def children(ei: torch.Tensor, n: int) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in range(n)]
    for c, p in ei.t().tolist():
        kids[p].append(c)
    return kids


def child_sum_lstm_reference(cell, x, ei):
    """Tai et al.'s Child-Sum Tree-LSTM, node by node (children first), from the weights."""
    n, H = x.size(0), cell.hidden_size
    kids = children(ei, n)
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh
    h, c = [None] * n, [None] * n
    for v in sorted(range(n), key=lambda v: -v):  # a child has a larger id than its parent
        h_sum = sum((h[k] for k in kids[v]), torch.zeros(H, dtype=x.dtype))
        wx = W @ x[v] + b
        i = torch.sigmoid(wx[:H] + U[:H] @ h_sum)
        g = torch.tanh(wx[2 * H:3 * H] + U[2 * H:3 * H] @ h_sum)
        o = torch.sigmoid(wx[3 * H:] + U[3 * H:] @ h_sum)
        c_v = i * g
        for k in kids[v]:
            f_k = torch.sigmoid(wx[H:2 * H] + U[H:2 * H] @ h[k])
            c_v = c_v + f_k * c[k]
        c[v], h[v] = c_v, o * torch.tanh(c_v)
    return torch.stack(h), torch.stack(c)


def child_sum_gru_reference(cell, x, ei):
    """The Child-Sum Tree-GRU: torch.nn.GRUCell (weights copied) on the sum of the children."""
    n = x.size(0)
    ref = torch.nn.GRUCell(cell.input_size, cell.hidden_size).to(x.dtype)
    ref.load_state_dict(cell.state_dict())
    kids = children(ei, n)
    h = [None] * n
    for v in sorted(range(n), key=lambda v: -v):
        h_sum = sum((h[k] for k in kids[v]), torch.zeros(cell.hidden_size, dtype=x.dtype))
        h[v] = ref(x[v:v + 1], h_sum.unsqueeze(0))[0]
    return torch.stack(h)


# ------------------------------------------------------------------ one return convention
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_tree_as_a_dag_returns_what_the_tree_lstm_returns(seed, fused):
    gen = torch.Generator().manual_seed(seed)
    n = 17
    ei, _ = random_tree(n, gen)
    tree = TreeLSTM(3, 4).to(DT)
    dag = DAGRecurrent(tree.cell, fused=fused)  # the same cell: the same weights
    x = torch.randn(n, 3, dtype=DT, generator=gen)
    h_ref, c_ref = child_sum_lstm_reference(tree.cell, x, ei)
    # default: h alone, a tensor, from every entry point
    outs = [tree(x, ei), dag(x, ei), run_up(tree.cell, x, ei, fused=fused),
            run_schedule(tree.cell, x, sr.tree_schedule(ei, n).up, n, fused=fused)]
    for out in outs:
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, h_ref, atol=1e-12, rtol=0)
    # return_state=True: the LSTM cell's (h, c), from every entry point
    states = [tree(x, ei, return_state=True), dag(x, ei, return_state=True),
              run_up(tree.cell, x, ei, fused=fused, return_state=True)]
    for state in states:
        assert isinstance(state, tuple) and len(state) == 2
        torch.testing.assert_close(state[0], h_ref, atol=1e-12, rtol=0)
        torch.testing.assert_close(state[1], c_ref, atol=1e-12, rtol=0)


def test_a_tree_as_a_dag_returns_what_the_tree_gru_returns():
    gen = torch.Generator().manual_seed(5)
    n = 13
    ei, _ = random_tree(n, gen)
    tree = TreeGRU(3, 4).to(DT)
    dag = DAGRecurrent(tree.cell)
    x = torch.randn(n, 3, dtype=DT, generator=gen)
    ref = child_sum_gru_reference(tree.cell, x, ei)
    # a GRU's state is h: the same tensor with and without return_state
    for out in (tree(x, ei), dag(x, ei), tree(x, ei, return_state=True),
                dag(x, ei, return_state=True), run_up(tree.cell, x, ei, return_state=True)):
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_run_down_and_the_bidirectional_model_follow_the_convention():
    gen = torch.Generator().manual_seed(2)
    n = 9
    ei, _ = random_tree(n, gen)
    model = BiTreeLSTM(3, 4).to(DT)
    x = torch.randn(n, 3, dtype=DT, generator=gen)
    h_up, c_up = child_sum_lstm_reference(model.cell, x, ei)
    # top-down: torch.nn.LSTMCell with the down cell's weights, each node from its parent
    ref = torch.nn.LSTMCell(4, 4).to(DT)
    ref.load_state_dict(model.down_cell.state_dict())
    parent = dict(ei.t().tolist())
    down = {}
    for v in range(n):  # parents have smaller ids
        down[v] = ref(h_up[v:v + 1], down[parent[v]] if v in parent else None)
    h_down = torch.cat([down[v][0] for v in range(n)])
    c_down = torch.cat([down[v][1] for v in range(n)])
    h = model(x, ei)
    assert isinstance(h, torch.Tensor)
    torch.testing.assert_close(h, torch.cat([h_up, h_down], 1), atol=1e-12, rtol=0)
    h2, c2 = model(x, ei, return_state=True)
    torch.testing.assert_close(h2, h, atol=0, rtol=0)
    torch.testing.assert_close(c2, torch.cat([c_up, c_down], 1), atol=1e-12, rtol=0)
    torch.testing.assert_close(run_down(model.down_cell, h_up, ei), h_down, atol=1e-12, rtol=0)
    hd, cd = run_down(model.down_cell, h_up, ei, return_state=True)
    torch.testing.assert_close(cd, c_down, atol=1e-12, rtol=0)


def test_return_cell_is_a_deprecated_alias_that_warns_once():
    gen = torch.Generator().manual_seed(0)
    ei, _ = random_tree(6, gen)
    model = TreeLSTM(2, 3)
    x = torch.randn(6, 2)
    with pytest.warns(DeprecationWarning, match="return_state"):
        old = model(x, ei, return_cell=True)
    new = model(x, ei, return_state=True)
    assert torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x, ei, return_cell=True)  # once is enough


# ------------------------------------------------------------------ child_index, and pos to PyG
def sentences() -> list[sr.Tree]:
    return [sr.Tree.from_ptb("(3 (2 It) (4 (3 works) (2 .)))"),
            sr.Tree.from_ptb("(1 (2 Not) (1 (2 really) (1 good)))")]


def test_a_tree_batch_names_the_slot_child_index_and_has_no_pos():
    trees = sentences()
    vocab = sr.Vocab.build(trees)
    data = [t.to_data(vocab) for t in trees]
    for d, t in zip(data, trees, strict=True):
        assert isinstance(d, TreeData) and "pos" not in d and d.child_index.dtype == torch.long
        assert d.child_index.tolist() == t.flatten()[2]  # each node's place under its parent
    for batch in (sr.collate_trees(data), Batch.from_data_list(data),
                  next(iter(sr.TreeLoader(data, batch_size=2)))):
        assert "pos" not in batch
        # a slot, not a node id: PyG must not offset it when it batches
        assert batch.child_index.tolist() == sum((t.flatten()[2] for t in trees), [])


def test_pyg_transforms_that_read_pos_are_not_misled_by_a_tree_batch():
    trees = sentences()
    vocab = sr.Vocab.build(trees)
    batch = sr.collate_trees([t.to_data(vocab) for t in trees])
    model = TreeLSTM(5, 3, variant="n-ary").to(DT)
    x = torch.randn(batch.num_nodes, 5, dtype=DT)
    before = model(x, batch.edge_index, child_index=batch.child_index)
    # Center moves pos where there is one: a tree batch has none, so nothing changes
    centred = T.Center()(batch.clone())
    assert "pos" not in centred
    assert torch.equal(centred.child_index, batch.child_index)
    torch.testing.assert_close(model(x, centred.edge_index, child_index=centred.child_index),
                               before, atol=0, rtol=0)
    # transforms that need coordinates refuse the batch rather than read slots as positions
    for transform in (T.Distance(), T.Cartesian(), T.NormalizeScale(), T.KNNGraph(k=2)):
        with pytest.raises(AssertionError):
            transform(batch.clone())
    # real coordinates next to the slots: Distance reads them, the model reads child_index
    batch.pos = torch.randn(batch.num_nodes, 2, dtype=DT)
    out = T.Distance(norm=False)(batch.clone())
    src, dst = batch.edge_index
    torch.testing.assert_close(out.edge_attr.squeeze(1),
                               (batch.pos[dst] - batch.pos[src]).norm(dim=1))
    torch.testing.assert_close(model(x, out.edge_index, child_index=out.child_index), before,
                               atol=0, rtol=0)


def test_nary_models_without_child_index_say_so():
    ei = torch.tensor([[1, 2], [0, 0]])
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"TreeLSTM\(variant='n-ary'\): child_index is "
                                         r"required.*got None"):
        TreeLSTM(4, 3, "n-ary")(x, ei)
    cell = sr.NaryLSTMCell(4, 3)
    for call in (lambda: run_up(cell, x, ei),
                 lambda: run_schedule(cell, x, sr.tree_schedule(ei, 3).up, 3)):
        with pytest.raises(ValueError, match="child_index is required"):
            call()
    # Child-Sum models take (x, edge_index) alone and work out the rest themselves
    for model in (TreeLSTM(4, 3), TreeGRU(4, 3), BiTreeLSTM(4, 3)):
        assert model(x, ei).shape[0] == 3


def test_nary_tree_lstm_against_a_per_node_reference():
    """The N-ary cell over child_index, against the N-ary equations node by node."""
    gen = torch.Generator().manual_seed(3)
    n = 15
    ei, slot = random_tree(n, gen, max_children=2)
    model = TreeLSTM(3, 2, variant="n-ary").to(DT)
    x = torch.randn(n, 3, dtype=DT, generator=gen)
    cell, H, A = model.cell, 2, 2
    kids = children(ei, n)
    h, c = [None] * n, [None] * n
    for v in sorted(range(n), key=lambda v: -v):
        h_cat = torch.zeros(A * H, dtype=DT)
        c_slot = torch.zeros(A, H, dtype=DT)
        for k in kids[v]:
            h_cat[int(slot[k]) * H:(int(slot[k]) + 1) * H] = h[k]
            c_slot[int(slot[k])] = c[k]
        wx = cell.weight_ih @ x[v] + cell.bias_ih
        uh = cell.weight_hh @ h_cat + cell.bias_hh  # rows i, f_0, f_1, g, o
        i = torch.sigmoid(wx[:H] + uh[:H])
        f = [torch.sigmoid(wx[H:2 * H] + uh[(1 + s) * H:(2 + s) * H]) for s in range(A)]
        g = torch.tanh(wx[2 * H:3 * H] + uh[(1 + A) * H:(2 + A) * H])
        o = torch.sigmoid(wx[3 * H:] + uh[(2 + A) * H:])
        c[v] = i * g + sum(f[s] * c_slot[s] for s in range(A))
        h[v] = o * torch.tanh(c[v])
    got_h, got_c = model(x, ei, child_index=slot, return_state=True)
    torch.testing.assert_close(got_h, torch.stack(h), atol=1e-12, rtol=0)
    torch.testing.assert_close(got_c, torch.stack(c), atol=1e-12, rtol=0)
    with pytest.warns(DeprecationWarning, match="child_index"):
        old = model(x, ei, pos=slot)  # the old keyword, one release
    torch.testing.assert_close(old, got_h, atol=0, rtol=0)


# ------------------------------------------------------------------ files of the old layout
def test_tree_data_saved_with_pos_still_loads(tmp_path):
    trees = sentences()
    vocab = sr.Vocab.build(trees)
    new = [t.to_data(vocab) for t in trees]
    # the layout before the rename, built and saved by hand: the slot in an integer ``pos``
    old = [Data(x=d.x, edge_index=d.edge_index, y=d.y, pos=d.child_index.clone(),
                height=d.height, num_nodes=d.num_nodes) for d in new]
    torch.save(old, tmp_path / "trees.pt")
    loaded = torch.load(tmp_path / "trees.pt", weights_only=False)
    with pytest.warns(DeprecationWarning, match="child_index"):
        batch = next(iter(sr.TreeLoader(loaded, batch_size=2)))
    want = sr.collate_trees(new)
    assert "pos" not in batch and torch.equal(batch.child_index, want.child_index)
    model = TreeLSTM(4, 3, variant="n-ary")
    x = torch.randn(batch.num_nodes, 4)
    assert torch.equal(model(x, batch.edge_index, child_index=batch.child_index),
                       model(x, want.edge_index, child_index=want.child_index))


def test_an_sst_cache_of_the_old_format_still_loads(tmp_path):
    root = write_split(tmp_path / "sst", "dev", CACHED_LINES)
    first = SST(root, "dev")
    path = first.cache_path
    state = torch.load(path, weights_only=True)
    assert state["format"] == "structrnn-sst-2" and "child_index" in state
    # rewrite it as format 1 wrote it: the slot array named pos, its own checksum
    old = {k: v for k, v in state.items() if k != "child_index"}
    old["pos"] = state["child_index"]
    old["format"] = "structrnn-sst-1"
    old["key"] = "structrnn-sst-1:" + state["key"].partition(":")[2]
    crc = 0
    for name in ("num_nodes", "y", "pos", "height", "parent", "token_rows", "line_numbers",
                 "tokens"):
        crc = zlib.crc32(old[name].numpy(), zlib.crc32(name.encode(), crc))
    old["crc"] = crc
    torch.save(old, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read, not rebuilt as damaged
        again = SST(root, "dev")
    assert again.cache_hit
    assert_same_dataset(again, SST(root, "dev", use_cache=False))


def test_a_networkx_tree_with_pos_attributes_still_orders_its_children():
    t = sentences()[0]
    g = t.to_networkx()
    assert all("child_index" in a and "pos" not in a for _, a in g.nodes(data=True))
    old = nx.DiGraph(root=0)
    # the children added in reverse, ordered only by the old attribute
    for v in reversed(list(g.nodes)):
        attrs = dict(g.nodes[v])
        attrs["pos"] = attrs.pop("child_index")
        old.add_node(v, **attrs)
    old.add_edges_from(reversed(list(g.edges)))
    assert sr.Tree.from_networkx(old) == t


# ------------------------------------------------------------------ reset_parameters and repr
class UserCell(torch.nn.Module):
    """A user's cell with the many-predecessor call and its own reset_parameters."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.lin = torch.nn.Linear(input_size + hidden_size, hidden_size)
        self.resets = 0

    def reset_parameters(self) -> None:
        self.resets += 1
        self.lin.reset_parameters()

    def forward(self, x, prev=None, index=None, size=None):
        h = x.new_zeros(x.size(0), self.hidden_size)
        if prev is not None:
            h = h.index_add(0, index, prev)
        return torch.tanh(self.lin(torch.cat([x, h], 1)))


class NoResetCell(UserCell):
    reset_parameters = None  # a cell that cannot draw new weights


def public_modules():
    return {
        "TreeLSTM": lambda: TreeLSTM(3, 4),
        "TreeLSTM-n-ary": lambda: TreeLSTM(3, 4, variant="n-ary", arity=3),
        "TreeGRU": lambda: TreeGRU(3, 4),
        "RecursiveNN": lambda: RecursiveNN(4),
        "RNTN": lambda: RNTN(4),
        "BiTreeLSTM": lambda: BiTreeLSTM(3, 4),
        "DAGRecurrent": lambda: DAGRecurrent(sr.LSTMCell(3, 4), "both", aggr="attention"),
        "DAGRecurrent-user": lambda: DAGRecurrent(UserCell(3, 4), "both"),
    }


@pytest.mark.parametrize("name", list(public_modules()))
def test_reset_parameters_draws_every_parameter_anew(name):
    torch.manual_seed(0)
    model = public_modules()[name]()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    assert before
    torch.manual_seed(1)
    model.reset_parameters()
    for k, v in model.named_parameters():
        assert not torch.equal(v, before[k]), k
    if name == "DAGRecurrent-user":  # through the user's own method, once per direction
        assert model.cell.resets == 1 and model.backward_cell.resets == 2  # 1: its copy's draw
        assert not torch.equal(model.cell.lin.weight, model.backward_cell.lin.weight)


@pytest.mark.parametrize("name", ["TreeLSTM", "TreeLSTM-n-ary", "TreeGRU", "RecursiveNN", "RNTN",
                                  "BiTreeLSTM"])
def test_reset_parameters_draws_what_a_new_model_draws(name):
    """The draws of torch.nn's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for the cells' weights,
    in the order a new model draws them."""
    make = public_modules()[name]
    torch.manual_seed(7)
    new = make()
    model = make()
    torch.manual_seed(7)
    model.reset_parameters()
    for (k, a), (_, b) in zip(new.named_parameters(), model.named_parameters(), strict=True):
        assert torch.equal(a, b), k
        if k.endswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
            bound = 1 / model.hidden_size ** 0.5
            assert float(b.abs().max()) <= bound


def test_a_user_cell_without_reset_parameters_is_refused_never_shared():
    with pytest.raises(TypeError, match=r"NoResetCell has no reset_parameters\(\)"):
        DAGRecurrent(NoResetCell(3, 4), "both")
    one_way = DAGRecurrent(NoResetCell(3, 4))
    with pytest.raises(TypeError, match="NoResetCell has parameters but no reset_parameters"):
        one_way.reset_parameters()
    # weights shared on purpose stay allowed, and are drawn once
    cell = UserCell(3, 4)
    shared = DAGRecurrent(cell, "both", backward_cell=cell)
    shared.reset_parameters()
    assert cell.resets == 1
    # a cell with no parameters has nothing to share
    class Summing(torch.nn.Module):
        def forward(self, x, prev=None, index=None, size=None):
            return x if prev is None else x.index_add(0, index, prev)

    DAGRecurrent(Summing(), "both").reset_parameters()


def test_repr_shows_the_sizes():
    assert repr(TreeLSTM(3, 4)).startswith("TreeLSTM(\n  3, 4\n")
    assert "3, 4, variant='n-ary', arity=3" in repr(TreeLSTM(3, 4, variant="n-ary", arity=3))
    assert repr(TreeGRU(3, 4)).startswith("TreeGRU(\n  3, 4\n")
    assert "4, arity=2" in repr(RNTN(4)) and "RecursiveCell(4, arity=2)" in repr(RecursiveNN(4))
    assert repr(BiTreeLSTM(3, 4)).startswith("BiTreeLSTM(\n  3, 4\n")
    text = repr(DAGRecurrent(sr.GRUCell(3, 4), "both", aggr="attention"))
    assert "input_size=3, hidden_size=4, direction='both', aggr='attention'" in text
    assert "GRUCell(3, 4)" in text


def test_aggregation_is_a_deprecated_alias_of_aggr():
    cell = sr.GRUCell(3, 4)
    with pytest.warns(DeprecationWarning, match="aggr="):
        old = DAGRecurrent(cell, aggregation="attention")
    assert old.aggr == "attention" and old.attention is not None
    with pytest.raises(TypeError, match="both"):
        DAGRecurrent(cell, aggr="attention", aggregation="sum")
    from structrnn.tasks.circuits.task import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--aggr", "attention"]).aggr == "attention"
    assert parser.parse_args(["--aggregation", "attention"]).aggr == "attention"


# ------------------------------------------------------------------ no import loop in trees
def test_the_tree_modules_import_each_other_one_way():
    package = REPO / "structrnn"
    graph = {}
    for path in sorted((package / "trees").glob("*.py")) + sorted((package / "levels").rglob(
            "*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = {d for d in structrnn_imports(path) if d in graph or d.startswith(
            ("structrnn.trees.", "structrnn.levels."))}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep == node.rpartition(".")[0]:
                continue  # a module of a package may import its package's __init__ names
            assert state.get(dep) != 1, " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for module in graph:
        if module not in state and not module.endswith(("trees", "levels")):
            visit(module, [])
    assert "structrnn.trees.convert" not in graph["structrnn.trees.tree"] or \
        "structrnn.trees.tree" not in graph["structrnn.trees.convert"]
    assert "structrnn.trees.tree" not in graph["structrnn.trees.brackets"]
