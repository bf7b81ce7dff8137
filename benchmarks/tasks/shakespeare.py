"""Tiny-shakespeare char-LM: gatedrnn.LSTM against torch.nn.LSTM, same recipe, same budget.

Both start from the same weights (gatedrnn.LSTM.from_torch of the torch.nn.LSTM), see the same
batches in the same order and train with the same optimiser for the same number of steps; the
only difference is the recurrent layer's implementation. Reported: validation loss (nats per
character; target: within 0.02 of torch.nn) and wall time.

    python benchmarks/tasks/shakespeare.py [--data ../shared/data/tinyshakespeare.txt] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch import nn

import gatedrnn
from gatedrnn.tasks.charlm import CharLMTask, read_text_file

from report import table, write

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"


class Model(nn.Module):
    def __init__(self, embedding, rnn, head):
        super().__init__()
        self.embedding, self.rnn, self.head = embedding, rnn, head

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(out), state


def train(model, task, steps, batch, lr, seed):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    started = time.time()
    for _ in range(steps):
        loss = task.loss(model, task.batch(generator, batch))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    seconds = time.time() - started
    model.eval()
    return task.evaluate(model)["valid_loss"], seconds, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 steps")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    steps = 200 if args.quick else args.steps
    task = CharLMTask(read_text_file(args.data), seq_len=args.seq_len, valid_fraction=0.05)
    torch.manual_seed(args.seed)
    embedding = nn.Embedding(len(task.vocab), 64)
    head = nn.Linear(args.hidden, len(task.vocab))
    reference = nn.LSTM(64, args.hidden, num_layers=args.layers)
    contenders = {"torch.nn.LSTM": reference,
                  "gatedrnn.LSTM": gatedrnn.LSTM.from_torch(copy.deepcopy(reference))}
    rows = []
    for name, rnn in contenders.items():
        model = Model(copy.deepcopy(embedding), rnn, copy.deepcopy(head))
        valid, seconds, last = train(model, task, steps, args.batch, args.lr, args.seed)
        rows.append({"model": name, "steps": steps, "valid_loss": valid, "last_train_loss": last,
                     "seconds": seconds})
        print(f"  {rows[-1]}", flush=True)
    gap = rows[1]["valid_loss"] - rows[0]["valid_loss"]
    rows[1]["gap_to_torch"] = gap
    rows[1]["time_ratio"] = rows[1]["seconds"] / rows[0]["seconds"]
    path = write("shakespeare", rows, vars(args) | {"steps": steps})
    print("\ntiny-shakespeare char-LM" + (" (QUICK)" if args.quick else "") + f"; raw: {path}\n")
    print(table(rows, ["model", "steps", "valid_loss", "gap_to_torch", "seconds", "time_ratio"]))
    print(f"\nwithin 0.02 nats of torch.nn.LSTM: {abs(gap) <= 0.02}")


if __name__ == "__main__":
    main()
