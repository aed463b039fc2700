"""GN-GRU: a recurrent graph network whose node update is a GRU (GG-NN, Li et al. 2016), the
molecule encoder of the ``gn-gru`` model: edge messages from ``[bond, sender, receiver]``, one
:class:`~structrnn.graphs.network.GraphNetwork` block run ``num_layers`` rounds with shared
weights."""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.nn.aggr import Aggregation

from structrnn._checks import check_shape
from structrnn.cells import GRUCell
from structrnn.graphs._renamed import renamed
from structrnn.graphs._reset import channels_repr, reset_children
from structrnn.graphs.models import mlp
from structrnn.graphs.network import GraphNetwork, check_readout, pool

__all__ = ["GNGRU"]


class GNGRU(nn.Module):
    """Atoms and bonds embedded to ``hidden_channels``; then ``num_layers`` rounds of one
    :class:`~structrnn.graphs.network.GraphNetwork` (shared weights): every bond computes a
    message ``m = MLP([bond, h_sender, h_receiver])`` and every atom updates
    ``h = GRU(aggr m, h)``.

    Args:
        in_channels: node input width.
        hidden_channels: width of the node states and messages.
        num_layers: rounds of the shared block.
        out_channels: with a value, a final ``Linear(hidden_channels, out_channels)`` per node;
            None returns the states (N, hidden_channels).
        edge_dim: bond feature width; None (or 0): the messages see ``[h_sender, h_receiver]``.
        aggr: how the messages reach their receiver: "sum" (default), "mean", "max", "min" or
            a ``torch_geometric.nn.aggr.Aggregation``.
        readout: None -- node rows; "sum", "mean", "max" or "min" -- pooled per graph.

    Shapes: ``forward(x (N, in_channels), edge_index (2, E), edge_attr (E, edge_dim) or None,
    batch (N,) or None, num_graphs=None)`` -> (N, out_channels), or (G, out_channels) with a
    ``readout`` (out_channels = hidden_channels when None). For ``num_graphs`` and export see
    :func:`~structrnn.graphs.network.count_graphs`.
    """

    @renamed(("node_in", "edge_in", "hidden", "steps"),
             {"hidden_channels": 64, "num_layers": 3}, node_in="in_channels",
             edge_in="edge_dim", hidden="hidden_channels", steps="num_layers")
    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int,
                 out_channels: int | None = None, *, edge_dim: int | None = None,
                 aggr: str | Aggregation = "sum", readout: str | None = None) -> None:
        super().__init__()
        check_readout(readout, "GNGRU")
        self.in_channels, self.hidden_channels, self.num_layers = (in_channels, hidden_channels,
                                                                   num_layers)
        self.out_channels = hidden_channels if out_channels is None else out_channels
        self.edge_dim, self.readout = edge_dim or None, readout
        h = hidden_channels
        self.embed_nodes = nn.Sequential(nn.Linear(in_channels, h), nn.ReLU())
        self.embed_edges = (nn.Sequential(nn.Linear(edge_dim, h), nn.ReLU()) if edge_dim
                            else None)
        parts = ("edge", "sender", "receiver") if edge_dim else ("sender", "receiver")
        self.gn = GraphNetwork(mlp([len(parts) * h, h, h]), GRUCell(h, h), edge_aggr=aggr,
                               edge_inputs=parts, node_inputs=("node", "edges"))
        self.lin = None if out_channels is None else nn.Linear(h, out_channels)

    def reset_parameters(self) -> None:
        reset_children(self)

    def extra_repr(self) -> str:
        return channels_repr(self, "edge_dim", "readout")

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None) -> Tensor:
        check_shape(x, "x", (None, self.in_channels), "GNGRU")
        e = None
        if self.embed_edges is not None:
            if edge_attr is None:
                raise ValueError(f"GNGRU: edge_attr (E, {self.edge_dim}) is required (edge_dim="
                                 f"{self.edge_dim})")
            e = self.embed_edges(edge_attr)
        elif edge_attr is not None:
            raise ValueError("GNGRU: edge_attr was given but the model has no edge_dim; build "
                             "it with GNGRU(..., edge_dim=F_e) or pass edge_attr=None")
        h = self.embed_nodes(x)
        for _ in range(self.num_layers):
            # the messages are recomputed from the fixed bond embedding every round
            h, _, _ = self.gn(h, edge_index, e)
        if self.lin is not None:
            h = self.lin(h)
        return h if self.readout is None else pool(self.readout, h, batch, num_graphs)
