"""The triton backend's "gemm" launch mode: each step's recurrent product by cuBLAS.

In the other modes a Triton kernel computes a step's product with R itself, tile by tile. For
large batches and hidden sizes, cuBLAS multiplies faster than those tiles can (float32
without TF32 above all, where Triton's products run on the CUDA cores as plain FMAs): this is
how cuDNN itself runs large problems. So here, before each launch, torch.mm computes what the
phase's kernel would have (float32 accumulation and output for bfloat16 operands, the
tensor cores' way), and the kernel (GIVEN=True) only adds it in and applies the gates.
"""

from __future__ import annotations

import warnings

import torch

from ..cells import Variant


def _into(a, b, out):
    torch.mm(a, b, out_dtype=out.dtype, out=out)


def _copied(a, b, out):   # a torch whose mm takes out_dtype but not with out=
    out.copy_(torch.mm(a, b, out_dtype=out.dtype))


def _widened(a, b, out):   # a torch without out_dtype: the same numbers, slower
    torch.mm(a.to(out.dtype), b.to(out.dtype), out=out)


# The ways to multiply 16-bit operands into a float32 `out` on the GPU, best first; the first
# this torch refuses is dropped, with a warning.
_WAYS = [_into, _copied, _widened]


def product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = a @ b, accumulated and written in out's dtype (float32 for bfloat16 a and b)."""
    if a.dtype == out.dtype:
        return torch.mm(a, b, out=out)
    if not a.is_cuda:   # the interpreter's CPU tensors: torch.mm has no CPU kernel for out_dtype
        _widened(a, b, out)
        return out
    while True:
        try:
            _WAYS[0](a, b, out)
            return out
        except (TypeError, RuntimeError) as error:
            if len(_WAYS) == 1:
                raise
            warnings.warn(f"gatedrnn: {_WAYS[0].__name__} products refused ({error}); the "
                          f"'gemm' mode goes on with {_WAYS[1].__name__} ones", stacklevel=2)
            del _WAYS[0]


class ForwardProducts:
    """Before each forward launch: what the phase reads (a<t-1>, or the lecture GRU's
    Γ_r ⊙ c<t-1> in its second phase) times that phase's columns of R^T."""

    def __init__(self, variant: Variant, SAL: torch.Tensor, RA: torch.Tensor, RT: torch.Tensor,
                 dtype: torch.dtype):
        _, B, H = SAL.shape
        flat = SAL.new_empty(B * variant.num_gates * H, dtype=dtype)
        self.SAL = SAL
        self.buffers = (flat,)   # what a CUDA graph of these products writes (graphs.py)
        if variant.reset_before:   # Γ_u and Γ_r from a<t-1>, then c̃ from Γ_r ⊙ c<t-1>
            self.phases = [(flat[:2 * B * H].view(B, 2 * H), RT[:, :2 * H], None),
                           (flat[2 * B * H:].view(B, H), RT[:, 2 * H:], RA)]
        else:
            self.phases = [(flat.view(B, -1), RT, None)]

    def given(self, phase: int) -> tuple[torch.Tensor, int]:
        """(the product's buffer, its row stride): the launch arguments of `phase`."""
        out = self.phases[phase][0]
        return out, out.shape[1]

    def __call__(self, phase: int, prev: int) -> tuple[torch.Tensor, int]:
        """The product for the launch of `phase` reading state row `prev`, and its stride."""
        out, weights, reads = self.phases[phase]
        product(self.SAL[prev] if reads is None else reads, weights, out)
        return self.given(phase)


class BackwardProducts:
    """Before each backward launch, into one (B, H) buffer: what step t_next sends back through
    R to a<t> (phase 0, and the last launch's d a<0>), or the lecture GRU's (d c̃ pre) R_c of
    step t, which Γ_r's gradient needs (phase 1)."""

    def __init__(self, variant: Variant, d_xp: torch.Tensor, R: torch.Tensor,
                 saved: torch.Tensor, dtype: torch.dtype):
        _, B, _ = d_xp.shape
        H = R.shape[1]
        self.variant, self.d_xp, self.R, self.saved, self.H = variant, d_xp, R, saved, H
        self.out = d_xp.new_empty(B, H, dtype=dtype)
        self.part = self.scaled = None
        if variant.recurrent_bias:
            # the candidate's gradient scaled by Γ_r (in the weights' dtype), and its product:
            # allocated once, not at every step
            self.part = d_xp.new_empty(B, H, dtype=dtype)
            self.scaled = d_xp.new_empty(B, H)
        self.buffers = (self.out, self.part, self.scaled)

    def through_r(self, t_next: int) -> torch.Tensor:
        H, R, d_next = self.H, self.R, self.d_xp[t_next]
        if self.variant.reset_before:   # the candidate's part goes through Γ_r (phase 1)
            return product(d_next[:, :2 * H], R[:2 * H], self.out)
        if self.variant.recurrent_bias:   # the candidate's part: Γ_r ⊙ (R_c a + b)
            product(d_next[:, :2 * H], R[:2 * H], self.out)
            gamma_r = self.saved[t_next][:, H:2 * H]
            # computed in the state's dtype, stored rounded to the weights' as the kernels do
            torch.mul(d_next[:, 2 * H:], gamma_r, out=self.scaled)
            return self.out.add_(product(self.scaled, R[2 * H:], self.part))
        return product(d_next, R, self.out)

    def reset(self, t: int) -> torch.Tensor:
        H = self.H
        return product(self.d_xp[t][:, 2 * H:], self.R[2 * H:], self.out)
