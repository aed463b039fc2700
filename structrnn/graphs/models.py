"""The standard graph-network configurations (Battaglia et al. 2018, Figure 4), built on
:class:`~structrnn.graphs.network.GraphNetwork` by choosing which parts each update function sees.

======================  =========================  =====================  ====================
configuration           edge update sees            node update sees       global update sees
======================  =========================  =====================  ====================
GraphIndependent        edge                        node                   global
InteractionNetwork      edge, sender, receiver      node, edges            --
DeepSets                --                          node, global           nodes
RelationNetwork         sender, receiver            --                     edges
MPNN                    edge, sender (A(e) x_s)     GRU(edges; node)       readout
NonLocal                sender, receiver (q.k, v)   node, edges (softmax)  --
======================  =========================  =====================  ====================

and :class:`EncodeProcessDecode` (encoder, a core block run K rounds with shared weights and
skip connections, decoder), the model of the graph_nets demos.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data.data import BaseData
from torch_geometric.nn import aggr as pyg_aggr
from torch_geometric.utils import scatter, softmax

from structrnn.cells import GRUCell, LSTMCell, state_h
from structrnn.graphs._renamed import renamed
from structrnn.graphs._reset import channels_repr, reset_children
from structrnn.graphs.network import (
    GraphNetwork,
    aggregate,
    batch_of,
    check_readout,
    count_graphs,
)

__all__ = ["mlp", "GraphIndependent", "InteractionNetwork", "DeepSets", "RelationNetwork",
           "MPNN", "EdgeNetwork", "NonLocal", "AttentionAggregation", "EncodeProcessDecode",
           "CORE_UPDATES", "core_aggregation"]

Graph = tuple[Tensor | None, Tensor | None, Tensor | None]


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU, layer_norm: bool = False,
        activate_last: bool = False) -> nn.Sequential:
    """``Linear(sizes[0], sizes[1]), act, ..., Linear(sizes[-2], sizes[-1])``, then optionally
    the activation and a ``LayerNorm(sizes[-1])`` (as graph_nets' demo MLPs)."""
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs at least an input and an output size, got {sizes}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or activate_last:
            layers.append(activation())
    if layer_norm:
        layers.append(nn.LayerNorm(sizes[-1]))
    return nn.Sequential(*layers)


class GraphIndependent(GraphNetwork):
    """Each attribute updated from itself alone: ``e' = f_e(e)``, ``x' = f_x(x)``, ``u' = f_u(u)``
    (encoders and decoders)."""

    def __init__(self, edge_model: nn.Module | None = None, node_model: nn.Module | None = None,
                 global_model: nn.Module | None = None) -> None:
        super().__init__(edge_model, node_model, global_model, edge_inputs=("edge",),
                         node_inputs=("node",), global_inputs=("global",))


class InteractionNetwork(GraphNetwork):
    """Battaglia et al. (2016): ``e' = f_e([e, x_s, x_r])``, ``x' = f_x([x, sum e'])``."""

    def __init__(self, edge_model: nn.Module, node_model: nn.Module, edge_aggr="sum") -> None:
        super().__init__(edge_model, node_model, None, edge_aggr=edge_aggr,
                         edge_inputs=("edge", "sender", "receiver"), node_inputs=("node", "edges"))


class DeepSets(GraphNetwork):
    """Zaheer et al. (2017): ``x' = f_x([x, u])``, ``u' = f_u(sum x')``; edges are ignored."""

    def __init__(self, node_model: nn.Module, global_model: nn.Module, global_aggr="sum") -> None:
        super().__init__(None, node_model, global_model, global_aggr=global_aggr,
                         node_inputs=("node", "global"), global_inputs=("nodes",))


class RelationNetwork(GraphNetwork):
    """Santoro et al. (2017): ``e' = g([x_s, x_r])`` for every pair given as an edge,
    ``u' = f(sum e')``."""

    def __init__(self, edge_model: nn.Module, global_model: nn.Module, global_aggr="sum") -> None:
        super().__init__(edge_model, None, global_model, global_aggr=global_aggr,
                         edge_inputs=("sender", "receiver"), global_inputs=("edges",))


# -- MPNN ----------------------------------------------------------------------------------------
class EdgeNetwork(nn.Module):
    """Gilmer et al.'s edge network message ``m = A(e) x_sender``, ``A(e)`` a (C, C) matrix.

    Input: the concatenation ``[A(e) flattened (C*C), x_sender (C)]`` -- ``A(e)`` depends on
    the edge only, so :class:`MPNN` computes it once, not once per round.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def extra_repr(self) -> str:
        return f"channels={self.channels}"

    def forward(self, inp: Tensor) -> Tensor:
        c = self.channels
        a, xs = inp.split([c * c, c], 1)
        return torch.bmm(a.view(-1, c, c), xs.unsqueeze(-1)).squeeze(-1)


class MPNN(nn.Module):
    """Message passing neural network (Gilmer et al. 2017): edge-network messages, a GRU node
    update, ``num_layers`` rounds with shared weights, then a Set2Set (or sum/mean) readout.

    Args:
        in_channels: node input width.
        hidden_channels: width of the node states.
        num_layers: message-passing rounds (shared weights).
        out_channels: width of the output head (an MLP after the readout, or per node with
            ``readout=None``); None: hidden_channels after a readout, no head without one.
        edge_dim: bond feature width (required: the edge network maps each bond to a
            ``(hidden_channels, hidden_channels)`` matrix).
        readout: "set2set" (default, as Gilmer et al.), "sum", "mean" or None (node rows).
        aggr: how the messages reach their receiver ("sum", "mean", "max", "min" or an
            ``Aggregation``).
        edge_hidden: hidden width of the edge network.

    Shapes: ``forward(x (N, in_channels), edge_index (2, E), edge_attr (E, edge_dim),
    batch (N,) or None, num_graphs=None)`` -> (G, out_channels), or (N, out_channels) with
    ``readout=None`` ((N, hidden_channels) without ``out_channels``). A ``Data`` / ``Batch``
    may be passed as ``x``. Pass ``num_graphs`` (a ``Batch`` carries it) and no step of the
    forward waits for the device; without it the graphs are counted once (``batch.max() + 1``),
    not once per round, and under ``torch.export`` that count is part of the graph.
    """

    @renamed(("node_in", "edge_in", "hidden", "out_channels", "steps", "readout", "aggr",
              "edge_hidden"), {"out_channels": 1, "hidden_channels": 64, "num_layers": 3},
             node_in="in_channels", edge_in="edge_dim", hidden="hidden_channels",
             steps="num_layers")
    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int,
                 out_channels: int | None = None, *, edge_dim: int,
                 readout: str | None = "set2set", aggr: str | pyg_aggr.Aggregation = "sum",
                 edge_hidden: int = 128) -> None:
        super().__init__()
        check_readout(readout, "MPNN", ("set2set", "sum", "mean", None))
        self.in_channels, self.hidden_channels, self.num_layers = (in_channels, hidden_channels,
                                                                   num_layers)
        self.edge_dim, self.readout = edge_dim, readout
        hidden = hidden_channels
        self.embed = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU())
        self.edge_net = mlp([edge_dim, edge_hidden, hidden * hidden])
        self.gn = GraphNetwork(EdgeNetwork(hidden), GRUCell(hidden, hidden), edge_aggr=aggr,
                               edge_inputs=("edge", "sender"), node_inputs=("node", "edges"))
        if readout == "set2set":
            self.set2set = pyg_aggr.Set2Set(hidden, processing_steps=3)
        self.head = None
        if readout is not None or out_channels is not None:
            width = 2 * hidden if readout == "set2set" else hidden
            self.head = mlp([width, hidden, hidden if out_channels is None else out_channels])
        self.out_channels = self.head[-1].out_features if self.head is not None else hidden

    @property
    def steps(self) -> int:
        """Deprecated: ``num_layers``."""
        warnings.warn("MPNN.steps is deprecated, use num_layers", FutureWarning, stacklevel=2)
        return self.num_layers

    def reset_parameters(self) -> None:
        reset_children(self)

    def extra_repr(self) -> str:
        return channels_repr(self, "edge_dim", "readout")

    def forward(self, x: Tensor | BaseData, edge_index: Tensor | None = None,
                edge_attr: Tensor | None = None, batch: Tensor | None = None,
                num_graphs: int | None = None) -> Tensor:
        if isinstance(x, BaseData):
            x, edge_index, edge_attr, batch, num_graphs = _unpack(x)[:5]
        if edge_attr is None:
            raise ValueError(f"MPNN: edge_attr (E, {self.edge_dim}) is required")
        num_graphs = count_graphs(batch, None, num_graphs)  # once, for every round
        h = self.embed(x)
        a = self.edge_net(edge_attr)  # (E, C*C), once for all rounds
        for _ in range(self.num_layers):
            h, _, _ = self.gn(h, edge_index, a, batch=batch, num_graphs=num_graphs)
        if self.readout is None:
            return h if self.head is None else self.head(h)
        if batch is None:
            batch = h.new_zeros(h.size(0), dtype=torch.long)
        if self.readout == "set2set":
            g = self.set2set(h, batch, dim_size=num_graphs)
        else:
            g = aggregate(self.readout, h, batch, num_graphs)
        return self.head(g)


# -- Non-local / self-attention --------------------------------------------------------------------
class AttentionAggregation(pyg_aggr.Aggregation):
    """Softmax attention over the incoming rows of each target: the input rows are
    ``[logits (heads), values (heads * D)]``; the output is ``sum_j softmax_j(logit) * value_j``
    per head, concatenated (heads * D)."""

    def __init__(self, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads

    def extra_repr(self) -> str:
        return f"heads={self.heads}"

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        logits, values = x[:, :self.heads], x[:, self.heads:]
        a = softmax(logits, index, num_nodes=dim_size, dim=0)  # (E, heads)
        # explicit width, not -1: a batch with no edges has no rows to infer it from
        weighted = values.view(values.size(0), self.heads, values.size(1) // self.heads)
        weighted = weighted * a.unsqueeze(-1)
        return scatter(weighted.flatten(1), index, dim=0, dim_size=dim_size, reduce="sum")


class _QueryKeyValue(nn.Module):
    """Edge update of :class:`NonLocal`: ``[q(x_r) . k(x_s) / sqrt(d) per head, v(x_s)]``."""

    def __init__(self, channels: int, heads: int, key_channels: int) -> None:
        super().__init__()
        self.channels, self.heads, self.key_channels = channels, heads, key_channels
        self.query = nn.Linear(channels, heads * key_channels)
        self.key = nn.Linear(channels, heads * key_channels)
        self.value = nn.Linear(channels, channels)

    def forward(self, inp: Tensor) -> Tensor:
        xs, xr = inp.split(self.channels, 1)
        q = self.query(xr).view(-1, self.heads, self.key_channels)
        k = self.key(xs).view(-1, self.heads, self.key_channels)
        logits = (q * k).sum(-1) / math.sqrt(self.key_channels)
        return torch.cat([logits, self.value(xs)], 1)


class _Residual(nn.Module):
    """Node update of :class:`NonLocal`: ``x + W [attended]`` (Wang et al. 2018, eq. 6)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.out = nn.Linear(channels, channels)

    def forward(self, inp: Tensor) -> Tensor:
        x, attended = inp.split(self.channels, 1)
        return x + self.out(attended)


class NonLocal(GraphNetwork):
    """Non-local network / multi-head self-attention over the given edges (Wang et al. 2018;
    Vaswani et al. 2017): each node attends over its senders with softmax weights computed
    from (sender, receiver). Use a complete edge set for attention over all nodes.

    The new ``edge_attr`` holds ``[logits (heads), values (channels)]`` per edge.
    """

    def __init__(self, channels: int, heads: int = 1, key_channels: int | None = None) -> None:
        if channels % heads:
            raise ValueError(f"NonLocal: channels ({channels}) must be divisible by heads "
                             f"({heads})")
        key_channels = key_channels or channels // heads
        self_channels = (channels, heads, key_channels)
        super().__init__(_QueryKeyValue(channels, heads, key_channels), _Residual(channels),
                         edge_aggr=AttentionAggregation(heads),
                         edge_inputs=("sender", "receiver"), node_inputs=("node", "edges"))
        self.channels, self.heads, self.key_channels = self_channels

    def extra_repr(self) -> str:
        return (f"{self.channels}, heads={self.heads}, key_channels={self.key_channels}, "
                f"edge_aggr=softmax attention")


# -- Encode-process-decode -----------------------------------------------------------------------
CORE_UPDATES = ("mlp", "gru", "lstm")
CELL_KEYS = ("edge", "node", "global_")


def core_aggregation(aggr: str | pyg_aggr.Aggregation, channels: int
                     ) -> str | pyg_aggr.Aggregation:
    """The core's edge aggregation: "sum", "mean", "max", "min", an ``Aggregation``, or
    "attention": a softmax over each node's incoming edges, scored by a learned
    ``Linear(channels, 1)`` of the edge (PyG's ``AttentionalAggregation``; Li et al. 2016)."""
    if aggr == "attention":
        return pyg_aggr.AttentionalAggregation(gate_nn=nn.Linear(channels, 1))
    return aggr


class EncodeProcessDecode(nn.Module):
    """Encoder -> core block run ``num_layers`` rounds (shared weights) -> decoder after every
    round (Battaglia et al. 2018, Figure 6c; the graph_nets demos).

    The core sees ``[encoded input, previous core output]`` for each attribute (skip
    connection); the first round starts from the encoded input twice. Unlike the other graph
    modules, ``forward`` returns one output per round, since per-round losses are how the model
    is trained: a list of ``num_layers`` tuples ``(x, edge_attr, u)`` of decoded outputs (the
    last one is the prediction). An output width of None leaves that attribute out (None in the
    tuples). With ``global_dim=None`` the latent global starts at zero.

    Args (PyG's names; the node attribute is the main one, so ``in_channels`` /
    ``out_channels`` are the node widths):
        in_channels: node input width.
        hidden_channels: latent width of every attribute (default 16, the demo's).
        num_layers: rounds of the core (default 10); ``forward(..., num_layers=K)`` runs K.
        out_channels: node output width, or None.
        edge_dim: edge input width (required; the core updates edges).
        global_dim: global input width, or None (the latent global starts at zero).
        edge_out_channels, global_out_channels: edge / global output widths, or None.
        mlp_layers: layers of every latent MLP and output head (default 2).
        layer_norm: a LayerNorm after every latent MLP (encoder and core).
        core_update: "mlp" -- each latent attribute is its MLP's output; "gru" / "lstm" -- a
            :mod:`structrnn.cells` cell per attribute (edge, node, global) whose input is that
            MLP output and whose state is the attribute's latent from the previous round
            (``h' = cell(mlp([encoded, h]), h)``; an LSTM also carries its memory ``c``,
            starting at zero; the first round's state is the encoded input). A gated update
            keeps the latent of an attribute the rounds have settled, so more rounds at test
            time than in training drift less.
        aggr: how the core reduces the new edges onto their receiver: "sum" (default),
            "mean", "max", "min", "attention" (:func:`core_aggregation`) or an
            ``Aggregation``.

    Shapes: ``forward(x (N, in_channels), edge_index (2, E), edge_attr (E, edge_dim),
    u (G, global_dim) or None, batch (N,) or None, num_graphs=None, num_layers=None)`` -> a list
    of tuples ``((N, out_channels), (E, edge_out_channels), (G, global_out_channels))``.
    """

    @renamed(("node_in", "edge_in", "global_in", "node_out", "edge_out", "global_out", "hidden",
              "layers", "steps", "layer_norm", "core_update", "edge_aggr"),
             node_in="in_channels", edge_in="edge_dim", global_in="global_dim",
             node_out="out_channels", edge_out="edge_out_channels",
             global_out="global_out_channels", hidden="hidden_channels", layers="mlp_layers",
             steps="num_layers", edge_aggr="aggr")
    def __init__(self, in_channels: int, hidden_channels: int = 16, num_layers: int = 10,
                 out_channels: int | None = None, *, edge_dim: int,
                 global_dim: int | None = None, edge_out_channels: int | None = None,
                 global_out_channels: int | None = None, mlp_layers: int = 2,
                 layer_norm: bool = True, core_update: str = "mlp",
                 aggr: str | pyg_aggr.Aggregation = "sum") -> None:
        super().__init__()
        if core_update not in CORE_UPDATES:
            raise ValueError(f"EncodeProcessDecode: core_update must be one of {CORE_UPDATES}, "
                             f"got {core_update!r}")
        hidden = hidden_channels
        self.in_channels, self.hidden_channels, self.num_layers = (in_channels, hidden,
                                                                   num_layers)
        self.out_channels, self.edge_dim, self.global_dim = out_channels, edge_dim, global_dim
        self.edge_out_channels, self.global_out_channels = edge_out_channels, global_out_channels
        self.core_update, self.aggr = core_update, aggr

        def latent(n_in: int) -> nn.Sequential:
            return mlp([n_in] + [hidden] * mlp_layers, layer_norm=layer_norm,
                       activate_last=True)

        def head(n_out: int | None) -> nn.Module | None:
            return None if n_out is None else mlp([hidden] * mlp_layers + [n_out])

        self.encoder = GraphIndependent(latent(edge_dim), latent(in_channels),
                                        None if global_dim is None else latent(global_dim))
        h2 = 2 * hidden  # every attribute enters the core as [encoded, previous]
        self.core = GraphNetwork(latent(4 * h2), latent(h2 + hidden + h2),
                                 latent(h2 + hidden + hidden),
                                 edge_aggr=core_aggregation(aggr, hidden))
        # the cells sit after the block's MLPs, not inside it: the block then still applies
        # the edge MLP's first layer per node before gathering (GraphNetwork's split speed-up)
        self.cells = None
        if core_update != "mlp":
            cell = GRUCell if core_update == "gru" else LSTMCell
            # "global_", not "global": a keyword would break torch.export's generated code
            self.cells = nn.ModuleDict({k: cell(hidden, hidden) for k in CELL_KEYS})
        self.decoder = GraphIndependent(head(edge_out_channels), head(out_channels),
                                        head(global_out_channels))
        self._outputs = (out_channels is not None, edge_out_channels is not None,
                         global_out_channels is not None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the global cell was ``cells.global`` before it became ``cells.global_``: weights
        # saved then still load
        old = prefix + "cells.global."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + "cells.global_." + key[len(old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def steps(self) -> int:
        """Deprecated: ``num_layers``."""
        warnings.warn("EncodeProcessDecode.steps is deprecated, use num_layers", FutureWarning,
                      stacklevel=2)
        return self.num_layers

    def reset_parameters(self) -> None:
        reset_children(self)

    def extra_repr(self) -> str:
        return channels_repr(self, "edge_dim", "global_dim", "edge_out_channels",
                             "global_out_channels", "core_update")

    def _gate(self, latents: tuple[Tensor, Tensor, Tensor], states: tuple | None) -> tuple:
        """The cells' update of the core's MLP outputs ``(x (N, H), e (E, H), u (G, H))`` from
        ``states`` (each a tensor, or ``(h, c)`` for LSTM cells) -> the new states."""
        assert self.cells is not None
        return tuple(self.cells[k](m, s) for k, m, s in zip(("node", "edge", "global_"),
                                                            latents, states, strict=True))

    @renamed(steps="num_layers")
    def forward(self, x: Tensor | BaseData, edge_index: Tensor | None = None,
                edge_attr: Tensor | None = None, u: Tensor | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None,
                num_layers: int | None = None) -> list[Graph]:
        """x (N, in_channels) or a ``Data`` / ``Batch``, edge_index (2, E), edge_attr
        (E, edge_dim), u (G, global_dim) or None -> ``num_layers`` (default: the constructor's)
        tuples of (N, out_channels), (E, edge_out_channels), (G, global_out_channels)."""
        if isinstance(x, BaseData):
            x, edge_index, edge_attr, batch, num_graphs, u = _unpack(x)
        if edge_attr is None:
            raise ValueError(f"EncodeProcessDecode: edge_attr (E, {self.edge_dim}) is required")
        num_graphs = count_graphs(batch, u, num_graphs)  # once, for every round
        x0, e0, u0 = self.encoder(x, edge_index, edge_attr, u, batch, num_graphs)
        if u0 is None or self.encoder.global_model is None:
            u0 = x0.new_zeros(num_graphs, self.hidden_channels)
        x_, e_, u_ = x0, e0, u0
        states = None
        if self.core_update == "lstm":  # the memory starts at zero
            states = tuple((h, torch.zeros_like(h)) for h in (x0, e0, u0))
        elif self.core_update == "gru":
            states = (x0, e0, u0)
        outputs = []
        keep_x, keep_e, keep_u = self._outputs
        for _ in range(self.num_layers if num_layers is None else num_layers):
            x_, e_, u_ = self.core(torch.cat([x0, x_], 1), edge_index, torch.cat([e0, e_], 1),
                                   torch.cat([u0, u_], 1), batch, num_graphs)
            if states is not None:
                states = self._gate((x_, e_, u_), states)
                x_, e_, u_ = (state_h(s) for s in states)
            xo, eo, uo = self.decoder(x_, edge_index, e_, u_, batch, num_graphs)
            outputs.append((xo if keep_x else None, eo if keep_e else None,
                            uo if keep_u else None))
        return outputs


def _unpack(data: BaseData) -> tuple:
    batch, num_graphs = batch_of(data)
    return (data.x, data.edge_index, getattr(data, "edge_attr", None), batch, num_graphs,
            getattr(data, "u", None))
