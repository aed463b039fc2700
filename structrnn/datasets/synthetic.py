"""A sentiment treebank generated from a small grammar in which sentiment composes.

Every node is labelled 0-4 as in SST (value -2..2 plus 2). Values compose bottom-up:

- a word has its lexicon value (``good`` +1, ``great`` +2, ``bad`` -1, ``awful`` -2; function
  words and nouns 0);
- an intensifier strengthens: ``very good`` = +2, ``extremely bad`` = -2 (magnitude + 1, at
  most 2; a neutral adjective stays 0);
- negation flips: ``not good`` = -1, ``not very good`` = -2;
- a clause ``the plot was <adjective phrase>`` takes its adjective phrase's value;
- contrast: in ``S1 but S2`` the clause after ``but`` decides (``but S2`` and the whole have
  the value of S2), so ``the plot was good but the acting was bad`` is negative while
  ``the acting was bad but the plot was good`` is positive: the same bag of words.

The word's own value is also its leaf label, function words are neutral. Sentences with a
contrast and negations make a bag-of-words model guess, while a tree model that composes can be
exact. :func:`bag_of_words` gives the baseline's inputs (token counts per sentence).

Trees are binary::

    (1 (3 (2 (2 the) (2 plot)) (3 (2 was) (3 good)))
       (1 (2 but) (1 (2 (2 the) (2 acting)) (1 (2 was) (1 bad)))))
"""

from __future__ import annotations

import random

import torch

from structrnn.datasets.sst import TreeDataset
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

__all__ = ["SyntheticSentiment", "generate_sentiment_trees", "bag_of_words", "LEXICON"]

# adjective -> value; every value appears, neutral adjectives too
LEXICON = {
    "good": 1, "nice": 1, "fun": 1, "charming": 1, "great": 2, "brilliant": 2, "superb": 2,
    "bad": -1, "dull": -1, "weak": -1, "messy": -1, "awful": -2, "terrible": -2, "dreadful": -2,
    "long": 0, "quiet": 0, "familiar": 0,
}
NOUNS = ["movie", "plot", "acting", "script", "ending", "music", "cast", "story", "film"]
DETERMINERS = ["the", "this", "its"]
COPULAS = ["was", "is", "seems", "felt"]
INTENSIFIERS = ["very", "extremely", "really"]
NEGATION = "not"
CONTRAST = "but"


def _leaf(value: int, word: str) -> Tree:
    return Tree(str(value + 2), token=word)


def _node(value: int, left: Tree, right: Tree) -> Tree:
    return Tree(str(value + 2), [left, right])


def _adjective_phrase(rng: random.Random, p_intensify: float, p_negate: float,
                      max_negations: int) -> tuple[int, Tree]:
    word = rng.choice(sorted(LEXICON))
    value = LEXICON[word]
    tree = _leaf(value, word)
    if rng.random() < p_intensify:
        value = max(-2, min(2, value + (value > 0) - (value < 0)))
        tree = _node(value, _leaf(0, rng.choice(INTENSIFIERS)), tree)
    for _ in range(max_negations):
        if rng.random() >= p_negate:
            break
        value = -value
        tree = _node(value, _leaf(0, NEGATION), tree)
    return value, tree


def _clause(rng: random.Random, p_intensify: float, p_negate: float,
            max_negations: int) -> tuple[int, Tree]:
    subject = _node(0, _leaf(0, rng.choice(DETERMINERS)), _leaf(0, rng.choice(NOUNS)))
    value, adj = _adjective_phrase(rng, p_intensify, p_negate, max_negations)
    predicate = _node(value, _leaf(0, rng.choice(COPULAS)), adj)
    return value, _node(value, subject, predicate)


def generate_sentiment_trees(n_trees: int, seed: int = 0, max_clauses: int = 3,
                             p_contrast: float = 0.6, p_intensify: float = 0.3,
                             p_negate: float = 0.4, max_negations: int = 2) -> list[Tree]:
    """``n_trees`` binary sentiment trees (labels 0-4 on every node), the same for the same
    arguments. A sentence has 1..``max_clauses`` clauses joined by ``but`` (with probability
    ``p_contrast`` per extra clause); the rules are in the module docstring."""
    if n_trees < 0:
        raise ValueError(f"n_trees: expected >= 0, got {n_trees}")
    if max_clauses < 1:
        raise ValueError(f"max_clauses: expected >= 1, got {max_clauses}")
    rng = random.Random(seed)
    trees = []
    for _ in range(n_trees):
        value, tree = _clause(rng, p_intensify, p_negate, max_negations)
        for _ in range(max_clauses - 1):
            if rng.random() >= p_contrast:
                break
            # "S but S2": S2 (the clause after "but") decides; built right-branching
            value, right = _clause(rng, p_intensify, p_negate, max_negations)
            tree = _node(value, tree, _node(value, _leaf(0, CONTRAST), right))
        trees.append(tree)
    return trees


def lexicon_vocab() -> Vocab:
    """Every word the grammar can produce, in a fixed order (the same for every seed)."""
    words = (sorted(LEXICON) + NOUNS + DETERMINERS + COPULAS + INTENSIFIERS
             + [NEGATION, CONTRAST])
    return Vocab(words)


def bag_of_words(dataset: TreeDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Baseline inputs: ``(counts, y)`` with ``counts`` (num_trees, len(vocab)) float token
    counts per sentence and ``y`` (num_trees,) the root labels. A linear model or MLP on
    ``counts`` is the bag-of-words baseline."""
    counts = torch.zeros(len(dataset), len(dataset.vocab))
    roots = torch.empty(len(dataset), dtype=torch.long)
    for i, data in enumerate(dataset.data):
        ids = data.x[data.x >= 0]
        counts[i] = torch.bincount(ids, minlength=len(dataset.vocab)).float()
        roots[i] = data.y[0]
    return counts, roots


class SyntheticSentiment(TreeDataset):
    """A generated SST-like treebank (see the module docstring) as tree ``Data``.

    ``vocab`` defaults to the grammar's whole lexicon, so sets made with different seeds share
    it (e.g. train ``seed=0``, test ``seed=1``). ``binary=True`` applies the SST binary mapping.
    Remaining keyword arguments go to :func:`generate_sentiment_trees`.
    """

    def __init__(self, n_trees: int = 1000, seed: int = 0, vocab: Vocab | None = None,
                 binary: bool = False, **grammar):
        trees = generate_sentiment_trees(n_trees, seed, **grammar)
        super().__init__(trees, vocab=vocab if vocab is not None else lexicon_vocab(),
                         binary=binary)
        self.seed = seed
