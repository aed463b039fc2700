"""The molecule models: a recurrent graph network (``gn-gru``) or an MPNN edge network, and a
graph readout (set2set, sum, mean, or a sum of per-atom contributions)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import aggr as pyg_aggr

from structrnn.cells import GRUCell
from structrnn.graphs.models import MPNN, mlp
from structrnn.graphs.network import GraphNetwork, aggregate

__all__ = ["GNGRU", "MoleculeModel", "READOUTS", "MODELS"]

MODELS = ("gn-gru", "mpnn")
READOUTS = ("set2set", "sum", "mean", "atom-sum")


class GNGRU(nn.Module):
    """Atoms and bonds embedded to ``hidden``; then ``steps`` rounds of one
    :class:`~structrnn.graphs.network.GraphNetwork` (shared weights): every bond computes a message
    ``m = MLP([bond, h_sender, h_receiver])`` and every atom updates ``h = GRU(sum m, h)``.

    ``forward(x (N, node_in), edge_index (2, E), edge_attr (E, edge_in))`` -> (N, hidden).
    """

    def __init__(self, node_in: int, edge_in: int, hidden: int = 64, steps: int = 3) -> None:
        super().__init__()
        self.steps = steps
        self.embed_nodes = nn.Sequential(nn.Linear(node_in, hidden), nn.ReLU())
        self.embed_edges = nn.Sequential(nn.Linear(edge_in, hidden), nn.ReLU())
        self.gn = GraphNetwork(mlp([3 * hidden, hidden, hidden]), GRUCell(hidden, hidden),
                               edge_aggr="sum", edge_inputs=("edge", "sender", "receiver"),
                               node_inputs=("node", "edges"))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h, e = self.embed_nodes(x), self.embed_edges(edge_attr)
        for _ in range(self.steps):
            # The messages are recomputed from the fixed bond embedding every round.
            h, _, _ = self.gn(h, edge_index, e)
        return h


class MoleculeModel(nn.Module):
    """A node model (``gn-gru`` or ``mpnn``) and a graph readout.

    With ``global_in > 0`` the batch carries ``u`` (num_graphs, global_in), whole-molecule
    features concatenated to the readout (as Chemprop does with RDKit descriptors).

    ``forward(batch)`` -> (num_graphs, out_channels); ``atom_contributions(batch)`` ->
    (num_nodes, out_channels) for the ``atom-sum`` readout, whose graph output is their sum.
    """

    def __init__(self, node_in: int, edge_in: int, out_channels: int, hidden: int = 64,
                 steps: int = 3, model: str = "gn-gru", readout: str = "set2set",
                 dropout: float = 0.0, global_in: int = 0) -> None:
        super().__init__()
        if model == "gn-gru":
            self.body: nn.Module = GNGRU(node_in, edge_in, hidden, steps)
        elif model == "mpnn":
            self.body = MPNN(node_in, edge_in, hidden, steps=steps, readout=None)
        else:
            raise ValueError(f"model: expected 'gn-gru' or 'mpnn', got {model!r}")
        if readout not in ("set2set", "sum", "mean", "atom-sum"):
            raise ValueError(f"readout: expected set2set, sum, mean or atom-sum, got {readout!r}")
        if global_in and readout == "atom-sum":
            raise ValueError("global features need a graph readout, not 'atom-sum'")
        self.readout, self.global_in = readout, global_in
        if readout == "set2set":
            self.set2set = pyg_aggr.Set2Set(hidden, processing_steps=3)
        width = (2 * hidden if readout == "set2set" else hidden) + global_in
        self.dropout = nn.Dropout(dropout)
        self.head = mlp([width, hidden, out_channels])

    def node_states(self, batch) -> Tensor:
        return self.body(batch.x, batch.edge_index, batch.edge_attr)

    def atom_contributions(self, batch) -> Tensor:
        if self.readout != "atom-sum":
            raise ValueError(f"atom contributions need readout='atom-sum', not {self.readout!r}")
        return self.head(self.dropout(self.node_states(batch)))

    def forward(self, batch) -> Tensor:
        index, size = batch.batch, batch.num_graphs
        if self.readout == "atom-sum":
            return aggregate("sum", self.atom_contributions(batch), index, size)
        h = self.node_states(batch)
        g = (self.set2set(h, index, dim_size=size) if self.readout == "set2set"
             else aggregate(self.readout, h, index, size))
        if self.global_in:  # the molecule's descriptors join the learned graph vector
            g = torch.cat([g, batch.u], dim=1)
        return self.head(self.dropout(g))


