"""Data sets: the Stanford Sentiment Treebank, word vectors, a synthetic treebank, molecules
from SMILES and TU graph sets. Every reader takes a ``root`` (default ``$STRUCTRNN_DATA``)."""

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
