"""Data-parallel training: two CPU processes under torchrun (gloo) end with the weights of one
process trained on the same global batches; the sharding and the loss scaling that make this
exact are checked in-process too."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from structrnn.datasets.synthetic import SyntheticSentiment
from structrnn.tasks.sentiment import task as sst
from structrnn.tasks.sentiment.model import TreeSentiment
from structrnn.training import distributed
from structrnn.training.checkpoint import seed_everything
from structrnn.training.task import run_task, train_loader
from structrnn.trees.loader import TreeLoader, collate_trees

ROOT = Path(__file__).resolve().parents[1]
# 48 trees in global batches of 8: six steps, every batch full (no sampler padding)
ARGS = ["--dataset", "synthetic", "--synthetic-trees", "48", "--batch-size", "8", "--epochs",
        "1", "--hidden", "12", "--embed-dim", "10", "--dropout", "0", "--no-progress"]


def parse(argv):
    p = argparse.ArgumentParser()
    sst.add_arguments(p)
    return p.parse_args(argv)


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_two_processes_equal_one_process_on_the_same_global_batches(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "structrnn.cli", "train", "sst", *ARGS, "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    one = run_task(sst.TASK, parse(ARGS + ["--out", str(tmp_path / "one")]))
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5, msg=key)
    # the comparison is not trivial: training moved the weights well beyond the tolerance
    seed_everything(0)  # the initial weights, as sst.run draws them
    args = parse(ARGS)
    train = sst.load_splits(args)[0]
    init = sst.build_model(args, train.vocab, train.num_classes).state_dict()
    moved = max(float((a[k] - init[k]).abs().max()) for k in a)
    assert moved > 1e-2
    # rank 0 alone writes: one metrics line per epoch, the same figures as one process
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["best_epoch"] == one["best_epoch"]
    assert abs(two["dev_root"] - one["dev_root"]) < 1e-9
    assert abs(json.loads(lines[0])["train_loss"]
               - json.loads((tmp_path / "one" / "metrics.jsonl").read_text())["train_loss"]) < 1e-5


def shard_batches(dataset, world: int, monkeypatch) -> list[list]:
    """Every process's batches (tree counts of the pre-order roots), as if ``world`` ran."""
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    per_rank = []
    for r in range(world):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        loader = train_loader(dataset, 8, seed=5, loader_class=TreeLoader)
        per_rank.append(list(loader(3)))
    return per_rank


def test_global_batches_do_not_depend_on_the_number_of_processes(monkeypatch):
    data = SyntheticSentiment(40, seed=0)

    def key(batch):  # the trees of a batch, as sorted tuples of token ids
        return sorted(tuple(batch[i].x.tolist()) for i in range(batch.num_graphs))

    (single,) = shard_batches(data, 1, monkeypatch)
    two = shard_batches(data, 2, monkeypatch)
    assert len(single) == len(two[0]) == len(two[1]) == 5
    for k, batch in enumerate(single):
        assert key(batch) == sorted(key(two[0][k]) + key(two[1][k]))


def test_scaled_shard_losses_average_to_the_global_gradient():
    """What DDP computes (the mean over processes of each shard's gradient) equals the global
    batch's gradient with the scaling of ``global_mean_loss``, and not with per-shard means."""
    data = SyntheticSentiment(8, seed=1)
    torch.manual_seed(0)
    model = TreeSentiment(len(data.vocab), 5, "tree-lstm", 6, 5, 0.0)
    shards = [collate_trees([data[i] for i in range(4)]),
              collate_trees([data[i] for i in range(4, 8)])]
    counts = [int((s.y >= 0).sum()) for s in shards]
    assert counts[0] != counts[1]  # uneven shards, or the check below could not fail

    def grad(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    full = collate_trees([data[i] for i in range(8)])
    reference = grad(F.cross_entropy(model(full), full.y, ignore_index=-1))
    scaled = sum(grad(F.cross_entropy(model(s), s.y, ignore_index=-1, reduction="sum")
                      * 2 / sum(counts)) for s in shards) / 2
    naive = sum(grad(F.cross_entropy(model(s), s.y, ignore_index=-1)) for s in shards) / 2
    torch.testing.assert_close(scaled, reference, rtol=1e-5, atol=1e-7)
    assert float((naive - reference).abs().max()) > 1e-4
    # without a process group global_mean_loss is the plain mean
    loss_sum = torch.tensor(6.0, requires_grad=True)
    loss, mean = distributed.global_mean_loss(loss_sum, torch.tensor(4))
    assert float(loss.detach()) == float(mean) == 1.5 and loss.requires_grad


def test_batch_size_must_divide_between_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="--batch-size"):
        run_task(sst.TASK, parse(ARGS + ["--out", str(tmp_path)]))


def test_graph_family_two_processes_equal_one_process(tmp_path):
    """The molecule task (graphs, PyG batches) under the same shared loop: 2 processes end
    with the weights of one process on the same global batches."""
    pytest.importorskip("rdkit")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               STRUCTRNN_CACHE=str(tmp_path / "cache"))
    # 80 molecules: 64 for training, global batches of 16, every batch full on both ranks
    args = ["train", "molecules", "--dataset", "builtin", "--max-molecules", "80", "--epochs",
            "2", "--seeds", "0", "--batch-size", "16", "--hidden", "8", "--steps", "2",
            "--no-progress"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "structrnn.cli", *args, "--out",
                          str(tmp_path / "two")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "structrnn.cli", *args, "--out",
                          str(tmp_path / "one")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    a = weights(tmp_path / "one" / "units" / "seed0")
    b = weights(tmp_path / "two" / "units" / "seed0")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    first = torch.load(tmp_path / "one" / "units" / "seed0" / "best.pt", weights_only=True)
    assert first["epoch"] >= 1
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two")]
    rmse = [m["test_rmse"]["tpsa"]["mean"] for m in metrics]
    assert rmse[1] == pytest.approx(rmse[0], rel=1e-3)
