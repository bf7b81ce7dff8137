"""torch.autocast and 16-bit models: every backend runs them, as torch.nn's RNNs do.

Under autocast the recurrence runs in the autocast dtype (bfloat16 here), as torch.nn's cuDNN
RNNs do, except on the compiled CPU kernel, which has no 16-bit path and runs float32. The
parameters stay float32 and get float32 gradients. The GPU test runs the triton backend's
bfloat16 path under CUDA autocast; here the interpreter runs it on CPU tensors.
"""

import pytest
import torch

import gatedrnn
from gatedrnn import kernels
from conftest import needs_triton, randomize, rel_err

BACKENDS = ["loop", "cpu", "reference", pytest.param("triton", marks=needs_triton)]
T, B, I, H = 5, 3, 6, 16


def _model(variant: str, backend: str, seed: int = 0):
    model = gatedrnn.for_variant(variant, I, H, num_layers=2, bidirectional=True,
                                 backend=backend)
    return randomize(model, torch.Generator().manual_seed(seed))


def _train_step(model, x, autocast: bool, backward_inside: bool = False):
    """(output, its dtype, the parameters' gradients) of one forward and backward."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, _ = model(x)
        loss = (out.float() * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum()
        if backward_inside:
            loss.backward()
    if not backward_inside:
        loss.backward()
    return out.float(), out.dtype, [p.grad for p in model.parameters()]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_autocast_runs_every_backend_close_to_float32(variant, backend):
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(1))
    model = _model(variant, backend)
    want_out, _, want_grads = _train_step(model, x, autocast=False)
    out, dtype, grads = _train_step(model, x, autocast=True)
    # The compiled CPU kernel runs float32 (after autocast's bfloat16 input projection).
    assert dtype == (torch.float32 if backend == "cpu" else torch.bfloat16)
    assert rel_err(out, want_out) <= 3e-2
    for (name, p), g, w in zip(model.named_parameters(), grads, want_grads):
        assert g.dtype == p.dtype == torch.float32, name
        assert rel_err(g, w) <= 5e-2, name


@pytest.mark.parametrize("backend", ["cpu", "loop"])
def test_capture_inside_autocast_gives_the_gates_of_the_forward(backend):
    model = _model("lstm", backend)
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _, gates = model.capture(x)
        want, _ = model(x)
    assert torch.equal(out, want)
    assert gates[0][0]["a"].dtype == (torch.float32 if backend == "cpu" else torch.bfloat16)


def test_a_backward_inside_autocast_runs_the_backends_products_as_outside():
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(2))
    model = _model("lstm", "cpu")
    _, _, outside = _train_step(model, x, autocast=True)
    _, _, inside = _train_step(model, x, autocast=True, backward_inside=True)
    for g, w in zip(inside, outside):
        assert rel_err(g, w) <= 1e-6


def test_16_bit_states_from_an_earlier_call_are_taken_inside_autocast():
    model = _model("lstm", "loop")
    x = torch.randn(T, B, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = model(x)
        assert state[0].dtype == torch.bfloat16
        out, _ = model(out[..., :I].contiguous(), state)   # bfloat16 input and states
    assert out.dtype == torch.bfloat16
    with pytest.raises(TypeError, match=r"hx\[0\] \(a0\): expected dtype torch.float32 "
                                        r"\(the parameters'\), got torch.bfloat16"):
        model(x, state)   # outside autocast the dtypes must match, as before


@pytest.mark.parametrize("backend", ["cpu", "loop"])
def test_autocast_leaves_a_float64_model_alone(backend):
    model = _model("gru", backend).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    want, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = model(x)
        again, _ = model(x, state)   # its float64 state taken back
    assert out.dtype == again.dtype == torch.float64
    assert torch.equal(out, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_16_bit_model_on_the_cpu_runs_the_loop_backend(dtype):
    assert kernels.resolve(None, torch.device("cpu"), dtype) == "loop"
    assert kernels.resolve(None, torch.device("cpu"), torch.float32) in ("cpu", "loop")
    model = _model("gru", None).to(dtype)
    want = _model("gru", "loop").to(dtype)
    x = torch.randn(T, B, I, dtype=dtype)
    assert torch.equal(model(x)[0], want(x)[0])


def test_the_cpu_backend_asked_for_by_name_refuses_16_bit():
    model = _model("gru", "cpu").to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"backend: 'cpu' runs float32 and float64 tensors, "
                                         r"got torch.bfloat16 \(the 'loop' backend runs any"):
        model(torch.randn(T, B, I, dtype=torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["gru", "lstm"])
def test_cuda_autocast_runs_the_triton_backend_in_bfloat16(variant):
    x = torch.randn(T, B, I, device="cuda")
    model = _model(variant, "triton").cuda()
    want = _model(variant, "triton").cuda().to(torch.float64)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, _ = model(x)
    assert out.dtype == torch.bfloat16
    assert rel_err(out.float(), want(x.double())[0]) <= 3e-2


@needs_triton
def test_autocast_gives_the_triton_backend_16_bit_weights(monkeypatch):
    """The triton backend's bfloat16 path (float32 state, tensor-core products), not float32
    weights against bfloat16 projections."""
    from gatedrnn.kernels import triton as triton_backend
    planned, plan = [], triton_backend.plan

    def spy(B, H, dtype, variant):
        planned.append(dtype)
        return plan(B, H, dtype, variant)

    monkeypatch.setattr(triton_backend, "plan", spy)
    _train_step(_model("lstm", "triton"), torch.randn(T, B, I), autocast=True)
    assert planned and set(planned) == {torch.bfloat16}
