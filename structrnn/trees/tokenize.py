"""Raw text -> treebank tokens, written the way the Stanford Sentiment Treebank (SST) writes
them (the Penn Treebank's conventions), and a balanced binary tree over tokens.

::

    >>> tokenize("A witty movie (really) doesn't disappoint.")
    ['A', 'witty', 'movie', '-LRB-', 'really', '-RRB-', 'does', "n't", 'disappoint', '.']

A model trained on a treebank knows its tokens only: ``movie.`` or ``gorgeous,`` are unknown
words to it, ``movie`` and ``,`` are not. The rules:

- punctuation is split off: ``, ; : ? !`` (a run such as ``!?`` stays one token, as in SST),
  ``$ # % @``, and ``&`` unless between letters (``S&M``, ``R&B`` stay); commas and colons
  inside numbers stay (``2,500``, ``7:30``); ``...`` and ``--`` are tokens, hyphenated words stay
  whole;
- clitics: ``n't 's 're 've 'll 'd 'm`` (``doesn't`` -> ``does n't``, ``can't`` -> ``ca n't``,
  ``won't`` -> ``wo n't``), ``cannot`` -> ``can not``; ``gonna``, ``wanna``, ``gotta`` stay whole
  (SST keeps them);
- brackets: ``( )`` -> ``-LRB- -RRB-``, ``[ ]`` -> ``-LSB- -RSB-``, ``{ }`` -> ``-LCB- -RCB-``;
- quotes: an opening ``"`` -> `````` ``, a closing one -> ``''``; an opening single quote -> `````,
  a closing one is split off (``actors'`` -> ``actors '``); words SST writes with an apostrophe
  at an end stay (``'70s 'em 'til 'n' ol'``);
- ``/`` and ``*`` are escaped as ``\\/`` and ``\\*`` (PTB);
- a sentence's final period is split off unless the word is an abbreviation (``U.S.``, ``J.``,
  ``Mr.``, ``etc.``); a period inside the text only before a capitalised word (the treebank has
  one sentence per line, so this is the guess for several);
- curly quotes, ``…`` and dashes ``— –`` are read as their ASCII forms.

Only ASCII whitespace separates tokens: SST has tokens with a no-break space (``8\\u00a01\\/2``).
Text already tokenised this way comes back unchanged (the tests check every SST test sentence).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from structrnn._errors import InputError
from structrnn.trees.tree import WHITESPACE, Tree, new_node

__all__ = ["tokenize", "balanced_tree", "ABBREVIATIONS"]

# Words that keep their period at the end of a sentence and before a capitalised word; single
# letters and letter-period runs (J., U.S., P.O.W.) count as abbreviations without a list.
ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Messrs Dr Prof St Jr Sr Rev Gen Gov Sen Rep Capt Lt Col Sgt Mt Ft Ave vs Vs "
    "etc al Inc Co Corp Ltd Bros No Nos Vol Jan Feb Mar Apr Aug Sept Sep Oct Nov Dec Wash "
    "Calif Pa PA Mass Conn cf approx esp".split())

_UNICODE = str.maketrans({"\u201c": " `` ", "\u201d": " '' ", "\u201e": " `` ", "\u2018": "`",
                          "\u2019": "'", "\u2026": " ... ", "\u2014": " -- ", "\u2013": " -- "})
_WS_CLASS = "[" + re.escape(WHITESPACE) + "]"
_WS_RUN = re.compile(_WS_CLASS + "+")
# (pattern, replacement) applied in order to the whole text; each pads a token with spaces
_PADDING = [
    (re.compile(r"(?<!\\)([/*])"), r"\\\1"),                        # PTB escapes
    (re.compile(r"\("), " -LRB- "), (re.compile(r"\)"), " -RRB- "),
    (re.compile(r"\["), " -LSB- "), (re.compile(r"\]"), " -RSB- "),
    (re.compile(r"\{"), " -LCB- "), (re.compile(r"\}"), " -RCB- "),
    (re.compile(rf'(?:^|(?<={_WS_CLASS}))"'), " `` "),             # opening double quote
    (re.compile(r'"'), " '' "),                                      # any other: closing
    (re.compile(r"`+"), r" \g<0> "),
    (re.compile(r"''"), " '' "),
    (re.compile(r"\.\.\."), " ... "),
    (re.compile(r"--+"), r" \g<0> "),
    (re.compile(r"[;@#$%]"), r" \g<0> "),
    (re.compile(r"&(?!\w)|(?<!\w)&"), " & "),                       # S&M and R&B stay
    (re.compile(r"(?<!\d)[,:]|[,:](?!\d)"), r" \g<0> "),           # 2,500 and 7:30 stay
    (re.compile(r"[?!]+"), r" \g<0> "),                              # SST keeps !? whole
]
_CLOSING = frozenset(["''", "'", "-RRB-", "-RSB-", "-RCB-"])
_OPENING = ("`", "-LRB-", "-LSB-", "-LCB-")
_LETTERS_AND_PERIODS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")      # J, U.S, P.O.W (no final .)
_KEEP_LEADING = re.compile(r"'(?:s|re|ve|ll|d|m|em|til|n|tis|twas|cause)(?![^\W\d_])", re.I)
_KEEP_TRAILING = frozenset(["ol'", "'n'"])
_CLITIC = re.compile(r"(.*\w)(n't|'s|'re|'ve|'ll|'d|'m)", re.I | re.S)
_CANNOT = re.compile(r"(can)(not)", re.I)


def tokenize(text: str) -> list[str]:
    """The treebank tokens of ``text`` (one sentence, or a few): see the module docstring.

    Args:
        text: raw text; already tokenised treebank text comes back unchanged.

    Returns:
        The tokens, left to right (an empty list for blank text).
    """
    if not isinstance(text, str):
        raise InputError(f"text: expected a str, got {type(text).__name__}")
    text = text.translate(_UNICODE)
    for pattern, replacement in _PADDING:
        text = pattern.sub(replacement, text)
    chunks = [c for c in _WS_RUN.split(text) if c]
    tokens: list[str] = []
    for i, chunk in enumerate(chunks):
        tokens.extend(_split_chunk(chunk, _next_word(chunks, i)))
    return tokens


def _next_word(chunks: list[str], i: int) -> str | None:
    """The first chunk after ``chunks[i]`` that is not closing punctuation; None at the end."""
    for chunk in chunks[i + 1:]:
        if chunk not in _CLOSING:
            return chunk
    return None


def _split_chunk(chunk: str, following: str | None) -> list[str]:
    """One whitespace-separated piece, after padding, as its tokens: a closing quote, a period
    that ends a sentence, an opening quote and clitics come off."""
    if len(chunk) < 2:
        return [chunk]
    if "'" not in chunk and chunk[-1] != ".":
        return _clitics(chunk)  # no quote or period comes off: the common case, quickly
    tail: list[str] = []
    if chunk[-1] == "'" and (chunk[-2].isalnum() or chunk[-2] in "._") \
            and chunk.lower() not in _KEEP_TRAILING:
        chunk, tail = chunk[:-1], ["'"]
    if chunk.endswith(".") and not chunk.endswith("..") and len(chunk) > 1 \
            and _ends_sentence(chunk[:-1], following):
        chunk, tail = chunk[:-1], [".", *tail]
    head: list[str] = []
    if chunk[:1] == "'" and len(chunk) > 1 and chunk[1].isalpha() \
            and not _KEEP_LEADING.match(chunk):
        chunk, head = chunk[1:], ["`"]  # an opening single quote, as the treebank writes it
    return head + _clitics(chunk) + tail


def _ends_sentence(word: str, following: str | None) -> bool:
    """Whether the period after ``word`` ends a sentence: never after an abbreviation; at the end
    of the text; inside it only before a capitalised word or an opening quote or bracket."""
    if word in ABBREVIATIONS or _LETTERS_AND_PERIODS.fullmatch(word):
        return False
    if following is None:
        return True
    return following[0].isupper() or following.startswith(_OPENING) or (
        following[0] == "'" and following[1:2].isalpha())


def _clitics(word: str) -> list[str]:
    """``shouldn't've`` -> ``should n't 've``; ``cannot`` -> ``can not``."""
    if len(word) == 6 and _CANNOT.fullmatch(word):
        return [word[:3], word[3:]]
    tail: list[str] = []
    while "'" in word and (match := _CLITIC.fullmatch(word)) is not None:
        word, tail = match.group(1), [match.group(2), *tail]
    return [word, *tail]


def balanced_tree(tokens: Sequence[str], label: str | int = "2") -> Tree:
    """A balanced binary tree over ``tokens``: neighbours are paired level by level (an odd one
    out moves up as it is), every node labelled ``label``.

    This is the tree structrnn puts over a raw sentence until a parser is given: a tree model
    composes along it, so a real parse gives better predictions.

    Args:
        tokens: the leaves, left to right (at least one; no brackets or whitespace inside).
        label: every node's label.

    Returns:
        A :class:`Tree` with ``len(tokens)`` leaves and ``2 * len(tokens) - 1`` nodes.
    """
    if isinstance(tokens, str):
        raise InputError(f"tokens: expected a list of tokens, got the string {tokens[:40]!r} "
                         "(tokenize it first)")
    if not tokens:
        raise InputError("tokens: expected at least one token, got none")
    top = Tree(label)  # checks the label once
    label = top.label
    for token in tokens:
        if type(token) is not str or not token or "(" in token or ")" in token \
                or token[0] in WHITESPACE or token[-1] in WHITESPACE:
            Tree(label, token=token)  # the constructor's check and error, for this token
    # then nodes without a check each (a 20-word sentence makes 39)
    nodes = [new_node(label, token) for token in tokens]
    while len(nodes) > 1:
        paired = []
        for i in range(0, len(nodes) - 1, 2):
            node = new_node(label, None)
            node.children = [nodes[i], nodes[i + 1]]
            paired.append(node)
        nodes = paired + ([nodes[-1]] if len(nodes) % 2 else [])
    return nodes[0]
