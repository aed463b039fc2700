"""Graphs to and from networkx, keeping node, edge and graph attributes (graph attributes become
``u``, one row per graph), on top of PyG's own converters."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import from_networkx as pyg_from_networkx
from torch_geometric.utils import to_networkx as pyg_to_networkx

__all__ = ["from_networkx", "to_networkx"]


def to_networkx(data: Data, node_attrs: Sequence[str] | None = None,
                edge_attrs: Sequence[str] | None = None, graph_attrs: Sequence[str] | None = None,
                to_undirected: bool = False):
    """A ``Data`` (one graph) as a ``networkx.DiGraph`` (``Graph`` with ``to_undirected``).

    By default every node-level tensor (``x``, ``y``, ``pos`` ...) becomes a node attribute,
    every edge-level tensor (``edge_attr`` ...) an edge attribute and ``u`` (one row) the graph
    attribute ``G.graph["u"]``; values are Python lists/numbers.
    """
    if getattr(data, "num_graphs", 1) != 1 and getattr(data, "batch", None) is not None:
        raise ValueError(f"to_networkx: data must hold one graph, got num_graphs="
                         f"{data.num_graphs}; convert batch.to_data_list() one by one")
    keys = [k for k in data.keys() if k not in ("edge_index", "batch", "ptr")]
    if node_attrs is None:
        node_attrs = [k for k in keys if isinstance(data[k], Tensor) and data.is_node_attr(k)
                      and k != "u"]
    if edge_attrs is None:
        edge_attrs = [k for k in keys if isinstance(data[k], Tensor) and data.is_edge_attr(k)
                      and k not in node_attrs]
    if graph_attrs is None:
        graph_attrs = [k for k in keys if k not in node_attrs and k not in edge_attrs]
    g = pyg_to_networkx(data, node_attrs=list(node_attrs), edge_attrs=list(edge_attrs),
                        to_undirected=to_undirected)
    for key in graph_attrs:
        value = data[key]
        if key == "u" and isinstance(value, Tensor) and value.dim() == 2:
            value = value[0]  # one graph: one row
        g.graph[key] = value.tolist() if isinstance(value, Tensor) else value
    return g


def from_networkx(g, node_attrs: Sequence[str] | None = None,
                  edge_attrs: Sequence[str] | None = None,
                  graph_attrs: Sequence[str] | None = None) -> Data:
    """A networkx graph as a ``Data``; undirected edges become two directed ones.

    Every attribute is kept under its own name (``torch_geometric.utils.from_networkx``); the
    ones listed in ``node_attrs`` / ``edge_attrs`` / ``graph_attrs`` are instead concatenated,
    in that order, into ``x`` (N, F), ``edge_attr`` (E, F) and ``u`` (1, F). A graph attribute
    named ``u`` always becomes one row ``(1, F)``.
    """
    graph = dict(g.graph)
    g = g.copy()
    g.graph.clear()  # graph attributes are handled here, so that none is renamed
    data = pyg_from_networkx(g, group_node_attrs=list(node_attrs) if node_attrs else None,
                             group_edge_attrs=list(edge_attrs) if edge_attrs else None)
    for key, value in graph.items():
        if key in ("node_default", "edge_default") or (graph_attrs and key in graph_attrs):
            continue
        data[key] = _as_row(value) if key == "u" else _maybe_tensor(value)
    if graph_attrs:
        data.u = torch.cat([_as_row(graph[k]) for k in graph_attrs], 1)
    return data


def _maybe_tensor(value):
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return value


def _as_row(value) -> Tensor:
    t = torch.as_tensor(value)
    return t.reshape(1, -1)
