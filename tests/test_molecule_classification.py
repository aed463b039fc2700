"""Molecule classification: the task inferred from the targets, binary and multi-class tasks with
missing labels masked, ROC-AUC and PR-AUC against independent formulas, class weights, the
scaffold split by default, probabilities from ``structrnn.load(run).predict``; chemprop's D-MPNN
against a per-bond reference. The data: RDKit's shipped molecules with labels computed here
(Lipinski's rules from RDKit descriptors, a carbonyl flag with labels removed, a ring count)."""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
from rdkit import Chem, rdBase  # noqa: E402
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402

import structrnn  # noqa: E402
from structrnn import cli  # noqa: E402
from structrnn.datasets.molecules import from_smiles  # noqa: E402
from structrnn.datasets.molecules.builtin import builtin_smiles_path  # noqa: E402
from structrnn.graphs.dmpnn import DMPNN, reverse_edges  # noqa: E402
from structrnn.tasks.molecules import data, report, task  # noqa: E402
from structrnn.tasks.molecules.metrics import (  # noqa: E402
    average_precision,
    class_weights,
    classification_loss,
    roc_auc,
)
from structrnn.tasks.molecules.model import MoleculeModel  # noqa: E402
from structrnn.training.task import train as train_task  # noqa: E402
from tests.test_predict_graphs import _cache_and_threads  # noqa: E402, F401 (autouse)

TINY = ["--epochs", "3", "--hidden", "16", "--steps", "2", "--batch-size", "16", "--lr", "3e-3",
        "--no-progress", "--seeds", "0"]


def molecules(argv: list[str]) -> dict:
    return train_task(task.TASK, argv)


# --- independent references -----------------------------------------------------------------


def rank_auc(scores, labels) -> float:
    """ROC-AUC by the Mann-Whitney rank formula (ties share their average rank)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    i = 0
    while i < len(scores):  # average the 1-based ranks of each run of equal scores
        j = i
        while j + 1 < len(scores) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos, neg = int(labels.sum()), int((1 - labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    return (ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg)


def mean_precision_at_positives(scores, labels) -> float:
    """Average precision as the mean, over the positives, of the precision among everything
    scored at least as high as that positive."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    out = [labels[scores >= s].mean() for s in scores[labels == 1]]
    return float(np.mean(out)) if out else float("nan")


def test_roc_auc_matches_the_rank_formula_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        labels = rng.integers(0, 2, n)
        scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding makes ties
        assert roc_auc(scores, labels) == pytest.approx(rank_auc(scores, labels), nan_ok=True)
        assert average_precision(scores, labels) == pytest.approx(
            mean_precision_at_positives(scores, labels), nan_ok=True)
    assert roc_auc([0.1, 0.9, 0.5], [0, 1, 1]) == 1.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def _kind(y, kind=None):
    """``(args.kind, classes)`` the data step settles for targets ``y`` (M, T)."""
    args = argparse.Namespace(kind=kind)
    names = ["a", "b"][:len(y[0])]
    classes = data._kind(args, argparse.Namespace(y=torch.tensor(y), target_names=names))
    return args.kind, classes


def test_only_0_1_targets_are_inferred_as_classes_and_stderr_says_which(capsys):
    nan = float("nan")
    assert _kind([[0.0, 1.0], [1.0, nan], [1.0, 0.0]]) == ("classification", [2, 2])
    assert "--task not given: classification, as every target is 0 or 1" in \
        capsys.readouterr().err
    # a count (ring numbers 0..3) is a regression unless asked: no 0..9 switch any more
    assert _kind([[0.0], [2.0], [3.0], [1.0]]) == ("regression", None)
    err = capsys.readouterr().err
    assert "--task not given: regression" in err and "--task classification" in err
    assert _kind([[0.0], [2.0], [3.0]], "classification") == ("classification", [4])
    assert "as class labels" in capsys.readouterr().err
    assert _kind([[0.5], [1.0]]) == ("regression", None)
    assert _kind([[-1.0], [1.0]]) == ("regression", None)
    assert _kind([[3.0], [250.0]]) == ("regression", None)


def test_an_integer_count_column_trains_as_a_regression_with_a_random_split(tmp_path, capsys):
    source = tmp_path / "counts.csv"
    smiles = ["CCO", "c1ccccc1", "CCN", "c1ccc2ccccc2c1", "CC(=O)O", "C1CCCCC1", "CCCC",
              "c1ccncc1", "CCOCC", "C1CC1"] * 2
    rings = [0, 1, 0, 2, 0, 1, 0, 1, 0, 1] * 2
    source.write_text("smiles,rings\n" + "".join(f"{s},{r}\n" for s, r in
                                                zip(smiles, rings, strict=True)))
    metrics = molecules(["--dataset", "csv", "--csv", str(source), "--target", "rings",
                         "--out", str(tmp_path / "run"), *TINY])
    assert metrics["kind"] == "regression" and metrics["split"] == "random"
    assert "--task not given: regression" in capsys.readouterr().err


def test_missing_labels_are_masked_out_of_the_loss():
    torch.manual_seed(1)
    nan = float("nan")
    logits = torch.randn(4, 5, requires_grad=True)  # a binary task (2) and a 3-class task
    y = torch.tensor([[1.0, 2.0], [nan, 0.0], [0.0, nan], [nan, nan]])
    weights = [torch.tensor([1.0, 3.0]), None]
    total, count = classification_loss(logits, y, [2, 3], weights)
    expected, n = 0.0, 0
    for i in range(4):
        for t, (lo, hi) in enumerate([(0, 2), (2, 5)]):
            if not math.isnan(float(y[i, t])):
                c = int(y[i, t])
                logp = torch.log_softmax(logits[i, lo:hi], 0)[c]
                w = 1.0 if weights[t] is None else float(weights[t][c])
                expected, n = expected - w * logp, n + 1
    torch.testing.assert_close(total, expected)
    assert int(count) == n == 4
    total.backward()
    assert logits.grad[3].abs().sum() == 0  # no label: no gradient
    assert logits.grad[1, :2].abs().sum() == 0 and logits.grad[2, 2:].abs().sum() == 0


def test_balanced_class_weights():
    y = torch.tensor([[0.0], [0.0], [0.0], [1.0], [float("nan")]])
    (w,) = class_weights(y, [2])
    torch.testing.assert_close(w, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))


# --- the data the tests make ------------------------------------------------------------------


def violates_lipinski(mol) -> int:
    """1 when the molecule breaks at least one of Lipinski's rules of five (a rare class)."""
    return int(Descriptors.MolWt(mol) > 500 or Crippen.MolLogP(mol) > 5
               or Lipinski.NumHDonors(mol) > 5 or Lipinski.NumHAcceptors(mol) > 10)


def write_csv(path, count: int = 200) -> list[dict]:
    """RDKit's first NCI molecules with three label columns: ``violation`` (Lipinski), ``carbonyl``
    (a C=O substructure flag, a third of its labels removed) and ``rings`` (0, 1, 2 or more)."""
    carbonyl = Chem.MolFromSmarts("[CX3]=[OX1]")
    rng = np.random.default_rng(0)
    rows = []
    with rdBase.BlockLogs():
        for line in builtin_smiles_path().read_text().splitlines():
            smiles = line.split()[0]
            mol = Chem.MolFromSmiles(smiles)
            if mol is None:
                continue
            flag = str(int(mol.HasSubstructMatch(carbonyl))) if rng.random() > 1 / 3 else ""
            rows.append({"smiles": smiles, "violation": str(violates_lipinski(mol)),
                         "carbonyl": flag,
                         "rings": str(min(rdMolDescriptors.CalcNumRings(mol), 2))})
            if len(rows) == count:
                break
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def train(monkeypatch, *flags: str) -> tuple[dict, list[dict]]:
    """Run the task; its metrics and each unit's result before summarise."""
    captured: dict = {}
    original = report.summarise

    def summarise(args, prep, results):
        captured["results"] = results
        return original(args, prep, results)

    monkeypatch.setattr(report, "summarise", summarise)
    return molecules(list(flags)), captured["results"]


def test_a_multitask_classification_with_missing_labels(tmp_path, monkeypatch, capsys):
    rows = write_csv(tmp_path / "mols.csv")
    run = tmp_path / "run"
    metrics, (unit,) = train(monkeypatch, "--dataset", "csv", "--csv", str(tmp_path / "mols.csv"),
                             "--target", "violation,carbonyl", "--out", str(run),
                             "--global-features", "none", *TINY)  # the model by hand below
    err = capsys.readouterr().err
    assert "--task not given: classification" in err
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "classification" and config["split"] == "scaffold"
    assert metrics["classes"] == [2, 2]
    for key in ("test_accuracy", "test_roc_auc", "test_pr_auc"):
        assert set(metrics[key]) == {"violation", "carbonyl"}
    assert set(metrics["test_mean_roc_auc"]) == {"mean", "std"}
    # the metric against the rank formula on the unit's own test outputs
    logits, true = torch.tensor(unit["test_pred"]), torch.tensor(unit["test_true"])
    for t, name in enumerate(("violation", "carbonyl")):
        mask = ~torch.isnan(true[:, t])
        p1 = torch.softmax(logits[mask, 2 * t:2 * t + 2], 1)[:, 1].numpy()
        assert unit["test_roc_auc"][name] == pytest.approx(
            rank_auc(p1, true[mask, t].numpy()), nan_ok=True)
        assert unit["test_pr_auc"][name] == pytest.approx(
            mean_precision_at_positives(p1, true[mask, t].numpy()), nan_ok=True)
    assert int(torch.isnan(true[:, 1]).sum()) > 0  # missing labels reached the test split
    # predictions: the probability of class 1 per task, as the model gives by hand
    smiles = [r["smiles"] for r in rows[:12]]
    best = torch.load(run / "units" / "seed0" / "best.pt", weights_only=True)
    model = MoleculeModel(**best["model_args"])
    model.load_state_dict(best["model"])
    with torch.no_grad():
        out = model.eval()(Batch.from_data_list([from_smiles(s) for s in smiles]))
    predicted = structrnn.load(run).predict([*smiles, "not-a-smiles"])
    assert set(predicted[0]) == {"input", "violation", "carbonyl", "error"}
    for t, name in enumerate(("violation", "carbonyl")):
        torch.testing.assert_close(torch.tensor([r[name] for r in predicted[:12]]),
                                   torch.softmax(out[:, 2 * t:2 * t + 2], 1)[:, 1])
    assert predicted[12]["violation"] is None and "not-a-smiles" in predicted[12]["error"]
    # eval reproduces metrics.json
    figures = structrnn.load(run).evaluate()
    for name in ("violation", "carbonyl"):
        assert figures["test_roc_auc"][name]["mean"] == pytest.approx(
            metrics["test_roc_auc"][name]["mean"], nan_ok=True)


def test_multiclass_with_class_weights_and_an_ensemble(tmp_path, monkeypatch):
    write_csv(tmp_path / "mols.csv", count=120)
    run = tmp_path / "run"
    metrics, units = train(monkeypatch, "--dataset", "csv", "--csv", str(tmp_path / "mols.csv"),
                           "--target", "rings,violation", "--task", "classification",
                           "--class-weights", "balanced", "--split", "random",
                           "--out", str(run), *TINY[:-2], "--seeds", "0,1")
    assert metrics["classes"] == [3, 2] and metrics["split"] == "random" and len(units) == 2
    rows = structrnn.load(run).predict(["CCO", "c1ccccc1", "c1ccc2ccccc2c1"])
    for row in rows:
        probs = [row[f"rings_p{k}"] for k in range(3)]
        assert sum(probs) == pytest.approx(1, abs=1e-5) and row["rings"] == int(np.argmax(probs))
        assert 0 <= row["violation"] <= 1 and row["violation_std"] >= 0
    assert "rings_std" not in rows[0]


def test_classification_of_numbers_is_refused(tmp_path, capsys):
    source = tmp_path / "numbers.csv"
    source.write_text("smiles,value\nCCO,0.5\nc1ccccc1,1.25\nCCN,3\n")
    with pytest.raises(structrnn.InputError, match="class labels"):
        molecules(["--dataset", "csv", "--csv", str(source), "--target", "value", "--task",
                   "classification", "--out", str(tmp_path / "run"), *TINY])
    assert cli.main(["train", "molecules", "--dataset", "csv", "--csv", str(source),
                     "--target", "value", "--task", "classification", "--out",
                     str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "class labels" in err


def test_builtin_lipinski_trains_as_a_classification(tmp_path):
    metrics = molecules(["--target", "lipinski", "--max-molecules", "60", "--out",
                         str(tmp_path / "run"), *TINY])
    assert metrics["kind"] == "classification" and metrics["split"] == "scaffold"
    assert "lipinski" in metrics["test_accuracy"]


# --- D-MPNN -------------------------------------------------------------------------------------


def dmpnn_reference(model: DMPNN, x, bonds: list[tuple[int, int]], edge_attr) -> torch.Tensor:
    """Chemprop's recurrence bond by bond: h0 = ReLU(W_i [x_v, e_vw]); steps - 1 times
    h_vw = ReLU(h0_vw + W_h sum of h_kv over the bonds k->v with k != w); then per atom
    ReLU(W_o [x_v, sum of h_kv over the bonds into v])."""
    h0 = {b: torch.relu(model.w_i(torch.cat([x[b[0]], edge_attr[e]])))
          for e, b in enumerate(bonds)}
    h = dict(h0)
    for _ in range(model.num_layers - 1):
        new = {}
        for v, w in bonds:
            incoming = [h[(k, u)] for k, u in bonds if u == v and k != w]
            total = torch.stack(incoming).sum(0) if incoming else torch.zeros_like(h0[(v, w)])
            new[(v, w)] = torch.relu(h0[(v, w)] + model.w_h(total))
        h = new
    atoms = []
    for v in range(x.size(0)):
        incoming = [h[(k, u)] for k, u in bonds if u == v]
        total = torch.stack(incoming).sum(0) if incoming else x.new_zeros(model.w_h.in_features)
        atoms.append(torch.relu(model.w_o(torch.cat([x[v], total]))))
    return torch.stack(atoms)


@pytest.mark.parametrize("smiles", ["CC(=O)Oc1ccccc1C(=O)O", "C1CC1.[Na+]", "O"])
def test_dmpnn_equals_a_per_bond_reference(smiles):
    data = from_smiles(smiles)
    x, edge_attr = data.x.double(), data.edge_attr.double()
    model = DMPNN(x.size(1), 7, 4, edge_dim=edge_attr.size(1)).double().eval()
    out = model(x, data.edge_index, edge_attr)
    bonds = [tuple(b) for b in data.edge_index.t().tolist()]
    expected = dmpnn_reference(model, x, bonds, edge_attr)
    torch.testing.assert_close(out, expected)
    params = list(model.parameters())
    # a molecule without bonds leaves W_i and W_h unused: their gradients are zero
    grads = torch.autograd.grad(out.pow(2).sum(), params, materialize_grads=True)
    wanted = torch.autograd.grad(expected.pow(2).sum(), params, materialize_grads=True)
    for got, want in zip(grads, wanted, strict=True):
        torch.testing.assert_close(got, want)


def test_reverse_edges_pair_each_direction_and_mark_one_way_edges():
    edge_index = torch.tensor([[0, 1, 2, 1, 3], [1, 0, 1, 2, 0]])
    assert reverse_edges(edge_index, 4).tolist() == [1, 0, 3, 2, -1]
    data = from_smiles("CC(=O)O")  # the featuriser puts bond k at columns 2k and 2k + 1
    rev = reverse_edges(data.edge_index, data.num_nodes)
    assert rev.tolist() == [e ^ 1 for e in range(data.edge_index.size(1))]


def test_dmpnn_and_gin_train_on_molecules(tmp_path):
    for model in ("dmpnn", "gin"):
        metrics = molecules(["--max-molecules", "48", "--model", model, "--out",
                             str(tmp_path / model), *TINY])
        assert metrics["units"][0]["train_loss_last"] < metrics["units"][0]["train_loss_first"]
