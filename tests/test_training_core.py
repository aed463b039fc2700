"""The one training core (issue 14): every task takes the run flags, --config replays with the
typed flags winning, a replay never writes into an existing run, files honour the umask, the
metrics survive a missing matplotlib, bad input exits 2 while a library bug keeps its
traceback, and the command line starts without importing the tasks or PyG."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from structrnn import cli
from structrnn._io import atomic_write, write_json
from tests.conftest import REPO

SST = ["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "40", "--batch-size",
       "10", "--hidden", "6", "--embed-dim", "6", "--no-progress"]
RUN_FLAGS = ("--out", "--epochs", "--seed", "--device", "--threads", "--amp", "--ema",
             "--clip-grad", "--clip-grad-value", "--tensorboard", "--no-progress", "--resume",
             "--overwrite", "--config")


@pytest.mark.parametrize("task", sorted(cli.TASKS))
def test_every_train_command_takes_the_run_flags(task):
    parser = cli.build_parser(task)
    train = parser._subparsers._group_actions[0].choices["train"]
    sub = train._subparsers._group_actions[0].choices[task]
    flags = {s for action in sub._actions for s in action.option_strings}
    assert set(RUN_FLAGS) <= flags, set(RUN_FLAGS) - flags


def test_config_replay_lets_typed_flags_win_even_at_their_default(tmp_path):
    """Bug 1: --epochs 10 equals the default, yet it must beat the config's 1."""
    first = tmp_path / "first"
    assert cli.main([*SST, "--epochs", "1", "--out", str(first)]) == 0
    config = json.loads((first / "config.json").read_text())
    config["epochs"] = 1
    write_json(first / "config.json", config)
    replay = tmp_path / "replay"
    assert cli.main(["train", "sst", "--config", str(first / "config.json"), "--epochs", "2",
                     "--hidden", "6", "--no-progress", "--out", str(replay)]) == 0
    assert json.loads((replay / "config.json").read_text())["epochs"] == 2
    lines = (replay / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    # the untyped settings come from the file
    assert json.loads((replay / "config.json").read_text())["synthetic_trees"] == 40


def test_a_replay_never_writes_into_an_existing_run(tmp_path, capsys):
    """Bug 2: --config RUN/config.json used to train into RUN itself."""
    run = tmp_path / "run"
    assert cli.main([*SST, "--epochs", "1", "--out", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    code = cli.main(["train", "sst", "--config", str(run / "config.json"), "--out", str(run),
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # explicit choices still work: resume it, or replace it
    assert cli.main([*SST, "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert cli.main([*SST, "--epochs", "1", "--out", str(run), "--overwrite"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_run_files_honour_the_umask(tmp_path):
    """Bug 3: mkstemp's 0600 leaked into config.json, metrics.json and the checkpoints."""
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.json", lambda f: f.write(b"{}"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o077)
        path = atomic_write(tmp_path / "b.json", lambda f: f.write(b"{}"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        os.umask(0o022)
        run = tmp_path / "run"
        assert cli.main([*SST, "--epochs", "1", "--out", str(run)]) == 0
        for name in ("config.json", "metrics.json", "best.pt", "checkpoint.pt"):
            assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name
    finally:
        os.umask(old)


def test_without_matplotlib_the_metrics_are_written_and_a_notice_says_why(
        tmp_path, monkeypatch, capsys):
    """Bug 4: a missing matplotlib raised after training and lost the pictures' run."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    run = tmp_path / "run"
    assert cli.main([*SST, "--epochs", "1", "--out", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    assert not (run / "learning_curves.png").exists()
    assert "no learning_curves.png" in capsys.readouterr().err


def test_bad_input_exits_2_but_a_library_bug_keeps_its_traceback(tmp_path, monkeypatch,
                                                                   capsys):
    assert cli.main([*SST, "--ema", "1.5", "--out", str(tmp_path / "a")]) == 2
    assert "--ema" in capsys.readouterr().err
    from structrnn.tasks.sentiment import task

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the library")

    monkeypatch.setattr(task, "build_model", broken)
    with pytest.raises(ValueError, match="a bug inside the library"):
        cli.main([*SST, "--out", str(tmp_path / "b")])


def test_summary_on_stdout_notices_on_stderr(tmp_path, capsys):
    assert cli.main([*SST, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["epochs"] == 1  # stdout is one JSON object
    assert "epoch 1:" in captured.err


def test_help_and_version_import_no_task_and_no_pyg():
    """Bug 11: the parser used to import every task (and PyG) to show --help."""
    code = ("import sys\nfrom structrnn import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('structrnn.tasks', "
            "'torch_geometric', 'rdkit', 'matplotlib'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    version = subprocess.run([sys.executable, "-m", "structrnn.cli", "--version"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("structrnn ")


def test_a_run_leaves_the_process_warning_filters_alone(tmp_path):
    """Bug 9: the SST task used to add a process-wide warnings filter."""
    import warnings

    before = list(warnings.filters)
    assert cli.main([*SST, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert warnings.filters == before


def test_building_a_molecule_unit_does_not_reseed(tmp_path, monkeypatch):
    """Bug 9: the molecule trainer seeded the global generator in its constructor; seeding is
    the caller's (train_unit's) job, so two units built in a row start differently."""
    pytest.importorskip("rdkit")
    import torch

    from structrnn.tasks.molecules import task

    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "cache"))
    parser = task.add_arguments(__import__("argparse").ArgumentParser())
    args = parser.parse_args(["--max-molecules", "30", "--hidden", "8", "--seeds", "0"])
    task.resolve_defaults(args)
    prep = task.prepare(args)
    unit = task.units(args, prep)[0]
    first = task.Unit(args, prep, unit, torch.device("cpu")).model.state_dict()
    second = task.Unit(args, prep, unit, torch.device("cpu")).model.state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_vectors_set_the_embedding_size_unless_told_otherwise(tmp_path, capsys):
    """Bug 12 (the task's side): a 4-d vectors file without --embed-dim trains 4-d
    embeddings; a different --embed-dim is one clear line, exit 2."""
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("good 0.1 0.2 0.3 0.4\nbad -0.1 -0.2 -0.3 -0.4\n")
    common = ["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "40",
              "--batch-size", "10", "--hidden", "6", "--no-progress", "--epochs", "1",
              "--vectors", str(vectors)]
    assert cli.main([*common, "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["embed_dim"] == 4
    capsys.readouterr()
    assert cli.main([*common, "--embed-dim", "6", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "6" in err and "4" in err and len(err.strip().splitlines()) == 1


def test_the_epoch_notice_shows_what_validation_measured():
    from structrnn.training.loop import _shown

    assert _shown({"solved": 0.5, "epoch": 3}, "epoch", "val") == "val solved 0.5"
    assert _shown({"epoch": 3}, "epoch", "val") == "val epoch 3"
    assert _shown({"f1": 0.25}, "f1", "dev") == "dev f1 0.25"
    assert _shown({}, "f1", "dev") == "dev f1 n/a"
    # a sign-flipped selection score stays internal: the task names the figure it stands for
    assert _shown({"val_score": -0.6948, "val_roc_auc": 0.6948}, "val_score", "",
                  ["val_roc_auc"]) == "val roc_auc 0.695"
