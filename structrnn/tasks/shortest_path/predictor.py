"""A trained shortest-path run as a predictor: graphs with a start and an end node in, the nodes
and edges on the shortest path out.

::

    import networkx as nx
    import structrnn as sr

    g = nx.random_geometric_graph(12, 0.4, seed=1)      # nodes carry "pos"
    g.graph.update(start=0, end=7)                       # or node flags start=True / end=True
    sr.load("runs/shortest_path").predict([g])
    # [{"input": 0, "nodes_on_path": [0, 3, 7], "edges_on_path": [[0, 3], [3, 7]],
    #   "node_probs": [...], "error": None}]

Edge lengths are the edges' ``distance`` attribute, else the Euclidean distance between the
ends' ``pos`` (what the training graphs use). The model runs the run's test rounds
(``--test-steps``, recorded in its config; a config from before that, which holds None,
means twice the training rounds, the default of those runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from structrnn._errors import InputError
from structrnn.tasks.predictor import Predictor, check_graph, is_networkx, load_weights, split_part

__all__ = ["ShortestPathPredictor", "PREDICTOR", "from_networkx_graph"]

# figures of tasks.shortest_path.task.evaluate, and the names metrics.json gives them per split
FIGURES = ("node_accuracy", "edge_accuracy", "solved")
PREFIX = {"test": ("test_large", "test_"), "same_size": ("test_same", "same_size_"),
          "val": ("val", "val_"), "train": ("train", "train_")}


def _endpoints(g) -> tuple[Any, Any]:
    """The start and end nodes: graph attributes ``start``/``end``, else the one node flagged
    ``start=True`` and the one flagged ``end=True``."""
    found = []
    for key in ("start", "end"):
        if key in g.graph:
            node = g.graph[key]
            if node not in g:
                raise ValueError(f"graph['{key}'] = {node!r} is not a node of the graph")
        else:
            flagged = [v for v, flag in g.nodes(data=key) if flag]
            if len(flagged) != 1:
                raise ValueError(f"no {key} node: set graph['{key}'] or flag exactly one node "
                                 f"with {key}=True (found {len(flagged)})")
            node = flagged[0]
        found.append(node)
    if found[0] == found[1]:
        raise ValueError(f"start and end are the same node {found[0]!r}")
    return found[0], found[1]


def from_networkx_graph(g) -> tuple[Data, list]:
    """A networkx graph as the model's input
    (:func:`~structrnn.tasks.shortest_path.data.graph_features`) and its node ids in the order
    of the rows.

    Nodes need ``pos`` (2 numbers); edges use ``distance`` when they have it, else the distance
    between their ends. ValueError naming what is missing."""
    import networkx as nx

    from structrnn.tasks.shortest_path.data import graph_features

    start, end = _endpoints(g)
    nodes = list(g.nodes)
    if len(nodes) < 2:
        raise ValueError("the graph needs at least two nodes")
    missing = [v for v in nodes if "pos" not in g.nodes[v] or len(g.nodes[v]["pos"]) != 2]
    if missing:
        raise ValueError(f"node {missing[0]!r} has no 2-d 'pos' ({len(missing)} such nodes)")
    index = {v: i for i, v in enumerate(nodes)}
    h = nx.Graph()  # nodes 0..N-1 in g's order, as graph_features reads them
    h.add_nodes_from((index[v], {"pos": tuple(map(float, g.nodes[v]["pos"]))}) for v in nodes)
    for a, b, attrs in g.edges(data=True):
        if a == b:
            continue  # a self-loop is never on a shortest path
        distance = attrs.get("distance")
        if distance is None:
            distance = math.dist(h.nodes[index[a]]["pos"], h.nodes[index[b]]["pos"])
        h.add_edge(index[a], index[b], distance=float(distance))
    return graph_features(h, index[start], index[end]), nodes


def path_edges(edge_index: Tensor, edge_prob: Tensor, nodes: list) -> list[list]:
    """The undirected edges on the path, each once as ``[u, v]`` (node ids) in the order of
    their first direction: an edge is on the path when the mean probability of its directions
    is above one half. ``edge_index`` (2, E), ``edge_prob`` (E,)."""
    probs: dict[frozenset, list[float]] = {}
    first: dict[frozenset, tuple[int, int]] = {}
    for (a, b), p in zip(edge_index.t().tolist(), edge_prob.tolist(), strict=True):
        key = frozenset((a, b))
        probs.setdefault(key, []).append(p)
        first.setdefault(key, (a, b))
    return [[nodes[first[k][0]], nodes[first[k][1]]] for k, ps in probs.items()
            if sum(ps) / len(ps) > 0.5]


class ShortestPathPredictor(Predictor):
    """The predictor of ``structrnn train shortest-path`` runs.

    Attributes (beside :class:`~structrnn.tasks.predictor.Predictor`'s):
        steps: the message-passing rounds of a prediction (the run's test rounds).
    """

    tasks: ClassVar[tuple[str, ...]] = ("shortest-path",)

    def __init__(self, task: str, config: dict, models: Sequence[torch.nn.Module],
                 device: torch.device) -> None:
        super().__init__(task, config, models, device)
        # None: a run from before test_steps was recorded, whose default was 2 x steps
        self.steps = int(config.get("test_steps") or 2 * config["steps"])

    @classmethod
    def build_model(cls, config: dict, weights: dict, where: str) -> torch.nn.Module:
        """The run's model (:class:`~structrnn.tasks.shortest_path.task.PathModel`) with
        ``weights``; a config from before an option existed builds the model runs had then."""
        from argparse import Namespace

        from structrnn.tasks.shortest_path.task import LEGACY_MODEL, build_model

        missing = [k for k in ("hidden", "steps") if k not in config]
        if missing:
            raise InputError(f"{where}: the config lacks {', '.join(missing)}")
        model = build_model(Namespace(**{k: config[k] for k in ("hidden", "steps", *LEGACY_MODEL)
                                         if k in config}))
        return load_weights(model, weights, where)

    default_batch_size: ClassVar[int] = 64

    def check_inputs(self, inputs: Any) -> list:
        """The inputs as a list; InputError for text (a shortest-path run reads graphs)."""
        inputs = super().check_inputs(inputs)
        text = next((x for x in inputs if isinstance(x, str)), None)
        if text is not None:
            raise InputError(f"a shortest-path run reads graphs (networkx or PyG Data from "
                             f"Python), not text such as {text!r}")
        return inputs

    def read_input(self, item: Any, options: dict[str, Any]) -> tuple[Data, list]:
        """The graph as the model reads it and its node ids in the order of its rows: a
        networkx graph whose nodes have ``pos`` (2-d) and whose start and end are
        ``graph["start"]``/``graph["end"]`` (or the nodes flagged ``start=True`` /
        ``end=True``), or a PyG ``Data`` built like the task's
        (:func:`structrnn.tasks.shortest_path.data.to_data`)."""
        if isinstance(item, Data):
            data = check_graph(item, 2, 1, "([is_start, is_end] flags, lengths)")
            return data, list(range(data.num_nodes))
        if is_networkx(item):
            return from_networkx_graph(item)
        raise ValueError(f"expected a networkx graph or a PyG Data, got {type(item).__name__}")

    def forward_batch(self, inputs: list[tuple[Data, list]],
                      options: dict[str, Any]) -> list[tuple[list, Tensor, Tensor, Tensor]]:
        """Per graph: its node ids, its nodes' probabilities of being on the path (N,), its
        edges (2, E) (numbered within the graph) and their probabilities (E,)."""
        batch = Batch.from_data_list([graph for graph, _ in inputs]).to(self.device)
        x, e, _ = self.model(batch, num_layers=self.steps)[-1]
        node_prob = torch.softmax(x.float(), 1)[:, 1].cpu()
        edge_prob = torch.softmax(e.float(), 1)[:, 1].cpu()
        batch = batch.cpu()
        graph_of_edge = batch.batch[batch.edge_index[0]]
        outputs = []
        for j, (_, nodes) in enumerate(inputs):
            lo, hi = int(batch.ptr[j]), int(batch.ptr[j + 1])
            mine = graph_of_edge == j
            outputs.append((nodes, node_prob[lo:hi], batch.edge_index[:, mine] - lo,
                            edge_prob[mine]))
        return outputs

    def make_row(self, item: Any, index: int,
                 output: tuple[list, Tensor, Tensor, Tensor] | None,
                 options: dict[str, Any]) -> dict:
        """``{"input": the graph's index, "nodes_on_path": [node ids], "edges_on_path": [[u, v],
        ...], "node_probs": [N floats: each node's probability of being on the path, in node
        order], "error"}``; None in the prediction keys without ``output``."""
        row = {"input": index, "nodes_on_path": None, "edges_on_path": None,
               "node_probs": None, "error": None}
        if output is not None:
            nodes, probs, edge_index, edge_prob = output
            row.update(
                nodes_on_path=[nodes[i] for i in (probs > 0.5).nonzero().flatten().tolist()],
                edges_on_path=path_edges(edge_index, edge_prob, nodes),
                node_probs=probs.tolist())
        return row

    def evaluate(self, split: str = "test", data: str | None = None) -> dict:
        """The run's figures on its generated graphs, re-created from the config's seed and
        sizes: ``test`` gives metrics.json's ``test_*`` (the larger graphs) and
        ``same_size_*`` figures; ``val``/``dev`` the ``val_*`` and ``train`` the ``train_*``
        ones (node accuracy, edge accuracy, solved fraction)."""
        from structrnn.tasks.shortest_path.data import make_dataset, split_rng
        from structrnn.tasks.shortest_path.task import evaluate

        if data is not None:
            raise InputError("eval --data: the shortest-path graphs are generated from the "
                             "run's seed; there is no data folder to give")
        part = split_part(split)
        names = ["test", "same_size"] if part == "test" else [part]
        c = self.config
        count = {"test_large": "test_graphs", "test_same": "test_graphs", "val": "val_graphs",
                 "train": "train_graphs"}
        out: dict[str, Any] = {}
        for name in names:
            part, prefix = PREFIX[name]
            nodes = c["test_nodes"] if part == "test_large" else c["train_nodes"]
            graphs = make_dataset(split_rng(c["seed"], part), c[count[part]], tuple(nodes))
            figures = evaluate(self.model, graphs, self.steps, self.device)
            out.update({prefix + k: figures[k] for k in FIGURES})
        return out


PREDICTOR = ShortestPathPredictor
