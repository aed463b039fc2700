"""The sentiment predictor's fast reading and row building (issue 25: the per-sentence work of a
served request) give exactly what the plain per-tree path gives: the batch of
``trees_to_batch`` equals PyG's ``Batch.from_data_list`` of ``Tree.to_data``, ``balanced_tree``
equals the tree built node by node with the checked constructor, ``Tree.to_ptb(labels)`` equals a
relabelled copy's text, ``node_spans`` equals each node's leaves, and whole rows equal rows
computed here the plain way (one ``Data`` per tree, PyG's collation, a relabelled copy)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

import structrnn
from structrnn import cli
from structrnn.tasks.sentiment.predictor import node_spans
from structrnn.trees.convert import _same_batch, trees_to_batch
from structrnn.trees.loader import collate_trees
from structrnn.trees.tokenize import balanced_tree, tokenize
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

TINY = ["--dataset", "synthetic", "--synthetic-trees", "60", "--hidden", "8", "--embed-dim", "8",
        "--epochs", "1", "--no-progress"]
TREES = ["(3 (2 It) (4 (3 works) (2 .)))", "(2 alone)", "(1 (2) (3))",
         "(X (Y a) (Z c) (W d) (V e))", "(4 (2 (2 a) (3 b)) (1 c) (0 (2 d) (2 e) (2 f)))",
         "(NP (DT the) (NN 8\u00a01\\/2))", "(3 (2 (2 (2 deep))))"]
SENTENCES = [
    "A witty movie (really) doesn't disappoint.", "I cannot believe it's not butter!",
    "\u201cQuoted\u201d -- the actors' U.S. film... wasn't gonna CANNOT be Cannot",
    "Mr. Smith went to Washington. He liked it.", "$5 & S&M 2,500 7:30 50% @home #tag a/b c*d",
    "'70s 'em 'tis ol' rock'n'roll shouldn't've", "one", "two words", "a gorgeous , witty movie .",
    " ".join(f"w{k}" for k in range(37)), "it 's `` quoted '' [ and ] { so } on ?! ...",
]


def reference_balanced(tokens: list[str], label: str = "2") -> Tree:
    """The balanced tree built with the checked constructor, as it was before the fast path."""
    nodes = [Tree(label, token=token) for token in tokens]
    while len(nodes) > 1:
        paired = [Tree(label, [nodes[i], nodes[i + 1]]) for i in range(0, len(nodes) - 1, 2)]
        nodes = paired + ([nodes[-1]] if len(nodes) % 2 else [])
    return nodes[0]


def test_balanced_tree_equals_the_tree_built_node_by_node():
    for n in range(1, 41):
        tokens = [f"t{k}" for k in range(n)]
        assert balanced_tree(tokens) == reference_balanced(tokens)
        assert balanced_tree(tokens, 4).to_ptb() == reference_balanced(tokens, "4").to_ptb()
    for bad in (["a", "b c "], ["a", ""], ["x(y"], ["a", 3]):
        with pytest.raises(ValueError, match="token") as fast:
            balanced_tree(bad)
        with pytest.raises(ValueError) as slow:
            reference_balanced(bad)
        assert str(fast.value) == str(slow.value)
    with pytest.raises(ValueError, match="label"):
        balanced_tree(["a"], "two words")


def test_trees_to_batch_equals_pygs_collation_of_to_data():
    vocab = Vocab(["It", "works", ".", "a", "c", "the"])
    trees = [Tree.from_ptb(t) for t in TREES] + [balanced_tree(tokenize(s)) for s in SENTENCES]
    for chosen in (trees, trees[:1], trees[1:2], trees[::-1], trees[3:9]):
        got = trees_to_batch(chosen, vocab)
        want = Batch.from_data_list([t.to_data(vocab) for t in chosen])
        assert _same_batch(got, want)
        # and the loader's batch, schedule included, is what the model sees either way
        loaded = collate_trees([t.to_data(vocab) for t in chosen])
        assert all(torch.equal(got[k], loaded[k]) for k in ("x", "edge_index", "height"))
    labels = {"X": 0, "Y": 1, "2": 2}
    got = trees_to_batch(trees[:4], vocab, labels)
    want = Batch.from_data_list([t.to_data(vocab, labels) for t in trees[:4]])
    assert _same_batch(got, want)
    with pytest.raises(ValueError, match="at least one tree"):
        trees_to_batch([], vocab)


def test_to_ptb_with_labels_equals_a_relabelled_copy():
    for text in TREES + [balanced_tree(tokenize(s)).to_ptb() for s in SENTENCES]:
        tree = Tree.from_ptb(text)
        labels = [k % 5 for k in range(len(tree))]
        copy = tree.copy()
        for node, label in zip(copy.subtrees(), labels, strict=True):
            node.label = str(label)
        assert tree.to_ptb(labels) == copy.to_ptb()
        assert tree.to_ptb([str(x) for x in labels]) == copy.to_ptb()
        assert tree.to_ptb() == text  # the tree itself is unchanged
    tree = Tree.from_ptb(TREES[0])
    for bad, match in (([1, 2], "one label per node"), ([1] * 6, "one label per node"),
                       (["a b", 1, 1, 1, 1], "without whitespace"), (["", 1, 1, 1, 1], "'"),
                       ([1, 1, "x)", 1, 1], "x\\)")):
        with pytest.raises(ValueError, match=match):
            tree.to_ptb(bad)


def test_node_spans_are_each_nodes_leaves():
    for text in TREES + [balanced_tree(tokenize(s)).to_ptb() for s in SENTENCES]:
        tree = Tree.from_ptb(text)
        assert node_spans(tree) == [" ".join(node.leaves()) for node in tree.subtrees()]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast-rows") / "run"
    assert cli.main(["train", "sst", *TINY, "--out", str(folder)]) == 0
    return structrnn.load(folder)


def plain_rows(predictor, items: list, batch_size: int | None = None) -> list[dict]:
    """Rows of readable inputs the plain way, ``batch_size`` at a time (a batch's make-up may
    change the last bits of its floats): a tree per input, a ``Data`` per tree, PyG's
    collation, the model, and a relabelled copy of each tree printed."""
    size = batch_size or len(items)
    if len(items) > size:
        return [row for k in range(0, len(items), size)
                for row in plain_rows(predictor, items[k:k + size], size)]
    trees, kinds = [], []
    for item in items:
        if isinstance(item, str) and not item.strip().startswith("("):
            trees.append(reference_balanced(tokenize(item)))
            kinds.append("balanced")
        else:
            tree = Tree.from_ptb(item) if isinstance(item, str) else item
            gold = all(node.label in "01234" for node in tree.subtrees())
            trees.append(tree)
            kinds.append("gold" if gold else "given")
    batch = collate_trees([t.to_data(predictor.vocab) for t in trees])
    with torch.no_grad():
        logits = predictor.model(batch).float()
    pred, probs = logits.argmax(-1), logits.softmax(-1)
    rows = []
    for k, (item, tree, kind) in enumerate(zip(items, trees, kinds, strict=True)):
        a, b = batch.ptr[k].item(), batch.ptr[k + 1].item()
        p, q = pred[a:b].tolist(), probs[a:b].tolist()
        copy = tree.copy()
        for node, label in zip(copy.subtrees(), p, strict=True):
            node.label = str(label)
        tokens = tree.leaves()
        unknown = [t for t in tokens if t not in predictor.vocab]
        rows.append({"input": item if isinstance(item, str) else tree.to_ptb(), "label": p[0],
                     "label_name": predictor.class_names[p[0]], "probs": q[0],
                     "tokens": tokens, "unknown_words": list(dict.fromkeys(unknown)),
                     "unknown_share": len(unknown) / len(tokens), "tree": kind,
                     "ptb": copy.to_ptb(), "error": None,
                     "nodes": [{"span": " ".join(node.leaves()), "label": lab, "probs": row}
                               for node, lab, row in zip(tree.subtrees(), p, q, strict=True)]})
    return rows


def test_rows_equal_the_plain_path_on_varied_inputs(predictor):
    items = SENTENCES + [TREES[0], TREES[1], TREES[5], TREES[6], Tree.from_ptb(TREES[0])]
    for batch_size in (None, 1, 4):
        want = plain_rows(predictor, items, batch_size)
        got = predictor.predict(items, nodes=True, batch_size=batch_size, progress=False)
        assert got == want
        short = predictor.predict(items, batch_size=batch_size, progress=False)
        assert short == [{k: v for k, v in row.items() if k != "nodes"} for row in want]


def test_bad_inputs_keep_their_own_rows(predictor):
    rows = predictor.predict(["", "  ", "(3 (2 It)", 5, "fine film"], progress=False)
    assert [r["error"] is None for r in rows] == [False, False, False, False, True]
    assert all(r[k] is None for r in rows[:4] for k in ("label", "probs", "ptb", "tokens"))
    want = plain_rows(predictor, ["fine film"])[0]
    assert rows[-1] == {k: v for k, v in want.items() if k != "nodes"}


def test_served_word_limit_counts_only_long_texts():
    from structrnn.serve.models import _words

    assert _words("a b c", 5) == 0  # no more than 5 characters: no more than 5 tokens
    assert _words("can't stop (now)", 8) == len(tokenize("can't stop (now)")) == 6
    assert _words("(3 (2 a) (2 b))", 4) == 3
