"""torch.nn interop: from_torch models compute what torch.nn computes; round trips are exact."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import gatedrnn

from conftest import TOLERANCE, flat_outputs, outputs_and_grads, rel_err

T, B, I, H = 6, 4, 5, 7
CONFIGS = [dict(num_layers=1), dict(num_layers=2), dict(num_layers=2, bidirectional=True),
           dict(num_layers=2, bidirectional=True, batch_first=True)]
KINDS = {"lstm": (nn.LSTM, gatedrnn.LSTM), "gru": (nn.GRU, gatedrnn.GRU),
         "rnn": (nn.RNN, gatedrnn.RNN)}


def _pair(kind, **config):
    torch.manual_seed(3)
    theirs_class, ours_class = KINDS[kind]
    theirs = theirs_class(I, H, **config)
    return theirs, ours_class.from_torch(theirs)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_from_torch_matches_torch(kind, config, packed):
    theirs, ours = _pair(kind, **config)
    assert ours.variant == {"lstm": "lstm", "gru": "gru_reset_after", "rnn": "rnn"}[kind]
    g = torch.Generator().manual_seed(0)
    shape = (B, T, I) if config.get("batch_first") else (T, B, I)
    x = torch.randn(shape, generator=g)
    n = theirs.num_layers * (2 if theirs.bidirectional else 1)
    h0 = torch.randn(n, B, H, generator=g)
    hx = (h0, torch.randn(n, B, H, generator=g)) if kind == "lstm" else h0
    if packed:
        x = pack_padded_sequence(x, [6, 3, 5, 1], batch_first=theirs.batch_first,
                                 enforce_sorted=False)
    with torch.no_grad():
        weights = [torch.randn(o.shape, generator=g) for o in flat_outputs(theirs(x, hx))]
    ref_outs, ref_grads = outputs_and_grads(theirs, (x, hx), weights)
    outs, grads = outputs_and_grads(ours, (x, hx), weights)
    for o, e in zip(outs, ref_outs):
        assert rel_err(o, e) <= TOLERANCE[torch.float32]
    # Compare gradients in torch's layout: convert ours back through the same exact mapping.
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.copy_(grads[name])
        converted = ours.to_torch()
    for name, p in converted.named_parameters():
        assert rel_err(p, ref_grads[name]) <= TOLERANCE[torch.float32], name


@pytest.mark.parametrize("config", CONFIGS[1:], ids=["2l", "2l-bi", "2l-bi-bf"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trips_are_exact(kind, config):
    theirs, ours = _pair(kind, **config)
    back = ours.to_torch()
    assert type(back) is type(theirs)
    for (n1, p1), (n2, p2) in zip(theirs.named_parameters(), back.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    again = KINDS[kind][1].from_torch(back)
    for (n1, p1), (n2, p2) in zip(ours.named_parameters(), again.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    for attr in ("num_layers", "bidirectional", "batch_first", "bias"):
        assert getattr(back, attr) == getattr(theirs, attr)


def test_update_gate_is_one_minus_z():
    """Γ_u = 1 − z: the gates() view of a converted torch.nn.GRU negates z's weights."""
    theirs, ours = _pair("gru")
    W_iz, W_hz = theirs.weight_ih_l0[H:2 * H], theirs.weight_hh_l0[H:2 * H]
    W_u, b_u = ours.gates()["u"]
    assert torch.equal(W_u, -torch.cat([W_hz, W_iz], 1))
    torch.testing.assert_close(b_u, -(theirs.bias_ih_l0[H:2 * H] + theirs.bias_hh_l0[H:2 * H]))


def test_without_bias_and_in_float64():
    theirs = nn.LSTM(I, H, bias=False, dtype=torch.float64)
    ours = gatedrnn.LSTM.from_torch(theirs)
    assert ours.bias_ih_l0 is None and ours.weight_ih_l0.dtype == torch.float64
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-12, atol=1e-12)


def test_conversion_refusals():
    with pytest.raises(TypeError, match="module: LSTM.from_torch expected a torch.nn.LSTM, got GRU"):
        gatedrnn.LSTM.from_torch(nn.GRU(I, H))
    with pytest.raises(TypeError, match="module: expected a torch.nn LSTM, GRU or RNN layer or cell, got Linear"):
        gatedrnn.LSTM.from_torch(nn.Linear(I, H))
    for module in (gatedrnn.GRU(I, H), gatedrnn.GRU(I, H, variant="gru_simple"),
                   gatedrnn.LSTM(I, H, peephole=True)):
        with pytest.raises(ValueError, match=f"variant: torch.nn has only .*{module.variant!r}"):
            module.to_torch()
