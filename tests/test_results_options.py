"""Issue 26's options on tiny data: molecule ensembles (``--ensemble``), their uncertainty
figures, split-conformal intervals (``--conformal``), the fair protocol of TU sets
(``--protocol fair``) and tuning processes sharing one Optuna study (``--tune-storage``,
``--study``)."""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm, rankdata
from torch_geometric.data import Batch

import structrnn
from structrnn.datasets.molecules.builtin import builtin_molecules
from structrnn.datasets.splits import stratified_kfold
from structrnn.tasks.molecules import data, task, uncertainty
from structrnn.tasks.molecules.model import MoleculeModel
from structrnn.training.checkpoint import load_checkpoint
from structrnn.training.task import train as train_task
from tests.test_predict_graphs import _cache_and_threads  # noqa: F401 (autouse)
from tests.test_tu_protocol import write_tu

REPO = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--steps", "2", "--batch-size", "8", "--no-progress", "--threads", "1"]


def molecules(argv: list[str]) -> dict:
    return train_task(task.TASK, argv)


def tu(argv: list[str]) -> dict:
    return train_task(task.TU, argv)


# --- the conformal and calibration maths, on synthetic data with a known noise ------------------


def test_conformal_quantile_is_the_finite_sample_rank():
    rng = np.random.default_rng(0)
    for n in (1, 9, 19, 100, 1001):
        scores = rng.exponential(size=n)
        for level in (0.5, 0.8, 0.9, 0.95):
            # the smallest score with at least (n + 1) * level scores at or below it
            enough = [v for v in scores if (scores <= v).sum() >= (n + 1) * level - 1e-9]
            expected = min(enough) if enough else math.inf
            assert uncertainty.conformal_quantile(scores, level) == expected
    assert uncertainty.conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0  # ceil(9) = 9th
    with pytest.raises(ValueError, match="level"):
        uncertainty.conformal_quantile([1.0], 1.5)


def test_conformal_coverage_on_data_with_a_known_noise():
    """y = sin(3x) + N(0, 0.3^2): the 90% interval around f(x), calibrated on 2000 points,
    covers 85-95% of 5000 new points; scaled by a known heteroscedastic spread, too."""
    rng = np.random.default_rng(1)

    def draw(n, hetero=False):
        x = rng.uniform(-2, 2, n)
        s = 0.1 + 0.4 * np.abs(x) if hetero else np.full(n, 0.3)
        return np.sin(3 * x), np.sin(3 * x) + rng.normal(0, s), s

    pred, y, _ = draw(2000)
    q = uncertainty.conformal_quantile(uncertainty.conformal_scores(pred, y), 0.9)
    assert q == pytest.approx(norm.ppf(0.95) * 0.3, rel=0.08)  # the noise's own 90% half-width
    pred, y, _ = draw(5000)
    low, high = uncertainty.conformal_interval(pred, q)
    assert 0.85 <= uncertainty.coverage(low, high, y) <= 0.95

    pred, y, s = draw(2000, hetero=True)
    q = uncertainty.conformal_quantile(uncertainty.conformal_scores(pred, y, s), 0.9)
    pred, y, s = draw(5000, hetero=True)
    low, high = uncertainty.conformal_interval(pred, q, s)
    assert 0.85 <= uncertainty.coverage(low, high, y) <= 0.95
    # scaled by the spread, the quiet and the noisy regions are each covered, not only on average
    for region in (s < 0.3, s > 0.6):
        assert 0.85 <= uncertainty.coverage(low[region], high[region], y[region]) <= 0.95


def test_conformal_coverage_holds_with_few_calibration_points():
    """The guarantee is exact in expectation: with n = 19 points and level 0.9 the 18th score
    covers a new point with probability 18/20 = 0.9."""
    rng = np.random.default_rng(2)
    scores = np.abs(rng.normal(size=(20000, 20)))
    q = np.array([uncertainty.conformal_quantile(row[:19], 0.9) for row in scores])
    assert np.mean(scores[:, 19] <= q) == pytest.approx(0.9, abs=0.01)


def test_miscalibration_area_against_its_integral():
    rng = np.random.default_rng(3)
    m = 40000
    std = rng.uniform(0.5, 2.0, m)
    true = rng.normal(0.0, std)
    mean = np.zeros(m)
    assert uncertainty.miscalibration_area(mean, std, true) < 0.01  # calibrated
    # an ensemble three times too sure: observed(p) = 2 Phi(z_p / 3) - 1, z_p = Phi^-1((1+p)/2)
    reference = integrate.quad(lambda p: abs(2 * norm.cdf(norm.ppf((1 + p) / 2) / 3) - 1 - p),
                               0, 1, limit=200)[0]
    got = uncertainty.miscalibration_area(mean, std / 3, true)
    assert got == pytest.approx(reference, abs=0.01) and got > 0.2


def test_spread_spearman_against_ranks():
    rng = np.random.default_rng(4)
    spread, error = rng.exponential(size=50), rng.exponential(size=50)
    reference = np.corrcoef(rankdata(spread), rankdata(error))[0, 1]
    assert uncertainty.spread_spearman(spread, error) == pytest.approx(reference)
    assert uncertainty.spread_spearman(spread, 2 * spread + 1) == pytest.approx(1.0)
    assert math.isnan(uncertainty.spread_spearman(np.ones(5), error[:5]))


def test_interval_columns_from_a_calibration(tmp_path):
    uncertainty.write_calibration(tmp_path, 0.9, "spread", {"y": 2.0}, {"seed0": {"y": 2.0}})
    calibration = uncertainty.read_calibration(tmp_path)
    assert uncertainty.interval_columns("y", 1.0, 0.5, calibration) == {"y_low": 0.0,
                                                                        "y_high": 2.0}
    assert uncertainty.interval_columns("y", None, None, calibration) == {"y_low": None,
                                                                          "y_high": None}
    assert uncertainty.read_calibration(tmp_path / "none") is None


# --- --ensemble K and --conformal on a run ------------------------------------------------------


def _member_predictions(run: Path, name: str, graphs: list) -> torch.Tensor:
    """A member's test predictions in real units, rebuilt from its best.pt alone."""
    state = load_checkpoint(run / "units" / name / "best.pt")
    model = MoleculeModel(**state["model_args"])
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        out = model(Batch.from_data_list(graphs))
    return (out * state["target_std"] + state["target_mean"]).double()


def test_ensemble_members_share_a_split_and_are_averaged(tmp_path):
    out = tmp_path / "run"
    metrics = molecules(["--dataset", "builtin", "--max-molecules", "80", "--epochs", "3",
                         "--seeds", "0", "--ensemble", "3", "--conformal", "0.5",
                         "--out", str(out), *TINY])
    names = [u["unit"] for u in metrics["units"]]
    assert names == ["seed0-ens0", "seed0-ens1", "seed0-ens2"] and metrics["ensemble"] == 3
    assert len({tuple(u["sizes"]) for u in metrics["units"]}) == 1
    config = json.loads((out / "config.json").read_text())
    assert data.unit_names(config) == names

    # the same split: rebuild it and predict its test molecules with each member's weights
    args = argparse.Namespace(seeds=[0], dataset="builtin", split="random", ensemble=3)
    graphs = builtin_molecules("tpsa", max_molecules=80)
    split = data.units(args, argparse.Namespace(graphs=graphs, smiles=None))[0]
    test = [graphs[int(i)] for i in split["test"]]
    preds = torch.stack([_member_predictions(out, n, test) for n in names])
    assert not torch.equal(preds[0], preds[1])  # their own initial weights and batches
    mean, spread = preds.mean(0)[:, 0], preds.std(0, unbiased=False)[:, 0]
    true = torch.cat([g.y for g in test])[:, 0].double()
    rmse = float((mean - true).pow(2).mean().sqrt())
    assert metrics["test_rmse"]["tpsa"]["mean"] == pytest.approx(rmse, rel=1e-4)
    singles = [float((p[:, 0] - true).pow(2).mean().sqrt()) for p in preds]
    assert metrics["test_rmse_single_models"]["tpsa"]["mean"] == pytest.approx(
        np.mean(singles), rel=1e-4)
    from scipy.stats import spearmanr

    rho = spearmanr(spread.numpy(), (mean - true).abs().numpy()).statistic
    assert metrics["test_spread_spearman"]["tpsa"]["mean"] == pytest.approx(rho, abs=1e-6)
    assert 0 <= metrics["test_miscalibration_area"]["tpsa"]["mean"] <= 0.5

    # conformal: calibrated on the validation molecules, saved with the run
    val = [graphs[int(i)] for i in split["val"]]
    val_mean = torch.stack([_member_predictions(out, n, val) for n in names]).mean(0)[:, 0]
    val_true = torch.cat([g.y for g in val])[:, 0].double()
    q = np.sort((val_mean - val_true).abs().numpy())[math.ceil((len(val) + 1) * 0.5) - 1]
    calibration = uncertainty.read_calibration(out)
    assert calibration["quantile"]["tpsa"] == pytest.approx(q, rel=1e-4)
    inside = ((mean - q <= true) & (true <= mean + q)).double().mean()
    assert metrics["test_conformal_coverage"]["tpsa"]["mean"] == pytest.approx(float(inside))
    assert metrics["conformal"] == {"level": 0.5, "scale": "none",
                                    "quantile": calibration["quantile"]}

    # the loaded run: every member, and each prediction with its interval mean -+ q
    predictor = structrnn.load(out)
    assert len(predictor.models) == 3
    smiles = [g.smiles for g in test[:4]]
    rows = predictor.predict(smiles + ["not a smiles"])
    for row, m in zip(rows, mean[:4].tolist(), strict=False):
        assert row["error"] is None
        assert row["tpsa"] == pytest.approx(m, rel=1e-4)
        assert row["tpsa_low"] == pytest.approx(row["tpsa"] - q, rel=1e-4)
        assert row["tpsa_high"] == pytest.approx(row["tpsa"] + q, rel=1e-4)
    assert rows[-1]["error"] and rows[-1]["tpsa_low"] is None and rows[-1]["tpsa_high"] is None
    again = structrnn.load(predictor.save(tmp_path / "run.pt"))  # the calibration travels
    assert again.predict(smiles[:1])[0]["tpsa_high"] == pytest.approx(rows[0]["tpsa_high"])


def test_ensemble_flags_are_checked(tmp_path):
    base = ["--dataset", "builtin", "--max-molecules", "40", "--epochs", "1", "--out",
            str(tmp_path / "r"), *TINY]
    with pytest.raises(structrnn.InputError, match="--ensemble"):
        molecules([*base, "--ensemble", "0"])
    with pytest.raises(structrnn.InputError, match="--conformal"):
        molecules([*base, "--conformal", "90"])
    with pytest.raises(structrnn.InputError, match="--conformal-scale spread"):
        molecules([*base, "--conformal", "0.9", "--conformal-scale", "spread"])
    with pytest.raises(structrnn.InputError, match="regression"):
        molecules([*base, "--target", "lipinski", "--conformal", "0.9"])


# --- the fair protocol --------------------------------------------------------------------------

GRID = ["--grid", '{"hidden": [8, 16], "dropout": [0, 0.5]}']
FAIR = ["--protocol", "fair", "--folds", "3", "--epochs", "3", "--fair-repeats", "2", *TINY]


def test_fair_protocol_reports_grid_choices_and_folds(tmp_path):
    write_tu(tmp_path / "data", "SET", attributes=2, edge_labels=True)
    out = tmp_path / "run"
    metrics = tu(["--name", "SET", "--data", str(tmp_path / "data"), "--out", str(out),
                  "--protocol", "fair", "--folds", "3", "--epochs", "2", "--no-progress",
                  "--threads", "1", "--batch-size", "8"])
    assert metrics["protocol"] == "fair" and metrics["seeds"] == [0]
    assert len(metrics["grid"]) == 8  # the default grid
    assert {json.dumps(g, sort_keys=True) for g in metrics["grid"]} == {
        json.dumps({"hidden": h, "steps": s, "dropout": d}, sort_keys=True)
        for h in (32, 64) for s in (2, 4) for d in (0.0, 0.5)}
    assert len(metrics["folds"]) == 3
    for fold in metrics["folds"]:
        assert fold["chosen"] in metrics["grid"] and len(fold["grid_scores"]) == 8
        best = min(fold["grid_scores"], key=lambda g: g["inner_score"])
        assert fold["inner_score"] == best["inner_score"] and fold["chosen"] == best["settings"]
        assert fold["test_accuracy"] == pytest.approx(np.mean(fold["test_accuracies"]))
        assert len(fold["test_accuracies"]) == 3  # --fair-repeats 3
    accuracies = [f["test_accuracy"] for f in metrics["folds"]]
    assert metrics["test_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert metrics["test_accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    # each repeat trained with its fold's chosen setting
    for unit in metrics["units"]:
        fold = next(f for f in metrics["folds"] if unit["unit"].startswith(f["fold"] + "-"))
        assert {k: unit["settings"][k] for k in fold["chosen"]} == fold["chosen"]
    config = json.loads((out / "config.json").read_text())
    assert data.unit_names(config) == [u["unit"] for u in metrics["units"]]
    assert set(config["fair"]) == {f["fold"] for f in metrics["folds"]}


def test_fair_protocol_never_looks_at_a_test_fold(tmp_path, monkeypatch):
    """Flip the labels of outer fold 0's test graphs (the split kept): fold 0's every selection
    decision (each setting's inner score, the choice, the repeats' epochs) is unchanged, while
    its test accuracy turns into 1 - itself (the same predictions, the opposite labels); the
    other folds, which train on those graphs, see the change."""
    written = write_tu(tmp_path / "data", "SET", node_labels=False)
    test0 = set(stratified_kfold(written["classes"], 3, 0)[0][1].tolist())
    original = task.prepare

    def flipped(args):
        prep = original(args)
        graphs = []
        for i in range(len(prep.graphs)):
            g = copy.copy(prep.graphs[i])
            if i in test0:
                g.y = 1 - g.y
            graphs.append(g)
        prep.graphs = graphs  # prep.labels, which the outer split stratifies on, unchanged
        return prep

    runs = []
    for name in ("plain", "flipped"):
        if name == "flipped":
            monkeypatch.setattr(task, "prepare", flipped)
        runs.append(tu(["--name", "SET", "--data", str(tmp_path / "data"), "--out",
                        str(tmp_path / name), *GRID, *FAIR]))
    plain, flip = (r["folds"][0] for r in runs)
    assert flip["grid_scores"] == plain["grid_scores"]
    assert (flip["chosen"], flip["inner_score"]) == (plain["chosen"], plain["inner_score"])
    epochs = [[u["best_epoch"] for u in r["units"] if u["fold"] == 0] for r in runs]
    assert epochs[0] == epochs[1]
    assert flip["test_accuracies"] == pytest.approx([1 - a for a in plain["test_accuracies"]])
    # the test can fail: the folds that train on the flipped graphs do score differently
    for fold in (1, 2):
        assert runs[0]["folds"][fold]["grid_scores"] != runs[1]["folds"][fold]["grid_scores"]


def test_fair_protocol_replays_its_choices_from_config(tmp_path):
    write_tu(tmp_path / "data", "SET")
    out = tmp_path / "run"
    first = tu(["--name", "SET", "--data", str(tmp_path / "data"), "--out", str(out),
                *GRID, *FAIR])
    again = tu(["--config", str(out / "config.json"), "--out", str(tmp_path / "replay")])
    assert [f["chosen"] for f in again["folds"]] == [f["chosen"] for f in first["folds"]]
    assert again["test_accuracy"] == first["test_accuracy"]


def test_fair_protocol_flags_are_checked(tmp_path):
    base = ["--name", "SET", "--data", str(tmp_path), "--out", str(tmp_path / "r"), *FAIR]
    with pytest.raises(structrnn.InputError, match="--tune"):
        tu([*base, "--tune", "2"])
    with pytest.raises(structrnn.InputError, match="--fair-repeats"):
        tu([*base, "--fair-repeats", "12"])
    with pytest.raises(SystemExit):
        tu([*base, "--grid", '{"colour": [1]}'])


# --- tuning processes sharing one study ---------------------------------------------------------

TUNE = ["--dataset", "builtin", "--max-molecules", "40", "--epochs", "2", "--seeds", "0",
        *TINY]


def test_a_fresh_tuned_run_keeps_its_study_in_the_run_folder(tmp_path):
    import optuna

    out = tmp_path / "run"
    metrics = molecules([*TUNE, "--tune", "1", "--out", str(out)])
    study = optuna.load_study(study_name="run.seed0", storage=f"sqlite:///{out / 'tune.db'}")
    assert len(study.trials) == 1
    assert metrics["chosen"][0]["hidden"] == study.best_trial.params["hidden"]


def test_two_processes_share_one_study(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "STRUCTRNN_CACHE": str(tmp_path / "cache")}
    # the molecules featurised once, so that the two processes start on the same footing
    builtin_molecules("tpsa", max_molecules=40, cache_dir=tmp_path / "cache")
    procs = [subprocess.Popen([sys.executable, "-m", "structrnn", "train", "molecules", *TUNE,
                               "--tune", "2", "--tune-storage", storage, "--study", "shared",
                               "--out", str(tmp_path / name)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    study = optuna.load_study(study_name="shared.seed0", storage=storage)
    trials = study.trials
    assert len(trials) == 4 and sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    per_process = [t.user_attrs["process"] for t in trials]
    assert sorted(per_process.count(p) for p in set(per_process)) == [2, 2]
    params = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(params)) == 4  # no trial proposed twice

    tuned = [json.loads((tmp_path / n / "config.json").read_text())["tuned"]["seed0"]
             for n in ("a", "b")]
    for t in tuned:  # each process trained with a finished trial of the study
        trial = trials[t["trial"]]
        assert t["best_val_score"] == trial.value
        assert {k: t[k] for k in trial.params} == pytest.approx(trial.params)
    # the process that finished last saw every trial: the study's best
    assert study.best_trial.number in [t["trial"] for t in tuned]
    # and the best trial replays from config.json, without a search
    best = next(n for n, t in zip("ab", tuned, strict=True)
                if t["trial"] == study.best_trial.number)
    first = json.loads((tmp_path / best / "metrics.json").read_text())
    again = molecules(["--config", str(tmp_path / best / "config.json"),
                       "--out", str(tmp_path / "replay"), "--no-progress"])
    assert len(optuna.load_study(study_name="shared.seed0", storage=storage).trials) == 4
    assert again["chosen"] == first["chosen"]
    assert again["chosen"][0]["hidden"] == study.best_trial.params["hidden"]
    assert again["test_rmse"]["tpsa"]["mean"] == pytest.approx(first["test_rmse"]["tpsa"]["mean"])
