"""Sequence to sequence (Sutskever et al. 2014) without attention: an ``sr.GRU`` encoder reads a
string of digits, an ``sr.LSTM`` decoder writes it reversed (``--task sort``: sorted).

The encoder's last state (padded batches are packed, so it is each string's own last state)
starts the decoder; training uses teacher forcing, testing greedy decoding. Reports the
exact-match accuracy on held-out strings.

    python examples/seq2seq.py                   # about a minute on a CPU
    python examples/seq2seq.py --task sort --steps 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

from structrnn.sequence import GRU, LSTM  # noqa: E402
from structrnn.training.checkpoint import seed_everything  # noqa: E402

PAD, BOS, EOS = 10, 11, 12  # tokens 0-9 are the digits
VOCAB = 13


def make_batch(n: int, min_len: int, max_len: int, task: str, gen: torch.Generator):
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=gen)
    src = [torch.randint(0, 10, (int(k),), generator=gen) for k in lengths]
    tgt = [s.flip(0) if task == "reverse" else s.sort().values for s in src]
    return src, tgt


class Seq2Seq(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, hidden)
        self.encoder = GRU(hidden, hidden, batch_first=True)
        self.decoder = LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, VOCAB)

    def encode(self, src: list[torch.Tensor]):
        lengths = torch.tensor([len(s) for s in src])
        padded = pad_sequence(src, batch_first=True, padding_value=PAD)
        packed = pack_padded_sequence(self.embed(padded), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, h = self.encoder(packed)  # (1, B, H): each string's own last state
        return h, torch.zeros_like(h)

    def forward(self, src, tgt):
        """Teacher forcing: logits (B, T + 1, VOCAB) for tgt followed by EOS."""
        state = self.encode(src)
        dec_in = pad_sequence([torch.cat([torch.tensor([BOS]), t]) for t in tgt],
                              batch_first=True, padding_value=PAD)
        out, _ = self.decoder(self.embed(dec_in), state)
        return self.out(out)

    @torch.no_grad()
    def greedy(self, src, max_len: int) -> list[list[int]]:
        state = self.encode(src)
        token = torch.full((len(src), 1), BOS)
        steps = []
        for _ in range(max_len + 1):
            out, state = self.decoder(self.embed(token), state)
            token = self.out(out).argmax(-1)
            steps.append(token)
        seqs = torch.cat(steps, 1).tolist()
        return [s[: s.index(EOS)] if EOS in s else s for s in seqs]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["reverse", "sort"], default="reverse")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--min-len", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small models run fastest on one)")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    test_src, test_tgt = make_batch(args.test_size, args.min_len, args.max_len, args.task,
                                    torch.Generator().manual_seed(args.seed + 10_000))
    test_keys = {tuple(s.tolist()) for s in test_src}
    model = Seq2Seq(args.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)

    def exact_match() -> float:
        model.eval()
        guesses = model.greedy(test_src, args.max_len)
        model.train()
        return sum(g == t.tolist() for g, t in zip(guesses, test_tgt)) / len(test_tgt)

    print(f"seq2seq, {args.task} digit strings of length {args.min_len}-{args.max_len}: "
          f"sr.GRU encoder, sr.LSTM decoder, hidden {args.hidden}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        src, tgt = make_batch(args.batch_size, args.min_len, args.max_len, args.task, gen)
        # hold the test strings out of training
        keep = [i for i, s in enumerate(src) if tuple(s.tolist()) not in test_keys]
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
        logits = model(src, tgt)
        gold = pad_sequence([torch.cat([t, torch.tensor([EOS])]) for t in tgt], batch_first=True,
                            padding_value=-100)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), gold.reshape(-1),
                                           ignore_index=-100)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps:
            print(f"  step {step:5d}  loss {loss.item():.4f}  "
                  f"held-out exact match {exact_match():.1%}")
    acc = exact_match()
    example = test_src[0].tolist()
    print(f"  {''.join(map(str, example))} -> "
          f"{''.join(map(str, model.greedy(test_src[:1], args.max_len)[0]))}")
    seconds = time.perf_counter() - start
    print(f"held-out exact match {acc:.1%} on {len(test_src)} strings in {seconds:.0f} s")
    return {"exact_match": acc, "final_loss": loss.item(), "steps": args.steps,
            "seconds": seconds}


if __name__ == "__main__":
    main()
