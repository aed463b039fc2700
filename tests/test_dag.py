"""DAGRecurrent against references written here: a per-node loop in topological order (plain
tensor ops, and the cell's own index call), the tree model, the sequence LSTM/GRU (and
torch.nn's), hand-computed attention; the cycle error; gradcheck. All in float64."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

import structrnn as sr
from structrnn.graphs import DAGAttention, DAGRecurrent
from structrnn.levels.schedule import dag_levels, dag_schedule
from structrnn.trees.models import TreeGRU, TreeLSTM

DT = torch.float64


# ------------------------------------------------------------------ graphs and references
def random_dag(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Edges i -> j (i < j in a hidden order) with probability p, node ids shuffled so that the
    ids say nothing about the order. Returns edge_index (2, E)."""
    upper = (torch.rand(n, n, generator=gen) < p).triu(1)
    src, dst = upper.nonzero().t()
    perm = torch.randperm(n, generator=gen)
    return torch.stack([perm[src], perm[dst]])


def topological_order(edge_index: torch.Tensor, n: int) -> list[int]:
    """Kahn's algorithm, one node at a time."""
    preds = predecessors(edge_index, n)
    succ: list[list[int]] = [[] for _ in range(n)]
    for u, v in edge_index.t().tolist():
        succ[u].append(v)
    waiting = [len(p) for p in preds]
    ready = [v for v in range(n) if waiting[v] == 0]
    order = []
    while ready:
        u = ready.pop()
        order.append(u)
        for v in succ[u]:
            waiting[v] -= 1
            if waiting[v] == 0:
                ready.append(v)
    assert len(order) == n
    return order


def predecessors(edge_index: torch.Tensor, n: int) -> list[list[int]]:
    preds: list[list[int]] = [[] for _ in range(n)]
    for u, v in edge_index.t().tolist():
        preds[v].append(u)
    return preds


def plain_lstm_node(cell: sr.LSTMCell, x_v, hs, cs):
    """The Child-Sum Tree-LSTM equations (Tai et al. 2015) for one node with predecessor states
    ``hs``, ``cs`` (k, H), k >= 0."""
    H = cell.hidden_size
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh
    h_sum = hs.sum(0)
    gates = W @ x_v + U @ h_sum + b
    i, g, o = torch.sigmoid(gates[:H]), torch.tanh(gates[2 * H:3 * H]), torch.sigmoid(gates[3 * H:])
    c = i * g
    for h_k, c_k in zip(hs, cs, strict=True):
        f_k = torch.sigmoid(W[H:2 * H] @ x_v + U[H:2 * H] @ h_k + b[H:2 * H])
        c = c + f_k * c_k
    return o * torch.tanh(c), c


def plain_gru_node(cell: sr.GRUCell, x_v, hs):
    """torch.nn.GRUCell's equations from the summed predecessor state (zero without any)."""
    H = cell.hidden_size
    h = hs.sum(0)
    gx = cell.weight_ih @ x_v + cell.bias_ih
    gh = cell.weight_hh @ h + cell.bias_hh
    r = torch.sigmoid(gx[:H] + gh[:H])
    z = torch.sigmoid(gx[H:2 * H] + gh[H:2 * H])
    n = torch.tanh(gx[2 * H:] + r * gh[2 * H:])
    return (1 - z) * n + z * h


def per_node_plain(cell, x, edge_index, n):
    """Every node in topological order, one at a time, plain tensor ops."""
    preds = predecessors(edge_index, n)
    H = cell.hidden_size
    h: list = [None] * n
    c: list = [None] * n
    for v in topological_order(edge_index, n):
        hs = torch.stack([h[u] for u in preds[v]]) if preds[v] else x.new_zeros(0, H)
        if isinstance(cell, sr.LSTMCell):
            cs = torch.stack([c[u] for u in preds[v]]) if preds[v] else x.new_zeros(0, H)
            h[v], c[v] = plain_lstm_node(cell, x[v], hs, cs)
        else:
            h[v] = plain_gru_node(cell, x[v], hs)
    return (torch.stack(h), torch.stack(c)) if isinstance(cell, sr.LSTMCell) else torch.stack(h)


def per_node_cell(cell, x, edge_index, n, attention: DAGAttention | None = None):
    """Every node in topological order through the cell's index call (one result row), its
    predecessors weighted by a softmax written out here when ``attention`` is given."""
    preds = predecessors(edge_index, n)
    states: list = [None] * n
    for v in topological_order(edge_index, n):
        if not preds[v]:
            states[v] = sr.cells.state_tuple(cell(x[v:v + 1]))
            continue
        parts = len(states[preds[v][0]])  # 2 for (h, c)
        prev = [torch.cat([states[u][k] for u in preds[v]]) for k in range(parts)]
        if attention is not None:
            score = prev[0] @ attention.pred.weight[0] + x[v] @ attention.node.weight[0]
            alpha = torch.exp(score) / torch.exp(score).sum()
            prev = [t * alpha[:, None] for t in prev]
        index = torch.zeros(len(preds[v]), dtype=torch.long)
        states[v] = sr.cells.state_tuple(cell(x[v:v + 1], sr.cells.state_from_tuple(prev),
                                              index=index, size=1))
    return sr.cells.state_from_tuple([torch.cat(parts) for parts in zip(*states, strict=True)])


def loss_weights(out, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in sr.cells.state_tuple(out)]


def value_and_grads(out, weights, inputs):
    total = sum((t * w).sum() for t, w in zip(sr.cells.state_tuple(out), weights,
                                                  strict=True))
    return torch.autograd.grad(total, inputs)


def assert_states_and_grads_equal(ours, ref, inputs):
    for a, b in zip(sr.cells.state_tuple(ours), sr.cells.state_tuple(ref), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    w = loss_weights(ours)
    for a, b in zip(value_and_grads(ours, w, inputs), value_and_grads(ref, w, inputs),
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


def make_cell(kind: str, i: int = 3, h: int = 4):
    return {"lstm": sr.LSTMCell, "gru": sr.GRUCell}[kind](i, h).to(DT)


# ------------------------------------------------------------------ per-node references
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind, fused", [("lstm", True), ("lstm", False), ("gru", True)])
def test_forward_equals_the_per_node_plain_reference(kind, fused, seed):
    gen = torch.Generator().manual_seed(seed)
    n = 14
    ei = random_dag(n, 0.3, gen)
    cell = make_cell(kind)
    x = torch.randn(n, 3, dtype=DT, generator=gen, requires_grad=True)
    ours = DAGRecurrent(cell, fused=fused)(x, ei, return_state=True)
    ref = per_node_plain(cell, x, ei, n)
    assert_states_and_grads_equal(ours, ref, [x, *cell.parameters()])


def test_the_random_dags_have_nodes_with_several_parents_and_children():
    ei = random_dag(14, 0.3, torch.Generator().manual_seed(0))
    assert torch.bincount(ei[1]).max() > 1 and torch.bincount(ei[0]).max() > 1


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_forward_equals_the_cells_index_call_one_node_at_a_time(kind):
    gen = torch.Generator().manual_seed(7)
    n = 12
    ei = random_dag(n, 0.35, gen)
    cell = make_cell(kind)
    x = torch.randn(n, 3, dtype=DT, generator=gen, requires_grad=True)
    assert_states_and_grads_equal(DAGRecurrent(cell)(x, ei, return_state=True),
                                  per_node_cell(cell, x, ei, n), [x, *cell.parameters()])


def test_a_batch_equals_each_dag_alone():
    gen = torch.Generator().manual_seed(3)
    cell = make_cell("lstm")
    model = DAGRecurrent(cell)
    graphs = [Data(x=torch.randn(n, 3, dtype=DT, generator=gen), edge_index=random_dag(n, 0.4, gen),
                   num_nodes=n) for n in (5, 1, 9, 7)]
    batch = Batch.from_data_list(graphs)
    h, c = model(batch, return_state=True)  # a Batch in: x and edge_index from it
    alone = [model(g.x, g.edge_index, return_state=True) for g in graphs]
    torch.testing.assert_close(h, torch.cat([a[0] for a in alone]), atol=1e-12, rtol=0)
    torch.testing.assert_close(c, torch.cat([a[1] for a in alone]), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ trees and chains
def random_tree(n: int, gen: torch.Generator) -> torch.Tensor:
    """Child -> parent edges; node 0 the root, each other node's parent an earlier node."""
    parent = torch.tensor([int(torch.randint(0, i, (1,), generator=gen)) for i in range(1, n)])
    return torch.stack([torch.arange(1, n), parent])


@pytest.mark.parametrize("fused", [True, False])
def test_a_tree_given_as_a_dag_equals_the_tree_lstm(fused):
    gen = torch.Generator().manual_seed(2)
    ei = random_tree(15, gen)
    tree = TreeLSTM(3, 4).to(DT)
    x = torch.randn(15, 3, dtype=DT, generator=gen, requires_grad=True)
    ours = DAGRecurrent(tree.cell, fused=fused)(x, ei, return_state=True)
    ref = tree(x, ei, return_state=True)
    assert_states_and_grads_equal(ours, ref, [x, *tree.parameters()])
    # and run_up itself on the same cell
    torch.testing.assert_close(ours[0], sr.run_up(tree.cell, x, ei), atol=1e-12, rtol=0)


def test_a_tree_given_as_a_dag_equals_the_tree_gru():
    gen = torch.Generator().manual_seed(4)
    ei = random_tree(11, gen)
    tree = TreeGRU(3, 4).to(DT)
    x = torch.randn(11, 3, dtype=DT, generator=gen, requires_grad=True)
    assert_states_and_grads_equal(DAGRecurrent(tree.cell)(x, ei), tree(x, ei),
                                  [x, *tree.parameters()])


def chains(lengths: list[int]) -> torch.Tensor:
    """Chains 0 -> 1 -> ... one after the other (a batch's numbering)."""
    parts, start = [], 0
    for t in lengths:
        parts.append(torch.stack([torch.arange(start, start + t - 1),
                                  torch.arange(start + 1, start + t)]))
        start += t
    return torch.cat(parts, 1)


def copy_cell_into(seq: torch.nn.Module, cell, suffix: str = "") -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(seq, f"{name}_l0{suffix}").copy_(getattr(cell, name))


@pytest.mark.parametrize("seq_class", [sr.LSTM, torch.nn.LSTM])
def test_a_chain_equals_the_sequence_lstm(seq_class):
    T, B = 9, 3
    cell = make_cell("lstm")
    seq = seq_class(3, 4).to(DT)
    copy_cell_into(seq, cell)
    x = torch.randn(T, B, 3, dtype=DT)
    out, (h_n, c_n) = seq(x)
    # sequence b is chain b: its step t is node b * T + t
    h, c = DAGRecurrent(cell)(x.transpose(0, 1).reshape(B * T, 3), chains([T] * B),
                              return_state=True)
    torch.testing.assert_close(h.view(B, T, 4).transpose(0, 1), out, atol=1e-12, rtol=0)
    torch.testing.assert_close(c.view(B, T, 4)[:, -1], c_n[0], atol=1e-12, rtol=0)


def test_both_directions_on_a_chain_equal_the_bidirectional_lstm():
    T = 7
    model = DAGRecurrent(make_cell("lstm"), direction="both")
    seq = sr.LSTM(3, 4, bidirectional=True).to(DT)
    copy_cell_into(seq, model.cell)
    copy_cell_into(seq, model.backward_cell, "_reverse")
    x = torch.randn(T, 3, dtype=DT)
    out, _ = seq(x.unsqueeze(1))
    h, c = model(x, chains([T]), return_state=True)
    assert h.shape == c.shape == (T, 8)
    torch.testing.assert_close(h, out.squeeze(1), atol=1e-12, rtol=0)


def test_a_chain_equals_the_sequence_gru():
    T = 8
    cell = make_cell("gru")
    seq = torch.nn.GRU(3, 4).to(DT)
    copy_cell_into(seq, cell)
    x = torch.randn(T, 3, dtype=DT)
    out, _ = seq(x.unsqueeze(1))
    torch.testing.assert_close(DAGRecurrent(cell)(x, chains([T])), out.squeeze(1), atol=1e-12,
                               rtol=0)


# ------------------------------------------------------------------ directions
@pytest.mark.parametrize("kind, aggr", [("lstm", "sum"), ("gru", "sum"),
                                        ("lstm", "attention"), ("gru", "attention")])
def test_backward_equals_forward_on_the_reversed_edges(kind, aggr):
    gen = torch.Generator().manual_seed(5)
    ei = random_dag(13, 0.3, gen)
    x = torch.randn(13, 3, dtype=DT, generator=gen)
    back = DAGRecurrent(make_cell(kind), "backward", aggr).to(DT)
    fwd = DAGRecurrent(back.cell, "forward", aggr).to(DT)
    if aggr == "attention":
        fwd.attention = back.attention
    for a, b in zip(sr.cells.state_tuple(back(x, ei, return_state=True)),
                    sr.cells.state_tuple(fwd(x, ei.flip(0), return_state=True)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    # a backward pass is not the forward pass on these edges
    assert not torch.allclose(back(x, ei), fwd(x, ei))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_both_concatenates_the_two_passes(kind):
    gen = torch.Generator().manual_seed(6)
    ei = random_dag(10, 0.3, gen)
    x = torch.randn(10, 3, dtype=DT, generator=gen)
    both = DAGRecurrent(make_cell(kind), "both")
    fw = DAGRecurrent(both.cell, "forward")(x, ei, return_state=True)
    bw = DAGRecurrent(both.backward_cell, "backward")(x, ei, return_state=True)
    for got, a, b in zip(sr.cells.state_tuple(both(x, ei, return_state=True)),
                         sr.cells.state_tuple(fw),
                         sr.cells.state_tuple(bw), strict=True):
        torch.testing.assert_close(got, torch.cat([a, b], 1), atol=0, rtol=0)
    # a backward cell of its own, drawn anew; or the given one (shared weights)
    assert not torch.equal(both.cell.weight_hh, both.backward_cell.weight_hh)
    shared = DAGRecurrent(both.cell, "both", backward_cell=both.cell)
    assert shared.backward_cell is shared.cell


def test_a_precomputed_schedule_gives_the_same_states():
    gen = torch.Generator().manual_seed(8)
    ei = random_dag(10, 0.3, gen)
    x = torch.randn(10, 3, dtype=DT, generator=gen)
    model = DAGRecurrent(make_cell("gru"), "both")
    torch.testing.assert_close(model(x, ei, schedule=model.schedule(ei, 10)), model(x, ei))


def test_a_cell_without_input():
    ei = torch.tensor([[0, 1, 2], [2, 2, 3]])
    cell = make_cell("gru")
    h = DAGRecurrent(cell)(None, ei, num_nodes=4)
    assert h.shape == (4, 4)
    src = cell(None, size=1)  # a source: the zero state and no input
    torch.testing.assert_close(h[0], src[0])
    torch.testing.assert_close(h[2], cell(None, torch.cat([src, src]),
                                          index=torch.tensor([0, 0]), size=1)[0])
    with pytest.raises(ValueError, match="num_nodes"):
        DAGRecurrent(cell)(None, ei)


def test_levels_are_the_longest_path():
    # 0 -> 4 directly and through 2 -> 3: the level is the longest way; node 5 stands alone
    ei = torch.tensor([[0, 1, 0, 2, 3, 0, 2], [2, 2, 3, 4, 4, 4, 3]])
    assert dag_levels(ei, 6).tolist() == [0, 0, 1, 2, 3, 0]
    assert dag_levels(ei, 6, reverse=True).tolist() == [3, 3, 2, 1, 0, 0]
    s = dag_schedule(ei, 6)
    assert s.forward.num_levels == 4 and s.backward.num_levels == 4


# ------------------------------------------------------------------ cycles
def node_named(message: str) -> int:
    match = re.search(r"cycle through node (\d+)", message)
    assert match, message
    return int(match.group(1))


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
def test_a_cycle_is_an_error_naming_a_node_on_it(direction):
    # a DAG (nodes 0-3) and behind it a cycle 6 -> 7 -> 8 -> 6, fed by 4 and feeding 5
    ei = torch.tensor([[0, 1, 2, 4, 6, 7, 8, 8], [1, 2, 3, 6, 7, 8, 6, 5]])
    model = DAGRecurrent(make_cell("gru"), direction)
    with pytest.raises(ValueError, match="cycle") as err:
        model(torch.zeros(9, 3, dtype=DT), ei)
    assert isinstance(err.value, sr.InputError)
    assert node_named(str(err.value)) in (6, 7, 8)
    assert re.search(r"\((\d) -> (\d) -> (\d) -> \1\)", str(err.value))


def test_the_cycle_shown_follows_the_edges():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = 12
        ei = random_dag(n, 0.3, gen)
        u, v = (int(t) for t in torch.randperm(n, generator=gen)[:2])
        ei = torch.cat([ei, ei.new_tensor([[u, v], [v, u]])], 1)  # u <-> v: a cycle for sure
        with pytest.raises(ValueError, match="cycle") as err:
            dag_levels(ei, n)
        shown = re.search(r"\(([\d >-]+)\)", str(err.value)).group(1).split(" -> ")
        edges = set(map(tuple, ei.t().tolist()))
        steps = list(zip(map(int, shown[:-1]), map(int, shown[1:]), strict=True))
        assert shown[0] == shown[-1] and all(s in edges for s in steps), str(err.value)
        assert node_named(str(err.value)) == int(shown[0])


def test_a_self_loop_is_a_cycle():
    with pytest.raises(ValueError, match=r"cycle through node 1 \(1 -> 1\)"):
        DAGRecurrent(make_cell("gru"))(torch.zeros(3, 3, dtype=DT),
                                        torch.tensor([[0, 1], [1, 1]]))


def test_a_long_cycle_is_shown_shortened():
    n = 40
    ei = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    with pytest.raises(ValueError, match=r"-> \.\.\. \(32 more\) ->"):
        dag_levels(ei, n)


def test_bad_arguments_are_named():
    cell = make_cell("gru")
    with pytest.raises(ValueError, match="direction"):
        DAGRecurrent(cell, "sideways")
    with pytest.raises(ValueError, match="aggr"):
        DAGRecurrent(cell, aggr="max")
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\)"):
        DAGRecurrent(cell)(torch.zeros(4, 5, dtype=DT), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"edge_index must have shape \(2, \*\)"):
        DAGRecurrent(cell)(torch.zeros(4, 3, dtype=DT), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"node ids must be in \[0, 4\)"):
        DAGRecurrent(cell)(torch.zeros(4, 3, dtype=DT), torch.tensor([[0], [4]]))


# ------------------------------------------------------------------ attention
def test_attention_by_hand_gru():
    """Node 2 has predecessors 0 and 1 (sources). With w_x and w_h set, the weights are a
    two-way softmax of numbers computed here, and node 2 is torch's GRUCell from the weighted
    sum of its predecessors' states (DAGNN's message)."""
    model = DAGRecurrent(make_cell("gru", 2, 2), aggr="attention").to(DT)
    ref = torch.nn.GRUCell(2, 2).to(DT)
    ref.load_state_dict(model.cell.state_dict())
    with torch.no_grad():
        model.attention.node.weight.copy_(torch.tensor([[0.5, -1.0]]))
        model.attention.pred.weight.copy_(torch.tensor([[2.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]], dtype=DT)
    h = model(x, torch.tensor([[0, 1], [2, 2]]))
    h0, h1 = ref(x[0:1])[0], ref(x[1:2])[0]
    node = 0.5 * 0.3 - 1.0 * 0.7
    s0 = node + 2.0 * float(h0[0]) + 1.0 * float(h0[1])
    s1 = node + 2.0 * float(h1[0]) + 1.0 * float(h1[1])
    a0 = 1.0 / (1.0 + torch.exp(torch.tensor(s1 - s0, dtype=DT)))
    message = a0 * h0 + (1 - a0) * h1
    torch.testing.assert_close(h[2], ref(x[2:3], message.unsqueeze(0))[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(h[:2], torch.stack([h0, h1]), atol=1e-12, rtol=0)


def test_attention_by_hand_lstm_scales_h_and_c():
    model = DAGRecurrent(make_cell("lstm", 2, 3), aggr="attention").to(DT)
    x = torch.randn(3, 2, dtype=DT)
    h, c = model(x, torch.tensor([[0, 1], [2, 2]]), return_state=True)
    cell, att = model.cell, model.attention
    hs, cs = h[:2], c[:2]
    score = hs @ att.pred.weight[0] + x[2] @ att.node.weight[0]
    alpha = F.softmax(score, 0)
    h2, c2 = plain_lstm_node(cell, x[2], hs * alpha[:, None], cs * alpha[:, None])
    torch.testing.assert_close(h[2], h2, atol=1e-12, rtol=0)
    torch.testing.assert_close(c[2], c2, atol=1e-12, rtol=0)


def test_zero_attention_weights_average_the_predecessors():
    gen = torch.Generator().manual_seed(9)
    ei = random_dag(12, 0.35, gen)
    x = torch.randn(12, 3, dtype=DT, generator=gen)
    model = DAGRecurrent(make_cell("gru"), aggr="attention").to(DT)
    torch.nn.init.zeros_(model.attention.node.weight)
    torch.nn.init.zeros_(model.attention.pred.weight)
    preds = predecessors(ei, 12)
    h_ref: list = [None] * 12
    for v in topological_order(ei, 12):
        hs = torch.stack([h_ref[u] for u in preds[v]]) if preds[v] else x.new_zeros(0, 4)
        mean = hs.mean(0, keepdim=True) if preds[v] else hs  # every weight 1 / k
        h_ref[v] = plain_gru_node(model.cell, x[v], mean)
    torch.testing.assert_close(model(x, ei), torch.stack(h_ref), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_attention_equals_the_per_node_softmax_reference(kind):
    gen = torch.Generator().manual_seed(10)
    n = 12
    ei = random_dag(n, 0.35, gen)
    model = DAGRecurrent(make_cell(kind), aggr="attention").to(DT)
    x = torch.randn(n, 3, dtype=DT, generator=gen, requires_grad=True)
    ref = per_node_cell(model.cell, x, ei, n, model.attention)
    assert_states_and_grads_equal(model(x, ei, return_state=True), ref, [x, *model.parameters()])


# ------------------------------------------------------------------ gradcheck
@pytest.mark.parametrize("kind, aggr, fused", [("lstm", "sum", True),
                                                      ("lstm", "sum", False),
                                                      ("gru", "sum", True),
                                                      ("lstm", "attention", False),
                                                      ("gru", "attention", False)])
def test_gradcheck_on_a_tiny_dag(kind, aggr, fused):
    ei = torch.tensor([[0, 1, 0, 2, 3, 1], [2, 2, 3, 4, 4, 4]])
    model = DAGRecurrent(make_cell(kind, 2, 2), "both", aggr, fused=fused).to(DT)
    x = torch.randn(5, 2, dtype=DT, requires_grad=True)
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    def f(x, *weights):
        out = torch.func.functional_call(model, dict(zip(names, weights, strict=True)), (x, ei),
                                         {"return_state": True})
        return sr.cells.state_tuple(out)

    assert torch.autograd.gradcheck(f, (x, *params))


# ------------------------------------------------------------------ the benchmark, smallest
TINY_BENCH = ["--graphs", "2", "--depth", "2", "--hidden", "4", "--repeats", "1", "--warmup",
              "0", "--threads", "1"]


def test_the_benchmark_runs_at_its_smallest_settings(tmp_path):
    # through the source-tree launcher (which runs the package's module), outside the repository
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_dags.py"),
                           *TINY_BENCH], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    for name in ("structrnn", "op-by-op", "per-node"):
        assert re.search(rf"^{name} +median +[\d.]+ ms +\( *\d+ nodes/s\)", out, re.M), out
    assert "command:" in out and "threads 1" in out and "load average" in out
    diffs = [float(v) for v in re.findall(r"- per-node\| \(float32\): (\S+)", out)]
    assert len(diffs) == 2 and max(diffs) < 1e-5  # the three compute the same states
