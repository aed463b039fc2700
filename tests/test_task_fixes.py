"""Issue 24, the self-contained bugs: a Vocab round trip with ``lower``, abbreviated flags in a
replay, ``fit`` without its select key, the epoch line's figure names, scikit-learn where it
serves, one model-file format for the parser, circuits runs that load, evaluate and predict."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("flags, shown", [
    (["--dataset", "builtin", "--max-molecules", "40"], "val rmse "),
    (["--dataset", "builtin", "--max-molecules", "40", "--target", "lipinski"], "val roc_auc "),
])
def test_molecule_runs_show_their_figure_not_the_signed_score(tmp_path, capsys, flags, shown):
    cli.main(["train", "molecules", *flags, "--epochs", "2", "--hidden", "8", "--steps", "1",
              "--seeds", "0", "--threads", "1", "--no-progress", "--out", str(tmp_path / "r")])
    lines = [line for line in capsys.readouterr().err.splitlines() if ": epoch " in line]
    assert len(lines) == 2 and all(shown in line for line in lines), lines
    assert not any("score" in line for line in lines)


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


# --- 6. the parser: one model-file format -----------------------------------------------------
@pytest.fixture(scope="module")
def parser_run(tmp_path_factory):
    from tests.test_parser import TINY, toy_treebank

    base = tmp_path_factory.mktemp("parser")
    data = toy_treebank(base / "toy", sizes=(20, 5, 5))
    assert cli.main(["train", "parser", "--data", str(data), "--out", str(base / "run"),
                     "--epochs", "1", *TINY]) == 0
    return base / "run"


def test_the_parser_has_the_one_model_file_format(parser_run, tmp_path):
    import structrnn
    from structrnn._errors import InputError
    from structrnn.tasks.parser.predictor import ParserPredictor
    from structrnn.trees import parser as parser_module
    from structrnn.trees.parser import Parser

    sentences = ["the dog likes a film .", "scene"]
    parser = Parser.load(parser_run)  # a run folder
    expected = [t.to_ptb() for t in parser.parse(sentences)]
    saved = parser.save(tmp_path / "parser.pt")
    loaded = structrnn.load(saved)  # Parser.save writes what structrnn.load reads
    assert isinstance(loaded, ParserPredictor)
    assert [r["tree"] for r in loaded.predict(sentences)] == expected
    exported = structrnn.load(parser_run).save(tmp_path / "export.pt")
    assert [t.to_ptb() for t in Parser.load(exported).parse(sentences)] == expected
    assert [t.to_ptb() for t in Parser.load(saved).parse(sentences)] == expected
    # the first format still loads with Parser.load; structrnn.load says how to convert it
    legacy = {"format": "structrnn.Parser", "version": 1, **parser.spec(),
              "model": parser.state_dict()}
    torch.save(legacy, tmp_path / "old.pt")
    assert [t.to_ptb() for t in Parser.load(tmp_path / "old.pt").parse(sentences)] == expected
    with pytest.raises(InputError, match=r"Parser\.load\(path\)\.save\(path\)"):
        structrnn.load(tmp_path / "old.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no best.pt"):
        Parser.load(tmp_path / "empty")
    with pytest.raises(InputError, match="no run folder or model file"):
        Parser.load(tmp_path / "nothing.pt")
    # structrnn parse reads the file Parser.save wrote
    assert cli.main(["parse", str(saved), *sentences]) == 0
    # the tokenizer is the treebank one, no fallback of its own
    text = "I can't see (it), Mr. Smith."
    from structrnn.trees.tokenize import tokenize

    assert parser_module.tokenize(text) == tokenize(text)
    assert "_FALLBACK" not in vars(parser_module)


# --- 7. circuits runs: load, predict, eval, export --------------------------------------------
CIRCUITS = ["train", "circuits", "--train-circuits", "8", "--val-circuits", "4",
            "--test-circuits", "4", "--batch-size", "4", "--hidden", "4", "--train-depth", "1",
            "2", "--test-depths", "2", "3", "--epochs", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def circuits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("circuits") / "run"
    assert cli.main([*CIRCUITS, "--out", str(out)]) == 0
    return out


def test_a_circuits_run_loads_predicts_and_evaluates(circuits_run, tmp_path, capsys):
    import networkx as nx

    import structrnn
    from structrnn.datasets.circuits import make_circuits

    predictor = structrnn.load(circuits_run)
    gates = {"inputs": {"a": 1, "b": 0},
             "gates": {"e": ["xor", "d", "a"], "c": ["and", "a", "b"], "d": ["not", "c"]}}
    g = nx.DiGraph()
    g.add_node("x", kind="input", bit=1)
    g.add_node("y", kind="input", bit=1)
    g.add_node("z", kind="or")
    g.add_edges_from([("x", "z"), ("y", "z")])
    data = make_circuits(0, 1, 2, "test")[0]
    cyclic = {"inputs": {"a": 1}, "gates": {"p": ["and", "a", "q"], "q": ["or", "p", "a"]}}
    rows = predictor.predict([gates, g, data, cyclic, json.dumps(gates),
                              {"inputs": {"a": 1}, "gates": {"n": ["nand", "a", "a"]}}])
    assert [r["error"] is None for r in rows] == [True, True, True, False, True, False]
    assert set(rows[0]["values"]) == {"c", "d", "e"} and rows[4]["values"] == rows[0]["values"]
    assert set(rows[1]["values"]) == {"z"} and rows[1]["solved"] == (rows[1]["values"]["z"] == 1)
    assert "cycle" in rows[3]["error"] and "nand" in rows[5]["error"]
    # the model's own view of the circuit: the same values as predicting it directly
    model = predictor.model
    with torch.no_grad():
        direct = torch.softmax(model(data), 1)[:, 1]
    gates_of_data = (data.x[:, 0] == 0).nonzero().flatten().tolist()
    torch.testing.assert_close(torch.tensor([rows[2]["probabilities"][i]
                                             for i in gates_of_data]), direct[gates_of_data])
    # eval gives metrics.json's test figures; export round-trips
    metrics = json.loads((circuits_run / "metrics.json").read_text())
    figures = predictor.evaluate("test")["test"]
    for depth, want in metrics["test"].items():
        assert figures[depth] == pytest.approx(want)
    exported = predictor.save(tmp_path / "circuits.pt")
    assert structrnn.load(exported).predict([gates])[0]["values"] == rows[0]["values"]
    # the command line
    capsys.readouterr()
    assert cli.main(["eval", str(circuits_run)]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["2"] == pytest.approx(
        metrics["test"]["2"])
    assert cli.main(["predict", str(exported), json.dumps(gates)]) == 0
    assert json.loads(capsys.readouterr().out)["values"] == rows[0]["values"]
    assert cli.main(["export", str(circuits_run), str(tmp_path / "again.pt")]) == 0
    lines = tmp_path / "circuits.jsonl"
    lines.write_text(json.dumps(gates) + "\n" + json.dumps(cyclic) + "\n")
    assert cli.main(["predict", str(circuits_run), "--input", str(lines), "--output",
                     str(tmp_path / "out.jsonl")]) == 0
    written = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert written[0]["error"] is None and "cycle" in written[1]["error"]
