"""A first look: the lecture's GRU learns the adding problem (Hochreiter & Schmidhuber 1997).

Each input step is (a random number, a marker); exactly two steps are marked and the target is
the sum of their numbers. Predicting the mean (1.0) scores an MSE of about 0.167; a model that
remembers the two marked numbers across the sequence drives it towards 0.

    python examples/adding_demo.py [--steps 400] [--length 30]
"""

import argparse
import torch

import gatedrnn
from gatedrnn.progress import Progress


def batch(size: int, length: int, generator: torch.Generator):
    values = torch.rand(length, size, generator=generator)
    marks = torch.zeros(length, size)
    for b in range(size):
        i, j = torch.randperm(length, generator=generator)[:2]
        marks[i, b] = marks[j, b] = 1
    return torch.stack([values, marks], -1), (values * marks).sum(0, keepdim=True).T


class Adder(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.gru = gatedrnn.GRU(2, hidden)               # variant="gru": the lecture's full GRU
        self.readout = torch.nn.Linear(hidden, 1)

    def forward(self, x):
        _, c_n = self.gru(x)
        return self.readout(c_n[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    data = torch.Generator().manual_seed(args.seed)
    model = Adder(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_test, y_test = batch(1000, args.length, data)
    print(f"adding problem, T={args.length}: gatedrnn.GRU(variant='gru', hidden={args.hidden}); "
          f"predicting the mean scores MSE {((y_test - 1.0) ** 2).mean():.3f}")
    progress, running = Progress(args.steps), None
    for step in range(1, args.steps + 1):
        x, y = batch(64, args.length, data)
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        progress.update(step, loss=f"{running:.4f}")
    with torch.no_grad():
        test = torch.nn.functional.mse_loss(model(x_test), y_test).item()
    progress.close()
    print(f"test MSE {test:.4f} on 1000 new sequences (mean predictor: "
          f"{((y_test - 1.0) ** 2).mean():.3f})")


if __name__ == "__main__":
    main()
