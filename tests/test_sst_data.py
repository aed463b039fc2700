"""SST dataset, binary mapping, word-vector reader, synthetic treebank."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from collections import Counter

import pytest
import torch
from torch_geometric.loader import DataLoader

from structrnn._errors import InputError
from structrnn.datasets.sst import SST, TreeDataset, download_sst, to_binary
from structrnn.datasets.synthetic import (
    LEXICON,
    SyntheticSentiment,
    bag_of_words,
    generate_sentiment_trees,
)
from structrnn.datasets.vectors import file_dim, load_word_vectors
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab
from tests.conftest import shared_data_root


# ------------------------------------------------------------------ SST
@pytest.fixture(scope="module")
def sst_binary():
    # module scope (loaded once), so the function-scoped data_root fixture cannot be used
    root = shared_data_root() / "sst"
    if not root.is_dir():
        pytest.skip(f"data set 'sst' not found at {root} (set STRUCTRNN_DATA)")
    train = SST(root, "train", binary=True)
    return {"train": train, "dev": SST(root, "dev", binary=True, vocab=train.vocab),
            "test": SST(root, "test", binary=True, vocab=train.vocab)}


def test_sst_binary_sizes(sst_binary):
    """Socher et al. 2013 / Tai et al. 2015 binary sizes."""
    assert {k: len(v) for k, v in sst_binary.items()} == {"train": 6920, "dev": 872,
                                                           "test": 1821}
    for ds in sst_binary.values():
        ys = torch.cat([d.y for d in ds.data])
        assert set(ys.unique().tolist()) == {-1, 0, 1}
        roots = torch.stack([d.y[0] for d in ds.data])
        assert bool((roots >= 0).all())
        assert all(t.label != "2" for t in ds.trees)  # trees keep their fine labels
        assert ds.num_classes == 2


def test_sst_fine_dev_and_layout(data_root):
    dev = SST(data_root / "sst", "dev")
    assert len(dev) == 1101 and dev.num_classes == 5 and dev.skipped_lines == []
    first_line = (data_root / "sst" / "dev.txt").read_text(encoding="utf-8").split("\n")[0]
    assert dev.trees[0].to_ptb() == first_line
    d = dev[0]
    ref = dev.trees[0].to_data(dev.vocab)
    for key in ("x", "y", "child_index", "height", "edge_index"):
        assert torch.equal(d[key], ref[key])
    # binary labels are the fine ones mapped node by node
    binary = SST(data_root / "sst", "dev", binary=True, vocab=dev.vocab)
    kept = [i for i, t in enumerate(dev.trees) if t.label != "2"]
    assert len(kept) == len(binary)
    for i, j in zip(kept[:50], range(50), strict=True):
        lut = {0: 0, 1: 0, 2: -1, 3: 1, 4: 1}
        assert binary[j].y.tolist() == [lut[v] for v in dev[i].y.tolist()]
    # slicing and PyG batching
    part = dev[:30]
    assert isinstance(part, SST) and len(part) == 30 and part.vocab is dev.vocab
    batch = next(iter(DataLoader(part, batch_size=25)))
    assert batch.num_graphs == 25
    assert batch.y[batch.ptr[:-1]].tolist() == [int(t.label) for t in dev.trees[:25]]
    assert repr(dev) == f"SST(1101 trees, fine-grained, vocab {len(dev.vocab)})"


def test_to_binary():
    y = torch.tensor([0, 1, 2, 3, 4, -1])
    assert to_binary(y).tolist() == [0, 0, -1, 1, 1, -1]
    with pytest.raises(ValueError, match="labels in -1..4"):
        to_binary(torch.tensor([5]))


def test_tree_dataset_binary_drops_neutral_roots():
    trees = [Tree.from_ptb(s) for s in ["(2 (1 a) (3 b))", "(4 (2 a) (4 b))", "(0 (0 c) (2 a))"]]
    ds = TreeDataset(trees, binary=True)
    assert len(ds) == 2 and ds.trees == trees[1:]
    assert ds[0].y.tolist() == [1, -1, 1] and ds[1].y.tolist() == [0, 0, -1]


# ------------------------------------------------------------------ bad labels (issue 14, bug 5)
GOOD = "(3 (2 a) (3 b))"


def write_split(root, split: str, lines: list[str]):
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
    return root


@pytest.mark.parametrize("bad", ["9", "pos", "-1", "5"])
def test_sst_label_outside_the_classes_names_file_and_line(tmp_path, bad):
    # line 8 counts the blank line 3: the line number is the file's, 1-based
    lines = [GOOD] * 7 + [f"(3 (2 a) ({bad} b))"] + [GOOD]
    lines[2] = ""
    root = write_split(tmp_path / "sst", "train", lines)
    for binary in (False, True):
        with pytest.raises(InputError) as info:
            SST(root, "train", binary=binary)
        assert str(info.value) == (f"train.txt, line 8: node label {bad!r} is not a sentiment "
                                   "class 0..4")


def test_sst_bad_root_label_and_the_count_of_the_others(tmp_path):
    root = write_split(tmp_path, "dev", [GOOD, "(pos (2 a) (3 b))", GOOD, "(7 (2 a) (3 b))",
                                         "(3 (2 a) (x b))"])
    with pytest.raises(InputError, match=r"^dev\.txt, line 2: node label 'pos' is not a "
                                         r"sentiment class 0\.\.4 \(and 2 more such tree\(s\): "
                                         r"lines 4, 5\)$"):
        SST(root, "dev")


def test_sst_skip_drops_trees_with_bad_labels_and_reports_their_lines(tmp_path):
    root = write_split(tmp_path, "test", [GOOD, "(3 (9 a) (3 b))", "(3 (2 a)", "(1 (1 c) (2 d))"])
    with pytest.warns(UserWarning) as record:
        ds = SST(root, "test", on_error="skip")
    assert len(ds) == 2 and [t.to_ptb() for t in ds.trees] == [GOOD, "(1 (1 c) (2 d))"]
    assert ds.skipped_lines == [2, 3]  # the bad label and the unbalanced line
    assert any("test.txt, line 2: node label '9'" in str(w.message) for w in record)
    assert torch.cat([d.y for d in ds.data]).tolist() == [3, 2, 3, 1, 1, 2]


def test_tree_dataset_names_the_tree_without_a_file():
    trees = [Tree.from_ptb(GOOD), Tree.from_ptb("(3 (2 a) (neg b))")]
    with pytest.raises(InputError, match=r"^trees\[1\]: node label 'neg' is not a sentiment"):
        TreeDataset(trees)
    with pytest.raises(InputError, match=r"^reviews\.txt, line 12: node label 'neg'"):
        TreeDataset(trees, source="reviews.txt", line_numbers=[11, 12])
    with pytest.warns(UserWarning, match="skipped 1 tree"):
        ds = TreeDataset(trees, on_error="skip")
    assert len(ds) == 1 and ds.skipped_lines == [1]


def test_sst_missing_root_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        SST(tmp_path / "nowhere", "dev")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "dev.txt") in message
    assert "STRUCTRNN_DATA" in message and "download=True" in message
    with pytest.raises(ValueError, match="split"):
        SST(tmp_path, "validation")


def test_sst_default_root_from_env(tmp_path, monkeypatch):
    (tmp_path / "sst").mkdir()
    (tmp_path / "sst" / "test.txt").write_text("(3 (2 a) (3 b))\n(1 (1 c) (2 d))\n")
    monkeypatch.setenv("STRUCTRNN_DATA", str(tmp_path))
    ds = SST(split="test")
    assert len(ds) == 2 and ds.root == tmp_path / "sst"


def test_download_checks_sha256_and_unpacks(tmp_path):
    """download_sst on a local file:// archive (tests never use the network)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split in ("train", "dev", "test"):
            archive.writestr(f"trees/{split}.txt", f"(3 (2 {split}) (3 ok))\n")
    blob = buffer.getvalue()
    zip_path = tmp_path / "trees.zip"
    zip_path.write_bytes(blob)
    url = zip_path.as_uri()
    with pytest.raises(ValueError, match="sha256"):
        download_sst(tmp_path / "bad", url=url, sha256="0" * 64)
    assert not (tmp_path / "bad" / "train.txt").exists()
    assert list((tmp_path / "bad").iterdir()) == []  # no partial files left
    root = download_sst(tmp_path / "good", url=url, sha256=hashlib.sha256(blob).hexdigest())
    assert (root / "dev.txt").read_text() == "(3 (2 dev) (3 ok))\n"
    assert SST(root, "test").trees[0].leaves() == ["test", "ok"]


# ------------------------------------------------------------------ word vectors
VECTORS = [
    "the 0.1 0.2 0.3",
    "Movie 1 2 3",
    "movie 4 5 6",
    "bad 1 2",  # wrong field count
    "good 7 8 9",
    "8\u00a01/2 -1 -2 -3",
    "odd x y z",  # only parsed when needed: not in the vocabulary, so not checked
    "great 1 nan? 3",
]


def write_vectors(path, lines, header=None, gz=False):
    text = "".join(line + "\n" for line in ([header] if header else []) + lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("gz, header", [(False, None), (True, None), (False, "8 3"),
                                        (True, "8 3")])
def test_load_word_vectors(tmp_path, gz, header):
    vocab = Vocab(["the", "Movie", "Good", "missing", "8\u00a01/2", "bad", "great"])
    path = write_vectors(tmp_path / ("v.txt.gz" if gz else "v.txt"), VECTORS, header, gz)
    with pytest.warns(UserWarning, match="skipped 2 malformed"):
        vectors, coverage = load_word_vectors(path, vocab,
                                              generator=torch.Generator().manual_seed(0))
    offset = 1 if header else 0
    assert coverage.bad_lines == [4 + offset, 8 + offset]
    assert vectors.shape == (len(vocab), 3) and vectors.dtype == torch.float32
    assert vectors[vocab["the"]].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert vectors[vocab["Movie"]].tolist() == [1, 2, 3]  # exact match beats the lower-case one
    assert vectors[vocab["Good"]].tolist() == [7, 8, 9]  # lower-case fallback
    assert vectors[vocab["8\u00a01/2"]].tolist() == [-1, -2, -3]  # no-break space kept
    assert coverage.found == 4 and coverage.total == 8 and coverage.fraction == 0.5
    assert sorted(coverage.missing) == sorted(["<unk>", "missing", "bad", "great"])
    assert coverage.dim == 3
    rest = vectors[[vocab["missing"], vocab["bad"], 0]]
    assert 0 < rest.abs().max() < 1  # small random init
    with pytest.warns(UserWarning, match="skipped 2 malformed"):
        again, _ = load_word_vectors(path, vocab, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, vectors)
    assert "4 / 8 vocabulary tokens found (50.0%)" in str(coverage)


def test_load_word_vectors_errors(tmp_path):
    vocab = Vocab(["a"])
    path = write_vectors(tmp_path / "v.txt", ["a 1 2"], header="1 3")
    with pytest.raises(ValueError, match="header"):
        load_word_vectors(path, vocab, dim=2)
    empty = write_vectors(tmp_path / "e.txt", [])
    with pytest.raises(ValueError, match="no word vectors"):
        load_word_vectors(empty, vocab)
    with pytest.raises(FileNotFoundError):
        load_word_vectors(tmp_path / "none.txt", vocab)


def test_word_vector_dimension_comes_from_the_file(tmp_path):
    """Issue 14, bug 12: a 50-d file with the default 300 trained on random vectors."""
    vocab = Vocab(["a", "b"])
    glove = write_vectors(tmp_path / "glove.2d.txt", ["a 1 2", "b 3 4", "c 5 6"])
    assert file_dim(glove) == (2, False)
    vectors, coverage = load_word_vectors(glove, vocab)
    assert coverage.dim == 2 and coverage.bad_lines == [] and coverage.found == 2
    assert vectors[vocab["b"]].tolist() == [3, 4]
    _, same = load_word_vectors(glove, vocab, dim=2)
    assert same == coverage
    with pytest.raises(InputError) as info:
        load_word_vectors(glove, vocab, dim=300)
    message = str(info.value)
    assert str(glove) in message and "2 dimensions" in message and "dim=300" in message
    word2vec = write_vectors(tmp_path / "w2v.txt", ["a 1 2 3"], header="1 3")
    assert file_dim(word2vec) == (3, True)
    with pytest.raises(InputError, match=r"3 dimensions \(from its header\), but dim=2"):
        load_word_vectors(word2vec, vocab, dim=2)


def test_word_vector_dimension_skips_a_bad_first_line(tmp_path):
    # a first line with no vector (a lone word) does not decide the dimension
    path = write_vectors(tmp_path / "v.txt", ["oops", "a 1 2 3", "b 4 5 6"])
    with pytest.warns(UserWarning, match="skipped 1 malformed line"):
        vectors, coverage = load_word_vectors(path, Vocab(["a"]))
    assert coverage.dim == 3 and coverage.bad_lines == [1] and coverage.found == 1


def test_load_shared_vectors(sst_binary):
    path = sst_binary["train"].root.parent / "vectors" / "sst-en_core_web_md-300d.txt.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    vocab = sst_binary["train"].vocab
    vectors, coverage = load_word_vectors(path, vocab)
    assert vectors.shape == (len(vocab), 300) and coverage.bad_lines == []
    assert coverage.fraction > 0.85


# ------------------------------------------------------------------ synthetic treebank
def evaluate_sentence(words: list[str]) -> int:
    """Independent reference of the composition rules, on the flat sentence: the last
    clause after "but" decides; within it, intensifiers strengthen, then negations flip."""
    clause = words[len(words) - words[::-1].index("but"):] if "but" in words else words
    value = LEXICON[clause[-1]]
    if clause[-2] in ("very", "extremely", "really"):
        value = max(-2, min(2, value + (value > 0) - (value < 0)))
    return value * (-1) ** clause.count("not")


def test_synthetic_composition_and_determinism():
    trees = generate_sentiment_trees(400, seed=3)
    assert trees == generate_sentiment_trees(400, seed=3)
    assert trees != generate_sentiment_trees(400, seed=4)
    for t in trees:
        assert int(t.label) - 2 == evaluate_sentence(t.leaves())
        for node in t.subtrees():
            assert node.label in {"0", "1", "2", "3", "4"}
            assert len(node.children) in (0, 2) and (node.token is None) == bool(node.children)
    roots = Counter(t.label for t in trees)
    assert all(roots[c] > 20 for c in "01234")
    # words carry no fixed sentiment: in contrasts the first clause often disagrees with the
    # whole, and every polar adjective occurs in both positive and negative sentences
    contrasts = [t for t in trees if "but" in t.leaves()]
    disagree = [t for t in contrasts if (int(t.label) - 2) * (int(t.children[0].label) - 2) < 0]
    assert len(contrasts) > 100 and len(disagree) > 0.25 * len(contrasts)
    polarity: dict[str, set] = {}
    for t in trees:
        for word in t.leaves():
            polarity.setdefault(word, set()).add((int(t.label) > 2) - (int(t.label) < 2))
    assert all({-1, 1} <= polarity[w] for w, v in LEXICON.items() if v != 0)


def test_synthetic_dataset_vocab_binary_and_bag_of_words():
    a = SyntheticSentiment(50, seed=0)
    b = SyntheticSentiment(50, seed=1)
    assert a.vocab == b.vocab and len(a) == 50
    assert bool((torch.cat([d.x for d in a.data]) != 0).all())  # no unknown tokens
    counts, y = bag_of_words(a)
    assert counts.shape == (50, len(a.vocab)) and y.shape == (50,)
    for i in range(50):
        leaves = a.trees[i].leaves()
        assert counts[i].sum() == len(leaves)
        assert counts[i, a.vocab["not"]] == leaves.count("not")
        assert y[i] == int(a.trees[i].label)
    binary = SyntheticSentiment(200, seed=0, binary=True)
    assert all(t.label != "2" for t in binary.trees)
    assert set(torch.cat([d.y for d in binary.data]).tolist()) <= {-1, 0, 1}
    assert binary.num_classes == 2


# ------------------------------------------------------------------ the processed cache
CACHED_LINES = ["(3 (2 It) (4 (3 works) (2 .)))", "", "(1 (2 Not) (1 good))",
                "(2 (2 8\u00a01\\/2) (3 (2 -LRB-) (3 fine)))", "(0 (0 bad))", "(4 (4 great))"]


def assert_same_dataset(got: SST, want: SST) -> None:
    assert len(got) == len(want) and got.vocab == want.vocab and got.binary == want.binary
    for a, b in zip(got.data, want.data, strict=True):
        assert list(a.keys()) == list(b.keys())
        for key in a.keys():
            va, vb = a[key], b[key]
            if torch.is_tensor(va):
                assert va.dtype == vb.dtype and torch.equal(va, vb), key
            else:
                assert va == vb, key
    assert [t.to_ptb() for t in got.trees] == [t.to_ptb() for t in want.trees]
    assert got.skipped_lines == want.skipped_lines


@pytest.mark.parametrize("binary", [False, True])
def test_cache_gives_the_data_and_trees_of_a_fresh_parse(tmp_path, binary):
    root = write_split(tmp_path / "sst", "train", CACHED_LINES)
    first = SST(root, "train", binary=binary)
    assert not first.cache_hit and first.cache_path.is_file()
    assert first.cache_path.parent == root / "processed"  # a writable data folder
    second = SST(root, "train", binary=binary)
    assert second.cache_hit
    fresh = SST(root, "train", binary=binary, use_cache=False)
    assert_same_dataset(second, fresh)
    assert_same_dataset(first, fresh)
    # each Data equals Tree.to_data, the per-tree conversion
    for tree, data in zip(fresh.trees, second.data, strict=True):
        ref = tree.to_data(fresh.vocab)
        if binary:
            ref.y = to_binary(ref.y)
        assert torch.equal(ref.x, data.x) and torch.equal(ref.edge_index, data.edge_index)
        assert torch.equal(ref.y, data.y) and torch.equal(ref.height, data.height)


def test_cache_is_independent_of_the_vocabulary_and_slices_stay_lazy(tmp_path):
    root = write_split(tmp_path / "sst", "dev", CACHED_LINES)
    SST(root, "dev")  # writes the cache
    vocab = Vocab.build([["works", "good", "nothing"]])
    cached = SST(root, "dev", vocab=vocab)
    assert cached.cache_hit
    assert_same_dataset(cached, SST(root, "dev", vocab=vocab, use_cache=False))
    part = cached[1:3]
    assert [t.to_ptb() for t in part.trees] == [CACHED_LINES[2], CACHED_LINES[3]]
    assert part.trees[0] is cached.trees[1]  # parsed once, shared


def test_cache_of_a_read_only_folder_goes_to_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STRUCTRNN_CACHE", str(tmp_path / "cache"))
    root = write_split(tmp_path / "sst", "test", CACHED_LINES)
    root.chmod(0o555)
    try:
        ds = SST(root, "test")
        assert ds.cache_path.parent == tmp_path / "cache" / "sst"
        assert sorted(p.name for p in root.iterdir()) == ["test.txt"]  # nothing written there
        assert SST(root, "test").cache_hit
    finally:
        root.chmod(0o755)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "another-format"])
def test_a_damaged_cache_is_detected_and_rebuilt(tmp_path, damage):
    root = write_split(tmp_path / "sst", "train", CACHED_LINES)
    path = SST(root, "train").cache_path
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # one byte of the stored arrays: only the checksum sees it
        state = torch.load(path, weights_only=True)
        state["y"][3] += 1
        torch.save(state, path)
    elif damage == "garbage":
        path.write_bytes(b"not a cache")
    else:
        state = torch.load(path, weights_only=True)
        state["format"] = "structrnn-sst-0"
        torch.save(state, path)
    with pytest.warns(UserWarning, match="damaged SST cache"):
        rebuilt = SST(root, "train")
    assert not rebuilt.cache_hit
    assert_same_dataset(rebuilt, SST(root, "train", use_cache=False))
    assert SST(root, "train").cache_hit  # written again, sound


def test_an_edited_file_is_parsed_again(tmp_path):
    root = write_split(tmp_path / "sst", "train", CACHED_LINES)
    SST(root, "train")
    write_split(root, "train", CACHED_LINES[:3])
    again = SST(root, "train")
    assert not again.cache_hit and len(again) == 2


def test_a_file_with_bad_lines_is_not_cached(tmp_path):
    root = write_split(tmp_path, "test", [GOOD, "(3 (9 a) (3 b))"])
    with pytest.warns(UserWarning):
        ds = SST(root, "test", on_error="skip")
    assert ds.skipped_lines == [2] and not ds.cache_path.exists()
