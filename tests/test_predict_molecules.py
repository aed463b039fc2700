"""A trained molecule run as a product: ``structrnn.load(run).predict(smiles)`` equals the
run's own test predictions in real units (one seed, an ensemble, ESOL with RDKit descriptors),
an exported file predicts the same in a fresh process, CSV files keep every row, ``eval``
reproduces metrics.json, and the prediction benchmark runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("rdkit")
import structrnn  # noqa: E402
from structrnn import cli  # noqa: E402
from structrnn.datasets.molecules import from_smiles  # noqa: E402
from structrnn.tasks.molecules import report, task  # noqa: E402
from structrnn.tasks.molecules.model import MoleculeModel  # noqa: E402
from structrnn.training.task import train as train_task  # noqa: E402
from tests.conftest import REPO, require_dataset  # noqa: E402
from tests.test_predict_graphs import _cache_and_threads  # noqa: E402, F401 (autouse)

TINY = ["--max-molecules", "60", "--epochs", "2", "--hidden", "8", "--steps", "2",
        "--no-progress"]


def molecules(argv: list[str]) -> dict:
    return train_task(task.TASK, argv)


def train(monkeypatch, out, *flags: str) -> tuple[dict, list[dict], list[str]]:
    """Train a tiny run; returns its metrics, each unit's result before summarise (with its
    ``test_pred`` in real units and ``test_index``) and the data set's SMILES."""
    captured: dict = {}
    original = report.summarise

    def summarise(args, prep, results):
        captured["results"], captured["smiles"] = results, prep.smiles
        return original(args, prep, results)

    monkeypatch.setattr(report, "summarise", summarise)
    metrics = molecules([*TINY, *flags, "--out", str(out)])
    return metrics, captured["results"], captured["smiles"]


def member_outputs(run, smiles: list[str]) -> torch.Tensor:
    """(units, molecules, targets): each unit's best.pt model run by hand on the molecules and
    put back into real units with that unit's stored scaling (no descriptors)."""
    from torch_geometric.data import Batch

    outs = []
    for unit in sorted((run / "units").iterdir()):
        best = torch.load(unit / "best.pt", weights_only=True)
        model = MoleculeModel(**best["model_args"])
        model.load_state_dict(best["model"])
        with torch.no_grad():
            out = model.eval()(Batch.from_data_list([from_smiles(s) for s in smiles]))
        outs.append(out * best["target_std"] + best["target_mean"])
    return torch.stack(outs)


def values(rows: list[dict], key: str) -> torch.Tensor:
    return torch.tensor([r[key] for r in rows])


def test_predictions_equal_the_runs_test_predictions_in_real_units(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _, results, smiles = train(monkeypatch, run, "--seeds", "0")
    (unit,) = results
    test_smiles = [smiles[i] for i in unit["test_index"]]
    rows = structrnn.load(run).predict(test_smiles)
    assert [r["input"] for r in rows] == test_smiles
    assert all(r["error"] is None and set(r) == {"input", "tpsa", "error"} for r in rows)
    expected = torch.tensor(unit["test_pred"])[:, 0]
    torch.testing.assert_close(values(rows, "tpsa"), expected, rtol=1e-5, atol=1e-4)
    # in TPSA's units (square angstroms), not the standardised ones the model outputs
    best = torch.load(run / "units" / "seed0" / "best.pt", weights_only=True)
    assert float(best["target_std"]) > 5


def test_an_ensemble_predicts_the_mean_and_the_spread(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _, results, smiles = train(monkeypatch, run, "--seeds", "0,1")
    members = member_outputs(run, smiles)[:, :, 0]  # (2, 60)
    for k, unit in enumerate(results):  # the hand-made reference is the run's own numbers
        torch.testing.assert_close(members[k, unit["test_index"]],
                                   torch.tensor(unit["test_pred"])[:, 0], rtol=1e-5, atol=1e-4)
    predictor = structrnn.load(run)
    assert len(predictor.models) == 2 and "ensemble of 2" in repr(predictor)
    rows = predictor.predict(smiles, batch_size=7)
    torch.testing.assert_close(values(rows, "tpsa"), members.mean(0), rtol=1e-5, atol=1e-4)
    spread = (members[0] - members[1]).abs() / 2  # the population std of two values
    torch.testing.assert_close(values(rows, "tpsa_std"), spread, rtol=1e-4, atol=1e-4)
    assert float(spread.max()) > 0


def test_invalid_and_empty_smiles_are_marked_and_the_others_predicted(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(monkeypatch, run, "--seeds", "0")
    predictor = structrnn.load(run)
    rows = predictor.predict(["CCO", "not-a-smiles", "", "C(C)(C)(C)(C)C", "c1ccccc1"])
    alone = predictor.predict(["CCO", "c1ccccc1"])
    assert [r["tpsa"] for r in (rows[0], rows[4])] == pytest.approx([r["tpsa"] for r in alone])
    assert rows[1]["tpsa"] is None and "'not-a-smiles'" in rows[1]["error"]
    assert "parse" in rows[1]["error"]
    assert rows[2]["tpsa"] is None and rows[2]["error"] == "empty SMILES"
    assert "valence" in rows[3]["error"]  # RDKit's own reason
    # a PyG Data from the featuriser is read as well; a single string is refused
    data_rows = predictor.predict([from_smiles("CCO")])
    assert data_rows[0]["tpsa"] == pytest.approx(alone[0]["tpsa"]) and data_rows[0]["input"] == 0
    with pytest.raises(structrnn.InputError, match="list"):
        predictor.predict("CCO")


def test_export_loads_in_a_fresh_process_with_identical_predictions(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _, _, smiles = train(monkeypatch, run, "--seeds", "0,1")
    predictor = structrnn.load(run)
    path = predictor.save(tmp_path / "model.pt")
    state = torch.load(path, weights_only=True)  # plain tensors and values only
    assert state["task"] == "molecules" and len(state["models"]) == 2
    assert [m["name"] for m in state["members"]] == ["seed0", "seed1"]
    assert state["featuriser"] == "structrnn-mol-1" and state["target_names"] == ["tpsa"]
    code = ("import json, sys, structrnn\n"
            "p = structrnn.load(sys.argv[1])\n"
            "print(json.dumps(p.predict(json.loads(sys.argv[2]))))\n")
    done = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(smiles[:20])],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == predictor.predict(smiles[:20])

    state["version"] += 1
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(structrnn.InputError, match="newer"):
        structrnn.load(tmp_path / "newer.pt")
    state["version"] -= 1
    state["featuriser"] = "structrnn-mol-0"
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(structrnn.InputError, match="featuriser 'structrnn-mol-0'"):
        structrnn.load(tmp_path / "other.pt")


def test_a_run_without_the_target_scaling_says_retrain(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(monkeypatch, run, "--seeds", "0")
    best_path = run / "units" / "seed0" / "best.pt"
    best = torch.load(best_path, weights_only=True)
    del best["target_mean"], best["target_std"]
    torch.save(best, best_path)
    with pytest.raises(structrnn.InputError, match="scaling.*retrain"):
        structrnn.load(run)
    best_path.unlink()
    with pytest.raises(structrnn.InputError, match="best.pt: missing"):
        structrnn.load(run)


def read_rows(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_keeps_every_row_and_marks_the_bad_ones(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    train(monkeypatch, run, "--seeds", "0")
    source, out = tmp_path / "new.csv", tmp_path / "preds.csv"
    rows = [["name", "smiles", "note"], ["ethanol", "CCO", "a, quoted cell"],
            ["bad", "not-a-smiles", ""], ["empty", "", "x"], ["benzene", "c1ccccc1", "y"]]
    with open(source, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    assert cli.main(["predict", str(run), "--input", str(source), "--output", str(out)]) == 0
    got = read_rows(out)
    assert got[0] == ["name", "smiles", "note", "tpsa", "error"]
    assert [r[:3] for r in got[1:]] == rows[1:]  # every row, in order, with all its columns
    expected = structrnn.load(run).predict(["CCO", "c1ccccc1"])
    assert float(got[1][3]) == pytest.approx(expected[0]["tpsa"], rel=1e-6)
    assert float(got[4][3]) == pytest.approx(expected[1]["tpsa"], rel=1e-6)
    assert got[1][4] == got[4][4] == ""
    assert got[2][3] == "" and "not-a-smiles" in got[2][4]
    assert got[3][3] == "" and got[3][4] == "empty SMILES"

    capsys.readouterr()
    assert cli.main(["predict", str(run), "--input", str(source), "--smiles-col", "SMI"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'SMI'" in err and "'smiles'" in err
    assert "Traceback" not in err
    assert cli.main(["predict", str(run), "--input", str(tmp_path / "none.csv")]) == 2


def test_csv_to_stdout_and_a_column_the_csv_already_has(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    train(monkeypatch, run, "--seeds", "0,1")
    source = tmp_path / "measured.csv"
    source.write_text("SMILES,tpsa\nCCO,20.23\n")
    predictor = structrnn.load(run)
    assert predictor.predict_file(source, None, smiles_col="SMILES", progress=False) == 1
    got = list(csv.reader(capsys.readouterr().out.splitlines()))
    # the measured column is kept; the predictions take the next free names
    assert got[0] == ["SMILES", "tpsa", "tpsa_pred", "tpsa_std", "error"]
    expected = predictor.predict(["CCO"])[0]
    assert got[1][:2] == ["CCO", "20.23"]
    assert [float(got[1][2]), float(got[1][3])] == pytest.approx(
        [expected["tpsa"], expected["tpsa_std"]], rel=1e-6)


def test_eval_prints_the_figures_of_metrics_json(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    train(monkeypatch, run, "--seeds", "0,1")
    saved = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main(["eval", str(run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    for key in ("test_rmse", "test_mae", "test_r2"):
        for stat in ("mean", "std"):
            assert printed[key]["tpsa"][stat] == pytest.approx(saved[key]["tpsa"][stat],
                                                               rel=1e-6, abs=1e-9)
    assert [u["unit"] for u in printed["units"]] == ["seed0", "seed1"]
    val = structrnn.load(run).evaluate("val")
    assert [u["val_rmse"]["tpsa"] for u in val["units"]] == pytest.approx(
        [u["best_val_score"] for u in saved["units"]], rel=1e-6)  # the selected epoch's score


def test_esol_predicts_log_solubility_with_the_descriptor_reference(tmp_path, monkeypatch):
    root = require_dataset("esol")
    run = tmp_path / "esol"
    _, results, smiles = train(monkeypatch, run, "--dataset", "esol", "--data",
                               str(root.parent), "--seeds", "0", "--global-features", "rdkit")
    (unit,) = results
    test_smiles = [smiles[i] for i in unit["test_index"]]
    predictor = structrnn.load(run)
    assert predictor.target_names == [task.ESOL_TARGET]
    rows = predictor.predict(test_smiles)
    torch.testing.assert_close(values(rows, task.ESOL_TARGET),
                               torch.tensor(unit["test_pred"])[:, 0], rtol=1e-5, atol=1e-4)
    # the descriptors go through the training molecules' distribution: another reference
    # (the test molecules' own) changes the predictions
    member = predictor.members[0]
    from structrnn.datasets.molecules.descriptors import rdkit_descriptors

    member.reference = rdkit_descriptors(test_smiles)[0]
    moved = values(predictor.predict(test_smiles), task.ESOL_TARGET)
    assert not torch.allclose(moved, values(rows, task.ESOL_TARGET))
    saved = json.loads((run / "metrics.json").read_text())
    figures = structrnn.load(run).evaluate()
    assert figures["test_rmse"][task.ESOL_TARGET]["mean"] == pytest.approx(
        saved["test_rmse"][task.ESOL_TARGET]["mean"], rel=1e-6)


def test_esol_csv_from_the_command_line(tmp_path, monkeypatch, capsys):
    root = require_dataset("esol")
    run = tmp_path / "esol"
    train(monkeypatch, run, "--dataset", "esol", "--data", str(root.parent), "--seeds", "0")
    source, out = tmp_path / "new.csv", tmp_path / "preds.csv"
    source.write_text("smiles\nCCO\nnot-a-smiles\n")
    assert cli.main(["predict", str(run), "--input", str(source), "--output", str(out)]) == 0
    got = read_rows(out)
    assert got[0] == ["smiles", task.ESOL_TARGET, "error"]
    assert float(got[1][1]) == pytest.approx(
        structrnn.load(run).predict(["CCO"])[0][task.ESOL_TARGET], rel=1e-6)
    capsys.readouterr()
    assert cli.main(["predict", str(run), "CCO"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["input"] == "CCO" and line["error"] is None and task.ESOL_TARGET in line


def test_prediction_benchmark_runs_with_the_smallest_settings(tmp_path, capsys):
    from structrnn.benchmarks import predict as bench

    figures = bench.main(["--molecules", "12", "--single", "2", "--rounds", "1",
                          "--train-molecules", "30", "--hidden", "4", "--steps", "1",
                          "--threads", "1", "--skip-sentences"])
    out = capsys.readouterr().out
    assert "command: structrnn bench predict" in out and "torch threads 1" in out
    assert "load " in out and "sentences: skipped" in out
    mol = figures["molecules"]
    assert mol["featurise_mol_per_s"] > 0 and mol["predict_batch_mol_per_s"] > 0
    assert mol["predict_single_mol_per_s"] > 0
