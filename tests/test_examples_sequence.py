"""Each sequence example runs end to end with a tiny budget and learns something."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_binary_addition_reaches_full_heldout_accuracy_with_defaults(capsys):
    metrics = load("binary_addition").main([])
    assert metrics["heldout_accuracy"] == 1.0
    assert "held-out accuracy 100.0%" in capsys.readouterr().out


def test_vanishing_gradients_plot_and_ratios(tmp_path):
    out = tmp_path / "vg.png"
    metrics = load("vanishing_gradients").main(["--steps", "30", "--hidden", "16",
                                                "--out", str(out)])
    assert out.stat().st_size > 1000
    assert 0 < metrics["elman_ratio"] < 1e-3  # the Elman gradient vanishes ...
    assert metrics["lstm_ratio"] > 100 * metrics["elman_ratio"]  # ... far faster than the LSTM's


def test_char_rnn_learns_and_resumes(tmp_path):
    char_rnn = load("char_rnn")
    tiny = ["--modules", "textwrap", "--max-chars", "4000", "--hidden", "24", "--layers", "1",
            "--seq-len", "24", "--batch-size", "8", "--sample-chars", "20", "--quiet",
            "--lr", "0.01", "--out-dir", str(tmp_path)]
    first = char_rnn.main(tiny + ["--steps", "25"])
    assert first["start_step"] == 0 and (tmp_path / "checkpoint.pt").exists()
    assert first["val_bits_per_char"] < first["uniform_bits_per_char"] - 1
    assert first["sample"].startswith("def ") and len(first["sample"]) == 24
    second = char_rnn.main(tiny + ["--steps", "30", "--resume"])
    assert second["start_step"] == 25
    assert math.isfinite(second["val_loss"])


def test_sequence_labelling_beats_majority_tag():
    metrics = load("sequence_labelling").main(["--sentences", "300", "--vocab", "40",
                                               "--epochs", "3", "--hidden", "24",
                                               "--embed", "16", "--lr", "0.02"])
    assert metrics["tag_accuracy"] > 0.8  # the most frequent tag alone gives about 0.4
    assert metrics["word_f1"] > 0.5


def test_seq2seq_learns_short_reversals():
    metrics = load("seq2seq").main(["--steps", "200", "--hidden", "32", "--max-len", "3",
                                    "--test-size", "100", "--lr", "0.01"])
    assert metrics["exact_match"] > 0.3  # chance for 1-3 digit strings is below 0.04
    assert metrics["final_loss"] < 1.5
