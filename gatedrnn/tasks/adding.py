"""The adding problem (Hochreiter & Schmidhuber 1997, section 5.4), generated on the fly.

Each step is a pair (value, marker): values uniform in [−1, 1]; exactly two steps are marked
with 1.0, the first among the first 10 steps, the second elsewhere in the first half. The target,
read at the end of the sequence, is 0.5 + (X1 + X2) / 4, in [0, 1]. A sequence counts as wrong
when the absolute error is 0.04 or more; the paper calls the problem solved when at most 1 of
2560 test sequences is wrong. Simplification: every sequence has exactly T steps (the paper
draws lengths between T and 1.1 T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import Readout, device_of, on_device, recurrent_layers

TEST_SIZE = 2560
TOLERANCE = 0.04


def make_batch(T: int, batch_size: int, generator: torch.Generator):
    values = torch.rand(T, batch_size, generator=generator) * 2 - 1
    first = torch.randint(0, min(10, T // 2), (batch_size,), generator=generator)
    # the second marker: uniformly among the other steps of the first half
    second = torch.randint(0, max(T // 2 - 1, 1), (batch_size,), generator=generator)
    second = second + (second >= first).long()
    marks = torch.zeros(T, batch_size)
    batch = torch.arange(batch_size)
    marks[first, batch] = 1.0
    marks[second, batch] = 1.0
    target = 0.5 + (values * marks).sum(0) / 4
    return torch.stack([values, marks], -1), target.unsqueeze(1)


class AddingTask:
    name = "adding"
    unit = "sequences"

    def __init__(self, T: int):
        if T < 4:
            raise ValueError(f"--seq-len: the adding problem needs T >= 4, got {T}")
        self.T = T
        self.test = make_batch(T, TEST_SIZE, torch.Generator().manual_seed(20_250_101))

    @staticmethod
    def model(metadata, variant, hidden_size, num_layers, dropout, bidirectional=False,
              forget_bias=1.0, **_):
        """The untrained model of a run, from its settings alone."""
        return Readout(recurrent_layers(variant, 2, hidden_size, num_layers, dropout,
                                        bidirectional, forget_bias), 1, per_step=False)

    def build(self, **config):
        return self.model(self.metadata(), **config)

    def batch(self, generator, batch_size, shard=(0, 1)):
        x, y = make_batch(self.T, batch_size, generator)
        rank, world = shard
        return x.chunk(world, 1)[rank], y.chunk(world, 0)[rank]

    @staticmethod
    def tokens(batch) -> int:
        return batch[1].shape[0]

    @staticmethod
    def loss(model, batch):
        x, y = batch
        return F.mse_loss(model(x), y)

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        x, y = on_device(self.test, device_of(model))
        # In chunks: all 2560 sequences at once would need T·2560·4H floats of projections.
        error = torch.cat([model(x[:, i: i + 256]) for i in range(0, x.shape[1], 256)]) - y
        error = error.abs()
        wrong = int((error >= TOLERANCE).sum())
        return {"test_mse": float((error ** 2).mean()), "test_wrong": wrong,
                "solved": wrong <= 1}

    def metadata(self) -> dict:
        return {"T": self.T}
