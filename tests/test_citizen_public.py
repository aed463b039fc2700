"""Every public ``nn.Module`` of ``structrnn.__all__`` behaves like a torch.nn / PyG module:
``reset_parameters()`` draws new values for every parameter, and ``repr`` shows its sizes.

The table below names one small instance per public class; a public module added without an
entry here fails ``test_every_public_module_is_covered``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import structrnn as sr


def _instances() -> dict[str, nn.Module]:
    mlp = nn.Sequential(nn.Linear(6, 4), nn.ReLU())
    return {
        "RNNCell": sr.RNNCell(3, 4),
        "GRUCell": sr.GRUCell(3, 4),
        "LSTMCell": sr.LSTMCell(3, 4),
        "NaryLSTMCell": sr.NaryLSTMCell(3, 4, arity=2),
        "PeepholeLSTMCell": sr.PeepholeLSTMCell(3, 4),
        "CIFGLSTMCell": sr.CIFGLSTMCell(3, 4),
        "MGUCell": sr.MGUCell(3, 4),
        "RNN": sr.RNN(3, 4, num_layers=2),
        "GRU": sr.GRU(3, 4, bidirectional=True),
        "LSTM": sr.LSTM(3, 4, batch_first=True),
        "CRF": sr.CRF(5),
        "TreeLSTM": sr.TreeLSTM(3, 4),
        "TreeGRU": sr.TreeGRU(3, 4),
        "RecursiveNN": sr.RecursiveNN(4),
        "RNTN": sr.RNTN(4),
        "BiTreeLSTM": sr.BiTreeLSTM(3, 4),
        "Parser": sr.Parser(["a", "b"], ["a", "b"], embed_dim=4, char_dim=3, char_hidden=2,
                            hidden=4, mlp_hidden=4),
        "GraphNetwork": sr.GraphNetwork(edge_model=nn.Linear(2, 2),
                                        node_model=sr.GRUCell(2, 3)),
        "GraphIndependent": sr.GraphIndependent(nn.Linear(2, 2), nn.Linear(3, 3)),
        "InteractionNetwork": sr.InteractionNetwork(mlp, nn.Linear(6, 2)),
        "DeepSets": sr.DeepSets(nn.Linear(3, 3), nn.Linear(3, 2)),
        "RelationNetwork": sr.RelationNetwork(nn.Linear(4, 3), nn.Linear(3, 2)),
        "MPNN": sr.MPNN(3, 4, 2, 1, edge_dim=2),
        "NonLocal": sr.NonLocal(4, heads=2),
        "EncodeProcessDecode": sr.EncodeProcessDecode(3, 4, 2, 2, edge_dim=2,
                                                      core_update="gru"),
        "GIN": sr.GIN(3, 4, 2, 2, edge_dim=2),
        "DMPNN": sr.DMPNN(3, 4, 2, 2, edge_dim=2),
        "GNGRU": sr.GNGRU(3, 4, 2, 2, edge_dim=2),
        "DAGRecurrent": sr.DAGRecurrent(sr.LSTMCell(3, 4), direction="both"),
    }


def _public_module_classes() -> list[str]:
    names = []
    for name in sr.__all__:
        obj = getattr(sr, name)
        if isinstance(obj, type) and issubclass(obj, nn.Module) and name != "RNNCellBase":
            names.append(name)
    return names


def test_every_public_module_is_covered():
    assert sorted(_public_module_classes()) == sorted(_instances())


@pytest.mark.parametrize("name", sorted(_instances()))
def test_reset_parameters_draws_every_parameter_anew(name):
    torch.manual_seed(0)
    module = _instances()[name]
    params = dict(module.named_parameters())
    assert params, name
    with torch.no_grad():  # move every value far from anything an initialiser draws
        for p in params.values():
            p.fill_(123.0)
    module.reset_parameters()
    kept = [n for n, p in params.items() if bool((p == 123.0).any())]
    assert not kept, f"{name}.reset_parameters() kept {kept}"


@pytest.mark.parametrize("name", sorted(_instances()))
def test_repr_shows_the_sizes(name):
    text = repr(_instances()[name])
    first = text.splitlines()[0] if "\n" in text else text
    assert first.startswith(name + "(")
    assert any(ch.isdigit() for ch in text)
