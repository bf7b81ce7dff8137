"""NaN and infinity are data: they propagate through every backend as through torch.nn.

A NaN (or ±inf) is put into the input, an initial state or one weight; every backend must give
NaN in exactly the outputs, final states and gradients where the "loop" backend (plain torch
operations) gives them, and the loop backend where torch.nn.LSTM / GRU / RNN gives them.
Padding past a sequence's length never reaches a gradient, whatever it holds.
"""

import pytest
import torch

import gatedrnn
from gatedrnn.modules.layers import for_variant

from conftest import VARIANTS, needs_triton

T, B, I, H = 5, 3, 4, 8
# The NumPy oracle computes with the NaN as it should, and says so.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
BACKENDS = ["cpu", "reference", pytest.param("triton", marks=needs_triton)]
PLACES = ["x", "a0", "c0", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
          "peephole_l0"]
VALUES = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
TORCH_NN = ("rnn", "gru_reset_after", "lstm")


def _inputs(dtype):
    torch.manual_seed(1)
    x = torch.randn(T, B, I, dtype=dtype)
    a0, c0 = torch.randn(1, B, H, dtype=dtype), torch.randn(1, B, H, dtype=dtype)
    return x, a0, c0


def _run(module, place, value, dtype=torch.float32, device="cpu"):
    """Outputs, states and every gradient with `value` at `place` (None: already placed)."""
    x, a0, c0 = (t.to(device) for t in _inputs(dtype))
    if place in ("x", "a0", "c0"):
        {"x": x, "a0": a0, "c0": c0}[place].view(-1)[5] = value
    elif place is not None:
        with torch.no_grad():
            getattr(module, place).view(-1)[5] = value
    x, a0, c0 = (t.requires_grad_() for t in (x, a0, c0))
    has_cell = isinstance(module, (gatedrnn.LSTM, torch.nn.LSTM))
    out, state = module(x, (a0, c0) if has_cell else a0)
    states = state if has_cell else (state,)
    (out.sum() + sum(s.sum() for s in states)).backward()
    grads = {"x": x.grad, "a0": a0.grad, **({"c0": c0.grad} if has_cell else {})}
    grads.update({n: p.grad for n, p in module.named_parameters()})
    return {"out": out.detach(), **{f"state{i}": s.detach() for i, s in enumerate(states)},
            **{f"d_{k}": g for k, g in grads.items()}}


def _masks(results):
    return {k: (v.isnan(), v.isinf()) for k, v in results.items()}


def _places(variant):
    v = gatedrnn.get_variant(variant)
    return [p for p in PLACES if (p != "c0" or v.has_cell) and (p != "peephole_l0" or v.peepholes)]


CASES = [(variant, place, value) for variant in VARIANTS for place in _places(variant)
         for value in (["nan", "inf"] if place == "x" else ["nan"])]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant,place,value", CASES,
                         ids=[f"{v}-{p}-{x}" for v, p, x in CASES])
def test_a_non_finite_value_propagates_as_through_the_loop(variant, place, value, backend):
    dtype = torch.float64 if backend == "reference" else torch.float32
    torch.manual_seed(0)
    ours = for_variant(variant, I, H, backend=backend, dtype=dtype)
    torch.manual_seed(0)
    loop = for_variant(variant, I, H, backend="loop", dtype=dtype)
    got, expected = _run(ours, place, VALUES[value], dtype), _run(loop, place, VALUES[value], dtype)
    assert any(m.any() for m, _ in _masks(expected).values()), "the case puts in no NaN"
    if backend == "reference":
        # The oracle's bridge multiplies xp by block selectors (kernels/reference.py), and
        # 0 · NaN spreads one unit's NaN to its whole step: NaN wherever the loop has it.
        for name, (nan, _) in _masks(expected).items():
            assert _masks(got)[name][0][nan].all(), f"{name}: a NaN of the loop's is missing"
        return
    for name, (nan, inf) in _masks(expected).items():
        assert torch.equal(_masks(got)[name][0], nan), f"{name}: NaN where the loop has none"
        assert torch.equal(_masks(got)[name][1], inf), f"{name}: inf differs from the loop's"


@pytest.mark.parametrize("variant,place,value",
                         [c for c in CASES if c[0] in TORCH_NN],
                         ids=[f"{v}-{p}-{x}" for v, p, x in CASES if v in TORCH_NN])
def test_the_loop_gives_non_finite_values_where_torch_nn_does(variant, place, value):
    torch.manual_seed(0)
    ours = for_variant(variant, I, H, backend="loop")
    if place not in ("x", "a0", "c0"):   # in the weights before converting: it moves with them
        with torch.no_grad():
            getattr(ours, place).view(-1)[5] = VALUES[value]
        place = None
    theirs = ours.to_torch()
    got, expected = _run(ours, place, VALUES[value]), _run(theirs, place, VALUES[value])
    for name in expected:
        if name.startswith("d_") and name[2:] not in ("x", "a0", "c0"):
            # torch.nn orders the gates otherwise: the counts of a weight's gradient
            assert got[name].isnan().sum() == expected[name].isnan().sum(), name
        else:
            assert torch.equal(got[name].isnan(), expected[name].isnan()), name


@pytest.mark.parametrize("backend", ["loop", "cpu", "reference",
                                     pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_in_the_padding_past_lengths_reaches_no_output_or_gradient(variant, backend):
    dtype = torch.float64 if backend == "reference" else torch.float32
    lengths = torch.tensor([T, 2, 4])
    grads = []
    for fill in (0.0, float("nan")):
        torch.manual_seed(0)
        module = for_variant(variant, I, H, backend=backend, dtype=dtype, bidirectional=True)
        x = torch.randn(T, B, I, dtype=dtype)
        for b, n in enumerate(lengths.tolist()):
            x[n:, b] = fill
        x.requires_grad_()
        out, state = module(x, lengths=lengths)
        states = state if isinstance(state, tuple) else (state,)
        (out.sum() + sum(s.sum() for s in states)).backward()
        grads.append([out, *states, x.grad] + [p.grad for p in module.parameters()])
    for clean, padded in zip(*grads):
        assert torch.isfinite(padded).all()
        torch.testing.assert_close(padded, clean, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("launch", ["step", "step+graphs", "gemm", "gemm+graphs", "sequence",
                                    "persistent", "resident"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_gpu_launch_propagates_nan_as_the_loop_does(variant, launch, monkeypatch):
    """On the GPU the kernels are compiled, with the GPU's own exp, division and maximum: the
    interpreter's NumPy cannot stand in for them. Graphs launches replay from a key's third
    call, so every case runs three times and the last is compared."""
    from gatedrnn.kernels import planner

    for name, value in planner.launch(launch).items():
        monkeypatch.setattr(planner.settings, name, value)
    for place in ("x", "a0", "weight_hh_l0") + (("c0",) if gatedrnn.get_variant(variant).has_cell else ()):
        results = {}
        for backend in ("loop", "triton"):
            for _ in range(3 if backend == "triton" else 1):
                torch.manual_seed(0)
                module = for_variant(variant, I, H, backend=backend, device="cuda")
                results[backend] = _run(module, place, float("nan"), device="cuda")
        for name, value in results["loop"].items():
            assert torch.equal(results["triton"][name].isnan(), value.isnan()), (place, name)
