"""Tree schedules and recursive models against plain per-node references written here."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import structrnn as sr
from structrnn.levels.run import run_down, run_up
from structrnn.levels.schedule import compute_depth, compute_height, tree_schedule
from structrnn.trees.data import TreeData
from structrnn.trees.loader import TreeLoader
from structrnn.trees.models import RNTN, BiTreeLSTM, RecursiveNN, TreeGRU, TreeLSTM

DT = torch.float64


def random_tree(n: int, gen: torch.Generator, max_children: int | None = None):
    """Parent of node i (> 0) is a random earlier node, so node 0 is the root. Returns
    edge_index child -> parent and pos (N,), each node's position under its parent."""
    parents = []
    counts = [0] * n
    for i in range(1, n):
        while True:
            p = int(torch.randint(0, i, (1,), generator=gen))
            if max_children is None or counts[p] < max_children:
                break
        parents.append(p)
        counts[p] += 1
    child = torch.arange(1, n)
    parent = torch.tensor(parents, dtype=torch.long)
    seen: dict[int, int] = {}
    pos = [0]  # the root
    for p in parents:
        pos.append(seen.get(p, 0))
        seen[p] = seen.get(p, 0) + 1
    return torch.stack([child, parent]), torch.tensor(pos, dtype=torch.long)


def children_of(edge_index: torch.Tensor, pos: torch.Tensor, n: int) -> list[list[tuple[int, int]]]:
    kids: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for c, p in edge_index.t().tolist():
        kids[p].append((int(pos[c]), c))
    return [sorted(k) for k in kids]


def reference_heights(edge_index, n):
    kids = children_of(edge_index, torch.zeros(n, dtype=torch.long), n)
    height = [0] * n
    for v in reversed(range(n)):  # children have larger ids than parents here
        height[v] = 1 + max((height[c] for _, c in kids[v]), default=-1)
    return height


def per_node_child_sum(cell: sr.LSTMCell, x, edge_index, n):
    """Tai et al. (2015) Child-Sum Tree-LSTM, one node at a time, straight from the equations."""
    W, U = cell.weight_ih, cell.weight_hh
    b = cell.bias_ih + cell.bias_hh
    H = cell.hidden_size
    kids = children_of(edge_index, torch.zeros(n, dtype=torch.long), n)
    h, c = [None] * n, [None] * n
    for v in reversed(range(n)):
        ks = [k for _, k in kids[v]]
        h_tilde = sum((h[k] for k in ks), torch.zeros(H, dtype=x.dtype))
        i = torch.sigmoid(W[:H] @ x[v] + U[:H] @ h_tilde + b[:H])
        g = torch.tanh(W[2 * H:3 * H] @ x[v] + U[2 * H:3 * H] @ h_tilde + b[2 * H:3 * H])
        o = torch.sigmoid(W[3 * H:] @ x[v] + U[3 * H:] @ h_tilde + b[3 * H:])
        c_v = i * g
        for k in ks:
            f = torch.sigmoid(W[H:2 * H] @ x[v] + U[H:2 * H] @ h[k] + b[H:2 * H])
            c_v = c_v + f * c[k]
        c[v] = c_v
        h[v] = o * torch.tanh(c_v)
    return torch.stack(h), torch.stack(c)


def per_node_nary(cell: sr.NaryLSTMCell, x, edge_index, pos, n):
    """Tai et al. (2015) N-ary Tree-LSTM per node: U^{l} per slot, f_k per slot."""
    H, A = cell.hidden_size, cell.arity
    W, U = cell.weight_ih, cell.weight_hh
    bx, bh = cell.bias_ih, cell.bias_hh
    kids = children_of(edge_index, pos, n)
    h, c = [None] * n, [None] * n
    for v in reversed(range(n)):
        hs = [torch.zeros(H, dtype=x.dtype) for _ in range(A)]
        cs = [torch.zeros(H, dtype=x.dtype) for _ in range(A)]
        for slot, k in kids[v]:
            hs[slot], cs[slot] = h[k], c[k]
        hcat = torch.cat(hs)
        gx = W @ x[v] + bx
        gh = U @ hcat + bh
        i = torch.sigmoid(gx[:H] + gh[:H])
        fs = [torch.sigmoid(gx[H:2 * H] + gh[(1 + s) * H:(2 + s) * H]) for s in range(A)]
        g = torch.tanh(gx[2 * H:3 * H] + gh[(1 + A) * H:(2 + A) * H])
        o = torch.sigmoid(gx[3 * H:] + gh[(2 + A) * H:])
        c[v] = i * g + sum(f * cc for f, cc in zip(fs, cs))
        h[v] = o * torch.tanh(c[v])
    return torch.stack(h), torch.stack(c)


def per_node_recursive(cell, x, edge_index, pos, n, tensor=None):
    kids = children_of(edge_index, pos, n)
    H, A = cell.hidden_size, cell.arity
    p = [None] * n
    for v in reversed(range(n)):
        if not kids[v]:
            p[v] = x[v]
            continue
        slots = [torch.zeros(H, dtype=x.dtype) for _ in range(A)]
        for s, k in kids[v]:
            slots[s] = p[k]
        cc = torch.cat(slots)
        pre = cell.weight_hh @ cc + cell.bias_hh
        if tensor is not None:
            pre = pre + torch.stack([cc @ tensor[k] @ cc for k in range(H)])
        p[v] = torch.tanh(pre)
    return torch.stack(p)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_heights_depths_match_reference(n):
    gen = torch.Generator().manual_seed(n)
    ei, _ = random_tree(n, gen)
    assert compute_height(ei, n).tolist() == reference_heights(ei, n)
    depth = [0] * n
    for c, p in sorted(ei.t().tolist()):
        depth[c] = depth[p] + 1
    assert compute_depth(ei, n).tolist() == depth


def test_cycle_is_refused():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(ValueError, match="cycle"):
        compute_height(ei, 3)
    with pytest.raises(ValueError, match="cycle"):
        compute_depth(ei, 3)


@pytest.mark.parametrize("seed", range(3))
def test_child_sum_matches_per_node(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 30
    ei, _ = random_tree(n, gen)
    model = TreeLSTM(5, 6).to(DT)
    x = torch.randn(n, 5, dtype=DT)
    h, c = model(x, ei, return_state=True)
    h_ref, c_ref = per_node_child_sum(model.cell, x, ei, n)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("arity", [2, 3])
def test_nary_matches_per_node(arity):
    gen = torch.Generator().manual_seed(arity)
    n = 25
    ei, pos = random_tree(n, gen, max_children=arity)
    model = TreeLSTM(4, 5, variant="n-ary", arity=arity).to(DT)
    x = torch.randn(n, 4, dtype=DT)
    h, c = model(x, ei, child_index=pos, return_state=True)
    h_ref, c_ref = per_node_nary(model.cell, x, ei, pos, n)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(c, c_ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("model_class", [RecursiveNN, RNTN])
def test_recursive_and_rntn_match_per_node(model_class):
    gen = torch.Generator().manual_seed(1)
    n = 21
    ei, pos = random_tree(n, gen, max_children=2)
    model = model_class(4).to(DT)
    x = torch.randn(n, 4, dtype=DT)
    out = model(x, ei, child_index=pos)
    tensor = model.cell.tensor if model_class is RNTN else None
    ref = per_node_recursive(model.cell, x, ei, pos, n, tensor)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_tree_gru_matches_torch_gru_on_a_chain_and_sums_children():
    # a node with children h1, h2 equals a torch GRUCell step from h1 + h2
    model = TreeGRU(3, 4).to(DT)
    ref = torch.nn.GRUCell(3, 4).to(DT)
    ref.load_state_dict(model.cell.state_dict())
    x = torch.randn(3, 3, dtype=DT)
    ei = torch.tensor([[1, 2], [0, 0]])
    out = model(x, ei)
    h1 = ref(x[1:2])
    h2 = ref(x[2:3])
    torch.testing.assert_close(out[0:1], ref(x[0:1], h1 + h2), atol=1e-12, rtol=0)


def chain(n):
    """Node 0 is the root, node k's parent is k - 1: the leaf (node n-1) is time step 0."""
    return torch.stack([torch.arange(1, n), torch.arange(0, n - 1)])


def test_chain_equals_sequence_lstm():
    T, I, H = 9, 3, 5
    model = TreeLSTM(I, H).to(DT)
    seq_cls = getattr(sr, "LSTM", torch.nn.LSTM)
    seq = seq_cls(I, H).to(DT)
    with torch.no_grad():
        seq.weight_ih_l0.copy_(model.cell.weight_ih)
        seq.weight_hh_l0.copy_(model.cell.weight_hh)
        seq.bias_ih_l0.copy_(model.cell.bias_ih)
        seq.bias_hh_l0.copy_(model.cell.bias_hh)
    x = torch.randn(T, I, dtype=DT)
    out, (h_n, c_n) = seq(x.unsqueeze(1))
    h, c = model(x.flip(0), chain(T), return_state=True)
    torch.testing.assert_close(h.flip(0), out.squeeze(1), atol=1e-12, rtol=0)
    torch.testing.assert_close(c[0], c_n[0, 0], atol=1e-12, rtol=0)


def test_deep_chain_runs():
    n = 3000
    model = TreeLSTM(2, 3)
    x = torch.randn(n, 2, requires_grad=True)
    h = model(x, chain(n))
    h.sum().backward()
    assert torch.isfinite(h).all() and torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(1) > 0).all()


def make_data(n, gen, arity=None):
    ei, pos = random_tree(n, gen, max_children=arity)
    return TreeData(x=torch.randn(n, 4, dtype=DT), edge_index=ei, child_index=pos,
                height=compute_height(ei, n), num_nodes=n)


@pytest.mark.parametrize("variant", ["child-sum", "n-ary"])
def test_batch_equals_each_tree_alone(variant):
    gen = torch.Generator().manual_seed(7)
    trees = [make_data(n, gen, arity=2) for n in (1, 5, 12, 3, 30)]
    model = TreeLSTM(4, 6, variant=variant).to(DT)
    alone = [model(d.x, d.edge_index, d.height, d.child_index) for d in trees]
    for loader in (DataLoader(trees, batch_size=5), TreeLoader(trees, batch_size=5)):
        batch = next(iter(loader))
        out = model(batch.x, batch.edge_index, batch.height, batch.child_index,
                    schedule=getattr(batch, "schedule", None))
        torch.testing.assert_close(out, torch.cat(alone), atol=1e-12, rtol=0)


def test_bidirectional_top_down_uses_the_parent():
    gen = torch.Generator().manual_seed(3)
    d = make_data(15, gen)
    model = BiTreeLSTM(4, 3).to(DT)
    out = model(d.x, d.edge_index)
    h_up = model.up(d.x, d.edge_index)
    # reference top-down: depth order, each node from its parent's state
    cell = torch.nn.LSTMCell(3, 3).to(DT)
    cell.load_state_dict(model.down_cell.state_dict())
    parent = {c: p for c, p in d.edge_index.t().tolist()}
    state = {}
    for v in range(15):  # parents precede children
        prev = state[parent[v]] if v in parent else None
        state[v] = cell(h_up[v:v + 1], prev)
    h_down = torch.cat([state[v][0] for v in range(15)])
    torch.testing.assert_close(out, torch.cat([h_up, h_down], 1), atol=1e-12, rtol=0)


def test_run_down_roots_start_from_zero():
    cell = sr.GRUCell(2, 2).to(DT)
    x = torch.randn(3, 2, dtype=DT)
    ei = torch.tensor([[1, 2], [0, 1]])
    out = run_down(cell, x, ei)
    ref0 = cell(x[0:1])
    torch.testing.assert_close(out[0:1], ref0)
    torch.testing.assert_close(out[1:2], cell(x[1:2], ref0))


def test_gradcheck_small_trees():
    gen = torch.Generator().manual_seed(11)
    batch = Batch.from_data_list([make_data(n, gen, arity=2) for n in (4, 6)])
    sched = tree_schedule(batch.edge_index, batch.num_nodes, batch.height)
    for model in (TreeLSTM(4, 3).to(DT), TreeLSTM(4, 3, "n-ary").to(DT), TreeGRU(4, 3).to(DT)):
        names = [n for n, _ in model.named_parameters()]

        def f(x, *weights, model=model, names=names):
            return torch.func.functional_call(
                model, dict(zip(names, weights)), (x, batch.edge_index),
                {"child_index": batch.child_index, "schedule": sched})

        inputs = [batch.x.clone().requires_grad_(True)]
        inputs += [p.detach().clone().requires_grad_(True) for p in model.parameters()]
        assert torch.autograd.gradcheck(f, tuple(inputs))


def test_user_cell_runs_through_generic_call():
    class Summing(torch.nn.Module):
        def forward(self, x, prev, index=None, size=None):
            out = x.clone()
            if prev is not None:
                out = out.index_add(0, index, prev)
            return out

    x = torch.ones(4, 1)
    ei = torch.tensor([[1, 2, 3], [0, 0, 1]])
    assert run_up(Summing(), x, ei).flatten().tolist() == [4.0, 2.0, 1.0, 1.0]


def test_bad_shapes_name_the_argument():
    model = TreeLSTM(4, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 4\), got \(5, 3\)"):
        model(torch.randn(5, 3), chain(5))
    with pytest.raises(ValueError, match="edge_index"):
        model(torch.randn(5, 4), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="child_index is required"):
        TreeLSTM(4, 3, "n-ary")(torch.randn(5, 4), chain(5))


def test_nary_on_parsed_trees_uses_the_data_layout():
    """Tree.to_data (pre-order, per-node child_index) through the N-ary model == per-node
    reference."""
    trees = [sr.Tree.from_ptb("(3 (2 (2 a) (3 b)) (4 (2 c) (1 (2 d) (0 e))))"),
             sr.Tree.from_ptb("(1 (2 x) (0 y))")]
    vocab = sr.Vocab.build(trees)
    batch = next(iter(TreeLoader([t.to_data(vocab) for t in trees], batch_size=2)))
    model = TreeLSTM(3, 4, variant="n-ary").to(DT)
    emb = torch.randn(len(vocab), 3, dtype=DT)
    x = emb[batch.x.clamp(min=0)] * (batch.x >= 0).unsqueeze(1)
    h, c = model(x, batch.edge_index, batch.height, batch.child_index, batch.schedule,
                 return_state=True)
    h_ref, c_ref = per_node_nary(model.cell, x, batch.edge_index, batch.child_index,
                                 batch.num_nodes)
    torch.testing.assert_close(h, h_ref, atol=1e-12, rtol=0)
    assert batch.child_index.tolist()[:3] == [0, 0, 0] and batch.child_index.tolist()[3] == 1
