"""The graph isomorphism network (GIN, Xu et al. 2019, "How powerful are graph neural
networks?") and chemprop's directed message passing (D-MPNN, Yang et al. 2019, "Analyzing
learned molecular representations for property prediction").

GIN updates every node from the sum of its neighbours and a weighted copy of itself through an
MLP; its readout sums, over every layer including the input, a linear map of the layer's graph
sum. D-MPNN keeps its hidden states on directed bonds: a bond v->w hears the bonds coming into
v except the one coming back from w, so no message returns straight to where it came from.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from structrnn.graphs.network import aggregate

__all__ = ["GIN", "DMPNN", "reverse_edges"]


def _mlp(width_in: int, hidden: int) -> nn.Sequential:
    """Xu et al.'s two-layer MLP with batch normalisation, then the outer BN and ReLU of their
    code (``Linear, BN, ReLU, Linear, BN, ReLU``)."""
    return nn.Sequential(nn.Linear(width_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU())


class GIN(nn.Module):
    """``layers`` GIN layers: ``h_v <- MLP((1 + eps) h_v + sum_{u in N(v)} m_uv)`` with
    ``m_uv = h_u`` (Xu et al.) or, with edge features, ``m_uv = ReLU(h_u + W e_uv)`` (GINE, Hu et
    al. 2020). ``eps`` is learned per layer (GIN-eps) or fixed at 0 (``learn_eps=False``,
    GIN-0).

    ``forward(x (N, node_in), edge_index (2, E), edge_attr (E, edge_in) or None)`` -> a list of
    ``layers + 1`` tensors: the input (N, node_in), then each layer's (N, hidden). The readout
    (in :class:`~structrnn.tasks.molecules.model.MoleculeModel`) pools every one of them.
    """

    def __init__(self, node_in: int, edge_in: int, hidden: int = 64, layers: int = 4,
                 learn_eps: bool = True) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers: expected >= 1, got {layers}")
        widths = [node_in] + [hidden] * layers
        self.widths = widths
        self.mlps = nn.ModuleList(_mlp(widths[k], hidden) for k in range(layers))
        eps = torch.zeros(layers)
        if learn_eps:
            self.eps = nn.Parameter(eps)
        else:
            self.register_buffer("eps", eps)
        # GINE: the bond enters the message, projected to the width of the layer's input
        self.edges = (nn.ModuleList(nn.Linear(edge_in, widths[k]) for k in range(layers))
                      if edge_in else None)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) \
            -> list[Tensor]:
        sender, receiver = edge_index
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


def reverse_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """(E,) the id of each edge's reverse (``v->w`` -> ``w->v``), -1 where the graph has none.

    Found by sorting the edges' keys ``sender * N + receiver``: one sort, no host
    synchronisation; with parallel edges one of the reverses is taken.
    """
    sender, receiver = edge_index
    if sender.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=edge_index.device)
    key = sender * num_nodes + receiver
    order = torch.argsort(key)
    ordered = key[order]
    wanted = receiver * num_nodes + sender
    pos = torch.searchsorted(ordered, wanted).clamp(max=key.numel() - 1)
    found = ordered[pos] == wanted
    return torch.where(found, order[pos], torch.full_like(pos, -1))


class DMPNN(nn.Module):
    """Chemprop's directed MPNN (its defaults: no bias in ``W_i`` and ``W_h``, ReLU).

    On a directed bond ``v->w``: ``h0 = ReLU(W_i [x_v, e_vw])``; ``steps - 1`` times
    ``h_vw <- ReLU(h0_vw + W_h sum_{k in N(v), k != w} h_kv)``, computed as the sum over the
    bonds coming into ``v`` minus the one coming back from ``w``; then each atom
    ``ReLU(W_o [x_v, sum_k h_kv])`` (chemprop's ``depth`` is ``steps``).

    ``forward(x (N, node_in), edge_index (2, E), edge_attr (E, edge_in))`` -> (N, hidden).
    """

    def __init__(self, node_in: int, edge_in: int, hidden: int = 64, steps: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps: expected >= 1, got {steps}")
        self.steps = steps
        self.w_i = nn.Linear(node_in + edge_in, hidden, bias=False)
        self.w_h = nn.Linear(hidden, hidden, bias=False)
        self.w_o = nn.Linear(node_in + hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        sender, receiver = edge_index
        n = x.size(0)
        rev = reverse_edges(edge_index, n)
        has_rev = (rev >= 0).unsqueeze(1)
        rev = rev.clamp(min=0)
        h0 = torch.relu(self.w_i(torch.cat([x[sender], edge_attr], 1)))
        h = self.dropout(h0)
        for _ in range(self.steps - 1):
            incoming = aggregate("sum", h, receiver, n)  # (N, hidden): all bonds into v
            message = incoming[sender] - torch.where(has_rev, h[rev], torch.zeros_like(h))
            h = self.dropout(torch.relu(h0 + self.w_h(message)))
        atoms = aggregate("sum", h, receiver, n)
        return self.dropout(torch.relu(self.w_o(torch.cat([x, atoms], 1))))
