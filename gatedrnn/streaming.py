"""Step-by-step use of a trained model: a Stream carries the recurrent state between calls.

Works for any model called as model(x, state) -> (y, state) with time first: gatedrnn.GRU /
LSTM / RNN themselves, or a model around them such as the char-LM.

    >>> import torch, gatedrnn
    >>> stream = gatedrnn.Stream(gatedrnn.LSTM(3, 4))
    >>> y1 = stream.step(torch.randn(1, 3))            # one step of a batch of 1
    >>> y2 = stream.step(torch.randn(1, 3))            # continues from the state after y1
    >>> tuple(y2.shape)
    (1, 4)
"""

from __future__ import annotations

import math

import torch


class Stream:
    def __init__(self, model, state=None):
        self.model, self.state = model, state

    @torch.no_grad()
    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """Run a chunk x (T, B, ...) and keep the state it ends in; returns every step's y."""
        y, self.state = self.model(x, self.state)
        return y

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """One time step: x_t (B, ...) → y_t (B, ...)."""
        return self.feed(x_t.unsqueeze(0))[0]

    def reset(self) -> None:
        self.state = None


def sample_text(model, vocab, prime: str = "\n", length: int = 300, temperature: float = 1.0,
                top_k: int | None = None, generator: torch.Generator | None = None) -> str:
    """Continue `prime` by `length` characters drawn from a char-LM (temperature 0: greedy)."""
    if not 0 <= temperature < math.inf:
        raise ValueError(f"temperature: expected a number >= 0, got {temperature}")
    if length < 0:
        raise ValueError(f"length: expected a number of characters >= 0, got {length}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k: expected a positive integer, got {top_k}")
    if not prime:
        raise ValueError("prime: expected at least one character to start from, got ''")
    model.eval()
    device = next(model.parameters()).device
    stream = Stream(model)
    logits = stream.feed(vocab.encode(prime).unsqueeze(1).to(device))[-1, 0]
    chosen = []
    for _ in range(length):
        logits = logits.cpu()   # drawn on the CPU, with the caller's (CPU) generator
        if temperature == 0:
            next_id = int(logits.argmax())
        else:
            scaled = logits / temperature
            if top_k is not None and top_k < scaled.numel():
                cutoff = scaled.topk(top_k).values[-1]
                scaled = scaled.masked_fill(scaled < cutoff, float("-inf"))
            next_id = int(torch.multinomial(scaled.softmax(-1), 1, generator=generator))
        chosen.append(next_id)
        logits = stream.step(torch.tensor([next_id], device=device))[0]
    return prime + vocab.decode(chosen)
