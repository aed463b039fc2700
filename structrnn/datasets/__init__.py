"""Data sets: the Stanford Sentiment Treebank, word vectors, a synthetic treebank, molecules
from SMILES and TU graph sets. Every reader takes a ``root`` (default ``$STRUCTRNN_DATA``)."""

from structrnn.datasets.sst import SST, TreeDataset, default_data_root, download_sst, to_binary
from structrnn.datasets.synthetic import (
    SyntheticSentiment,
    bag_of_words,
    generate_sentiment_trees,
    lexicon_vocab,
)
from structrnn.datasets.vectors import Coverage, load_word_vectors

__all__ = [
    "SST", "TreeDataset", "default_data_root", "download_sst", "to_binary",
    "SyntheticSentiment", "bag_of_words", "generate_sentiment_trees", "lexicon_vocab",
    "Coverage", "load_word_vectors",
]
