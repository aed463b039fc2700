"""The Stanford Sentiment Treebank (Socher et al. 2013) as a dataset of tree ``Data``.

Files: ``train.txt``, ``dev.txt``, ``test.txt`` under ``root``, one PTB tree per line, labels 0-4
(very negative .. very positive) on every node. ``root`` defaults to ``$STRUCTRNN_DATA/sst``
(``~/.cache/structrnn/sst`` when the variable is unset). ``download=True`` fetches Stanford's
``trainDevTestTrees_PTB.zip``, checks its sha256 and unpacks the three files; tests never do.

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
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch_geometric.data import Data

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


def to_binary(y: Tensor) -> Tensor:
    """Map fine-grained labels (0-4, -1 = none) to binary: 0-1 -> 0, 3-4 -> 1, 2 -> -1."""
    if y.numel() and (int(y.min()) < -1 or int(y.max()) > 4):
        raise ValueError(f"y: expected labels in -1..4, got values in {int(y.min())}.."
                         f"{int(y.max())}")
    return torch.where(y >= 0, _BINARY[y.clamp(min=0)], y)


class TreeDataset(Dataset):
    """A list of :class:`~structrnn.Tree` and their ``Data`` (see :meth:`Tree.to_data`).

    ``dataset[i]`` is a ``Data``; ``dataset[a:b]`` or ``dataset[[i, j]]`` a smaller
    ``TreeDataset``; PyG's ``DataLoader`` batches it as it is. With ``binary=True`` trees with a
    neutral root (label 2) are dropped and ``y`` is mapped by :func:`to_binary`; ``.trees`` keep
    their original labels. ``vocab`` defaults to one built from these trees.
    """

    def __init__(self, trees: Sequence[Tree], vocab: Vocab | None = None, binary: bool = False,
                 min_count: int = 1, lower: bool = False):
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
        on_error: ``"raise"`` or ``"skip"`` malformed lines (skipped ones are reported in
            ``.skipped_lines`` and by a warning).
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
                         lower=lower)
        self.root = root
        self.split = split
        self.skipped_lines = read.skipped_lines


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
            raise ValueError(f"{url}: sha256 {digest.hexdigest()} does not match the expected "
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
