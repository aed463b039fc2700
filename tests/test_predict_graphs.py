"""Trained graph runs as products: a TU run classifies PyG Data and networkx graphs as its
models do (the mean of its folds' probabilities), ``evaluate`` reproduces metrics.json, runs of
the other tasks say what they read; a shortest-path run finds paths on networkx graphs and
``evaluate`` reproduces its figures."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import structrnn
from structrnn import cli
from structrnn.graphs.convert import to_networkx
from structrnn.tasks.shortest_path import data as sp_data
from structrnn.tasks.shortest_path import task as sp
from structrnn.training.task import train as train_task

SP_TINY = ["--train-graphs", "24", "--val-graphs", "6", "--test-graphs", "6", "--batch-size",
           "8", "--steps", "3", "--hidden", "8", "--train-nodes", "5", "8", "--test-nodes", "9",
           "12", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def _cache_and_threads(tmp_path, monkeypatch):
    """Caches in the test's folder and one torch thread (tiny graphs: threads only add
    overhead on a busy machine); test_predict_molecules uses it too."""
    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tu_set(root, name: str = "TINY", count: int = 36) -> None:
    """A TU-format set of ``count`` small graphs (rings and chains) with 3 node labels and 2
    edge labels; the class says whether a graph holds a node of label 2."""
    rng = np.random.default_rng(0)
    raw = root / name
    raw.mkdir(parents=True)
    edges, indicator, node_labels, edge_labels, graph_labels = [], [], [], [], []
    first = 1
    for g in range(count):
        n = int(rng.integers(4, 8))
        labels = rng.integers(0, 2 if g % 2 else 3, n)
        if g % 2 == 0:
            labels[0] = 2
        pairs = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if g % 3 == 0 else [])
        for a, b in pairs:
            label = int(rng.integers(0, 2))
            edges += [(first + a, first + b), (first + b, first + a)]
            edge_labels += [label, label]
        indicator += [g + 1] * n
        node_labels += labels.tolist()
        graph_labels.append(1 if (labels == 2).any() else -1)
        first += n
    write_tu_files(raw, name, A=[f"{a}, {b}" for a, b in edges], graph_indicator=indicator,
                   node_labels=node_labels, edge_labels=edge_labels, graph_labels=graph_labels)


def write_tu_files(folder, name: str, **files: list) -> None:
    """``folder/NAME_<key>.txt`` for every keyword (``A``, ``graph_indicator``, ...), one value
    a line, as the TU collection writes them."""
    for suffix, lines in files.items():
        (folder / f"{name}_{suffix}.txt").write_text("".join(f"{x}\n" for x in lines))


@pytest.fixture
def tu_run(tmp_path):
    write_tu_set(tmp_path / "data")
    out = tmp_path / "tu"
    from structrnn.tasks.molecules import task

    train_task(task.TU, ["--name", "TINY", "--data", str(tmp_path / "data"),
                         "--folds", "3", "--seeds", "0", "--epochs", "2", "--hidden", "8",
                         "--steps", "2", "--no-progress", "--out", str(out)])
    return out


def fold_probabilities(run, graphs) -> torch.Tensor:
    """(folds, graphs, classes): each fold's best.pt model by hand, softmax."""
    from structrnn.tasks.molecules.model import MoleculeModel

    outs = []
    for unit in ("seed0-fold0", "seed0-fold1", "seed0-fold2"):
        best = torch.load(run / "units" / unit / "best.pt", weights_only=True)
        model = MoleculeModel(**best["model_args"])
        model.load_state_dict(best["model"])
        with torch.no_grad():
            outs.append(torch.softmax(model.eval()(Batch.from_data_list(graphs)), 1))
    return torch.stack(outs)


def test_tu_run_classifies_data_and_networkx_graphs_as_its_models_do(tu_run, tmp_path):
    from structrnn.datasets.tu import tu_dataset

    graphs = list(tu_dataset(tmp_path / "data", "TINY", cache_dir=tmp_path / "tu-cache"))
    expected = fold_probabilities(tu_run, graphs).mean(0)  # the ensemble of the three folds
    predictor = structrnn.load(tu_run)
    assert predictor.task == "tu" and len(predictor.models) == 3
    rows = predictor.predict(graphs, batch_size=5)
    assert [r["input"] for r in rows] == list(range(len(graphs)))
    probs = torch.tensor([r["probs"] for r in rows])
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(graphs)))
    assert [r["label"] for r in rows] == expected.argmax(1).tolist()
    assert all(r["error"] is None and set(r) == {"input", "label", "probs", "error"}
               for r in rows)
    # the same graphs as networkx graphs (node "x", edge "edge_attr"), and with labels only
    as_nx = [to_networkx(g, node_attrs=["x"], edge_attrs=["edge_attr"], to_undirected=True)
             for g in graphs]
    from_nx = torch.tensor([r["probs"] for r in predictor.predict(as_nx)])
    torch.testing.assert_close(from_nx, expected, rtol=1e-4, atol=1e-5)
    labelled = nx.Graph()
    g0 = graphs[0]
    labelled.add_nodes_from((i, {"label": int(g0.x[i].argmax())}) for i in range(g0.num_nodes))
    labelled.add_edges_from((a, b, {"label": int(g0.edge_attr[j].argmax())})
                            for j, (a, b) in enumerate(g0.edge_index.t().tolist()) if a < b)
    assert predictor.predict([labelled])[0]["probs"] == pytest.approx(
        expected[0].tolist(), rel=1e-4, abs=1e-5)
    # a graph with other node features is marked, the others predicted
    bad = nx.path_graph(3)
    nx.set_node_attributes(bad, {v: [1.0, 0.0] for v in bad}, "x")
    marked = predictor.predict([bad, g0])
    assert marked[0]["label"] is None and "'x' has 2 values" in marked[0]["error"]
    assert marked[1]["probs"] == pytest.approx(expected[0].tolist(), rel=1e-5, abs=1e-6)


def test_tu_evaluate_and_export(tu_run, tmp_path, capsys):
    saved = json.loads((tu_run / "metrics.json").read_text())
    figures = structrnn.load(tu_run).evaluate()
    assert figures["test_accuracy"]["mean"] == pytest.approx(saved["test_accuracy"]["mean"])
    assert figures["test_accuracy"]["std"] == pytest.approx(saved["test_accuracy"]["std"])
    assert [u["test_accuracy"] for u in figures["units"]] == pytest.approx(
        [u["test_accuracy"] for u in saved["units"]])
    path = structrnn.load(tu_run).save(tmp_path / "tu.pt")
    state = torch.load(path, weights_only=True)
    assert "featuriser" not in state and len(state["members"]) == 3
    from structrnn.datasets.tu import tu_dataset

    graphs = list(tu_dataset(tmp_path / "data", "TINY", cache_dir=tmp_path / "tu-cache"))[:6]
    assert structrnn.load(path).predict(graphs) == structrnn.load(tu_run).predict(graphs)
    capsys.readouterr()
    assert cli.main(["predict", str(tu_run), "--input", str(tmp_path / "x.csv")]) == 2
    assert "come from Python" in capsys.readouterr().err


def test_runs_say_what_they_read(tu_run, tmp_path, capsys):
    pytest.importorskip("rdkit")
    from structrnn.datasets.tu import tu_dataset

    tu = structrnn.load(tu_run)
    with pytest.raises(structrnn.InputError, match="not SMILES such as 'CCO'"):
        tu.predict(["CCO"])
    capsys.readouterr()
    assert cli.main(["predict", str(tu_run), "CCO"]) == 2
    err = capsys.readouterr().err
    assert "structrnn train molecules" in err and "Traceback" not in err
    from structrnn.tasks.molecules import task

    mol_run = tmp_path / "mol"
    train_task(task.TASK, ["--max-molecules", "40", "--epochs", "1", "--hidden", "8",
                           "--steps", "2",
               "--seeds", "0", "--no-progress", "--out", str(mol_run)])
    graph = tu_dataset(tmp_path / "data", "TINY", cache_dir=tmp_path / "tu-cache")[0]
    row = structrnn.load(mol_run).predict([graph])[0]
    assert row["tpsa"] is None and "atom featuriser" in row["error"]


@pytest.fixture
def sp_run(tmp_path):
    out = tmp_path / "sp"
    train_task(sp.TASK, ["--out", str(out), "--epochs", "2", *SP_TINY, "--test-steps", "5"])
    return out


def test_shortest_path_run_predicts_paths_on_networkx_graphs(sp_run):
    predictor = structrnn.load(sp_run)
    assert predictor.steps == 5  # the run's test rounds (--test-steps)
    rng = np.random.default_rng(5)
    graphs, expected = [], []
    for n in (6, 9, 11):
        g, start, end, path = sp_data.make_graph(rng, n)
        data = sp_data.to_data(g, start, end, path)
        with torch.no_grad():
            x, e, _ = predictor.model(Batch.from_data_list([data]), num_layers=5)[-1]
        expected.append((torch.softmax(x, 1)[:, 1], torch.softmax(e, 1)[:, 1], data))
        h = nx.Graph()  # relabelled nodes, no "distance": it comes from "pos"
        h.add_nodes_from((f"v{v}", {"pos": g.nodes[v]["pos"]}) for v in g.nodes)
        h.add_edges_from((f"v{a}", f"v{b}") for a, b in g.edges)
        h.graph.update(start=f"v{start}", end=f"v{end}")
        graphs.append(h)
    flagged = nx.Graph(graphs[0])  # start and end as node flags instead
    del flagged.graph["start"], flagged.graph["end"]
    start0 = int(expected[0][2].x[:, 0].argmax())
    end0 = int(expected[0][2].x[:, 1].argmax())
    flagged.nodes[f"v{start0}"]["start"] = True
    flagged.nodes[f"v{end0}"]["end"] = True
    rows = predictor.predict([*graphs, flagged, nx.path_graph(3)], batch_size=2)
    for row, (node_p, edge_p, data) in zip(rows, expected, strict=False):
        assert row["error"] is None
        torch.testing.assert_close(torch.tensor(row["node_probs"]), node_p, rtol=1e-4,
                                   atol=1e-5)
        assert row["nodes_on_path"] == [f"v{i}" for i in (node_p > 0.5).nonzero().flatten()
                                        .tolist()]
        pairs = data.edge_index.t().tolist()
        on = {frozenset(p) for p, q in zip(pairs, edge_p.tolist(), strict=True)
              if (q + edge_p[pairs.index([p[1], p[0]])].item()) / 2 > 0.5}
        assert {frozenset(int(v[1:]) for v in e) for e in row["edges_on_path"]} == on
    assert rows[3]["node_probs"] == pytest.approx(rows[0]["node_probs"])
    assert rows[4]["error"].startswith("no start node")
    # the task's own Data reads as well
    data_row = predictor.predict([expected[1][2]])[0]
    assert data_row["node_probs"] == pytest.approx(rows[1]["node_probs"], rel=1e-5, abs=1e-6)
    assert data_row["nodes_on_path"] == [int(v[1:]) for v in rows[1]["nodes_on_path"]]


def test_a_shortest_path_run_from_before_the_model_options_still_predicts(tmp_path):
    """Its config has no core/aggr/layer_norm/edge_scale and test_steps None: the demo's model
    (MLP core, sum) with twice the training rounds, as it was trained and tested."""
    from structrnn.training.checkpoint import save_checkpoint

    run = tmp_path / "old"
    run.mkdir()
    config = {"task": "shortest-path", "hidden": 8, "steps": 3, "test_steps": None, "seed": 0}
    (run / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    demo = sp.EncodeProcessDecode(2, 8, 3, 2, edge_dim=1, edge_out_channels=2)
    save_checkpoint(run / "best.pt", model=demo.state_dict(), config=config, epoch=1)
    predictor = structrnn.load(run)
    assert predictor.steps == 6 and predictor.model.cells is None
    g, start, end, path = sp_data.make_graph(np.random.default_rng(0), 7)
    data = sp_data.to_data(g, start, end, path)
    with torch.no_grad():
        x, _, _ = demo(Batch.from_data_list([data]), num_layers=6)[-1]
    row = predictor.predict([data])[0]
    assert row["node_probs"] == pytest.approx(torch.softmax(x, 1)[:, 1].tolist(), abs=1e-6)


def test_shortest_path_evaluate_equals_metrics_json_and_export(sp_run, tmp_path, capsys):
    saved = json.loads((sp_run / "metrics.json").read_text())
    figures = structrnn.load(sp_run).evaluate()
    assert set(figures) == {f"{p}_{k}" for p in ("test", "same_size")
                            for k in ("node_accuracy", "edge_accuracy", "solved")}
    assert figures == {k: saved[k] for k in figures}
    assert structrnn.load(sp_run).evaluate("val")["val_solved"] == saved["val_solved"]
    capsys.readouterr()
    assert cli.main(["eval", str(sp_run)]) == 0
    assert json.loads(capsys.readouterr().out)["test_solved"] == saved["test_solved"]
    path = structrnn.load(sp_run).save(tmp_path / "sp.pt")
    assert torch.load(path, weights_only=True)["task"] == "shortest-path"
    g = nx.random_geometric_graph(8, 0.6, seed=2)
    g.graph.update(start=0, end=5)
    assert structrnn.load(path).predict([g]) == structrnn.load(sp_run).predict([g])
    assert cli.main(["predict", str(sp_run), "(1 (2 a))"]) == 2
