"""The graph isomorphism network (GIN, Xu et al. 2019, "How powerful are graph neural
networks?"), with bond features as GINE (Hu et al. 2020).

Every layer updates each node from the sum of its neighbours and a weighted copy of itself
through an MLP; the graph readout sums, over every layer including the input, a linear map of
that layer's pooled node states (Xu et al.'s readout, section 4.2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from structrnn._checks import check_shape
from structrnn.graphs._renamed import renamed
from structrnn.graphs._reset import channels_repr, reset_children
from structrnn.graphs.network import aggregate, check_readout, count_graphs, pool

__all__ = ["GIN"]


def _mlp(width_in: int, hidden: int) -> nn.Sequential:
    """Xu et al.'s two-layer MLP with batch normalisation, then the outer BN and ReLU of their
    code (``Linear, BN, ReLU, Linear, BN, ReLU``)."""
    return nn.Sequential(nn.Linear(width_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU())


class GIN(nn.Module):
    """``num_layers`` GIN layers: ``h_v <- MLP((1 + eps) h_v + sum_{u in N(v)} m_uv)`` with
    ``m_uv = h_u`` (GIN) or, given ``edge_dim``, ``m_uv = ReLU(h_u + W e_uv)`` (GINE). ``eps``
    is learned per layer (``train_eps=True``, GIN-eps) or fixed at 0 (GIN-0). The aggregation
    is a sum by design (the injective one), so there is no ``aggr``.

    Args:
        in_channels: node input width F.
        hidden_channels: width of every layer.
        num_layers: GIN layers (>= 1).
        out_channels: output width (default: ``hidden_channels``).
        edge_dim: bond feature width; None (or 0) for plain GIN, which takes no ``edge_attr``.
        dropout: applied to the last node states before ``lin``, or to each layer's readout
            term.
        train_eps: learn ``eps`` per layer (default) or keep it at 0.
        readout: None -- ``forward`` returns node states; "sum", "mean", "max" or "min" -- it
            pools every layer's node states (the input included) per graph, maps each pool by
            its own ``Linear(width, out_channels)`` and returns the sum of those maps.

    Shapes: ``forward(x (N, in_channels), edge_index (2, E), edge_attr (E, edge_dim) or None,
    batch (N,) or None, num_graphs=None)`` -> (N, out_channels) with ``readout=None`` (the last
    layer's states, through ``lin`` when ``out_channels`` is given), else (G, out_channels).
    ``batch=None`` is one graph. ``num_graphs`` (a ``Batch`` carries it) spares counting the
    graphs (one host synchronisation); leave it None under ``torch.export`` (see
    :func:`~structrnn.graphs.network.count_graphs`). :meth:`layer_states` gives every layer.
    """

    @renamed(("node_in", "edge_in", "hidden", "layers", "learn_eps"),
             {"hidden_channels": 64, "num_layers": 4},
             node_in="in_channels", edge_in="edge_dim", hidden="hidden_channels",
             layers="num_layers", learn_eps="train_eps")
    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int,
                 out_channels: int | None = None, *, edge_dim: int | None = None,
                 dropout: float = 0.0, train_eps: bool = True, readout: str | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"GIN: num_layers must be >= 1, got {num_layers}")
        check_readout(readout, "GIN")
        self.in_channels, self.hidden_channels, self.num_layers = (in_channels, hidden_channels,
                                                                   num_layers)
        self.out_channels = hidden_channels if out_channels is None else out_channels
        self.edge_dim, self.readout, self.train_eps = edge_dim or None, readout, train_eps
        widths = [in_channels] + [hidden_channels] * num_layers
        self.widths = widths
        self.mlps = nn.ModuleList(_mlp(widths[k], hidden_channels) for k in range(num_layers))
        if train_eps:
            self.eps = nn.Parameter(torch.zeros(num_layers))
        else:
            self.register_buffer("eps", torch.zeros(num_layers))
        # GINE: the bond enters the message, projected to the width of the layer's input
        self.edges = (nn.ModuleList(nn.Linear(edge_dim, widths[k]) for k in range(num_layers))
                      if edge_dim else None)
        self.dropout = nn.Dropout(dropout)
        self.heads = self.lin = None
        if readout is not None:
            self.heads = nn.ModuleList(nn.Linear(w, self.out_channels) for w in widths)
        elif out_channels is not None:
            self.lin = nn.Linear(hidden_channels, out_channels)

    def reset_parameters(self) -> None:
        reset_children(self)
        with torch.no_grad():
            self.eps.zero_()

    def extra_repr(self) -> str:
        text = channels_repr(self, "edge_dim", "readout")
        return text + ("" if self.train_eps else ", train_eps=False")

    def layer_states(self, x: Tensor, edge_index: Tensor,
                     edge_attr: Tensor | None = None) -> list[Tensor]:
        """``num_layers + 1`` tensors: the input (N, in_channels), then each layer's
        (N, hidden_channels)."""
        check_shape(x, "x", (None, self.in_channels), "GIN")
        check_shape(edge_index, "edge_index", (2, None), "GIN")
        if self.edges is None and edge_attr is not None:
            raise ValueError("GIN: edge_attr was given but the model has no edge_dim; build it "
                             "with GIN(..., edge_dim=F_e) (GINE) or pass edge_attr=None")
        if self.edges is not None:
            if edge_attr is None:
                raise ValueError(f"GIN: edge_attr (E, {self.edge_dim}) is required (edge_dim="
                                 f"{self.edge_dim})")
            check_shape(edge_attr, "edge_attr", (edge_index.size(1), self.edge_dim), "GIN")
        sender, receiver = edge_index[0], edge_index[1]
        states = [x]
        h = x
        for k, mlp in enumerate(self.mlps):
            message = h[sender]
            if self.edges is not None:
                message = torch.relu(message + self.edges[k](edge_attr))
            summed = aggregate("sum", message, receiver, h.size(0))
            h = mlp((1 + self.eps[k]) * h + summed)
            states.append(h)
        return states

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None) -> Tensor:
        states = self.layer_states(x, edge_index, edge_attr)
        if self.heads is None:
            h = states[-1]
            return h if self.lin is None else self.lin(self.dropout(h))
        size = count_graphs(batch, None, num_graphs)  # once for every layer
        out = None
        for head, h in zip(self.heads, states, strict=True):
            term = self.dropout(head(pool(self.readout, h, batch, size)))
            out = term if out is None else out + term
        return out
