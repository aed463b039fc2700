"""A trained sentiment run as a product (issue 15): treebank tokenisation, ``structrnn.load`` of a
run folder or an exported file, predictions equal to the run's own evaluation, bad inputs marked
per row, the command line, and the example script."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import structrnn
from structrnn import cli
from structrnn.tasks.predictor import FORMAT_VERSION, Predictor
from structrnn.tasks.sentiment import task as sst
from structrnn.tasks.sentiment.predictor import PREDICTOR, SentimentPredictor, node_spans
from structrnn.trees.loader import collate_trees
from structrnn.trees.ptb import read_ptb_file
from structrnn.trees.tokenize import balanced_tree, tokenize
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab
from tests.conftest import REPO, require_dataset

TINY = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8", "--embed-dim", "8",
        "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny synthetic run, trained once for this module through the command line."""
    folder = tmp_path_factory.mktemp("sentiment") / "run"
    assert cli.main(["train", "sst", *TINY, "--out", str(folder)]) == 0
    return folder


def run_args(folder: Path) -> argparse.Namespace:
    """The run's settings as the task's parser gives them (its config.json replayed)."""
    parser = argparse.ArgumentParser()
    sst.add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(json.loads((folder / "config.json").read_text()))
    return args


def assert_same_predictions(a: list[dict], b: list[dict]) -> None:
    """Equal results, the probabilities to float tolerance (batching changes rounding)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in ("probs", "nodes")} == \
               {k: v for k, v in y.items() if k not in ("probs", "nodes")}
        if x["probs"] is not None:
            torch.testing.assert_close(torch.tensor(x["probs"]), torch.tensor(y["probs"]))
        if x.get("nodes"):
            assert [n["label"] for n in x["nodes"]] == [n["label"] for n in y["nodes"]]
            torch.testing.assert_close(torch.tensor([n["probs"] for n in x["nodes"]]),
                                       torch.tensor([n["probs"] for n in y["nodes"]]))


def reference_model(folder: Path) -> tuple[torch.nn.Module, Vocab]:
    """The run's best model rebuilt by hand from its files, independently of the predictor."""
    args = run_args(folder)
    vocab = Vocab.load(folder / "vocab.json")
    model = sst.build_model(args, vocab, 2 if args.binary else 5)
    model.load_state_dict(torch.load(folder / "best.pt", weights_only=True)["model"])
    return model.eval(), vocab


# ------------------------------------------------------------------ tokenisation
def test_raw_text_is_tokenised_as_the_treebank_writes_it():
    assert tokenize("a gorgeous, witty movie.") == ["a", "gorgeous", ",", "witty", "movie", "."]
    assert tokenize("It doesn't (really) work.") == [
        "It", "does", "n't", "-LRB-", "really", "-RRB-", "work", "."]
    assert tokenize("I can't, won't; they're, we've, you'll, he'd, I'm: it's") == [
        "I", "ca", "n't", ",", "wo", "n't", ";", "they", "'re", ",", "we", "'ve", ",", "you",
        "'ll", ",", "he", "'d", ",", "I", "'m", ":", "it", "'s"]
    assert tokenize('She said "great" and left...') == [
        "She", "said", "``", "great", "''", "and", "left", "..."]
    assert tokenize("\u201cCurly\u201d isn\u2019t\u2026") == ["``", "Curly", "''", "is", "n't",
                                                                "..."]
    # SST's own forms stay whole: numbers, abbreviations, '70s, S&M, hyphens, !?
    assert tokenize("Mr. Smith's '70s S&M co-writer\\/director paid $2,500 at 7:30 !?") == [
        "Mr.", "Smith", "'s", "'70s", "S&M", "co-writer\\/director", "paid", "$", "2,500",
        "at", "7:30", "!?"]
    assert tokenize("writer/director") == ["writer\\/director"]  # PTB escapes / and *
    assert tokenize("It was made in the U.S.") == ["It", "was", "made", "in", "the", "U.S."]
    assert tokenize("I said no.") == ["I", "said", "no", "."]
    assert tokenize("Good. Bad.") == ["Good", ".", "Bad", "."]
    assert tokenize("the actors' 'best' work") == ["the", "actors", "'", "`", "best", "'",
                                                    "work"]
    assert tokenize("  \t ") == [] and tokenize("") == []
    assert tokenize("8\u00a01/2 weeks") == ["8\u00a01\\/2", "weeks"]  # a no-break space joins


def test_tokens_agree_with_nltk_treebank_tokenizer_on_plain_sentences():
    nltk_tokenize = pytest.importorskip("nltk.tokenize")
    sentences = [
        "a gorgeous, witty, seductive movie.",
        "A witty movie (really) doesn't disappoint.",
        '"Great," she said, "I loved it."',
        "It's the actors' best work; 50% off $5?",
        "They're here, we've seen it, you'll see, I'd go and I'm in.",
        "The film -- a mess -- won't last [at all].",
        "She cannot stop: it is 7:30 now!",
    ]
    reference = nltk_tokenize.TreebankWordTokenizer()
    for sentence in sentences:
        assert tokenize(sentence) == reference.tokenize(sentence, convert_parentheses=True), \
            sentence


def test_every_sst_test_sentence_tokenises_back_to_its_leaves():
    root = require_dataset("sst")
    trees = read_ptb_file(root / "test.txt").trees
    assert len(trees) == 2210
    wrong = [t.leaves() for t in trees if tokenize(" ".join(t.leaves())) != t.leaves()]
    assert wrong == []


def test_balanced_tree_pairs_neighbours_level_by_level():
    tree = balanced_tree(["a", "b", "c", "d", "e"])
    assert tree.to_ptb() == "(2 (2 (2 (2 a) (2 b)) (2 (2 c) (2 d))) (2 e))"
    assert balanced_tree(["only"], label=3).to_ptb() == "(3 only)"
    assert node_spans(tree) == ["a b c d e", "a b c d", "a b", "a", "b", "c d", "c", "d", "e"]
    with pytest.raises(structrnn.InputError, match="at least one token"):
        balanced_tree([])
    with pytest.raises(structrnn.InputError, match="tokenize it first"):
        balanced_tree("a b")


# ------------------------------------------------------------------ loading and predicting
def test_predictions_equal_the_runs_own_evaluation(run):
    predictor = structrnn.load(run)
    assert isinstance(predictor, SentimentPredictor) and PREDICTOR is SentimentPredictor
    _, _, test = sst.load_splits(run_args(run))
    model, vocab = reference_model(run)
    with torch.no_grad():
        batch = collate_trees([t.to_data(vocab) for t in test.trees])
        logits = model(batch)
    roots = batch.ptr[:-1]
    expected = sst.evaluate(model, sst.TreeLoader(test, batch_size=256), torch.device("cpu"))

    results = predictor.predict([t.to_ptb() for t in test.trees], batch_size=7)
    assert [r["label"] for r in results] == expected["root_pred"].tolist()
    assert [r["label"] for r in results] == logits[roots].argmax(-1).tolist()
    probs = torch.tensor([r["probs"] for r in results])
    torch.testing.assert_close(probs, logits[roots].softmax(-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(results)))
    assert {r["tree"] for r in results} == {"gold"} and {r["error"] for r in results} == {None}
    assert_same_predictions(results, predictor.predict(test.trees))  # Trees, one batch

    # per phrase: every node of the first tree, in pre-order
    [first] = predictor.predict([test.trees[0]], nodes=True)
    rows = slice(int(batch.ptr[0]), int(batch.ptr[1]))
    assert [n["label"] for n in first["nodes"]] == logits[rows].argmax(-1).tolist()
    torch.testing.assert_close(torch.tensor([n["probs"] for n in first["nodes"]]),
                               logits[rows].softmax(-1))
    assert first["nodes"][0]["span"] == " ".join(test.trees[0].leaves())
    assert Tree.from_ptb(first["ptb"]).leaves() == test.trees[0].leaves()

    metrics = json.loads((run / "metrics.json").read_text())
    assert predictor.evaluate("test")["root_acc"] == metrics["test_root"]
    assert predictor.evaluate("val")["root_acc"] == metrics["dev_root"]
    figures = predictor.evaluate("train")
    assert figures["trees"] == 60 and 0 <= figures["all_nodes_acc"] <= 1
    with pytest.raises(structrnn.InputError, match="split"):
        predictor.evaluate("holdout")


def test_raw_text_reports_its_tokens_unknown_words_and_tree(run):
    predictor = structrnn.load(run)
    vocab = Vocab.load(run / "vocab.json")
    [r] = predictor.predict(["a gorgeous, witty movie."])
    assert r["tokens"] == ["a", "gorgeous", ",", "witty", "movie", "."]
    unknown = [t for t in r["tokens"] if t not in vocab]
    assert unknown == ["a", "gorgeous", ",", "witty", "."]  # the synthetic lexicon has "movie"
    assert r["unknown_words"] == ["a", "gorgeous", ",", "witty", "."]
    assert r["unknown_share"] == pytest.approx(5 / 6)
    assert r["tree"] == "balanced" and r["error"] is None
    assert r["label_name"] == ["very negative", "negative", "neutral", "positive",
                               "very positive"][r["label"]]
    # the balanced tree over the tokens is what was predicted on
    alone = predictor.predict([balanced_tree(r["tokens"])])[0]
    assert alone["probs"] == r["probs"] and alone["tree"] == "gold"  # labels 2: SST's classes
    [given] = predictor.predict(["(S (NP plot) (VP good))"])
    assert given["tree"] == "given" and given["tokens"] == ["plot", "good"]


def test_bad_inputs_carry_an_error_and_never_stop_the_others(run):
    predictor = structrnn.load(run)
    inputs = ["the plot was good", "(bad", "", "   ", "(2)", 42, "(3 (2 not) (1 bad))"]
    results = predictor.predict(inputs, batch_size=2)
    assert [r["input"] for r in results] == ["the plot was good", "(bad", "", "   ", "(2)", "42",
                                             "(3 (2 not) (1 bad))"]
    errors = [r["error"] for r in results]
    assert errors[0] is None and errors[6] is None
    assert "never closed" in errors[1] and "line 1, column 1" in errors[1]  # the ParseError
    assert "empty sentence" in errors[2] and "empty sentence" in errors[3]
    assert "no words" in errors[4] and "got int" in errors[5]
    assert all(r["label"] is None and r["probs"] is None for r in results[1:6])
    # the good ones are predicted as if alone
    assert_same_predictions([results[0], results[6]],
                            predictor.predict(["the plot was good", "(3 (2 not) (1 bad))"]))
    with pytest.raises(structrnn.InputError, match="wrap it in a list"):
        predictor.predict("the plot was good")
    with pytest.raises(structrnn.InputError, match="smiles_col"):
        predictor.predict(["good"], smiles_col="smiles")
    with pytest.raises(structrnn.InputError, match="batch_size"):
        predictor.predict(["good"], batch_size=0)


class RightBranchingParser(Predictor):
    """A stand-in for a trained parser (the parser task's predictor contract: a PTB ``"tree"``
    or an ``"error"`` per sentence): the right-branching tree over the treebank tokens."""

    def __init__(self) -> None:
        super().__init__("parser", {}, [], torch.device("cpu"))
        self.seen: list[str] = []

    def predict(self, sentences, **options):
        self.seen.extend(sentences)
        return [{"input": s, "tree": right_branching(tokenize(s)), "error": None}
                if "??" not in s else {"input": s, "tree": None, "error": "cannot parse"}
                for s in sentences]


def right_branching(tokens: list[str]) -> str:
    tree = f"(X {tokens[-1]})"
    for token in reversed(tokens[:-1]):
        tree = f"(X (X {token}) {tree})"
    return tree


def test_a_parser_gives_raw_sentences_their_tree(run):
    predictor = structrnn.load(run)
    parser = RightBranchingParser()
    inputs = ["the plot was not good", "(3 (2 its) (3 nice))", "what ??", "the cast was dull"]
    results = predictor.predict(inputs, parser=parser, nodes=True)
    assert parser.seen == ["the plot was not good", "what ??", "the cast was dull"]  # raw only
    assert [r["tree"] for r in results] == ["parsed", "gold", None, "parsed"]
    assert results[2]["error"] == "parser: cannot parse"
    # the parsed tree is the one predicted on: the same as giving that tree
    given = predictor.predict([right_branching(tokenize(inputs[0])),
                               right_branching(tokenize(inputs[3]))], nodes=True)
    assert [g["tree"] for g in given] == ["given", "given"]
    assert_same_predictions([{**r, "input": None, "tree": None} for r in results[::3]],
                            [{**g, "input": None, "tree": None} for g in given])
    with pytest.raises(structrnn.InputError, match="expected a parser"):
        predictor.predict(["good"], parser=predictor)  # a sentiment run is no parser


def test_progress_bar_on_request_or_for_many_inputs(run, capsys):
    predictor = structrnn.load(run)
    predictor.predict(["good"] * 3)
    assert capsys.readouterr().err == ""
    predictor.predict(["good"] * 3, progress=True)
    assert "predict" in capsys.readouterr().err
    predictor.predict(["good"] * 1001, progress=None)
    assert "1001" in capsys.readouterr().err
    predictor.predict(["good"] * 1001, progress=False)
    assert capsys.readouterr().err == ""


def test_png_draws_the_first_predicted_tree(run, tmp_path):
    results = structrnn.load(run).predict(["(bad", "the plot was good"], png=tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000 and results[1]["error"] is None
    with pytest.raises(structrnn.InputError, match="no input could be read"):
        structrnn.load(run).predict(["(bad"], png=tmp_path / "u.png")


# ------------------------------------------------------------------ files
def test_exported_file_loads_in_a_fresh_process_with_the_same_predictions(run, tmp_path):
    predictor = structrnn.load(run)
    path = predictor.save(tmp_path / "model.pt")
    state = torch.load(path, weights_only=True)
    assert state["task"] == "sst" and state["vocab"] == list(Vocab.load(run / "vocab.json"))
    assert state["config"] == json.loads((run / "config.json").read_text())

    sentences = ["the acting was not very good", "(3 (2 its) (3 charming))", "(bad"]
    code = ("import json, sys, structrnn; p = structrnn.load(sys.argv[1]); "
            "print(json.dumps(p.predict(json.loads(sys.argv[2]), nodes=True)))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(sentences)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_predictions(json.loads(done.stdout), predictor.predict(sentences, nodes=True))


def test_model_files_that_are_newer_or_incomplete_are_refused(run, tmp_path):
    state = torch.load(structrnn.load(run).save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**state, "version": FORMAT_VERSION + 1}, tmp_path / "newer.pt")
    with pytest.raises(structrnn.InputError, match="newer"):
        structrnn.load(tmp_path / "newer.pt")
    torch.save({k: v for k, v in state.items() if k != "vocab"}, tmp_path / "novocab.pt")
    with pytest.raises(structrnn.InputError, match="lacks vocab"):
        structrnn.load(tmp_path / "novocab.pt")
    small = {**state, "vocab": state["vocab"][:-1]}
    torch.save(small, tmp_path / "short.pt")
    with pytest.raises(structrnn.InputError, match="embedding rows"):
        structrnn.load(tmp_path / "short.pt")


def test_run_folder_without_weights_or_vocab_json(run, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((run / "config.json").read_bytes())
    with pytest.raises(structrnn.InputError, match="no best.pt"):
        structrnn.load(partial)
    # without vocab.json the token list kept in best.pt serves
    (partial / "best.pt").write_bytes((run / "best.pt").read_bytes())
    sentences = ["the plot was good but the music was awful", "(1 (2 not) (3 nice))"]
    assert_same_predictions(structrnn.load(partial).predict(sentences),
                            structrnn.load(run).predict(sentences))


# ------------------------------------------------------------------ command line
def test_cli_predict_prints_json_lines_and_marks_bad_rows(run, capsys):
    assert cli.main(["predict", str(run), "the plot was good", "(bad"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    good, bad = map(json.loads, lines)
    assert good["error"] is None and good["tokens"] == ["the", "plot", "was", "good"]
    assert bad["label"] is None and "never closed" in bad["error"]


def test_cli_predict_file_keeps_order_and_line_numbers(run, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("the plot was good\n\n(3 (2 not) (1 bad))\n(oops\nits cast was dull\n")
    out = tmp_path / "out" / "preds.jsonl"
    assert cli.main(["predict", str(run), "--input", str(source), "--output", str(out),
                     "--nodes", "--no-progress"]) == 0
    assert "4 predictions" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3, 4, 5]
    assert [r["input"] for r in rows] == ["the plot was good", "(3 (2 not) (1 bad))", "(oops",
                                          "its cast was dull"]
    assert rows[2]["error"] and rows[2]["nodes"] is None and len(rows[1]["nodes"]) == 3
    expected = structrnn.load(run).predict([r["input"] for r in rows], nodes=True)
    assert_same_predictions([{k: v for k, v in r.items() if k != "line"} for r in rows],
                            expected)
    # to stdout without --output
    assert structrnn.load(run).predict_file(source, None) == 4
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert cli.main(["predict", str(run), "--input", str(tmp_path / "none.txt")]) == 2


def test_cli_eval_prints_the_runs_figures(run, capsys):
    assert cli.main(["eval", str(run), "--split", "test"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["root_acc"] == json.loads((run / "metrics.json").read_text())["test_root"]
    assert shown["split"] == "test" and "binary_root_acc" in shown


def test_cli_predict_with_a_missing_run_or_another_tasks_run_is_one_line(run, tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "missing"), "good"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such run folder" in err
    if importlib.util.find_spec("structrnn.tasks.molecules.predictor") is not None:
        return  # the molecule task answers for its own runs (its tests)
    mol = tmp_path / "mol"
    mol.mkdir()
    (mol / "config.json").write_text(json.dumps({"task": "molecules"}))
    assert cli.main(["predict", str(mol), "CCO"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_an_sst_run_evaluates_to_its_metrics_and_reads_raw_sst_text(tmp_path):
    root = require_dataset("sst")
    folder = tmp_path / "sst"
    assert cli.main(["train", "sst", "--data", str(root), "--max-trees", "40", "--hidden", "8",
                     "--embed-dim", "8", "--epochs", "1", "--no-progress",
                     "--out", str(folder)]) == 0
    predictor = structrnn.load(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    result = predictor.evaluate("test")
    assert result["root_acc"] == metrics["test_root"] and result["trees"] == 40
    dev = read_ptb_file(root / "dev.txt").trees  # --data: all of dev, a root holding sst/
    assert predictor.evaluate("dev", data=str(root.parent))["trees"] == len(dev) > 40
    test = read_ptb_file(root / "test.txt").trees[:5]
    raw = predictor.predict([" ".join(t.leaves()) for t in test])
    assert [r["tokens"] for r in raw] == [t.leaves() for t in test]


# ------------------------------------------------------------------ the example
def test_example_trains_saves_loads_and_predicts(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("example_sentiment",
                                                  REPO / "examples" / "sentiment.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--trees", "60", "--epochs", "1", "--hidden", "8",
                            "--out", str(tmp_path / "run")])
    assert (tmp_path / "run" / "sentiment.pt").is_file()
    assert len(results) == len(example.SENTENCES)
    assert all(r["error"] is None and abs(sum(r["probs"]) - 1) < 1e-5 for r in results)
    assert [r["tree"] for r in results] == ["balanced"] * 5 + ["gold"]
    assert results[4]["unknown_words"] == ["The", "!"]
    out = capsys.readouterr().out
    assert "saved and loaded back" in out and out.count(" tree") == len(results)


def test_a_sequence_run_predicts_like_its_evaluation(tmp_path):
    """A --model lstm run (words in order, root labels) loads and predicts: its test root
    accuracy from the predictor equals the run's own."""
    import json

    import structrnn
    from structrnn import cli

    run = tmp_path / "lstm"
    assert cli.main(["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "60",
                     "--model", "lstm", "--hidden", "8", "--embed-dim", "8", "--epochs", "1",
                     "--no-progress", "--out", str(run)]) == 0
    predictor = structrnn.load(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert predictor.evaluate("test")["root_acc"] == pytest.approx(metrics["test_root"])
    (row,) = predictor.predict(["the movie was good"])
    assert row["error"] is None and abs(sum(row["probs"]) - 1) < 1e-5
