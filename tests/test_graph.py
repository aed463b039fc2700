"""GraphNetwork against PyG's MetaLayer, torch.nn cells and per-node Python references."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MetaLayer
from torch_geometric.nn.aggr import SoftmaxAggregation
from torch_geometric.utils import scatter

from structrnn.cells import GRUCell, LSTMCell
from structrnn.graphs.convert import from_networkx, to_networkx
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

D = 5  # feature width of x, edge_attr and u in the random batches


def random_batch(sizes=(4, 0, 6, 3), d=D, dtype=torch.float64, edges_per_node=2, seed=0):
    """A Batch of random graphs of the given node counts (a 0 makes a graph with no nodes)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        m = edges_per_node * n
        graphs.append(Data(x=torch.randn(n, d, generator=gen, dtype=dtype),
                           edge_index=torch.randint(0, max(n, 1), (2, m), generator=gen),
                           edge_attr=torch.randn(m, d, generator=gen, dtype=dtype),
                           u=torch.randn(1, d, generator=gen, dtype=dtype)))
    return Batch.from_data_list(graphs)


def three_mlps(d=D, hidden=7):
    torch.manual_seed(1)
    return (mlp([4 * d, hidden, d]).double(), mlp([3 * d, hidden, d]).double(),
            mlp([3 * d, hidden, d]).double())


class Wrapped(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, inp):
        return self.net(inp)


class PeerEdge(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, src, dst, edge_attr, u, edge_batch):
        return self.net(torch.cat([edge_attr, src, dst, u[edge_batch]], 1))


class PeerNode(nn.Module):
    def __init__(self, net, aggr):
        super().__init__()
        self.net, self.aggr = net, aggr

    def forward(self, x, edge_index, edge_attr, u, batch):
        agg = scatter(edge_attr, edge_index[1], dim=0, dim_size=x.size(0), reduce=self.aggr)
        return self.net(torch.cat([x, agg, u[batch]], 1))


class PeerGlobal(nn.Module):
    def __init__(self, net, aggr):
        super().__init__()
        self.net, self.aggr = net, aggr

    def forward(self, x, edge_index, edge_attr, u, batch):
        g = u.size(0)
        xa = scatter(x, batch, dim=0, dim_size=g, reduce=self.aggr)
        ea = scatter(edge_attr, batch[edge_index[0]], dim=0, dim_size=g, reduce=self.aggr)
        return self.net(torch.cat([u, xa, ea], 1))


# -- equivalence with MetaLayer ------------------------------------------------------------------
@pytest.mark.parametrize("edge_aggr,global_aggr", [("sum", "mean"), ("mean", "sum"),
                                                   ("max", "min")])
@pytest.mark.parametrize("inputs_need_grad", [False, True])
@pytest.mark.parametrize("split_first_layer", [True, False])
def test_equals_metalayer(edge_aggr, global_aggr, inputs_need_grad, split_first_layer):
    b = random_batch()
    e_net, n_net, g_net = three_mlps()
    # an nn.Sequential starting with a Linear takes the split path; a wrapper module does not
    wrap = (lambda m: m) if split_first_layer else Wrapped
    ours = GraphNetwork(wrap(e_net), wrap(n_net), wrap(g_net), edge_aggr=edge_aggr,
                        global_aggr=global_aggr)
    peer = MetaLayer(PeerEdge(e_net), PeerNode(n_net, edge_aggr), PeerGlobal(g_net, global_aggr))

    def run(block, **kw):
        inputs = [t.clone().requires_grad_(inputs_need_grad) for t in (b.x, b.edge_attr, b.u)]
        out = block(inputs[0], b.edge_index, inputs[1], inputs[2], b.batch, **kw)
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
                   for o in out)
        params = list(e_net.parameters()) + list(n_net.parameters()) + list(g_net.parameters())
        wrt = params + (inputs if inputs_need_grad else [])
        return out, torch.autograd.grad(loss, wrt)

    (ox, oe, ou), og = run(ours, num_graphs=b.num_graphs)
    (px, pe, pu), pg = run(peer)
    for a, p in [(ox, px), (oe, pe), (ou, pu), *zip(og, pg)]:
        torch.testing.assert_close(a, p, atol=1e-8, rtol=0)
    assert ou.shape == (4, D) and ox.shape == (13, D)


def test_batch_equals_each_graph_alone():
    b = random_batch(sizes=(3, 5, 2))
    gn = GraphNetwork(*three_mlps())
    x, e, u = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    for i, g in enumerate(b.to_data_list()):
        gx, ge, gu = gn(g.x, g.edge_index, g.edge_attr, g.u)  # batch=None: one graph
        torch.testing.assert_close(gx, x[b.batch == i], atol=1e-12, rtol=0)
        torch.testing.assert_close(ge, e[b.batch[b.edge_index[0]] == i], atol=1e-12, rtol=0)
        torch.testing.assert_close(gu, u[i:i + 1], atol=1e-12, rtol=0)


def test_gradcheck_through_the_gathers():
    b = random_batch(sizes=(3, 2), d=2)
    torch.manual_seed(0)
    gn = GraphNetwork(mlp([8, 3, 2]).double(), mlp([6, 3, 2]).double(),
                      mlp([6, 3, 2]).double()).double()
    inputs = [t.clone().requires_grad_(True) for t in (b.x, b.edge_attr, b.u)]

    def f(x, e, u):
        return gn(x, b.edge_index, e, u, b.batch)

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


# -- cells as update functions ---------------------------------------------------------------------
def test_gru_node_update_equals_torch_grucell():
    b = random_batch()
    torch.manual_seed(0)
    e_net = mlp([4 * D, 7, D]).double()
    cell = GRUCell(2 * D, D).double()  # input [sum of new edges, u]; state: old x
    gn = GraphNetwork(e_net, cell)
    x, e, _ = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    ref = nn.GRUCell(2 * D, D).double()
    ref.load_state_dict(cell.state_dict())
    e_ref = e_net(torch.cat([b.edge_attr, b.x[b.edge_index[0]], b.x[b.edge_index[1]],
                             b.u[b.batch[b.edge_index[0]]]], 1))
    agg = scatter(e_ref, b.edge_index[1], dim=0, dim_size=b.num_nodes, reduce="sum")
    torch.testing.assert_close(x, ref(torch.cat([agg, b.u[b.batch]], 1), b.x), atol=1e-12,
                               rtol=0)
    torch.testing.assert_close(e, e_ref, atol=1e-12, rtol=0)


def test_lstm_node_update_over_k_rounds_equals_manual_loop():
    b = random_batch()
    torch.manual_seed(0)
    e_net = mlp([2 * D, 7, D]).double()  # edge sees [x_s, x_r] (h of the LSTM state)
    cell = LSTMCell(D, D).double()
    gn = GraphNetwork(e_net, cell, edge_inputs=("sender", "receiver"),
                      node_inputs=("node", "edges"))
    ref = nn.LSTMCell(D, D).double()
    ref.load_state_dict(cell.state_dict())
    x = b.x
    h, c = b.x, torch.zeros_like(b.x)
    src, dst = b.edge_index
    for _ in range(3):
        x, _, _ = gn(x, b.edge_index, batch=b.batch)
        m = e_net(torch.cat([h[src], h[dst]], 1))
        h, c = ref(scatter(m, dst, dim=0, dim_size=b.num_nodes, reduce="sum"), (h, c))
        torch.testing.assert_close(x[0], h, atol=1e-12, rtol=0)
        torch.testing.assert_close(x[1], c, atol=1e-12, rtol=0)
    # Data in and out: h in x, the memory in x_c, picked up again by the next call
    data = Data(x=b.x, edge_index=b.edge_index, batch=b.batch)
    for _ in range(3):
        data = gn(data)
    torch.testing.assert_close(data.x, h, atol=1e-12, rtol=0)
    torch.testing.assert_close(data.x_c, c, atol=1e-12, rtol=0)


def test_gru_global_and_edge_cells():
    b = random_batch()
    torch.manual_seed(0)
    gn = GraphNetwork(GRUCell(3 * D, D).double(), mlp([3 * D, D]).double(),
                      GRUCell(2 * D, D).double())
    x, e, u = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    ref = nn.GRUCell(3 * D, D).double()
    ref.load_state_dict(gn.edge_model.state_dict())
    src, dst = b.edge_index
    e_ref = ref(torch.cat([b.x[src], b.x[dst], b.u[b.batch[src]]], 1), b.edge_attr)
    torch.testing.assert_close(e, e_ref, atol=1e-12, rtol=0)
    assert u.shape == (4, D) and torch.isfinite(u).all()


# -- aggregations against per-node Python references ----------------------------------------------
def _python_reduce(rows: list[torch.Tensor], how: str, d: int) -> torch.Tensor:
    if not rows:
        return torch.zeros(d, dtype=torch.float64)
    stacked = torch.stack(rows)
    return {"sum": stacked.sum(0), "mean": stacked.mean(0), "max": stacked.max(0).values,
            "min": stacked.min(0).values}[how]


def _softmax_reference(rows, t, d):
    if not rows:
        return torch.zeros(d, dtype=torch.float64)
    stacked = torch.stack(rows)
    w = torch.exp(t * stacked) / torch.exp(t * stacked).sum(0)
    return (w * stacked).sum(0)


@pytest.mark.parametrize("how", ["sum", "mean", "max", "min", "softmax"])
def test_aggregations_against_python(how):
    b = random_batch(sizes=(4, 0, 6, 3), edges_per_node=1)
    aggr = SoftmaxAggregation(t=0.7, learn=True).double() if how == "softmax" else how
    # identity updates: new x = aggregate of edges, new u = aggregate of new x by graph
    gn = GraphNetwork(None, nn.Identity(), nn.Identity(), edge_aggr=aggr, global_aggr=aggr,
                      node_inputs=("edges",), global_inputs=("nodes",))
    x, _, u = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    ref = _softmax_reference if how == "softmax" else _python_reduce
    arg = float(aggr.t.detach()) if how == "softmax" else how
    dst, batch = b.edge_index[1].tolist(), b.batch.tolist()
    for node in range(b.num_nodes):
        incoming = [b.edge_attr[j] for j in range(len(dst)) if dst[j] == node]
        torch.testing.assert_close(x[node], ref(incoming, arg, D), atol=1e-12, rtol=0)
    for g in range(b.num_graphs):
        members = [x[i] for i in range(b.num_nodes) if batch[i] == g]
        torch.testing.assert_close(u[g], ref(members, arg, D), atol=1e-12, rtol=0)
    if how == "softmax":  # learned temperature gets a gradient
        (x.sum() + u.sum()).backward()
        assert aggr.t.grad is not None and aggr.t.grad.abs() > 0


def test_global_edge_aggregation_by_graph_of_sender():
    b = random_batch()
    gn = GraphNetwork(global_model=nn.Identity(), global_aggr="sum", global_inputs=("edges",))
    _, _, u = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    graph_of_edge = b.batch[b.edge_index[0]].tolist()
    for g in range(b.num_graphs):
        rows = [b.edge_attr[j] for j, gg in enumerate(graph_of_edge) if gg == g]
        torch.testing.assert_close(u[g], _python_reduce(rows, "sum", D), atol=1e-12, rtol=0)


# -- edge cases ----------------------------------------------------------------------------------
def test_no_edges_and_nodes_without_incoming_edges():
    e_net, n_net, g_net = three_mlps()
    gn = GraphNetwork(e_net, n_net, g_net)
    x = torch.randn(4, D, dtype=torch.float64)
    u = torch.randn(1, D, dtype=torch.float64)
    empty = torch.empty(2, 0, dtype=torch.long)
    x2, e2, u2 = gn(x, empty, torch.empty(0, D, dtype=torch.float64), u)
    assert e2.shape == (0, D)
    zeros = torch.zeros(4, D, dtype=torch.float64)
    torch.testing.assert_close(x2, n_net(torch.cat([x, zeros, u.expand(4, -1)], 1)))
    torch.testing.assert_close(u2, g_net(torch.cat([u, x2.mean(0, keepdim=True),
                                                    torch.zeros(1, D, dtype=torch.float64)], 1)))
    # node 3 receives nothing: its aggregate is zero
    gn_id = GraphNetwork(None, nn.Identity(), node_inputs=("edges",))
    ei = torch.tensor([[0, 1, 3], [1, 2, 0]])
    agg, _, _ = gn_id(x, ei, torch.ones(3, D, dtype=torch.float64))
    assert agg[3].abs().sum() == 0 and agg[1].sum() == D


def test_graphs_without_nodes_in_a_batch():
    b = random_batch(sizes=(0, 3, 0, 4, 0))
    gn = GraphNetwork(*three_mlps())
    x, e, u = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    assert u.shape == (5, D) and torch.isfinite(u).all()
    # an empty graph's u sees zeros for both aggregates
    g_net = gn.global_model
    torch.testing.assert_close(u[0], g_net(torch.cat([b.u[0], torch.zeros(2 * D,
                                                                          dtype=torch.float64)])))
    # without u, num_graphs counts graphs at the end that have no nodes
    gn2 = GraphNetwork(global_model=nn.Identity(), global_inputs=("nodes",))
    _, _, u2 = gn2(b.x, b.edge_index, batch=b.batch, num_graphs=5)
    assert u2.shape == (5, D)
    u3 = gn2(b)  # Data/Batch: num_graphs from the batch
    assert u3.u.shape == (5, D)


def test_batch_none_equals_batch_of_one_graph():
    b = random_batch(sizes=(5,))
    gn = GraphNetwork(*three_mlps())
    a = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    c = gn(b.x, b.edge_index, b.edge_attr, b.u)
    d = gn(b.x, b.edge_index, b.edge_attr, b.u, torch.zeros(5, dtype=torch.long), num_graphs=1)
    for s, t, r in zip(a, c, d):
        torch.testing.assert_close(s, t, atol=1e-12, rtol=0)
        torch.testing.assert_close(s, r, atol=1e-12, rtol=0)


def test_data_in_data_out():
    b = random_batch()
    gn = GraphNetwork(*three_mlps())
    out = gn(b)
    assert isinstance(out, Batch) and out is not b
    x, e, u = gn(b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    torch.testing.assert_close(out.x, x)
    torch.testing.assert_close(out.edge_attr, e)
    torch.testing.assert_close(out.u, u)
    assert not torch.equal(b.x, out.x)  # the input is left alone
    assert out.num_graphs == b.num_graphs and torch.equal(out.batch, b.batch)
    single = Data(x=b.x[:4], edge_index=torch.tensor([[0, 1], [1, 2]]),
                  edge_attr=b.edge_attr[:2], u=b.u[:1])
    assert gn(single).u.shape == (1, D)


# -- errors --------------------------------------------------------------------------------------
def test_wrong_sizes_name_the_model_and_sizes():
    b = random_batch()
    with pytest.raises(ValueError, match=r"edge model \(Sequential\) expects 15 .* has 20 = "
                                         r"\[edge 5, sender 5, receiver 5, global 5\]"):
        GraphNetwork(mlp([3 * D, 4]).double())(b)
    with pytest.raises(ValueError, match=r"node model \(GRUCell\) expects 3 .* has 10 = "
                                         r"\[edges 5, global 5\]"):
        GraphNetwork(None, GRUCell(3, D).double())(b)
    with pytest.raises(ValueError, match=r"global model \(GRUCell\) keeps a state of 4 .*"
                                         r"shape \(4, 5\)"):
        GraphNetwork(None, None, GRUCell(2 * D, 4).double())(b)

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(7, 2).double()

        def forward(self, z):
            return self.inner(z)

    # a model that shows no expected width: torch's own error reaches the caller unchanged
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied"):
        GraphNetwork(None, Custom())(b)
    with pytest.raises(ValueError, match=r"u must have shape \(2, \*\), got \(4, 5\)"):
        GraphNetwork(None, mlp([3 * D, D]).double())(b.x, b.edge_index, b.edge_attr, b.u,
                                                     b.batch, num_graphs=2)
    with pytest.raises(ValueError, match=r"edge_attr must have shape \(26, \*\)"):
        GraphNetwork()(b.x, b.edge_index, b.edge_attr[:3])
    with pytest.raises(ValueError, match="edge_aggr must be one of"):
        GraphNetwork(edge_aggr="median")
    with pytest.raises(ValueError, match="node_inputs must be a subset"):
        GraphNetwork(node_inputs=("sender",))


# -- the Figure-4 configurations -----------------------------------------------------------------
def _finite_with_grads(module, outputs):
    loss = sum(o.square().sum() for o in outputs if o is not None)
    loss.backward()
    assert all(torch.isfinite(o).all() for o in outputs if o is not None)
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_figure4_configurations_run():
    b = random_batch(dtype=torch.float32)
    args = (b.x, b.edge_index, b.edge_attr, b.u, b.batch)
    gi = GraphIndependent(mlp([D, 3]), mlp([D, 4]), mlp([D, 2]))
    x, e, u = gi(*args)
    assert (x.shape, e.shape, u.shape) == ((13, 4), (26, 3), (4, 2))
    _finite_with_grads(gi, (x, e, u))
    inet = InteractionNetwork(mlp([3 * D, 6]), mlp([D + 6, 4]))
    x, e, u = inet(*args)
    assert (x.shape, e.shape) == ((13, 4), (26, 6)) and u is b.u
    _finite_with_grads(inet, (x, e))
    ds = DeepSets(mlp([2 * D, 6]), mlp([6, 3]))
    x, e, u = ds(*args)
    assert (x.shape, u.shape) == ((13, 6), (4, 3)) and e is b.edge_attr
    _finite_with_grads(ds, (x, u))
    rn = RelationNetwork(mlp([2 * D, 6]), mlp([6, 3]))
    x, e, u = rn(b.x, b.edge_index, None, None, b.batch, b.num_graphs)
    assert u.shape == (4, 3)
    _finite_with_grads(rn, (e, u))
    nl = NonLocal(D + 1, heads=2, key_channels=3)
    x6 = torch.randn(13, D + 1)
    x, e, _ = nl(x6, b.edge_index, batch=b.batch)
    assert x.shape == (13, D + 1) and e.shape == (26, 2 + D + 1)
    _finite_with_grads(nl, (x,))
    mp = MPNN(D, 8, 2, 2, edge_dim=D)
    out = mp(b)
    assert out.shape == (4, 2)
    _finite_with_grads(mp, (out,))


def test_nonlocal_against_per_node_attention():
    torch.manual_seed(0)
    nl = NonLocal(4, heads=2).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    ei = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 1, 1, 0, 0, 3]])
    out, _, _ = nl(x, ei)
    qkv = nl.edge_model
    for node in range(5):
        senders = [int(s) for s, r in ei.t() if r == node]
        y = torch.zeros(4, dtype=torch.float64)
        for h in range(2):
            q = qkv.query(x[node])[2 * h:2 * h + 2]
            scores = torch.stack([q @ qkv.key(x[s])[2 * h:2 * h + 2] / 2 ** 0.5 for s in senders]) \
                if senders else torch.zeros(0, dtype=torch.float64)
            w = torch.softmax(scores, 0)
            for wi, s in zip(w, senders):
                y[2 * h:2 * h + 2] += wi * qkv.value(x[s])[2 * h:2 * h + 2]
        torch.testing.assert_close(out[node], x[node] + nl.node_model.out(y), atol=1e-12, rtol=0)


def test_mpnn_one_step_against_manual():
    b = random_batch(dtype=torch.float64)
    torch.manual_seed(0)
    mp = MPNN(D, 3, 1, edge_dim=D, readout=None).double()
    h = mp(b.x, b.edge_index, b.edge_attr, b.batch)
    h0 = mp.embed(b.x)
    src, dst = b.edge_index
    a = mp.edge_net(b.edge_attr).view(-1, 3, 3)
    msgs = torch.stack([a[j] @ h0[src[j]] for j in range(src.numel())])
    gru = nn.GRUCell(3, 3).double()
    gru.load_state_dict(mp.gn.node_model.state_dict())
    ref = gru(scatter(msgs, dst, dim=0, dim_size=b.num_nodes, reduce="sum"), h0)
    torch.testing.assert_close(h, ref, atol=1e-12, rtol=0)


def test_old_argument_names_still_work_with_one_warning():
    b = random_batch(dtype=torch.float32)
    torch.manual_seed(0)
    with pytest.warns(FutureWarning, match="node_in= -> in_channels="):
        old = MPNN(D, D, hidden=8, out_channels=2, steps=2)
    torch.manual_seed(0)
    new = MPNN(D, 8, 2, 2, edge_dim=D)
    assert str(old) == str(new)
    torch.testing.assert_close(old(b), new(b))
    with pytest.warns(FutureWarning, match="steps= -> num_layers="):
        epd = EncodeProcessDecode(D, D, None, node_out=2, global_out=1, hidden=8, steps=3)
    assert (epd.in_channels, epd.edge_dim, epd.out_channels, epd.num_layers) == (D, D, 2, 3)
    with pytest.warns(FutureWarning, match="steps= -> num_layers="):
        assert len(epd(b, steps=2)) == 2
    with pytest.raises(TypeError, match="both hidden= .* and hidden_channels="):
        MPNN(D, hidden=8, hidden_channels=8, steps=1)


def test_encode_process_decode_returns_one_output_per_round():
    b = random_batch(dtype=torch.float32)
    epd = EncodeProcessDecode(D, 8, 4, 2, edge_dim=D, global_dim=D, edge_out_channels=3)
    outs = epd(b)
    assert len(outs) == 4
    for x, e, u in outs:
        assert x.shape == (13, 2) and e.shape == (26, 3) and u is None
    _finite_with_grads(epd, [t for o in outs for t in o])
    assert len(epd(b, num_layers=2)) == 2
    no_u = EncodeProcessDecode(D, 8, 2, 2, edge_dim=D, global_out_channels=1)
    outs = no_u(b.x, b.edge_index, b.edge_attr, batch=b.batch, num_graphs=4)
    assert outs[-1][2].shape == (4, 1) and outs[-1][1] is None


# -- networkx ----------------------------------------------------------------------------------
def test_networkx_round_trip_keeps_attributes():
    g = nx.DiGraph(u=[1.0, 2.0], name_id=7)
    for i in range(4):
        g.add_node(i, x=[float(i), -float(i)], y=i % 2)
    for s, r in [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]:
        g.add_edge(s, r, edge_attr=[float(s + r)])
    data = from_networkx(g)
    assert data.x.shape == (4, 2) and data.edge_attr.shape == (5, 1) and data.u.shape == (1, 2)
    assert data.y.tolist() == [0, 1, 0, 1] and int(data.name_id) == 7
    back = to_networkx(data)
    assert back.graph["u"] == [1.0, 2.0] and back.graph["name_id"] == 7
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    assert sorted(back.edges(data=True)) == sorted(g.edges(data=True))
    # grouping attributes into x / edge_attr / u
    h = nx.Graph(a=1.0, b=[2.0, 3.0])
    h.add_node(0, p=1.0, q=2.0)
    h.add_node(1, p=3.0, q=4.0)
    h.add_edge(0, 1, w=0.5)
    d = from_networkx(h, node_attrs=["p", "q"], edge_attrs=["w"], graph_attrs=["a", "b"])
    assert d.x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and d.edge_attr.shape == (2, 1)
    assert d.u.tolist() == [[1.0, 2.0, 3.0]] and d.edge_index.shape == (2, 2)
    with pytest.raises(ValueError, match="one graph"):
        to_networkx(random_batch())
