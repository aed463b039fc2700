"""Short runs of `structrnn train molecules|tu`: files, metrics keys, learning, resume."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("rdkit")
from structrnn.tasks.molecules import task  # noqa: E402
from structrnn.training.task import train as train_task  # noqa: E402
from tests.conftest import require_dataset  # noqa: E402

TINY = ["--hidden", "16", "--steps", "2", "--batch-size", "16", "--lr", "3e-3", "--no-progress"]


def molecules(argv: list[str]) -> dict:
    return train_task(task.TASK, argv)


def tu(argv: list[str]) -> dict:
    return train_task(task.TU, argv)


@pytest.fixture(autouse=True)
def _cache_and_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny graphs: threads only add overhead on a busy machine
    yield
    torch.set_num_threads(threads)


def test_builtin_trains_and_writes_files(tmp_path):
    out = tmp_path / "run"
    metrics = molecules(["--dataset", "builtin", "--max-molecules", "64", "--epochs", "5",
                         "--seeds", "0,1", "--out", str(out), *TINY])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_r2"] == metrics["test_r2"]
    for key in ("test_rmse", "test_mae", "test_r2", "epoch_seconds", "best_epoch", "units"):
        assert key in saved
    assert set(saved["test_rmse"]["tpsa"]) == {"mean", "std"}
    assert len(saved["units"]) == 2 and saved["readout"] == "atom-sum"
    for unit in saved["units"]:
        assert unit["train_loss_last"] < unit["train_loss_first"]
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "builtin" and config["epochs"] == 5
    assert (out / "scatter.png").stat().st_size > 0
    assert (out / "atom_contributions.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "units").iterdir()) == ["seed0", "seed1"]
    for unit in ("seed0", "seed1"):
        assert {"checkpoint.pt", "best.pt", "metrics.jsonl"} <= {
            p.name for p in (out / "units" / unit).iterdir()}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["unit"], r["epoch"]) for r in lines] == [
        (u, e) for u in ("seed0", "seed1") for e in range(1, 6)]
    # what predicting in real units needs is saved beside the best weights
    best = torch.load(out / "units" / "seed0" / "best.pt", weights_only=True)
    assert best["target_names"] == ["tpsa"] and best["target_std"].shape == (1,)


def test_atom_sum_is_a_sum_of_atom_contributions():
    from torch_geometric.data import Batch

    from structrnn.datasets.molecules import from_smiles
    from structrnn.tasks.molecules.model import MoleculeModel

    model = MoleculeModel(58, 18, 1, hidden=8, steps=2, readout="atom-sum").double()
    batch = Batch.from_data_list([from_smiles(s) for s in ("CCO", "c1ccccc1", "[Na+].[Cl-]")])
    batch.x, batch.edge_attr = batch.x.double(), batch.edge_attr.double()
    per_atom = model.atom_contributions(batch)
    expected = torch.stack([per_atom[batch.batch == g].sum(0) for g in range(3)])
    torch.testing.assert_close(model(batch), expected)


def test_resume_gives_identical_results(tmp_path, monkeypatch):
    args = ["--dataset", "builtin", "--max-molecules", "60", "--epochs", "4", "--seeds", "0",
            *TINY]
    straight = molecules([*args, "--out", str(tmp_path / "a")])

    from structrnn.training import loop

    real_save, calls = loop.save_checkpoint, []

    def interrupted(path, **state):
        real_save(path, **state)
        calls.append(path)
        if len(calls) == 4:  # best.pt and checkpoint.pt of two epochs (both improve)
            raise KeyboardInterrupt  # stopped after the second epoch's checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        molecules([*args, "--out", str(tmp_path / "b")])
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert torch.load(tmp_path / "b" / "units" / "seed0" / "checkpoint.pt",
                      weights_only=True)["epoch"] < 4
    resumed = molecules([*args, "--out", str(tmp_path / "b"), "--resume"])
    assert resumed["test_rmse"] == straight["test_rmse"]
    assert resumed["units"][0]["train_loss_last"] == straight["units"][0]["train_loss_last"]
    assert resumed["best_epoch"] == straight["best_epoch"]
    # a finished run resumes to the same metrics without training
    assert molecules([*args, "--out", str(tmp_path / "b"), "--resume"])["test_rmse"] == \
        straight["test_rmse"]
    with pytest.raises(ValueError, match="hidden"):
        molecules([*args, "--out", str(tmp_path / "b"), "--resume", "--hidden", "8"])


def test_esol_slice(tmp_path):
    root = require_dataset("esol")
    metrics = molecules(["--data", str(root.parent), "--dataset", "esol", "--max-molecules",
                         "80", "--epochs", "3", "--seeds", "0", "--split", "scaffold",
                         "--out", str(tmp_path / "esol"), *TINY])
    name = task.ESOL_TARGET
    assert metrics["targets"] == [name] and metrics["test_rmse"][name]["mean"] > 0
    assert metrics["units"][0]["train_loss_last"] < metrics["units"][0]["train_loss_first"]


def test_mutag_cross_validation(tmp_path):
    root = require_dataset("mutag")
    metrics = tu(["--data", str(root.parent), "--max-molecules",
                         "60", "--folds", "3", "--epochs", "2", "--seeds", "0", "--out",
                         str(tmp_path / "mutag"), *TINY])
    assert metrics["kind"] == "classification" and len(metrics["units"]) == 3
    assert 0.0 <= metrics["test_accuracy"]["mean"] <= 1.0
    tested = sum(u["sizes"][2] for u in metrics["units"])
    assert tested == 60  # every graph tested exactly once
    assert "0" in json.loads((tmp_path / "mutag" / "metrics.json").read_text())[
        "test_accuracy_gin_protocol"]


def test_bad_flags(tmp_path):
    with pytest.raises(ValueError, match="--data"):
        molecules(["--dataset", "esol", "--data", str(tmp_path / "nowhere"), "--out",
                   str(tmp_path)])
    with pytest.raises(SystemExit):
        molecules(["--dataset", "nope"])


def test_example_script_runs_tiny(tmp_path, capsys):
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("example_molecules",
                                                  REPO / "examples" / "molecules.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "ex"
    rows = example.main(["--max-molecules", "40", "--epochs", "2", "--seeds", "0,1",
                         "--hidden", "8", "--out", str(out)])
    assert (out / "metrics.json").is_file() and (out / "model.pt").is_file()
    assert [r["input"] for r in rows] == ["CCO", "c1ccccc1", "not-a-smiles"]
    assert all(isinstance(r["tpsa"], float) and r["tpsa_std"] >= 0 for r in rows[:2])
    assert rows[2]["tpsa"] is None and "not-a-smiles" in rows[2]["error"]
    # the file it saved predicts what the run folder does
    import structrnn

    assert structrnn.load(out).predict(example.NEW_MOLECULES) == rows
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if line.startswith("{")]
    assert printed == rows


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from structrnn.training.checkpoint import load_checkpoint
    from structrnn.training.loop import NonFiniteError

    out = tmp_path / "run"
    calls = {"n": 0}
    original = task.Unit.loss

    def loss(self, model, batch):  # 64 molecules, batches of 16: 4 steps an epoch
        calls["n"] += 1
        value, shown = original(self, model, batch)
        if calls["n"] == 4 + 3:  # epoch 2, step 3
            return value * float("nan"), shown * float("nan")
        return value, shown

    monkeypatch.setattr(task.Unit, "loss", loss)
    with pytest.raises(NonFiniteError, match=r"epoch 2, step 3"):
        molecules(["--dataset", "builtin", "--max-molecules", "64", "--epochs", "3",
                   "--seeds", "0", "--out", str(out), *TINY])
    state = load_checkpoint(out / "units" / "seed0" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values()
               if torch.is_tensor(v) and v.is_floating_point())


def test_rdkit_global_features_join_the_readout(tmp_path):
    root = require_dataset("esol")
    metrics = molecules(["--data", str(root.parent), "--dataset", "esol", "--max-molecules",
                         "60", "--epochs", "3", "--seeds", "0", "--global-features", "rdkit",
                         "--readout", "sum", "--out", str(tmp_path / "esol"), *TINY])
    assert metrics["units"][0]["train_loss_last"] < metrics["units"][0]["train_loss_first"]
    state = torch.load(tmp_path / "esol" / "units" / "seed0" / "checkpoint.pt", weights_only=True)
    from rdkit.Chem import Descriptors

    # sum readout (hidden 16) followed by one column per RDKit descriptor
    assert state["model"]["head.0.weight"].shape[1] == 16 + len(Descriptors._descList)


def test_defaults_are_the_measured_recipe_and_old_runs_replay_their_own(tmp_path):
    from structrnn.training.task import parse_args

    def settled(t, argv: list[str]) -> tuple[str, str]:
        args = parse_args(t, argv)
        task.resolve_defaults(args)
        return args.model, args.global_features

    for dataset in ("esol", "qm9", "csv"):  # the recipe of the README's molecule table
        assert settled(task.TASK, ["--dataset", dataset]) == ("dmpnn", "rdkit")
    # builtin's targets are RDKit descriptors: no descriptors; TU sets have no SMILES
    assert settled(task.TASK, ["--dataset", "builtin"]) == ("dmpnn", "none")
    assert settled(task.TU, []) == ("gn-gru", "none")
    assert settled(task.TASK, ["--dataset", "esol", "--global-features", "none",
                               "--model", "gn-gru"]) == ("gn-gru", "none")
    # config.json stores every flag: a run made under the old defaults replays with them
    old = tmp_path / "config.json"
    old.write_text(json.dumps({"task": "molecules", "dataset": "esol", "model": "gn-gru",
                               "global_features": "none", "hidden": 128}))
    assert settled(task.TASK, ["--config", str(old)]) == ("gn-gru", "none")
    assert settled(task.TASK, ["--config", str(old), "--model", "dmpnn"]) == ("dmpnn", "none")


def test_global_features_refused_where_they_make_no_sense(tmp_path):
    with pytest.raises(ValueError, match="the answer"):
        molecules(["--dataset", "builtin", "--global-features", "rdkit", "--out",
                   str(tmp_path / "b"), *TINY])
    root = require_dataset("mutag")
    with pytest.raises(SystemExit):  # train tu has no --global-features
        tu(["--data", str(root.parent), "--global-features",
                   "rdkit", "--out", str(tmp_path / "m"), *TINY])
    from structrnn.tasks.molecules.model import MoleculeModel

    with pytest.raises(ValueError, match="atom-sum"):
        MoleculeModel(58, 18, 1, readout="atom-sum", global_in=4)


def test_qm9_defaults_to_a_sum_readout_and_reports_every_target(tmp_path):
    root = require_dataset("qm9")
    metrics = molecules(["--data", str(root.parent), "--dataset", "qm9", "--max-molecules", "60",
                         "--epochs", "1", "--seeds", "0", "--out", str(tmp_path / "qm9"),
                         *TINY])
    assert metrics["readout"] == "sum"
    assert set(metrics["test_mae"]) == set(task.QM9_TARGETS)


def test_tune_searches_on_validation_saves_the_choice_and_replays(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from structrnn import cli
    from structrnn.tasks.molecules import tune

    sizes = []  # the test split of every unit built: the trials' and the final one
    original = task.Unit.__init__

    def init(self, args, prep, unit, device):
        original(self, args, prep, unit, device)
        sizes.append(len(self.test_set))

    monkeypatch.setattr(task.Unit, "__init__", init)
    out = tmp_path / "tuned"
    flags = ["--dataset", "builtin", "--max-molecules", "48", "--epochs", "4", "--seeds", "0",
             *TINY]
    metrics = molecules([*flags, "--tune", "3", "--out", str(out)])
    assert sizes[:3] == [0, 0, 0] and sizes[3] > 0  # trials never hold the test split
    tuned = json.loads((out / "config.json").read_text())["tuned"]["seed0"]
    assert tuned["trials"] == 3 and 1 <= tuned["epochs"] <= 4
    chosen = metrics["chosen"][0]
    assert {k: chosen[k] for k in task.TUNED_KEYS} == {k: tuned[k] for k in task.TUNED_KEYS}
    best = torch.load(out / "units" / "seed0" / "best.pt", weights_only=True)
    assert best["model_args"]["hidden"] == tuned["hidden"]
    assert best["model_args"]["steps"] == tuned["steps"]
    assert metrics["tune_seconds"] > 0

    def no_search(*args, **kwargs):
        raise AssertionError("a replay must not search again")

    monkeypatch.setattr(tune, "search", no_search)
    assert cli.main(["train", "molecules", "--config", str(out / "config.json"), "--out",
                     str(tmp_path / "replay"), "--no-progress"]) == 0
    replay = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    assert replay["test_rmse"] == metrics["test_rmse"] and replay["chosen"] == metrics["chosen"]
    import structrnn

    row = structrnn.load(out).predict(["CCO"])[0]
    assert row["error"] is None and isinstance(row["tpsa"], float)


def test_optuna_is_imported_only_when_tuning(tmp_path, monkeypatch):
    import subprocess
    import sys

    code = ("import sys, structrnn.tasks.molecules.task, structrnn.tasks.molecules.tune\n"
            "assert 'optuna' not in sys.modules\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"structrnn\[tune\]"):
        molecules(["--dataset", "builtin", "--max-molecules", "30", "--epochs", "1", "--seeds",
                   "0", "--tune", "2", "--out", str(tmp_path / "t"), *TINY])
