"""Ensembles of seeds (issue 26): ``structrnn train sst --seeds`` and ``structrnn train parser
--seeds`` train one model per seed in ``RUN/units/seedS``; their predictors average the
members' outputs (class probabilities; span scores, decoded once by CKY). Each is checked
against the members rebuilt by hand from their own ``best.pt`` files."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

import structrnn
from structrnn import cli
from structrnn.datasets.synthetic import SyntheticSentiment
from structrnn.tasks.sentiment.model import TreeSentiment
from structrnn.trees.loader import collate_trees
from structrnn.trees.vocab import Vocab
from tests.test_parser import all_trees

TINY = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8", "--embed-dim", "8",
        "--epochs", "2", "--no-progress", "--threads", "1"]
SEEDS = [0, 3, 5]


@pytest.fixture(scope="module")
def sst_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ensemble") / "sst"
    seeds = ",".join(map(str, SEEDS))
    assert cli.main(["train", "sst", *TINY, "--seeds", seeds, "--out", str(folder)]) == 0
    return folder


def member(folder: Path, seed: int, vocab: Vocab) -> TreeSentiment:
    """One seed's model, built by hand and loaded from its own best.pt."""
    model = TreeSentiment(len(vocab), 5, "tree-lstm", embed_dim=8, hidden=8, dropout=0.0)
    state = torch.load(folder / "units" / f"seed{seed}" / "best.pt", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


def mean_member_probs(folder: Path, trees) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 5) the members' mean node probabilities over ``trees``, and the batch's ptr."""
    vocab = Vocab.load(folder / "vocab.json")
    batch = collate_trees([t.to_data(vocab) for t in trees])
    with torch.no_grad():
        probs = [member(folder, s, vocab)(batch).softmax(-1) for s in SEEDS]
    return torch.stack(probs).mean(0), batch.ptr


def test_sst_seeds_make_units_and_the_old_layout_stays_for_one_seed(sst_run, tmp_path):
    for s in SEEDS:
        assert (sst_run / "units" / f"seed{s}" / "best.pt").is_file()
    assert not (sst_run / "best.pt").exists()
    assert json.loads((sst_run / "config.json").read_text())["seeds"] == SEEDS
    predictor = structrnn.load(sst_run)
    assert len(predictor.models) == len(SEEDS)
    assert "ensemble of 3" in repr(predictor)
    # the members differ (their own seeds), so the average is not one of them
    a, b = (m.classifier.weight for m in predictor.models[:2])
    assert not torch.equal(a, b)

    single = tmp_path / "single"
    assert cli.main(["train", "sst", *TINY, "--seed", "0", "--out", str(single)]) == 0
    assert (single / "best.pt").is_file() and not (single / "units").exists()
    assert len(structrnn.load(single).models) == 1
    # a one-seed run is the ensemble's first member trained alone (the synthetic data come
    # from the first seed): the same weights
    own = torch.load(single / "best.pt", weights_only=True)["model"]
    unit = torch.load(sst_run / "units" / "seed0" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(own[k], unit[k]) for k in own)


def test_sst_ensemble_probabilities_are_the_members_mean(sst_run, tmp_path):
    predictor = structrnn.load(sst_run)
    texts = ["(3 (2 It) (4 (3 works) (2 .)))", "not very good", "good"]
    rows = predictor.predict(texts, nodes=True)
    trees = [structrnn.Tree.from_ptb(texts[0])]
    from structrnn.trees.tokenize import balanced_tree, tokenize

    trees += [balanced_tree(tokenize(t)) for t in texts[1:]]
    mean, ptr = mean_member_probs(sst_run, trees)
    for row, a, b in zip(rows, ptr[:-1].tolist(), ptr[1:].tolist(), strict=True):
        assert row["error"] is None
        torch.testing.assert_close(torch.tensor(row["probs"]), mean[a])
        torch.testing.assert_close(torch.tensor([n["probs"] for n in row["nodes"]]), mean[a:b])
        assert row["label"] == int(mean[a].argmax())

    # the model file keeps every member
    saved = structrnn.load(predictor.save(tmp_path / "ensemble.pt"))
    assert len(saved.models) == len(SEEDS)
    again = saved.predict(texts, nodes=True)
    for x, y in zip(rows, again, strict=True):
        torch.testing.assert_close(torch.tensor(x["probs"]), torch.tensor(y["probs"]))
    with pytest.raises(structrnn.InputError, match="ensemble"):
        predictor.export(tmp_path / "e.onnx", format="onnx")


def test_sst_ensemble_metrics_are_the_members_and_their_mean(sst_run):
    metrics = json.loads((sst_run / "metrics.json").read_text())
    assert metrics["seeds"] == SEEDS
    units = metrics["units"]
    assert [u["unit"] for u in units] == [f"seed{s}" for s in SEEDS]
    for key in ("test_fine_root", "dev_fine_root", "test_binary_root", "test_fine_all_nodes"):
        values = [u[key] for u in units]
        assert metrics[key]["mean"] == pytest.approx(statistics.mean(values))
        assert metrics[key]["std"] == pytest.approx(statistics.stdev(values))

    # the ensemble's test figures, from the members' mean probabilities computed here
    train = SyntheticSentiment(60, seed=SEEDS[0])
    test = SyntheticSentiment(50, seed=SEEDS[0] + 2, vocab=train.vocab)
    assert list(train.vocab) == list(Vocab.load(sst_run / "vocab.json"))
    mean, ptr = mean_member_probs(sst_run, test.trees)
    batch = collate_trees([t.to_data(train.vocab) for t in test.trees])
    roots = ptr[:-1]
    pred, y = mean.argmax(-1), batch.y
    fine = float((pred[roots] == y[roots]).float().mean())
    polar = y[roots] != 2
    positive = mean[roots][:, 3:].sum(-1) > mean[roots][:, :2].sum(-1)
    binary = float((positive[polar] == (y[roots][polar] > 2)).float().mean())
    labelled = y >= 0
    nodes = float((pred == y)[labelled].float().mean())
    ensemble = metrics["ensemble"]
    assert ensemble["test_fine_root"] == pytest.approx(fine)
    assert ensemble["test_binary_root"] == pytest.approx(binary)
    assert ensemble["test_fine_all_nodes"] == pytest.approx(nodes)
    # and the predictor's evaluation of the run is the ensemble's
    assert structrnn.load(sst_run).evaluate("test")["root_acc"] == pytest.approx(fine)


def test_seeds_flag_is_checked(tmp_path):
    for bad, match in (("1,1", "distinct"), (",", "at least one")):
        with pytest.raises(structrnn.InputError, match=match):
            from structrnn.tasks.sentiment import task as sst
            from structrnn.training.task import train

            train(sst.TASK, [*TINY, "--seeds", bad, "--out", str(tmp_path / "x")])


# ----------------------------------------------------------------------------------- parser
PARSER_TINY = ["--hidden", "8", "--char-hidden", "4", "--char-dim", "4", "--embed-dim", "8",
               "--mlp-hidden", "8", "--layers", "1", "--batch-size", "10", "--epochs", "1",
               "--no-progress", "--threads", "1"]
SENTENCES = [["the", "dog", "likes", "a", "film", "."], ["a", "cast", "sees"], ["odd"],
             ["the", "witty", "plot", "hates", "the", "story"]]


@pytest.fixture(scope="module")
def parser_run(tmp_path_factory) -> Path:
    from tests.test_parser import toy_treebank

    base = tmp_path_factory.mktemp("ensemble")
    data = toy_treebank(base / "toy", sizes=(40, 10, 10))
    out = base / "parser"
    assert cli.main(["train", "parser", "--data", str(data), *PARSER_TINY, "--seeds", "0,1,2",
                     "--out", str(out)]) == 0
    return out


def parser_members(folder: Path) -> list:
    """Each seed's parser rebuilt from its own best.pt."""
    from structrnn.trees.parser import Parser

    out = []
    for s in (0, 1, 2):
        state = torch.load(folder / "units" / f"seed{s}" / "best.pt", weights_only=True)
        out.append(Parser.from_spec(state["parser"], state["model"]).eval())
    return out


def test_parser_ensemble_averages_span_scores_and_decodes_their_mean(parser_run, tmp_path):
    from structrnn.tasks.parser.ensemble import mean_span_scores
    from structrnn.trees.spans import tree_spans

    predictor = structrnn.load(parser_run)
    assert len(predictor.models) == 3 and not (parser_run / "best.pt").exists()
    members = parser_members(parser_run)
    with torch.no_grad():
        charts = [m(m.encode(SENTENCES)) for m in members]
    assert not torch.equal(charts[0], charts[1])
    reference = torch.stack(charts).mean(0)
    scores, lengths = mean_span_scores(predictor.models, SENTENCES)
    torch.testing.assert_close(scores, reference)
    assert lengths.tolist() == [len(s) for s in SENTENCES]

    def brute_force(chart: torch.Tensor, b: int) -> set:
        """The best tree of sentence b under ``chart``: the most total score of its spans."""
        return set(max(all_trees(0, len(SENTENCES[b])),
                       key=lambda spans: sum(float(chart[b, i, j]) for i, j in spans)))

    rows = predictor.predict(SENTENCES)
    for b, row in enumerate(rows):
        assert row["error"] is None
        assert set(tree_spans(structrnn.Tree.from_ptb(row["tree"]))) == brute_force(reference, b)
    # the members alone disagree with the mean somewhere (else this test could not tell)
    assert any(brute_force(c, b) != brute_force(reference, b)
               for c in charts for b in range(len(SENTENCES)))

    # the model file keeps every member, and parses the same
    again = structrnn.load(predictor.save(tmp_path / "parsers.pt"))
    assert len(again.models) == 3
    assert [r["tree"] for r in again.predict(SENTENCES)] == [r["tree"] for r in rows]


def test_parser_ensemble_metrics(parser_run):
    from structrnn.tasks.parser.task import read_split, score

    metrics = json.loads((parser_run / "metrics.json").read_text())
    config = json.loads((parser_run / "config.json").read_text())
    assert metrics["seeds"] == [0, 1, 2]
    test = read_split(config["data"], "test")
    members = parser_members(parser_run)
    for unit, parser in zip(metrics["units"], members, strict=True):
        assert unit["test_f1"] == pytest.approx(score(parser, test)["f1"])
    values = [u["test_f1"] for u in metrics["units"]]
    assert metrics["test_f1"]["mean"] == pytest.approx(statistics.mean(values))
    assert metrics["test_f1"]["std"] == pytest.approx(statistics.stdev(values))
    assert metrics["ensemble"]["test_f1"] == pytest.approx(score(members, test)["f1"])


def test_init_from_an_ensemble_run_takes_its_first_seed(sst_run):
    from structrnn.tasks.sentiment.task import init_from_run

    vocab = Vocab.load(sst_run / "vocab.json")
    model = TreeSentiment(len(vocab), 5, "tree-lstm", embed_dim=8, hidden=8)
    assert "initialised from" in init_from_run(model, sst_run, vocab)
    first = member(sst_run, SEEDS[0], vocab)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  first.state_dict().values(), strict=True))
