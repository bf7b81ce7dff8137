"""Character-level language modelling (Karpathy's char-rnn; the lecture's "Dinosaurus" exercise).

Data: the embedded default corpus (the Python standard library's own source, a fixed selection
of modules present on every machine with Python), tiny-shakespeare (downloaded once into a user
cache), or any UTF-8 text file. The model: embedding → gatedrnn layers → linear over the
vocabulary; trained on random windows of the text to predict each next character.

Dimension letters: T window length, B batch, V vocabulary size, E embedding size, H hidden.
"""

from __future__ import annotations

import math
import os
import sysconfig
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .common import device_of, recurrent_layers
from .corpus import DataError, Vocabulary, counts, encode_file, encode_text, read_text_file

# A fixed, deterministic selection of standard-library modules: plain, well-commented Python.
STDLIB_MODULES = (
    "textwrap.py", "string.py", "argparse.py", "json/encoder.py", "json/decoder.py", "csv.py",
    "heapq.py", "bisect.py", "functools.py", "collections/__init__.py", "difflib.py",
    "fractions.py", "calendar.py", "dataclasses.py", "pprint.py", "shlex.py", "statistics.py",
    "random.py", "tokenize.py", "inspect.py",
)
SHAKESPEARE_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                   "tinyshakespeare/input.txt")


def stdlib_corpus() -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in STDLIB_MODULES:
        path = root / name
        if path.is_file():
            parts.append(f"# ---- {name}\n" + path.read_text(encoding="utf-8"))
    if not parts:
        raise DataError(f"data: the standard library's sources are not under {root}; "
                        "pass --data PATH with a text file instead")
    return "\n".join(parts)


def shakespeare_path(cache: Path | None = None) -> Path:
    """tiny-shakespeare in the user's cache, downloaded there once."""
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gatedrnn"
    path = cache / "tinyshakespeare.txt"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        try:
            with urllib.request.urlopen(SHAKESPEARE_URL, timeout=30) as response:
                partial.write_bytes(response.read())
        except OSError as error:
            raise DataError(f"data: could not download tiny-shakespeare ({error}); when "
                            f"offline, pass --data PATH with a local copy") from None
        partial.replace(path)
    return path


def shakespeare_corpus(cache: Path | None = None) -> str:
    return read_text_file(shakespeare_path(cache))


def load_text(data: str) -> str:
    """--data: "stdlib", "shakespeare" or a path, as one str."""
    if data == "stdlib":
        return stdlib_corpus()
    return read_text_file(shakespeare_path() if data == "shakespeare" else data)


def load_ids(data: str, vocab: Vocabulary | None = None) -> tuple[Vocabulary, torch.Tensor]:
    """--data as (vocabulary, compact ids); files are encoded without being held as a str."""
    if data == "stdlib":
        return encode_text(stdlib_corpus(), vocab)
    return encode_file(shakespeare_path() if data == "shakespeare" else data, vocab)


class CharLM(nn.Module):
    """embedding → recurrent layers → linear: logits of the next character at every step."""

    def __init__(self, vocab_size: int, variant: str = "gru", hidden_size: int = 256,
                 num_layers: int = 2, embedding_size: int = 64, dropout: float = 0.0,
                 forget_bias: float = 1.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = recurrent_layers(variant, embedding_size, hidden_size, num_layers, dropout,
                                    forget_bias=forget_bias)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        """ids (T, B) → logits (T, B, V), final state."""
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(out), state


class CharLMTask:
    name = "charlm"

    def __init__(self, text: str | torch.Tensor, vocab: Vocabulary | None = None,
                 seq_len: int = 100, valid_fraction: float = 0.05):
        """text: a str, or the (N,) ids load_ids gives (with their vocab)."""
        if isinstance(text, str):
            vocab, ids = encode_text(text, vocab)
        else:
            ids = text
        self.vocab = vocab
        n_valid = max(seq_len + 1, int(len(ids) * valid_fraction))
        if len(ids) < 2 * (seq_len + 1) + n_valid:
            raise DataError(f"data: {len(ids)} characters are too few for windows of "
                            f"--seq-len {seq_len} plus a validation split; use more text or a "
                            "shorter --seq-len")
        self.train_ids, self.valid_ids = ids[:-n_valid], ids[-n_valid:]
        self.seq_len = seq_len
        # The unigram baseline predicts every character by its (add-one) training frequency.
        frequency = counts(self.train_ids, len(self.vocab)).double() + 1
        self.unigram_log_p = (frequency / frequency.sum()).log()

    @staticmethod
    def model(metadata, variant, hidden_size, num_layers, dropout, embedding_size=64,
              forget_bias=1.0, **_):
        """The untrained model of a run, from its settings and metadata alone."""
        return CharLM(len(metadata["vocabulary"]), variant, hidden_size, num_layers,
                      embedding_size, dropout, forget_bias)

    def build(self, **config):
        return self.model(self.metadata(), **config)

    unit = "chars"

    def batch(self, generator: torch.Generator, batch_size: int, shard=(0, 1)):
        """Random windows: inputs (T, B) and next-character targets (T, B). Every rank draws the
        same global batch and keeps its own slice, so the data order is the world size's."""
        starts = torch.randint(0, len(self.train_ids) - self.seq_len - 1, (batch_size,),
                               generator=generator)
        rank, world = shard
        starts = starts.chunk(world)[rank]
        windows = torch.stack([self.train_ids[s: s + self.seq_len + 1] for s in starts.tolist()], 1)
        windows = windows.long()
        return windows[:-1], windows[1:]

    @staticmethod
    def tokens(batch) -> int:
        return batch[1].numel()

    @staticmethod
    def loss(model, batch):
        inputs, targets = batch
        logits, _ = model(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model, max_chars: int = 200_000) -> dict:
        """Validation loss (nats per character) over consecutive windows, and the unigram
        baseline: the loss of predicting every character by its training frequency."""
        ids = self.valid_ids[: max_chars + 1].long()
        n = (len(ids) - 1) // self.seq_len
        unigram = -self.unigram_log_p[ids[1: n * self.seq_len + 1]].mean().item()
        ids = ids.to(device_of(model))
        inputs = ids[: n * self.seq_len].reshape(n, self.seq_len).T
        targets = ids[1: n * self.seq_len + 1].reshape(n, self.seq_len).T
        total = 0.0
        for i in range(0, n, 64):
            logits, _ = model(inputs[:, i: i + 64])
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     targets[:, i: i + 64].reshape(-1), reduction="sum").item()
        return {"valid_loss": total / targets.numel(), "unigram_loss": unigram,
                "valid_bits_per_char": total / targets.numel() / math.log(2)}

    def metadata(self) -> dict:
        return {"vocabulary": self.vocab.chars, "seq_len": self.seq_len}
