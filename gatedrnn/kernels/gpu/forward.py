"""The forward time step of every variant on one (rows × cols) tile of the state.

Arguments shared by the kernels (pointers to contiguous tensors, the state dtype is float32,
or float64 for float64 inputs):
    XP (T, B, G*H) input projections;  RT (H, G*H) = R^T;  BHH (H,) b_cc;  P (3, H) peepholes
    SA, SC (T+1, B, H) states as gatedrnn/kernels/states.py lays them out (the LSTM's SA, which
        carries nothing from step to step, in the inputs' dtype)
    SAL (T+1, B, H) the states the recurrent products read: with LOW_COPY, a copy of SA in the
        inputs' (16-bit) dtype, written beside it, which halves those reads; else SA itself
    SAVED (T or 1, B, S*H) what the backward needs (row 0 only, reused, when nothing is kept);
        always in the state's dtype, which the kernels read from it
    RA (B, H) the lecture GRU's Γ_r ⊙ c<t-1>, which its second phase multiplies by R_c (in the
        inputs' dtype: it only feeds that product)
    MASK (T, B) int8, 1 inside each sequence (read only if has_mask)
    t the time step; prev, nxt its state rows in SA/SC; save_row its row of SAVED
    PR, pr_stride with GIVEN ("gemm" mode, gatedrnn/kernels/gemm.py): the phase's recurrent
        product, computed before the launch, gate g at columns g·H of rows of pr_stride

VARIANT numbers as in gatedrnn/kernels/__init__.py (KERNEL_IDS): 0 rnn, 1 gru_simple, 2 gru,
3 gru_reset_after, 4 lstm, 5 lstm_peephole, 6 rnn_relu. The lecture's GRU (2) runs in two
phases, each a whole pass over the tiles: PHASE 0 the update and relevance gates (and Γ_r ⊙ c<t-1>), PHASE 1 the candidate, whose
product with R_c needs Γ_r ⊙ c<t-1> of every unit. Every other variant is one phase.
"""

import triton
import triton.language as tl

from .common import sigmoid, strips, sync, tanh, tile_range, times_rt


@triton.jit
def wide(i):
    """i as int64: offsets of whole sequences pass 2^31 elements at large T·B·H."""
    return tl.full((), 0, tl.int64) + i


@triton.jit
def forward_tile(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, t, prev, nxt, save_row, B, H,
                 has_mask, PR, pr_stride, rows, cols, VARIANT: tl.constexpr,
                 PHASE: tl.constexpr, G: tl.constexpr, S: tl.constexpr, BLOCK_B: tl.constexpr,
                 BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
                 UPCAST: tl.constexpr, LOW_COPY: tl.constexpr, GIVEN: tl.constexpr, W0, W1, W2,
                 W3, RESIDENT: tl.constexpr, K_PAD: tl.constexpr):
    GH = G * H
    row_ok = rows < B
    col_ok = cols < H
    ok = row_ok[:, None] & col_ok[None, :]
    tile = rows[:, None] * H + cols[None, :]
    a_prev = tl.load(SA + wide(prev) * B * H + tile, mask=ok, other=0.0)
    # What this phase's recurrent product reads: rows of a<t-1> (of Γ_r ⊙ c<t-1> in the GRU's
    # second phase), or with GIVEN ("gemm" mode) the product itself, computed before the launch.
    if GIVEN:
        V = PR
        v_stride = pr_stride
    elif VARIANT == 2 and PHASE == 1:
        V = RA
        v_stride = H
    else:
        V = SAL + wide(prev) * B * H
        v_stride = H
    zero = tl.zeros((BLOCK_B, BLOCK_H), SAVED.dtype.element_ty)   # in the state's dtype
    xp = XP + wide(t) * B * GH + rows[:, None] * GH + cols[None, :]   # gate g at + g * H
    sv = SAVED + wide(save_row) * B * S * H + rows[:, None] * S * H + cols[None, :]

    if VARIANT == 0 or VARIANT == 6:    # rnn, rnn_relu
        pre, _, _, _ = times_rt(tl.load(xp, mask=ok, other=0.0).to(zero.dtype), zero, zero, zero,
                                V, v_stride, rows, row_ok, RT, GH, 0, cols, col_ok, H, H, 1,
                                GIVEN, BLOCK_K, PRECISION, UPCAST, W0, W1, W2, W3, RESIDENT,
                                K_PAD)
        if VARIANT == 0:
            a = tanh(pre)
        else:   # only pre < 0 becomes 0: a NaN stays NaN, as in torch.relu
            a = tl.where(pre < 0.0, 0.0, pre)
    elif VARIANT == 1:  # gru_simple
        pre_u, pre_c, _, _ = times_rt(tl.load(xp, mask=ok, other=0.0).to(zero.dtype),
                                      tl.load(xp + H, mask=ok, other=0.0).to(zero.dtype), zero,
                                      zero, V, v_stride, rows, row_ok, RT, GH, 0, cols, col_ok,
                                      H, H, 2, GIVEN, BLOCK_K, PRECISION, UPCAST, W0, W1, W2,
                                      W3, RESIDENT, K_PAD)
        gamma_u = sigmoid(pre_u)
        c_tilde = tanh(pre_c)
        a = gamma_u * c_tilde + (1.0 - gamma_u) * a_prev
        tl.store(sv, gamma_u, mask=ok)
        tl.store(sv + H, c_tilde, mask=ok)
    elif VARIANT == 2:  # gru: Γ_r acts before the recurrent product
        if PHASE == 0:
            pre_u, pre_r, _, _ = times_rt(tl.load(xp, mask=ok, other=0.0).to(zero.dtype),
                                          tl.load(xp + H, mask=ok, other=0.0).to(zero.dtype),
                                          zero, zero, V, v_stride, rows, row_ok, RT, GH, 0, cols,
                                          col_ok, H, H, 2, GIVEN, BLOCK_K, PRECISION, UPCAST,
                                          W0, W1, W2, W3, RESIDENT, K_PAD)
            gamma_u = sigmoid(pre_u)
            gamma_r = sigmoid(pre_r)
            tl.store(sv, gamma_u, mask=ok)
            tl.store(sv + H, gamma_r, mask=ok)
            tl.store(RA + tile, gamma_r * a_prev, mask=ok)
        else:
            pre_c, _, _, _ = times_rt(tl.load(xp + 2 * H, mask=ok, other=0.0).to(zero.dtype),
                                      zero, zero, zero, V, v_stride, rows, row_ok, RT, GH, 2 * H,
                                      cols, col_ok, H, H, 1, GIVEN, BLOCK_K, PRECISION, UPCAST,
                                      W2, W2, W2, W2, RESIDENT, K_PAD)   # R_c's strip
            c_tilde = tanh(pre_c)
            gamma_u = tl.load(sv, mask=ok, other=0.0)
            a = gamma_u * c_tilde + (1.0 - gamma_u) * a_prev
            tl.store(sv + 2 * H, c_tilde, mask=ok)
    elif VARIANT == 3:  # gru_reset_after: Γ_r ⊙ (W_cc c<t-1> + b_cc)
        b_cc = tl.load(BHH + cols, mask=col_ok, other=0.0).to(zero.dtype)
        pre_u, pre_r, recurrent_c, _ = times_rt(
            tl.load(xp, mask=ok, other=0.0).to(zero.dtype),
            tl.load(xp + H, mask=ok, other=0.0).to(zero.dtype), zero + b_cc[None, :], zero,
            V, v_stride, rows, row_ok, RT, GH, 0, cols, col_ok, H, H, 3, GIVEN, BLOCK_K, PRECISION,
            UPCAST, W0, W1, W2, W3, RESIDENT, K_PAD)
        gamma_u = sigmoid(pre_u)
        gamma_r = sigmoid(pre_r)
        c_tilde = tanh(tl.load(xp + 2 * H, mask=ok, other=0.0).to(zero.dtype)
                       + gamma_r * recurrent_c)
        a = gamma_u * c_tilde + (1.0 - gamma_u) * a_prev
        tl.store(sv, gamma_u, mask=ok)
        tl.store(sv + H, gamma_r, mask=ok)
        tl.store(sv + 2 * H, c_tilde, mask=ok)
        tl.store(sv + 3 * H, recurrent_c, mask=ok)
    else:               # lstm, lstm_peephole
        c_prev = tl.load(SC + wide(prev) * B * H + tile, mask=ok, other=0.0)
        pre_u, pre_f, pre_o, pre_c = times_rt(
            tl.load(xp, mask=ok, other=0.0).to(zero.dtype),
            tl.load(xp + H, mask=ok, other=0.0).to(zero.dtype),
            tl.load(xp + 2 * H, mask=ok, other=0.0).to(zero.dtype),
            tl.load(xp + 3 * H, mask=ok, other=0.0).to(zero.dtype),
            V, v_stride, rows, row_ok, RT, GH, 0, cols, col_ok, H, H, 4, GIVEN, BLOCK_K, PRECISION,
            UPCAST, W0, W1, W2, W3, RESIDENT, K_PAD)
        if VARIANT == 5:   # peepholes: unit k of c reaches only unit k of a gate
            pre_u += tl.load(P + cols, mask=col_ok, other=0.0).to(zero.dtype)[None, :] * c_prev
            pre_f += tl.load(P + H + cols, mask=col_ok, other=0.0).to(zero.dtype)[None, :] * c_prev
        gamma_u = sigmoid(pre_u)
        gamma_f = sigmoid(pre_f)
        c_tilde = tanh(pre_c)
        c = gamma_u * c_tilde + gamma_f * c_prev
        if VARIANT == 5:   # the output gate looks at the new cell c<t>
            pre_o += tl.load(P + 2 * H + cols, mask=col_ok, other=0.0).to(zero.dtype)[None, :] * c
        gamma_o = sigmoid(pre_o)
        a = gamma_o * tanh(c)
        tl.store(sv, gamma_u, mask=ok)
        tl.store(sv + H, gamma_f, mask=ok)
        tl.store(sv + 2 * H, gamma_o, mask=ok)
        tl.store(sv + 3 * H, c_tilde, mask=ok)
        if has_mask:
            m = tl.load(MASK + wide(t) * B + rows, mask=row_ok, other=0) != 0
            c = tl.where(m[:, None], c, c_prev)
        tl.store(SC + wide(nxt) * B * H + tile, c, mask=ok)

    if VARIANT != 2 or PHASE == 1:
        if has_mask:   # past a sequence's end its state is carried unchanged
            m = tl.load(MASK + wide(t) * B + rows, mask=row_ok, other=0) != 0
            a = tl.where(m[:, None], a, a_prev)
        tl.store(SA + wide(nxt) * B * H + tile, a, mask=ok)
        if LOW_COPY:
            tl.store(SAL + wide(nxt) * B * H + tile, a, mask=ok)


# Flags and time indices are run-time values: specialising on them (on values of 1, or
# multiples of 16) would compile each kernel once more for each kind of value.
@triton.jit(do_not_specialize=["t", "prev", "nxt", "save_row", "B", "has_mask"])
def forward_step(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, t, prev, nxt, save_row, B, H,
                 has_mask, PR, pr_stride, VARIANT: tl.constexpr, PHASE: tl.constexpr,
                 G: tl.constexpr, S: tl.constexpr, BLOCK_B: tl.constexpr,
                 BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
                 UPCAST: tl.constexpr, LOW_COPY: tl.constexpr, GIVEN: tl.constexpr):
    """One step (one phase): a program per tile, grid (⌈B/BLOCK_B⌉, ⌈H/BLOCK_H⌉). With GIVEN
    ("gemm" mode) the phase's recurrent product is read from PR (rows of pr_stride)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    forward_tile(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, t, prev, nxt, save_row, B, H,
                 has_mask, PR, pr_stride, rows, cols, VARIANT, PHASE, G, S, BLOCK_B, BLOCK_H,
                 BLOCK_K, PRECISION, UPCAST, LOW_COPY, GIVEN, RT, RT, RT, RT, False, 16)


@triton.jit
def forward_tiles(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, t, prev, nxt, save_row, B, H,
                  has_mask, first, stop, stride, n_h, VARIANT: tl.constexpr, PHASE: tl.constexpr,
                  G: tl.constexpr, S: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                  BLOCK_K: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                  LOW_COPY: tl.constexpr, W0, W1, W2, W3, RESIDENT: tl.constexpr,
                  K_PAD: tl.constexpr):
    """One phase of step t on the tiles first, first + stride, ... < stop (tile = row block ×
    n_h + unit block)."""
    for tile in range(first, stop, stride):
        forward_tile(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, t, prev, nxt, save_row, B, H,
                     has_mask, XP, 0, (tile // n_h) * BLOCK_B + tl.arange(0, BLOCK_B),
                     (tile % n_h) * BLOCK_H + tl.arange(0, BLOCK_H), VARIANT, PHASE, G, S,
                     BLOCK_B, BLOCK_H, BLOCK_K, PRECISION, UPCAST, LOW_COPY, False, W0, W1, W2,
                     W3, RESIDENT, K_PAD)


@triton.jit(do_not_specialize=["T", "B", "has_mask", "reverse", "keep_saved", "n_h", "n_tiles"])
def forward_sequence(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, COUNTER, T, B, H, has_mask,
                     reverse, keep_saved, n_h, n_tiles, VARIANT: tl.constexpr,
                     PHASES: tl.constexpr, GRID_SYNC: tl.constexpr, G: tl.constexpr,
                     S: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
                     BLOCK_K: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                     LOW_COPY: tl.constexpr, RESIDENT: tl.constexpr, K_PAD: tl.constexpr):
    """All T steps in one launch (see tile_range for who does which tiles). RESIDENT: a
    program per tile, whose strips of R^T are loaded here, once (common.py)."""
    first, stop, stride = tile_range(n_h, n_tiles, GRID_SYNC)
    W0, W1, W2, W3 = RT, RT, RT, RT
    if RESIDENT:
        W0, W1, W2, W3 = strips(RT, G * H, False, first, n_h, H, G, BLOCK_H, K_PAD)
    for i in range(0, T):
        t = i + reverse * (T - 1 - 2 * i)        # T - 1 - i backwards
        prev = t + reverse                        # the state rows of SA, as states.py says
        nxt = t + 1 - reverse
        save_row = t * keep_saved                 # row 0, reused, when nothing is kept
        for phase in tl.static_range(PHASES):
            forward_tiles(XP, RT, BHH, P, SA, SAL, SC, SAVED, RA, MASK, t, prev, nxt, save_row,
                          B, H, has_mask, first, stop, stride, n_h, VARIANT, phase, G, S,
                          BLOCK_B, BLOCK_H, BLOCK_K, PRECISION, UPCAST, LOW_COPY, W0, W1, W2,
                          W3, RESIDENT, K_PAD)
            # This phase's state (or Γ_r ⊙ c<t-1>) is read by every unit next.
            sync(COUNTER, (i * PHASES + phase + 1) * tl.num_programs(0), GRID_SYNC)
