"""Tiny-shakespeare char-LM: gatedrnn.LSTM against torch.nn.LSTM, same recipe, same budget.

Both start from the same weights (gatedrnn.LSTM.from_torch of the torch.nn.LSTM), see the same
batches in the same order and train with the same optimiser for the same number of steps; the
only difference is the recurrent layer's implementation. Reported: validation loss (nats per
character; target: within 0.02 of torch.nn) and wall time.

On a GPU (`--device cuda`, the default where torch sees one) gatedrnn runs its triton backend and
torch.nn runs cuDNN, both in IEEE float32: TF32 is off for both, as gatedrnn's kernels only use
it when the user allows it and cuDNN's RNNs would use it by default. Each model first trains one
step on a throwaway copy, so that neither side's one-time costs (Triton's compiles, cuDNN's
plans, the CPU kernel's load) are timed.

    python benchmarks/tasks/shakespeare.py [--data FILE | shakespeare | stdlib] [--quick]
        [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import gatedrnn
from gatedrnn import kernels
from gatedrnn.tasks.charlm import CharLMTask, load_text
from gatedrnn.tasks.common import device_of, on_device
from gatedrnn.train import resolve_device

from report import table, write



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
    device = device_of(model)
    _synchronize(device)
    started = time.time()
    for _ in range(steps):
        loss = task.loss(model, on_device(task.batch(generator, batch), device))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    _synchronize(device)
    return time.time() - started, loss.item()


def warm_up(model, task, batch, lr, seed) -> None:
    """One step on a copy, thrown away: the timed runs start from the same weights and batches."""
    train(copy.deepcopy(model), task, 1, batch, lr, seed)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shakespeare",
                        help="a text file, or stdlib / shakespeare as `gatedrnn train` takes them")
    parser.add_argument("--device", default="auto", help="auto (a GPU if torch sees one), cpu, cuda")
    parser.add_argument("--backend", default=None,
                        help="gatedrnn's backend (default: the device's; triton on a CPU under "
                             "TRITON_INTERPRET=1 is a dry run of the GPU path)")
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
    device = resolve_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    task = CharLMTask(load_text(args.data), seq_len=args.seq_len, valid_fraction=0.05)
    torch.manual_seed(args.seed)
    embedding = nn.Embedding(len(task.vocab), 64)
    head = nn.Linear(args.hidden, len(task.vocab))
    reference = nn.LSTM(64, args.hidden, num_layers=args.layers)
    contenders = {"torch.nn.LSTM": reference,
                  "gatedrnn.LSTM": gatedrnn.LSTM.from_torch(copy.deepcopy(reference))}
    contenders["gatedrnn.LSTM"].backend = kernels.check(args.backend)
    rows = []
    for name, rnn in contenders.items():
        model = Model(copy.deepcopy(embedding), rnn, copy.deepcopy(head)).to(device)
        warm_up(model, task, args.batch, args.lr, args.seed)
        seconds, last = train(model, task, steps, args.batch, args.lr, args.seed)
        valid = task.evaluate(model.eval())["valid_loss"]
        rows.append({"model": name, "steps": steps, "valid_loss": valid, "last_train_loss": last,
                     "seconds": seconds})
        print(f"  {rows[-1]}", flush=True)
    gap = rows[1]["valid_loss"] - rows[0]["valid_loss"]
    rows[1]["gap_to_torch"] = gap
    rows[1]["time_ratio"] = rows[1]["seconds"] / rows[0]["seconds"]
    on = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    name = "shakespeare" if device.type == "cpu" else "shakespeare-cuda"
    path = write(name, rows, vars(args) | {"steps": steps, "device": on})
    print("\ntiny-shakespeare char-LM" + (" (QUICK)" if args.quick else "") + f" on {on}; "
          f"raw: {path}\n")
    print(table(rows, ["model", "steps", "valid_loss", "gap_to_torch", "seconds", "time_ratio"]))
    print(f"\nwithin 0.02 nats of torch.nn.LSTM: {abs(gap) <= 0.02}")


if __name__ == "__main__":
    main()
