"""Boolean circuits: values against an evaluator written here (from the Data fields alone, in a
networkx topological order), exact depths, determinism by seed; the circuits task: its metrics
against hand-made predictions, the per-depth rounds of gn-depth, a tiny run of every model and
an exact resume."""

from __future__ import annotations

import json
import operator

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from structrnn.datasets import circuits as dc
from structrnn.tasks.circuits import task as ct
from structrnn.training.task import train as train_task

OPS = {"and": operator.and_, "or": operator.or_, "xor": operator.xor}
TINY = ["--train-circuits", "16", "--val-circuits", "4", "--test-circuits", "4",
        "--batch-size", "8", "--hidden", "4", "--rounds", "2", "--train-depth", "1", "3",
        "--test-depths", "3", "5", "--no-progress", "--threads", "1"]
TIMING_KEYS = {"epoch_seconds", "train_seconds", "machine"}  # the load differs run to run


def circuits(argv: list[str]) -> dict:
    return train_task(ct.TASK, argv)


def values_by_hand(data) -> list[int]:
    """Each node's value from ``x`` (kind, bit) and ``edge_index`` alone."""
    g = nx.DiGraph()
    g.add_nodes_from(range(data.num_nodes))
    g.add_edges_from(data.edge_index.t().tolist())
    kinds = [dc.KINDS[k] for k in data.x[:, :len(dc.KINDS)].argmax(1).tolist()]
    value: dict[int, int] = {}
    for v in nx.topological_sort(g):
        ops = [value[u] for u in g.predecessors(v)]
        if kinds[v] == "input":
            assert ops == []
            value[v] = int(data.x[v, -1])
        elif kinds[v] == "not":
            assert len(ops) == 1
            value[v] = 1 - ops[0]
        else:
            assert len(ops) == 2
            value[v] = OPS[kinds[v]](*ops)
    return [value[v] for v in range(data.num_nodes)]


@pytest.mark.parametrize("depth", [1, 4, 16])
def test_values_depths_and_features(depth):
    for data in dc.make_circuits(3, 20, depth, "test"):
        assert data.y.tolist() == values_by_hand(data)
        g = nx.DiGraph(data.edge_index.t().tolist())
        assert nx.dag_longest_path_length(g) == depth == int(data.depth)
        # the level of a gate is the longest path from an input to it
        longest = {v: 0 for v in range(data.num_nodes)}
        for v in nx.topological_sort(g):
            for w in g.successors(v):
                longest[w] = max(longest[w], longest[v] + 1)
        assert data.level.tolist() == [longest[v] for v in range(data.num_nodes)]
        x = data.x
        assert x.shape[1] == dc.NUM_FEATURES and torch.all(x[:, :5].sum(1) == 1)
        inputs = x[:, 0] == 1
        assert torch.all(x[~inputs, -1] == 0) and torch.equal(x[inputs, -1].long(),
                                                             data.y[inputs])
        assert 2 <= int(inputs.sum()) <= 6
        assert not (data.edge_index[0] == data.edge_index[1]).any()


def test_the_gates_are_balanced_and_every_kind_occurs():
    data = Batch.from_data_list(dc.make_circuits(0, 200, (1, 8)))
    gate = data.x[:, 0] == 0
    assert 0.4 < float(data.y[gate].float().mean()) < 0.6
    assert torch.all(data.x[gate, 1:5].sum(0) > 100)


def test_deterministic_by_seed_split_and_depth():
    a = dc.make_circuits(5, 6, (2, 8), "train")
    b = dc.make_circuits(5, 9, (2, 8), "train")[:6]  # more circuits: the first are the same
    same = [torch.equal(p.x, q.x) and torch.equal(p.edge_index, q.edge_index)
            for p, q in zip(a, b, strict=True)]
    assert all(same)
    for other in (dc.make_circuits(6, 6, (2, 8), "train"), dc.make_circuits(5, 6, (2, 8), "val")):
        assert not all(torch.equal(p.x, q.x) for p, q in zip(a, other, strict=True))
    with pytest.raises(ValueError, match="split"):
        dc.make_circuits(0, 1, 2, "dev")
    with pytest.raises(ValueError, match="depth"):
        dc.make_circuit(np.random.default_rng(0), 0)


# ------------------------------------------------------------------ the task's pieces
class Oracle(torch.nn.Module):
    """Logits that say ``y``, wrong on the nodes listed in ``wrong`` (batch ids)."""

    def __init__(self, wrong=()):
        super().__init__()
        self.wrong = list(wrong)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch):
        y = batch.y.clone()
        y[self.wrong] = 1 - y[self.wrong]
        return torch.nn.functional.one_hot(y, 2).float() + self.w


def test_evaluate_counts_gates_and_circuits():
    circuits = dc.make_circuits(1, 4, 3, "test")
    sizes = [c.num_nodes for c in circuits]
    perfect = ct.evaluate(Oracle(), circuits, "cpu")
    assert perfect["gate_accuracy"] == perfect["circuit_accuracy"] == 1.0
    # one gate wrong in circuit 0, two in circuit 2, and an input "wrong" (inputs do not count)
    first_gate = [int((c.x[:, 0] == 0).nonzero()[0]) for c in circuits]
    start = [sum(sizes[:k]) for k in range(4)]
    wrong = [start[0] + first_gate[0], start[2] + first_gate[2], start[2] + first_gate[2] + 1,
             start[3]]
    result = ct.evaluate(Oracle(wrong), circuits, "cpu")
    gates = sum(int((c.x[:, 0] == 0).sum()) for c in circuits)
    assert result["gate_accuracy"] == pytest.approx((gates - 3) / gates)
    assert result["circuit_accuracy"] == 0.5
    ones = sum(int(c.y[c.x[:, 0] == 0].sum()) for c in circuits)
    assert result["majority_gate_accuracy"] == pytest.approx(max(ones, gates - ones) / gates)


def test_gn_depth_reads_each_circuit_after_its_own_depth():
    torch.manual_seed(0)
    model = ct.CircuitGN(hidden=6, rounds=None).eval()
    circuits = [dc.make_circuits(2, 1, d, "test")[0] for d in (2, 5, 3)]
    out = model(Batch.from_data_list(circuits))
    start = 0
    for c in circuits:
        alone = Batch.from_data_list([c])
        steps = model.net(c.x, c.edge_index, c.x.new_ones(c.edge_index.size(1), 1),
                          batch=alone.batch, num_graphs=1, steps=int(c.depth))
        torch.testing.assert_close(out[start:start + c.num_nodes], steps[-1][0])
        torch.testing.assert_close(model(c), steps[-1][0])  # one circuit as a Data
        start += c.num_nodes


def test_the_dag_model_is_dag_recurrent_then_a_head():
    torch.manual_seed(0)
    model = ct.CircuitDAG(hidden=5, cell="lstm")
    batch = Batch.from_data_list(dc.make_circuits(0, 3, 4, "test"))
    h = model.dag(batch.x, batch.edge_index)
    torch.testing.assert_close(model(batch), model.head(h))


# ------------------------------------------------------------------ runs
@pytest.mark.parametrize("model", ["dag", "gn", "gn-depth"])
def test_tiny_run_writes_the_run_folder(tmp_path, model):
    out = tmp_path / model
    metrics = circuits(["--out", str(out), "--epochs", "2", "--model", model, *TINY])
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics["test"]) == {"3", "5"}
    for figures in metrics["test"].values():
        for key in ("gate_accuracy", "circuit_accuracy", "majority_gate_accuracy"):
            assert 0.0 <= figures[key] <= 1.0
    assert metrics["model"] == model and metrics["epochs"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "circuits" and config["model"] == model
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"val_loss", "val_circuit_accuracy", "val_gate_accuracy"} <= set(lines[0])
    chosen = lines[metrics["best_epoch"] - 1]  # the epoch with the lowest validation loss
    assert chosen["val_loss"] == metrics["val_loss"] == min(r["val_loss"] for r in lines)
    assert chosen["val_circuit_accuracy"] == metrics["val_circuit_accuracy"]
    assert (out / "best.pt").is_file() and (out / "checkpoint.pt").is_file()


def test_resume_is_exact(tmp_path):
    straight = circuits(["--out", str(tmp_path / "a"), "--epochs", "3", *TINY])
    circuits(["--out", str(tmp_path / "b"), "--epochs", "1", *TINY])
    resumed = circuits(["--out", str(tmp_path / "b"), "--epochs", "3", "--resume", *TINY])
    drop = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS}  # noqa: E731
    assert drop(resumed) == drop(straight)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_flags_are_input_errors(tmp_path):
    from structrnn import InputError

    with pytest.raises(InputError, match="--train-depth"):
        circuits(["--out", str(tmp_path / "x"), *TINY, "--train-depth", "3", "1"])
    with pytest.raises(InputError, match="--test-depths"):
        circuits(["--out", str(tmp_path / "y"), *TINY, "--test-depths", "0"])
