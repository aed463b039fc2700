"""One predictor contract (issue 24): the base ``Predictor.predict`` owns chunks, progress and
per-row errors; each task reads one input, forwards one batch and makes one row. In a mixed batch
every bad input marks its own row (its reason under ``"error"``, its prediction keys None) and
every good row equals predicting that input alone; a forward pass that fails on one input is
retried input by input, so only that input's row is marked; the command line exits 0 with such
rows and prints no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest
import torch

import structrnn
from structrnn import cli
from structrnn.tasks.predictor import Predictor
from structrnn.tasks.shortest_path import data as sp_data
from tests.conftest import REPO
from tests.test_parser import TINY as PARSER_TINY
from tests.test_parser import toy_treebank
from tests.test_predict_graphs import SP_TINY
from tests.test_task_fixes import CIRCUITS

SST_TINY = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
            "--embed-dim", "8", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny runs of the tasks, trained once for this module through the command line
    (each lazily: a test asks for the one it needs)."""
    base = tmp_path_factory.mktemp("contract")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            out = base / name
            if name == "sst":
                argv = ["sst", *SST_TINY]
            elif name == "sst-child-sum":
                argv = ["sst", *SST_TINY, "--model", "child-sum-tree-lstm"]
            elif name == "molecules":
                pytest.importorskip("rdkit")
                argv = ["molecules", "--max-molecules", "40", "--epochs", "1", "--hidden", "8",
                        "--steps", "2", "--seeds", "0", "--no-progress"]
            elif name == "shortest-path":
                argv = ["shortest-path", "--epochs", "1", *SP_TINY]
            elif name == "circuits":
                argv = CIRCUITS[1:]
            else:
                data = toy_treebank(base / "toy", sizes=(60, 12, 12))
                argv = ["parser", "--data", str(data), "--epochs", "1", *PARSER_TINY]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                assert cli.main(["train", *argv, "--out", str(out)]) == 0
            finally:
                torch.set_num_threads(threads)
            made[name] = out
        return made[name]

    return get


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "cache"))


def assert_same(a: Any, b: Any, where: str = "row") -> None:
    """Equal plain values, floats to float tolerance (batching changes the rounding)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {b}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, float):
        torch.testing.assert_close(torch.tensor(a, dtype=torch.float64),
                                   torch.tensor(b, dtype=torch.float64), rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"{where}: {m}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check_mixed_batch(predictor: Predictor, inputs: list, reasons: dict[int, str],
                      index_input: bool = False, **options) -> list[dict]:
    """Predict ``inputs`` in chunks of 2; the rows ``reasons`` names are errors whose reason
    holds that text (every other key None), the rest equal each input predicted alone.
    ``index_input``: the row's ``"input"`` is the input's position, not the input."""
    rows = predictor.predict(inputs, batch_size=2, **options)
    assert len(rows) == len(inputs)
    for k, (item, row) in enumerate(zip(inputs, rows, strict=True)):
        if k in reasons:
            assert row["error"] is not None and reasons[k] in row["error"], (k, row["error"])
            assert all(v is None for key, v in row.items() if key not in ("input", "error")), row
            continue
        assert row["error"] is None, (k, row["error"])
        [alone] = predictor.predict([item], **options)
        if index_input:
            alone["input"] = k
        assert_same(row, alone, f"row {k}")
    return rows


# ------------------------------------------------------------------------------------ the tasks
def test_sentiment_a_tree_wider_than_the_model_marks_only_its_row(runs):
    predictor = structrnn.load(runs("sst"))
    # the example: this raised ValueError for the whole batch
    good, wide = predictor.predict(["(3 (2 a) (2 b))", "(3 (2 a) (2 b) (2 c))"])
    assert good["error"] is None and good["label"] in range(5)
    assert "3 children" in wide["error"] and "at most 2" in wide["error"]
    assert predictor.arity == 2  # the binary N-ary Tree-LSTM's, read from its cells
    inputs = ["the plot was good", "(3 (2 a) (2 b) (2 c))", "", "(3 (2 not) (1 bad))", 42,
              "(bad", "its cast (was) dull"]
    reasons = {1: "3 children", 2: "empty sentence", 4: "got int", 5: "never closed"}
    rows = check_mixed_batch(predictor, inputs, reasons, nodes=True)
    assert rows[1]["input"] == "(3 (2 a) (2 b) (2 c))" and rows[4]["input"] == "42"
    assert rows[1]["nodes"] is None and len(rows[3]["nodes"]) == 3


def test_sentiment_a_model_without_an_arity_takes_any_number_of_children(runs):
    predictor = structrnn.load(runs("sst-child-sum"))
    assert predictor.arity is None
    [row] = predictor.predict(["(3 (2 a) (2 b) (2 c))"], nodes=True)
    assert row["error"] is None and len(row["nodes"]) == 4


def test_molecules_invalid_smiles_and_wrong_feature_width_mark_their_rows(runs):
    from structrnn.datasets.molecules import from_smiles

    predictor = structrnn.load(runs("molecules"))
    narrow = from_smiles("CCO")
    narrow.x = narrow.x[:, :3]  # not the featuriser's width
    no_edges = from_smiles("CC")
    no_edges.edge_index = torch.tensor([[0], [5]])  # a node id outside the graph
    no_edges.edge_attr = no_edges.edge_attr[:1]
    inputs = ["CCO", "not-a-smiles", "", "c1ccccc1", narrow, "C1CC", no_edges, "CC(=O)O"]
    reasons = {1: "invalid SMILES", 2: "empty SMILES", 4: "x: expected", 5: "invalid SMILES",
               6: "outside"}
    rows = check_mixed_batch(predictor, inputs, reasons)
    assert [r["input"] for r in rows] == ["CCO", "not-a-smiles", "", "c1ccccc1", 4, "C1CC", 6,
                                          "CC(=O)O"]


def test_shortest_path_ill_formed_graphs_mark_their_rows(runs):
    predictor = structrnn.load(runs("shortest-path"))
    rng = np.random.default_rng(3)
    graphs = []
    for n in (6, 8, 7):
        g, start, end, _ = sp_data.make_graph(rng, n)
        g.graph.update(start=start, end=end)
        graphs.append(g)
    no_start = nx.Graph(graphs[0])
    del no_start.graph["start"]
    no_pos = nx.Graph(graphs[1])
    del no_pos.nodes[next(iter(no_pos.nodes))]["pos"]
    same = nx.Graph(graphs[2])
    same.graph["end"] = same.graph["start"]
    data = sp_data.to_data(graphs[0], graphs[0].graph["start"], graphs[0].graph["end"], [])
    outside = data.clone()
    outside.edge_index = outside.edge_index.clone()
    outside.edge_index[0, 0] = 99
    inputs = [graphs[0], no_start, graphs[1], no_pos, same, outside, graphs[2],
              nx.path_graph(3)]
    reasons = {1: "no start node", 3: "no 2-d 'pos'", 4: "the same node", 5: "outside",
               7: "no start node"}
    check_mixed_batch(predictor, inputs, reasons, index_input=True)


def test_parser_sentences_it_cannot_read_mark_their_rows(runs):
    predictor = structrnn.load(runs("parser"))
    inputs = ["the dog likes a film", "", 17, ["the", 3], "a odd film .", "   ",
              ["the", "witty", "cast"]]
    reasons = {1: "empty", 2: "int", 3: "token 1 is a int", 5: "empty"}
    rows = check_mixed_batch(predictor, inputs, reasons)
    assert [r["input"] for r in rows] == inputs


def test_circuits_a_cyclic_or_ill_formed_circuit_marks_its_row(runs):
    predictor = structrnn.load(runs("circuits"))
    good = {"inputs": {"a": 1, "b": 0},
            "gates": {"c": ["and", "a", "b"], "d": ["not", "c"], "e": ["xor", "d", "a"]}}
    cyclic = {"inputs": {"a": 1}, "gates": {"p": ["and", "a", "q"], "q": ["or", "p", "a"]}}
    dangling = {"inputs": {"a": 1}, "gates": {"p": ["and", "a", "zz"]}}
    other = {"inputs": {"x": 0, "y": 1}, "gates": {"z": ["or", "x", "y"]}}
    inputs = [good, cyclic, other, "{not json", dangling, json.dumps(other)]
    reasons = {1: "cycle", 3: "invalid JSON", 4: "no node of the circuit"}
    check_mixed_batch(predictor, inputs, reasons, index_input=True)


# ---------------------------------------------------------------------- the base class's rules
def test_a_forward_pass_that_fails_on_one_input_is_retried_one_by_one(runs, monkeypatch):
    """An error only the model meets (not the reading) marks the culprit's row alone."""
    predictor = structrnn.load(runs("sst"))
    forward = type(predictor).forward_batch
    calls: list[int] = []

    def fragile(self, inputs, options):
        calls.append(len(inputs))
        if any("boom" in tree.leaves() for tree, _ in inputs):
            raise RuntimeError("index 7 is out of bounds")
        return forward(self, inputs, options)

    inputs = ["a good film", "boom", "a dull film", "it is fine"]
    expected = predictor.predict([inputs[0], inputs[2], inputs[3]])
    monkeypatch.setattr(type(predictor), "forward_batch", fragile)
    rows = predictor.predict(inputs, batch_size=3)
    assert calls == [3, 1, 1, 1, 1]  # the failing chunk again input by input, then the rest
    assert rows[1]["label"] is None and rows[1]["input"] == "boom"
    assert rows[1]["error"] == ("the model failed on this input: RuntimeError: index 7 is out "
                                "of bounds")
    for row, alone in zip([rows[0], rows[2], rows[3]], expected, strict=True):
        assert_same(row, alone)


def test_options_and_batch_sizes_are_checked_once_for_the_call(runs):
    predictor = structrnn.load(runs("sst"))
    with pytest.raises(structrnn.InputError, match="smiles_col: not an option of a sst run"):
        predictor.predict(["good"], smiles_col="x")
    with pytest.raises(structrnn.InputError, match="batch_size"):
        predictor.predict(["good"], batch_size=0)
    with pytest.raises(structrnn.InputError, match="wrap it in a list"):
        predictor.predict(structrnn.Tree.from_ptb("(2 good)"))
    # the chunking does not change the predictions
    inputs = ["a good film", "a dull film", "(3 (2 not) (1 bad))", "so so"]
    assert_same(predictor.predict(inputs, batch_size=1), predictor.predict(inputs))


# ------------------------------------------------------------------------------ command line
def test_cli_predict_exits_0_with_error_rows_and_no_traceback(runs, tmp_path):
    run = runs("sst")
    source = tmp_path / "in.txt"
    source.write_text("the plot was good\n(3 (2 a) (2 b) (2 c))\n(oops\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "structrnn", "predict", str(run),
                           "(3 (2 a) (2 b) (2 c))", "good", "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    wide, good = map(json.loads, done.stdout.splitlines())
    assert "3 children" in wide["error"] and good["error"] is None
    done = subprocess.run([sys.executable, "-m", "structrnn", "predict", str(run), "--input",
                           str(source), "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[0]["error"] is None and "3 children" in rows[1]["error"] and rows[2]["error"]


def test_cli_exits_2_only_for_an_unusable_invocation(runs, tmp_path, capsys):
    run = str(runs("sst"))
    for argv in (["predict", run, "--input", str(tmp_path / "missing.txt")],
                 ["predict", run, "good", "--batch-size", "0"],
                 ["predict", run, "good", "--smiles-col", "smiles"]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_molecule_csv_and_parse_keep_bad_rows(runs, tmp_path, capsys):
    pytest.importorskip("rdkit")
    source = tmp_path / "in.csv"
    source.write_text("smiles,name\nCCO,ethanol\nnot-a-smiles,junk\n,empty\n")
    molecules, parser = runs("molecules"), runs("parser")
    capsys.readouterr()  # the runs' training summaries, when this test trains them first
    assert cli.main(["predict", str(molecules), "--input", str(source),
                     "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].endswith(",error")
    assert lines[1].endswith(",") and "invalid SMILES" in lines[2] and "empty SMILES" in lines[3]
    assert cli.main(["parse", str(parser), "the dog likes a film", "",
                     "--no-progress"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("(X") and second.startswith("# error: empty")
