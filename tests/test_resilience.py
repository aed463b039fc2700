"""Long runs lose nothing: a loss that turns NaN stops with the epoch and step and keeps the last
good checkpoint; a run killed at any moment (SIGKILL, no clean-up) leaves loadable files and
resumes to the same result; atomic writes, caches and data files survive damage."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

from structrnn import cli
from structrnn._io import atomic_write, write_json
from structrnn.tasks.sentiment import task as sst
from structrnn.training.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from structrnn.training.loop import NonFiniteError
from structrnn.training.task import run_task
from structrnn.trees.ptb import ParseError, read_ptb_file

EPOCHS = 2
# 40 synthetic trees in batches of 10: 4 steps an epoch
RUN = ["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "40", "--hidden", "6",
       "--embed-dim", "6", "--batch-size", "10", "--no-progress", "--epochs", str(EPOCHS)]
COMPARED = ("dev_root", "test_root", "test_fine_root", "test_fine_all_nodes", "best_epoch",
            "epochs")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sst.add_arguments(p)
    return p.parse_args(argv)


def train_in_process(out: Path, *extra: str) -> dict:
    return run_task(sst.TASK, parse(RUN[2:] + ["--out", str(out), *extra]))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The metrics of the same run, never interrupted."""
    out = tmp_path_factory.mktemp("straight")
    return train_in_process(out)


def check_run_folder(out: Path, straight: dict) -> None:
    """A finished run: metrics as an uninterrupted run, one log line per epoch."""
    metrics = json.loads((out / "metrics.json").read_text())
    for key in COMPARED:
        assert metrics[key] == straight[key], (key, metrics[key], straight[key])
    log = (out / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in log]
    assert epochs == list(range(1, EPOCHS + 1)), epochs
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == EPOCHS and len(state["history"]) == EPOCHS


def finite_weights(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state["model"].values())


# -- (a) NaN / Inf -------------------------------------------------------------------------------
def nan_after(monkeypatch, call: int) -> None:
    """Make the model's ``call``-th training forward pass return NaN logits."""
    build = sst.build_model
    count = {"n": 0}

    def hook(module, inputs, output):
        if module.training:
            count["n"] += 1
            if count["n"] == call:
                return output * float("nan")
        return None

    def build_with_hook(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(sst, "build_model", build_with_hook)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch, straight):
    out = tmp_path / "run"
    nan_after(monkeypatch, call=4 + 3)  # epoch 2, step 3
    with pytest.raises(NonFiniteError, match="epoch 2, step 3"):
        train_in_process(out)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and finite_weights(state)
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    monkeypatch.undo()
    # the kept checkpoint is good: resuming from it is the uninterrupted run
    train_in_process(out, "--resume")
    check_run_folder(out, straight)


def test_huge_learning_rate_stops_in_the_first_epoch_without_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"training loss is not finite at epoch 1, step \d"):
        train_in_process(out, "--lr", "1e30", "--embed-lr", "1e30")
    assert not (out / "checkpoint.pt").exists()
    assert (out / "config.json").is_file()


def test_clip_grad_bounds_every_step(tmp_path, monkeypatch):
    clip = torch.nn.utils.clip_grad_norm_
    norms: list[tuple[float, float]] = []

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        result = clip(parameters, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None]))
        norms.append((max_norm, float(after)))
        return result

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    run_task(sst.TASK, parse(RUN[2:-1] + ["1", "--clip-grad", "0.01", "--out", str(tmp_path)]))
    assert len(norms) == 4  # every step
    assert all(m == 0.01 and after <= 0.01 * (1 + 1e-5) for m, after in norms), norms


# -- (b) SIGKILL at any moment -------------------------------------------------------------------
KILL_MID_WRITE = textwrap.dedent("""
    # SIGKILL in the middle of writing the N-th checkpoint.pt (half its bytes on disk)
    import io, os, signal, sys
    import structrnn.training.checkpoint as train
    original, calls, kill_at = train.atomic_write, [0], int(sys.argv[1])

    def killing(path, write):
        if str(path).endswith("checkpoint.pt"):
            calls[0] += 1
            if calls[0] == kill_at:
                def half(f):
                    buf = io.BytesIO()
                    write(buf)
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(path, half)
        return original(path, write)

    train.atomic_write = killing
    from structrnn.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def resume_or_restart(out: Path) -> None:
    """What a user does after a crash: --resume when a checkpoint exists, else start again."""
    argv = RUN + ["--out", str(out)]
    if (out / "checkpoint.pt").exists():
        argv.append("--resume")
    assert cli.main(argv) == 0


def test_kill_in_the_middle_of_a_checkpoint_write(tmp_path, straight):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, "2", *RUN, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # the half-written file is the temporary one; checkpoint.pt is epoch 1's, whole
    leftovers = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and finite_weights(state)
    resume_or_restart(out)
    check_run_folder(out, straight)
    assert not list(out.glob(".checkpoint.pt.*.tmp"))  # the next write cleared it


def kill_at_a_random_moment(out: Path, seed: int, *extra: str) -> int | None:
    """Start the run, wait until it is training, SIGKILL it after a seeded random delay.
    Returns the exit status (None: it was killed)."""
    proc = subprocess.Popen([sys.executable, "-m", "structrnn.cli", *RUN, "--out", str(out),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (out / "config.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.0, 3.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if proc.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(proc.stderr.read().decode()[-2000:])
        return None if proc.returncode == -signal.SIGKILL else proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def check_after_kill(out: Path, straight: dict) -> None:
    if (out / "checkpoint.pt").exists():
        state = load_checkpoint(out / "checkpoint.pt")  # never a half-written file
        assert 1 <= state["epoch"] <= EPOCHS and finite_weights(state)
        assert len(state["history"]) == state["epoch"]
    if (out / "best.pt").exists():
        assert finite_weights(load_checkpoint(out / "best.pt"))
    if (out / "metrics.json").exists():
        json.loads((out / "metrics.json").read_text())
    resume_or_restart(out)
    check_run_folder(out, straight)


@pytest.mark.parametrize("seed", [0])
def test_sigkill_at_a_random_moment_then_resume(tmp_path, straight, seed):
    out = tmp_path / "run"
    kill_at_a_random_moment(out, seed)
    check_after_kill(out, straight)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sigkill_at_random_moments_then_resume_many(tmp_path, straight, seed):
    out = tmp_path / "run"
    kill_at_a_random_moment(out, seed)
    check_after_kill(out, straight)
    # killed again while resuming (a finished run's folder is never trained into afresh)
    kill_at_a_random_moment(out, seed + 100, "--resume")
    check_after_kill(out, straight)


# -- (c) atomic writes ---------------------------------------------------------------------------
class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path, error):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old contents")

    def writer(f):
        f.write(b"new, half written")
        raise error("mid-write")

    with pytest.raises(error, match="mid-write"):
        atomic_write(path, writer)
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]  # no temporary left
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"


def test_save_checkpoint_and_write_json_keep_the_old_file_on_failure(tmp_path):
    ckpt = save_checkpoint(tmp_path / "c.pt", epoch=1, w=torch.ones(2))
    with pytest.raises(Exception):  # noqa: B017 - pickle refuses a lambda: any error will do
        save_checkpoint(ckpt, epoch=2, w=torch.zeros(2), bad=lambda: 0)
    assert load_checkpoint(ckpt)["epoch"] == 1
    meta = write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(meta, {"a": object()})
    assert json.loads(meta.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "m.json"]


# -- (e) checkpoints load with weights_only=True -------------------------------------------------
class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # what an attacker's pickle would do on load
        return (Path.touch, (self.marker,))


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights.only"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_round_trip_restores_every_random_stream(tmp_path):
    import numpy as np

    random.seed(1)
    torch.manual_seed(1)
    np.random.seed(1)
    random.gauss(0, 1)  # leaves a cached gauss value in Python's state
    path = save_checkpoint(tmp_path / "c.pt", rng=rng_state(), epoch=3, best={"dev": 0.5},
                           history=[{"epoch": 1, "loss": math.pi}], note=None)
    expected = (random.random(), random.gauss(0, 1), torch.rand(3), np.random.rand(2))
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["history"][0]["loss"] == math.pi
    set_rng_state(state["rng"])
    got = (random.random(), random.gauss(0, 1), torch.rand(3), np.random.rand(2))
    assert got[:2] == expected[:2]
    assert torch.equal(got[2], expected[2]) and (got[3] == expected[3]).all()


# -- (d) molecule cache --------------------------------------------------------------------------
CSV = "smiles,y\nCCO,1.0\nnot-a-smiles,2.0\nc1ccccc1,3.0\n[Na+].[Cl-],4.0\nC,x\n"


def load_molecules(path: Path, cache: Path):
    from structrnn.datasets.molecules import MoleculeCSV

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = MoleculeCSV(path, "smiles", ["y"], cache_dir=cache)
    return ds, [str(w.message) for w in caught]


def same_graphs(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(g.x, h.x) and torch.equal(g.edge_index,
                                                                           h.edge_index)
                                    for g, h in zip(a, b)) and torch.equal(a.y, b.y)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "version", "key",
                                    "inconsistent", "pickle"])
def test_damaged_molecule_cache_is_detected_and_rebuilt(tmp_path, damage):
    pytest.importorskip("rdkit")
    path, cache = tmp_path / "mols.csv", tmp_path / "cache"
    path.write_text(CSV)
    first, messages = load_molecules(path, cache)
    assert not first.cache_hit and len(first) == 3
    # bad rows are reported by line number (header = line 1), from the cache as well
    assert [s.line for s in first.skipped] == [3, 6]
    assert any("skipped 2 of 5" in m and "3, 6" in m for m in messages), messages
    blob = first.cache_path.read_bytes()
    marker = tmp_path / "pwned"
    if damage == "truncated":  # as a crash mid-write without atomic writes would leave it
        first.cache_path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        first.cache_path.write_bytes(os.urandom(len(blob)))
    elif damage == "empty":
        first.cache_path.write_bytes(b"")
    else:
        state = torch.load(io.BytesIO(blob), weights_only=True)
        if damage == "version":
            state["version"] = "structrnn-mol-0"
        elif damage == "key":
            state["key"] = "0" * 64
        elif damage == "inconsistent":
            state["num_nodes"] = state["num_nodes"][:-1]
        else:
            state["smiles"] = Payload(marker)
        torch.save(state, first.cache_path)
    rebuilt, messages = load_molecules(path, cache)
    assert not rebuilt.cache_hit and same_graphs(first, rebuilt)
    assert any("rebuilding" in m for m in messages), messages
    if damage == "version":
        assert any("structrnn-mol-0" in m for m in messages), messages
    assert not marker.exists()
    again, _ = load_molecules(path, cache)
    assert again.cache_hit and same_graphs(first, again)


# -- (f) data files with bad lines, empty and missing files --------------------------------------
def test_tree_file_with_bad_lines_loads_the_good_ones(tmp_path):
    path = tmp_path / "trees.txt"
    path.write_bytes(b"(2 good)\n(3 (2 a) (4 b))\n\n(2 unclosed\n(1 ok)\n\xff\xfe (2 x)\n"
                     b")(\n(4 last)")
    with pytest.warns(UserWarning, match=r"3 bad line\(s\) \(4, 6, 7\) skipped; 4 trees read"):
        read = read_ptb_file(path, on_error="skip")
    assert [t.to_ptb() for t in read.trees] == ["(2 good)", "(3 (2 a) (4 b))", "(1 ok)",
                                                "(4 last)"]
    assert read.line_numbers == [1, 2, 5, 8] and read.skipped_lines == [4, 6, 7]
    with pytest.raises(ParseError) as info:
        read_ptb_file(path)
    message = str(info.value)
    assert "3 bad line(s)" in message and all(f"line {n}," in message for n in (4, 6, 7))
    assert info.value.line == 4 and [e.line for e in info.value.errors] == [4, 6, 7]


def test_sst_split_with_bad_lines(tmp_path):
    from structrnn.datasets.sst import SST

    (tmp_path / "train.txt").write_text("(3 (2 a) (4 b))\n(2 (oops\n(1 c)\n")
    with pytest.warns(UserWarning, match=r"1 bad line\(s\) \(2\)"):
        data = SST(tmp_path, "train", on_error="skip")
    assert len(data) == 2 and data.skipped_lines == [2]
    with pytest.raises(ParseError, match="train.txt: 1 bad line"):
        SST(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="dev.txt"):
        SST(tmp_path, "dev")


@pytest.mark.parametrize("contents", [b"", b"\n  \n\t\n"])
def test_empty_tree_file_is_one_clear_error(tmp_path, contents):
    path = tmp_path / "empty.txt"
    path.write_bytes(contents)
    for on_error in ("raise", "skip"):
        with pytest.raises(ParseError, match="empty input: .*empty.txt holds no tree"):
            read_ptb_file(path, on_error=on_error)


def test_missing_files_are_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tree file at .*nowhere.txt"):
        read_ptb_file(tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match="on_error"):
        read_ptb_file(tmp_path / "nowhere.txt", on_error="ignore")
    from structrnn.trees.vocab import Vocab

    with pytest.raises(FileNotFoundError, match="no vocabulary file"):
        Vocab.load(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a vocabulary file"):
        Vocab.load(tmp_path / "vocab.json")


def test_empty_or_missing_molecule_csv(tmp_path):
    pytest.importorskip("rdkit")
    from structrnn.datasets.molecules import MoleculeCSV

    with pytest.raises(FileNotFoundError, match="no CSV file at"):
        MoleculeCSV(tmp_path / "none.csv", "smiles", ["y"], cache_dir=tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"column\(s\) \['smiles', 'y'\] not in the header"):
        MoleculeCSV(tmp_path / "empty.csv", "smiles", ["y"], cache_dir=tmp_path)


def test_cli_resume_without_a_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert cli.main(RUN + ["--out", str(tmp_path / "fresh"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint at" in err[0], err


def test_word_vectors_with_nan_or_inf_are_reported_not_loaded(tmp_path):
    from structrnn.datasets.vectors import load_word_vectors
    from structrnn.trees.vocab import Vocab

    path = tmp_path / "vectors.txt"
    path.write_text("good 0.1 nan\nbad inf 0.2\nugly 0.3 0.4\nshort 0.5\n")
    with pytest.warns(UserWarning, match="skipped 3 malformed line.*lines 1, 2, 4"):
        vectors, coverage = load_word_vectors(path, Vocab(["good", "bad", "ugly"]), dim=2)
    assert coverage.bad_lines == [1, 2, 4] and torch.isfinite(vectors).all()
    assert vectors[3].tolist() == pytest.approx([0.3, 0.4])
