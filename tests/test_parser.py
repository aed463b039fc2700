"""The span-based constituency parser (issue 16): CKY against brute-force enumeration, the F1
scorer and the hinge loss against hand-computed and enumerated values, the baselines, a parser
trained through ``structrnn train parser`` on a toy treebank with a fixed bracketing pattern,
the predictor (edge cases, files, export), the ``structrnn parse`` command and a save/load round
trip in a fresh process."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from structrnn import cli
from structrnn.tasks.parser import task
from structrnn.tasks.predictor import load
from structrnn.training.task import run_task
from structrnn.trees.parser import Parser, hinge_loss
from structrnn.trees.spans import (
    balanced,
    bracket_f1,
    cky,
    left_branching,
    right_branching,
    spans_to_tree,
    tree_spans,
)
from structrnn.trees.tree import Tree

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- references
def all_trees(i: int, j: int):
    """Every binary tree over words i..j-1 as its spans in pre-order (the reference)."""
    if j - i == 1:
        yield [(i, j)]
        return
    for k in range(i + 1, j):
        for left in all_trees(i, k):
            for right in all_trees(k, j):
                yield [(i, j), *left, *right]


def total(scores: torch.Tensor, spans) -> float:
    return sum(float(scores[i, j]) for i, j in spans)


@pytest.mark.parametrize("seed", range(5))
def test_cky_finds_the_brute_force_argmax(seed):
    gen = torch.Generator().manual_seed(seed)
    n, batch = 7, 9
    scores = torch.randn(batch, n + 1, n + 1, generator=gen)
    lengths = torch.randint(1, n + 1, (batch,), generator=gen)
    lengths[:2] = torch.tensor([n, 1])  # the longest and a one-word sentence in every batch
    result = cky(scores, lengths)
    for b, found in enumerate(result.span_lists()):
        m = int(lengths[b])
        best = max(all_trees(0, m), key=lambda t: total(scores[b], t))  # 132 trees at m = 7
        assert found == best
        assert float(result.score[b]) == pytest.approx(total(scores[b], best), abs=1e-5)
    assert result.ptr.tolist()[-1] == len(result.spans) == int((2 * lengths - 1).sum())


def test_cky_rejects_lengths_outside_the_chart():
    with pytest.raises(ValueError, match="1..3"):
        cky(torch.zeros(2, 4, 4), [3, 4])
    with pytest.raises(ValueError, match="one per sentence"):
        cky(torch.zeros(2, 4, 4), [3])


def test_hinge_loss_is_the_loss_augmented_margin_by_enumeration():
    gen = torch.Generator().manual_seed(3)
    n = 5
    gold_tree = [(0, 5), (0, 2), (0, 1), (1, 2), (2, 5), (2, 3), (3, 5), (3, 4), (4, 5)]
    gold = torch.tensor([(0, i, j) for i, j in gold_tree])
    scores = torch.randn(1, n + 1, n + 1, generator=gen, requires_grad=True)
    loss = hinge_loss(scores, torch.tensor([n]), gold)
    s = scores.detach()[0]
    expected = max(total(s, t) + len(set(t) - set(gold_tree)) for t in all_trees(0, n)) \
        - total(s, gold_tree)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-5)
    loss.sum().backward()  # the gradient reaches the scores
    assert scores.grad.abs().sum() > 0
    # a gold tree ahead of every other tree by more than its wrong spans: no loss at all
    margin = torch.zeros(1, n + 1, n + 1)
    margin[0, gold[:, 1], gold[:, 2]] = 10.0
    assert float(hinge_loss(margin, torch.tensor([n]), gold)) == 0.0


def test_tree_spans_and_bracket_f1_on_a_hand_computed_example():
    gold = [Tree.from_ptb("(3 (2 (2 The) (2 cast)) (3 (3 (2 is) (3 good)) (2 .)))"),
            Tree.from_ptb("(1 (2 Not) (1 good))"),
            Tree.from_ptb("(2 (2 (2 a) (2 b)) (2 (2 c) (2 d)))")]
    assert tree_spans(gold[0]) == {(0, 5), (0, 2), (0, 1), (1, 2), (2, 5), (2, 4), (2, 3),
                                   (3, 4), (4, 5)}
    predicted = [right_branching(["The", "cast", "is", "good", "."]),  # (0,4) (1,4) (2,4)
                 right_branching(["Not", "good"]),                     # nothing to score
                 left_branching(list("abcd"))]                         # (0,2) (0,3)
    # scored brackets: gold {(0,2), (2,5), (2,4)}, {}, {(0,2), (2,4)}: 5; predicted 3 + 0 + 2;
    # matched: (2,4) and (0,2)
    result = bracket_f1(gold, predicted)
    assert (result["matched"], result["gold"], result["predicted"]) == (2, 5, 5)
    assert result["precision"] == result["recall"] == 0.4
    assert result["f1"] == pytest.approx(0.4)
    assert result["exact"] == pytest.approx(1 / 3)  # the two-word sentence
    # a flat prediction (spans, not a tree) has fewer brackets: precision and recall differ
    flat = bracket_f1(gold[2:], [[(0, 4), (0, 2)]])
    assert (flat["precision"], flat["recall"]) == (1.0, 0.5)
    assert flat["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="4 leaves"):
        bracket_f1(gold[2:], [right_branching(list("abc"))])


def test_spans_to_tree_and_the_baselines():
    assert right_branching(["It", "works", "well", "."]).to_ptb() == \
        "(X (X (X It) (X (X works) (X well))) (X .))"
    assert right_branching(["It", "works", "well"]).to_ptb() == \
        "(X (X It) (X (X works) (X well)))"
    assert left_branching(list("abc")).to_ptb() == "(X (X (X a) (X b)) (X c))"
    assert balanced(list("abcde")).to_ptb() == \
        "(X (X (X (X a) (X b)) (X (X c) (X d))) (X e))"
    assert spans_to_tree(["word"], []).to_ptb() == "(X word)"
    tree = Tree.from_ptb("(3 (2 (2 The) (2 cast)) (3 (3 (2 is) (3 good)) (2 .)))")
    rebuilt = spans_to_tree(tree.leaves(), tree_spans(tree), label="Y")
    assert tree_spans(rebuilt) == tree_spans(tree) and rebuilt.leaves() == tree.leaves()
    assert spans_to_tree(list("abcd"), [(0, 4)]).to_ptb() == "(X (X a) (X b) (X c) (X d))"
    with pytest.raises(ValueError, match="crosses"):
        spans_to_tree(list("abc"), [(0, 2), (1, 3)])
    with pytest.raises(ValueError, match="outside"):
        spans_to_tree(list("abc"), [(1, 4)])


def test_balanced_is_the_tree_the_sentiment_predictor_uses():
    tokenize = pytest.importorskip("structrnn.trees.tokenize")
    for n in range(1, 12):
        words = [f"w{k}" for k in range(n)]
        assert tree_spans(balanced(words)) == tree_spans(tokenize.balanced_tree(words))


# ----------------------------------------------------------------------------------- training
def noun_phrase(r: random.Random) -> str:
    det = r.choice(["the", "a", "this", "every"])
    noun = r.choice(["dog", "film", "actor", "plot", "story", "cast", "scene"])
    if r.random() < 0.5:
        return f"(2 (2 {det}) (2 (2 {r.choice(['good', 'dull', 'witty', 'odd'])}) (2 {noun})))"
    return f"(2 (2 {det}) (2 {noun}))"


def toy_sentence(r: random.Random) -> str:
    """A fixed pattern, ((det (adj noun)) (verb (det noun))) with an optional final period at
    the top, that no baseline gets right."""
    verb = r.choice(["likes", "sees", "hates", "makes", "wants"])
    tree = f"(2 {noun_phrase(r)} (2 (2 {verb}) {noun_phrase(r)}))"
    return f"(2 {tree} (2 .))" if r.random() < 0.5 else tree


def toy_treebank(root: Path, sizes=(200, 40, 40), seed=0) -> Path:
    r = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, size in zip(("train", "dev", "test"), sizes, strict=True):
        (root / f"{name}.txt").write_text("".join(toy_sentence(r) + "\n" for _ in range(size)))
    return root


TINY = ["--hidden", "16", "--char-hidden", "8", "--char-dim", "8", "--embed-dim", "16",
        "--mlp-hidden", "16", "--layers", "1", "--batch-size", "10", "--dropout", "0",
        "--word-dropout", "0.1", "--lr", "0.01", "--no-progress", "--threads", "1"]


def train_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    task.add_arguments(p)
    return p.parse_args(argv)


def train_parser(argv: list[str]) -> dict:
    return run_task(task.TASK, train_args(argv))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("parser")
    data = toy_treebank(base / "toy")
    out = base / "run"
    metrics = train_parser(["--data", str(data), "--out", str(out), "--epochs", "3",
                                   *TINY])
    return out, metrics


def test_a_parser_trained_on_a_fixed_pattern_recovers_it(toy_run):
    out, metrics = toy_run
    assert metrics["test_f1"] >= 0.95 and metrics["dev_f1"] >= 0.95
    assert metrics["test_f1"] > max(metrics["baselines_test_f1"].values()) + 0.25
    assert set(metrics["baselines_test_f1"]) == {"right_branching", "left_branching",
                                                 "balanced"}
    assert len(metrics["epoch_seconds"]) == metrics["epochs"] == 3
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert json.loads((out / "config.json").read_text())["task"] == "parser"
    assert "dev_f1" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


def test_resume_gives_the_same_parser(tmp_path):
    data = toy_treebank(tmp_path / "toy", sizes=(40, 10, 10))
    common = ["--data", str(data), *TINY]
    straight = train_parser([*common, "--epochs", "2", "--out", str(tmp_path / "a")])
    train_parser([*common, "--epochs", "1", "--out", str(tmp_path / "b")])
    resumed = train_parser([*common, "--epochs", "2", "--out", str(tmp_path / "b"),
                                   "--resume"])
    assert resumed["test_f1"] == straight["test_f1"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_missing_data_is_an_input_error(tmp_path):
    with pytest.raises(ValueError, match="no train.txt"):
        train_parser(["--data", str(tmp_path), "--out", str(tmp_path / "run"), *TINY])


# ----------------------------------------------------------------------------------- predicting
def test_predict_edge_cases(toy_run):
    predictor = load(toy_run[0])
    long = " ".join(random.Random(1).choice(["the", "dog", "likes", "a", "odd", "film"])
                    for _ in range(200))
    inputs = ["", "   ", "dog", long, "the 🙂 dog likes 漢字 and ñandú .",
              ["the", "witty", "(", "cast", ")"], 17]
    results = predictor.predict(inputs)
    assert [r["input"] for r in results] == inputs
    assert "empty" in results[0]["error"] and "empty" in results[1]["error"]
    assert "int" in results[6]["error"]
    assert results[2]["tree"] == "(X dog)" and results[2]["error"] is None
    for r, n in zip(results[3:6], (200, None, 5), strict=True):
        assert r["error"] is None
        tree = Tree.from_ptb(r["tree"])
        assert tree.leaves() == r["tokens"] and (n is None or len(r["tokens"]) == n)
        assert {node.label for node in tree.subtrees()} == {"X"}
        assert all(len(node.children) in (0, 2) for node in tree.subtrees())  # binary
    assert "🙂" in results[4]["tokens"] and "漢字" in "".join(results[4]["tokens"])
    assert results[5]["tokens"] == ["the", "witty", "-LRB-", "cast", "-RRB-"]


def test_parse_learns_the_pattern_on_new_sentences(toy_run):
    parser = load(toy_run[0]).model
    [tree] = parser.parse(["this odd actor hates every film ."])
    assert tree.to_ptb() == ("(X (X (X (X this) (X (X odd) (X actor))) (X (X hates) "
                             "(X (X every) (X film)))) (X .))")
    with pytest.raises(ValueError, match="sentence 1 has no tokens"):
        parser.parse(["dog", " "])


def test_parse_command_prints_one_tree_per_sentence(toy_run, capsys):
    code = cli.main(["parse", str(toy_run[0]), "the dog likes a film .", "a cast sees a plot",
                     "--no-progress"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert [Tree.from_ptb(line).leaves() for line in lines] == [
        ["the", "dog", "likes", "a", "film", "."], ["a", "cast", "sees", "a", "plot"]]
    assert cli.main(["parse", str(toy_run[0])]) == 2  # nothing to parse: one line, code 2


def test_parse_command_draws_the_first_tree(toy_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "tree.png"
    assert cli.main(["parse", str(toy_run[0]), "", "the dog likes a film .", "--png",
                     str(picture), "--no-progress"]) == 0
    assert picture.stat().st_size > 0
    assert capsys.readouterr().out.splitlines()[0].startswith("# error: empty sentence")


def test_parse_file_keeps_order_and_count(toy_run, tmp_path):
    lines = ["the dog likes a film .", "", "a witty cast hates this plot", "dog",
             "every scene makes the story ."]
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("\n".join(lines) + "\n")
    assert cli.main(["parse", str(toy_run[0]), "--input", str(source), "--output",
                     str(target), "--no-progress"]) == 0
    out = target.read_text().split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    for line, tree in zip(lines, out[:-1], strict=True):
        assert (Tree.from_ptb(tree).leaves() == line.split()) if line else tree == ""


def test_evaluate_matches_the_run(toy_run):
    out, metrics = toy_run
    figures = load(out).evaluate("test")
    assert figures["f1"] == pytest.approx(metrics["test_f1"])
    assert figures["baselines_f1"] == pytest.approx(metrics["baselines_test_f1"])


def test_save_and_load_in_a_fresh_process(toy_run, tmp_path):
    predictor = load(toy_run[0])
    sentences = ["the dog likes a film .", "this witty actor hates every plot", "scene"]
    expected = [t.to_ptb() for t in predictor.model.parse(sentences)]
    parser_file = predictor.model.save(tmp_path / "parser.pt")
    export_file = predictor.save(tmp_path / "export.pt")
    code = ("import json, sys\n"
            "import structrnn as sr\n"
            "from structrnn.trees.parser import Parser\n"
            "s = json.loads(sys.argv[3])\n"
            "a = [t.to_ptb() for t in Parser.load(sys.argv[1]).parse(s)]\n"
            "b = [r['tree'] for r in sr.load(sys.argv[2]).predict(s)]\n"
            "print(json.dumps([a, b]))\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code, str(parser_file), str(export_file),
                           json.dumps(sentences)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [expected, expected]
    state = torch.load(parser_file, weights_only=True)
    # one model-file format: Parser.save writes what structrnn.load reads
    assert state["format"] == "structrnn.model" and state["task"] == "parser"
    assert state["parser"]["words"][0] == "<unk>"


def test_a_parser_from_scratch_and_its_checks(tmp_path):
    words, chars = Parser.build_vocabularies([["a", "b"], ["b", "c"]])
    parser = Parser(words, chars, hidden=4, char_hidden=2, char_dim=2, embed_dim=3,
                    mlp_hidden=4, layers=1)
    assert [t.leaves() for t in parser.parse(["a b zz", ["c"]])] == [["a", "b", "zz"], ["c"]]
    with pytest.raises(ValueError, match="unknown settings"):
        Parser(words, chars, hiden=4)
    with pytest.raises(ValueError, match="one row per word"):
        Parser(words, chars, vectors=torch.zeros(2, 3))
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(ValueError, match="not a parser file"):
        Parser.load(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a parser file"):
        Parser.load(tmp_path / "other.pt")


def test_parse_benchmark_runs_from_the_source_tree_launcher(toy_run, tmp_path):
    data = toy_treebank(tmp_path / "toy", sizes=(20, 5, 12))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("STRUCTRNN_DATA", None)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_parse.py"),
                           "--data", str(data), "--run", str(toy_run[0]), "--single", "3",
                           "--repeats", "1"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["mode"], r["sentences"]) for r in records] == [("batch", 12), ("single", 3)]
    assert all(r["sentences_per_s"] > 0 and r["threads"] == 1 for r in records)
    assert "machine:" in done.stdout and "load average" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "structrnn.benchmarks.parse"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert missing.returncode == 2 and "--data" in missing.stderr
