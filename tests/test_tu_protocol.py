"""`structrnn train tu` on any TU-format set and its honest protocol: sets with node labels,
continuous node attributes, both or neither (one-hot degrees), with or without edge labels, all
train from files the tests write; the validation split inside each training fold chooses the
epoch (and tuned settings) and the test fold never influences them; GIN equals a per-node
reference."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

import structrnn
from structrnn import cli
from structrnn.datasets.splits import stratified_kfold
from structrnn.datasets.tu import degree_features, load_tu
from structrnn.graphs.gin import GIN
from structrnn.tasks.molecules import task
from structrnn.tasks.molecules.model import MoleculeModel
from structrnn.training.task import parse_args
from structrnn.training.task import train as train_task
from tests.test_predict_graphs import (
    _cache_and_threads,  # noqa: F401 (autouse)
    write_tu_files,
)

TINY = ["--folds", "3", "--seeds", "0", "--epochs", "3", "--hidden", "8", "--steps", "2",
        "--batch-size", "8", "--no-progress"]


def tu(argv: list[str]) -> dict:
    return train_task(task.TU, argv)


def write_tu(root, name: str, *, count: int = 30, node_labels: bool = True,
             attributes: int = 0, edge_labels: bool = False, seed: int = 0) -> dict:
    """A TU-format set of ``count`` small graphs (chains, every other one closed into a ring)
    in ``root/name``; the class is whether the graph is a ring. Returns what was written: the
    per-node ``attributes`` (N, A), ``labels`` (N,), ``graph`` (N,) and ``classes`` (G,)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 9, count)
    graph = np.repeat(np.arange(count), sizes)
    offsets = np.r_[0, np.cumsum(sizes)[:-1]] + 1  # TU node ids start at 1
    ring = np.arange(count) % 2 == 0
    pairs = [(o + i, o + (i + 1) % n) for o, n, closed in zip(offsets, sizes, ring, strict=True)
             for i in range(n if closed else n - 1)]
    both = [p for a, b in pairs for p in ((a, b), (b, a))]
    written = {"attributes": rng.normal(5.0, 3.0, (len(graph), attributes)),
               "labels": rng.integers(0, 4, len(graph)), "graph": graph,
               "classes": ring.astype(int)}
    files = {"A": [f"{a}, {b}" for a, b in both], "graph_indicator": (graph + 1).tolist(),
             "graph_labels": np.where(ring, 1, -1).tolist()}
    if node_labels:
        files["node_labels"] = written["labels"].tolist()
    if edge_labels:
        files["edge_labels"] = np.repeat(rng.integers(0, 3, len(pairs)), 2).tolist()
    if attributes:
        files["node_attributes"] = [", ".join(f"{v:.6f}" for v in row)
                                    for row in written["attributes"]]
    (root / name).mkdir(parents=True)
    write_tu_files(root / name, name, **files)
    return written


# --- reading any TU set -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["labels", "attributes", "both", "neither"])
def test_every_kind_of_node_features_is_read(tmp_path, variant):
    attributes = 0 if variant in ("labels", "neither") else 2
    written = write_tu(tmp_path, "SET", node_labels=variant in ("labels", "both"),
                       attributes=attributes)
    ds, info = load_tu(tmp_path, "SET", cache_dir=tmp_path / "cache")
    assert len(ds) == 30 and info.classes == 2 and info.edge_features == 0
    assert info.node_attributes == attributes
    graphs = list(ds)
    assert [int(g.y) for g in graphs] == written["classes"].tolist()
    if variant == "neither":
        assert graphs[0].x is None and info.max_degree == 2  # chains and rings
        assert info.node_features == 3 and "one-hot degrees 0..2" in info.describe()
        return
    x = torch.cat([g.x for g in graphs]).double()
    # the continuous attributes first, as written; then the one-hot labels
    np.testing.assert_allclose(x[:, :attributes].numpy(), written["attributes"], atol=1e-5)
    if variant != "attributes":
        assert x[:, attributes:].argmax(1).tolist() == written["labels"].tolist()
        assert info.node_labels == 4
    assert info.node_features == x.size(1)


def test_degree_features_count_each_neighbour_once():
    g = nx.Graph([(0, 1), (0, 2), (0, 3), (3, 4)])
    g.add_node(5)  # isolated
    edge_index = torch.tensor([[a for a, b in g.edges] + [b for a, b in g.edges],
                               [b for a, b in g.edges] + [a for a, b in g.edges]])
    got = degree_features(edge_index, 6, 3)
    expected = [min(g.degree[v], 2) for v in range(6)]  # degree 3 shares the last slot
    assert got.argmax(1).tolist() == expected and got.sum(1).tolist() == [1.0] * 6


def test_a_set_without_labels_or_attributes_refuses_nothing(tmp_path):
    (tmp_path / "X").mkdir()
    (tmp_path / "X" / "X_A.txt").write_text("1, 2\n2, 1\n")
    (tmp_path / "X" / "X_graph_indicator.txt").write_text("1\n1\n")
    with pytest.raises(ValueError, match="graph_labels"):
        load_tu(tmp_path, "X", cache_dir=tmp_path / "cache")
    with pytest.raises(structrnn.InputError, match="graph_labels"):
        tu(["--name", "X", "--data", str(tmp_path),
                   "--out", str(tmp_path / "run"), *TINY])


@pytest.mark.parametrize("variant,model", [("labels", "gn-gru"), ("attributes", "gin"),
                                           ("both", "dmpnn"), ("neither", "gin"),
                                           ("neither", "mpnn")])
def test_every_set_trains_and_predicts(tmp_path, variant, model):
    attributes = 0 if variant in ("labels", "neither") else 3
    write_tu(tmp_path / "data", "SET", node_labels=variant in ("labels", "both"),
             attributes=attributes, edge_labels=variant == "both")
    out = tmp_path / "run"
    metrics = tu(["--name", "SET", "--data",
                         str(tmp_path / "data"), "--model", model, "--out", str(out), *TINY])
    assert metrics["kind"] == "classification" and len(metrics["units"]) == 3
    assert sum(u["sizes"][2] for u in metrics["units"]) == 30  # every graph tested once
    best = torch.load(out / "units" / "seed0-fold0" / "best.pt", weights_only=True)
    args = best["model_args"]
    assert args["node_encoding"] == ("degree" if variant == "neither" else "features")
    assert args["node_scale"] == attributes and args["edge_in"] == (3 if variant == "both" else 0)
    graphs = list(load_tu(tmp_path / "data", "SET", cache_dir=tmp_path / "c")[0])
    predictor = structrnn.load(out)
    rows = predictor.predict(graphs)
    assert all(r["error"] is None and sum(r["probs"]) == pytest.approx(1) for r in rows)
    if variant == "neither":  # plain networkx graphs: the model counts the degrees itself
        plain = [nx.Graph([tuple(e) for e in g.edge_index.t().tolist()]) for g in graphs]
        again = predictor.predict(plain)
        torch.testing.assert_close(torch.tensor([r["probs"] for r in again]),
                                   torch.tensor([r["probs"] for r in rows]))


def test_attributes_are_standardised_with_the_training_graphs_only(tmp_path):
    written = write_tu(tmp_path / "data", "SET", node_labels=False, attributes=2)
    out = tmp_path / "run"
    tu(["--name", "SET", "--data", str(tmp_path / "data"),
               "--out", str(out), *TINY])
    labels = written["classes"]
    train, _ = stratified_kfold(labels, 3, 0)[1]
    inner, _ = stratified_kfold(labels[train], 9, 0)[0]
    nodes = np.isin(written["graph"], train[inner])
    best = torch.load(out / "units" / "seed0-fold1" / "best.pt", weights_only=True)
    np.testing.assert_allclose(best["model"]["node_shift"].numpy(),
                               written["attributes"][nodes].mean(0), rtol=1e-4)
    np.testing.assert_allclose(best["model"]["node_factor"].numpy(),
                               written["attributes"][nodes].std(0), rtol=1e-4)


# --- the protocol -------------------------------------------------------------------------------


def test_the_validation_split_lies_inside_the_training_fold(tmp_path):
    write_tu(tmp_path / "data", "SET", count=45)
    args = task.add_tu_arguments(__import__("argparse").ArgumentParser()).parse_args(
        ["--name", "SET", "--data", str(tmp_path / "data"),
         "--folds", "5", "--seeds", "0,1"])
    task.resolve_defaults(args)
    prep = task.prepare(args)
    found = task.units(args, prep)
    assert len(found) == 10
    for seed in (0, 1):
        tested = np.concatenate([u["test"] for u in found if u["seed"] == seed])
        assert sorted(tested.tolist()) == list(range(45))
    for u in found:
        parts = [set(u[k].tolist()) for k in ("train", "val", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(parts[0] | parts[1] | parts[2]) == 45
        # stratified: each class's count in the validation part is within one of its share
        # of the training fold (what StratifiedKFold guarantees)
        pool = prep.labels[np.concatenate([u["train"], u["val"]])]
        classes = prep.labels[u["val"]]
        for c in (0, 1):
            share = len(classes) * float((pool == c).mean())
            assert abs(int((classes == c).sum()) - share) < 1, (c, classes, share)


def _flip_test_labels(monkeypatch) -> None:
    """Every Unit built from now on sees its test graphs with the other class."""
    original = task.Unit.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        flipped = []
        for g in self.test_set:
            g = g.clone()
            g.y = 1 - g.y
            flipped.append(g)
        self.test_set = flipped

    monkeypatch.setattr(task.Unit, "__init__", init)


@pytest.mark.parametrize("extra", [[], ["--fold-models", "2"], ["--tune", "2"]])
def test_the_test_fold_never_influences_what_is_chosen(tmp_path, monkeypatch, extra):
    tune = "--tune" in extra
    if tune:
        pytest.importorskip("optuna")
    write_tu(tmp_path / "data", "SET", count=36, attributes=1)
    flags = ["--name", "SET", "--data", str(tmp_path / "data"),
             "--folds", "3", "--seeds", "0", "--epochs", "6", "--hidden", "8", "--steps", "2",
             "--batch-size", "8", "--lr", "0.01", "--no-progress", *extra]
    honest = tu([*flags, "--out", str(tmp_path / "a")])
    _flip_test_labels(monkeypatch)
    flipped = tu([*flags, "--out", str(tmp_path / "b")])
    assert flipped["chosen"] == honest["chosen"]  # the epochs (and tuned settings)
    assert [u["best_val_score"] for u in flipped["units"]] == \
        [u["best_val_score"] for u in honest["units"]]
    # the labels did change: every fold's test accuracy is the complement of the honest one
    assert [u["test_accuracy"] for u in flipped["units"]] == pytest.approx(
        [1 - u["test_accuracy"] for u in honest["units"]])
    if tune:
        config = json.loads((tmp_path / "a" / "config.json").read_text())
        assert sorted(config["tuned"]) == ["seed0-fold0", "seed0-fold1", "seed0-fold2"]


# --- GIN ----------------------------------------------------------------------------------------


def _small_graph(edge_in: int) -> Data:
    """A triangle with a tail and an isolated node, both edge directions, float64."""
    pairs = [(0, 1), (1, 2), (2, 0), (2, 3)]
    edge_index = torch.tensor([[a for a, b in pairs] + [b for a, b in pairs],
                               [b for a, b in pairs] + [a for a, b in pairs]])
    data = Data(x=torch.randn(5, 4, dtype=torch.float64), edge_index=edge_index, num_nodes=5)
    if edge_in:
        data.edge_attr = torch.randn(edge_index.size(1), edge_in, dtype=torch.float64)
    return data


def _randomise(module: torch.nn.Module) -> None:
    """Non-trivial batch-norm statistics and eps, so that every term of the formula shows."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
        for name, p in module.named_parameters():
            if name.endswith("eps"):
                p.uniform_(-0.5, 0.5)


def gin_reference(gin: GIN, data: Data) -> list[torch.Tensor]:
    """Xu et al.'s update node by node: h_v <- MLP((1 + eps) h_v + sum over the edges u -> v
    of h_u, or of ReLU(h_u + W e_uv) with edge features); every layer's states."""
    edges = data.edge_index.t().tolist()
    h = [data.x[v] for v in range(data.num_nodes)]
    layers = [torch.stack(h)]
    for k, mlp in enumerate(gin.mlps):
        new = []
        for v in range(data.num_nodes):
            total = (1 + gin.eps[k]) * h[v]
            for e, (u, w) in enumerate(edges):
                if w == v:
                    message = h[u]
                    if gin.edges is not None:
                        message = torch.relu(message + gin.edges[k](data.edge_attr[e]))
                    total = total + message
            new.append(mlp(total.unsqueeze(0))[0])  # eval mode: batch norm row by row
        h = new
        layers.append(torch.stack(h))
    return layers


@pytest.mark.parametrize("edge_in", [0, 3])
def test_gin_equals_a_per_node_reference(edge_in):
    data = _small_graph(edge_in)
    model = MoleculeModel(4, edge_in, 2, hidden=6, steps=3, model="gin", readout="sum")
    model = model.double().eval()
    _randomise(model)
    batch = Batch.from_data_list([data, _small_graph(edge_in)])
    states = model.body.layer_states(batch.x, batch.edge_index, batch.get("edge_attr"))
    for g, graph in enumerate(batch.to_data_list()):
        expected = gin_reference(model.body, graph)
        rows = batch.batch == g
        for got, want in zip(states, expected, strict=True):
            torch.testing.assert_close(got[rows], want)
    # the readout: every layer's graph sum through its own linear map, summed
    out = model(batch)
    for g, graph in enumerate(batch.to_data_list()):
        want = sum(head(layer.sum(0)) for head, layer in
                   zip(model.body.heads, gin_reference(model.body, graph), strict=True))
        torch.testing.assert_close(out[g], want)
    # and the gradients of the two agree
    loss = out.pow(2).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    reference = sum(sum(head(layer.sum(0)) for head, layer in
                        zip(model.body.heads, gin_reference(model.body, graph), strict=True)).pow(2)
                    .sum() for graph in batch.to_data_list())
    for got, want in zip(grads, torch.autograd.grad(reference, list(model.parameters())),
                         strict=True):
        torch.testing.assert_close(got, want)


def test_gin_zero_keeps_eps_at_zero():
    gin = GIN(3, 4, 2, train_eps=False)
    assert "eps" not in dict(gin.named_parameters()) and gin.eps.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="sum"):
        MoleculeModel(3, 0, 2, model="gin", readout="set2set")


def test_several_models_per_fold_are_tested_as_an_ensemble(tmp_path):
    write_tu(tmp_path / "data", "SET", count=30, attributes=1)
    out = tmp_path / "run"
    metrics = tu(["--name", "SET", "--data",
                         str(tmp_path / "data"), "--fold-models", "2", "--out", str(out),
                         *TINY])
    names = [u["unit"] for u in metrics["units"]]
    assert names == [f"seed0-fold{f}-val{m}" for f in range(3) for m in range(2)]
    graphs = list(load_tu(tmp_path / "data", "SET", cache_dir=tmp_path / "c")[0])
    labels = np.array([int(g.y) for g in graphs])
    expected = []
    for fold, (train, test) in enumerate(stratified_kfold(labels, 3, 0)):
        vals = [set(train[stratified_kfold(labels[train], 9, 0)[m][1]].tolist()) for m in (0, 1)]
        assert vals[0] and not vals[0] & vals[1]  # each model held out another ninth
        probs = 0
        for m in range(2):
            best = torch.load(out / "units" / f"seed0-fold{fold}-val{m}" / "best.pt",
                              weights_only=True)
            model = MoleculeModel(**best["model_args"])
            model.load_state_dict(best["model"])
            with torch.no_grad():
                batch = Batch.from_data_list([graphs[i] for i in test])
                probs = probs + torch.softmax(model.eval()(batch), 1) / 2
        expected.append(float((probs.argmax(1).numpy() == labels[test]).mean()))
    assert [f["accuracy"] for f in metrics["folds"]] == pytest.approx(expected)
    assert metrics["test_accuracy"]["mean"] == pytest.approx(np.mean(expected))
    assert "test_accuracy_single_models" in metrics
    figures = structrnn.load(out).evaluate()
    assert figures["test_accuracy"]["mean"] == pytest.approx(metrics["test_accuracy"]["mean"])
    assert len(structrnn.load(out).models) == 6


# --- the command line ---------------------------------------------------------------------------


def test_train_tu_shows_only_the_flags_of_tu_sets(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "tu", "--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--name", "--data", "--folds", "--fold-models", "--seeds", "--epochs",
                 "--max-molecules", "--max-graphs", "--workers"):
        assert flag in shown, flag
    for flag in ("--smiles-col", "--global-features", "--dataset", "--tu-name", "--csv",
                 "--split", "--task"):
        assert flag not in shown, flag


def test_tu_name_is_a_deprecated_spelling_of_name_and_max_graphs_of_max_molecules(tmp_path):
    with pytest.warns(FutureWarning, match="--tu-name is deprecated: use --name"):
        args = parse_args(task.TU, ["--tu-name", "PROTEINS", "--max-graphs", "7"])
    assert args.tu_name == "PROTEINS" and args.max_molecules == 7 and args.dataset == "mutag"
    assert parse_args(task.TU, ["--name", "NCI1"]).tu_name == "NCI1"
    with pytest.raises(SystemExit):  # a molecule flag is no TU flag
        parse_args(task.TU, ["--smiles-col", "s"])
