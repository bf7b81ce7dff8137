"""Parameters of one layer-direction (or one cell), their initialisation and the lecture view.

Names follow torch.nn with one addition, `peephole`:
    weight_ih{sfx} (G*H, I)   weight_hh{sfx} (G*H, H)   bias_ih{sfx}, bias_hh{sfx} (G*H)
    peephole{sfx} (3, H) rows p_u, p_f, p_o          (lstm_peephole only)
where sfx is "_l{k}" or "_l{k}_reverse" in layers and "" in cells, and the G gate blocks are in
`Variant.gates` order (lstm: u, f, o, c; gru: u, r, c). Like torch.nn and ONNX there are two
biases: the lecture's b_g is their sum, except the reset-after GRU's b_cc (bias_hh's candidate
block). Two biases cost nothing at run time and make torch.nn / ONNX round trips exact.

Initialisation (reset_parameters), and why:
- weight_ih: Glorot/Xavier uniform per gate block: keeps the variance of the pre-activations
  near that of the inputs (Glorot & Bengio 2010).
- weight_hh: orthogonal per gate block: every singular value is 1, so at the start the
  recurrent product neither blows up nor shrinks the state over many steps (Saxe et al. 2014).
- LSTM forget-gate bias b_f = 1 (LSTM(forget_bias=...)): the memory is kept by default, which
  Jozefowicz et al. (2015) found to close most of the gap between the LSTM and the best
  architectures they searched. Dependencies over hundreds of steps want more: with b_f = 3 the
  LSTM solves the adding problem at T=100, which it does not learn at all with b_f = 1
  (benchmarks/tasks/adding.py).
- GRU update-gate bias b_u = −1: the same idea in the lecture's GRU, where c<t-1> is kept
  with weight 1 − Γ_u ≈ σ(1) ≈ 0.73 at the start.
- other biases 0; peepholes 0, so an lstm_peephole starts as exactly the plain lstm.
"""

from __future__ import annotations

import torch
from torch import nn

from ..cells import Variant
from ..layout import to_lecture

FORGET_BIAS = 1.0          # LSTM: b_f
UPDATE_BIAS = -1.0         # GRU family: b_u


def make(variant: Variant, input_size: int, hidden_size: int, bias: bool,
         factory: dict, proj_size: int = 0) -> dict[str, nn.Parameter | None]:
    G, H, I = variant.num_gates, hidden_size, input_size
    empty = lambda *shape: nn.Parameter(torch.empty(*shape, **factory))  # noqa: E731
    made = {
        "weight_ih": empty(G * H, I),
        "weight_hh": empty(G * H, proj_size or H),
        "bias_ih": empty(G * H) if bias else None,
        "bias_hh": empty(G * H) if bias else None,
        "peephole": empty(len(variant.peepholes), H) if variant.peepholes else None,
    }
    if proj_size:
        made["weight_hr"] = empty(proj_size, H)
    return made


def _orthogonal(w):
    """An orthogonal matrix like w, drawn in float32 where w's dtype has no QR (16-bit)."""
    if w.dtype in (torch.float32, torch.float64) or w.device.type == "meta":
        return nn.init.orthogonal_(torch.empty_like(w))
    return nn.init.orthogonal_(torch.empty(w.shape, dtype=torch.float32, device=w.device)).to(w.dtype)


def reset(variant: Variant, weight_ih, weight_hh, bias_ih, bias_hh, peephole,
          forget_bias: float = FORGET_BIAS, weight_hr=None) -> None:
    H = weight_ih.shape[0] // variant.num_gates
    biases = {"f": forget_bias} if variant.has_cell else {"u": UPDATE_BIAS}
    with torch.no_grad():
        for k, g in enumerate(variant.gates):
            rows = slice(k * H, (k + 1) * H)
            nn.init.xavier_uniform_(weight_ih[rows])
            weight_hh[rows] = _orthogonal(weight_hh[rows])
            if bias_ih is not None:
                bias_ih[rows].fill_(biases.get(g, 0.0))
        if bias_hh is not None:
            bias_hh.zero_()
        if peephole is not None:
            peephole.zero_()
        if weight_hr is not None:   # orthogonal rows: the projection keeps a<t>'s scale
            weight_hr.copy_(_orthogonal(weight_hr))


def lecture_gates(variant: Variant, weight_ih, weight_hh, bias_ih, bias_hh, peephole) -> dict:
    """{"u": (W_u, b_u), ..., "p_u": p_u, ..., "b_cc": b_cc}: W_g is (H, H+I) on [a<t-1>, x<t>]."""
    flat = to_lecture(variant, weight_ih.detach(), weight_hh.detach(),
                      None if bias_ih is None else bias_ih.detach(),
                      None if bias_hh is None else bias_hh.detach(),
                      None if peephole is None else peephole.detach())
    gates = {g: (flat[f"W_{g}"], flat[f"b_{g}"]) for g in variant.gates}
    gates.update({k: w for k, w in flat.items() if k.startswith("p_") or k == "b_cc"})
    return gates
