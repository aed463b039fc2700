"""A span-based binary constituency parser: BiLSTM span scores and CKY decoding.

The model of Stern, Andreas & Klein (2017) and Kitaev & Klein (2018) without the transformer,
unlabeled and binary:

- every word is the concatenation of a word embedding (optionally initialised from pretrained
  vectors) and a character encoding (a bidirectional :class:`structrnn.LSTM` over its
  characters, the two final states), so a word outside the vocabulary still gets a vector;
- a bidirectional, multi-layer :class:`structrnn.LSTM` runs over ``<s> w_1 .. w_n </s>``;
- fencepost ``k`` (between words ``k`` and ``k + 1``) is represented by the forward state
  after word ``k`` and the backward state after (to the right of) word ``k + 1``, and span
  ``(i, j)`` by their differences: ``[f_j - f_i ; b_i - b_j]`` (Stern et al.'s fencepost
  differences);
- an MLP (linear, LayerNorm, ReLU, linear) scores every span; the tree's score is the sum of
  its spans' scores and :func:`structrnn.trees.spans.cky` finds the best binary tree.

The first layer of the MLP is linear, so it is applied once per fencepost rather than once per
span: ``W [f_j - f_i ; b_i - b_j] = g_j - g_i`` with ``g_k = W [f_k ; -b_k]``; only the
LayerNorm, the ReLU and the output run per span, on the real spans of each sentence (no padding
to the longest sentence squared).

Loss: the structured hinge (margin) loss with a Hamming cost, as Stern et al. and Kitaev &
Klein train::

    loss = max_T [ s(T) + Δ(T, T*) ] - s(T*),    Δ = number of spans of T not in T*

The maximisation is CKY on the span scores plus 1 on every non-gold span (loss-augmented
decoding); it runs under ``no_grad`` and the gradient flows through the scores of the two trees'
spans only. We chose it over the tree-CRF (the inside algorithm, log-likelihood of the gold
tree) because (a) the Hamming cost counts exactly the bracket errors that the F1 scores, so it
trains for the decoding we use; (b) it needs one max-CKY without autograd, whereas the CRF
back-propagates through the whole O(n^3) inside chart (more memory, and a slower step on the
2-core CPUs this is trained on); (c) we need the best tree, not span marginals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structrnn._errors import InputError
from structrnn._io import atomic_write
from structrnn.sequence import LSTM
from structrnn.trees.spans import Span, cky, spans_to_tree
from structrnn.trees.tokenize import tokenize as treebank_tokenize
from structrnn.trees.tree import Tree
from structrnn.trees.vocab import Vocab

__all__ = ["Parser", "ParserBatch", "BiLSTM", "hinge_loss", "tokenize", "FORMAT",
           "FORMAT_VERSION", "LEGACY_FORMAT"]

# the one model-file format of every task (structrnn.tasks.predictor.FORMAT; trees/ sits below
# the tasks, so the name is spelled here): what structrnn.load reads, with the task "parser"
FORMAT = "structrnn.model"
FORMAT_VERSION = 1
# the parser's own format of the first release: still read by Parser.load
LEGACY_FORMAT = "structrnn.Parser"
DEFAULTS: dict[str, Any] = {"embed_dim": 100, "char_dim": 32, "char_hidden": 50, "hidden": 200,
                            "layers": 2, "mlp_hidden": 200, "dropout": 0.3, "word_dropout": 0.3,
                            "max_chars": 30}
_ESCAPES = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


def tokenize(text: str) -> list[str]:
    """Raw text -> treebank tokens (:func:`structrnn.trees.tokenize.tokenize`)."""
    return list(treebank_tokenize(text))


def _clean_tokens(tokens: Sequence[Any], where: str) -> list[str]:
    """Given tokens as PTB leaves: strings, brackets escaped, blank tokens dropped."""
    out = []
    for k, token in enumerate(tokens):
        if not isinstance(token, str):
            raise InputError(f"{where}: token {k} is a {type(token).__name__}, not a string")
        token = token.strip()
        for bracket, escape in _ESCAPES.items():
            token = token.replace(bracket, escape)
        if token:
            out.append(token)
    return out


@dataclass
class ParserBatch:
    """Sentences as the tensors :meth:`Parser.forward` reads (built by :meth:`Parser.encode`).

    Attributes:
        words: (B, N) long word ids (0, the unknown word, also pads).
        lengths: (B,) long number of words, on the CPU (packing reads it there).
        chars: (U, C) long character ids of the batch's U distinct words (0-padded).
        char_lengths: (U,) long, on the CPU.
        word_index: (B, N) long, the row of ``chars`` of each word (0 on padding).
        gold: (G, 3) long rows ``(b, i, j)``: the gold spans, for training; or None.
    """

    words: Tensor
    lengths: Tensor
    chars: Tensor
    char_lengths: Tensor
    word_index: Tensor
    gold: Tensor | None = None

    def to(self, device: torch.device | str) -> ParserBatch:
        """The batch with its tensors on ``device`` (the lengths stay on the CPU)."""
        return replace(self, words=self.words.to(device), chars=self.chars.to(device),
                       word_index=self.word_index.to(device),
                       gold=None if self.gold is None else self.gold.to(device))

    def __len__(self) -> int:
        return self.words.size(0)


class Parser(nn.Module):
    """A span-based binary constituency parser (see the module docstring).

    Args:
        words: the word vocabulary (a :class:`~structrnn.Vocab` or its token list, the unknown
            word first).
        chars: the character vocabulary (same form).
        vectors: optional (len(words), embed_dim) initial word embeddings (e.g. from
            ``structrnn.datasets.vectors.load_word_vectors``); its width sets ``embed_dim``.
        **config: ``embed_dim``, ``char_dim``, ``char_hidden``, ``hidden`` (per direction),
            ``layers``, ``mlp_hidden``, ``dropout``, ``word_dropout`` (``a``: in training a
            word seen ``c`` times in the training data is replaced by the unknown word with
            probability ``a / (a + c)``, so rare words are dropped, frequent ones almost
            never, and the unknown word's vector is trained; Kiperwasser & Goldberg 2016),
            ``max_chars`` (characters read per word); defaults in ``DEFAULTS``.

    ``parse(["It works ."])`` gives trees; ``forward(batch)`` the span scores for training.
    """

    def __init__(self, words: Vocab | Sequence[str], chars: Vocab | Sequence[str],
                 vectors: Tensor | None = None, **config: Any) -> None:
        super().__init__()
        unknown = sorted(set(config) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"Parser: unknown settings {unknown} (known: {sorted(DEFAULTS)})")
        config = {**DEFAULTS, **config}
        if vectors is not None:
            config["embed_dim"] = vectors.size(1)
        self.config = config
        self.words = words if isinstance(words, Vocab) else Vocab(words)
        self.chars = chars if isinstance(chars, Vocab) else Vocab(chars)
        if vectors is not None and vectors.shape != (len(self.words), config["embed_dim"]):
            raise ValueError(f"Parser: vectors must have shape ({len(self.words)}, embed_dim), "
                             f"one row per word, got {tuple(vectors.shape)}")
        c = config
        self.word_embedding = nn.Embedding(len(self.words), c["embed_dim"])
        # the training count of every word (0 for the unknown word): in the state_dict, so a
        # loaded parser keeps them (a vocabulary rebuilt from a token list has no counts)
        counts = getattr(self.words, "counts", None) or {}
        self.register_buffer("word_counts", torch.tensor(
            [float(counts.get(w, 0)) for w in self.words], dtype=torch.float))
        if vectors is not None:
            with torch.no_grad():
                self.word_embedding.weight.copy_(vectors)
        self.char_embedding = nn.Embedding(len(self.chars), c["char_dim"])
        self.char_lstm = BiLSTM(c["char_dim"], c["char_hidden"])
        size = c["embed_dim"] + 2 * c["char_hidden"]
        self.boundary = nn.Parameter(torch.randn(2, size) * 0.1)  # <s>, </s>
        self.lstm = BiLSTM(size, c["hidden"], c["layers"], c["dropout"])
        self.dropout = nn.Dropout(c["dropout"])
        self.span_in = nn.Linear(2 * c["hidden"], c["mlp_hidden"], bias=False)
        self.span_bias = nn.Parameter(torch.zeros(c["mlp_hidden"]))
        self.span_norm = nn.LayerNorm(c["mlp_hidden"])
        self.span_out = nn.Linear(c["mlp_hidden"], 1)

    def reset_parameters(self) -> None:
        """New weights everywhere, as at construction from random vectors (word vectors given
        to the constructor are drawn anew too: copy them back after a reset to keep them)."""
        for module in (self.word_embedding, self.char_embedding, self.char_lstm, self.lstm,
                       self.span_in, self.span_norm, self.span_out):
            module.reset_parameters()
        with torch.no_grad():
            self.boundary.normal_(0.0, 0.1)
            self.span_bias.zero_()

    def extra_repr(self) -> str:
        c = self.config
        return (f"words={len(self.words)}, chars={len(self.chars)}, embed_dim={c['embed_dim']}, "
                f"hidden={c['hidden']}, layers={c['layers']}, mlp_hidden={c['mlp_hidden']}")

    # -------------------------------------------------------------------- vocabularies
    @staticmethod
    def build_vocabularies(sentences: Iterable[Sequence[str]], min_count: int = 1
                           ) -> tuple[Vocab, Vocab]:
        """The word and character vocabularies of tokenised training sentences (every
        character seen once or more)."""
        sentences = [list(s) for s in sentences]
        words = Vocab.build(sentences, min_count=min_count)
        chars = Vocab.build([list(w) for s in sentences for w in s])
        return words, chars

    # -------------------------------------------------------------------- tensors
    @property
    def device(self) -> torch.device:
        return self.word_embedding.weight.device

    def encode(self, sentences: Sequence[Sequence[str]],
               gold: Sequence[Tensor | Iterable[Span]] | None = None) -> ParserBatch:
        """Tokenised sentences (each non-empty) as a :class:`ParserBatch` on the CPU; ``gold``:
        each sentence's gold spans ((k, 2) long tensors or ``(i, j)`` pairs)."""
        if any(len(s) == 0 for s in sentences):
            raise ValueError("Parser.encode: every sentence needs a word")
        batch, n = len(sentences), max((len(s) for s in sentences), default=0)
        lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
        distinct: dict[str, int] = {}
        rows = [[distinct.setdefault(w, len(distinct)) for w in s] for s in sentences]
        words = torch.zeros(batch, n, dtype=torch.long)
        word_index = torch.zeros(batch, n, dtype=torch.long)
        for b, s in enumerate(sentences):
            words[b, : len(s)] = torch.tensor(self.words.lookup_ids(s), dtype=torch.long)
            word_index[b, : len(s)] = torch.tensor(rows[b], dtype=torch.long)
        most = self.config["max_chars"]
        spelled = [w[:most] for w in distinct]
        char_lengths = torch.tensor([len(w) for w in spelled], dtype=torch.long)
        chars = torch.zeros(len(spelled), max(char_lengths.tolist(), default=1),
                            dtype=torch.long)
        for u, w in enumerate(spelled):
            chars[u, : len(w)] = torch.tensor(self.chars.lookup_ids(w), dtype=torch.long)
        spans = None
        if gold is not None:
            parts = [torch.as_tensor(list(g) if not isinstance(g, Tensor) else g,
                                     dtype=torch.long).reshape(-1, 2) for g in gold]
            spans = torch.cat([torch.cat([torch.full((len(p), 1), b), p], 1)
                               for b, p in enumerate(parts)])
        return ParserBatch(words, lengths, chars, char_lengths, word_index, spans)

    def _word_vectors(self, batch: ParserBatch) -> Tensor:
        """(B, N, embed_dim + 2 char_hidden): word embedding and character encoding."""
        words = batch.words
        alpha = self.config["word_dropout"]
        if self.training and alpha > 0:
            rate = alpha / (alpha + self.word_counts[words])
            words = words.masked_fill(torch.rand(words.shape, device=words.device) < rate, 0)
        # the word's spelling: the forward state after its last character and the backward
        # state after its first, (U, 2 char_hidden)
        out = self.char_lstm(self.char_embedding(batch.chars), batch.char_lengths)
        size, last = self.config["char_hidden"], (batch.char_lengths - 1).to(out.device)
        ends = torch.cat([out[torch.arange(out.size(0), device=out.device), last, :size],
                          out[:, 0, size:]], -1)
        spelled = ends[batch.word_index]
        return torch.cat([self.word_embedding(words), spelled], -1)

    def forward(self, batch: ParserBatch) -> Tensor:
        """Span scores.

        Args:
            batch: from :meth:`encode`, on this model's device.

        Returns:
            (B, N + 1, N + 1) float, ``[b, i, j]`` the score of span ``(i, j)``, ``0 <= i < j
            <= lengths[b]``; 0 elsewhere.
        """
        x = self.dropout(self._word_vectors(batch))
        B, N, D = x.shape
        rows = torch.arange(B, device=x.device)
        lengths = batch.lengths.to(x.device)
        # <s> w_1 .. w_n </s>: the end marker goes right after each sentence's last word
        x = torch.cat([self.boundary[0].expand(B, 1, D), x, x.new_zeros(B, 1, D)], 1)
        x = x.index_put((rows, lengths + 1), self.boundary[1].expand(B, D))
        out = self.lstm(x, batch.lengths + 2)                            # (B, N + 2, 2H)
        out = self.dropout(out)
        H = self.config["hidden"]
        # fencepost k: forward state after word k (position k), backward state of word k + 1
        fence = torch.cat([out[:, : N + 1, :H], -out[:, 1:, H:]], -1)   # (B, N + 1, 2H)
        g = self.span_in(fence).flatten(0, 1)                            # (B (N + 1), M)
        b, i, j = _span_index(batch.lengths, N, x.device)
        # index_select, not g[b, j]: its backward is one index_add (advanced indexing's is an
        # accumulating index_put, several times slower on the CPU)
        first, last = b * (N + 1) + i, b * (N + 1) + j
        hidden = g.index_select(0, last) - g.index_select(0, first) + self.span_bias
        score = self.span_out(F.relu(self.span_norm(hidden))).squeeze(-1)  # (S,)
        return score.new_zeros(B, N + 1, N + 1).index_put((b, i, j), score)

    # -------------------------------------------------------------------- parsing
    def parse_spans(self, sentences: Sequence[Sequence[str]], batch_size: int = 128
                    ) -> list[list[Span]]:
        """The best tree's spans (pre-order ``(i, j)`` pairs) of each tokenised sentence.
        Sentences are batched by length (less padding); the order of the input is kept."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        order = sorted(range(len(sentences)), key=lambda k: len(sentences[k]))
        out: list[list[Span]] = [[] for _ in sentences]
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(order), batch_size):
                    chunk = order[start:start + batch_size]
                    batch = self.encode([sentences[k] for k in chunk]).to(self.device)
                    found = cky(self(batch), batch.lengths).span_lists()
                    for k, spans in zip(chunk, found, strict=True):
                        out[k] = spans
        finally:
            self.train(was_training)
        return out

    def tokens_of(self, sentence: str | Sequence[str], where: str = "sentence") -> list[str]:
        """The tokens the parser reads: a string is tokenised (:func:`tokenize`), a list of
        strings taken as tokens (brackets escaped as ``-LRB-``...)."""
        if isinstance(sentence, str):
            return _clean_tokens(tokenize(sentence), where)
        if isinstance(sentence, Sequence):
            return _clean_tokens(sentence, where)
        raise InputError(f"{where}: expected a string or a list of tokens, got "
                         f"{type(sentence).__name__}")

    def parse(self, sentences: Sequence[str] | Sequence[Sequence[str]], batch_size: int = 128,
              label: str = "X") -> list[Tree]:
        """Parse raw sentences (strings) or tokenised ones (lists of tokens).

        Returns:
            one binary :class:`~structrnn.Tree` per sentence, in order: the leaves are the
            tokens, every node (leaves too) is labelled ``label``; a one-word sentence is a
            single leaf. ``tree.to_ptb()`` gives the treebank's bracket text.

        Raises:
            InputError: a sentence without a token (named by its index), or not text.
        """
        if isinstance(sentences, str):
            sentences = [sentences]
        tokens = [self.tokens_of(s, f"sentence {k}") for k, s in enumerate(sentences)]
        empty = [k for k, t in enumerate(tokens) if not t]
        if empty:
            raise InputError(f"parse: sentence {empty[0]} has no tokens (empty input)")
        found = self.parse_spans(tokens, batch_size)
        return [spans_to_tree(t, s, label) for t, s in zip(tokens, found, strict=True)]

    # -------------------------------------------------------------------- files
    def spec(self) -> dict[str, Any]:
        """What rebuilds this parser besides its weights: vocabularies and settings (plain
        lists and dicts)."""
        return {"words": list(self.words), "chars": list(self.chars),
                "config": dict(self.config)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], state_dict: dict[str, Tensor] | None = None
                  ) -> Parser:
        """The parser of :meth:`spec` (with ``state_dict``'s weights when given)."""
        parser = cls(spec["words"], spec["chars"], **spec["config"])
        if state_dict is not None:
            parser.load_state_dict(state_dict)
        return parser

    def save(self, path: str | Path) -> Path:
        """One file (atomic) in the model-file format of every task: weights, vocabularies,
        settings. :meth:`load`, ``structrnn.load`` and ``structrnn parse`` read it;
        ``torch.load(path, weights_only=True)`` too."""
        state = {"format": FORMAT, "version": FORMAT_VERSION, "task": "parser",
                 "config": {"task": "parser", **self.config},
                 "models": [{k: v.detach().cpu() for k, v in self.state_dict().items()}],
                 "parser": self.spec()}
        return atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | Path, map_location: Any = "cpu") -> Parser:
        """A trained parser, in eval mode.

        Args:
            path: a run folder of ``structrnn train parser`` (its ``best.pt``), or a model file:
                one written by :meth:`save` or by ``structrnn export`` / ``Predictor.save`` of
                a parser run, or a file of the parser's first format (``"structrnn.Parser"``).
            map_location: as ``torch.load``'s.

        Raises:
            InputError: no such folder or file, a run folder without ``best.pt``, or a file
                that is not a parser's (another task's model, another format, a newer
                version).
        """
        path = Path(path)
        file = path / "best.pt" if path.is_dir() else path
        if path.is_dir() and not file.is_file():
            raise InputError(f"Parser.load: {path} has no best.pt (a run folder of 'structrnn "
                             "train parser' that has finished an epoch, or a model file)")
        if not file.is_file():
            raise InputError(f"Parser.load: no run folder or model file {path}")
        try:
            state = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
            raise InputError(f"Parser.load: {file} is not a parser file ({err})") from err
        return cls.from_saved(state, str(file)).eval()

    @classmethod
    def from_saved(cls, state: Any, where: str = "state") -> Parser:
        """The parser of a loaded model file (:meth:`save`'s format, or the first
        ``"structrnn.Parser"`` one) or of a run's ``best.pt`` checkpoint."""
        if not isinstance(state, dict):
            raise InputError(f"Parser.load: {where} is not a parser file (not a dict)")
        version = state.get("format") in (FORMAT, LEGACY_FORMAT) and int(state.get("version", 0))
        if version and version > FORMAT_VERSION:
            raise InputError(f"Parser.load: {where} has format version {version}, newer than "
                             f"this structrnn reads ({FORMAT_VERSION}); upgrade structrnn")
        if state.get("format") == FORMAT:
            if state.get("task") != "parser" or "parser" not in state:
                raise InputError(f"Parser.load: {where} is not a parser file (a model of task "
                                 f"{state.get('task')!r}; structrnn.load reads it)")
            return cls.from_spec(state["parser"], state["models"][0])
        if state.get("format") == LEGACY_FORMAT:
            return cls.from_spec(state, state["model"])
        if "parser" in state and "model" in state:  # a run's best.pt
            return cls.from_spec(state["parser"], state["model"])
        raise InputError(f"Parser.load: {where} is not a parser file (no format {FORMAT!r} "
                         "with task 'parser', and no parser checkpoint)")


class BiLSTM(nn.Module):
    """A bidirectional, multi-layer :class:`structrnn.LSTM` over padded sequences of different
    lengths, without packing.

    Each layer runs two unidirectional LSTMs on the padded batch: one over the sequences as they
    are (padding comes after every real element, so it never reaches one) and one over every
    sequence reversed within its own length (``[w_n .. w_1, pad ..]``, the same argument), whose
    outputs are put back in order. On the CPU this is about twice as fast as a packed
    bidirectional LSTM, whose per-step slicing of the state makes the backward pass slow.

    Args:
        input_size, hidden_size: as ``torch.nn.LSTM``.
        num_layers: layers; each reads both directions of the layer below.
        dropout: on the input of every layer but the first (training only).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forwards = nn.ModuleList(LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.backwards = nn.ModuleList(LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for lstm in (*self.forwards, *self.backwards):
            lstm.reset_parameters()

    def extra_repr(self) -> str:
        first = self.forwards[0]
        return (f"{first.input_size}, {first.hidden_size}, num_layers={len(self.forwards)}, "
                f"bidirectional=True")

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``x`` (B, T, input_size), ``lengths`` (B,) -> (B, T, 2 hidden_size): forward and
        backward outputs at every real position (padding positions hold garbage)."""
        B, T, _ = x.shape
        t = torch.arange(T, device=x.device)[None, :]
        lengths = lengths.to(x.device)[:, None]
        reverse = torch.where(t < lengths, lengths - 1 - t, t)[:, :, None]  # an involution

        def flip(y: Tensor) -> Tensor:
            return y.gather(1, reverse.expand(-1, -1, y.size(2)))

        for layer, (ahead, back) in enumerate(zip(self.forwards, self.backwards, strict=True)):
            if layer:
                x = self.dropout(x)
            x = torch.cat([ahead(x)[0], flip(back(flip(x))[0])], -1)
        return x


def _span_index(lengths: Tensor, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(b, i, j) of every span ``0 <= i < j <= lengths[b]`` of the batch, each (S,) long."""
    i, j = torch.triu_indices(n + 1, n + 1, offset=1)
    b, p = (j[None, :] <= lengths[:, None]).nonzero(as_tuple=True)  # on the CPU: no sync
    return b.to(device), i[p].to(device), j[p].to(device)


def hinge_loss(scores: Tensor, lengths: Tensor, gold: Tensor) -> Tensor:
    """The structured hinge loss with Hamming cost of each sentence.

    ``max_T [s(T) + Δ(T, T*)] - s(T*)``: CKY on the scores plus 1 on every span that is not
    gold (loss-augmented decoding, no autograd), then the difference of the two trees' scores
    (differentiable through ``scores``). Zero exactly when the gold tree beats every other tree
    by at least its number of wrong spans.

    Args:
        scores: (B, N + 1, N + 1) span scores (:meth:`Parser.forward`).
        lengths: (B,) words per sentence.
        gold: (G, 3) long rows ``(b, i, j)``, every span of every gold (binary) tree.

    Returns:
        (B,) the loss of each sentence (>= 0 up to rounding).
    """
    B = scores.size(0)
    gb, gi, gj = gold.to(scores.device).unbind(1)
    cost = torch.ones_like(scores).index_put((gb, gi, gj), scores.new_zeros(()))
    augmented = scores + cost
    best = cky(augmented, lengths)
    pb, pi, pj = best.spans.to(scores.device).unbind(1)
    predicted = scores.new_zeros(B).index_add(0, pb, augmented[pb, pi, pj])
    reference = scores.new_zeros(B).index_add(0, gb, scores[gb, gi, gj])
    return predicted - reference
