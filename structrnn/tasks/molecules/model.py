"""The molecule and TU models: a node model of :mod:`structrnn.graphs` (the recurrent graph
network :class:`~structrnn.graphs.gngru.GNGRU`, an :class:`~structrnn.graphs.models.MPNN` edge
network, :class:`~structrnn.graphs.gin.GIN` or chemprop's :class:`~structrnn.graphs.dmpnn.DMPNN`)
and a graph readout (set2set, sum, mean, a sum of per-atom contributions, or GIN's sum over
layers)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import aggr as pyg_aggr

from structrnn.graphs.dmpnn import DMPNN
from structrnn.graphs.gin import GIN
from structrnn.graphs.gngru import GNGRU
from structrnn.graphs.models import MPNN, mlp
from structrnn.graphs.network import aggregate

__all__ = ["MoleculeModel", "READOUTS", "MODELS", "NODE_ENCODINGS"]

MODELS = ("gn-gru", "mpnn", "gin", "dmpnn")
READOUTS = ("set2set", "sum", "mean", "atom-sum")
# "features": the batch's x; "degree": one-hot node degrees computed from edge_index (TU sets
# without node labels or attributes), so a graph to predict needs no node features
NODE_ENCODINGS = ("features", "degree")


class MoleculeModel(nn.Module):
    """A node model (``gn-gru``, ``mpnn``, ``gin`` or ``dmpnn``) and a graph readout.

    Args:
        node_in, edge_in: input widths; ``edge_in=0`` for graphs without edge features (the
            models that need one then see a constant 1 on every edge; GIN uses none).
        out_channels: outputs per graph (targets, or every task's class logits side by side).
        readout: ``set2set``, ``sum``, ``mean`` or ``atom-sum``; for ``gin`` ``sum`` or
            ``mean``: Xu et al.'s readout, a linear map of every layer's pooled states, summed.
        global_in: with ``global_in > 0`` the batch carries ``u`` (num_graphs, global_in),
            whole-molecule features joining the readout (as Chemprop does with RDKit
            descriptors).
        node_encoding: ``features`` (the batch's ``x``) or ``degree`` (one-hot degrees of width
            ``node_in``, computed here from ``edge_index``).
        node_scale, edge_scale: the leading columns of ``x`` / ``edge_attr`` that are continuous
            attributes, standardised with the buffers :meth:`set_scaling` fills from the
            training graphs (they travel with the weights, so a prediction needs nothing else).

    ``forward(batch)`` -> (num_graphs, out_channels); ``atom_contributions(batch)`` ->
    (num_nodes, out_channels) for the ``atom-sum`` readout, whose graph output is their sum.
    """

    def __init__(self, node_in: int, edge_in: int, out_channels: int, hidden: int = 64,
                 steps: int = 3, model: str = "gn-gru", readout: str = "set2set",
                 dropout: float = 0.0, global_in: int = 0, node_encoding: str = "features",
                 node_scale: int = 0, edge_scale: int = 0) -> None:
        super().__init__()
        self._check(model, readout, global_in, node_encoding)
        self.model, self.readout, self.global_in = model, readout, global_in
        self.node_in, self.edge_in, self.node_encoding = node_in, edge_in, node_encoding
        # a model that needs edge features gets a constant one on graphs that have none
        body_edges = edge_in if edge_in or model == "gin" else 1
        if model == "gn-gru":
            self.body: nn.Module = GNGRU(node_in, hidden, steps, edge_dim=body_edges)
        elif model == "mpnn":
            self.body = MPNN(node_in, hidden, steps, edge_dim=body_edges, readout=None)
        elif model == "dmpnn":
            self.body = DMPNN(node_in, hidden, steps, edge_dim=body_edges, dropout=dropout)
        else:  # GIN pools every layer itself (Xu et al.'s readout), dropout on each term
            self.body = GIN(node_in, hidden, steps, out_channels, edge_dim=edge_in or None,
                            dropout=dropout, readout=readout)
        self.node_scale, self.edge_scale = node_scale, edge_scale
        for name, width in (("node", node_scale), ("edge", edge_scale)):
            if width:
                self.register_buffer(f"{name}_shift", torch.zeros(width))
                self.register_buffer(f"{name}_factor", torch.ones(width))
        self.dropout = nn.Dropout(dropout)
        if model == "gin":
            if global_in:
                self.global_head = nn.Linear(global_in, out_channels)
            return
        if readout == "set2set":
            self.set2set = pyg_aggr.Set2Set(hidden, processing_steps=3)
        width = (2 * hidden if readout == "set2set" else hidden) + global_in
        self.head = mlp([width, hidden, out_channels])

    @staticmethod
    def _check(model: str, readout: str, global_in: int, node_encoding: str) -> None:
        if model not in MODELS:
            raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
        if readout not in READOUTS:
            raise ValueError(f"readout: expected set2set, sum, mean or atom-sum, got {readout!r}")
        if model == "gin" and readout not in ("sum", "mean"):
            raise ValueError(f"readout: GIN pools every layer by 'sum' or 'mean', not {readout!r}")
        if global_in and readout == "atom-sum":
            raise ValueError("global features need a graph readout, not 'atom-sum'")
        if node_encoding not in NODE_ENCODINGS:
            raise ValueError(f"node_encoding: expected one of {NODE_ENCODINGS}, got "
                             f"{node_encoding!r}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # GIN's per-layer readout maps moved from ``heads.k`` into the GIN (``body.heads.k``)
        # when GIN became a public module; weights saved before that still load
        if self.model == "gin":
            for key in [k for k in state_dict if k.startswith(prefix + "heads.")]:
                state_dict[prefix + "body." + key[len(prefix):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_scaling(self, node: tuple[Tensor, Tensor] | None = None,
                    edge: tuple[Tensor, Tensor] | None = None) -> None:
        """The mean and standard deviation of the continuous node (and edge) columns over the
        training graphs; a constant column keeps a factor of 1."""
        for name, stats in (("node", node), ("edge", edge)):
            if stats is not None:
                mean, std = stats
                getattr(self, f"{name}_shift").copy_(mean)
                getattr(self, f"{name}_factor").copy_(torch.where(std > 0, std,
                                                                  torch.ones_like(std)))

    def _scaled(self, values: Tensor, name: str, width: int) -> Tensor:
        if not width:
            return values
        shift, factor = getattr(self, f"{name}_shift"), getattr(self, f"{name}_factor")
        return torch.cat([(values[:, :width] - shift) / factor, values[:, width:]], 1)

    def inputs(self, batch) -> tuple[Tensor, Tensor | None]:
        """The node (N, node_in) and edge (E, edge_in, or a constant (E, 1), or None for GIN
        without edge features) inputs of the node model."""
        if self.node_encoding == "degree":
            from structrnn.datasets.tu import degree_features

            x = degree_features(batch.edge_index, batch.num_nodes, self.node_in)
            x = x.to(batch.edge_index.device)
        else:
            x = self._scaled(batch.x, "node", self.node_scale)
        if self.edge_in:
            return x, self._scaled(batch.edge_attr, "edge", self.edge_scale)
        if self.model == "gin":
            return x, None
        return x, x.new_ones(batch.edge_index.size(1), 1)

    def node_states(self, batch) -> Tensor:
        """(N, hidden) the node model's last states."""
        x, edge_attr = self.inputs(batch)
        if self.model == "gin":
            return self.body.layer_states(x, batch.edge_index, edge_attr)[-1]
        return self.body(x, batch.edge_index, edge_attr)

    def atom_contributions(self, batch) -> Tensor:
        if self.readout != "atom-sum":
            raise ValueError(f"atom contributions need readout='atom-sum', not {self.readout!r}")
        return self.head(self.dropout(self.node_states(batch)))

    def forward(self, batch) -> Tensor:
        index, size = batch.batch, batch.num_graphs
        if self.readout == "atom-sum":
            return aggregate("sum", self.atom_contributions(batch), index, size)
        x, edge_attr = self.inputs(batch)
        if self.model == "gin":
            out = self.body(x, batch.edge_index, edge_attr, index, size)
            if self.global_in:
                out = out + self.dropout(self.global_head(batch.u))
            return out
        h = self.body(x, batch.edge_index, edge_attr)
        g = (self.set2set(h, index, dim_size=size) if self.readout == "set2set"
             else aggregate(self.readout, h, index, size))
        if self.global_in:  # the molecule's descriptors join the learned graph vector
            g = torch.cat([g, batch.u], dim=1)
        return self.head(self.dropout(g))
