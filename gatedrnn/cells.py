"""The cell variants, each defined once: gates, state, one step forward and backward.

Every PyTorch code path (the "loop" backend, the single-step cell modules) runs these functions;
the NumPy reference (gatedrnn.reference) is an independent second copy in textbook form, and the
compiled kernels are tested against both.

Dimension letters:
    T time steps   B batch   I input features   H hidden units
    G gate blocks of the variant (len(Variant.gates))   S blocks a step saves for its backward

Layout shared by every backend:
    xp_t   (B, G*H)  input projection of one step, W_x x<t> + b, gate blocks in `gates` order
    R      (G*H, H)  recurrent weights; row block k multiplies the state feeding gate k
    b_hh   (H,)      reset-after GRU only: the recurrent candidate bias b_cc, inside Γ_r ⊙ (...)
    p      (3, H)    peephole LSTM only: p_u, p_f, p_o
    saved  (B, S*H)  what a step keeps for its backward (gate activations, see each variant)

For the GRU family the lecture's state is c<t> and a<t> = c<t>: the generic code calls the state
`a` and passes `c = None`; only the LSTM carries a separate memory cell c<t>.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _blocks(z: Tensor, n: int) -> tuple[Tensor, ...]:
    return z.chunk(n, dim=-1)


def _mm(v: Tensor, W: Tensor) -> Tensor:
    """v W^T: a batch of row vectors times a matrix stored (out, in), as in torch.nn.Linear."""
    return v @ W.t()


def _dsigmoid(gamma: Tensor) -> Tensor:
    return gamma * (1 - gamma)


def _dtanh(t: Tensor) -> Tensor:
    return 1 - t * t


class Variant:
    """One cell variant: its data and its element-wise step, forward and backward.

    Subclasses set the class attributes and implement `step`, `step_backward` and, where the
    recurrent product is not simply R·a<t-1>, `param_grads`.
    """

    name: str
    equations: str
    gates: tuple[str, ...]          # gate blocks in stacked order (names from the lecture)
    saved_blocks: int               # S: H-wide blocks a step saves
    saved_names: tuple[str, ...]    # their names in the lecture's notation (gamma_u, c_tilde, ...)
    family: str                     # "rnn", "gru" or "lstm": gatedrnn.RNN, GRU or LSTM runs it
    has_cell: bool = False          # LSTM: a<t> and c<t> differ
    reset_before: bool = False      # lecture GRU: Γ_r ⊙ c<t-1> feeds the candidate's product
    peepholes: tuple[str, ...] = () # gates with a peephole p_• ⊙ c
    recurrent_bias: bool = False    # reset-after GRU: b_cc stays inside Γ_r ⊙ (W_cc c + b_cc)
    activation: str = "tanh"        # the RNN's g in a<t> = g(...): "tanh" or "relu"

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def structure(self) -> tuple:
        """What a compiled kernel's element-wise step must match to run this variant."""
        return (self.gates, self.saved_blocks, self.has_cell, self.peepholes,
                self.reset_before, self.recurrent_bias, self.activation)

    # The cell as a picture (gatedrnn diagram draws it): (name, operation, inputs) in order of
    # computation. Operations: "σ", "tanh", "relu" (a layer on its inputs, or the plain function
    # for a single state input), "⊙", "+", "1−". Inputs "x", "a_prev", "c_prev", earlier names; a
    # "peephole:" prefix marks an element-wise peephole path.
    diagram: tuple = ()

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        """One time step. Returns (a, c, saved); c is None for single-state variants."""
        raise NotImplementedError

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        """Gradients of one step, given those of its outputs a (and c).

        Returns (d_xp_t, d_a_prev, d_c_prev). Linear in (d_a, d_c), so zero incoming gradients
        give zero outgoing ones: masked steps rely on that.
        """
        raise NotImplementedError

    def param_grads(self, d_xp, A_prev, C_prev, C, saved):
        """Gradients of R, b_hh and p from all steps at once (large GEMMs after the time loop).

        Arguments are flattened over time and batch: d_xp (N, G*H), A_prev, C_prev, C (N, H),
        saved (N, S*H). d_xp and A_prev are in the weights' dtype; a backend may keep C_prev,
        C and saved wider (float32 for bfloat16), so what is read of them is cast here.
        Returns (d_R, d_b_hh or None, d_p or None).
        """
        return d_xp.t() @ A_prev, None, None

    def __repr__(self) -> str:
        return f"Variant({self.name!r})"


class RNN(Variant):
    name = "rnn"
    family = "rnn"
    equations = "a<t> = tanh(W_a[a<t-1>, x<t>] + b_a)"
    gates = ("a",)
    saved_blocks = 0   # a<t> itself is all the backward needs
    saved_names = ()
    diagram = (("a", "tanh", ("a_prev", "x")),)

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        a = torch.tanh(xp_t + _mm(a_prev, R))
        return a, None, xp_t.new_empty(xp_t.shape[0], 0)

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        d_pre = d_a * _dtanh(a)
        return d_pre, d_pre @ R, None


class RNNReLU(RNN):
    name = "rnn_relu"
    equations = "a<t> = relu(W_a[a<t-1>, x<t>] + b_a)"
    activation = "relu"
    diagram = (("a", "relu", ("a_prev", "x")),)

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        a = torch.relu(xp_t + _mm(a_prev, R))
        return a, None, xp_t.new_empty(xp_t.shape[0], 0)

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        d_pre = torch.where(a > 0, d_a, torch.zeros_like(d_a))
        return d_pre, d_pre @ R, None


class GRUSimple(Variant):
    name = "gru_simple"
    family = "gru"
    equations = ("c~<t> = tanh(W_c[c<t-1>, x<t>] + b_c); Γ_u = σ(W_u[c<t-1>, x<t>] + b_u); "
                 "c<t> = Γ_u ⊙ c~<t> + (1 − Γ_u) ⊙ c<t-1>; a<t> = c<t>")
    gates = ("u", "c")
    saved_blocks = 2   # Γ_u, c̃
    saved_names = ("gamma_u", "c_tilde")
    diagram = (("c_tilde", "tanh", ("c_prev", "x")), ("gamma_u", "σ", ("c_prev", "x")),
               ("keep", "1−", ("gamma_u",)), ("old", "⊙", ("keep", "c_prev")),
               ("new", "⊙", ("gamma_u", "c_tilde")), ("c", "+", ("old", "new")))

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        c_prev = a_prev
        pre_u, pre_c = _blocks(xp_t + _mm(c_prev, R), 2)
        gamma_u = torch.sigmoid(pre_u)
        c_tilde = torch.tanh(pre_c)
        c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
        return c, None, torch.cat([gamma_u, c_tilde], -1)

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        c_prev, d_c = a_prev, d_a
        gamma_u, c_tilde = _blocks(saved, 2)
        d_pre_u = d_c * (c_tilde - c_prev) * _dsigmoid(gamma_u)
        d_pre_c = d_c * gamma_u * _dtanh(c_tilde)
        d_xp = torch.cat([d_pre_u, d_pre_c], -1)
        return d_xp, d_c * (1 - gamma_u) + d_xp @ R, None


class GRU(Variant):
    name = "gru"
    family = "gru"
    reset_before = True
    equations = ("c~<t> = tanh(W_c[Γ_r ⊙ c<t-1>, x<t>] + b_c); Γ_u = σ(W_u[c<t-1>, x<t>] + b_u); "
                 "Γ_r = σ(W_r[c<t-1>, x<t>] + b_r); c<t> = Γ_u ⊙ c~<t> + (1 − Γ_u) ⊙ c<t-1>; "
                 "a<t> = c<t>")
    gates = ("u", "r", "c")
    saved_blocks = 3   # Γ_u, Γ_r, c̃
    saved_names = ("gamma_u", "gamma_r", "c_tilde")
    diagram = (("gamma_r", "σ", ("c_prev", "x")), ("gamma_u", "σ", ("c_prev", "x")),
               ("relevant", "⊙", ("gamma_r", "c_prev")), ("c_tilde", "tanh", ("relevant", "x")),
               ("keep", "1−", ("gamma_u",)), ("old", "⊙", ("keep", "c_prev")),
               ("new", "⊙", ("gamma_u", "c_tilde")), ("c", "+", ("old", "new")))

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        c_prev = a_prev
        H = c_prev.shape[-1]
        xp_u, xp_r, xp_c = _blocks(xp_t, 3)
        # Γ_r acts before the recurrent product: two products per step, the second waits on Γ_r.
        hp_u, hp_r = _blocks(_mm(c_prev, R[: 2 * H]), 2)
        gamma_u = torch.sigmoid(xp_u + hp_u)
        gamma_r = torch.sigmoid(xp_r + hp_r)
        c_tilde = torch.tanh(xp_c + _mm(gamma_r * c_prev, R[2 * H:]))
        c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
        return c, None, torch.cat([gamma_u, gamma_r, c_tilde], -1)

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        c_prev, d_c = a_prev, d_a
        H = c_prev.shape[-1]
        gamma_u, gamma_r, c_tilde = _blocks(saved, 3)
        d_pre_u = d_c * (c_tilde - c_prev) * _dsigmoid(gamma_u)
        d_pre_c = d_c * gamma_u * _dtanh(c_tilde)
        d_reset_c = d_pre_c @ R[2 * H:]          # gradient of Γ_r ⊙ c<t-1>
        d_pre_r = d_reset_c * c_prev * _dsigmoid(gamma_r)
        d_pre_ur = torch.cat([d_pre_u, d_pre_r], -1)
        d_c_prev = d_c * (1 - gamma_u) + d_reset_c * gamma_r + d_pre_ur @ R[: 2 * H]
        return torch.cat([d_pre_ur, d_pre_c], -1), d_c_prev, None

    def param_grads(self, d_xp, A_prev, C_prev, C, saved):
        H = A_prev.shape[-1]
        gamma_r = saved[:, H: 2 * H].to(A_prev.dtype)
        d_R_ur = d_xp[:, : 2 * H].t() @ A_prev
        d_R_c = d_xp[:, 2 * H:].t() @ (gamma_r * A_prev)
        return torch.cat([d_R_ur, d_R_c], 0), None, None


class GRUResetAfter(Variant):
    name = "gru_reset_after"
    family = "gru"
    equations = ("as gru, but c~<t> = tanh(W_cx x<t> + b_c + Γ_r ⊙ (W_cc c<t-1> + b_cc)) "
                 "(cuDNN, torch.nn.GRU, ONNX linear_before_reset=1)")
    gates = ("u", "r", "c")
    saved_blocks = 4   # Γ_u, Γ_r, c̃, W_cc c<t-1> + b_cc
    saved_names = ("gamma_u", "gamma_r", "c_tilde", "recurrent_c")
    diagram = (("gamma_r", "σ", ("c_prev", "x")), ("gamma_u", "σ", ("c_prev", "x")),
               ("recurrent_c", "linear", ("c_prev",)),
               ("relevant", "⊙", ("gamma_r", "recurrent_c")),
               ("c_tilde", "tanh", ("relevant", "x")),
               ("keep", "1−", ("gamma_u",)), ("old", "⊙", ("keep", "c_prev")),
               ("new", "⊙", ("gamma_u", "c_tilde")), ("c", "+", ("old", "new")))
    recurrent_bias = True

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        c_prev = a_prev
        xp_u, xp_r, xp_c = _blocks(xp_t, 3)
        hp_u, hp_r, hp_c = _blocks(_mm(c_prev, R), 3)
        if b_hh is not None:
            hp_c = hp_c + b_hh
        gamma_u = torch.sigmoid(xp_u + hp_u)
        gamma_r = torch.sigmoid(xp_r + hp_r)
        c_tilde = torch.tanh(xp_c + gamma_r * hp_c)
        c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
        return c, None, torch.cat([gamma_u, gamma_r, c_tilde, hp_c], -1)

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        c_prev, d_c = a_prev, d_a
        gamma_u, gamma_r, c_tilde, hp_c = _blocks(saved, 4)
        d_pre_u = d_c * (c_tilde - c_prev) * _dsigmoid(gamma_u)
        d_pre_c = d_c * gamma_u * _dtanh(c_tilde)
        d_pre_r = d_pre_c * hp_c * _dsigmoid(gamma_r)
        d_hp = torch.cat([d_pre_u, d_pre_r, d_pre_c * gamma_r], -1)
        d_c_prev = d_c * (1 - gamma_u) + d_hp @ R
        return torch.cat([d_pre_u, d_pre_r, d_pre_c], -1), d_c_prev, None

    def param_grads(self, d_xp, A_prev, C_prev, C, saved):
        H = A_prev.shape[-1]
        gamma_r = saved[:, H: 2 * H].to(A_prev.dtype)
        d_hp_c = d_xp[:, 2 * H:] * gamma_r
        d_hp = torch.cat([d_xp[:, : 2 * H], d_hp_c], -1)
        return d_hp.t() @ A_prev, d_hp_c.sum(0), None


class LSTM(Variant):
    name = "lstm"
    family = "lstm"
    equations = ("c~<t> = tanh(W_c[a<t-1>, x<t>] + b_c); Γ_u, Γ_f, Γ_o = σ(W_•[a<t-1>, x<t>] + b_•); "
                 "c<t> = Γ_u ⊙ c~<t> + Γ_f ⊙ c<t-1>; a<t> = Γ_o ⊙ tanh(c<t>)")
    gates = ("u", "f", "o", "c")
    saved_blocks = 4   # Γ_u, Γ_f, Γ_o, c̃  (tanh(c<t>) is recomputed from c<t>)
    saved_names = ("gamma_u", "gamma_f", "gamma_o", "c_tilde")
    diagram = (("c_tilde", "tanh", ("a_prev", "x")), ("gamma_u", "σ", ("a_prev", "x")),
               ("gamma_f", "σ", ("a_prev", "x")), ("old", "⊙", ("gamma_f", "c_prev")),
               ("new", "⊙", ("gamma_u", "c_tilde")), ("c", "+", ("old", "new")),
               ("gamma_o", "σ", ("a_prev", "x")), ("squashed", "tanh", ("c",)),
               ("a", "⊙", ("gamma_o", "squashed")))
    has_cell = True

    def step(self, xp_t, R, a_prev, c_prev, b_hh=None, p=None):
        pre_u, pre_f, pre_o, pre_c = _blocks(xp_t + _mm(a_prev, R), 4)
        if p is not None:   # peepholes: the k-th unit of c only reaches the k-th unit of a gate
            pre_u = pre_u + p[0] * c_prev
            pre_f = pre_f + p[1] * c_prev
        gamma_u = torch.sigmoid(pre_u)
        gamma_f = torch.sigmoid(pre_f)
        c_tilde = torch.tanh(pre_c)
        c = gamma_u * c_tilde + gamma_f * c_prev
        if p is not None:   # the output gate looks at the new cell c<t>
            pre_o = pre_o + p[2] * c
        gamma_o = torch.sigmoid(pre_o)
        a = gamma_o * torch.tanh(c)
        return a, c, torch.cat([gamma_u, gamma_f, gamma_o, c_tilde], -1)

    def step_backward(self, d_a, d_c, R, a_prev, c_prev, a, c, saved, b_hh=None, p=None):
        gamma_u, gamma_f, gamma_o, c_tilde = _blocks(saved, 4)
        tanh_c = torch.tanh(c)
        d_pre_o = d_a * tanh_c * _dsigmoid(gamma_o)
        d_c = d_c + d_a * gamma_o * _dtanh(tanh_c)
        if p is not None:
            d_c = d_c + d_pre_o * p[2]
        d_pre_u = d_c * c_tilde * _dsigmoid(gamma_u)
        d_pre_f = d_c * c_prev * _dsigmoid(gamma_f)
        d_pre_c = d_c * gamma_u * _dtanh(c_tilde)
        d_c_prev = d_c * gamma_f
        if p is not None:
            d_c_prev = d_c_prev + d_pre_u * p[0] + d_pre_f * p[1]
        d_xp = torch.cat([d_pre_u, d_pre_f, d_pre_o, d_pre_c], -1)
        return d_xp, d_xp @ R, d_c_prev


class LSTMPeephole(LSTM):
    name = "lstm_peephole"
    equations = ("as lstm, plus Γ_u += p_u ⊙ c<t-1>, Γ_f += p_f ⊙ c<t-1>, Γ_o += p_o ⊙ c<t> "
                 "inside the σ (Gers & Schmidhuber 2000)")
    peepholes = ("u", "f", "o")
    diagram = tuple(
        (name, op, inputs + (("peephole:c_prev",) if name in ("gamma_u", "gamma_f") else
                             ("peephole:c",) if name == "gamma_o" else ()))
        for name, op, inputs in LSTM.diagram)

    def param_grads(self, d_xp, A_prev, C_prev, C, saved):
        H = A_prev.shape[-1]
        d_p = torch.stack([(d_xp[:, :H] * C_prev).sum(0),
                           (d_xp[:, H: 2 * H] * C_prev).sum(0),
                           (d_xp[:, 2 * H: 3 * H] * C).sum(0)])
        return d_xp.t() @ A_prev, None, d_p.to(A_prev.dtype)


VARIANTS: dict[str, Variant] = {v.name: v for v in
                                (RNN(), RNNReLU(), GRUSimple(), GRU(), GRUResetAfter(), LSTM(),
                                 LSTMPeephole())}


def get_variant(variant: str | Variant) -> Variant:
    """The Variant named `variant` (or `variant` itself), with a clear error for unknown names."""
    if isinstance(variant, Variant):
        return variant
    if not isinstance(variant, str):
        raise TypeError(f"variant: expected a str naming one of {sorted(VARIANTS)}, "
                        f"got {type(variant).__name__}")
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}") from None
