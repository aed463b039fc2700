"""Chemprop's directed message passing (D-MPNN, Yang et al. 2019, "Analyzing learned molecular
representations for property prediction").

The hidden states live on directed bonds: a bond v->w hears the bonds coming into v except the
one coming back from w, so no message returns straight to where it came from.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from structrnn._checks import check_shape
from structrnn.graphs._renamed import renamed
from structrnn.graphs._reset import channels_repr, reset_children
from structrnn.graphs.network import aggregate, check_readout, pool

__all__ = ["DMPNN", "reverse_edges"]


def reverse_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """(E,) the id of each edge's reverse (``v->w`` -> ``w->v``), -1 where the graph has none.

    Every edge's key ``2 (sender N + receiver)`` and the key it looks for, ``2 (receiver N +
    sender) + 1``, are sorted together; the keys at or before a sought one, counted by a
    cumulative sum, say where its match would stand among the sorted keys. One sort and no
    host synchronisation, and only operations that ``torch.export`` and ONNX translate (no
    ``searchsorted``). With parallel edges one of the reverses is taken.
    """
    sender, receiver = edge_index[0], edge_index[1]
    e = sender.size(0)
    key = sender * num_nodes + receiver
    wanted = receiver * num_nodes + sender
    # even keys sort before an equal odd "wanted", so a match counts itself
    order = torch.argsort(torch.cat([2 * key, 2 * wanted + 1]))
    keys_so_far = torch.cumsum((order < e).long(), 0) - 1
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(2 * e, device=order.device))
    last = keys_so_far[rank[e:]]  # the position, among the sorted keys, of the last key <= wanted
    candidate = torch.argsort(key)[last.clamp(min=0)]
    found = (last >= 0) & (key[candidate] == wanted)
    return torch.where(found, candidate, torch.full_like(candidate, -1))


class DMPNN(nn.Module):
    """Chemprop's directed MPNN (its defaults: no bias in ``W_i`` and ``W_h``, ReLU).

    On a directed bond ``v->w``: ``h0 = ReLU(W_i [x_v, e_vw])``; ``num_layers - 1`` times
    ``h_vw <- ReLU(h0_vw + W_h sum_{k in N(v), k != w} h_kv)``, computed as the sum over the
    bonds coming into ``v`` minus the one coming back from ``w``; then each atom
    ``ReLU(W_o [x_v, sum_k h_kv])`` (chemprop's ``depth`` is ``num_layers``). The sum is part of
    the method (the subtraction needs it), so there is no ``aggr``.

    Args:
        in_channels: atom (node) input width.
        hidden_channels: width of the bond states.
        num_layers: message-passing depth (>= 1).
        out_channels: width of ``W_o``'s output per atom (default: ``hidden_channels``).
        edge_dim: bond feature width; None (or 0): the bond states start from the atom alone.
        dropout: after every bond update and on the atom output, as chemprop.
        readout: None -- ``forward`` returns the atoms; "sum", "mean", "max" or "min" -- it
            pools them per graph (chemprop's aggregation; its default is "mean").

    Shapes: ``forward(x (N, in_channels), edge_index (2, E), edge_attr (E, edge_dim) or None,
    batch (N,) or None, num_graphs=None)`` -> (N, out_channels), or (G, out_channels) with a
    ``readout``. ``batch=None`` is one graph; for ``num_graphs`` and export see
    :func:`~structrnn.graphs.network.count_graphs`. Every edge is directed: give a bond as
    both ``v->w`` and ``w->v`` (PyG's molecules are stored that way).
    """

    @renamed(("node_in", "edge_in", "hidden", "steps", "dropout"),
             {"hidden_channels": 64, "num_layers": 3},
             node_in="in_channels", edge_in="edge_dim", hidden="hidden_channels",
             steps="num_layers")
    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int,
                 out_channels: int | None = None, *, edge_dim: int | None = None,
                 dropout: float = 0.0, readout: str | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"DMPNN: num_layers must be >= 1, got {num_layers}")
        check_readout(readout, "DMPNN")
        self.in_channels, self.hidden_channels, self.num_layers = (in_channels, hidden_channels,
                                                                   num_layers)
        self.out_channels = hidden_channels if out_channels is None else out_channels
        self.edge_dim, self.readout = edge_dim or None, readout
        self.w_i = nn.Linear(in_channels + (edge_dim or 0), hidden_channels, bias=False)
        self.w_h = nn.Linear(hidden_channels, hidden_channels, bias=False)
        self.w_o = nn.Linear(in_channels + hidden_channels, self.out_channels)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        reset_children(self)

    def extra_repr(self) -> str:
        return channels_repr(self, "edge_dim", "readout")

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None) -> Tensor:
        check_shape(x, "x", (None, self.in_channels), "DMPNN")
        check_shape(edge_index, "edge_index", (2, None), "DMPNN")
        sender, receiver = edge_index[0], edge_index[1]
        bond = x[sender]
        if self.edge_dim:
            if edge_attr is None:
                raise ValueError(f"DMPNN: edge_attr (E, {self.edge_dim}) is required (edge_dim="
                                 f"{self.edge_dim})")
            check_shape(edge_attr, "edge_attr", (edge_index.size(1), self.edge_dim), "DMPNN")
            bond = torch.cat([bond, edge_attr], 1)
        elif edge_attr is not None:
            raise ValueError("DMPNN: edge_attr was given but the model has no edge_dim; build "
                             "it with DMPNN(..., edge_dim=F_e) or pass edge_attr=None")
        n = x.size(0)
        rev = reverse_edges(edge_index, n)
        has_rev = (rev >= 0).unsqueeze(1)
        rev = rev.clamp(min=0)
        h0 = torch.relu(self.w_i(bond))
        h = self.dropout(h0)
        for _ in range(self.num_layers - 1):
            incoming = aggregate("sum", h, receiver, n)  # (N, hidden): all bonds into v
            message = incoming[sender] - torch.where(has_rev, h[rev], torch.zeros_like(h))
            h = self.dropout(torch.relu(h0 + self.w_h(message)))
        atoms = aggregate("sum", h, receiver, n)
        out = self.dropout(torch.relu(self.w_o(torch.cat([x, atoms], 1))))
        return out if self.readout is None else pool(self.readout, out, batch, num_graphs)
