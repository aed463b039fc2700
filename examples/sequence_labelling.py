"""Word segmentation as sequence labelling: a bidirectional stacked LSTM tags every character
B(egin), M(iddle), E(nd) or S(ingle) of a word.

The corpus is generated here: a vocabulary of made-up words (syllables of a small alphabet),
drawn with Zipf frequencies into sentences written without spaces -- the situation of Chinese
or Thai text. Sentences of uneven length go through ``sr.LSTM`` as a ``PackedSequence``.
Reports per-character tag accuracy and word-level F1 on held-out sentences.

With ``--crf`` it trains two taggers on the same data from the same start: the softmax tagger
above (each character's tag chosen on its own) and a BiLSTM-CRF (Huang et al. 2015; Lample et
al. 2016), whose ``structrnn.CRF`` layer scores tag *pairs* too (an ``M`` never follows an
``E``) and decodes the best sequence with Viterbi, and reports both.

    python examples/sequence_labelling.py              # well under a minute on a CPU
    python examples/sequence_labelling.py --crf        # both taggers, about twice as long
    python examples/sequence_labelling.py --epochs 1 --sentences 200
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

from structrnn.crf import CRF  # noqa: E402
from structrnn.sequence import LSTM  # noqa: E402
from structrnn.training.checkpoint import seed_everything  # noqa: E402

TAGS = "BMES"
ONSETS = ["", "k", "t", "p", "s", "m", "n", "l", "r", "h", "g", "d", "b"]
VOWELS = ["a", "e", "i", "o", "u"]


def make_corpus(n_sentences: int, vocab_size: int, rng: random.Random):
    """Sentences as lists of words; the words are syllable strings of 1-3 syllables."""
    vocab: list[str] = []
    while len(vocab) < vocab_size:
        word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS)
                       for _ in range(rng.choice([1, 1, 2, 2, 2, 3])))
        if word not in vocab:
            vocab.append(word)
    weights = [1 / (rank + 1) for rank in range(vocab_size)]  # Zipf
    return [rng.choices(vocab, weights, k=rng.randint(3, 12)) for _ in range(n_sentences)]


def bmes(words: list[str]) -> str:
    return "".join("S" if len(w) == 1 else "B" + "M" * (len(w) - 2) + "E" for w in words)


# tag pairs no BMES string contains (B and M go on inside a word; E and S end one)
ILLEGAL = {a + b for a in "BM" for b in "BS"} | {a + b for a in "ES" for b in "ME"}


def illegal_pairs(tags: str) -> int:
    """How many places of a tag string no segmentation gives: a forbidden neighbour pair, a
    first tag M or E, a last tag B or M."""
    framed = "S" + tags + "S"  # a word boundary before the first and after the last tag
    return sum(framed[i:i + 2] in ILLEGAL for i in range(len(framed) - 1))


def spans(tags: str) -> set[tuple[int, int]]:
    """Word spans (start, end) from a tag string; an ill-formed tag sequence still yields spans
    (a word ends at E or S, or where the next tag begins a new word)."""
    out, start = set(), 0
    for i, t in enumerate(tags):
        if t in "BS" and i > start:
            out.add((start, i))
            start = i
        if t in "ES":
            out.add((start, i + 1))
            start = i + 1
    if start < len(tags):
        out.add((start, len(tags)))
    return out


class Tagger(nn.Module):
    """Characters -> BiLSTM -> per-character tag scores; with ``crf`` a CRF layer on top."""

    def __init__(self, n_chars: int, embed: int, hidden: int, layers: int,
                 crf: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, embed)
        self.lstm = LSTM(embed, hidden, num_layers=layers, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(TAGS))
        self.crf = CRF(len(TAGS)) if crf else None

    def forward(self, sentences: list[torch.Tensor]) -> torch.Tensor:
        """A list of (length,) char-id tensors -> emissions (max_length, batch, 4), padded."""
        packed = pack_sequence([self.embed(s) for s in sentences], enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0])
        return self.out(out)

    def loss(self, sentences: list[torch.Tensor], tags: list[torch.Tensor]) -> torch.Tensor:
        """Mean per-character cross-entropy, or the CRF's negative log-likelihood per
        character (the same scale, so one learning rate suits both)."""
        emissions = self(sentences)
        gold = nn.utils.rnn.pad_sequence(tags, padding_value=-100)  # (T, B)
        if self.crf is None:
            return nn.functional.cross_entropy(emissions.reshape(-1, len(TAGS)),
                                               gold.reshape(-1), ignore_index=-100)
        return -self.crf(emissions, gold, gold != -100, reduction="token_mean")

    @torch.no_grad()
    def predict(self, sentences: list[torch.Tensor]) -> list[list[int]]:
        """The tags of every sentence: each character's best tag, or the CRF's best sequence."""
        emissions = self(sentences)
        if self.crf is not None:
            lengths = torch.tensor([len(s) for s in sentences])
            mask = torch.arange(emissions.size(0)).unsqueeze(1) < lengths
            return self.crf.decode(emissions, mask)
        best = emissions.argmax(-1)
        return [best[: len(s), b].tolist() for b, s in enumerate(sentences)]


def encode(sentences, chars):
    index = {c: i for i, c in enumerate(chars)}
    xs = [torch.tensor([index[c] for c in "".join(s)]) for s in sentences]
    ys = [torch.tensor([TAGS.index(t) for t in bmes(s)]) for s in sentences]
    return xs, ys


def evaluate(model: Tagger, xs, ys) -> dict:
    model.eval()
    predicted = model.predict(xs)
    model.train()
    correct = total = tp = n_pred = n_gold = illegal = 0
    for p, y in zip(predicted, ys, strict=True):
        gold = y.tolist()
        correct += sum(a == b for a, b in zip(p, gold, strict=True))
        total += len(gold)
        p_tags, g_tags = "".join(TAGS[i] for i in p), "".join(TAGS[i] for i in gold)
        ps, gs = spans(p_tags), spans(g_tags)
        tp, n_pred, n_gold = tp + len(ps & gs), n_pred + len(ps), n_gold + len(gs)
        illegal += illegal_pairs(p_tags)
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"tag_accuracy": correct / total, "word_precision": precision,
            "word_recall": recall, "word_f1": f1, "illegal_pairs": illegal}


def train(model: Tagger, train_data, test_data, args, name: str) -> dict:
    """Adam over shuffled batches (the same order for every model: its own seeded stream)."""
    train_x, train_y = train_data
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = random.Random(args.seed)
    order = list(range(len(train_x)))
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(order)
        for i in range(0, len(order), args.batch_size):
            batch = order[i:i + args.batch_size]
            loss = model.loss([train_x[j] for j in batch], [train_y[j] for j in batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        m = evaluate(model, *test_data)
        print(f"  {name} epoch {epoch}  loss {loss.item():.4f}  tag accuracy "
              f"{m['tag_accuracy']:.2%}  word F1 {m['word_f1']:.2%}")
    metrics = evaluate(model, *test_data)
    metrics["seconds"] = time.perf_counter() - start
    print(f"{name} test: tag accuracy {metrics['tag_accuracy']:.2%}, word F1 "
          f"{metrics['word_f1']:.2%} (P {metrics['word_precision']:.2%}, "
          f"R {metrics['word_recall']:.2%}); {metrics['illegal_pairs']} impossible tag pairs")
    return metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--vocab", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--crf", action="store_true",
                        help="also train a BiLSTM-CRF on the same data and report both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small models run fastest on one)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    corpus = make_corpus(args.sentences, args.vocab, rng)
    chars = sorted({c for s in corpus for w in s for c in w})
    cut = int(0.8 * len(corpus))
    train_data = encode(corpus[:cut], chars)
    test_data = encode(corpus[cut:], chars)
    print(f"BMES segmentation: {cut} training / {len(corpus) - cut} test sentences, e.g. "
          f"{''.join(corpus[0])!r} = {' '.join(corpus[0])!r}")
    results = {}
    for name, crf in (("softmax", False), ("crf", True))[: 1 + args.crf]:
        seed_everything(args.seed)  # the same starting weights for the shared parts
        model = Tagger(len(chars), args.embed, args.hidden, args.layers, crf=crf)
        results[name] = train(model, train_data, test_data, args, name)
    if not args.crf:
        return results["softmax"]
    soft, crf = results["softmax"], results["crf"]
    print(f"BiLSTM-CRF vs BiLSTM-softmax: tag accuracy {crf['tag_accuracy']:.2%} vs "
          f"{soft['tag_accuracy']:.2%}, word F1 {crf['word_f1']:.2%} vs {soft['word_f1']:.2%}")
    return results


if __name__ == "__main__":
    main()
