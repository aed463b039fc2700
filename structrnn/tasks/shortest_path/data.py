"""The shortest-path graphs (the graph_nets demo): random geometric graphs with a start and an
end node, labelled with the nodes and edges of the shortest path between them.

Every split is drawn from its own NumPy stream spawned from the run's seed, so the data depend
on the seed alone (not on the global random state, nor on the size of the other splits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import Data

__all__ = ["make_graph", "graph_features", "to_data", "make_dataset", "Splits", "make_splits",
           "split_rng", "SPLITS"]

SPLITS = ("train", "val", "test_same", "test_large")


def make_graph(rng: np.random.Generator, num_nodes: int, degree: float = 4.0,
               min_path_edges: int = 2) -> tuple[nx.Graph, int, int, list[int]]:
    """A random geometric graph in the unit square joined by its Euclidean minimum spanning tree
    (so it is connected), a start and an end node, and the shortest path between them.

    Edges carry ``distance``; nodes carry ``pos``. The radius keeps the mean degree near
    ``degree`` whatever the size. Start and end are drawn until the path has at least
    ``min_path_edges`` edges (or the graph is too small for that).
    """
    pos = {i: tuple(p) for i, p in enumerate(rng.random((num_nodes, 2)))}
    radius = math.sqrt(degree / (math.pi * num_nodes))
    g = nx.random_geometric_graph(num_nodes, radius, pos=pos)
    complete = nx.complete_graph(num_nodes)
    for a, b in complete.edges:
        complete[a][b]["distance"] = math.dist(pos[a], pos[b])
    g.add_edges_from(nx.minimum_spanning_tree(complete, weight="distance").edges)
    for a, b in g.edges:
        g[a][b]["distance"] = math.dist(pos[a], pos[b])
    for _ in range(20):
        start, end = (int(v) for v in rng.choice(num_nodes, 2, replace=False))
        path = nx.shortest_path(g, start, end, weight="distance")
        if len(path) - 1 >= min_path_edges:
            break
    return g, start, end, path


def graph_features(g: nx.Graph, start: int, end: int) -> Data:
    """The model's inputs of a graph whose nodes are ``0..N-1`` with ``pos`` and whose edges
    carry ``distance``: ``x`` (N, 2) ``[is_start, is_end]``, ``edge_index`` (2, E) with both
    directions of every edge (``g.edges`` first, then the same edges reversed), ``edge_attr``
    (E, 1) the distance and ``pos`` (N, 2). What prediction reads; :func:`to_data` adds the
    targets."""
    n = g.number_of_nodes()
    pairs = list(g.edges) + [(b, a) for a, b in g.edges]
    edge_index = torch.tensor(pairs, dtype=torch.long).t().reshape(2, -1)
    x = torch.zeros(n, 2)
    x[start, 0] = x[end, 1] = 1.0
    dist = torch.tensor([[g[a][b]["distance"]] for a, b in pairs], dtype=torch.float32)
    pos = torch.tensor([g.nodes[i]["pos"] for i in range(n)], dtype=torch.float32)
    return Data(x=x, edge_index=edge_index, edge_attr=dist.reshape(-1, 1), pos=pos,
                num_nodes=n)


def to_data(g: nx.Graph, start: int, end: int, path: list[int]) -> Data:
    """A PyG graph: the inputs of :func:`graph_features` and the targets ``y`` (N,) node on the
    path and ``edge_y`` (E,) edge on the path (in either direction)."""
    data = graph_features(g, start, end)
    on_path = set(zip(path[:-1], path[1:], strict=True))
    on_path |= {(b, a) for a, b in on_path}
    y = torch.zeros(data.num_nodes, dtype=torch.long)
    y[path] = 1
    data.y = y
    data.edge_y = torch.tensor([int(tuple(p) in on_path) for p in data.edge_index.t().tolist()],
                               dtype=torch.long)
    return data


def make_dataset(rng: np.random.Generator, count: int, nodes: tuple[int, int]) -> list[Data]:
    """``count`` graphs with a node count drawn uniformly from ``[nodes[0], nodes[1]]``."""
    return [to_data(*make_graph(rng, int(rng.integers(nodes[0], nodes[1] + 1))))
            for _ in range(count)]


@dataclass
class Splits:
    """``train`` and ``val`` (training sizes: ``val`` selects the epoch), ``test_same`` (training
    sizes) and ``test_large`` (the larger test sizes)."""

    train: list[Data]
    val: list[Data]
    test_same: list[Data]
    test_large: list[Data]


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The NumPy stream of one split (``train``, ``val``, ``test_same`` or ``test_large``):
    spawned from ``seed``, so that each split depends on the seed alone."""
    streams = np.random.SeedSequence(seed % 2**64).spawn(len(SPLITS))
    return np.random.default_rng(streams[SPLITS.index(split)])


def make_splits(seed: int, train_graphs: int, val_graphs: int, test_graphs: int,
                train_nodes: tuple[int, int], test_nodes: tuple[int, int]) -> Splits:
    """The four splits of a run, a function of ``seed`` and the sizes alone."""
    return Splits(make_dataset(split_rng(seed, "train"), train_graphs, train_nodes),
                  make_dataset(split_rng(seed, "val"), val_graphs, train_nodes),
                  make_dataset(split_rng(seed, "test_same"), test_graphs, train_nodes),
                  make_dataset(split_rng(seed, "test_large"), test_graphs, test_nodes))
