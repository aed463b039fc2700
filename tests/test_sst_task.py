"""The SST training task: metrics file, exact resume, the CLI, and tree model vs bag-of-words
on the synthetic treebank (where sentiment composes, so word counts are not enough)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from structrnn import cli
from structrnn.datasets.synthetic import SyntheticSentiment, bag_of_words
from structrnn.tasks.sentiment import task as sst
from structrnn.training.checkpoint import seed_everything
from structrnn.training.loop import make_ema
from structrnn.training.task import run_task
from tests.conftest import require_dataset

METRIC_KEYS = {"dev_fine_root", "test_fine_root", "test_binary_root", "test_fine_all_nodes",
               "epoch_seconds", "best_epoch"}


def parse(argv):
    p = argparse.ArgumentParser()
    sst.add_arguments(p)
    return p.parse_args(argv)


def test_one_short_epoch_on_sst_slice_then_resume_is_identical(tmp_path):
    root = require_dataset("sst")
    common = ["--data", str(root), "--max-trees", "40", "--hidden", "12", "--embed-dim", "10",
              "--no-progress", "--batch-size", "10"]
    straight = run_task(sst.TASK, parse(common + ["--epochs", "2", "--out", str(tmp_path / "a")]))
    assert METRIC_KEYS <= set(json.loads((tmp_path / "a" / "metrics.json").read_text()))
    assert 0.0 <= straight["test_fine_root"] <= 1.0
    assert len(straight["epoch_seconds"]) == 2
    for name in ("config.json", "checkpoint.pt", "best.pt", "vocab.json", "metrics.jsonl",
                 "learning_curves.png", "confusion.png", "example_tree.png"):
        assert (tmp_path / "a" / name).is_file(), name

    # interrupted after epoch 1, resumed to epoch 2: the same model and the same figures
    run_task(sst.TASK, parse(common + ["--epochs", "1", "--out", str(tmp_path / "b")]))
    resumed = run_task(sst.TASK, parse(common + ["--epochs", "2", "--out", str(tmp_path / "b"),
                                      "--resume"]))
    for key in ("dev_fine_root", "test_fine_root", "test_fine_all_nodes", "best_epoch"):
        assert resumed[key] == straight[key], key
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_settings_is_refused(tmp_path):
    args = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
            "--embed-dim", "8", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    run_task(sst.TASK, parse(args))
    with pytest.raises(ValueError, match="hidden"):
        run_task(sst.TASK, parse(args[:5] + ["9"] + args[6:] + ["--resume"]))


def bow_root_accuracy(train, test, epochs=300):
    """Multinomial logistic regression on word counts (the bag-of-words baseline)."""
    xtr, ytr = bag_of_words(train)
    xte, yte = bag_of_words(test)
    torch.manual_seed(0)
    clf = torch.nn.Linear(xtr.size(1), 5)
    opt = torch.optim.Adam(clf.parameters(), lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(clf(xtr), ytr).backward()
        opt.step()
    return float((clf(xte).argmax(-1) == yte).float().mean())


def test_tree_model_beats_bag_of_words_on_synthetic_treebank(tmp_path):
    metrics = run_task(sst.TASK, parse([
        "--dataset", "synthetic", "--synthetic-trees", "600", "--epochs", "6", "--hidden", "48",
        "--embed-dim", "32", "--dropout", "0", "--lr", "0.1", "--no-progress",
        "--out", str(tmp_path)]))
    train = SyntheticSentiment(600, seed=0)
    test = SyntheticSentiment(120, seed=2, vocab=train.vocab)
    bow = bow_root_accuracy(train, test)
    assert metrics["test_fine_root"] > bow + 0.1, (metrics["test_fine_root"], bow)


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    code = cli.main(["train", "sst", "--data", str(tmp_path / "missing"), "--out",
                     str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "no file" in err and str(tmp_path / "missing") in err
    assert cli.main(["predict", str(tmp_path), "good"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "sst", "--epochs", "many"])
    assert exit_info.value.code == 2


def test_cli_predict_and_show(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "sst", "--dataset", "synthetic", "--synthetic-trees", "60",
                     "--hidden", "8", "--embed-dim", "8", "--epochs", "1", "--no-progress",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["predict", str(run), "the plot is not good", "--png",
                     str(tmp_path / "p.png")]) == 0
    [line] = capsys.readouterr().out.splitlines()  # one JSON line per input
    result = json.loads(line)
    assert result["error"] is None and result["label"] in range(5)
    assert result["tokens"] == ["the", "plot", "is", "not", "good"]
    assert result["tree"] == "balanced" and (tmp_path / "p.png").is_file()
    assert cli.main(["show", "(3 (2 It) (4 works))", "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").is_file()
    assert cli.main(["show", "(3 (2 It) (4 works)", "--out", str(tmp_path / "u.png")]) == 2
    # --config replays a run; a flag on the command line still wins
    assert cli.main(["train", "sst", "--config", str(run / "config.json"), "--epochs", "1",
                     "--no-progress", "--out", str(tmp_path / "replay")]) == 0
    replay = json.loads((tmp_path / "replay" / "config.json").read_text())
    original = json.loads((run / "config.json").read_text())
    assert replay == original
    replayed = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    # the same figures; the seconds and the machine's load are the replay's own
    assert replayed == json.loads((run / "metrics.json").read_text()) | {
        key: replayed[key] for key in ("epoch_seconds", "machine")}


def test_init_from_a_fine_grained_run_copies_words_by_token(tmp_path):
    common = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
              "--embed-dim", "6", "--no-progress", "--epochs", "1"]
    run_task(sst.TASK, parse(common + ["--out", str(tmp_path / "fine")]))
    fine = torch.load(tmp_path / "fine" / "best.pt", weights_only=True)["model"]
    fine_vocab = sst.Vocab.load(tmp_path / "fine" / "vocab.json")

    args = parse(common + ["--binary", "--out", str(tmp_path / "bin")])
    train, _, _ = sst.load_splits(args)
    model = sst.build_model(args, train.vocab, 2)
    message = sst.init_from_run(model, tmp_path / "fine", train.vocab)
    shared = [t for t in train.vocab if t in fine_vocab]
    assert f"{len(shared)}/{len(train.vocab)} word vectors" in message
    assert "classifier.weight" in message  # 5 classes there, 2 here: kept fresh
    for token in shared:
        torch.testing.assert_close(model.embedding.weight[train.vocab[token]],
                                   fine["embedding.weight"][fine_vocab[token]])
    for name, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, fine[f"encoder.{name}"])
    assert model.classifier.weight.shape == (2, 8)
    # and the command line takes it
    metrics = run_task(sst.TASK, parse(common + ["--binary", "--init-from", str(tmp_path / "fine"),
                                      "--out", str(tmp_path / "bin")]))
    assert json.loads((tmp_path / "bin" / "config.json").read_text())["init_from"] == str(
        tmp_path / "fine")
    assert metrics["test_binary_root"] is not None


def test_ema_is_the_model_selected_saved_and_resumed(tmp_path):
    common = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
              "--embed-dim", "6", "--no-progress", "--batch-size", "10", "--ema", "0.9"]
    straight = run_task(sst.TASK, parse(common + ["--epochs", "2", "--out", str(tmp_path / "a")]))
    ckpt = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert int(ckpt["ema"]["n_averaged"]) == 12  # 60 trees / 10 per step, 2 epochs
    # the average, reached through AveragedModel's own update: not the trained weights
    average = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k != "n_averaged"}
    name = "encoder.cell.weight_hh"
    assert not torch.equal(average[name], ckpt["model"][name])
    # best.pt holds the average of its epoch: the last one here, or else the one-epoch run's
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    if best["epoch"] == 1:
        run_task(sst.TASK, parse(common + ["--epochs", "1", "--out", str(tmp_path / "c")]))
        average = {k.removeprefix("module."): v for k, v in torch.load(
            tmp_path / "c" / "checkpoint.pt", weights_only=True)["ema"].items()
            if k != "n_averaged"}
    assert all(torch.equal(best["model"][k], average[k]) for k in average)

    run_task(sst.TASK, parse(common + ["--epochs", "1", "--out", str(tmp_path / "b")]))
    resumed = run_task(sst.TASK, parse(common + ["--epochs", "2", "--out", str(tmp_path / "b"),
                                      "--resume"]))
    for key in ("dev_fine_root", "test_fine_root", "best_epoch"):
        assert resumed[key] == straight[key], key
    again = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["ema"]
    assert all(torch.equal(again[k], ckpt["ema"][k]) for k in again)
    with pytest.raises(ValueError, match="--ema"):
        make_ema(torch.nn.Linear(2, 2), 1.5)


def test_sparse_embedding_gradients_train_as_dense_ones():
    from structrnn.tasks.sentiment.model import node_loss
    from structrnn.trees.loader import TreeLoader

    args = parse(["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
                  "--embed-dim", "6", "--dropout", "0"])
    train = sst.load_splits(args)[0]
    trained = []
    for sparse in (False, True):
        torch.manual_seed(0)
        model = sst.build_model(args, train.vocab, 5, sparse=sparse)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        opt = sst.make_optimizer(model, args)
        for batch in TreeLoader(train, batch_size=10):
            opt.zero_grad()
            node_loss(model(batch), batch.y).backward()
            opt.step()
        assert model.embedding.weight.grad.is_sparse == sparse
        trained.append(model.state_dict())
    dense, sparse_ = trained
    assert max(float((dense[k] - start[k]).abs().max()) for k in dense) > 1e-2
    for key in dense:
        torch.testing.assert_close(sparse_[key], dense[key], rtol=1e-5, atol=1e-6, msg=key)


def test_runs_use_sparse_embeddings_unless_clipping(tmp_path, monkeypatch):
    seen = []
    build = sst.build_model

    def spy(*args, **kwargs):
        seen.append(kwargs.get("sparse"))
        return build(*args, **kwargs)

    monkeypatch.setattr(sst, "build_model", spy)
    common = ["--dataset", "synthetic", "--synthetic-trees", "40", "--hidden", "6",
              "--embed-dim", "4", "--no-progress", "--epochs", "1"]
    run_task(sst.TASK, parse(common + ["--out", str(tmp_path / "a")]))
    run_task(sst.TASK, parse(common + ["--clip-grad", "1.0", "--out", str(tmp_path / "b")]))
    assert seen == [True, False]


def test_word_dropout_replaces_words_by_unk_in_training_only():
    from structrnn.tasks.sentiment.model import TreeSentiment

    model = TreeSentiment(50, 5, "tree-lstm", embed_dim=4, hidden=5, dropout=0.0,
                          word_dropout=0.3, unk_id=0)
    seen = []
    model.embedding.register_forward_hook(lambda m, inp, out: seen.append(inp[0].clone()))
    torch.manual_seed(0)
    x = torch.randint(1, 50, (20_000,))
    x[::7] = -1  # nodes without a word: no input either way
    edge_index = torch.empty(2, 0, dtype=torch.long)  # 20,000 one-node trees
    model.train()
    model.encode(x, edge_index, child_index=torch.zeros_like(x))
    model.eval()
    model.encode(x, edge_index, child_index=torch.zeros_like(x))
    words = x >= 0
    # the embedding reads every node, or (the CPU Tree-LSTM path) the nodes with a word only
    trained_ids, eval_ids = (ids[words] if ids.numel() == x.numel() else ids for ids in seen)
    dropped = trained_ids != x[words]
    assert bool((trained_ids[dropped] == 0).all())
    # Binomial(17142, 0.3): the fraction lies within 0.3 +- 0.02 (over 5 standard deviations)
    assert abs(float(dropped.float().mean()) - 0.3) < 0.02
    assert torch.equal(eval_ids, x[words])
    with pytest.raises(ValueError, match="word_dropout"):
        TreeSentiment(50, word_dropout=1.0)
    with pytest.raises(ValueError, match="unk_id"):
        TreeSentiment(50, word_dropout=0.1, unk_id=None)


def test_word_dropout_trains_the_unknown_words_vector(tmp_path):
    common = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "6",
              "--embed-dim", "4", "--no-progress", "--epochs", "1"]
    unk_rows = []
    for rate in ("0", "0.25"):
        out = tmp_path / rate
        run_task(sst.TASK, parse(common + ["--word-dropout", rate, "--out", str(out)]))
        assert json.loads((out / "config.json").read_text())["word_dropout"] == float(rate)
        trained = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
        unk_rows.append(trained["embedding.weight"][0])
    # every synthetic training word is in the vocabulary: only word dropout reaches row 0
    args = parse(common + ["--out", str(tmp_path / "x")])
    seed_everything(args.seed)  # as the run does, before it builds
    train = sst.load_splits(args)[0]
    fresh = sst.build_model(args, train.vocab, 5).embedding.weight[0]
    torch.testing.assert_close(unk_rows[0], fresh)
    assert float((unk_rows[1] - fresh).abs().max()) > 1e-3


# ------------------------------------------------------------------ sequence models
SEQ_COMMON = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
              "--embed-dim", "6", "--no-progress", "--epochs", "2", "--batch-size", "10"]


@pytest.mark.parametrize("extra", [["--model", "lstm"],
                                   ["--model", "bilstm", "--layers", "2", "--pool", "mean"],
                                   ["--model", "bigru", "--pool", "max"]],
                         ids=["lstm", "bilstm-2-mean", "bigru-max"])
def test_a_sequence_model_trains_in_the_run_format_of_the_tree_models(tmp_path, extra):
    metrics = run_task(sst.TASK, parse(SEQ_COMMON + extra + ["--out", str(tmp_path)]))
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test_fine_root"] == metrics["test_fine_root"]
    assert METRIC_KEYS <= set(written) and written["epochs"] == 2
    # no phrase labels: the all-nodes figure is the root figure
    assert written["test_fine_all_nodes"] == written["test_fine_root"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == extra[1]
    assert config["layers"] == (2 if "--layers" in extra else None)
    weights = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    assert ("encoder.rnn.weight_hh_l1_reverse" in weights) == ("--layers" in extra)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["train_loss"] > 0


def test_sequence_model_is_embedding_torch_lstm_pool_classifier_on_the_words():
    """The root logits against a reference built here: the sentences' word ids taken from the
    trees' tokens, torch.nn.LSTM with the model's weights copied, the pooling by hand."""
    from structrnn.tasks.sentiment.sequence_model import SequenceSentiment
    from structrnn.trees.loader import TreeLoader

    train = SyntheticSentiment(12, seed=3)
    batch = next(iter(TreeLoader(train, batch_size=12)))
    for pool in ("last", "mean", "max"):
        torch.manual_seed(0)
        model = SequenceSentiment(len(train.vocab), 5, "bilstm", 6, 5, dropout=0.3, layers=2,
                                  pool=pool).eval()
        ref = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True)
        ref.load_state_dict({k.removeprefix("encoder.rnn."): v for k, v in
                             model.state_dict().items() if k.startswith("encoder.rnn.")})
        logits = model(batch)
        got = logits[batch.ptr[:-1]]
        first = logits[: batch.ptr[1]]  # every node of a tree carries its sentence's logits
        # the classifier ran at different rows of the batch: equal up to rounding, not in
        # every bit on every CPU
        torch.testing.assert_close(first, first[:1].expand_as(first))
        for b, tree in enumerate(train.trees):
            ids = torch.tensor([train.vocab[t] for t in tree.leaves()])
            out, (h_n, _) = ref(model.embedding(ids).unsqueeze(1))
            pooled = {"last": torch.cat([h_n[-2, 0], h_n[-1, 0]]), "mean": out[:, 0].mean(0),
                      "max": out[:, 0].max(0).values}[pool]
            torch.testing.assert_close(got[b], model.classifier(pooled))


def test_sequence_runs_keep_the_root_label_only_and_leave_the_treebank_alone():
    from structrnn.tasks.sentiment.sequence_model import root_labels_only

    args = parse(SEQ_COMMON + ["--model", "lstm"])
    train, dev, _ = sst.load_splits(args)
    full = SyntheticSentiment(60, seed=0)
    for i in (0, 7):
        assert train[i].y[0] == full[i].y[0] and (train[i].y[1:] == -1).all()
        assert (full[i].y[1:] >= 0).all()  # the original trees keep every label
        assert torch.equal(train[i].x, full[i].x)
    assert (root_labels_only(full)[3].y[1:] == -1).all() and (full[3].y >= 0).all()
    assert len(dev) == len(SyntheticSentiment(50, seed=1))


def test_tree_lstm_as_sequence_starts_from_a_trained_tree_run(tmp_path):
    """The constituency Tree-LSTM's trained cell, read along the words: --init-from copies the
    cell (the same names), the word vectors and the classifier; the run then trains it."""
    common = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
              "--embed-dim", "6", "--no-progress", "--epochs", "1"]
    run_task(sst.TASK, parse(common + ["--model", "tree-lstm", "--out", str(tmp_path / "tree")]))
    tree = torch.load(tmp_path / "tree" / "best.pt", weights_only=True)["model"]
    args = parse(common + ["--model", "tree-lstm-as-sequence", "--out", str(tmp_path / "seq")])
    train = sst.load_splits(args)[0]
    model = sst.build_model(args, train.vocab, 5)
    message = sst.init_from_run(model, tmp_path / "tree", train.vocab)
    assert "kept fresh" not in message
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, tree[name], msg=name)
    metrics = run_task(sst.TASK, parse(common + ["--model", "tree-lstm-as-sequence", "--init-from",
                                      str(tmp_path / "tree"), "--out", str(tmp_path / "seq")]))
    assert 0.0 <= metrics["test_fine_root"] <= 1.0
    with pytest.raises(ValueError, match="one layer, one direction"):
        sst.build_model(parse(common + ["--model", "tree-lstm-as-sequence", "--layers", "2"]),
                        train.vocab, 5)


def test_lstm_as_tree_runs_a_sequence_runs_cell_up_the_tree(tmp_path):
    """lstm-as-tree: the LSTM's weights under their sequence names, run as the Child-Sum
    Tree-LSTM (checked against sr.TreeLSTM with the weights copied); --init-from an lstm run
    reads every tensor by name."""
    from structrnn import TreeLSTM
    from structrnn.trees.loader import TreeLoader

    common = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
              "--embed-dim", "6", "--no-progress", "--epochs", "1"]
    run_task(sst.TASK, parse(common + ["--model", "lstm", "--out", str(tmp_path / "lstm")]))
    seq = torch.load(tmp_path / "lstm" / "best.pt", weights_only=True)["model"]
    args = parse(common + ["--model", "lstm-as-tree"])
    train = sst.load_splits(args)[0]
    model = sst.build_model(args, train.vocab, 5).eval()
    assert "kept fresh" not in sst.init_from_run(model, tmp_path / "lstm", train.vocab)
    assert all(torch.equal(v, seq[k]) for k, v in model.state_dict().items())
    tree = TreeLSTM(6, 8, variant="child-sum")
    tree.cell.load_state_dict({n: seq[f"encoder.rnn.{n}_l0"] for n in
                               ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    batch = next(iter(TreeLoader(train, batch_size=8)))
    emb = model.embedding(batch.x.clamp(min=0)) * (batch.x >= 0).unsqueeze(1)
    torch.testing.assert_close(model.encoder(emb, batch.edge_index, batch.height),
                               tree(emb, batch.edge_index, batch.height))
    with pytest.raises(ValueError, match="no layers or pooling"):
        sst.build_model(parse(common + ["--model", "lstm-as-tree", "--pool", "max"]),
                        train.vocab, 5)


# --------------------------------------------------------------- recurrent dropout (issue 26)
def nary_reference(cell, x, kids, scale):
    """Every node's (h, c) by a plain recursion over the tree ``kids`` (node -> its children
    by slot), the candidate ``g`` multiplied by ``scale`` (node -> (H,)): the reference."""
    H, A = cell.hidden_size, cell.arity
    out = {}

    def visit(n):
        hs, cs = [torch.zeros(H)] * A, [torch.zeros(H)] * A
        for slot, k in enumerate(kids.get(n, [])):
            hs[slot], cs[slot] = visit(k)
        xp = cell.weight_ih @ x[n] + cell.bias_ih
        gh = cell.weight_hh @ torch.cat(hs) + cell.bias_hh
        i = torch.sigmoid(xp[:H] + gh[:H])
        f = [torch.sigmoid(xp[H:2 * H] + gh[(1 + k) * H:(2 + k) * H]) for k in range(A)]
        g = torch.tanh(xp[2 * H:3 * H] + gh[(1 + A) * H:(2 + A) * H]) * scale[n]
        o = torch.sigmoid(xp[3 * H:] + gh[(2 + A) * H:])
        c = i * g + sum(fk * ck for fk, ck in zip(f, cs, strict=True))
        out[n] = (o * torch.tanh(c), c)
        return out[n]

    visit(0)
    return torch.stack([out[n][0] for n in range(len(x))])


def small_tree():
    # 0 -> (1, 2), 2 -> (3, 4), 4 -> (5, 6): pre-order, edges child -> parent
    kids = {0: [1, 2], 2: [3, 4], 4: [5, 6]}
    edges = [(k, p) for p, ks in kids.items() for k in ks]
    edge_index = torch.tensor(edges).t()
    child_index = torch.zeros(7, dtype=torch.long)
    for ks in kids.values():
        for slot, k in enumerate(ks):
            child_index[k] = slot
    return kids, edge_index, child_index


def test_recurrent_dropout_drops_the_candidate_against_a_per_node_loop():
    from structrnn.tasks.sentiment.model import RecurrentDropoutNaryLSTMCell, build_encoder

    torch.manual_seed(0)
    kids, edge_index, child_index = small_tree()
    x = torch.randn(7, 5)
    encoder, _ = build_encoder("tree-lstm", 5, 4, recurrent_dropout=0.5)
    assert isinstance(encoder.cell, RecurrentDropoutNaryLSTMCell)
    stock, _ = build_encoder("tree-lstm", 5, 4)
    assert set(stock.state_dict()) == set(encoder.state_dict())  # runs load either way
    stock.load_state_dict(encoder.state_dict())
    ones = {n: torch.ones(4) for n in range(7)}
    with torch.no_grad():
        # evaluation: no dropout, the stock cell's states (fused kernel) and the reference's
        encoder.eval()
        expected = nary_reference(encoder.cell, x, kids, ones)
        torch.testing.assert_close(encoder(x, edge_index, child_index=child_index), expected)
        torch.testing.assert_close(stock(x, edge_index, child_index=child_index), expected)

        # training: the mask multiplies g, nothing else; a known mask through a fixed module
        masks = {n: (torch.arange(4) + n) % 2 * 2.0 for n in range(7)}  # kept units x 1/(1-p)

        class Fixed(torch.nn.Module):  # the mask of each row's node, as the levels see them
            p = 0.5

            def forward(self, g):
                return g * torch.stack([masks[int(n)] for n in self.rows.pop(0)])

        fixed = Fixed()
        # the levels run leaves first: nodes 1 3 5 6 (height 0), then 4, then 2, then 0
        fixed.rows = [torch.tensor([1, 3, 5, 6]), torch.tensor([4]), torch.tensor([2]),
                      torch.tensor([0])]
        encoder.train()
        encoder.cell.recurrent_dropout = fixed
        got = encoder(x, edge_index, child_index=child_index)
        assert not fixed.rows
        torch.testing.assert_close(got, nary_reference(encoder.cell, x, kids, masks))


def test_recurrent_dropout_masks_units_with_probability_p():
    from structrnn.tasks.sentiment.model import build_encoder

    torch.manual_seed(1)
    encoder, _ = build_encoder("tree-lstm", 6, 50, recurrent_dropout=0.3)
    seen = []
    encoder.cell.recurrent_dropout.register_forward_hook(
        lambda m, inp, out: seen.append((inp[0].detach().clone(), out.detach())))
    kids, edge_index, child_index = small_tree()
    encoder.train()
    encoder(torch.randn(7, 6), edge_index, child_index=child_index)
    g = torch.cat([i for i, _ in seen])
    dropped = torch.cat([o for _, o in seen])
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], g[kept] / 0.7)
    assert 0.2 < 1 - kept.float().mean() < 0.4  # 350 draws of Bernoulli(0.3)


def test_recurrent_dropout_flag_trains_and_loads(tmp_path):
    import structrnn

    out = tmp_path / "rd"
    args = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8",
            "--embed-dim", "8", "--epochs", "1", "--no-progress", "--recurrent-dropout", "0.25"]
    run_task(sst.TASK, parse([*args, "--out", str(out)]))
    assert json.loads((out / "config.json").read_text())["recurrent_dropout"] == 0.25
    predictor = structrnn.load(out)
    assert predictor.model.encoder.cell.recurrent_dropout.p == 0.25
    assert predictor.predict(["good"])[0]["error"] is None
    with pytest.raises(structrnn.InputError, match="recurrent-dropout"):
        run_task(sst.TASK, parse([*args, "--model", "tree-gru", "--out", str(tmp_path / "x")]))


def test_looks_et_al_options_reach_the_model_and_optimizer():
    """State 300, a smaller embedding rate and no L2 (Looks et al. 2017) are flags already."""
    args = parse(["--hidden", "300", "--embed-lr", "0.01", "--weight-decay", "0",
                  "--embed-dim", "6", "--recurrent-dropout", "0.2"])
    vocab = SyntheticSentiment(10).vocab
    model = sst.build_model(args, vocab, 5)
    assert model.encoder.hidden_size == 300 and model.classifier.in_features == 300
    rest, embed = sst.make_optimizer(model, args).param_groups
    assert (rest["lr"], rest["weight_decay"]) == (0.05, 0.0)
    assert (embed["lr"], embed["weight_decay"]) == (0.01, 0.0)
    assert embed["params"] == [model.embedding.weight]
    assert model.encoder.cell.recurrent_dropout.p == 0.2
