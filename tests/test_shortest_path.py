"""The shortest-path example: data labels against networkx, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sp():
    from structrnn.tasks.shortest_path import task as shortest_path

    return shortest_path


def test_labels_match_networkx_shortest_path(sp):
    rng = np.random.default_rng(3)
    for n in (5, 9, 17):
        g, start, end, path = sp.make_graph(rng, n)
        assert nx.is_connected(g) and g.number_of_nodes() == n
        assert path == nx.shortest_path(g, start, end, weight="distance")
        assert nx.path_weight(g, path, "distance") == pytest.approx(
            nx.shortest_path_length(g, start, end, weight="distance"))
        data = sp.to_data(g, start, end, path)
        assert data.x[:, 0].nonzero().flatten().tolist() == [start]
        assert data.x[:, 1].nonzero().flatten().tolist() == [end]
        assert sorted(data.y.nonzero().flatten().tolist()) == sorted(path)
        on_path = {frozenset(p) for p in zip(path[:-1], path[1:])}
        for j, (a, b) in enumerate(data.edge_index.t().tolist()):
            assert data.edge_y[j] == int(frozenset((a, b)) in on_path)
            assert float(data.edge_attr[j, 0]) == pytest.approx(g[a][b]["distance"])
        assert data.edge_index.size(1) == 2 * g.number_of_edges()  # both directions


def test_tiny_run_writes_metrics_and_png(sp, tmp_path):
    out = tmp_path / "run"
    metrics = sp.main(["--out", str(out), "--iters", "6", "--train-graphs", "24",
                       "--test-graphs", "6", "--batch-size", "8", "--steps", "3", "--hidden", "8",
                       "--train-nodes", "5", "8", "--test-nodes", "9", "12", "--no-progress"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for key in ("test_node_accuracy", "test_edge_accuracy", "test_solved", "same_size_solved"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["train_iters"] == 6
    png = (out / "solved_graph.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    # resume continues from the checkpoint to the new iteration count
    again = sp.main(["--out", str(out), "--iters", "8", "--train-graphs", "24", "--test-graphs",
                     "6", "--batch-size", "8", "--steps", "3", "--hidden", "8", "--train-nodes",
                     "5", "8", "--test-nodes", "9", "12", "--no-progress", "--resume"])
    assert again["train_iters"] == 8
