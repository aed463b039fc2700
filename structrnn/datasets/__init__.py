"""Data sets: the Stanford Sentiment Treebank (:mod:`.sst`), word vectors (:mod:`.vectors`), a
synthetic treebank (:mod:`.synthetic`), molecules from SMILES (:mod:`.molecules`), TU graph sets
(:mod:`.tu`) and data splits (:mod:`.splits`).

Every reader takes a ``root``; the default comes from :func:`structrnn._paths.data_root`
(``$STRUCTRNN_DATA``, else ``~/.cache/structrnn``), and processed files go to
:func:`structrnn._paths.cache_dir` when the data folder is read-only. Nothing is downloaded unless
asked. A bad record raises :class:`structrnn._errors.InputError` naming the file and the 1-based
line. Each name below is imported on first use (the readers need PyTorch Geometric, some RDKit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from structrnn._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from structrnn.datasets.molecules import (
        FEATURISER_VERSION,
        NUM_ATOM_FEATURES,
        NUM_BOND_FEATURES,
        MoleculeCSV,
        MoleculeGraphs,
        from_smiles,
    )
    from structrnn.datasets.molecules.builtin import builtin_molecules
    from structrnn.datasets.splits import random_split, scaffold_split, stratified_kfold
    from structrnn.datasets.sst import SST, TreeDataset, default_data_root, download_sst, to_binary
    from structrnn.datasets.synthetic import (
        SyntheticSentiment,
        bag_of_words,
        generate_sentiment_trees,
        lexicon_vocab,
    )
    from structrnn.datasets.tu import tu_dataset
    from structrnn.datasets.vectors import Coverage, load_word_vectors

__all__ = [
    "SST", "TreeDataset", "default_data_root", "download_sst", "to_binary",
    "SyntheticSentiment", "bag_of_words", "generate_sentiment_trees", "lexicon_vocab",
    "Coverage", "load_word_vectors",
    "from_smiles", "MoleculeCSV", "MoleculeGraphs", "FEATURISER_VERSION", "NUM_ATOM_FEATURES",
    "NUM_BOND_FEATURES", "builtin_molecules", "random_split", "scaffold_split",
    "stratified_kfold", "tu_dataset",
]

# module -> the names it defines; every one is in __all__ (tests/test_packaging.py checks)
_EXPORTS = {
    ".sst": ["SST", "TreeDataset", "default_data_root", "download_sst", "to_binary"],
    ".synthetic": ["SyntheticSentiment", "bag_of_words", "generate_sentiment_trees",
                   "lexicon_vocab"],
    ".vectors": ["Coverage", "load_word_vectors"],
    ".molecules": ["from_smiles", "MoleculeCSV", "MoleculeGraphs", "FEATURISER_VERSION",
                   "NUM_ATOM_FEATURES", "NUM_BOND_FEATURES"],
    ".molecules.builtin": ["builtin_molecules"],
    ".splits": ["random_split", "scaffold_split", "stratified_kfold"],
    ".tu": ["tu_dataset"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
del annotations, TYPE_CHECKING, lazy_exports  # plumbing, not public names
