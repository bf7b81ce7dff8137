"""Every backend against the NumPy reference: outputs, final states and every gradient.

One layer, one direction, through gatedrnn.recurrence, over every variant, both time
directions, with and without lengths, float64 (≤ 1e-10 relative) and float32 (≤ 1e-5).
"""

import numpy as np
import pytest
import torch

from gatedrnn import get_variant, reference
from gatedrnn.functional import lengths_to_mask, recurrence
from gatedrnn.layout import from_lecture

from conftest import TOLERANCE, VARIANTS, needs_triton, rel_err

T, B, I, H = 6, 3, 4, 5
LENGTHS = [6, 2, 4]
BACKENDS = ["loop", "reference", "cpu",
            pytest.param("triton", marks=needs_triton)]


def _expected(variant, params, x, a0, c0, lengths, reverse, w_out, w_a_n, w_c_n):
    """The reference run sequence by sequence (cut to its length, flipped if reverse)."""
    v = get_variant(variant)
    out = np.zeros((T, B, H))
    finals = {"a_n": np.zeros((B, H)), "c_n": np.zeros((B, H))}
    grads = {k: np.zeros_like(p) for k, p in params.items()}
    d = {"x": np.zeros_like(x), "a0": np.zeros_like(a0), "c0": np.zeros_like(c0)}
    for b in range(B):
        idx = np.arange(lengths[b])[::-1] if reverse else np.arange(lengths[b])
        a, c, cache = reference.forward(variant, x[idx, b:b + 1], params, a0[b:b + 1],
                                        c0[b:b + 1])
        out[idx, b] = a[:, 0]
        finals["a_n"][b] = a[-1, 0]
        if v.has_cell:
            finals["c_n"][b] = c[-1, 0]
        g = reference.backward(cache, w_out[idx, b:b + 1], w_a_n[b:b + 1], w_c_n[b:b + 1])
        d["x"][idx, b] = g["x"][:, 0]
        d["a0"][b], d["c0"][b] = g["a0"][0], (g["c0"][0] if v.has_cell else 0)
        for k in grads:
            grads[k] += g[k]
    d_w_ih, d_w_hh, d_b, d_b_cc, d_p = from_lecture(v, grads)
    # Both stacked biases feed b_g, so both get its gradient; the reset-after candidate's bias_hh
    # block is b_cc instead.
    d_b_hh = d_b.copy()
    if v.recurrent_bias:
        d_b_hh[2 * H:] = d_b_cc[2 * H:]
    d.update(weight_ih=d_w_ih, weight_hh=d_w_hh, bias_ih=d_b, bias_hh=d_b_hh, peephole=d_p)
    return [out, finals["a_n"]] + ([finals["c_n"]] if v.has_cell else []), d


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_backend_matches_reference(variant, reverse, lengths, dtype, backend):
    rng = np.random.default_rng(7)
    v = get_variant(variant)
    params = reference.init_params(variant, I, H, rng)
    x, a0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    w = [rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H))]
    expected_outs, expected_grads = _expected(variant, params, x, a0, c0, lengths or [T] * B,
                                              reverse, *w)
    if lengths is not None:   # outputs past a sequence's end are zero, so their weight is moot
        w[0] = w[0] * np.asarray(lengths_to_mask(torch.tensor(lengths), T))

    as_leaf = lambda z: torch.tensor(z, dtype=dtype, requires_grad=True)  # noqa: E731
    stacked = from_lecture(v, params)
    leaves = {"x": as_leaf(x), "a0": as_leaf(a0), "c0": as_leaf(c0)}
    leaves.update({k: as_leaf(p) for k, p in zip(
        ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "peephole"), stacked) if p is not None})
    if not v.recurrent_bias:   # bias_hh is all zero here, so spread b over both to test the sum
        half = torch.tensor(stacked[2] / 2, dtype=dtype)
        leaves["bias_ih"], leaves["bias_hh"] = half.clone().requires_grad_(), half.clone().requires_grad_()
    mask = None if lengths is None else lengths_to_mask(torch.tensor(lengths), T)
    outs = recurrence(leaves["x"], leaves["weight_ih"], leaves["weight_hh"], leaves["bias_ih"],
                      leaves["bias_hh"], leaves["a0"], leaves["c0"], variant=variant,
                      peephole=leaves.get("peephole"), mask=mask, reverse=reverse, backend=backend)
    assert len(outs) == len(expected_outs)
    loss = sum((o * torch.tensor(wi, dtype=dtype)).sum() for o, wi in zip(outs, w))
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)

    tol = TOLERANCE[dtype]
    for name, o, e in zip(("output", "a_n", "c_n"), outs, expected_outs):
        assert o.dtype == dtype
        assert rel_err(o, e) <= tol, f"{name}: {rel_err(o, e):.2e}"
    for name, g in zip(leaves, grads):
        if name == "c0" and not v.has_cell:
            assert g is None
            continue
        assert rel_err(g, expected_grads[name]) <= tol, f"d{name}: {rel_err(g, expected_grads[name]):.2e}"


def _cpu_matches_loop(variant, T_, B_, I_, H_, dtype, tol, seed=3):
    """The cpu backend in dtype and the loop backend in float64 on the same random layer, with
    lengths, in both directions, on two threads: outputs, final states and every gradient
    within tol of each other (relative to the largest value)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(seed)
        G = get_variant(variant).num_gates
        shapes = [(T_, B_, I_), (G * H_, I_), (G * H_, H_), (G * H_,), (G * H_,), (B_, H_),
                  (B_, H_), (3, H_)]
        # R at 0.5 / sqrt(H) and peepholes at 0.5: contracting, so that rounding in another
        # order does not grow over long sequences as it would in a chaotic layer.
        scales = [1, 0.5, 0.5 / H_ ** 0.5, 1, 1, 1, 1, 0.5]
        values = [s * torch.randn(*shape, generator=g, dtype=torch.float64)
                  for s, shape in zip(scales, shapes)]
        mask = lengths_to_mask(torch.randint(1, T_ + 1, (B_,), generator=g), T_)
        for reverse in (False, True):
            results = []
            for backend, run_dtype in (("cpu", dtype), ("loop", torch.float64)):
                leaves = [v.to(run_dtype).requires_grad_() for v in values]
                *layer, peephole = leaves
                outs = recurrence(*layer, variant=variant, peephole=peephole, mask=mask,
                                  reverse=reverse, backend=backend)
                loss = sum((o * (k + 1)).sin().sum() for k, o in enumerate(outs))
                grads = torch.autograd.grad(loss, leaves, allow_unused=True)
                results.append(list(outs) + [gr for gr in grads if gr is not None])
            for got, expected in zip(*results):
                assert rel_err(got, expected) <= tol, (B_, H_, reverse)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cpu_backend_splits_the_batch_over_threads_exactly(variant):
    """Batches of 4 rows a thread or more, with little of R per row, run as one time loop per
    thread over a block of rows; an uneven split, masks and both directions must give what the
    loop backend gives."""
    _cpu_matches_loop(variant, 5, 65, 3, 64, torch.float64, 1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_cpu_backend_small_batches_match_the_loop(variant, dtype):
    """Below 8 rows, over 64 steps or more, the compiled kernel does the per-step products
    itself (Panels in recurrence.cpp): rows in groups of four and the rest, a hidden size that
    ends inside a vector and inside a panel, the backward products that add to what is there,
    two row blocks of 4 on two threads (8 rows), and at 4 rows of H = 128 the panels split over
    two threads. A short call multiplies R in place through BLAS."""
    tol = 1e-11 if dtype == torch.float64 else 1e-3   # float32: its rounding over 64 steps
    for B_ in (1, 2, 5, 7, 8):
        _cpu_matches_loop(variant, 64, B_, 3, 70, dtype, tol, seed=B_)
    _cpu_matches_loop(variant, 64, 4, 3, 128, dtype, tol)
    _cpu_matches_loop(variant, 4, 3, 3, 17, dtype, tol)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cpu_backend_onednn_products_match_the_loop(variant, monkeypatch):
    """In calls of 32 steps or more, from 8 rows a block, recurrent weights of onednn.MIN_VALUES
    values or more are multiplied by oneDNN (recurrence.cpp's OneDnn), here every one: two
    blocks of 8 rows, uneven blocks of 11 and 12, and one block of 8 rows whose R is too large
    to split (oneDNN threads it itself), with hidden sizes that end inside a vector; forward
    products written over what is there, backward ones added to it. Below 8 rows, in calls of
    64 steps or more, oneDNN takes the products whose R is too large for the kernel's panels
    (over 1 MiB: H = 520), and in shorter calls the forward ones, with R unpacked."""
    from gatedrnn.kernels import cpu, onednn

    if not cpu.extension().onednn_available():
        pytest.skip("this torch has no oneDNN operators (built without MKLDNN)")
    monkeypatch.setattr(onednn, "MIN_VALUES", 0)
    for B_, H_ in ((16, 37), (23, 20), (8, 192)):
        _cpu_matches_loop(variant, 32, B_, 3, H_, torch.float32, 1e-4, seed=B_)
    _cpu_matches_loop(variant, 64, 3, 3, 520, torch.float32, 1e-3)
    _cpu_matches_loop(variant, 4, 2, 3, 520, torch.float32, 1e-4)
