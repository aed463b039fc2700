"""Tree: PTB parsing and printing, errors, conversions, to_data layout, batching, Vocab."""

from __future__ import annotations

import copy
import pickle
import random
import warnings

import networkx as nx
import pytest
import torch
from torch_geometric.loader import DataLoader

from structrnn.trees import brackets as tree_module
from structrnn.trees.ptb import ParseError, read_ptb_file, write_ptb_file
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

EXAMPLE = "(3 (2 It) (4 (3 works) (2 .)))"


def slow_parse(text: str) -> Tree:
    """The careful parser alone (the fast path disabled)."""
    fast = tree_module._parse_fast
    tree_module._parse_fast = lambda t, cls: None
    try:
        return tree_module.parse(text, Tree)
    finally:
        tree_module._parse_fast = fast


def chain_text(depth: int) -> str:
    return "(0 " * depth + "(1 x)" + ")" * depth


# ------------------------------------------------------------------ parsing and printing
def test_parse_example():
    t = Tree.from_ptb(EXAMPLE)
    assert t.label == "3" and t.token is None and len(t.children) == 2
    assert (t.children[0].label, t.children[0].token) == ("2", "It")
    assert [c.token for c in t.children[1].children] == ["works", "."]
    assert t.leaves() == ["It", "works", "."]
    assert len(t) == 5 and t.height == 2
    assert t.to_ptb() == EXAMPLE == str(t)
    assert Tree.from_ptb("(2 x)").height == 0


def test_tokens_kept_exactly():
    text = "(2 (2 8\u00a01\\/2) (2 (2 -LRB-) (2 New York)))"
    t = Tree.from_ptb(text)
    assert t.leaves() == ["8\u00a01\\/2", "-LRB-", "New York"]
    assert t.to_ptb() == text


def test_sst_lines_round_trip(data_root):
    """Every line of the SST files prints back byte-for-byte."""
    sizes = {}
    for split in ("train", "dev", "test"):
        lines = (data_root / "sst" / f"{split}.txt").read_text(encoding="utf-8").split("\n")
        assert lines[-1] == ""
        lines = lines[:-1]
        bad = [i for i, line in enumerate(lines, 1) if Tree.from_ptb(line).to_ptb() != line]
        assert bad == []
        sizes[split] = len(lines)
    assert sizes == {"train": 8544, "dev": 1101, "test": 2210}


def test_fast_and_careful_parsers_agree(data_root):
    lines = (data_root / "sst" / "dev.txt").read_text(encoding="utf-8").splitlines()
    rng = random.Random(0)
    for line in rng.sample(lines, 100):
        t = Tree.from_ptb(line)
        assert slow_parse(line) == t
        # other whitespace gives the same tree (through the careful parser)
        messy = line.replace(" (", " \n\t (").replace(")", " )")
        assert Tree.from_ptb("  " + messy + "\n") == t


@pytest.mark.parametrize("text, line, column, reason", [
    ("", 1, 1, "empty input"),
    ("  \n ", 1, 1, "empty input"),
    ("()", 1, 1, "empty brackets"),
    ("(2 (3 a) ( ))", 1, 10, "empty brackets"),
    ("(2 (3 a)", 1, 1, "never closed"),
    ("(2 (3 a) (4 (1 b)", 1, 10, "never closed"),
    ("(2 a))", 1, 6, "no matching '('"),
    ("(2 a)\n)", 2, 1, "no matching '('"),
    ("((2 a))", 1, 2, "missing label"),
    ("(2 ( (3 a)))", 1, 6, "missing label"),
    ("(2 a) x", 1, 7, "trailing garbage"),
    ("(2 a) (3 b)", 1, 7, "trailing garbage"),
    ("x (2 a)", 1, 1, "expected '('"),
    ("(2 (3 a) foo)", 1, 10, "either children or a token"),
    ("(2 foo (3 a))", 1, 8, "either a token or children"),
    ("(2\n  (3 a)\n  zz)", 3, 3, "either children or a token"),
])
def test_parse_errors(text, line, column, reason):
    with pytest.raises(ParseError) as info:
        Tree.from_ptb(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.line, err.column) == (line, column)
    assert reason in str(err)
    assert f"line {line}, column {column}" in str(err)
    # the quoted line with a caret under the column
    quoted, caret = str(err).split("\n")[-2:]
    assert quoted == "  " + text.split("\n")[line - 1]
    assert caret == "  " + " " * (column - 1) + "^"


def test_error_quote_of_long_line_is_cut():
    text = "(2 " + " ".join(f"(2 w{i})" for i in range(100)) + " junk)"
    with pytest.raises(ParseError) as info:
        Tree.from_ptb(text)
    quoted, caret = str(info.value).split("\n")[-2:]
    assert len(quoted) < 100 and "junk" in quoted
    assert quoted[caret.index("^"):].startswith("junk")


def test_read_file_reports_every_bad_line(tmp_path):
    path = tmp_path / "trees.txt"
    lines = ["(2 a)", "(2 (3 b)", "", "(1 c)", "(2 d))", "(4 (3 e) (2 f))", "()"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ParseError) as info:
        read_ptb_file(path)
    err = info.value
    assert (err.line, err.column) == (2, 1)
    assert [e.line for e in err.errors] == [2, 5, 7]
    assert "3 bad line(s) (2, 5, 7)" in str(err)
    for number in (2, 5, 7):
        assert f"line {number}, column" in str(err)
    with pytest.warns(UserWarning, match=r"3 bad line\(s\) \(2, 5, 7\)"):
        result = read_ptb_file(path, on_error="skip")
    assert [t.to_ptb() for t in result.trees] == ["(2 a)", "(1 c)", "(4 (3 e) (2 f))"]
    assert result.line_numbers == [1, 4, 6]
    assert result.skipped_lines == [2, 5, 7]
    assert [(e.line, e.column) for e in result.errors] == [(2, 1), (5, 6), (7, 1)]


def test_read_file_good_empty_missing_and_encoding(tmp_path):
    good = tmp_path / "good.txt"
    trees = [Tree.from_ptb(EXAMPLE), Tree.from_ptb("(1 x)")]
    write_ptb_file(good, trees)
    assert good.read_text() == EXAMPLE + "\n(1 x)\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_ptb_file(good).trees == trees
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ParseError, match="no tree"):
        read_ptb_file(empty)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_ptb_file(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"(2 a)\n(2 caf\xe9)\n")
    with pytest.warns(UserWarning):
        result = read_ptb_file(latin, on_error="skip")
    assert result.skipped_lines == [2] and result.errors[0].column == 7
    with pytest.raises(ValueError, match="on_error"):
        read_ptb_file(good, on_error="ignore")


def test_one_node_and_tokenless_trees():
    t = Tree.from_ptb("(2)")
    assert t.token is None and t.children == [] and t.to_ptb() == "(2)"
    data = t.to_data(Vocab())
    assert data.num_nodes == 1 and data.edge_index.shape == (2, 0)
    assert data.x.tolist() == [-1] and data.height.tolist() == [0] and data.y.tolist() == [2]
    t2 = Tree.from_ptb("(1 (2) (3))")
    assert t2.leaves() == [] and len(t2.leaf_nodes()) == 2 and t2.to_ptb() == "(1 (2) (3))"


def test_constructor_validation():
    assert Tree(3, token="ok").label == "3"
    with pytest.raises(ValueError, match="label"):
        Tree("a b")
    with pytest.raises(ValueError, match="label"):
        Tree("")
    with pytest.raises(ValueError, match="token"):
        Tree("2", token=" x")
    with pytest.raises(ValueError, match="token"):
        Tree("2", token="a(b")
    with pytest.raises(ValueError, match="either a token or children"):
        Tree("2", [Tree("1", token="a")], token="b")
    with pytest.raises(ValueError, match=r"children\[0\]"):
        Tree("2", ["a"])


def test_repr_pretty_pickle_copy():
    t = Tree.from_ptb(EXAMPLE)
    assert repr(t) == f"Tree.from_ptb({EXAMPLE!r})"
    assert eval(repr(t)) == t
    assert t.pretty(width=20) == "(3\n  (2 It)\n  (4\n    (3 works)\n    (2 .)))"
    assert t.pretty() == EXAMPLE
    assert Tree.from_ptb(t.pretty(width=1)) == t
    assert pickle.loads(pickle.dumps(t)) == t
    c = copy.deepcopy(t)
    assert c == t and c is not t and c.children[0] is not t.children[0]
    c.children[0].token = "That"
    assert c != t
    assert t != Tree.from_ptb("(3 (2 It) (4 (3 works) (1 .)))")
    assert t != Tree.from_ptb("(3 (2 It) (4 (3 works)))")


# ------------------------------------------------------------------ deep trees, no recursion
def test_100000_deep_chain():
    depth = 100_000
    text = chain_text(depth)
    t = Tree.from_ptb(text)
    assert t.to_ptb() == text
    assert len(t) == depth + 1 and t.height == depth
    assert t.leaves() == ["x"]
    data = t.to_data(Vocab(["x"]))
    assert data.num_nodes == depth + 1
    assert torch.equal(data.height, torch.arange(depth, -1, -1))
    assert torch.equal(data.edge_index, torch.stack([torch.arange(1, depth + 1),
                                                     torch.arange(depth)]))
    assert data.x[-1] == 1 and bool((data.x[:-1] == -1).all())
    g = t.to_networkx()
    assert g.number_of_nodes() == depth + 1 and g.number_of_edges() == depth
    assert Tree.from_networkx(g) == t
    assert repr(t).startswith(f"<Tree {depth + 1} nodes, height {depth}: (0 (0")
    assert len(repr(t)) < 300
    assert t.collapse_unary(collapse_leaves=True) == Tree("0", token="x")


def test_deep_chain_other_operations():
    """Far beyond Python's recursion limit (1000), smaller than above to keep the test fast."""
    depth = 20_000
    text = chain_text(depth)
    t = Tree.from_ptb(text)
    assert slow_parse(text) == t
    assert pickle.loads(pickle.dumps(t)) == t
    assert copy.deepcopy(t) == t
    assert t.binarize() == t
    assert t.pretty(width=40).count("\n") == depth  # deep lines never fit
    top = t.to_nltk()  # nltk's own methods recurse, so only the structure is checked
    node, count = top, 1
    while len(node) and not isinstance(node[0], str):
        node, count = node[0], count + 1
    assert count == depth + 1 and node.label() == "1" and list(node) == ["x"]
    assert Tree.from_nltk(top) == t


# ------------------------------------------------------------------ transformations
def test_binarize():
    t = Tree.from_ptb("(S (A a) (B b) (C c) (D d))")
    assert t.binarize().to_ptb() == "(S (A a) (S (B b) (S (C c) (D d))))"
    assert t.binarize("left").to_ptb() == "(S (S (S (A a) (B b)) (C c)) (D d))"
    assert t.binarize(label="S|").to_ptb() == "(S (A a) (S| (B b) (S| (C c) (D d))))"
    assert t.binarize("left", label=lambda n: n.label + "'").to_ptb() == \
        "(S (S' (S' (A a) (B b)) (C c)) (D d))"
    nested = Tree.from_ptb("(S (X (a 1) (b 2) (c 3)) (U (V v)))")
    assert nested.binarize().to_ptb() == "(S (X (a 1) (X (b 2) (c 3))) (U (V v)))"
    assert t.to_ptb() == "(S (A a) (B b) (C c) (D d))"  # unchanged
    with pytest.raises(ValueError, match="factor"):
        t.binarize("middle")


def test_collapse_unary():
    t = Tree.from_ptb("(S (NP (NN (N dog))) (VP (V barks) (ADV (RB loudly))))")
    assert t.collapse_unary().to_ptb() == "(S (NP (N dog)) (VP (V barks) (ADV (RB loudly))))"
    assert t.collapse_unary(keep="bottom").to_ptb() == \
        "(S (NN (N dog)) (VP (V barks) (ADV (RB loudly))))"
    assert t.collapse_unary(keep="join", collapse_leaves=True).to_ptb() == \
        "(S (NP+NN+N dog) (VP (V barks) (ADV+RB loudly)))"


# ------------------------------------------------------------------ conversions
def test_networkx_round_trip_and_attributes():
    t = Tree.from_ptb(EXAMPLE)
    g = t.to_networkx()
    assert g.graph["root"] == 0
    assert list(g.edges) == [(0, 1), (0, 2), (2, 3), (2, 4)]
    assert g.nodes[3] == {"label": "3", "token": "works", "child_index": 0}
    assert g.nodes[0] == {"label": "3", "token": None, "child_index": 0}
    assert Tree.from_networkx(g) == t
    # arbitrary node names inserted in another order; children ordered by child_index
    h = nx.DiGraph()
    h.add_node("dot", label="2", token=".", child_index=1)
    h.add_node("works", label="3", token="works", child_index=0)
    h.add_node("vp", label="4", child_index=1)
    h.add_node("it", label="2", token="It", child_index=0)
    h.add_node("s", label=3)
    h.add_edges_from([("vp", "dot"), ("s", "vp"), ("vp", "works"), ("s", "it")])
    assert Tree.from_networkx(h) == t


def test_networkx_errors():
    with pytest.raises(ValueError, match="exactly one node with no incoming edge"):
        Tree.from_networkx(nx.DiGraph([(0, 1), (2, 3)]))
    g = nx.DiGraph([(0, 1), (0, 2), (1, 2)])
    nx.set_node_attributes(g, "1", "label")
    with pytest.raises(ValueError, match="in-degree"):
        Tree.from_networkx(g)
    with pytest.raises(ValueError, match="no 'label'"):
        Tree.from_networkx(nx.DiGraph([(0, 1)]))
    cyc = nx.DiGraph([(0, 1), (2, 3), (3, 2)])
    nx.set_node_attributes(cyc, "1", "label")
    with pytest.raises(ValueError, match="not reachable"):
        Tree.from_networkx(cyc, root=0)
    with pytest.raises(ValueError, match="directed"):
        Tree.from_networkx(nx.Graph([(0, 1)]))


def test_nltk_round_trip(data_root):
    nltk = pytest.importorskip("nltk")
    t = Tree.from_ptb(EXAMPLE)
    n = t.to_nltk()
    assert n == nltk.Tree.fromstring(EXAMPLE)
    assert Tree.from_nltk(n) == t
    lines = (data_root / "sst" / "dev.txt").read_text(encoding="utf-8").splitlines()[:200]
    for line in lines:
        ours = Tree.from_ptb(line)
        theirs = nltk.Tree.fromstring(line)
        assert ours.to_nltk() == theirs
        assert Tree.from_nltk(theirs) == ours
        assert ours.leaves() == theirs.leaves() and ours.height + 2 == theirs.height()
    nbsp = Tree.from_ptb("(2 (2 8\u00a01\\/2) (2 x))")
    assert Tree.from_nltk(nbsp.to_nltk()) == nbsp
    assert Tree.from_nltk(nltk.Tree("NP", ["New", "York"])) == Tree("NP", token="New York")
    with pytest.raises(ValueError, match="mixes"):
        Tree.from_nltk(nltk.Tree("S", ["a", nltk.Tree("B", ["b"])]))


# ------------------------------------------------------------------ to_data
def reference_data(tree: Tree, vocab: Vocab) -> dict[str, list]:
    """Independent recursive reference of the Data layout (small trees only)."""
    out = {"x": [], "y": [], "child_index": [], "height": [], "edges": []}

    def visit(node: Tree, parent: int, position: int) -> int:
        me = len(out["x"])
        out["x"].append(vocab[node.token] if node.token is not None else -1)
        out["y"].append(int(node.label))
        out["child_index"].append(position)
        out["height"].append(None)
        if parent >= 0:
            out["edges"].append((me, parent))
        h = -1
        for k, child in enumerate(node.children):
            h = max(h, visit(child, me, k))
        out["height"][me] = h + 1
        return h + 1

    visit(tree, -1, 0)
    return out


def random_tree(rng: random.Random, size: int) -> Tree:
    nodes = [Tree(str(rng.randrange(5)))]
    for _ in range(size - 1):
        parent = rng.choice([n for n in nodes if n.token is None])
        child = Tree(str(rng.randrange(5)))
        parent.children.insert(rng.randrange(len(parent.children) + 1), child)
        nodes.append(child)
    for n in nodes:
        if not n.children and rng.random() < 0.9:
            n.token = rng.choice(["a", "b", "c", "zzz"])
    return nodes[0]


def test_to_data_hand_computed():
    vocab = Vocab(["It", "works", "."])
    d = Tree.from_ptb(EXAMPLE).to_data(vocab)
    # pre-order: 0 = root (3), 1 = It, 2 = (4 ...), 3 = works, 4 = .
    assert d.edge_index.tolist() == [[1, 2, 3, 4], [0, 0, 2, 2]]
    assert d.child_index.tolist() == [0, 0, 1, 0, 1] and "pos" not in d
    assert d.height.tolist() == [2, 0, 1, 0, 0]
    assert d.x.tolist() == [-1, 1, -1, 2, 3]
    assert d.y.tolist() == [3, 2, 4, 3, 2]
    assert d.num_nodes == 5
    for key in ("x", "y", "child_index", "height", "edge_index"):
        assert d[key].dtype == torch.long


def test_to_data_matches_recursive_reference():
    rng = random.Random(1)
    vocab = Vocab(["a", "b", "c"])
    for size in [1, 2, 3, 7, 30, 120]:
        for _ in range(5):
            t = random_tree(rng, size)
            ref = reference_data(t, vocab)
            d = t.to_data(vocab)
            assert d.x.tolist() == ref["x"] and d.y.tolist() == ref["y"]
            assert d.child_index.tolist() == ref["child_index"]
            assert d.height.tolist() == ref["height"]
            assert [tuple(e) for e in d.edge_index.t().tolist()] == ref["edges"]
            assert d.height[0] == t.height and d.num_nodes == len(t)
            assert Tree.from_ptb(t.to_ptb()) == t


def test_to_data_labels_and_vocab_errors():
    t = Tree.from_ptb("(S (NP a) (-1 b))")
    assert t.to_data(Vocab()).y.tolist() == [-1, -1, -1]
    assert t.to_data(Vocab(), label_vocab={"S": 0, "NP": 1}).y.tolist() == [0, 1, -1]
    assert t.to_data(Vocab()).x.tolist() == [-1, 0, 0]  # unknown -> <unk> = 0
    with pytest.raises(ValueError, match="'b' is not in the vocabulary"):
        t.to_data({"a": 0})


def test_pyg_dataloader_batches_trees():
    texts = [EXAMPLE, "(1 x)", "(0 (1 (2 a) (3 b) (4 c)) (2 It))"]
    trees = [Tree.from_ptb(s) for s in texts]
    vocab = Vocab.build(trees)
    data = [t.to_data(vocab) for t in trees]
    batch = next(iter(DataLoader(data, batch_size=3, shuffle=False)))
    sizes = [len(t) for t in trees]
    offsets = [0, sizes[0], sizes[0] + sizes[1]]
    assert batch.num_nodes == sum(sizes) == 12
    assert batch.ptr.tolist() == offsets + [12]
    expected = torch.cat([d.edge_index + o for d, o in zip(data, offsets)], dim=1)
    assert torch.equal(batch.edge_index, expected)
    for key in ("x", "y", "child_index", "height"):
        assert torch.equal(batch[key], torch.cat([d[key] for d in data]))
    assert batch.batch.tolist() == [0] * 5 + [1] + [2] * 6
    roots = batch.ptr[:-1]
    assert batch.height[roots].tolist() == [t.height for t in trees]
    assert batch.y[roots].tolist() == [3, 1, 0]
    # every edge joins nodes of one tree, parent one level above at least
    src, dst = batch.edge_index
    assert torch.equal(batch.batch[src], batch.batch[dst])
    assert bool((batch.height[dst] > batch.height[src]).all())


# ------------------------------------------------------------------ Vocab
def test_vocab_build_lookup_save_load(tmp_path):
    trees = [Tree.from_ptb("(2 (2 The) (2 (2 the) (2 cat)))"), Tree.from_ptb("(2 (2 a) (2 cat))")]
    v = Vocab.build(trees)
    assert v.tokens == ["<unk>", "cat", "The", "a", "the"]  # by count, then alphabetically
    assert len(v) == 5 and v.unk_id == 0
    assert v["cat"] == 1 and v["dog"] == 0 and "dog" not in v and "cat" in v
    assert v.lookup_tokens(torch.tensor([1, 4])) == ["cat", "the"]
    assert v.lookup_ids(["a", "zebra"]) == [3, 0]
    with pytest.raises(ValueError, match="ids"):
        v.lookup_tokens([5])
    assert Vocab.build(trees, min_count=2).tokens == ["<unk>", "cat"]
    low = Vocab.build(trees, lower=True)
    assert low.tokens == ["<unk>", "cat", "the", "a"] and low["THE"] == 2
    assert Vocab.build([["x", "y", "x"]], max_size=1).tokens == ["<unk>", "x"]
    strict = Vocab(["x"], unk=None)
    assert len(strict) == 1 and strict["x"] == 0
    with pytest.raises(KeyError):
        strict["y"]
    for vocab in (v, low, strict):
        path = vocab.save(tmp_path / "sub" / "vocab.json")
        assert Vocab.load(path) == vocab
    with pytest.raises(ValueError, match="string"):
        Vocab.build(["a sentence"])
    with pytest.raises(ValueError, match="twice"):
        Vocab(["a", "a"])
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a vocabulary file"):
        Vocab.load(tmp_path / "bad.json")
