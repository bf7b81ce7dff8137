"""The largest disagreements between gatedrnn's backends and the NumPy reference, and between
gatedrnn and torch.nn: relative errors max|a − b| / max|b| over outputs, final states and every
gradient, one layer over T=50 steps, batch 8, sizes I=16, H=32, with lengths and reverse.

    python benchmarks/parity.py
"""

from __future__ import annotations

import numpy as np
import torch

import gatedrnn
from gatedrnn.functional import lengths_to_mask, recurrence
from gatedrnn.layout import from_lecture

T, B, I, H = 50, 8, 16, 32


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return ((a - b).abs().max() / b.abs().max()).item()


def backend_errors(variant: str, backend: str, dtype) -> float:
    rng = np.random.default_rng(0)
    v = gatedrnn.get_variant(variant)
    params = gatedrnn.reference.init_params(variant, I, H, rng, scale=0.3)
    stacked = [None if w is None else torch.tensor(w) for w in from_lecture(v, params)]
    x, a0, c0 = (torch.tensor(rng.standard_normal(s)) for s in ((T, B, I), (B, H), (B, H)))
    mask = lengths_to_mask(torch.tensor(rng.integers(1, T + 1, B)), T)
    weights = [torch.tensor(rng.standard_normal(s)) for s in ((T, B, H), (B, H), (B, H))]
    results = {}
    for name, kind in ((backend, dtype), ("reference", torch.float64)):
        leaves = [t.to(kind).requires_grad_() if t is not None else None
                  for t in [x, *stacked[:4], a0, c0, stacked[4]]]
        outs = recurrence(*leaves[:7], variant=variant, peephole=leaves[7], mask=mask,
                          reverse=True, backend=name)
        loss = sum((o * w.to(kind)).sum() for o, w in zip(outs, weights))
        wrt = [t for t in leaves if t is not None and (v.has_cell or t is not leaves[6])]
        results[name] = list(outs) + list(torch.autograd.grad(loss, wrt))
    return max(rel(a, b) for a, b in zip(results[backend], results["reference"]))


def torch_errors(kind: str) -> float:
    """Outputs, input gradients and (converted back to torch's layout) parameter gradients."""
    torch.manual_seed(0)
    theirs = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H, num_layers=2,
                                                                 bidirectional=True)
    ours = (gatedrnn.LSTM if kind == "lstm" else gatedrnn.GRU).from_torch(theirs)
    x = torch.randn(T, B, I, requires_grad=True)
    results = []
    for model in (ours, theirs):
        out, _ = model(x)
        weight = torch.linspace(-1, 1, out.numel()).view_as(out)
        grads = torch.autograd.grad((out * weight).sum(), [x] + list(model.parameters()))
        results.append((out, grads[0], dict(zip([n for n, _ in model.named_parameters()],
                                                grads[1:]))))
    (out, dx, ours_grads), (ref_out, ref_dx, ref_grads) = results
    with torch.no_grad():   # our parameter gradients, in torch's layout through to_torch
        for name, p in ours.named_parameters():
            p.copy_(ours_grads[name])
    converted = dict(ours.to_torch().named_parameters())
    return max([rel(out, ref_out), rel(dx, ref_dx)]
               + [rel(converted[n], g) for n, g in ref_grads.items()])


def main() -> None:
    print("| variant | loop f64 | cpu f64 | loop f32 | cpu f32 |\n|---|---|---|---|---|")
    for variant in gatedrnn.VARIANTS:
        cells = [backend_errors(variant, b, d) for d, b in
                 ((torch.float64, "loop"), (torch.float64, "cpu"), (torch.float32, "loop"),
                  (torch.float32, "cpu"))]
        print(f"| {variant} | " + " | ".join(f"{c:.1e}" for c in cells) + " |")
    print(f"\nfrom_torch vs torch.nn, float32, 2 layers, bidirectional: LSTM "
          f"{torch_errors('lstm'):.1e}, GRU {torch_errors('gru'):.1e} (outputs and all gradients)")


if __name__ == "__main__":
    main()
