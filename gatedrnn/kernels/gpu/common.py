"""Activations and the tile products shared by the forward and backward kernels.

A program owns a tile of the (B, H) state: rows `rows` of the batch, hidden units `cols`.
Its share of the recurrent product is a sum over all H (forward) or all G*H (backward)
units of the previous state or gradient, so it reads whole rows of those and a column
strip of the weights, BLOCK_K at a time, through tl.dot with float32 (float64) accumulation.
With RESIDENT (the "resident" launch: one program per tile for the whole sequence) the strips
are loaded once, before the time loop (`strips`), and passed in as W0..W3, one per gate: Triton
keeps such a loop-invariant tl.dot operand in shared memory, so R is read from memory once per
sequence instead of once per step (Persistent RNNs, Diamos et al. 2016). K_PAD, the power of
two at or above H, is then the reduction's length, masked past H.

UPCAST: the Triton interpreter (TRITON_INTERPRET=1, how CI tests these kernels on the CPU)
multiplies bfloat16 operands wrongly and rounds float32 to bfloat16 differently from the GPU,
so there the operands of tl.dot are taken to the state's dtype instead. On the GPU the state is
rounded to the weights' dtype, so bfloat16 weights run on the tensor cores.
"""

import triton
import triton.language as tl


@triton.jit
def sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def tanh(z):
    # exp of a non-positive number only: no overflow for large |z|.
    e = tl.exp(-2.0 * tl.abs(z))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(z < 0, -t, t)


@triton.jit
def _dot(v, w, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    if UPCAST:
        return tl.dot(v, w.to(v.dtype), acc, input_precision="ieee", out_dtype=acc.dtype)
    return tl.dot(v.to(w.dtype), w, acc, input_precision=PRECISION, out_dtype=acc.dtype)


@triton.jit
def strip(W, w_stride, row0, col0, cols, col_ok, K, K_PAD: tl.constexpr):
    """W[row0 + k, col0 + cols] for k < K_PAD, zero from K on: one gate's strip of a weight
    matrix for the program whose units are `cols`."""
    ks = tl.arange(0, K_PAD)
    return tl.load(W + (row0 + ks[:, None]) * w_stride + col0 + cols[None, :],
                   mask=(ks < K)[:, None] & col_ok[None, :], other=0.0)


@triton.jit
def strips(W, w_stride, gate_rows: tl.constexpr, first, n_h, H, G: tl.constexpr,
           BLOCK_H: tl.constexpr, K_PAD: tl.constexpr):
    """The G strips (W0..W3; the unused ones repeat W0) of tile `first`'s units: of R^T (H, G*H)
    with the gates along the columns (gate_rows False, the forward), or of R (G*H, H) with the
    gates along the rows (gate_rows True, the backward)."""
    cols = (first % n_h) * BLOCK_H + tl.arange(0, BLOCK_H)
    col_ok = cols < H
    if gate_rows:   # where gate g starts: row g·H of R, column g·H of R^T
        row_step = H
        col_step = 0
    else:
        row_step = 0
        col_step = H
    w0 = strip(W, w_stride, 0, 0, cols, col_ok, H, K_PAD)
    w1 = w0
    w2 = w0
    w3 = w0
    if G > 1:
        w1 = strip(W, w_stride, row_step, col_step, cols, col_ok, H, K_PAD)
    if G > 2:
        w2 = strip(W, w_stride, 2 * row_step, 2 * col_step, cols, col_ok, H, K_PAD)
    if G > 3:
        w3 = strip(W, w_stride, 3 * row_step, 3 * col_step, cols, col_ok, H, K_PAD)
    return w0, w1, w2, w3


@triton.jit
def _rows(V, v_stride, rows, row_ok, K, K_PAD: tl.constexpr):
    """V[rows, :K_PAD], zero from K on."""
    ks = tl.arange(0, K_PAD)
    return tl.load(V + rows[:, None] * v_stride + ks[None, :],
                   mask=row_ok[:, None] & (ks < K)[None, :], other=0.0)


@triton.jit
def times_rt(acc0, acc1, acc2, acc3, V, v_stride, rows, row_ok, RT, rt_stride, col0, cols, col_ok,
             K, H, N: tl.constexpr, GIVEN: tl.constexpr, BLOCK_K: tl.constexpr,
             PRECISION: tl.constexpr, UPCAST: tl.constexpr, W0, W1, W2, W3,
             RESIDENT: tl.constexpr, K_PAD: tl.constexpr):
    """(acc_g + V[rows, :K] @ RT[:K, col0 + g·H + cols] for the first N gates g; the others
    returned as they came): the forward's v R_g^T for up to four gates in one pass over V,
    with RT = R^T (H, G*H) so that every load runs along contiguous memory.
    GIVEN ("gemm" mode): that product was computed before the launch (cuBLAS) into V, gate g
    at columns g·H + cols of rows of v_stride elements, and is only added.
    RESIDENT: RT's strips are W0..W3 already, in the order of the gates used here."""
    if GIVEN:
        ok = row_ok[:, None] & col_ok[None, :]
        given = V + rows[:, None] * v_stride + cols[None, :]
        acc0 += tl.load(given, mask=ok, other=0.0)
        if N > 1:
            acc1 += tl.load(given + H, mask=ok, other=0.0)
        if N > 2:
            acc2 += tl.load(given + 2 * H, mask=ok, other=0.0)
        if N > 3:
            acc3 += tl.load(given + 3 * H, mask=ok, other=0.0)
    elif RESIDENT:
        v = _rows(V, v_stride, rows, row_ok, K, K_PAD).to(acc0.dtype)
        acc0 = _dot(v, W0, acc0, PRECISION, UPCAST)
        if N > 1:
            acc1 = _dot(v, W1, acc1, PRECISION, UPCAST)
        if N > 2:
            acc2 = _dot(v, W2, acc2, PRECISION, UPCAST)
        if N > 3:
            acc3 = _dot(v, W3, acc3, PRECISION, UPCAST)
    else:
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < K
            v = tl.load(V + rows[:, None] * v_stride + ks[None, :],
                        mask=row_ok[:, None] & k_ok[None, :], other=0.0).to(acc0.dtype)
            w_ptr = RT + ks[:, None] * rt_stride + col0 + cols[None, :]
            w_ok = k_ok[:, None] & col_ok[None, :]
            acc0 = _dot(v, tl.load(w_ptr, mask=w_ok, other=0.0), acc0, PRECISION, UPCAST)
            if N > 1:
                acc1 = _dot(v, tl.load(w_ptr + H, mask=w_ok, other=0.0), acc1, PRECISION, UPCAST)
            if N > 2:
                acc2 = _dot(v, tl.load(w_ptr + 2 * H, mask=w_ok, other=0.0), acc2, PRECISION,
                            UPCAST)
            if N > 3:
                acc3 = _dot(v, tl.load(w_ptr + 3 * H, mask=w_ok, other=0.0), acc3, PRECISION,
                            UPCAST)
    return acc0, acc1, acc2, acc3


@triton.jit
def _times_strip(acc, V, v_stride, SCALE, scale_stride, rows, row_ok, W, H,
                 SCALED: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                 K_PAD: tl.constexpr):
    v = _rows(V, v_stride, rows, row_ok, H, K_PAD)
    if SCALED:
        v = v * _rows(SCALE, scale_stride, rows, row_ok, H, K_PAD)
    return _dot(v.to(acc.dtype), W, acc, PRECISION, UPCAST)


@triton.jit
def times_r(acc, V, v_stride, SCALE, scale_stride, rows, row_ok, R, r_row0, cols, col_ok, K, H,
            SCALED: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
            UPCAST: tl.constexpr, W0, W1, W2, W3, N: tl.constexpr, RESIDENT: tl.constexpr,
            K_PAD: tl.constexpr):
    """acc + (V[rows, :K] (⊙ SCALE[rows, :K] if SCALED)) @ R[r_row0 : r_row0 + K, cols]:
    the backward's gradient through the recurrent product, R (G*H, H) as stored.
    RESIDENT: K = N·H, and R's strips of those N gates are W0..W3 already."""
    if RESIDENT:
        acc = _times_strip(acc, V, v_stride, SCALE, scale_stride, rows, row_ok, W0, H, SCALED,
                           PRECISION, UPCAST, K_PAD)
        if N > 1:
            acc = _times_strip(acc, V + H, v_stride, SCALE + H, scale_stride, rows, row_ok, W1,
                               H, SCALED, PRECISION, UPCAST, K_PAD)
        if N > 2:
            acc = _times_strip(acc, V + 2 * H, v_stride, SCALE + 2 * H, scale_stride, rows,
                               row_ok, W2, H, SCALED, PRECISION, UPCAST, K_PAD)
        if N > 3:
            acc = _times_strip(acc, V + 3 * H, v_stride, SCALE + 3 * H, scale_stride, rows,
                               row_ok, W3, H, SCALED, PRECISION, UPCAST, K_PAD)
    else:
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < K
            vmask = row_ok[:, None] & k_ok[None, :]
            v = tl.load(V + rows[:, None] * v_stride + ks[None, :], mask=vmask, other=0.0)
            if SCALED:
                v = v * tl.load(SCALE + rows[:, None] * scale_stride + ks[None, :], mask=vmask,
                                other=0.0)
            w = tl.load(R + (r_row0 + ks[:, None]) * H + cols[None, :],
                        mask=k_ok[:, None] & col_ok[None, :], other=0.0)
            acc = _dot(v.to(acc.dtype), w, acc, PRECISION, UPCAST)
    return acc


@triton.jit
def grid_barrier(COUNTER, target):
    """Wait until COUNTER, which every program of the launch increments once per barrier,
    reaches `target` (barriers so far × programs). Only sound when all programs are resident
    at once: the persistent launches have at most one program per multiprocessor.

    As CUDA's grid sync: a block barrier, then one thread releases its arrival and spins on an
    acquiring read (Triton issues a scalar atomic from one thread and broadcasts the result;
    the PTX is atom.release.gpu, then ld.acquire.gpu), then a block barrier. The acquire orders
    every thread's later loads after the other programs' stores (it drops stale L1 lines)."""
    tl.debug_barrier()   # every thread of this program has issued its stores
    tl.atomic_add(COUNTER, 1, sem="release")
    arrived = tl.atomic_add(COUNTER, 0, sem="acquire")
    while arrived < target:
        arrived = tl.atomic_add(COUNTER, 0, sem="acquire")
    tl.debug_barrier()


@triton.jit
def sync(COUNTER, target, GRID_SYNC: tl.constexpr):
    """Between the phases of a one-launch sequence: the whole grid's barrier, or only this
    program's where no program reads another's tiles."""
    if GRID_SYNC:
        grid_barrier(COUNTER, target)
    else:
        tl.debug_barrier()


@triton.jit
def tile_range(n_h, n_tiles, GRID_SYNC: tl.constexpr):
    """(first, stop, stride) of the tiles (row block × n_h + unit block) a program of a
    one-launch sequence owns at every step. Without GRID_SYNC ("sequence" mode) a program owns
    one block of rows, all its units, and since rows never read each other's state it never
    waits for another program. With GRID_SYNC ("persistent" mode: at most one program per
    multiprocessor, all resident) program p owns tiles p, p + programs, ... over the whole chip,
    and every phase ends at the grid-wide barrier (Persistent RNNs, Diamos et al. 2016)."""
    pid = tl.program_id(0)
    if GRID_SYNC:
        return pid, n_tiles, tl.num_programs(0)
    return pid * n_h, pid * n_h + n_h, 1
