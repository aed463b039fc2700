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
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_geometric.data import Data

from structrnn._errors import InputError
from structrnn._paths import data_root as default_data_root
from structrnn.trees.ptb import PTBFile, read_ptb_file
from structrnn.trees.tree import Tree, gc_paused
from structrnn.trees.vocab import Vocab

__all__ = ["SST", "TreeDataset", "to_binary", "default_data_root", "download_sst", "SST_URL",
           "SST_SHA256", "SPLITS"]

SST_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"
# 789,539 bytes; digest as pinned by a public project (see ../shared/datasets/sst/README.md);
# this machine cannot reach the host to re-check it.
SST_SHA256 = "5c613a4f673fc74097d523a2c83f38e0cc462984d847b82c7aaf36b01cbbbfcc"
SPLITS = ("train", "dev", "test")
_BINARY = torch.tensor([0, 0, -1, 1, 1])
CLASS_LABELS = frozenset("01234")  # SST writes each class as one digit


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
        if binary:
            trees = [t for t in trees if t.label != "2"]
        if vocab is None:
            vocab = Vocab.build(trees, min_count=min_count, lower=lower)
        with gc_paused():
            data = [t.to_data(vocab) for t in trees]
        if binary and data:  # one mapping for all trees, then a view per tree
            ys = to_binary(torch.cat([d.y for d in data]))
            for d, y in zip(data, ys.split([d.num_nodes for d in data])):
                d.y = y
        self.trees: list[Tree] = list(trees)
        self.data: list[Data] = data
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
            sub.trees = [self.trees[i] for i in index]
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
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train",
                 binary: bool = False, vocab: Vocab | None = None, download: bool = False,
                 min_count: int = 1, lower: bool = False, on_error: str = "raise"):
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
        read: PTBFile = read_ptb_file(path, on_error=on_error)
        super().__init__(read.trees, vocab=vocab, binary=binary, min_count=min_count,
                         lower=lower, source=path.name, line_numbers=read.line_numbers,
                         on_error=on_error)
        self.root = root
        self.split = split
        self.skipped_lines = sorted(read.skipped_lines + self.skipped_lines)


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
