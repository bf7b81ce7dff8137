"""Heatmaps of a char-LM's gates over a text: one PNG per layer and gate, time × units.

The text runs along the time axis, character by character, so one can look for units that
switch on inside quotes or brackets, or count along a line (Karpathy, Johnson & Fei-Fei 2015).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

# The colour scale of each quantity: gates live in [0, 1], candidates and outputs in [-1, 1].
_RANGES = {"gamma_u": (0, 1), "gamma_r": (0, 1), "gamma_f": (0, 1), "gamma_o": (0, 1),
           "c_tilde": (-1, 1), "a": (-1, 1)}
_LABELS = {"gamma_u": "Γ_u (update)", "gamma_r": "Γ_r (relevance)", "gamma_f": "Γ_f (forget)",
           "gamma_o": "Γ_o (output)", "c_tilde": "c̃ (candidate)", "c": "c (memory cell)",
           "a": "a (output)", "recurrent_c": "W_cc c + b_cc"}


def _shown(ch: str) -> str:
    return {"\n": "↵", "\t": "⇥", " ": "·"}.get(ch, ch)


@dataclass
class CapturedText:
    """A char-LM run once over a text: every gate, and the probability of each next character."""

    text: str
    gates: list                        # gates[layer][direction][name]: (T, 1, H)
    next_char_probability: torch.Tensor    # (T-1,): what the model gave character t+1 at step t


def capture_text(model, vocab, text: str) -> CapturedText:
    """Run `model` (a CharLM) over `text`, recording its gates; the pictures read the result."""
    if not text:
        raise ValueError("text: expected at least one character, got ''")
    ids = vocab.encode(text).unsqueeze(1)                    # (T, 1)
    with torch.no_grad():
        out, _, gates = model.rnn.capture(model.embedding(ids))
        probabilities = model.head(out[:-1, 0]).softmax(-1).gather(1, ids[1:]).squeeze(1)
    return CapturedText(text, gates, probabilities)


def gate_heatmaps(captured: CapturedText, out_dir, max_units: int = 64) -> list[Path]:
    """Write one heatmap PNG per layer and gate of a captured run over a text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text, gates = captured.text, captured.gates
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for layer, directions in enumerate(gates):
        for name, values in directions[0].items():
            grid = values[:, 0, :max_units].T.numpy()        # (units, T)
            width = min(40.0, 2.0 + 0.13 * len(text))
            fig, ax = plt.subplots(figsize=(width, 2.0 + 0.06 * grid.shape[0]), dpi=100)
            low, high = _RANGES.get(name, (None, None))
            image = ax.imshow(grid, aspect="auto", cmap="RdBu_r" if low == -1 else "viridis",
                              vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks(range(len(text)))
            ax.set_xticklabels([_shown(c) for c in text], fontsize=7, fontfamily="monospace")
            ax.set_ylabel("unit")
            ax.set_title(f"layer {layer}: {_LABELS.get(name, name)} over the text")
            fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
            fig.tight_layout()
            path = out_dir / f"layer{layer}_{name}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    return written
