"""Text as compact character ids: a file is read and encoded in chunks, never whole as a str,
so training holds about one byte per character (uint8 ids for a vocabulary of up to 256).

Dimension letters: N characters in the corpus, V vocabulary size.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import torch

CHUNK = 1 << 20   # bytes (or characters) per piece: bounds the encoder's scratch memory


class DataError(ValueError):
    """A data source that cannot be used, with what to do about it."""


def _compact(V: int):
    return np.uint8 if V <= 256 else np.int16 if V <= 32768 else np.int32


class Vocabulary:
    def __init__(self, chars: str):
        self.chars = chars
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(codes)
        self._codes = codes[self._order]
        self.dtype = _compact(len(chars))

    @classmethod
    def of(cls, text: str) -> "Vocabulary":
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def ids(self, text: str) -> np.ndarray:
        """(N,) ids of `text` in the vocabulary's compact dtype."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        at = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        unknown = self._codes[at] != codes
        if unknown.any():
            missing = sorted({chr(c) for c in codes[unknown][:10_000].tolist()})
            raise ValueError(f"text: characters {missing[:10]!r} are not in the model's "
                             f"vocabulary of {len(self)}; leave them out")
        return self._order[at].astype(self.dtype)

    def encode(self, text: str) -> torch.Tensor:
        return torch.from_numpy(self.ids(text).astype(np.int64))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def _pieces(path: Path):
    """The file's text in pieces, checked: UTF-8, no NUL bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while True:
            raw = handle.read(CHUNK)
            if b"\x00" in raw:
                raise DataError(f"data: {path} looks binary (it contains NUL bytes); pass a "
                                "UTF-8 text file")
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as error:
                raise DataError(f"data: {path} is not UTF-8 ({error.reason} at byte "
                                f"{offset + error.start}); convert it, e.g. iconv -t UTF-8") from None
            offset += len(raw)
            if text:
                yield text
            if not raw:
                return


def _checked(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data: {path} does not exist or is not a file; pass --data stdlib, "
                        "shakespeare or the path of a UTF-8 text file")
    return path


def read_text_file(path) -> str:
    """A whole UTF-8 text file as a str, checked (for small texts: --file of gates)."""
    path = _checked(path)
    text = "".join(_pieces(path))
    if not text.strip():
        raise DataError(f"data: {path} is empty; a language model needs text to learn from")
    return text


def encode_file(path, vocab: Vocabulary | None = None) -> tuple[Vocabulary, torch.Tensor]:
    """(vocabulary, (N,) compact ids) of a UTF-8 file, in two passes over it: one for the
    characters (and their count), one to encode into an array allocated once."""
    path = _checked(path)
    chars, n, blank = set(), 0, True
    for piece in _pieces(path):
        chars.update(piece)
        n += len(piece)
        blank = blank and not piece.strip()
    if blank:
        raise DataError(f"data: {path} is empty; a language model needs text to learn from")
    vocab = vocab or Vocabulary("".join(sorted(chars)))
    ids, at = np.empty(n, dtype=vocab.dtype), 0
    for piece in _pieces(path):
        for start in range(0, len(piece), CHUNK):
            part = vocab.ids(piece[start: start + CHUNK])
            ids[at: at + len(part)] = part
            at += len(part)
    return vocab, torch.from_numpy(ids)


def encode_text(text: str, vocab: Vocabulary | None = None) -> tuple[Vocabulary, torch.Tensor]:
    """encode_file's result for a text already in memory."""
    vocab = vocab or Vocabulary.of(text)
    return vocab, torch.from_numpy(vocab.ids(text))


def counts(ids: torch.Tensor, V: int) -> torch.Tensor:
    """(V,) how often each id occurs, counted a chunk at a time (no int64 copy of all ids)."""
    total = np.zeros(V, dtype=np.int64)
    array = ids.numpy()
    for start in range(0, len(array), CHUNK):
        total += np.bincount(array[start: start + CHUNK], minlength=V)
    return torch.from_numpy(total)
