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

from structrnn import viz
from structrnn.tasks.shortest_path import data as sp_data
from structrnn.tasks.shortest_path import task as sp
from structrnn.training.checkpoint import seed_everything
from structrnn.training.task import train as train_task

REPO = Path(__file__).resolve().parents[1]
# 24 graphs in batches of 8: three full steps an epoch
TINY = ["--train-graphs", "24", "--val-graphs", "6", "--test-graphs", "6", "--batch-size", "8",
        "--steps", "3", "--hidden", "8", "--train-nodes", "5", "8", "--test-nodes", "9", "12",
        "--no-progress", "--threads", "1"]
TIMING_KEYS = {"epoch_seconds", "train_seconds", "machine"}  # the load differs run to run


def shortest_path(argv: list[str]) -> dict:
    return train_task(sp.TASK, argv)


def untimed(metrics: dict) -> dict:
    """The metrics without the wall times (which no two runs share)."""
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


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
        on_path = {frozenset(p) for p in zip(path[:-1], path[1:], strict=True)}
        for j, (a, b) in enumerate(data.edge_index.t().tolist()):
            assert data.edge_y[j] == int(frozenset((a, b)) in on_path)
            assert float(data.edge_attr[j, 0]) == pytest.approx(g[a][b]["distance"])
        assert data.edge_index.size(1) == 2 * g.number_of_edges()  # both directions


def test_splits_depend_on_the_seed_alone():
    a = sp_data.make_splits(4, 5, 3, 2, (5, 8), (9, 12))
    b = sp_data.make_splits(4, 9, 3, 2, (5, 8), (9, 12))  # more training graphs
    same = lambda p, q: all(torch.equal(x.edge_attr, y.edge_attr)  # noqa: E731
                            for x, y in zip(p, q, strict=True))
    assert same(a.val, b.val) and same(a.test_large, b.test_large)
    assert all(9 <= g.num_nodes <= 12 for g in a.test_large)
    assert all(5 <= g.num_nodes <= 8 for g in a.train + a.val + a.test_same)
    c = sp_data.make_splits(5, 5, 3, 2, (5, 8), (9, 12))
    assert not same(a.val, c.val)


def test_tiny_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    metrics = shortest_path(["--out", str(out), "--epochs", "2", *TINY])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    for key in ("test_node_accuracy", "test_edge_accuracy", "test_solved", "same_size_solved",
                "same_size_node_accuracy", "same_size_edge_accuracy"):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["train_iters"] == 6 and saved["epochs"] == 2
    assert saved["train_steps"] == 3 and saved["test_steps"] == 3  # default: --steps
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
    shortest_path(["--out", str(tmp_path / "a"), "--epochs", "1", *TINY, "--clip-grad", "0"])
    replay = shortest_path(["--config", str(tmp_path / "a" / "config.json"), "--out",
                      str(tmp_path / "b"), "--epochs", "2", "--no-progress", "--threads", "1"])
    a, b = (json.loads((tmp_path / r / "config.json").read_text()) for r in "ab")
    assert b == a | {"epochs": 2} and b["clip_grad"] == 0
    assert replay["train_iters"] == 6 and replay["test_nodes"] == [9, 12]


def test_resume_is_exact(tmp_path):
    # a constant rate: the cosine schedule's horizon is --epochs, which this resume extends
    flags = [*TINY, "--lr-schedule", "constant"]
    straight = shortest_path(["--out", str(tmp_path / "a"), "--epochs", "4", *flags])
    shortest_path(["--out", str(tmp_path / "b"), "--epochs", "2", *flags])
    resumed = shortest_path(["--out", str(tmp_path / "b"), "--epochs", "4", "--resume", *flags])
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    seed_everything(0)  # the initial weights, as the run draws them
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    init = sp.build_model(argparse.Namespace(**config)).state_dict()
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-3  # it trained
    assert untimed(resumed) == untimed(straight)
    strip = [{k: v for k, v in json.loads(line).items() if k != "epoch_seconds"}
             for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "epoch_seconds"}
                     for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("select", ["last", "solved"])
def test_select_keeps_the_last_epoch_or_the_most_solved(tmp_path, select):
    out = tmp_path / "run"
    metrics = shortest_path(["--out", str(out), "--epochs", "3", *TINY, "--select", select])
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    solved = [r["val_solved"] for r in lines]
    best = 3 if select == "last" else 1 + solved.index(max(solved))
    assert metrics["best_epoch"] == best and metrics["val_solved"] == solved[best - 1]
    best_pt = torch.load(out / "best.pt", weights_only=True)
    assert best_pt["epoch"] == best


class Stop(Exception):
    """Stands for a run killed after its second epoch's checkpoint."""


def test_an_interrupted_cosine_run_resumes_exactly(tmp_path, monkeypatch):
    straight = shortest_path(["--out", str(tmp_path / "a"), "--epochs", "4", *TINY])
    evaluate, calls = sp.evaluate, []

    def stop_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third validation: epoch 2's checkpoint is on disk
            raise Stop
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(sp, "evaluate", stop_in_epoch_3)
    with pytest.raises(Stop):
        shortest_path(["--out", str(tmp_path / "b"), "--epochs", "4", *TINY])
    monkeypatch.setattr(sp, "evaluate", evaluate)
    resumed = shortest_path(["--out", str(tmp_path / "b"), "--epochs", "4", "--resume", *TINY])
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert untimed(resumed) == untimed(straight)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    lr = state["optimizer"]["param_groups"][0]["lr"]  # after 4 of 4 cosine steps: zero
    assert json.loads((tmp_path / "b" / "config.json").read_text())["lr_schedule"] == "cosine"
    assert lr == pytest.approx(0.0, abs=1e-12)


def test_metrics_are_written_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    out = tmp_path / "run"
    metrics = shortest_path(["--out", str(out), "--epochs", "1", *TINY])
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert not (out / "solved_graph.png").exists()
    assert "no solved_graph.png" in capsys.readouterr().err


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_leaves_the_model_in_its_mode(training):
    torch.manual_seed(0)
    model = sp.EncodeProcessDecode(2, 8, 2, 2, edge_dim=1, edge_out_channels=2)
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
        shortest_path(["--out", str(tmp_path / "r"), *TINY, "--train-nodes", "1", "4"])
    with pytest.raises(InputError, match="--val-graphs"):
        shortest_path(["--out", str(tmp_path / "r"), *TINY, "--val-graphs", "0"])


def test_two_processes_equal_one_process(tmp_path):
    args = [*TINY, "--epochs", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "structrnn.cli", "train", "shortest-path", *args, "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one = shortest_path([*args, "--out", str(tmp_path / "one")])
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=key)
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["train_iters"] == one["train_iters"] == 3
    assert two["final_loss"] == pytest.approx(one["final_loss"], abs=1e-5)


# -- the model options ---------------------------------------------------------------------------
def tiny_batch(seed: int = 0, count: int = 3, nodes: tuple[int, int] = (5, 8)):
    from torch_geometric.data import Batch

    return Batch.from_data_list(sp_data.make_dataset(np.random.default_rng(seed), count, nodes))


@pytest.mark.parametrize("core", ["mlp", "gru", "lstm"])
@pytest.mark.parametrize("aggr", ["sum", "max", "attention"])
def test_model_options_give_one_output_per_round_and_train(core, aggr):
    torch.manual_seed(0)
    batch = tiny_batch()
    model = sp.PathModel(hidden=8, steps=3, core=core, aggr=aggr, edge_scale="mean")
    outputs = model(batch)
    assert len(outputs) == 3 and len(model(batch, num_layers=5)) == 5
    for x, e, u in outputs:
        assert x.shape == (batch.num_nodes, 2) and e.shape == (batch.num_edges, 2) and u is None
    sp.per_step_loss(outputs, batch).backward()
    assert all(p.grad is not None for p in model.parameters())  # every weight takes part
    assert (model.cells is None) == (core == "mlp")


@pytest.mark.parametrize("core, torch_cell", [("gru", torch.nn.GRUCell),
                                              ("lstm", torch.nn.LSTMCell)])
def test_gated_core_equals_a_hand_built_loop(core, torch_cell):
    """Two rounds by hand: the core block's MLP outputs go into torch.nn's cell, whose state is
    the previous round's latent (the encoded input first; an LSTM's memory from zero)."""
    torch.manual_seed(1)
    batch = tiny_batch(1)
    model = sp.PathModel(hidden=8, steps=2, core=core).double()
    x, ei, e = batch.x.double(), batch.edge_index, batch.edge_attr.double()
    got = model(x, ei, e, batch=batch.batch, num_graphs=batch.num_graphs)
    ref = {k: torch_cell(8, 8).double() for k in ("node", "edge", "global")}
    for k, cell in ref.items():
        cell.load_state_dict(model.cells["global_" if k == "global" else k].state_dict())
    g = batch.num_graphs
    x0, e0, _ = model.encoder(x, ei, e, None, batch.batch, g)
    u0 = x0.new_zeros(g, 8)
    state = {"node": x0, "edge": e0, "global": u0}
    if core == "lstm":
        state = {k: (h, torch.zeros_like(h)) for k, h in state.items()}
    h = {"node": x0, "edge": e0, "global": u0}  # what the core and the decoder see
    for step in range(2):
        xm, em, um = model.core(torch.cat([x0, h["node"]], 1), ei, torch.cat([e0, h["edge"]], 1),
                                torch.cat([u0, h["global"]], 1), batch.batch, g)
        for k, m in (("node", xm), ("edge", em), ("global", um)):
            state[k] = ref[k](m, state[k])
            h[k] = state[k][0] if core == "lstm" else state[k]
        xo, eo, _ = model.decoder(h["node"], ei, h["edge"], h["global"], batch.batch, g)
        torch.testing.assert_close(got[step][0], xo)
        torch.testing.assert_close(got[step][1], eo)


def test_mean_edge_scale_makes_the_model_blind_to_a_graph_s_scale():
    torch.manual_seed(2)
    batch = tiny_batch(2)
    model = sp.PathModel(hidden=8, steps=3, core="gru", edge_scale="mean")
    factor = torch.tensor([0.3, 1.0, 2.5])[batch.batch[batch.edge_index[0]]].unsqueeze(1)
    scaled = batch.clone()
    scaled.edge_attr = batch.edge_attr * factor  # each graph by its own factor
    for (x, e, _), (xs, es, _) in zip(model(batch), model(scaled), strict=True):
        torch.testing.assert_close(x, xs)
        torch.testing.assert_close(e, es)
    one = batch.get_example(1)  # one graph, no batch vector: the same as inside the batch
    alone = sp.scale_edges(one.edge_attr, one.edge_index, None, None)
    inside = sp.scale_edges(batch.edge_attr, batch.edge_index, batch.batch, batch.num_graphs)
    lo = int(batch.batch[batch.edge_index[0]].eq(0).sum())
    torch.testing.assert_close(alone, inside[lo:lo + one.num_edges])
    torch.testing.assert_close(float(alone.mean()), 1.0)


def test_a_config_without_the_new_keys_builds_the_demo_model():
    """Runs from before the options: their config has hidden and steps only."""
    torch.manual_seed(0)
    old = sp.build_model(argparse.Namespace(hidden=8, steps=3))
    assert old.cells is None and old.core.edge_aggr == "sum" and old.edge_scale == "none"
    assert any(isinstance(m, torch.nn.LayerNorm) for m in old.modules())
    keys = set(sp.EncodeProcessDecode(2, 8, 3, 2, edge_dim=1, edge_out_channels=2).state_dict())
    assert set(old.state_dict()) == keys  # the weights of an old best.pt load


def test_bad_model_options_are_refused():
    with pytest.raises(ValueError, match="core_update"):
        sp.EncodeProcessDecode(2, 8, 2, 2, edge_dim=1, edge_out_channels=2,
                               core_update="rnn")
    with pytest.raises(ValueError, match="edge_scale"):
        sp.PathModel(hidden=8, steps=2, edge_scale="max")
    with pytest.raises(SystemExit):
        shortest_path(["--core", "transformer"])


# -- the step pictures ---------------------------------------------------------------------------
def test_step_pictures_are_written_after_the_metrics(tmp_path):
    out = tmp_path / "run"
    shortest_path(["--out", str(out), "--epochs", "1", *TINY])
    metrics = (out / "metrics.json").stat().st_mtime_ns
    for name in ("steps_solved.png", "steps_unsolved.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
        assert (out / name).stat().st_mtime_ns >= metrics


def test_pictured_graphs_are_the_largest_solved_and_unsolved():
    from torch_geometric.data import Data

    graphs = [Data(num_nodes=n) for n in (5, 9, 9, 7, 9)]
    wrong = torch.tensor([0, 3, 0, 0, 1])
    picked = sp.pick_pictured(graphs, wrong)
    assert picked["solved"] == (2, "solved") and picked["unsolved"] == (4, "not solved")
    none_solved = sp.pick_pictured(graphs, torch.tensor([4, 3, 2, 2, 5]))
    assert none_solved["solved"][0] == 2 and "fewest" in none_solved["solved"][1]
    all_solved = sp.pick_pictured(graphs, torch.zeros(5, dtype=torch.long))
    assert all_solved["unsolved"][0] == 1 and "every" in all_solved["unsolved"][1]
    assert viz.panel_steps(5) == [1, 2, 3, 4, 5]
    many = viz.panel_steps(60)
    assert len(many) == 23 and many[0] == 1 and many[-1] == 60
