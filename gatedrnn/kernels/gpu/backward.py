"""The backward time step of every variant on one (rows × cols) tile: backpropagation through
time with the gradients derived by hand (gatedrnn/cells.py, Variant.step_backward, in the same
notation), reading the gates the forward saved.

Arguments beyond forward.py's:
    D_A (T, B, H) gradient on the state after each step, from the outputs
    DXP (T, B, G*H) the gradient on the pre-activations (= on the input projections), written,
        in the weights' dtype
    CA, CC (B, H) what reaches a<t-1>, c<t-1> from the steps already done, element by element;
        the part through R, (d_xp of step t_next) R, is added at step t from DXP
    t_next the step done just before (t + 1 forwards, t - 1 backwards); has_next 0 at the first
    final: no step, only d_a<0> = CA + (d_xp of t_next) R, written to CA
    PRB with GIVEN ("gemm" mode, gatedrnn/kernels/gemm.py): (B, H), the phase's product
        through R, computed before the launch

The lecture's GRU (2) runs in two phases: PHASE 0 the gradients of Γ_u and c̃; PHASE 1 that of
Γ_r, which needs (d c̃ pre-activation) R_c summed over every unit.
"""

import triton
import triton.language as tl

from .common import strips, sync, tanh, tile_range, times_r
from .forward import wide


@triton.jit
def backward_tile(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, t, prev, nxt, t_next, has_next,
                  B, H, has_mask, final, PRB, rows, cols, VARIANT: tl.constexpr,
                  PHASE: tl.constexpr, G: tl.constexpr, S: tl.constexpr, BLOCK_B: tl.constexpr,
                  BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
                  UPCAST: tl.constexpr, GIVEN: tl.constexpr, W0, W1, W2, W3,
                  RESIDENT: tl.constexpr, K_PAD: tl.constexpr):
    GH = G * H
    row_ok = rows < B
    col_ok = cols < H
    ok = row_ok[:, None] & col_ok[None, :]
    tile = rows[:, None] * H + cols[None, :]
    dxp = DXP + wide(t) * B * GH + rows[:, None] * GH + cols[None, :]   # gate g at + g * H
    sv = SAVED + wide(t) * B * S * H + rows[:, None] * S * H + cols[None, :]
    keep = tl.full((BLOCK_B, 1), 1, tl.int1)   # inside the sequence: the step takes gradient
    if has_mask:
        keep = (tl.load(MASK + wide(t) * B + rows, mask=row_ok, other=0) != 0)[:, None]

    if VARIANT == 2 and PHASE == 1:   # gru: Γ_r, through (d c̃ pre-activation) R_c
        if GIVEN:
            d_reset = tl.load(PRB + tile, mask=ok, other=0.0)
        else:
            d_pre_c = DXP + wide(t) * B * GH + 2 * H
            d_reset = times_r(tl.zeros((BLOCK_B, BLOCK_H), CA.dtype.element_ty), d_pre_c, GH,
                              d_pre_c, 0, rows, row_ok, R, 2 * H, cols, col_ok, H, H, False,
                              BLOCK_K, PRECISION, UPCAST, W2, W2, W2, W2, 1, RESIDENT, K_PAD)
        gamma_r = tl.load(sv + H, mask=ok, other=0.0)
        a_prev = tl.load(SA + wide(prev) * B * H + tile, mask=ok, other=0.0)
        tl.store(dxp + H, d_reset * a_prev * gamma_r * (1.0 - gamma_r), mask=ok)
        tl.store(CA + tile, tl.load(CA + tile, mask=ok, other=0.0) + d_reset * gamma_r, mask=ok)
    else:
        d_a = tl.load(CA + tile, mask=ok, other=0.0)
        if final == 0:
            d_a += tl.load(D_A + wide(t) * B * H + tile, mask=ok, other=0.0)
        if has_next:   # what step t_next sends back through R
            d_next = DXP + wide(t_next) * B * GH
            if GIVEN:
                d_a += tl.load(PRB + tile, mask=ok, other=0.0)
            elif VARIANT == 2:
                d_a = times_r(d_a, d_next, GH, d_next, 0, rows, row_ok, R, 0, cols, col_ok,
                              2 * H, H, False, BLOCK_K, PRECISION, UPCAST, W0, W1, W1, W1, 2,
                              RESIDENT, K_PAD)
            elif VARIANT == 3:   # the candidate's recurrent part sits inside Γ_r ⊙ (...)
                d_a = times_r(d_a, d_next, GH, d_next, 0, rows, row_ok, R, 0, cols, col_ok,
                              2 * H, H, False, BLOCK_K, PRECISION, UPCAST, W0, W1, W1, W1, 2,
                              RESIDENT, K_PAD)
                d_a = times_r(d_a, d_next + 2 * H, GH,
                              SAVED + wide(t_next) * B * S * H + H, S * H, rows, row_ok, R,
                              2 * H, cols, col_ok, H, H, True, BLOCK_K, PRECISION, UPCAST,
                              W2, W2, W2, W2, 1, RESIDENT, K_PAD)
            else:
                d_a = times_r(d_a, d_next, GH, d_next, 0, rows, row_ok, R, 0, cols, col_ok, GH,
                              H, False, BLOCK_K, PRECISION, UPCAST, W0, W1, W2, W3, G,
                              RESIDENT, K_PAD)
        if final:
            tl.store(CA + tile, d_a, mask=ok)
        else:
            carry_a = tl.where(keep, 0.0, d_a)   # masked steps pass the gradient through
            if VARIANT == 0:    # rnn
                a = tl.load(SA + wide(nxt) * B * H + tile, mask=ok, other=0.0)
                tl.store(dxp, tl.where(keep, d_a * (1.0 - a * a), 0.0), mask=ok)
            elif VARIANT == 6:  # rnn_relu
                a = tl.load(SA + wide(nxt) * B * H + tile, mask=ok, other=0.0)
                tl.store(dxp, tl.where(keep & (a > 0.0), d_a, 0.0), mask=ok)
            elif VARIANT <= 3:  # the GRUs: c<t> = Γ_u ⊙ c̃ + (1 − Γ_u) ⊙ c<t-1>
                c_prev = tl.load(SA + wide(prev) * B * H + tile, mask=ok, other=0.0)
                gamma_u = tl.load(sv, mask=ok, other=0.0)
                c_tilde = tl.load(sv + (G - 1) * H, mask=ok, other=0.0)   # the last gate
                d_pre_u = d_a * (c_tilde - c_prev) * gamma_u * (1.0 - gamma_u)
                d_pre_c = d_a * gamma_u * (1.0 - c_tilde * c_tilde)
                tl.store(dxp, tl.where(keep, d_pre_u, 0.0), mask=ok)
                tl.store(dxp + (G - 1) * H, tl.where(keep, d_pre_c, 0.0), mask=ok)
                if VARIANT == 3:
                    gamma_r = tl.load(sv + H, mask=ok, other=0.0)
                    recurrent_c = tl.load(sv + 3 * H, mask=ok, other=0.0)
                    d_pre_r = d_pre_c * recurrent_c * gamma_r * (1.0 - gamma_r)
                    tl.store(dxp + H, tl.where(keep, d_pre_r, 0.0), mask=ok)
                carry_a = tl.where(keep, d_a * (1.0 - gamma_u), d_a)
            else:               # lstm, lstm_peephole
                d_c = tl.load(CC + tile, mask=ok, other=0.0)
                c = tl.load(SC + wide(nxt) * B * H + tile, mask=ok, other=0.0)
                c_prev = tl.load(SC + wide(prev) * B * H + tile, mask=ok, other=0.0)
                gamma_u = tl.load(sv, mask=ok, other=0.0)
                gamma_f = tl.load(sv + H, mask=ok, other=0.0)
                gamma_o = tl.load(sv + 2 * H, mask=ok, other=0.0)
                c_tilde = tl.load(sv + 3 * H, mask=ok, other=0.0)
                tanh_c = tanh(c)
                d_pre_o = d_a * tanh_c * gamma_o * (1.0 - gamma_o)
                d_c_step = d_c + d_a * gamma_o * (1.0 - tanh_c * tanh_c)
                if VARIANT == 5:
                    p_o = tl.load(P + 2 * H + cols, mask=col_ok, other=0.0).to(d_c.dtype)
                    d_c_step += d_pre_o * p_o[None, :]
                d_pre_u = d_c_step * c_tilde * gamma_u * (1.0 - gamma_u)
                d_pre_f = d_c_step * c_prev * gamma_f * (1.0 - gamma_f)
                d_pre_c = d_c_step * gamma_u * (1.0 - c_tilde * c_tilde)
                d_c_prev = d_c_step * gamma_f
                if VARIANT == 5:
                    p_u = tl.load(P + cols, mask=col_ok, other=0.0).to(d_c.dtype)
                    p_f = tl.load(P + H + cols, mask=col_ok, other=0.0).to(d_c.dtype)
                    d_c_prev += d_pre_u * p_u[None, :] + d_pre_f * p_f[None, :]
                tl.store(dxp, tl.where(keep, d_pre_u, 0.0), mask=ok)
                tl.store(dxp + H, tl.where(keep, d_pre_f, 0.0), mask=ok)
                tl.store(dxp + 2 * H, tl.where(keep, d_pre_o, 0.0), mask=ok)
                tl.store(dxp + 3 * H, tl.where(keep, d_pre_c, 0.0), mask=ok)
                tl.store(CC + tile, tl.where(keep, d_c_prev, d_c), mask=ok)
            tl.store(CA + tile, carry_a, mask=ok)


# Flags and time indices are run-time values (see forward.forward_step).
@triton.jit(do_not_specialize=["t", "prev", "nxt", "t_next", "has_next", "B", "has_mask",
                               "final"])
def backward_step(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, t, prev, nxt, t_next, has_next,
                  B, H, has_mask, final, PRB, VARIANT: tl.constexpr, PHASE: tl.constexpr,
                  G: tl.constexpr, S: tl.constexpr, BLOCK_B: tl.constexpr,
                  BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
                  UPCAST: tl.constexpr, GIVEN: tl.constexpr):
    """One step (one phase): a program per tile, grid (⌈B/BLOCK_B⌉, ⌈H/BLOCK_H⌉). With GIVEN
    ("gemm" mode) the phase's product through R is read from PRB (B, H)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    backward_tile(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, t, prev, nxt, t_next, has_next,
                  B, H, has_mask, final, PRB, rows, cols, VARIANT, PHASE, G, S, BLOCK_B,
                  BLOCK_H, BLOCK_K, PRECISION, UPCAST, GIVEN, R, R, R, R, False, 16)


@triton.jit
def backward_tiles(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, t, prev, nxt, t_next, has_next,
                   B, H, has_mask, final, first, stop, stride, n_h, VARIANT: tl.constexpr,
                   PHASE: tl.constexpr, G: tl.constexpr, S: tl.constexpr, BLOCK_B: tl.constexpr,
                   BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
                   UPCAST: tl.constexpr, W0, W1, W2, W3, RESIDENT: tl.constexpr,
                   K_PAD: tl.constexpr):
    """One phase of step t on the tiles first, first + stride, ... < stop."""
    for tile in range(first, stop, stride):
        backward_tile(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, t, prev, nxt, t_next,
                      has_next, B, H, has_mask, final, D_A,
                      (tile // n_h) * BLOCK_B + tl.arange(0, BLOCK_B),
                      (tile % n_h) * BLOCK_H + tl.arange(0, BLOCK_H), VARIANT, PHASE, G, S,
                      BLOCK_B, BLOCK_H, BLOCK_K, PRECISION, UPCAST, False, W0, W1, W2, W3,
                      RESIDENT, K_PAD)


@triton.jit(do_not_specialize=["T", "B", "has_mask", "reverse", "n_h", "n_tiles"])
def backward_sequence(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, COUNTER, T, B, H, has_mask,
                      reverse, n_h, n_tiles, VARIANT: tl.constexpr, PHASES: tl.constexpr,
                      GRID_SYNC: tl.constexpr, G: tl.constexpr, S: tl.constexpr,
                      BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                      PRECISION: tl.constexpr, UPCAST: tl.constexpr, RESIDENT: tl.constexpr,
                      K_PAD: tl.constexpr):
    """All T steps, then d_a<0>, in one launch (see forward.forward_sequence; RESIDENT: the
    program's strips of R, loaded here once)."""
    first, stop, stride = tile_range(n_h, n_tiles, GRID_SYNC)
    W0, W1, W2, W3 = R, R, R, R
    if RESIDENT:
        W0, W1, W2, W3 = strips(R, H, True, first, n_h, H, G, BLOCK_H, K_PAD)
    for i in range(0, T):
        t = T - 1 - i + reverse * (2 * i + 1 - T)   # steps in the opposite order to forward
        prev = t + reverse
        nxt = t + 1 - reverse
        t_next = t + 1 - 2 * reverse
        for phase in tl.static_range(PHASES):
            backward_tiles(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, t, prev, nxt, t_next,
                           i > 0, B, H, has_mask, 0, first, stop, stride, n_h, VARIANT, phase, G,
                           S, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION, UPCAST, W0, W1, W2, W3,
                           RESIDENT, K_PAD)
            # This phase's d_xp is read by every unit next.
            sync(COUNTER, (i * PHASES + phase + 1) * tl.num_programs(0), GRID_SYNC)
    last = reverse * (T - 1)   # the step done last: 0 forwards, T - 1 backwards
    backward_tiles(D_A, R, P, SA, SC, SAVED, DXP, CA, CC, MASK, last, last, last, last, 1, B, H,
                   has_mask, 1, first, stop, stride, n_h, VARIANT, 0, G, S, BLOCK_B, BLOCK_H,
                   BLOCK_K, PRECISION, UPCAST, W0, W1, W2, W3, RESIDENT, K_PAD)
