"""The fused Tree-LSTM passes (structrnn.levels.kernels.child_sum and .nary) against the
op-by-op path (autograd through the cells' combine) and torch.autograd.gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

import structrnn as sr
from structrnn.levels.kernels.child_sum import child_sum_lstm
from structrnn.levels.kernels.nary import nary_lstm
from structrnn.levels.run import run_schedule
from structrnn.levels.schedule import make_schedule, tree_schedule
from structrnn.trees.data import TreeData
from tests.test_recursive import random_tree

DT = torch.double


def forest(sizes, seed=0, max_children=None):
    gen = torch.Generator().manual_seed(seed)
    data = []
    for n in sizes:
        edge_index, pos = random_tree(n, gen, max_children)
        data.append(TreeData(edge_index=edge_index, child_index=pos, num_nodes=n))
    return Batch.from_data_list(data)


def states_and_grads(cell, x, schedule, n, fused, pos=None):
    h, c = run_schedule(cell, x, schedule, n, child_index=pos, fused=fused, return_state=True)
    gen = torch.Generator().manual_seed(1)
    w_h = torch.randn(h.shape, generator=gen, dtype=h.dtype)
    w_c = torch.randn(c.shape, generator=gen, dtype=c.dtype)
    inputs = ([x] if x is not None else []) + [p for p in cell.parameters()]
    grads = torch.autograd.grad((h * w_h).sum() + (c * w_c).sum(), inputs, allow_unused=True)
    return h, c, grads


def assert_fused_equals_op_by_op(cell, x, schedule, n, pos=None):
    h1, c1, g1 = states_and_grads(cell, x, schedule, n, fused=True, pos=pos)
    h0, c0, g0 = states_and_grads(cell, x, schedule, n, fused=False, pos=pos)
    torch.testing.assert_close(h1, h0, atol=1e-12, rtol=0)
    torch.testing.assert_close(c1, c0, atol=1e-12, rtol=0)
    for a, b in zip(g1, g0, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_x", [True, False])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_fused_equals_op_by_op(bias, with_x, direction):
    batch = forest([1, 2, 9, 30, 17], seed=3)
    n = batch.num_nodes
    schedule = getattr(tree_schedule(batch.edge_index, n), direction)
    cell = sr.LSTMCell(5, 4, bias=bias).to(DT)
    x = torch.randn(n, 5, dtype=DT, requires_grad=True) if with_x else None
    assert_fused_equals_op_by_op(cell, x, schedule, n)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_x", [True, False])
@pytest.mark.parametrize("arity", [1, 2, 3])
def test_fused_nary_equals_op_by_op(bias, with_x, arity):
    batch = forest([1, 2, 9, 30, 17], seed=arity, max_children=arity)
    n = batch.num_nodes
    schedule = tree_schedule(batch.edge_index, n).up
    cell = sr.NaryLSTMCell(5, 4, arity=arity, bias=bias).to(DT)
    x = torch.randn(n, 5, dtype=DT, requires_grad=True) if with_x else None
    assert_fused_equals_op_by_op(cell, x, schedule, n, pos=batch.child_index)


def test_fused_nary_with_every_child_in_slot_zero():
    batch = forest([7, 5], seed=9)
    schedule = tree_schedule(batch.edge_index, batch.num_nodes).up
    cell = sr.NaryLSTMCell(3, 2, arity=2).to(DT)
    x = torch.randn(batch.num_nodes, 3, dtype=DT)
    zeros = torch.zeros(batch.num_nodes, dtype=torch.long)
    h1 = run_schedule(cell, x, schedule, batch.num_nodes, zeros, fused=True)
    h0 = run_schedule(cell, x, schedule, batch.num_nodes, zeros, fused=False)
    torch.testing.assert_close(h1, h0)
    # without child_index an N-ary cell is refused, as the cell's own indexed call refuses it
    with pytest.raises(ValueError, match="child_index is required"):
        run_schedule(cell, x, schedule, batch.num_nodes)


def test_fused_on_a_dag_where_a_node_feeds_two_nodes():
    # node 0 feeds both 2 and 3; levels 0, 0, 1, 1, 2
    level = torch.tensor([0, 0, 1, 1, 2])
    src, dst = torch.tensor([0, 1, 0, 2, 3]), torch.tensor([2, 2, 3, 4, 4])
    schedule = make_schedule(level, src, dst)
    cell = sr.LSTMCell(3, 2).to(DT)
    x = torch.randn(5, 3, dtype=DT, requires_grad=True)
    assert_fused_equals_op_by_op(cell, x, schedule, 5)


def test_kernel_passes_gradcheck():
    batch = forest([5, 7, 1], seed=5)
    s = tree_schedule(batch.edge_index, batch.num_nodes).up
    pre = torch.randn(batch.num_nodes, 12, dtype=DT, requires_grad=True)
    w_hh = torch.randn(12, 3, dtype=DT, requires_grad=True)

    def f(pre, w_hh):
        return child_sum_lstm(pre, w_hh, s)

    assert torch.autograd.gradcheck(f, (pre, w_hh))


def test_nary_kernel_passes_gradcheck():
    batch = forest([5, 7, 1], seed=5, max_children=2)
    s = tree_schedule(batch.edge_index, batch.num_nodes).up
    slot = batch.child_index[s.order][s.pred]
    pre = torch.randn(batch.num_nodes, 15, dtype=DT, requires_grad=True)  # (3 + 2) * H
    w_hh = torch.randn(15, 6, dtype=DT, requires_grad=True)

    def f(pre, w_hh):
        return nary_lstm(pre, w_hh, s, slot, 2)

    assert torch.autograd.gradcheck(f, (pre, w_hh))


def test_only_h_or_only_c_used():
    batch = forest([8, 6], seed=2)
    s = tree_schedule(batch.edge_index, batch.num_nodes).up
    cell = sr.LSTMCell(3, 2).to(DT)
    x = torch.randn(batch.num_nodes, 3, dtype=DT, requires_grad=True)
    for which in (0, 1):
        fused = run_schedule(cell, x, s, batch.num_nodes, fused=True)[which].sum()
        plain = run_schedule(cell, x, s, batch.num_nodes, fused=False)[which].sum()
        torch.testing.assert_close(torch.autograd.grad(fused, x)[0],
                                   torch.autograd.grad(plain, x)[0])


def test_subclass_with_its_own_step_is_not_fused():
    class Damped(sr.LSTMCell):
        def combine(self, x_proj, prev, index, size):
            h, c = super().combine(x_proj, prev, index, size)
            return 0.5 * h, c

    batch = forest([6], seed=1)
    s = tree_schedule(batch.edge_index, batch.num_nodes).up
    cell = Damped(3, 2)
    x = torch.randn(batch.num_nodes, 3)
    h_default, _ = run_schedule(cell, x, s, batch.num_nodes, return_state=True)
    h_plain, _ = run_schedule(cell, x, s, batch.num_nodes, fused=False, return_state=True)
    torch.testing.assert_close(h_default, h_plain)


def test_autocast_takes_the_op_by_op_path():
    batch = forest([6, 4], seed=4)
    s = tree_schedule(batch.edge_index, batch.num_nodes).up
    cell = sr.LSTMCell(3, 2)
    x = torch.randn(batch.num_nodes, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h_default, _ = run_schedule(cell, x, s, batch.num_nodes, return_state=True)
        h_plain, _ = run_schedule(cell, x, s, batch.num_nodes, fused=False, return_state=True)
    torch.testing.assert_close(h_default, h_plain)


def test_no_grad_and_tree_model_default_use_the_kernel():
    batch = forest([10, 3], seed=6)
    model = sr.TreeLSTM(4, 3)
    x = torch.randn(batch.num_nodes, 4)
    with torch.no_grad():
        h = model(x, batch.edge_index)
    s = tree_schedule(batch.edge_index, batch.num_nodes).up
    h_plain, _ = run_schedule(model.cell, x, s, batch.num_nodes, fused=False, return_state=True)
    torch.testing.assert_close(h, h_plain)
