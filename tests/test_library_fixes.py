"""The library bugs of issue 14, each against an independent reference: a user's collate_fn in
TreeLoader, the fused Tree-LSTM route with a subclassed cell, RNTN's one initialisation, errors
raised inside a user's graph model, hooks around the split first Linear, and host
synchronisations (one per user call or batch, none per level or round)."""

from __future__ import annotations

import collections
import contextlib
import copy
import math
import pickle
import sys

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

import structrnn as sr
from structrnn.graphs import network
from structrnn.graphs.models import MPNN, EncodeProcessDecode, mlp
from structrnn.graphs.network import GraphNetwork
from structrnn.levels import run as level_run
from structrnn.levels.run import run_up
from structrnn.trees.data import TreeData
from structrnn.trees.models import RecursiveCell, RNTNCell

D64 = torch.float64
TEXTS = ["(3 (2 It) (4 (3 works) (2 .)))", "(1 (2 not) (1 (2 very) (1 bad)))", "(2 x)",
         "(4 (2 a) (3 (2 b) (2 c)))"]


def tree_data():
    trees = [sr.Tree.from_ptb(t) for t in TEXTS]
    vocab = sr.Vocab.build(trees)
    return [t.to_data(vocab) for t in trees]


def assert_same_schedule(got, want):
    for direction in ("up", "down"):
        g, w = getattr(got, direction), getattr(want, direction)
        for name in ("order", "rank", "pred", "target", "edge_perm"):
            assert torch.equal(getattr(g, name), getattr(w, name)), (direction, name)
        assert g.node_ptr == w.node_ptr and g.edge_ptr == w.edge_ptr, direction


# -- 1. TreeLoader and a user's collate_fn -------------------------------------------------------
def collate_with_count(data_list):
    """A user's collate_fn (module level, so that workers could pickle it): adds a field."""
    batch = Batch.from_data_list(data_list)
    batch.trees_here = torch.tensor([len(data_list)])
    return batch


def test_tree_loader_calls_a_user_collate_fn_and_attaches_the_schedule():
    data = tree_data()
    calls = []

    def collate(data_list):
        calls.append(len(data_list))
        return collate_with_count(data_list)

    batches = list(sr.TreeLoader(data, batch_size=3, collate_fn=collate))
    assert calls == [3, 1]
    for batch, chunk in zip(batches, (data[:3], data[3:]), strict=True):
        assert batch.trees_here.tolist() == [len(chunk)]
        assert_same_schedule(batch.schedule, sr.collate_trees(chunk).schedule)
    # a module-level collate_fn stays picklable for DataLoader workers
    loader = sr.TreeLoader(data, batch_size=2, collate_fn=collate_with_count)
    assert pickle.loads(pickle.dumps(loader.collate_fn)).collate_fn is collate_with_count


@pytest.mark.parametrize("collate", [lambda data_list: data_list,
                                     lambda data_list: Batch.from_data_list(
                                         [Data(x=d.x) for d in data_list])],
                         ids=["a list", "no edge_index"])
def test_tree_loader_names_collate_fn_when_it_returns_no_tree_batch(collate):
    with pytest.raises(TypeError, match="collate_fn must return a torch_geometric Batch with "
                                        "edge_index"):
        next(iter(sr.TreeLoader(tree_data(), batch_size=2, collate_fn=collate)))


def test_tree_loader_without_collate_fn_is_collate_trees():
    data = tree_data()
    (batch,) = list(sr.TreeLoader(data, batch_size=4))
    assert_same_schedule(batch.schedule, sr.collate_trees(data).schedule)


# -- 2. the fused route and cells that change a step --------------------------------------------
class ScaledInput(sr.LSTMCell):
    """Scales the input before the projection: the fused kernel must see it."""

    def project_input(self, x):
        return None if x is None else super().project_input(2.0 * x)


class ScaledNary(sr.NaryLSTMCell):
    def project_input(self, x):
        return None if x is None else super().project_input(2.0 * x)


class ShiftedGates(sr.LSTMCell):
    """Changes what no input contributes (``x=None``)."""

    def _input_gates(self, x_proj, size):
        return super()._input_gates(x_proj, size) + 0.5


class OwnCombine(sr.LSTMCell):
    def combine(self, x_proj, prev, index, size):
        h, c = super().combine(x_proj, prev, index, size)
        return 0.5 * h, c


def _kernel_calls(monkeypatch):
    calls = collections.Counter()
    for name in ("child_sum_lstm", "nary_lstm"):
        original = getattr(level_run, name)

        def spy(*args, _original=original, _name=name):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(level_run, name, spy)
    return calls


def _outputs_and_grads(cell, x, batch, fused, pos=None):
    h, c = run_up(cell, x, batch.edge_index, child_index=pos, schedule=batch.schedule,
                  num_nodes=batch.num_nodes, fused=fused, return_state=True)
    weights = torch.linspace(-1, 1, h.numel(), dtype=D64).view_as(h)
    params = list(cell.parameters())
    grads = torch.autograd.grad((h * weights).sum() + (c * weights).sum(), params,
                                allow_unused=True)  # weight_ih is unused without inputs
    return (h, c), [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@pytest.mark.parametrize("kind,with_input", [(ScaledInput, True), (ScaledNary, True),
                                             (ShiftedGates, False)])
def test_fused_route_honours_the_cells_input_methods(kind, with_input, monkeypatch):
    batch = sr.collate_trees(tree_data())
    torch.manual_seed(0)
    cell = kind(3, 4).double()
    pos = batch.child_index if issubclass(kind, sr.NaryLSTMCell) else None
    x = torch.randn(batch.num_nodes, 3, dtype=D64) if with_input else None
    calls = _kernel_calls(monkeypatch)
    fused, fused_grads = _outputs_and_grads(cell, x, batch, True, pos)
    assert sum(calls.values()) == 1  # the kernel ran: the subclass keeps the fast route
    op_by_op, op_grads = _outputs_and_grads(cell, x, batch, False, pos)
    assert sum(calls.values()) == 1
    for a, b in [*zip(fused, op_by_op), *zip(fused_grads, op_grads)]:
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    # the override matters: the stock cell with the same weights gives other states
    plain = (sr.NaryLSTMCell(3, 4) if pos is not None else sr.LSTMCell(3, 4)).double()
    plain.load_state_dict(cell.state_dict())
    stock, _ = _outputs_and_grads(plain, x, batch, False, pos)
    assert not torch.allclose(stock[0], fused[0], atol=1e-3)
    if kind is ScaledInput:  # and equals the stock cell on the scaled input
        scaled, _ = _outputs_and_grads(plain, 2.0 * x, batch, False, pos)
        torch.testing.assert_close(scaled[0], fused[0], atol=1e-10, rtol=0)


def test_a_cell_with_its_own_combine_runs_op_by_op(monkeypatch):
    batch = sr.collate_trees(tree_data())
    torch.manual_seed(0)
    cell = OwnCombine(3, 4).double()
    x = torch.randn(batch.num_nodes, 3, dtype=D64)
    calls = _kernel_calls(monkeypatch)
    got, _ = _outputs_and_grads(cell, x, batch, True)
    assert sum(calls.values()) == 0
    want, _ = _outputs_and_grads(cell, x, batch, False)
    torch.testing.assert_close(got[0], want[0], atol=0, rtol=0)


# -- 3. RNTN: one initialisation ----------------------------------------------------------------
@pytest.mark.parametrize("hidden,arity", [(6, 2), (5, 3)])
def test_rntn_reset_parameters_draws_as_the_constructor(hidden, arity):
    torch.manual_seed(7)
    fresh = RNTNCell(hidden, arity)
    reset = sr.RNTN(hidden, arity).cell
    torch.manual_seed(7)
    reset.reset_parameters()
    assert list(fresh.state_dict()) == list(reset.state_dict()) == ["weight_hh", "bias_hh",
                                                                    "tensor"]
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, reset.state_dict()[name]), name
    k = arity * hidden
    for cell in (fresh, reset):
        assert float(cell.tensor.detach().abs().max()) <= 1.0 / k
        assert float(cell.weight_hh.detach().abs().max()) <= 1.0 / math.sqrt(hidden)


def test_recursive_cell_has_no_input_weights_and_draws_like_torch():
    torch.manual_seed(3)
    cell = RecursiveCell(4, arity=2)
    assert cell.weight_ih is None and cell.bias_ih is None
    assert [n for n, _ in cell.named_parameters()] == ["weight_hh", "bias_hh"]
    torch.manual_seed(3)
    bound = 1.0 / math.sqrt(4)
    want_w = torch.empty(4, 8).uniform_(-bound, bound)
    want_b = torch.empty(4).uniform_(-bound, bound)
    assert torch.equal(cell.weight_hh, want_w) and torch.equal(cell.bias_hh, want_b)


# -- 4. errors inside a user's graph model -------------------------------------------------------
def graph_batch(d=5, sizes=(4, 3, 5), seed=0):
    gen = torch.Generator().manual_seed(seed)
    graphs = [Data(x=torch.randn(n, d, generator=gen, dtype=D64),
                   edge_index=torch.randint(0, n, (2, 2 * n), generator=gen),
                   edge_attr=torch.randn(2 * n, d, generator=gen, dtype=D64),
                   u=torch.randn(1, d, generator=gen, dtype=D64)) for n in sizes]
    return Batch.from_data_list(graphs)


class Broken(nn.Module):
    def forward(self, inp):
        raise RuntimeError("size of my buffer is wrong")


def test_an_error_inside_a_user_model_reaches_the_caller_unchanged():
    b = graph_batch()
    for gn in (GraphNetwork(Broken()), GraphNetwork(None, Broken()),
               GraphNetwork(None, None, Broken())):
        with pytest.raises(RuntimeError) as info:
            gn(b)
        assert type(info.value) is RuntimeError
        assert str(info.value) == "size of my buffer is wrong"


def test_a_width_mismatch_is_caught_before_the_model_runs():
    b = graph_batch()
    model = mlp([3 * 5, 4]).double()
    calls = []
    model[0].register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=r"the edge model \(Sequential\) expects 15 input "
                                         r"features \(in_features=15\), but its input has 20 = "
                                         r"\[edge 5, sender 5, receiver 5, global 5\]"):
        GraphNetwork(model)(b)
    assert calls == []


# -- 5. hooks around the split first Linear ------------------------------------------------------
def edge_input(b):
    """The edge model's input as the block defines it, built here by hand."""
    src, dst = b.edge_index
    return torch.cat([b.edge_attr, b.x[src], b.x[dst], b.u[b.batch[src]]], 1)


def _run_edges(model, b):
    gn = GraphNetwork(model, edge_aggr="sum")
    _, e, _ = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch, num_graphs=b.num_graphs)
    return e


def test_a_forward_hook_on_the_sequential_is_called_and_changes_the_output():
    b = graph_batch()
    torch.manual_seed(0)
    model = mlp([20, 7, 5]).double()
    reference = copy.deepcopy(model)  # no hook
    seen = []

    def hook(module, inputs, output):
        seen.append(tuple(inputs[0].shape))
        return 2.0 * output

    model.register_forward_hook(hook)
    got = _run_edges(model, b)
    assert seen == [(b.num_edges, 20)]
    torch.testing.assert_close(got, 2.0 * reference(edge_input(b)), atol=1e-12, rtol=0)


def _pre_hook_on_inner(model, seen):
    model.register_forward_pre_hook(lambda m, inputs: seen.append("pre"))


def _backward_hook(model, seen):
    model.register_full_backward_hook(lambda m, gin, gout: seen.append("backward"))


@pytest.mark.parametrize("install", [_pre_hook_on_inner, _backward_hook])
def test_other_hooks_switch_the_split_off(install):
    b = graph_batch()
    torch.manual_seed(0)
    inner = mlp([20, 7, 5]).double()
    model = nn.Sequential(inner, nn.Tanh())  # the Linear sits in a nested Sequential
    reference = copy.deepcopy(model)
    seen = []
    install(model if install is _backward_hook else inner, seen)
    x = b.x.clone().requires_grad_(True)
    b = b.clone()
    b.x = x
    got = _run_edges(model, b)
    got.sum().backward()
    assert seen == (["pre"] if install is _pre_hook_on_inner else ["backward"])
    torch.testing.assert_close(got, reference(edge_input(b)), atol=1e-12, rtol=0)


def test_a_global_forward_hook_sees_the_whole_model():
    b = graph_batch()
    torch.manual_seed(0)
    model = mlp([20, 7, 5]).double()
    seen = []
    handle = nn.modules.module.register_module_forward_hook(
        lambda m, inputs, output: seen.append(m) if m is model else None)
    try:
        got = _run_edges(model, b)
    finally:
        handle.remove()
    assert seen == [model]
    torch.testing.assert_close(got, model(edge_input(b)), atol=1e-12, rtol=0)


def test_without_hooks_the_split_path_still_runs(monkeypatch):
    b = graph_batch()
    torch.manual_seed(0)
    model = mlp([20, 7, 5]).double()
    calls = []
    original = network._split_linear_apply
    monkeypatch.setattr(network, "_split_linear_apply",
                        lambda *args: calls.append(1) or original(*args))
    got = _run_edges(model, b)
    assert calls == [1]
    torch.testing.assert_close(got, model(edge_input(b)), atol=1e-12, rtol=0)


# -- 6. host synchronisations --------------------------------------------------------------------
@contextlib.contextmanager
def host_reads():
    """Counts every way a tensor's value reaches Python (each one a host synchronisation when
    the tensor lives on a GPU)."""
    counts = collections.Counter()
    saved = {}
    for name in ("item", "tolist", "__int__", "__float__", "__bool__", "__index__"):
        saved[name] = original = getattr(torch.Tensor, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        setattr(torch.Tensor, name, spy)
    try:
        yield counts
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def index_checks():
    """Counts the calls of the index checks, wherever the library imported them."""
    from structrnn import _checks

    calls = []
    originals = {name: getattr(_checks, name) for name in ("check_index", "check_indices")
                 if hasattr(_checks, name)}
    patched = []
    for module in [m for k, m in sys.modules.items() if k.startswith("structrnn")]:
        for name, original in originals.items():
            if getattr(module, name, None) is original:
                def spy(*args, _original=original, **kwargs):
                    calls.append(args)
                    return _original(*args, **kwargs)

                setattr(module, name, spy)
                patched.append((module, name, original))
    try:
        yield calls
    finally:
        for module, name, original in patched:
            setattr(module, name, original)


def test_a_users_indexed_cell_call_reads_the_bounds_once():
    index = torch.tensor([0, 3, 0, 1, 4, 0, 3])
    for cell, kwargs in ((sr.LSTMCell(3, 4), {}), (sr.GRUCell(3, 4), {}),
                         (sr.NaryLSTMCell(3, 4, arity=2),
                          {"child_index": torch.tensor([0, 0, 1, 0, 0, 1, 1])})):
        prev = cell.zero_state(7, torch.zeros(1))
        with host_reads() as reads, index_checks() as checks:
            cell(torch.randn(6, 3), prev, index=index, size=6, **kwargs)
        assert sum(reads.values()) == 1, (type(cell).__name__, reads)
        assert len(checks) == 1
    # and it still checks them
    with pytest.raises(ValueError, match=r"child_index has entry 2 but only 2"):
        sr.NaryLSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4),) * 2,
                              index=torch.tensor([0, 1]), child_index=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"index has a negative entry \(-1\)"):
        sr.RNNCell(3, 4)(torch.randn(2, 3), torch.zeros(2, 4), index=torch.tensor([0, -1]))


def chain_batch(depth=10):
    """A chain of ``depth`` nodes (``depth`` levels) batched with two small trees."""
    chain = TreeData(x=torch.zeros(depth, 1),
                     edge_index=torch.stack([torch.arange(depth - 1), torch.arange(1, depth)]),
                     child_index=torch.zeros(depth, dtype=torch.long))
    small = TreeData(x=torch.zeros(3, 1), edge_index=torch.tensor([[0, 1], [2, 2]]),
                     child_index=torch.tensor([0, 1, 0]))
    return sr.collate_trees([chain, small, small])


@pytest.mark.parametrize("make", [lambda: sr.RNNCell(3, 4), lambda: sr.GRUCell(3, 4),
                                  lambda: sr.LSTMCell(3, 4), lambda: sr.NaryLSTMCell(3, 4),
                                  lambda: RecursiveCell(3)])
@pytest.mark.parametrize("fused", [False, True])
def test_a_run_over_a_schedule_validates_at_most_once(make, fused):
    batch = chain_batch()
    assert batch.schedule.up.num_levels == 10
    cell = make()
    slotted = hasattr(cell, "arity")
    x = torch.randn(batch.num_nodes, 3)
    with host_reads() as reads, index_checks() as checks:
        run_up(cell, x, batch.edge_index, child_index=batch.child_index if slotted else None,
               schedule=batch.schedule, fused=fused)
    assert len(checks) <= 1
    assert sum(reads.values()) == (1 if slotted else 0), reads  # the slots: once per pass


def mpnn_inputs(readout="set2set"):
    b = graph_batch(d=3)
    return b, MPNN(3, 3, hidden=4, steps=3, readout=readout, edge_hidden=8).double()


@pytest.mark.parametrize("readout", ["set2set", "sum", None])
def test_mpnn_counts_the_graphs_once_not_once_per_round(readout):
    b, model = mpnn_inputs(readout)
    with host_reads() as reads:
        counted = model(b.x, b.edge_index, b.edge_attr, b.batch)
    assert sum(reads.values()) == 1, reads
    torch.testing.assert_close(counted, model(b), atol=0, rtol=0)


def test_mpnn_with_the_graph_count_never_reads_the_device(monkeypatch):
    b, model = mpnn_inputs()
    batch = b.batch
    reduced = []
    original_max = torch.Tensor.max
    monkeypatch.setattr(torch.Tensor, "max", lambda self, *args, **kwargs: (
        reduced.append(self is batch) or original_max(self, *args, **kwargs)))
    with host_reads() as reads:
        out = model(b.x, b.edge_index, b.edge_attr, batch, num_graphs=b.num_graphs)
        from_data = model(b)
    assert sum(reads.values()) == 0, reads
    assert True not in reduced
    assert out.shape == (3, 1)
    torch.testing.assert_close(out, from_data, atol=0, rtol=0)


def test_encode_process_decode_counts_the_graphs_once():
    b = graph_batch(d=3)
    model = EncodeProcessDecode(3, 3, node_out=2, global_out=1, hidden=4, steps=4).double()
    with host_reads() as reads:
        outputs = model(b.x, b.edge_index, b.edge_attr, batch=b.batch)
    assert sum(reads.values()) == 1, reads
    with host_reads() as reads:
        again = model(b.x, b.edge_index, b.edge_attr, batch=b.batch, num_graphs=b.num_graphs)
    assert sum(reads.values()) == 0, reads
    torch.testing.assert_close(outputs[-1][2], again[-1][2], atol=0, rtol=0)


def test_count_graphs():
    batch = torch.tensor([0, 0, 2])
    assert network.count_graphs(batch) == 3
    assert network.count_graphs(batch, num_graphs=5) == 5
    assert network.count_graphs(batch, torch.zeros(4, 2)) == 4
    assert network.count_graphs(batch, (torch.zeros(4, 2), torch.zeros(4, 2))) == 4
    assert network.count_graphs(None) == 1
    assert network.count_graphs(torch.zeros(0, dtype=torch.long)) == 0


def test_node_ids_are_checked_once_where_the_schedule_is_built():
    with pytest.raises(ValueError, match=r"edge_index: node ids must be in \[0, 3\) "
                                         r"\(num_nodes=3\), got entries from 0 to 7"):
        sr.tree_schedule(torch.tensor([[0, 1], [2, 7]]), 3)
    with pytest.raises(ValueError, match=r"node ids must be in \[0, 3\)"):
        sr.TreeLSTM(2, 3)(torch.randn(3, 2), torch.tensor([[0, -1], [2, 2]]))
    bad = Data(x=torch.zeros(3, 1), edge_index=torch.tensor([[0, 1], [2, 3]]))
    with pytest.raises(ValueError, match=r"node ids must be in \[0, 3\)"):
        sr.collate_trees([bad])
