"""The graph modules used the way PyTorch and PyG users use theirs (issue 23): PyG's argument
names, inside ``torch_geometric.nn.Sequential`` and on a ``DataLoader`` batch; GIN against PyG's
own GINConv / GINEConv with copied weights; ``reset_parameters`` and ``repr``; ``torch.export``
with dynamic numbers of nodes, edges and graphs, and the ONNX round trip in onnxruntime on
graphs of other sizes than the example."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINConv, GINEConv, Sequential, global_mean_pool
from torch_geometric.utils import remove_self_loops, to_undirected

import structrnn as sr
from structrnn.graphs.models import mlp

F_X, F_E, F_U = 4, 3, 2


def random_graphs(sizes, seed=0, f_x=F_X, f_e=F_E, f_u=F_U):
    """Random simple graphs (no loops, no parallel edges: as molecules) with the given node
    counts, each edge stored in both directions."""
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for n in sizes:
        pairs = torch.randint(0, n, (2, 2 * n), generator=gen)
        edge_index = to_undirected(remove_self_loops(pairs)[0], num_nodes=n)
        graphs.append(Data(x=torch.randn(n, f_x, generator=gen),
                           edge_index=edge_index,
                           edge_attr=torch.randn(edge_index.size(1), f_e, generator=gen),
                           u=torch.randn(1, f_u, generator=gen)))
    return graphs


def tensors(sizes, seed=0):
    """``(x, edge_index, edge_attr, u, batch)`` of one batch of random graphs."""
    batch = next(iter(DataLoader(random_graphs(sizes, seed), batch_size=len(sizes))))
    return batch.x, batch.edge_index, batch.edge_attr, batch.u, batch.batch


# --- PyG's usage patterns -----------------------------------------------------------------------
def pooled_models():
    """The encoders with PyG's argument names, each pooling per graph."""
    torch.manual_seed(0)
    return {
        "GIN": sr.GIN(in_channels=F_X, hidden_channels=8, num_layers=2, out_channels=3,
                      edge_dim=F_E, dropout=0.0, readout="sum"),
        "DMPNN": sr.DMPNN(in_channels=F_X, hidden_channels=8, num_layers=3, out_channels=3,
                          edge_dim=F_E, dropout=0.0, readout="mean"),
        "GNGRU": sr.GNGRU(in_channels=F_X, hidden_channels=8, num_layers=2, out_channels=3,
                          edge_dim=F_E, aggr="mean", readout="sum"),
        "MPNN": sr.MPNN(in_channels=F_X, hidden_channels=8, num_layers=2, out_channels=3,
                        edge_dim=F_E, aggr="sum", readout="set2set"),
    }


@pytest.mark.parametrize("name", ["GIN", "DMPNN", "GNGRU", "MPNN"])
def test_a_dataloader_batch_equals_each_graph_alone(name):
    model = pooled_models()[name].eval()
    graphs = random_graphs([3, 5, 1, 4])
    batch = next(iter(DataLoader(graphs, batch_size=4)))
    out = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)
    assert out.shape == (4, 3)
    # the count worked out from batch is the same
    torch.testing.assert_close(model(batch.x, batch.edge_index, batch.edge_attr, batch.batch),
                               out)
    for g, graph in enumerate(graphs):  # batch=None: one graph
        torch.testing.assert_close(out[g], model(graph.x, graph.edge_index, graph.edge_attr)[0])


@pytest.mark.parametrize("name", ["GIN", "DMPNN", "GNGRU"])
def test_node_embeddings_without_readout(name):
    cls = getattr(sr, name)
    model = cls(F_X, 8, 2, edge_dim=F_E).eval()
    x, edge_index, edge_attr, _, _ = tensors([3, 4])
    assert model(x, edge_index, edge_attr).shape == (7, 8)
    assert cls(F_X, 8, 2, 5, edge_dim=F_E).eval()(x, edge_index, edge_attr).shape == (7, 5)
    with pytest.raises(ValueError, match="edge_attr"):
        model(x, edge_index)
    with pytest.raises(ValueError, match="x must have shape"):
        model(x[:, :2], edge_index, edge_attr)


def test_inside_a_pyg_sequential():
    torch.manual_seed(0)
    gin = sr.GIN(F_X, 8, 2, edge_dim=F_E)
    dmpnn = sr.DMPNN(8, 8, 2, 6, edge_dim=F_E)
    head = nn.Linear(6, 2)
    model = Sequential("x, edge_index, edge_attr, batch", [
        (gin, "x, edge_index, edge_attr -> h"),
        nn.ReLU(),
        (dmpnn, "h, edge_index, edge_attr -> h"),
        (global_mean_pool, "h, batch -> g"),
        (head, "g -> out"),
    ]).eval()
    batch = next(iter(DataLoader(random_graphs([3, 5, 2]), batch_size=3)))
    out = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch)
    h = dmpnn(torch.relu(gin(batch.x, batch.edge_index, batch.edge_attr)), batch.edge_index,
              batch.edge_attr)
    want = head(torch.stack([h[batch.batch == g].mean(0) for g in range(3)]))
    torch.testing.assert_close(out, want)


@pytest.mark.parametrize("edges", [False, True])
def test_gin_layers_equal_pyg_ginconv_with_the_same_weights(edges):
    torch.manual_seed(0)
    gin = sr.GIN(F_X, 6, 3, edge_dim=F_E if edges else None).eval()
    with torch.no_grad():
        gin.eps.copy_(torch.tensor([0.1, -0.2, 0.3]))
    x, edge_index, edge_attr, _, _ = tensors([4, 5])
    h = x
    states = gin.layer_states(x, edge_index, edge_attr if edges else None)
    for k in range(3):
        if edges:
            conv = GINEConv(copy.deepcopy(gin.mlps[k]), train_eps=True, edge_dim=F_E)
            conv.lin.load_state_dict(gin.edges[k].state_dict())
        else:
            conv = GINConv(copy.deepcopy(gin.mlps[k]), train_eps=True)
        conv.nn.load_state_dict(gin.mlps[k].state_dict())  # PyG's constructor draws new ones
        with torch.no_grad():
            conv.eps.fill_(float(gin.eps[k]))
        conv.eval()
        h = conv(h, edge_index, edge_attr) if edges else conv(h, edge_index)
        torch.testing.assert_close(states[k + 1], h)
    torch.testing.assert_close(gin(x, edge_index, edge_attr if edges else None), h)


# --- reset_parameters and repr ------------------------------------------------------------------
class UserLinear(nn.Module):
    """A user's update function with parameters of its own and a reset_parameters."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))

    def reset_parameters(self):
        nn.init.normal_(self.weight)

    def forward(self, inp):
        return inp @ self.weight.t()


class Scale(nn.Module):
    """Parameters, but no reset_parameters."""

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))

    def forward(self, inp):
        return inp * self.scale


def every_module():
    h = 6
    return {
        "GraphNetwork": sr.GraphNetwork(UserLinear(2 * F_X + F_E + F_U, h),
                                        sr.GRUCell(h + F_U, F_X),
                                        nn.Sequential(UserLinear(F_U + F_X + h, 3), nn.ReLU()),
                                        edge_aggr=sr.graphs.models.core_aggregation(
                                            "attention", h)),
        "GraphIndependent": sr.GraphIndependent(mlp([F_E, h]), mlp([F_X, h]), mlp([F_U, h])),
        "InteractionNetwork": sr.InteractionNetwork(mlp([F_E + 2 * F_X, h]), mlp([F_X + h, h])),
        "DeepSets": sr.DeepSets(mlp([F_X + F_U, h]), mlp([h, F_U])),
        "RelationNetwork": sr.RelationNetwork(mlp([2 * F_X, h]), mlp([h, F_U])),
        "NonLocal": sr.NonLocal(F_X, heads=2),
        "MPNN": sr.MPNN(F_X, h, 2, 3, edge_dim=F_E),
        "EncodeProcessDecode": sr.EncodeProcessDecode(F_X, h, 2, 2, edge_dim=F_E,
                                                      global_dim=F_U, edge_out_channels=2,
                                                      global_out_channels=1, core_update="lstm"),
        "GIN": sr.GIN(F_X, h, 2, 3, edge_dim=F_E, readout="mean"),
        "DMPNN": sr.DMPNN(F_X, h, 2, edge_dim=F_E),
        "GNGRU": sr.GNGRU(F_X, h, 2, 3, edge_dim=F_E),
    }


@pytest.mark.parametrize("name", list(every_module()))
def test_reset_parameters_draws_every_parameter_again(name):
    model = every_module()[name]
    with torch.no_grad():  # a value no initialiser draws: one kept weight shows
        for p in model.parameters():
            p.add_(10.0)
    before = {k: p.clone() for k, p in model.named_parameters()}
    assert before
    model.reset_parameters()
    kept = [k for k, p in model.named_parameters() if torch.equal(p, before[k])]
    assert kept == []


def test_reset_parameters_refuses_a_user_module_without_one():
    gn = sr.GraphNetwork(node_model=nn.Sequential(nn.Linear(F_X, F_X), Scale(F_X)),
                         node_inputs=("node",))
    with pytest.raises(TypeError, match=r"node_model\.1 \(Scale\) has parameters \['scale'\] "
                                        r"but no reset_parameters"):
        gn.reset_parameters()


@pytest.mark.parametrize("name, shown", [
    ("GIN", ["4, 6, num_layers=2, out_channels=3, edge_dim=3, readout='mean'",
             "Linear(in_features=4, out_features=6"]),
    ("DMPNN", ["4, 6, num_layers=2, out_channels=6, edge_dim=3\n"]),
    ("GNGRU", ["4, 6, num_layers=2, out_channels=3, edge_dim=3\n", "GRUCell(6, 6)"]),
    ("MPNN", ["4, 6, num_layers=2, out_channels=3, edge_dim=3, readout='set2set'"]),
    ("EncodeProcessDecode", ["4, 6, num_layers=2, out_channels=2, "
                             "edge_dim=3, global_dim=2"]),
    ("NonLocal", ["4, heads=2, key_channels=2"]),
    ("InteractionNetwork", ["edge_inputs=('edge', 'sender', 'receiver')", "edge_aggr='sum'",
                            "in_features=11"]),
])
def test_repr_shows_the_sizes(name, shown):
    text = repr(every_module()[name])
    assert text.startswith(name + "(")  # torch.nn's layout: the sizes on the next line
    for part in shown:
        assert part in text


def test_old_encode_process_decode_weights_load():
    model = every_module()["EncodeProcessDecode"]
    state = {k.replace("cells.global_.", "cells.global."): v
             for k, v in model.state_dict().items()}
    assert any(k.startswith("cells.global.") for k in state)
    fresh = every_module()["EncodeProcessDecode"]
    fresh.load_state_dict(state)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


# --- export -------------------------------------------------------------------------------------
class Tensors(nn.Module):
    """A graph module called on ``(x, edge_index, edge_attr, u, batch)`` -> its tensors."""

    def __init__(self, model, kind):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x, edge_index, edge_attr, u, batch):
        if self.kind == "block":
            return tuple(t for t in self.model(x, edge_index, edge_attr, u, batch)
                         if t is not None)
        if self.kind == "epd":
            return tuple(t for t in self.model(x, edge_index, edge_attr, u, batch)[-1]
                         if t is not None)
        return self.model(x, edge_index, edge_attr, batch=batch)


def exportable(name):
    model = every_module()[name]
    if name == "GraphNetwork":  # the LSTM-free variant of every part: a cell and a user module
        model = sr.GraphNetwork(UserLinear(2 * F_X + F_E + F_U, 6), sr.GRUCell(6 + F_U, F_X),
                                nn.Sequential(UserLinear(F_U + F_X + 6, 3), nn.ReLU()),
                                edge_aggr="max")
    kind = {"EncodeProcessDecode": "epd", "MPNN": "pooled", "GIN": "pooled", "DMPNN": "pooled",
            "GNGRU": "pooled"}.get(name, "block")
    if name in ("GIN", "DMPNN", "GNGRU"):
        model.readout = "sum"  # pooled over batch: the graph count is part of the export
    return Tensors(model, kind).eval()


NODES, EDGES, GRAPHS = Dim("nodes", min=2), Dim("edges", min=2), Dim("graphs", min=2)
DYNAMIC = ({0: NODES}, {1: EDGES}, {0: EDGES}, {0: GRAPHS}, {0: NODES})


@pytest.mark.parametrize("name", list(every_module()))
def test_torch_export_with_dynamic_nodes_edges_and_graphs(name):
    model = exportable(name)
    example = tensors([3, 4, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        program = torch.export.export(model, example, dynamic_shapes=DYNAMIC)
    for sizes in ([5, 1, 6, 2, 3], [2, 7]):
        other = tensors(sizes, seed=1)
        with torch.no_grad():
            got, want = program.module()(*other), model(*other)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", ["DMPNN", "GIN", "GNGRU", "MPNN"])
def test_onnx_round_trip_in_onnxruntime(name, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the ONNX round trip needs onnxruntime")
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript")
    model = pooled_models()[name].eval()
    if name == "MPNN":
        # PyG's Set2Set runs an nn.LSTM, which the ONNX exporter of torch 2.13 turns into a
        # while_loop it then rejects (symbolic strides); the sum readout exports
        model = sr.MPNN(F_X, 8, 2, 3, edge_dim=F_E, readout="sum").eval()
    example = tensors([3, 4, 2])[:3] + (tensors([3, 4, 2])[4],)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, path, dynamo=True,
                          input_names=["x", "edge_index", "edge_attr", "batch"],
                          dynamic_shapes=({0: NODES}, {1: EDGES}, {0: EDGES}, {0: NODES}))
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["x", "edge_index", "edge_attr", "batch"]
    for sizes in ([5, 1, 6, 2, 3], [2, 7], [9]):
        x, edge_index, edge_attr, _, batch = tensors(sizes, seed=2)
        (got,) = session.run(None, {"x": x.numpy(), "edge_index": edge_index.numpy(),
                                    "edge_attr": edge_attr.numpy(), "batch": batch.numpy()})
        with torch.no_grad():
            want = model(x, edge_index, edge_attr, batch)
        assert got.shape == (len(sizes), 3)
        torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)
