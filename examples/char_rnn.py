"""A character-level LSTM (after Karpathy's char-rnn) trained on text that ships with Python:
the source code of a few standard-library modules. It then writes some "Python" of its own.

    python examples/char_rnn.py                       # about a minute on a CPU
    python examples/char_rnn.py --steps 20 --hidden 32 --sample-chars 50   # a smoke test
    python examples/char_rnn.py --resume              # continue from runs/char_rnn/checkpoint.pt

Checkpoints are written atomically every ``--checkpoint-every`` steps and at the end, with the
optimiser and random-generator states, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a fresh clone

from structrnn.sequence import LSTM  # noqa: E402
from structrnn.training.checkpoint import (  # noqa: E402
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)


def load_text(modules: list[str], max_chars: int) -> str:
    """The source of the given standard-library modules, concatenated."""
    text = "\n".join(inspect.getsource(importlib.import_module(m)) for m in modules)
    return text[:max_chars] if max_chars > 0 else text


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = LSTM(hidden, hidden, num_layers=layers, batch_first=True,
                         dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, state=None):
        """ids (B, T) -> logits (B, T, vocab), state."""
        h, state = self.lstm(self.embed(ids), state)
        return self.out(h), state


def batches(data: torch.Tensor, batch: int, length: int, gen: torch.Generator):
    starts = torch.randint(len(data) - length - 1, (batch,), generator=gen)
    idx = starts.unsqueeze(1) + torch.arange(length + 1)
    chunk = data[idx]
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def evaluate(model: CharLSTM, data: torch.Tensor, length: int) -> float:
    """Mean cross-entropy (nats per character) over consecutive windows of ``data``."""
    model.eval()
    n = (len(data) - 1) // length
    x = data[: n * length].view(n, length)
    y = data[1: n * length + 1].view(n, length)
    logits, _ = model(x)
    model.train()
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item()


@torch.no_grad()
def sample(model: CharLSTM, chars: str, prime: str, n: int, temperature: float,
           gen: torch.Generator) -> str:
    model.eval()
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([[index[c] for c in prime if c in index] or [0]])
    logits, state = model(ids)
    out = []
    for _ in range(n):
        probs = torch.softmax(logits[0, -1] / temperature, -1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        out.append(chars[nxt.item()])
        logits, state = model(nxt.view(1, 1), state)
    model.train()
    return prime + "".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default="textwrap,string,fnmatch,shlex,glob",
                        help="comma-separated standard-library modules whose source is the text")
    parser.add_argument("--max-chars", type=int, default=0, help="truncate the text (0: all)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (small models run fastest on one)")
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--out-dir", default="runs/char_rnn")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    text = load_text(args.modules.split(","), args.max_chars)
    chars = "".join(sorted(set(text)))
    data = torch.tensor([chars.index(c) for c in text])
    cut = int(0.9 * len(data))
    train, val = data[:cut], data[cut:]
    model = CharLSTM(len(chars), args.hidden, args.layers, args.dropout)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    ckpt_path = Path(args.out_dir) / "checkpoint.pt"

    start = 0
    if args.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["chars"] != chars:
            raise ValueError(f"--resume: {ckpt_path} was trained on another text "
                             "(its character set differs); use the same --modules/--max-chars")
        model.load_state_dict(ckpt["model"])
        optimiser.load_state_dict(ckpt["optimiser"])
        set_rng_state(ckpt["rng"])
        gen.set_state(ckpt["batch_rng"])
        start = ckpt["step"]
        print(f"resumed from {ckpt_path} at step {start}")

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_path, model=model.state_dict(), optimiser=optimiser.state_dict(),
                        rng=rng_state(), batch_rng=gen.get_state(), step=step, chars=chars)

    print(f"char-rnn: {len(text)} characters ({len(chars)} distinct) from {args.modules}; "
          f"LSTM {args.layers}x{args.hidden}")
    loss = torch.tensor(float("nan"))
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=args.quiet,
               desc="training", dynamic_ncols=True)
    for step in bar:
        x, y = batches(train, args.batch_size, args.seq_len, gen)
        logits, _ = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % args.checkpoint_every == 0:
            checkpoint(step + 1)
    checkpoint(args.steps)

    val_loss = evaluate(model, val, args.seq_len)
    text_out = sample(model, chars, "def ", args.sample_chars, args.temperature, gen)
    print(f"validation: {val_loss:.3f} nats/char = {val_loss / math.log(2):.3f} bits/char "
          f"(uniform guessing: {math.log2(len(chars)):.2f} bits/char)")
    print("sample:\n" + text_out)
    return {"start_step": start, "steps": args.steps, "train_loss": loss.item(),
            "val_loss": val_loss, "val_bits_per_char": val_loss / math.log(2),
            "uniform_bits_per_char": math.log2(len(chars)), "sample": text_out,
            "checkpoint": str(ckpt_path)}


if __name__ == "__main__":
    main()
