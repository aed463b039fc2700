"""The Stanford Sentiment Treebank (Socher et al. 2013) as a dataset of tree ``Data``.

Files: ``train.txt``, ``dev.txt``, ``test.txt`` under ``root``, one PTB tree per line, labels 0-4
(very negative .. very positive) on every node. ``root`` defaults to ``$STRUCTRNN_DATA/sst``
(``~/.cache/structrnn/sst`` when the variable is unset). ``download=True`` fetches Stanford's
``trainDevTestTrees_PTB.zip``, checks its sha256 and unpacks the three files; tests never do.

Every node label must be a class ``0``..``4``: any other label (``9``, ``pos``) raises
:class:`~structrnn._errors.InputError` naming the file and the 1-based line
(``train.txt, line 8: node label '9' is not a sentiment class 0..4``), or, with
``on_error="skip"``, drops that tree and reports its line.

Binary task (Socher et al. 2013; Tai et al. 2015): trees with a neutral root are dropped; on
every node 0-1 -> 0, 3-4 -> 1, and neutral nodes (2) -> -1, which the loss ignores
(``cross_entropy(..., ignore_index=-1)``). Standard sizes 6920 / 872 / 1821.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_geometric.data import Data

from structrnn import __version__
from structrnn._errors import InputError
from structrnn._io import atomic_write, is_writable
from structrnn._paths import cache_dir as default_cache_dir
from structrnn._paths import data_root as default_data_root
from structrnn.trees.convert import FlatTrees, flat_to_data, flatten_trees
from structrnn.trees.ptb import PTBFile, parse_ptb, read_ptb_file
from structrnn.trees.tree import Tree, gc_paused
from structrnn.trees.vocab import Vocab

__all__ = ["SST", "TreeDataset", "to_binary", "default_data_root", "download_sst", "SST_URL",
           "SST_SHA256", "SPLITS", "LazyTrees", "CACHE_FORMAT", "cache_key", "cache_location",
           "read_cache", "write_cache"]

SST_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"
# 789,539 bytes; digest as pinned by a public project (see ../shared/datasets/sst/README.md);
# this machine cannot reach the host to re-check it.
SST_SHA256 = "5c613a4f673fc74097d523a2c83f38e0cc462984d847b82c7aaf36b01cbbbfcc"
SPLITS = ("train", "dev", "test")
_BINARY = torch.tensor([0, 0, -1, 1, 1])
CLASS_LABELS = frozenset("01234")  # SST writes each class as one digit
# Bump when what the processed cache holds (or how it is read) changes: its key includes it.
# Format 1 named each node's slot ``pos``; format 2 names it ``child_index`` (PyG reads ``pos``
# as coordinates). Both are read: the format says which name the file used.
CACHE_FORMAT = "structrnn-sst-2"
_FLAT_FIELDS = {"structrnn-sst-1": ("num_nodes", "y", "pos", "height", "parent"),
                "structrnn-sst-2": ("num_nodes", "y", "child_index", "height", "parent")}


def _cache_tensors(fmt: str) -> tuple[str, ...]:
    """The arrays of a cache of format ``fmt``, in the order of their checksum."""
    return (*_FLAT_FIELDS[fmt], "token_rows", "line_numbers", "tokens")


def to_binary(y: Tensor) -> Tensor:
    """Map fine-grained labels (0-4, -1 = none) to binary: 0-1 -> 0, 3-4 -> 1, 2 -> -1."""
    if y.numel() and (int(y.min()) < -1 or int(y.max()) > 4):
        raise ValueError(f"y: expected labels in -1..4, got values in {int(y.min())}.."
                         f"{int(y.max())}")
    return torch.where(y >= 0, _BINARY[y.clamp(min=0)], y)


def _bad_label(tree: Tree) -> str | None:
    """The first node label (pre-order) that is not a class 0..4, or None."""
    for node in tree.subtrees():
        if node.label not in CLASS_LABELS:
            return node.label
    return None


class TreeDataset(Dataset):
    """A list of :class:`~structrnn.Tree` and their ``Data`` (see :meth:`Tree.to_data`).

    ``dataset[i]`` is a ``Data``; ``dataset[a:b]`` or ``dataset[[i, j]]`` a smaller
    ``TreeDataset``; PyG's ``DataLoader`` batches it as it is. With ``binary=True`` trees with a
    neutral root (label 2) are dropped and ``y`` is mapped by :func:`to_binary`; ``.trees`` keep
    their original labels. ``vocab`` defaults to one built from these trees.

    Every node label must be one of ``0``..``4``. A tree with another label raises
    :class:`~structrnn._errors.InputError` naming it (``trees[3]``, or ``source, line N`` when
    ``source`` and ``line_numbers``, one per tree, say where the trees were read); with
    ``on_error="skip"`` the tree is dropped with a warning, and ``.skipped_lines`` lists its line
    (its index without ``line_numbers``).
    """

    def __init__(self, trees: Sequence[Tree], vocab: Vocab | None = None, binary: bool = False,
                 min_count: int = 1, lower: bool = False, *, source: str | None = None,
                 line_numbers: Sequence[int] | None = None, on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
        if line_numbers is not None and len(line_numbers) != len(trees):
            raise ValueError(f"line_numbers: expected one per tree ({len(trees)}), got "
                             f"{len(line_numbers)}")
        trees, self.skipped_lines = _checked(trees, source, line_numbers, on_error)
        self._setup(trees, flatten_trees(trees), vocab, binary, min_count, lower)

    def _setup(self, trees: Sequence[Tree], flat: FlatTrees, vocab: Vocab | None, binary: bool,
               min_count: int, lower: bool) -> None:
        """``.trees``, ``.data``, ``.vocab`` from the checked trees and their
        :class:`~structrnn.trees.convert.FlatTrees` (whole-array work, no per-node Python)."""
        if binary:  # trees with a neutral root are dropped; labels 0-1 -> 0, 3-4 -> 1, 2 -> -1
            kept = torch.nonzero(flat.y[flat.offsets()] != 2).squeeze(1)
            flat, trees = flat.take(kept), _take(trees, kept.tolist())
            flat = flat._replace(y=to_binary(flat.y))
        if vocab is None:
            with gc_paused():  # millions of live tree nodes make each collection slow
                vocab = Vocab.build([flat.tokens], min_count=min_count, lower=lower)
        self.trees: Sequence[Tree] = trees if isinstance(trees, LazyTrees) else list(trees)
        self.data: list[Data] = flat_to_data(flat, vocab)
        self.vocab = vocab
        self.binary = binary

    @property
    def num_classes(self) -> int:
        return 2 if self.binary else 5

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = range(len(self.data))[index]
        elif isinstance(index, Tensor):
            index = index.tolist()
        if isinstance(index, (range, list, tuple)):
            sub = object.__new__(type(self))
            sub.__dict__.update(self.__dict__)
            sub.trees = _take(self.trees, list(index))
            sub.data = [self.data[i] for i in index]
            return sub
        return self.data[index]

    def __repr__(self) -> str:
        kind = "binary" if self.binary else "fine-grained"
        return f"{type(self).__name__}({len(self)} trees, {kind}, vocab {len(self.vocab)})"


class SST(TreeDataset):
    """One split of the Stanford Sentiment Treebank as tree ``Data`` (5 classes, or 2 with
    ``binary=True``; see the module docstring).

    Args:
        root: folder with ``train.txt``/``dev.txt``/``test.txt``; default
            ``$STRUCTRNN_DATA/sst``.
        split: ``"train"``, ``"dev"`` or ``"test"``.
        binary: the binary task.
        vocab: token vocabulary; by default built from this split (pass the training set's
            ``.vocab`` to dev and test).
        download: fetch and unpack the official archive when the files are missing.
        min_count, lower: options of the vocabulary built when ``vocab`` is None.
        on_error: ``"raise"`` or ``"skip"`` malformed lines and trees whose labels are not
            classes 0..4 (skipped ones are reported in ``.skipped_lines`` and by a warning).
        cache_dir: where the processed split goes (see below); default ``processed/`` in
            ``root`` when ``root`` is writable, else ``$STRUCTRNN_CACHE/sst`` (by default
            ``~/.cache/structrnn/sst``).
        use_cache: ``False`` neither reads nor writes the processed split.

    The processed split (every tree's nodes as flat arrays and its tokens, independent of the
    vocabulary) is cached, keyed by the sha256 of the file's bytes, the library version and
    the cache format, written atomically and checked by a CRC-32 when read: a damaged or stale
    one is rebuilt with a warning. A start with the cache parses nothing: ``.data`` comes from
    the arrays, and ``.trees`` parses a tree from its line when it is first read. Only a file
    without a bad line is cached.
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 binary: bool = False, vocab: Vocab | None = None, download: bool = False,
                 min_count: int = 1, lower: bool = False, on_error: str = "raise",
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        root = Path(root) if root is not None else default_data_root() / "sst"
        path = root / f"{split}.txt"
        if not path.is_file() and download:
            download_sst(root)
        if not path.is_file():
            raise FileNotFoundError(
                f"SST split {split!r}: no file {path}. Put the SST PTB files (train.txt, dev.txt, "
                f"test.txt) in {root}, or set STRUCTRNN_DATA to the folder holding sst/, or pass "
                f"download=True to fetch {SST_URL}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
        self.root, self.split = root, split
        self.cache_path: Path | None = None
        self.cache_hit = False
        text = path.read_bytes()
        key = cache_key(text)
        if use_cache:
            self.cache_path = cache_location(root, cache_dir) / f"{split}.{key[-16:]}.pt"
            cached = read_cache(self.cache_path, key)
            if cached is not None:
                flat, line_numbers = cached
                self.skipped_lines, self.cache_hit = [], True
                self._setup(LazyTrees(text, line_numbers, str(path)), flat, vocab, binary,
                            min_count, lower)
                return
        read: PTBFile = read_ptb_file(path, on_error=on_error)
        trees, bad = _checked(read.trees, path.name, read.line_numbers, on_error)
        flat = flatten_trees(trees)
        self._setup(trees, flat, vocab, binary, min_count, lower)
        self.skipped_lines = sorted(read.skipped_lines + bad)
        if use_cache and not self.skipped_lines:  # only a clean file: the same for any on_error
            write_cache(self.cache_path, key, flat, read.line_numbers)


def _checked(trees: Sequence[Tree], source: str | None, line_numbers: Sequence[int] | None,
             on_error: str) -> tuple[list[Tree], list[int]]:
    """``(good trees, skipped lines)``; with ``on_error="raise"`` the first bad label raises
    (the message counts the others)."""
    problems = [(i, label) for i, t in enumerate(trees) if (label := _bad_label(t)) is not None]
    if not problems:
        return list(trees), []
    at = [i if line_numbers is None else line_numbers[i] for i, _ in problems]
    first = (f"trees[{at[0]}]" if line_numbers is None
             else f"{source + ', ' if source else ''}line {at[0]}")
    message = f"{first}: node label {problems[0][1]!r} is not a sentiment class 0..4"
    if on_error == "raise":
        if len(at) > 1:
            shown = ", ".join(map(str, at[1:21])) + (", ..." if len(at) > 21 else "")
            what = "trees" if line_numbers is None else "lines"
            message += f" (and {len(at) - 1} more such tree(s): {what} {shown})"
        raise InputError(message)
    warnings.warn(f"skipped {len(at)} tree(s) with labels outside 0..4; the first: {message}",
                  stacklevel=3)
    bad = {i for i, _ in problems}
    return [t for i, t in enumerate(trees) if i not in bad], at


def download_sst(root: str | os.PathLike, url: str = SST_URL,
                 sha256: str | None = SST_SHA256) -> Path:
    """Fetch the official archive, check its sha256 (skipped only if ``sha256`` is None) and
    write ``train.txt``, ``dev.txt``, ``test.txt`` into ``root``. Returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".sst-", suffix=".zip")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise InputError(f"{url}: sha256 {digest.hexdigest()} does not match the expected "
                             f"{sha256}; the download is corrupt or the file has changed")
        with zipfile.ZipFile(tmp) as archive:
            for split in SPLITS:
                member = f"trees/{split}.txt"
                target = root / f"{split}.txt"
                part = target.with_suffix(".txt.part")
                with archive.open(member) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(part, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return root


# -- the processed cache -------------------------------------------------------------------------
def cache_key(text: bytes) -> str:
    """What a processed split is valid for: the cache format, the library version and the
    sha256 of the file's bytes."""
    return f"{CACHE_FORMAT}:{__version__}:{hashlib.sha256(text).hexdigest()}"


def _without_format(key: object) -> object:
    """A cache key less its format (what data and which library version it is for)."""
    return key.partition(":")[2] if isinstance(key, str) else key


def cache_location(root: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``; by default ``processed/`` in ``root`` when writable (a shared, read-only
    data folder stays untouched), else :func:`structrnn._paths.cache_dir` ``/ "sst"``."""
    if cache_dir is not None:
        return Path(cache_dir)
    beside = root / "processed"
    usable = is_writable(beside) if beside.exists() else is_writable(root)
    return beside if usable else default_cache_dir() / "sst"


def _crc(arrays: dict[str, Tensor], fmt: str = CACHE_FORMAT) -> int:
    crc = 0
    for name in _cache_tensors(fmt):
        crc = zlib.crc32(arrays[name].numpy(), zlib.crc32(name.encode(), crc))
    return crc


def write_cache(path: Path, key: str, flat: FlatTrees, line_numbers: Sequence[int]) -> None:
    """Save ``flat`` and each tree's line number under ``key``, atomically (int32 arrays, the
    tokens as one UTF-8 text, a CRC-32 of it all). A folder we cannot write is not fatal."""
    text = "\n".join(flat.tokens).encode("utf-8")
    arrays = {name: getattr(flat, name).to(torch.int32)
              for name in (*_FLAT_FIELDS[CACHE_FORMAT], "token_rows")}
    arrays["line_numbers"] = torch.tensor(list(line_numbers), dtype=torch.int32)
    arrays["tokens"] = torch.frombuffer(bytearray(text), dtype=torch.uint8) if text \
        else torch.empty(0, dtype=torch.uint8)
    state = {"format": CACHE_FORMAT, "key": key, "num_tokens": len(flat.tokens),
             "crc": _crc(arrays), **arrays}
    try:
        atomic_write(path, lambda f: torch.save(state, f))
    except OSError as err:
        warnings.warn(f"could not write the SST cache {path}: {err}", stacklevel=3)


def read_cache(path: Path, key: str) -> tuple[FlatTrees, list[int]] | None:
    """What :func:`write_cache` saved under ``key``, or None when there is none, it is for
    other data, or it is damaged (then with a warning: the caller rebuilds it). A cache of an
    earlier format that holds the same data (format 1, whose slot array is named ``pos``) is
    read too."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        fmt = state.get("format") if isinstance(state, dict) else None
        if fmt not in _FLAT_FIELDS:
            raise ValueError("another cache format")
        if _without_format(state.get("key")) != _without_format(key):
            return None  # other data or another version: quietly rebuilt
        if state.get("crc") != _crc(state, fmt):
            raise ValueError("checksum mismatch")
        tokens = state["tokens"].numpy().tobytes().decode("utf-8").split("\n") \
            if state["num_tokens"] else []
        flat = FlatTrees(*(state[k].long() for k in _FLAT_FIELDS[fmt]), tokens,
                         state["token_rows"].long())
        if len(tokens) != flat.token_rows.numel() or int(flat.num_nodes.sum()) != flat.y.numel():
            raise ValueError("inconsistent sizes")
    except Exception as err:  # noqa: BLE001 - any damage (torch raises several kinds): rebuild
        warnings.warn(f"damaged SST cache {path} ({type(err).__name__}: {err}); rebuilding it",
                      stacklevel=3)
        return None
    return flat, state["line_numbers"].tolist()


class LazyTrees(Sequence):
    """The trees of some lines of a treebank file, each parsed when first read (a start from
    the processed cache parses nothing it does not show). ``trees[i]`` is the tree of line
    ``line_numbers[i]`` of ``text``, the same as :func:`~structrnn.trees.ptb.read_ptb_file`
    gives."""

    def __init__(self, text: bytes, line_numbers: Sequence[int], source: str | None = None,
                 _memo: dict[int, Tree] | None = None, _lines: list[bytes] | None = None):
        self.text, self.line_numbers, self.source = text, list(line_numbers), source
        self._memo = {} if _memo is None else _memo  # line number -> tree, shared by subsets
        self._lines = _lines

    def __len__(self) -> int:
        return len(self.line_numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        number = self.line_numbers[index]
        tree = self._memo.get(number)
        if tree is None:
            if self._lines is None:
                self._lines = self.text.split(b"\n")
            line = self._lines[number - 1].decode("utf-8").rstrip("\r\n")
            tree = self._memo[number] = parse_ptb(line)
        return tree

    def __iter__(self) -> Iterator[Tree]:
        return (self[i] for i in range(len(self)))

    def take(self, index: Sequence[int]) -> LazyTrees:
        """The trees ``index``, still lazy (parsed trees are shared)."""
        return LazyTrees(self.text, [self.line_numbers[i] for i in index], self.source,
                         self._memo, self._lines)

    def __repr__(self) -> str:
        return f"LazyTrees({len(self)} trees of {self.source or 'a treebank'})"


def _take(trees: Sequence[Tree], index: Sequence[int]) -> Sequence[Tree]:
    """``[trees[i] for i in index]``; lazy trees stay lazy."""
    if isinstance(trees, LazyTrees):
        return trees.take(index)
    return [trees[i] for i in index]
