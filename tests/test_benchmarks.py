"""The benchmarks are modules of the package: they run from outside the source tree (what
``structrnn bench NAME`` does from an installed copy), find data and peers from flags whose
defaults come from $STRUCTRNN_DATA or ../shared, and skip what is absent with a line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from structrnn import benchmarks

REPO = Path(__file__).resolve().parents[1]
TINY_SEQUENCE = ["--batch", "1", "--seq", "2", "--hidden", "4", "--input", "4", "--repeats", "1",
                 "--warmup", "0", "--threads", "1"]


def run_outside(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("STRUCTRNN_DATA", None)
    return subprocess.run([sys.executable, *cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("cmd", [["-m", "structrnn.benchmarks.sequence"],
                                 ["-m", "structrnn", "bench", "sequence"]],
                         ids=["module", "cli"])
def test_sequence_benchmark_runs_outside_the_repository(tmp_path, cmd):
    done = run_outside([*cmd, *TINY_SEQUENCE], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "torch.nn.LSTM" in done.stdout and "sr.LSTM fused" in done.stdout


def test_source_tree_launcher_runs_the_module(tmp_path):
    done = run_outside([str(REPO / "benchmarks" / "bench_sequence.py"), *TINY_SEQUENCE],
                       tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "workload: LSTM input 4, hidden 4" in done.stdout


def test_trees_benchmark_runs_its_subprocesses_outside_the_repository(tmp_path):
    sst = tmp_path / "sst"
    sst.mkdir()
    (sst / "train.txt").write_text("(3 (2 It) (4 (3 works) (2 .)))\n(1 (1 Bad) (2 film))\n"
                                   "(2 (2 A) (2 (2 plain) (2 day)))\n")
    done = run_outside(["-m", "structrnn.benchmarks.trees", "--data", str(sst), "--peers",
                        str(tmp_path / "no_peers"), "--trees", "3", "--batch", "3", "--repeats",
                        "1", "--rounds", "1", "--hidden", "4", "--threads", "1"], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["impl"] for r in records) == ["op-by-op", "per-node", "structrnn"]
    assert all(r["trees_per_s"] > 0 for r in records)
    assert "dgl: skipped (no peer script" in done.stdout


def test_trees_benchmark_without_data_says_so(tmp_path):
    done = run_outside(["-m", "structrnn.benchmarks.trees"], tmp_path)
    assert done.returncode == 2
    assert "no SST train.txt" in done.stderr and "--data" in done.stderr


def test_default_data_and_peers(tmp_path, monkeypatch):
    work, shared = tmp_path / "work", tmp_path / "shared"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("STRUCTRNN_DATA", raising=False)
    assert benchmarks.default_data() is None and benchmarks.default_peers() is None
    (shared / "datasets").mkdir(parents=True)
    (shared / "peers").mkdir()
    assert benchmarks.default_data().resolve() == (shared / "datasets").resolve()
    assert benchmarks.default_peers().resolve() == (shared / "peers").resolve()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "peers").mkdir(parents=True)
    monkeypatch.setenv("STRUCTRNN_DATA", str(elsewhere / "datasets"))
    assert benchmarks.default_data() == elsewhere / "datasets"
    assert benchmarks.default_peers() == elsewhere / "peers"


@pytest.mark.parametrize("name, flags", [
    ("sequence", TINY_SEQUENCE),
    ("graphs", ["--graphs", "2", "--hidden", "4", "--iters", "1", "--repeats", "1",
                "--threads", "1"]),
    ("dags", ["--graphs", "2", "--depth", "3", "--hidden", "4", "--repeats", "1",
              "--threads", "1"]),
    ("molecules", ["--molecules", "20", "--rounds", "1", "--threads", "1", "--skip-training"])])
def test_json_records_render_in_the_readme_table(tmp_path, name, flags):
    out = tmp_path / f"{name}.json"
    done = run_outside(["-m", f"structrnn.benchmarks.{name}", *flags, "--json", str(out)],
                       tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["benchmark"] == name and record["machine"]["cores"] == os.cpu_count()
    assert isinstance(record["quiet"], bool) and record["load_after"] >= 0
    assert record["command"].startswith(f"python structrnn/benchmarks/{name}.py")
    assert str(tmp_path) not in out.read_text()  # no path of this machine: it may be committed
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import figures
    finally:
        sys.path.pop(0)
    table = figures.render([record])
    assert f"`python benchmarks/bench_{name}.py --" in table
    assert record["summary"][0]["figure"] in table and table.count("\n") == 2


def test_stored_results_hold_no_machine_paths():
    for path in sorted((REPO / "benchmarks" / "results").glob("*.json")):
        text = path.read_text()
        assert str(REPO) not in text and '"/' not in text, path.name


def test_bench_record_spells_the_command_from_the_arguments_main_parsed(tmp_path):
    from structrnn.benchmarks.trees import bench_record, machine

    record = bench_record("sst", ["--data", str(tmp_path / "sst"), "--", "--hidden", "4"],
                          machine(1), [{"what": "w", "figure": "f"}], runs=[str(tmp_path)])
    assert record["command"] == (f"python structrnn/benchmarks/sst.py --data "
                                 f"{tmp_path.name}/sst -- --hidden 4")
    assert record["runs"] == ["/".join(tmp_path.parts[-2:])]
    assert record["quiet"] == (record["load_before"] <= 0.5)
