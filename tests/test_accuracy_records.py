"""The README's accuracy table is generated from trained runs: ``structrnn bench accuracy RUN``
spells a run's command from its config.json and its figure from its metrics.json, and
``benchmarks/figures.py`` puts the stored records in the README."""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path

import pytest

from structrnn.benchmarks import accuracy
from structrnn.cli import main as cli_main
from structrnn.tasks.sentiment.task import TASK as SST
from structrnn.training.task import parse_args
from tests.test_speed_paths import figures_module

REPO = Path(__file__).resolve().parents[1]
STORED = REPO / "benchmarks" / "results" / "accuracy"


@pytest.fixture(scope="module")
def sst_run(tmp_path_factory):
    """A tiny synthetic SST run of two seeds (an ensemble)."""
    out = tmp_path_factory.mktemp("acc") / "run"
    code = cli_main(["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "60",
                     "--hidden", "8", "--embed-dim", "8", "--epochs", "1", "--seeds", "0,1",
                     "--word-dropout", "0.1", "--threads", "1", "--no-progress",
                     "--out", str(out)])
    assert code == 0
    return out


def test_the_figure_is_the_mean_and_spread_of_every_seed_then_the_ensemble(sst_run):
    metrics = json.loads((sst_run / "metrics.json").read_text())
    fine = [u["test_fine_root"] for u in metrics["units"]]
    assert len(fine) == 2
    text = accuracy.figure_text("sst", metrics)
    # the mean and the sample standard deviation, computed here from the seeds' own figures
    expected = (f"test fine root {100 * statistics.fmean(fine):.1f} +- "
                f"{100 * statistics.stdev(fine):.1f} "
                f"({100 * fine[0]:.1f}, {100 * fine[1]:.1f}), "
                f"ensemble {100 * metrics['ensemble']['test_fine_root']:.1f}")
    assert text.startswith("2 seeds: ") and expected in text


def test_the_command_replays_the_run(sst_run):
    rec = accuracy.record(sst_run, "tiny")
    words = shlex.split(rec["command"])
    assert words[:3] == ["structrnn", "train", "sst"]
    assert "--out" not in words and "--no-progress" not in words
    assert words[words.index("--threads") + 1] == "1"  # the run recorded its machine
    config = json.loads((sst_run / "config.json").read_text())
    replayed = vars(parse_args(SST, words[3:]))
    for key, value in config.items():
        if key in replayed and key not in accuracy.NOT_IN_COMMAND:
            assert replayed[key] == value, key


def test_a_record_holds_no_per_epoch_lists_and_no_machine_paths(sst_run, tmp_path):
    out = tmp_path / "rec.json"
    assert accuracy.main([str(sst_run), "--what", "tiny", "--note", "n", "--json",
                          str(out)]) == 0
    text = out.read_text()
    rec = json.loads(text)
    assert rec["kind"] == "accuracy" and rec["task"] == "sst" and rec["note"] == "n"
    assert "epoch_seconds" not in rec["metrics"] and rec["epoch_seconds"]["mean"] > 0
    assert str(tmp_path) not in text and '"/' not in text
    assert rec["machine"]["threads"] == 1 and rec["machine"]["cores"] >= 1


def test_paths_of_the_shared_data_are_spelled_as_the_readme_does():
    assert accuracy._flag_value("/x/y/shared/datasets/sst") == "../shared/datasets/sst"
    assert accuracy._flag_value("/x/shared/datasets") == "../shared/datasets"
    assert accuracy._flag_value([0, 1, 2]) == "0,1,2"


def test_a_fair_run_reads_over_its_outer_folds():
    metrics = {"protocol": "fair", "grid": [{}, {}], "seeds": [0],
               "folds": [{"test_accuracy": 0.8}, {"test_accuracy": 0.9}],
               "test_accuracy": {"mean": 0.85, "std": 0.0707}}
    assert accuracy.figure_text("tu", metrics) == (
        "2 outer folds, 2 settings chosen on an inner hold-out per fold: "
        "test accuracy 85.0 +- 7.1 (80.0, 90.0)")


def test_stored_records_are_what_their_config_and_metrics_give():
    stored = sorted(STORED.glob("*.json"))
    if not stored:
        pytest.skip("no stored accuracy records")
    for path in stored:
        rec = json.loads(path.read_text())
        assert rec["figure"] == accuracy.figure_text(rec["task"], rec["metrics"]), path.name
        assert rec["command"] == accuracy.command_line(
            rec["task"], rec["config"], rec["machine"].get("threads")), path.name
        assert '"/' not in path.read_text(), path.name


def test_the_readme_accuracy_table_is_what_the_stored_records_render():
    figures = figures_module()
    stored = sorted(STORED.glob("*.json"))
    if not stored:
        pytest.skip("no stored accuracy records")
    records = [json.loads(p.read_text()) for p in stored]
    readme = (REPO / "README.md").read_text()
    table = figures.render_accuracy(records)
    assert figures.replace_table(readme, table, figures.ACCURACY_START,
                                 figures.ACCURACY_END) == readme


def test_a_folder_that_is_not_a_finished_run_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        accuracy.main([str(tmp_path), "--what", "x"])
    assert stop.value.code == 2
    assert "without metrics.json" in capsys.readouterr().err


def test_a_molecule_run_reads_its_first_target_or_every_target_and_its_validation():
    one = {"targets": ["logS"], "kind": "regression", "seeds": [0, 1],
           "splits": [{"test_rmse": {"logS": 0.5}}, {"test_rmse": {"logS": 0.7}}],
           "units": [{"best_val_score": 0.4}, {"best_val_score": 0.6}],
           "test_rmse": {"logS": {"mean": 0.6, "std": 0.1414}}}
    assert accuracy.figure_text("molecules", one) == (
        "2 seeds: test RMSE 0.600 +- 0.141 (0.500, 0.700); validation RMSE 0.500 +- 0.141")
    many = {"targets": ["mu", "gap"], "kind": "regression", "seeds": [0],
            "units": [{}], "test_mae": {"mu": {"mean": 0.71614, "std": 0.0},
                                        "gap": {"mean": 0.011241, "std": 0.0}}}
    assert accuracy.figure_text("molecules", many) == "1 seed: test MAE mu 0.7161, gap 0.01124"
