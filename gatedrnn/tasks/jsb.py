"""Polyphonic music: JSB Chorales as piano rolls (Boulanger-Lewandowski et al. 2012).

The file is JSON: {"train": [...], "valid": [...], "test": [...]}, each a list of sequences,
each sequence a list of steps, each step the list of sounding MIDI pitches 21-108. A step
becomes an 88-dim binary vector; the model reads the rolls up to t and predicts the notes at
t+1 through 88 independent Bernoulli outputs. The score is the frame-level negative
log-likelihood per time step: the sum of the 88 binary cross-entropies, averaged over steps.

Dimension letters: T steps, B batch, K = 88 keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from .charlm import DataError
from .common import Readout, device_of, on_device, recurrent_layers

LOWEST, KEYS = 21, 88
SPLITS = ("train", "valid", "test")


def piano_roll(sequence) -> torch.Tensor:
    roll = torch.zeros(len(sequence), KEYS)
    for t, pitches in enumerate(sequence):
        for pitch in pitches:
            if not LOWEST <= pitch < LOWEST + KEYS:
                raise DataError(f"data: pitch {pitch} at step {t} is outside the piano's "
                                f"{LOWEST}-{LOWEST + KEYS - 1}")
            roll[t, pitch - LOWEST] = 1.0
    return roll


def load_jsb(path) -> dict[str, list[torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data: {path} does not exist; pass --data with the JSB Chorales JSON "
                        "(a dict of train/valid/test lists of sequences of pitch lists)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"data: {path} is not a JSON file ({error})") from None
    if not isinstance(raw, dict) or not all(split in raw for split in SPLITS):
        raise DataError(f"data: {path} must hold a dict with the keys {list(SPLITS)}")
    splits = {split: [piano_roll(s) for s in raw[split] if len(s) >= 2] for split in SPLITS}
    for split, rolls in splits.items():
        if not rolls:
            raise DataError(f"data: the {split!r} split of {path} has no sequence of 2+ steps")
    return splits


def pad(rolls: list[torch.Tensor]):
    """Inputs (T, B, K), targets (T, B, K) one step ahead, and the lengths (B,)."""
    lengths = torch.tensor([len(r) - 1 for r in rolls])
    T = int(lengths.max())
    x, y = torch.zeros(T, len(rolls), KEYS), torch.zeros(T, len(rolls), KEYS)
    for b, r in enumerate(rolls):
        x[: len(r) - 1, b], y[: len(r) - 1, b] = r[:-1], r[1:]
    return x, y, lengths


def nll_sum(model, x, y, lengths) -> torch.Tensor:
    """The summed negative log-likelihood of all valid steps."""
    logits = model(x, lengths=lengths)
    steps = torch.arange(x.shape[0], device=x.device)
    mask = (steps[:, None] < lengths.to(x.device)[None, :]).unsqueeze(-1)
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * mask).sum()


class JSBTask:
    name = "jsb"
    unit = "steps"

    def __init__(self, splits: dict[str, list[torch.Tensor]]):
        self.splits = splits

    @classmethod
    def from_file(cls, path):
        return cls(load_jsb(path))

    @staticmethod
    def model(metadata, variant, hidden_size, num_layers, dropout, forget_bias=1.0, **_):
        """The untrained model of a run, from its settings alone."""
        return Readout(recurrent_layers(variant, KEYS, hidden_size, num_layers, dropout,
                                        forget_bias=forget_bias), KEYS, per_step=True)

    def build(self, **config):
        return self.model(self.metadata(), **config)

    def batch(self, generator, batch_size, shard=(0, 1)):
        train = self.splits["train"]
        picks = torch.randint(0, len(train), (batch_size,), generator=generator)
        rank, world = shard
        return pad([train[i] for i in picks.chunk(world)[rank].tolist()])

    @staticmethod
    def tokens(batch) -> int:
        return int(batch[2].sum())

    @staticmethod
    def loss(model, batch):
        x, y, lengths = batch
        return nll_sum(model, x, y, lengths) / lengths.sum()

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        result = {}
        for split in ("valid", "test"):
            rolls, total, steps = self.splits[split], 0.0, 0
            for i in range(0, len(rolls), 64):
                x, y, lengths = on_device(pad(rolls[i: i + 64]), device_of(model))
                total += nll_sum(model, x, y, lengths).item()
                steps += int(lengths.sum())
            result[f"{split}_nll"] = total / steps
        return result

    def metadata(self) -> dict:
        return {}
