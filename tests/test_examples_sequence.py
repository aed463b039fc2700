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


def test_exploding_gradients_unclipped_explodes_and_clipping_bounds_every_step(tmp_path):
    out = tmp_path / "eg.png"
    metrics = load("exploding_gradients").main(["--updates", "40", "--steps", "40", "--hidden",
                                                "16", "--max-norm", "1.0", "--clip-value",
                                                "0.1", "--out", str(out)])
    assert out.stat().st_size > 1000
    none, norm, value = metrics["none"], metrics["norm"], metrics["value"]
    assert none["max_grad_norm"] > 100 * 1.0  # far beyond the bound the clipped runs keep
    assert none["max_clipped_norm"] == none["max_grad_norm"]  # nothing touched it
    assert norm["max_grad_norm"] > 1.0 and norm["max_clipped_norm"] <= 1.0 + 1e-6
    assert value["max_grad_norm"] > 1.0 and value["max_abs_grad"] <= 0.1 + 1e-6  # float32 0.1
    assert norm["diverged_at"] is None and value["diverged_at"] is None


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


TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


def test_char_rnn_on_a_text_file_resumes_exactly(tmp_path):
    """--text FILE; 12 steps straight equal 7 steps, a checkpoint and 5 resumed steps: the
    weights, the optimiser, the stream position and the carried state all come back."""
    char_rnn = load("char_rnn")
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT, encoding="utf-8")
    common = ["--text", str(text), "--hidden", "16", "--layers", "1", "--seq-len", "10",
              "--batch-size", "4", "--sample-chars", "12", "--quiet", "--lr", "0.02"]
    straight = char_rnn.main(common + ["--steps", "12", "--out-dir", str(tmp_path / "a")])
    assert straight["sample"].startswith(TEXT[:4]) and len(straight["sample"]) == 16
    # 1728 training characters in 4 streams of 432: 12 windows of 10 end at column 120
    assert straight["position"] == 120
    char_rnn.main(common + ["--steps", "7", "--out-dir", str(tmp_path / "b")])
    resumed = char_rnn.main(common + ["--steps", "12", "--resume", "--out-dir",
                                      str(tmp_path / "b")])
    assert resumed["start_step"] == 7
    assert resumed["val_loss"] == straight["val_loss"]
    assert resumed["train_loss"] == straight["train_loss"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(u, v) for u, v in zip(a["state"], b["state"], strict=True))


def test_char_rnn_carries_the_state_across_windows_and_detaches_it():
    char_rnn = load("char_rnn")
    data = torch.arange(40)
    streams = char_rnn.Streams(data, batch=2, length=6)  # two streams of 20: 0..19, 20..39
    x, y, restart = streams.next()
    assert x.tolist() == [list(range(6)), list(range(20, 26))] and not restart
    assert torch.equal(y, x + 1)
    x, _, restart = streams.next()
    assert x[0].tolist() == list(range(6, 12)) and not restart  # the next window continues
    streams.next()
    x, _, restart = streams.next()  # 18 + 6 + 1 > 20: start over with a zero state
    assert restart and x[0].tolist() == list(range(6))
    with pytest.raises(ValueError, match="too short"):
        char_rnn.Streams(data, batch=8, length=6)
    h = torch.ones(1, 2, 3, requires_grad=True)
    carried = char_rnn.detach((h * 2, h * 3))
    assert not any(t.requires_grad for t in carried) and torch.equal(carried[0], 2 * h.detach())


def test_char_rnn_sampling_temperature():
    char_rnn = load("char_rnn")
    torch.manual_seed(0)
    chars = "abcdef"
    model = char_rnn.CharLSTM(len(chars), 8, 1, 0.0)
    greedy = char_rnn.sample(model, chars, "ab", 30, 0.0, torch.Generator().manual_seed(1))
    cold = char_rnn.sample(model, chars, "ab", 30, 1e-4, torch.Generator().manual_seed(2))
    hot = {char_rnn.sample(model, chars, "ab", 30, 5.0, torch.Generator().manual_seed(s))
           for s in range(3)}
    assert cold == greedy  # a temperature near 0 is the argmax
    assert len(hot) == 3 and greedy not in hot  # a high one samples widely


def test_sequence_labelling_beats_majority_tag():
    metrics = load("sequence_labelling").main(["--sentences", "300", "--vocab", "40",
                                               "--epochs", "3", "--hidden", "24",
                                               "--embed", "16", "--lr", "0.02"])
    assert metrics["tag_accuracy"] > 0.8  # the most frequent tag alone gives about 0.4
    assert metrics["word_f1"] > 0.5


def test_sequence_labelling_with_a_crf_reports_both_taggers_on_the_same_data(capsys):
    labelling = load("sequence_labelling")
    assert labelling.illegal_pairs(labelling.bmes([["ab", "c", "def"]])) == 0
    assert labelling.illegal_pairs("MBBE") == 3  # starts inside a word; B after M; B after B
    metrics = labelling.main(["--sentences", "300", "--vocab", "40", "--epochs", "3",
                              "--hidden", "24", "--embed", "16", "--lr", "0.02", "--crf"])
    soft, crf = metrics["softmax"], metrics["crf"]
    for m in (soft, crf):
        assert m["tag_accuracy"] > 0.8 and m["word_f1"] > 0.5
    # the CRF scores tag pairs: it learns which neighbours never occur, the softmax cannot
    assert crf["illegal_pairs"] < soft["illegal_pairs"]
    assert "BiLSTM-CRF vs BiLSTM-softmax" in capsys.readouterr().out


def test_seq2seq_learns_short_reversals():
    metrics = load("seq2seq").main(["--steps", "200", "--hidden", "32", "--max-len", "3",
                                    "--test-size", "100", "--lr", "0.01"])
    assert metrics["exact_match"] > 0.3  # chance for 1-3 digit strings is below 0.04
    assert metrics["final_loss"] < 1.5
