"""The shortest-path task: data labels against networkx, a tiny run on the shared training core
(its files, an exact resume, metrics without matplotlib), evaluate's mode, and two processes
under torchrun against one."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from structrnn.tasks.shortest_path import data as sp_data
from structrnn.tasks.shortest_path import task as sp
from structrnn.training.checkpoint import seed_everything

REPO = Path(__file__).resolve().parents[1]
# 24 graphs in batches of 8: three full steps an epoch
TINY = ["--train-graphs", "24", "--val-graphs", "6", "--test-graphs", "6", "--batch-size", "8",
        "--steps", "3", "--hidden", "8", "--train-nodes", "5", "8", "--test-nodes", "9", "12",
        "--no-progress", "--threads", "1"]
TIMING_KEYS = {"epoch_seconds", "train_seconds"}


def weights(run: Path, name: str = "checkpoint.pt") -> dict:
    return torch.load(run / name, weights_only=True)["model"]


def test_labels_match_networkx_shortest_path():
    rng = np.random.default_rng(3)
    for n in (5, 9, 17):
        g, start, end, path = sp_data.make_graph(rng, n)
        assert nx.is_connected(g) and g.number_of_nodes() == n
        assert path == nx.shortest_path(g, start, end, weight="distance")
        assert nx.path_weight(g, path, "distance") == pytest.approx(
            nx.shortest_path_length(g, start, end, weight="distance"))
        data = sp_data.to_data(g, start, end, path)
        assert data.x[:, 0].nonzero().flatten().tolist() == [start]
        assert data.x[:, 1].nonzero().flatten().tolist() == [end]
        assert sorted(data.y.nonzero().flatten().tolist()) == sorted(path)
        on_path = {frozenset(p) for p in zip(path[:-1], path[1:])}
        for j, (a, b) in enumerate(data.edge_index.t().tolist()):
            assert data.edge_y[j] == int(frozenset((a, b)) in on_path)
            assert float(data.edge_attr[j, 0]) == pytest.approx(g[a][b]["distance"])
        assert data.edge_index.size(1) == 2 * g.number_of_edges()  # both directions


def test_splits_depend_on_the_seed_alone():
    a = sp_data.make_splits(4, 5, 3, 2, (5, 8), (9, 12))
    b = sp_data.make_splits(4, 9, 3, 2, (5, 8), (9, 12))  # more training graphs
    assert all(torch.equal(x.edge_attr, y.edge_attr) for x, y in zip(a.val, b.val))
    assert all(torch.equal(x.edge_attr, y.edge_attr) for x, y in zip(a.test_large, b.test_large))
    assert all(9 <= g.num_nodes <= 12 for g in a.test_large)
    assert all(5 <= g.num_nodes <= 8 for g in a.train + a.val + a.test_same)
    c = sp_data.make_splits(5, 5, 3, 2, (5, 8), (9, 12))
    assert not all(torch.equal(x.edge_attr, y.edge_attr) for x, y in zip(a.val, c.val))


def test_tiny_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    metrics = sp.main(["--out", str(out), "--epochs", "2", *TINY])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for key in ("test_node_accuracy", "test_edge_accuracy", "test_solved", "same_size_solved",
                "same_size_node_accuracy", "same_size_edge_accuracy"):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["train_iters"] == 6 and saved["epochs"] == 2
    assert saved["train_steps"] == 3 and saved["test_steps"] == 6
    assert saved["best_epoch"] in (1, 2) and len(saved["epoch_seconds"]) == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"train_loss", "val_solved", "val_node_accuracy"} <= set(lines[0])
    assert lines[1]["train_loss"] == saved["final_loss"]
    # best.pt holds the selected epoch's weights: the last epoch's unless the first won
    best, last = weights(out, "best.pt"), weights(out)
    assert all(torch.equal(best[k], last[k]) for k in best) == (saved["best_epoch"] == 2)
    config = json.loads((out / "config.json").read_text())
    assert config["train_nodes"] == [5, 8] and config["clip_grad"] == 1.0  # the task's default
    assert "grad_norm_max" in lines[0]  # logged when clipping
    png = (out / "solved_graph.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_config_replays_a_run_and_typed_flags_win(tmp_path):
    sp.main(["--out", str(tmp_path / "a"), "--epochs", "1", *TINY, "--clip-grad", "0"])
    replay = sp.main(["--config", str(tmp_path / "a" / "config.json"), "--out",
                      str(tmp_path / "b"), "--epochs", "2", "--no-progress", "--threads", "1"])
    a, b = (json.loads((tmp_path / r / "config.json").read_text()) for r in "ab")
    assert b == a | {"epochs": 2} and b["clip_grad"] == 0
    assert replay["train_iters"] == 6 and replay["test_nodes"] == [9, 12]


def test_resume_is_exact(tmp_path):
    straight = sp.main(["--out", str(tmp_path / "a"), "--epochs", "4", *TINY])
    sp.main(["--out", str(tmp_path / "b"), "--epochs", "2", *TINY])
    resumed = sp.main(["--out", str(tmp_path / "b"), "--epochs", "4", "--resume", *TINY])
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    seed_everything(0)  # the initial weights, as the run draws them
    init = sp.build_model(argparse.Namespace(hidden=8, steps=3)).state_dict()
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-3  # it trained
    drop = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS}  # noqa: E731
    assert drop(resumed) == drop(straight)
    strip = [{k: v for k, v in json.loads(line).items() if k != "epoch_seconds"}
             for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "epoch_seconds"}
                     for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]


def test_metrics_are_written_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    out = tmp_path / "run"
    metrics = sp.main(["--out", str(out), "--epochs", "1", *TINY])
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert not (out / "solved_graph.png").exists()
    assert "no solved_graph.png" in capsys.readouterr().err


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_leaves_the_model_in_its_mode(training):
    torch.manual_seed(0)
    model = sp.EncodeProcessDecode(2, 1, None, 2, 2, hidden=8, steps=2)
    graphs = sp_data.make_dataset(np.random.default_rng(0), 5, (5, 8))
    model.train(training)
    result = sp.evaluate(model, graphs, steps=2, batch_size=2)
    assert all(m.training == training for m in model.modules())
    assert result["solved_mask"].shape == (5,)
    assert result["solved"] == pytest.approx(float(result["solved_mask"].float().mean()))
    assert 0.0 <= result["node_accuracy"] <= 1.0 and 0.0 <= result["edge_accuracy"] <= 1.0


def test_bad_sizes_are_input_errors(tmp_path):
    from structrnn._errors import InputError

    with pytest.raises(InputError, match="--train-nodes"):
        sp.main(["--out", str(tmp_path / "r"), *TINY, "--train-nodes", "1", "4"])
    with pytest.raises(InputError, match="--val-graphs"):
        sp.main(["--out", str(tmp_path / "r"), *TINY, "--val-graphs", "0"])


def test_two_processes_equal_one_process(tmp_path):
    args = [*TINY, "--epochs", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "structrnn.cli", "train", "shortest-path", *args, "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one = sp.main([*args, "--out", str(tmp_path / "one")])
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=key)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["train_iters"] == one["train_iters"] == 3
    assert two["final_loss"] == pytest.approx(one["final_loss"], abs=1e-5)
