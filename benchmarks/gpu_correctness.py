"""The GPU check's correctness part (benchmarks/gpu_check.py, step 1): the triton backend in
each launch against the float64 reference on the same rounded inputs, outputs and every
gradient, with its working buffers poisoned; and against cuDNN on cuDNN's own weights."""

from __future__ import annotations

import dataclasses
import functools
from concurrent.futures import ThreadPoolExecutor

import torch

import gpu_common as common   # benchmarks/gpu_common.py
from gatedrnn.functional import argument_shapes, lengths_to_mask, recurrence
from gatedrnn.interop.torch_nn import from_torch
from gatedrnn.kernels import planner
from gpu_common import TOLERANCE, graph_counts, rel, replays_since, threads, use
from gpu_table import DTYPES   # benchmarks/gpu_table.py


def _random_leaves(variant, T, B, I, H, dtype, g):
    shapes = argument_shapes(variant, T, B, I, H)
    scale = {"weight_ih": I ** -0.5, "weight_hh": H ** -0.5}
    return {k: (scale.get(k, 0.5) * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype)
            for k, s in shapes.items()}


def _outputs_and_grads(variant, leaves, mask, reverse, backend, weights):
    leaves = {k: v.detach().requires_grad_() for k, v in leaves.items()}
    args = [leaves[k] for k in ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "a0", "c0")]
    outs = recurrence(*args, variant=variant, peephole=leaves["peephole"], mask=mask,
                      reverse=reverse, backend=backend)
    loss = sum((o.double() * w.to(o.device)).sum() for o, w in zip(outs, weights))
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    named = {f"d_{k}": g for k, g in zip(leaves, grads) if g is not None}
    return {**dict(zip(("out", "a_n", "c_n"), outs)), **named}


@dataclasses.dataclass
class Case:
    """One correctness case: inputs rounded to `dtype`, and what the reference makes of them."""

    variant: str
    dname: str
    reverse: bool
    low: dict           # the leaves, rounded to the dtype
    mask: torch.Tensor
    weights: list       # of the outputs in the loss
    want: dict | None = None


def correctness(variants, launches, seed: int, dry_run: bool) -> list[dict]:
    """Max relative error over outputs, final states and every gradient, per variant, dtype,
    direction and launch, against the reference on the same (rounded) inputs. The cases of a
    launch run in threads, so that their kernels compile side by side (compiling is most of
    this check's time); those with graphs one after the other (a recording is on its own)."""
    g = torch.Generator().manual_seed(seed)
    cases = {}   # by shape
    with ThreadPoolExecutor(threads()) as pool:
        rows = []
        # 16 × 16 tiles, as the plan gives G1 and G4: the timings then find these kernels
        # compiled (each block shape compiles anew).
        planner.settings = planner.Settings(poison=True, block_b=16, block_h=16)
        try:
            for launch in launches:
                shape = _shape(launch, dry_run)
                if shape not in cases:
                    cases[shape] = _cases(variants, *shape, g)
                    for case, want in zip(cases[shape], pool.map(reference, cases[shape])):
                        case.want = want
                graphs = use(launch)
                checked = functools.partial(check, launch, graphs)
                rows += list(map(checked, cases[shape]) if graphs
                             else pool.map(checked, cases[shape]))
        finally:
            planner.settings = planner.Settings()
    return rows


def _shape(launch: str, dry_run: bool) -> tuple[int, int, int, int]:
    """T, B, I, H: several 16 × 16 tiles each way; on a dry run, where the interpreter runs one
    program, one tile for the resident launch (a program per tile)."""
    if not dry_run:
        return 24, 21, 48, 160
    return (5, 5, 8, 12) if launch == "resident" else (5, 17, 8, 40)


def _cases(variants, T, B, I, H, g) -> list[Case]:
    return [new_case(variant, dname, reverse, T, B, I, H, g)
            for variant in variants for dname in DTYPES for reverse in (False, True)]


def new_case(variant: str, dname: str, reverse: bool, T: int, B: int, I: int, H: int,
             g) -> Case:
    """A case on fresh random inputs from `g`, with lengths from 1 to T (the first T)."""
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    weights = [torch.randn(s, generator=g, dtype=torch.float64)
               for s in ((T, B, H), (B, H), (B, H))]
    # The reference sees the rounded values in float64: the error measured is the kernels',
    # not the rounding of the inputs.
    low = {k: v.to(DTYPES[dname]) for k, v in
           _random_leaves(variant, T, B, I, H, torch.float64, g).items()}
    return Case(variant, dname, reverse, low, lengths_to_mask(lengths, T), weights)


def reference(case: Case) -> dict:
    return _outputs_and_grads(case.variant, {k: v.double() for k, v in case.low.items()},
                              case.mask, case.reverse, "reference", case.weights)


def check(launch: str, graphs: bool, case: Case) -> dict:
    """The row of one case in one launch (which the caller has set), named `launch`."""
    row = dict(variant=case.variant, dtype=case.dname, mode=launch, reverse=case.reverse)
    device = common.DEVICE
    mask = case.mask.to(device)
    try:
        # With graphs, on other values: a first call launches directly, a second records; the
        # run checked should replay that recording.
        for _ in range(2 if graphs else 0):
            _outputs_and_grads(case.variant, {k: (-v).to(device) for k, v in case.low.items()},
                               mask, case.reverse, "triton", case.weights)
        counts = graph_counts()
        got = _outputs_and_grads(case.variant, {k: v.to(device) for k, v in case.low.items()},
                                 mask, case.reverse, "triton", case.weights)
        if graphs:
            row["replayed"] = replays_since(counts)
    except Exception as error:   # recorded: the run goes on to the table
        common.stop_if_lost(launch, error)
        row.update(max_rel_err=float("nan"), ok=False,
                   worst=f"{type(error).__name__}: {error}"[:300])
        print(f"  {case.variant} {case.dname} {launch}: {row['worst']}", flush=True)
        return row
    errs = {k: rel(got[k], case.want[k]) for k in case.want}
    worst = max(errs, key=lambda k: (errs[k] != errs[k], errs[k]))
    row.update(max_rel_err=errs[worst], worst=worst, ok=errs[worst] <= TOLERANCE[case.dname])
    print(f"  {case.variant:16s} {case.dname:5s} {launch:12s} "
          f"{'backward' if case.reverse else 'forward ':8s} "
          f"max rel err {errs[worst]:.1e} ({worst})"
          + (f", replayed {row['replayed']}" if graphs else ""), flush=True)
    return row



def against_cudnn(seed: int, dry_run: bool) -> list[dict]:
    """gatedrnn (triton) on cuDNN's own weights: outputs and input gradients, float32."""
    torch.manual_seed(seed)
    T, B, H = (4, 3, 16) if dry_run else (64, 32, 256)
    rows = []
    for variant, cls in (("lstm", torch.nn.LSTM), ("gru_reset_after", torch.nn.GRU),
                         ("rnn", torch.nn.RNN)):
        peer = cls(H, H)
        ours = from_torch(peer).to(common.DEVICE)
        ours.backend = "triton"
        peer = peer.to(common.DEVICE)
        x = torch.randn(T, B, H, device=common.DEVICE, requires_grad=True)
        try:
            with torch.backends.cudnn.flags(allow_tf32=False):
                want, _ = peer(x)
                (d_want,) = torch.autograd.grad(want.sum(), x)
            got, _ = ours(x)
            (d_got,) = torch.autograd.grad(got.sum(), x)
            err = max(rel(got, want), rel(d_got, d_want))
        except Exception as error:   # recorded: the run goes on to the table
            common.stop_if_lost(planner.launch_name(planner.plan(B, H, x.dtype, variant)),
                                error)
            print(f"  {variant}: {type(error).__name__}: {error}", flush=True)
            err = float("nan")
        rows.append(dict(variant=variant, max_rel_err=err, ok=err <= 1e-4))
        print(f"  {variant:16s} (triton, {x.device}) vs cuDNN on its weights: "
              f"max rel err {err:.1e}", flush=True)
    return rows

