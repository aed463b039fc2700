"""Issue 24, the self-contained bugs: a Vocab round trip with ``lower``, abbreviated flags in a
replay, ``fit`` without its select key, the epoch line's figure names, scikit-learn where it
serves, one model-file format for the parser, circuits runs that load, evaluate and predict."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from structrnn import cli
from structrnn._io import write_json
from structrnn.training.loop import FitOptions, fit
from structrnn.training.options import apply_config, explicit_dests
from structrnn.training.run_folder import RunFolder
from structrnn.trees.vocab import Vocab


# --- 1. Vocab ---------------------------------------------------------------------------------
def test_a_lowercasing_vocab_with_an_upper_case_unk_survives_save_and_load(tmp_path):
    vocab = Vocab(["Hello", "world"], unk="<UNK>", lower=True)
    assert vocab.unk == "<unk>" and vocab.tokens == ["<unk>", "hello", "world"]
    assert vocab["<UNK>"] == vocab["never seen"] == 0 and vocab["HELLO"] == 1
    back = Vocab.load(vocab.save(tmp_path / "vocab.json"))
    assert back == vocab and back["World"] == 2
    built = Vocab.build([["A", "a", "<UNK>"]], unk="<UNK>", lower=True)
    assert built.tokens == ["<unk>", "a"]
    assert Vocab.load(built.save(tmp_path / "built.json")) == built


# --- 2. abbreviated flags in a replay ---------------------------------------------------------
def _sst_parser(argv):
    parser = cli.build_parser("sst")
    train = parser._subparsers._group_actions[0].choices["train"]
    return parser, train._subparsers._group_actions[0].choices["sst"]


def test_an_abbreviated_flag_is_a_one_line_usage_error(tmp_path, capsys):
    config = tmp_path / "config.json"
    write_json(config, {"task": "sst", "epochs": 20, "hidden": 150})
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "sst", "--config", str(config), "--epo", "3", "--hid", "64",
                  "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epo" in err[0] and "in full" in err[0], err
    assert not (tmp_path / "run").exists()
    for command in (["eval", "run", "--spl", "test"], ["demo", "--epo", "1"]):
        with pytest.raises(SystemExit):
            cli.main(command)


def test_typed_flags_win_over_the_config_in_every_spelling(tmp_path):
    config = tmp_path / "config.json"
    write_json(config, {"task": "sst", "epochs": 20, "hidden": 150, "lr": 0.5, "seed": 7})
    argv = ["train", "sst", "--config", str(config), "--epochs=3", "--hidden", "64",
            "--seed", "0"]
    parser, sub = _sst_parser(argv)
    args = parser.parse_args(argv)
    assert explicit_dests(sub, argv[2:]) == {"config", "epochs", "hidden", "seed"}
    merged = apply_config(args, explicit_dests(sub, argv[2:]))
    # typed (even at its default: --seed 0) wins; the untyped lr comes from the file
    assert (merged.epochs, merged.hidden, merged.seed, merged.lr) == (3, 64, 0, 0.5)


# --- 3 and 4. fit: the select key, the epoch line ---------------------------------------------
def _tiny_fit(tmp_path, validate, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    x, y = torch.randn(8, 2), torch.randn(8, 1)

    def loss(m, batch):
        value = (m(batch[0]) - batch[1]).pow(2).mean()
        return value, value.detach()

    return fit(model, torch.optim.SGD(model.parameters(), lr=0.1),
               train_batches=lambda epoch: [(x, y)], loss=loss, validate=validate,
               folder=RunFolder(tmp_path / "run"),
               options=FitOptions(epochs=2, progress=False), device=torch.device("cpu"),
               config={}, **kwargs)


def test_fit_raises_at_once_when_validate_lacks_the_select_key(tmp_path):
    calls = []

    def validate(model):
        calls.append(1)
        return {"accuracy": 0.5, "loss": 1.0}

    with pytest.raises(ValueError, match=r"'f1'.*\['accuracy', 'loss'\]"):
        _tiny_fit(tmp_path, validate, select="f1")
    assert len(calls) == 1  # the first epoch, not a run that silently never selects


def test_the_epoch_line_names_its_figure_without_the_sign_flip(tmp_path, capsys):
    """A molecule task selects on minus the ROC-AUC; the user reads the ROC-AUC."""
    def validate(model):
        return {"val_score": -0.6948, "val_roc_auc": 0.6948}

    _tiny_fit(tmp_path, validate, select="val_score", mode="min", prefix="",
              report=["val_roc_auc"])
    lines = [line for line in capsys.readouterr().err.splitlines() if "epoch" in line]
    assert lines and all("val roc_auc 0.695" in line for line in lines), lines
    assert not any("score" in line or "-0.69" in line for line in lines)
    _tiny_fit(tmp_path / "b", lambda m: {"rmse": 1.0712}, select="rmse", mode="min")
    assert "val rmse 1.07" in capsys.readouterr().err


# --- 5. scikit-learn --------------------------------------------------------------------------
def test_the_metrics_and_splits_are_scikit_learns():
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.utils.class_weight import compute_class_weight

    from structrnn.datasets.splits import stratified_kfold
    from structrnn.tasks.molecules.metrics import average_precision, class_weights, roc_auc

    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 50), np.round(rng.normal(size=50), 1)
    assert roc_auc(scores, labels) == roc_auc_score(labels, scores)
    assert average_precision(scores, labels) == average_precision_score(labels, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one class: NaN, quietly
        assert math.isnan(roc_auc([0.2, 0.4], [1, 1]))
        assert math.isnan(average_precision([0.2, 0.4], [0, 0]))
    classes = rng.integers(0, 3, 40)
    folds = stratified_kfold(classes, 4, seed=5)
    expected = StratifiedKFold(4, shuffle=True, random_state=5).split(np.zeros(40), classes)
    for (train, test), (want_train, want_test) in zip(folds, expected, strict=True):
        np.testing.assert_array_equal(train, want_train)
        np.testing.assert_array_equal(test, want_test)
    nan = float("nan")
    y = torch.tensor([[0.0, 2.0], [0.0, nan], [1.0, 2.0], [0.0, 0.0]])
    binary, three = class_weights(y, [2, 3])
    torch.testing.assert_close(binary, torch.tensor(compute_class_weight(
        "balanced", classes=np.array([0, 1]), y=np.array([0, 0, 1, 0])), dtype=torch.float))
    # class 1 of the second task has no training label: weight 1
    torch.testing.assert_close(three, torch.tensor([1.5, 1.0, 0.75]))
