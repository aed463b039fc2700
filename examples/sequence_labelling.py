"""Word segmentation as sequence labelling: a bidirectional stacked LSTM tags every character
B(egin), M(iddle), E(nd) or S(ingle) of a word.

The corpus is generated here: a vocabulary of made-up words (syllables of a small alphabet),
drawn with Zipf frequencies into sentences written without spaces -- the situation of Chinese
or Thai text. Sentences of uneven length go through ``sr.LSTM`` as a ``PackedSequence``.
Reports per-character tag accuracy and word-level F1 on held-out sentences.

    python examples/sequence_labelling.py              # well under a minute on a CPU
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
    def __init__(self, n_chars: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, embed)
        self.lstm = LSTM(embed, hidden, num_layers=layers, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(TAGS))

    def forward(self, sentences: list[torch.Tensor]) -> torch.Tensor:
        """A list of (length,) char-id tensors -> logits (max_length, batch, 4), padded."""
        packed = pack_sequence([self.embed(s) for s in sentences], enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0])
        return self.out(out)


def encode(sentences, chars):
    index = {c: i for i, c in enumerate(chars)}
    xs = [torch.tensor([index[c] for c in "".join(s)]) for s in sentences]
    ys = [torch.tensor([TAGS.index(t) for t in bmes(s)]) for s in sentences]
    return xs, ys


@torch.no_grad()
def evaluate(model: Tagger, xs, ys) -> dict:
    model.eval()
    pred = model(xs).argmax(-1)  # (T, B)
    model.train()
    correct = total = tp = n_pred = n_gold = 0
    for b, (x, y) in enumerate(zip(xs, ys)):
        p = pred[: len(x), b]
        correct += (p == y).sum().item()
        total += len(y)
        ps = spans("".join(TAGS[i] for i in p.tolist()))
        gs = spans("".join(TAGS[i] for i in y.tolist()))
        tp, n_pred, n_gold = tp + len(ps & gs), n_pred + len(ps), n_gold + len(gs)
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"tag_accuracy": correct / total, "word_precision": precision,
            "word_recall": recall, "word_f1": f1}


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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small models run fastest on one)")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    corpus = make_corpus(args.sentences, args.vocab, rng)
    chars = sorted({c for s in corpus for w in s for c in w})
    cut = int(0.8 * len(corpus))
    train_x, train_y = encode(corpus[:cut], chars)
    test_x, test_y = encode(corpus[cut:], chars)
    model = Tagger(len(chars), args.embed, args.hidden, args.layers)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"BMES segmentation: {cut} training / {len(corpus) - cut} test sentences, e.g. "
          f"{''.join(corpus[0])!r} = {' '.join(corpus[0])!r}")
    start = time.perf_counter()
    order = list(range(cut))
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(order)
        for i in range(0, cut, args.batch_size):
            batch = order[i:i + args.batch_size]
            logits = model([train_x[j] for j in batch])
            gold = nn.utils.rnn.pad_sequence([train_y[j] for j in batch], padding_value=-100)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(TAGS)), gold.reshape(-1),
                                               ignore_index=-100)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        m = evaluate(model, test_x, test_y)
        print(f"  epoch {epoch}  loss {loss.item():.4f}  tag accuracy {m['tag_accuracy']:.2%}  "
              f"word F1 {m['word_f1']:.2%}")
    metrics = evaluate(model, test_x, test_y)
    metrics["seconds"] = time.perf_counter() - start
    print(f"test: tag accuracy {metrics['tag_accuracy']:.2%}, word F1 {metrics['word_f1']:.2%} "
          f"(P {metrics['word_precision']:.2%}, R {metrics['word_recall']:.2%})")
    return metrics


if __name__ == "__main__":
    main()
