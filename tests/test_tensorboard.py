"""``--tensorboard``: the per-epoch metrics (and the step losses) go to a SummaryWriter in
OUT/tensorboard; without the tensorboard package the run stops before training, saying how to
get it."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from structrnn.tasks.sentiment import task as sst
from structrnn.training import logging
from structrnn.training.task import run_task

ARGS = ["--dataset", "synthetic", "--synthetic-trees", "40", "--batch-size", "10",
        "--epochs", "2", "--hidden", "6", "--embed-dim", "6", "--no-progress", "--tensorboard"]


def parse(argv):
    p = argparse.ArgumentParser()
    sst.add_arguments(p)
    return p.parse_args(argv)


class FakeWriter:
    """Records what the task writes, as torch.utils.tensorboard.SummaryWriter would store it."""

    runs: list = []

    def __init__(self, log_dir: str) -> None:
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        FakeWriter.runs.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_metrics_go_to_the_summary_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(logging, "summary_writer_class", lambda: FakeWriter)
    run_task(sst.TASK, parse(ARGS + ["--out", str(tmp_path)]))
    (writer,) = FakeWriter.runs
    assert writer.log_dir == str(tmp_path / "tensorboard") and writer.closed
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        for key in ("train_loss", "dev_root", "dev_loss"):
            assert (f"epoch/{key}", record[key], record["epoch"]) in writer.scalars
    steps = [s for tag, _, s in writer.scalars if tag == "train/step_loss"]
    assert steps == list(range(1, 9))  # 4 batches per epoch, 2 epochs, numbered on


def test_missing_tensorboard_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(ValueError, match="pip install tensorboard"):
        run_task(sst.TASK, parse(ARGS + ["--out", str(tmp_path)]))
    assert not (tmp_path / "config.json").exists()  # stopped before writing anything
