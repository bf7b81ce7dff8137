"""Layers and cells: stacking, directions, lengths, packing, cells, gates() and initialisation."""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gatedrnn
from gatedrnn.cells import get_variant
from gatedrnn.layout import to_lecture

from conftest import (TOLERANCE, VARIANTS, flat_outputs, layer_module, needs_triton,
                      outputs_and_grads, random_like_outputs, randomize, rel_err)

T, B, I, H = 5, 3, 4, 3
LENGTHS = [5, 2, 4]


def _model(variant, seed=0, dtype=torch.float64, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return randomize(layer_module(variant, I, H, dtype=dtype, **kwargs), g), g


def _states(module, g, batch=B, dtype=torch.float64):
    n = module.num_layers * module.directions
    a0 = torch.randn(n, batch, H, generator=g, dtype=dtype, requires_grad=True)
    c0 = torch.randn(n, batch, H, generator=g, dtype=dtype, requires_grad=True)
    return (a0, c0) if gatedrnn.get_variant(module.variant).has_cell else (a0,)


def _hx(states):
    return tuple(states) if len(states) == 2 else states[0]


@pytest.mark.parametrize("backend", ["loop", "cpu"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_stacked_bidirectional_backend_matches_reference_backend(variant, backend):
    model, g = _model(variant, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(B, T, I, generator=g, dtype=torch.float64, requires_grad=True)
    states = _states(model, g)
    weights = random_like_outputs(model, (x, _hx(states)), g, lengths=LENGTHS)
    results = {}
    for name in (backend, "reference"):
        model.backend = name
        results[name] = outputs_and_grads(model, (x, _hx(states)), weights, x, *states,
                                          lengths=LENGTHS)
    (outs, grads), (ref_outs, ref_grads) = results[backend], results["reference"]
    for o, e in zip(outs, ref_outs):
        assert rel_err(o, e) <= TOLERANCE[torch.float64]
    assert outs[0][1, LENGTHS[1]:].abs().max() == 0, "outputs past a sequence's end are zero"
    for name in grads:
        assert rel_err(grads[name], ref_grads[name]) <= TOLERANCE[torch.float64], name


@pytest.mark.parametrize("variant", VARIANTS)
def test_stepping_a_cell_by_hand_equals_the_layer(variant):
    layer, g = _model(variant)
    v = get_variant(variant)
    cell_class = {"lstm": gatedrnn.LSTMCell, "rnn": gatedrnn.RNNCell}.get(v.family,
                                                                           gatedrnn.GRUCell)
    kwargs = ({"peephole": bool(v.peepholes)} if v.family == "lstm"
              else {"nonlinearity": v.activation} if v.family == "rnn" else {"variant": variant})
    cell = cell_class(I, H, dtype=torch.float64, **kwargs)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    assert cell.gates().keys() == layer.gates().keys()

    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    states = [s.detach()[0] for s in _states(layer, g)]
    out, final = layer(x, _hx([s.unsqueeze(0) for s in states]))
    state = tuple(states)
    for t in range(T):
        state = cell(x[t], state if len(state) == 2 else state[0])
        state = state if isinstance(state, tuple) else (state,)
        torch.testing.assert_close(state[0], out[t], rtol=1e-12, atol=1e-12)
    final = final if isinstance(final, tuple) else (final,)
    for s, f in zip(state, final):
        torch.testing.assert_close(s, f[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lengths_equal_packed_equal_each_sequence_alone(variant):
    model, g = _model(variant, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    states = _states(model, g)
    weights = random_like_outputs(model, (x, _hx(states)), g, lengths=LENGTHS)
    weights[0] *= (torch.arange(T)[:, None] < torch.tensor(LENGTHS)).unsqueeze(-1)

    outs, grads = outputs_and_grads(model, (x, _hx(states)), weights, lengths=LENGTHS)

    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    result = model(packed, _hx(states))
    assert isinstance(result[0], type(packed))
    assert torch.equal(result[0].sorted_indices, packed.sorted_indices)
    padded, packed_lengths = pad_packed_sequence(result[0], total_length=T)
    assert packed_lengths.tolist() == LENGTHS
    for o, e in zip([padded] + flat_outputs(result)[1:], outs):
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)

    alone_grads = {k: torch.zeros_like(v) for k, v in grads.items()}
    for b, n in enumerate(LENGTHS):
        w_b = [weights[0][:n, b:b + 1]] + [w[:, b:b + 1] for w in weights[1:]]
        o_b, g_b = outputs_and_grads(model, (x[:n, b:b + 1], _hx([s[:, b:b + 1] for s in states])),
                                     w_b)
        torch.testing.assert_close(o_b[0][:, 0], outs[0][:n, b], rtol=1e-12, atol=1e-12)
        for s_b, s in zip(o_b[1:], outs[1:]):
            torch.testing.assert_close(s_b[:, 0], s[:, b], rtol=1e-12, atol=1e-12)
        for k in alone_grads:
            alone_grads[k] += g_b[k]
    for k in grads:
        torch.testing.assert_close(grads[k], alone_grads[k], rtol=1e-10, atol=1e-12)


def test_lengths_need_no_sorting_and_full_lengths_change_nothing():
    model, g = _model("gru", num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    plain = model(x)
    full = model(x, lengths=torch.tensor([T] * B))
    torch.testing.assert_close(full[0], plain[0], rtol=0, atol=0)
    order = [2, 0, 1]
    shuffled = model(x[:, order], lengths=[LENGTHS[i] for i in order])
    torch.testing.assert_close(shuffled[0], model(x, lengths=LENGTHS)[0][:, order])


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("backend", ["cpu", "loop"])
def test_the_output_may_be_changed_in_place_before_the_backward(backend, num_layers):
    """out += residual, as torch.nn's output allows: a unidirectional stack's output is its last
    layer's states, which its backward reads, so the layer returns a copy of them."""
    model, g = _model("lstm", num_layers=num_layers, backend=backend)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    weights = torch.randn(T, B, H, generator=g, dtype=torch.float64)
    grads = []
    for in_place in (False, True):
        out, _ = model(x)
        out = out.mul_(weights) if in_place else out * weights
        grads.append(torch.autograd.grad(out.sum(), list(model.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_batch_first_and_unbatched_inputs(variant):
    model, g = _model(variant, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    out, state = model(x)
    model.batch_first = True
    out_bf, state_bf = model(x.transpose(0, 1))
    torch.testing.assert_close(out_bf.transpose(0, 1), out)
    model.batch_first = False
    out_one, state_one = model(x[:, 0])
    torch.testing.assert_close(out_one, out[:, 0])
    for s_one, s in zip(flat_outputs((out_one, state_one))[1:], flat_outputs((out, state))[1:]):
        assert s_one.shape == (model.num_layers * 2, H)
        torch.testing.assert_close(s_one, s[:, 0])


def test_dropout_acts_between_layers_in_training_only():
    model, g = _model("lstm", num_layers=3, dropout=0.5)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    model.eval()
    a, b = model(x)[0], model(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    c = model(x)[0]
    assert (c - a).abs().max() > 1e-3
    torch.manual_seed(0)
    torch.testing.assert_close(model(x)[0], c, rtol=0, atol=0)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="dropout"):
        gatedrnn.GRU(I, H, dropout=0.3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gates_are_the_lecture_layout(variant):
    model, _ = _model(variant, num_layers=2, bidirectional=True)
    v = gatedrnn.get_variant(variant)
    for layer, inputs in ((0, I), (1, 2 * H)):
        gates = model.gates(layer=layer, direction=1)
        extra = {f"p_{g}" for g in v.peepholes} | ({"b_cc"} if v.recurrent_bias else set())
        assert set(gates) == set(v.gates) | extra
        sfx = f"_l{layer}_reverse"
        w_ih, w_hh = getattr(model, "weight_ih" + sfx), getattr(model, "weight_hh" + sfx)
        b_ih, b_hh = getattr(model, "bias_ih" + sfx), getattr(model, "bias_hh" + sfx)
        for k, g in enumerate(v.gates):
            W, b = gates[g]
            assert W.shape == (H, H + inputs)
            rows = slice(k * H, (k + 1) * H)
            assert torch.equal(W[:, :H], w_hh[rows]) and torch.equal(W[:, H:], w_ih[rows])
            expected_b = b_ih[rows] if (v.recurrent_bias and g == "c") else b_ih[rows] + b_hh[rows]
            assert torch.equal(b, expected_b)
        if v.recurrent_bias:
            assert torch.equal(gates["b_cc"], b_hh[2 * H:])
        for k, g in enumerate(v.peepholes):
            assert torch.equal(gates[f"p_{g}"], getattr(model, "peephole" + sfx)[k])


def test_parameter_names_follow_the_torch_pattern():
    model = gatedrnn.LSTM(I, H, num_layers=2, bidirectional=True, peephole=True)
    names = {n for n, _ in model.named_parameters()}
    expected = {f"{p}_l{k}{s}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "peephole")
                for k in (0, 1) for s in ("", "_reverse")}
    assert names == expected
    assert {n for n, _ in gatedrnn.GRU(I, H, bias=False).named_parameters()} == {
        "weight_ih_l0", "weight_hh_l0"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_initialisation(variant):
    torch.manual_seed(0)
    model = layer_module(variant, 7, 16, num_layers=2)
    v = gatedrnn.get_variant(variant)
    gates = model.gates(layer=1)
    for g in v.gates:
        W_hh = gates[g][0][:, :16]
        torch.testing.assert_close(W_hh @ W_hh.T, torch.eye(16), atol=1e-5, rtol=0)
        expected = {"f": 1.0} if v.has_cell else {"u": -1.0} if g == "u" else {}
        assert torch.all(gates[g][1] == expected.get(g, 0.0)), g
    for g in v.peepholes:
        assert torch.all(gates[f"p_{g}"] == 0)


def test_a_fresh_peephole_lstm_is_the_plain_lstm():
    torch.manual_seed(0)
    plain = gatedrnn.LSTM(I, H)
    peep = gatedrnn.LSTM(I, H, peephole=True)
    peep.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(peep(x)[0], plain(x)[0], rtol=0, atol=0)


def test_factory_kwargs_and_backends_agree():
    model = gatedrnn.GRU(I, H, dtype=torch.float64, backend="auto")
    assert model.weight_ih_l0.dtype == torch.float64
    x = torch.randn(T, B, I, dtype=torch.float64)
    expected = model(x)[0]
    for backend in ("loop", "reference", "cpu", None):
        model.backend = backend
        torch.testing.assert_close(model(x)[0], expected, rtol=1e-12, atol=1e-12)


def test_gates_match_reference_forward():
    """gates() feeds the reference directly: the layer is the lecture's equations."""
    model, g = _model("gru", num_layers=1)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    params = {k: w.numpy() for k, w in to_lecture(
        "gru", model.weight_ih_l0.detach(), model.weight_hh_l0.detach(),
        model.bias_ih_l0.detach(), model.bias_hh_l0.detach()).items()}
    a, _, _ = gatedrnn.reference.forward("gru", x.numpy(), params, np.zeros((B, H)))
    np.testing.assert_allclose(model(x)[0].detach().numpy(), a, rtol=1e-12)


def test_forget_bias_sets_the_initial_b_f():
    lstm = gatedrnn.LSTM(I, H, num_layers=2, forget_bias=3.0)
    assert torch.all(lstm.gates(layer=1)["f"][1] == 3.0)
    assert torch.all(lstm.gates(layer=1)["u"][1] == 0.0)
    lstm.reset_parameters()
    assert torch.all(lstm.gates()["f"][1] == 3.0)
    cell = gatedrnn.LSTMCell(I, H, forget_bias=-2.0)
    assert torch.all(cell.gates()["f"][1] == -2.0)


@pytest.mark.parametrize("backend", ["cpu", "reference",
                                     pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_bias_free_layers_give_the_loops_outputs_and_gradients(variant, backend):
    runs = []
    for name in ("loop", backend):
        torch.manual_seed(0)
        dtype = torch.float64 if name == "reference" else torch.float32   # its dtypes
        module = gatedrnn.for_variant(variant, I, H, bias=False, bidirectional=True,
                                      backend=name).to(dtype)
        x = torch.randn(T, B, I).to(dtype).requires_grad_()
        out, _ = module(x)
        out.sum().backward()
        runs.append([out, x.grad, *(p.grad for p in module.parameters())])
    for ours, loop in zip(runs[1], runs[0]):
        torch.testing.assert_close(ours.double(), loop.double(), rtol=1e-4, atol=1e-5)


def test_a_bias_free_torch_gru_converts_and_trains():
    theirs = torch.nn.GRU(I, H, bias=False)
    ours = gatedrnn.GRU.from_torch(theirs)
    x = torch.randn(T, B, I)
    ours(x)[0].sum().backward()
    theirs(x)[0].sum().backward()
    torch.testing.assert_close(ours.weight_ih_l0.grad.abs().sum(),
                               theirs.weight_ih_l0.grad.abs().sum())


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_bias_free_layers_on_the_gpu_give_the_loops_outputs_and_gradients(variant):
    runs = []
    for name in ("loop", "triton"):
        torch.manual_seed(0)
        module = gatedrnn.for_variant(variant, I, H, bias=False, bidirectional=True,
                                      backend=name, device="cuda")
        x = torch.randn(T, B, I, device="cuda", requires_grad=True)
        out, _ = module(x)
        out.sum().backward()
        runs.append([out, x.grad, *(p.grad for p in module.parameters())])
    for ours, loop in zip(runs[1], runs[0]):
        torch.testing.assert_close(ours, loop, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_reverse_layer_runs_each_sequence_from_its_end(variant):
    g = torch.Generator().manual_seed(5)
    model = randomize(layer_module(variant, I, H, num_layers=2, reverse=True,
                                   dtype=torch.float64), g)
    forward = layer_module(variant, I, H, num_layers=2, dtype=torch.float64)
    forward.load_state_dict(model.state_dict())
    lengths = [T, 2, T - 1]
    x = torch.randn(T, len(lengths), I, generator=g, dtype=torch.float64)
    out, _ = model(x, lengths=lengths)
    for b, n in enumerate(lengths):
        alone, _ = forward(x[:n, b:b + 1].flip(0))
        torch.testing.assert_close(out[:n, b:b + 1], alone.flip(0), rtol=1e-12, atol=1e-12)
        assert torch.all(out[n:, b] == 0)
    with pytest.raises(ValueError, match="reverse: a bidirectional layer runs both ways"):
        layer_module(variant, I, H, bidirectional=True, reverse=True)


def _cell_of(variant, **kwargs):
    v = get_variant(variant)
    if v.family == "lstm":
        return gatedrnn.LSTMCell(I, H, peephole=bool(v.peepholes), **kwargs)
    if v.family == "rnn":
        return gatedrnn.RNNCell(I, H, nonlinearity=v.activation, **kwargs)
    return gatedrnn.GRUCell(I, H, variant=variant, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cell_step_without_gradients_is_the_step_with_them(variant, dtype, monkeypatch):
    """Without gradients a CPU cell step is one call of the compiled kernel; with them it is
    Variant.step under autograd. Both give the same state, NaN included."""
    g = torch.Generator().manual_seed(7)
    cell = randomize(_cell_of(variant, dtype=dtype), g)
    x = torch.randn(B, I, generator=g, dtype=dtype)
    state = tuple(torch.randn(B, H, generator=g, dtype=dtype)
                  for _ in range(2 if get_variant(variant).has_cell else 1))
    x[0, 0] = float("nan")
    hx = state if len(state) == 2 else state[0]
    from gatedrnn.kernels import cpu
    original, calls = cpu.step, []
    monkeypatch.setattr(cpu, "step", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        fast = cell(x, hx)
    assert len(calls) == (1 if cpu.available() else 0)
    slow = cell(x.requires_grad_(), hx)
    as_tuple = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
    for f, s in zip(as_tuple(fast), as_tuple(slow)):
        torch.testing.assert_close(f, s.detach(), rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype],
                                   equal_nan=True)
        assert f[0].isnan().any() and not f[1:].isnan().any()
