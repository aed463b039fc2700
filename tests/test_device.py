"""Nothing assumes the CPU: batches move with their schedule, models run wherever their inputs
are ("meta" stands in for a GPU here), and mixed precision keeps the results close to float32.
The same checks on a real GPU: ``STRUCTRNN_TEST_DEVICE=cuda pytest tests/test_device.py``."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
from torch import nn

import structrnn as sr
from structrnn.graphs.network import GraphNetwork
from structrnn.tasks.sentiment import task as sst
from structrnn.tasks.sentiment.model import MODELS, TreeSentiment, node_loss
from structrnn.training.loop import amp_enabled

DEVICE = torch.device(os.environ.get("STRUCTRNN_TEST_DEVICE", "meta"))
TEXTS = ["(3 (2 It) (4 (3 works) (2 .)))", "(1 (2 not) (1 (2 very) (1 bad)))", "(2 x)"]


def tree_batch():
    trees = [sr.Tree.from_ptb(t) for t in TEXTS]
    vocab = sr.Vocab.build(trees)
    return vocab, sr.collate_trees([t.to_data(vocab) for t in trees])


def test_batch_to_moves_the_schedule():
    _, batch = tree_batch()
    moved = batch.clone().to(DEVICE)
    for direction in ("up", "down"):
        cpu, dev = getattr(batch.schedule, direction), getattr(moved.schedule, direction)
        for name in ("order", "rank", "pred", "target", "edge_perm"):
            assert getattr(dev, name).device.type == DEVICE.type, (direction, name)
            assert getattr(dev, name).shape == getattr(cpu, name).shape
        assert dev.node_ptr == cpu.node_ptr and dev.edge_ptr == cpu.edge_ptr  # host lists


@pytest.mark.parametrize("name", MODELS)
def test_tree_models_run_on_the_inputs_device_with_a_cpu_schedule(name):
    vocab, batch = tree_batch()
    model = TreeSentiment(len(vocab), 5, name, 8, 6, 0.0).to(DEVICE)
    # the schedule stays where collate_trees made it (the CPU); run_schedule moves it
    h = model.encode(batch.x.to(DEVICE), batch.edge_index.to(DEVICE), batch.height.to(DEVICE),
                     batch.child_index.to(DEVICE), batch.schedule)
    width = 12 if name == "bi-tree-lstm" else 6
    assert h.device.type == DEVICE.type and h.shape == (batch.num_nodes, width)


def test_sequence_and_graph_models_run_on_the_inputs_device():
    for lstm in (sr.LSTM(4, 5, num_layers=2, bidirectional=True, force_generic=True),
                 sr.LSTM(4, 5)):
        out, (h, _) = lstm.to(DEVICE)(torch.randn(7, 3, 4, device=DEVICE))
        assert out.device.type == DEVICE.type and h.shape[1:] == (3, 5)
    gn = GraphNetwork(edge_model=nn.Linear(3 + 4 + 4, 3), node_model=sr.GRUCell(3, 4)).to(DEVICE)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]], device=DEVICE)
    x, e, _ = gn(torch.randn(5, 4, device=DEVICE), edge_index, torch.randn(4, 3, device=DEVICE))
    assert x.device.type == e.device.type == DEVICE.type and x.shape == (5, 4)


@pytest.mark.parametrize("name", MODELS)
def test_autocast_stays_close_to_float32(name):
    """Mixed dtypes inside the level loop (half projections, float zero states) must mix
    cleanly; bfloat16 autocast on the CPU exercises the same code as float16 on CUDA."""
    vocab, batch = tree_batch()
    torch.manual_seed(0)
    model = TreeSentiment(len(vocab), 5, name, 8, 6, 0.0)
    reference = model(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(batch)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, rtol=0.05, atol=0.05)
    node_loss(logits.float(), batch.y).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_amp_on_the_cpu_is_ignored_with_a_warning(capsys):
    assert amp_enabled(True, torch.device("cpu")) is False
    assert "--amp needs a CUDA device" in capsys.readouterr().err
    assert amp_enabled(False, torch.device("cpu")) is False
    p = argparse.ArgumentParser()
    sst.add_arguments(p)
    assert p.parse_args(["--amp"]).amp and not p.parse_args([]).amp
