"""Keras 3 interop: from_keras modules compute what Keras computes (outputs, states, gradients),
and round trips give back identical weights. Keras runs on its torch backend here."""

import os
import warnings

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("the gradient checks need Keras's torch backend", allow_module_level=True)

import gatedrnn  # noqa: E402
from gatedrnn.interop.blocks import reorder  # noqa: E402
from gatedrnn.interop.keras import _BLOCKS  # noqa: E402

B, T, I, H = 3, 6, 4, 5
L = keras.layers
KERAS_LAYERS = {
    "gru": lambda **k: L.GRU(H, reset_after=False, **k),
    "gru_reset_after": lambda **k: L.GRU(H, **k),
    "lstm": lambda **k: L.LSTM(H, **k),
    "rnn": lambda **k: L.SimpleRNN(H, **k),
    "rnn_relu": lambda **k: L.SimpleRNN(H, activation="relu", **k),
}


def _built(layer):
    """A built layer with random weights (Keras starts biases at 0 or 1)."""
    layer.build((None, None, I))
    rng = np.random.default_rng(0)
    layer.set_weights([0.5 * rng.standard_normal(w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    return layer


def _keras_grads(variant, grads: dict, prefix=""):
    """gatedrnn's parameter gradients of one direction in Keras's layout."""
    block, sign = _BLOCKS[variant]
    back = lambda w: reorder(w, block, sign, inverse=True)  # noqa: E731
    out = [back(grads["weight_ih" + prefix]).T, back(grads["weight_hh" + prefix]).T]
    if "bias_ih" + prefix in grads:
        b_ih, b_hh = back(grads["bias_ih" + prefix]), back(grads["bias_hh" + prefix])
        # Without a recurrent bias, Keras's one bias is b_ih + b_hh: either's gradient is its.
        out.append(torch.stack([b_ih, b_hh]) if variant == "gru_reset_after" else b_ih)
    return out


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("variant", list(KERAS_LAYERS))
def test_from_keras_matches_keras_outputs_states_and_gradients(variant, use_bias, bidirectional):
    make = KERAS_LAYERS[variant]
    if bidirectional:
        theirs = L.Bidirectional(make(use_bias=use_bias, return_sequences=True))
    else:
        theirs = make(use_bias=use_bias, return_sequences=True, return_state=True)
    theirs = _built(theirs)
    ours = gatedrnn.from_keras(theirs)
    assert ours.variant == variant and ours.batch_first and ours.bidirectional == bidirectional

    x = torch.randn(B, T, I, generator=torch.Generator().manual_seed(1))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected = theirs(x1)
    expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    out, state = ours(x2)
    got = [out] + ([s[0] for s in state] if isinstance(state, tuple) else [state[0]])
    got = got[:len(expected)]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)

    cotangents = [torch.randn_like(e) for e in expected]
    keras_weights = [w.value for w in theirs.trainable_weights]
    d_theirs = torch.autograd.grad(expected, [x1] + keras_weights, cotangents)
    params = dict(ours.named_parameters())
    d_ours = torch.autograd.grad(got, [x2] + list(params.values()), cotangents)
    torch.testing.assert_close(d_ours[0], d_theirs[0], rtol=1e-5, atol=1e-6)
    grads = dict(zip(params, d_ours[1:]))
    converted = _keras_grads(variant, grads, "_l0")
    if bidirectional:
        converted += _keras_grads(variant, grads, "_l0_reverse")
    for g, e in zip(converted, d_theirs[1:]):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_a_go_backwards_layer_is_a_reverse_layer_in_the_inputs_time_order():
    theirs = _built(L.LSTM(H, go_backwards=True, return_sequences=True))
    ours = gatedrnn.from_keras(theirs)
    assert ours.reverse
    x = torch.randn(B, T, I)
    torch.testing.assert_close(ours(x)[0], theirs(x).flip(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", list(KERAS_LAYERS))
def test_to_keras_computes_the_same_and_round_trips_exactly(variant):
    g = torch.Generator().manual_seed(2)
    module = gatedrnn.for_variant(variant, I, H, num_layers=2, bidirectional=True,
                                  batch_first=True)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
        if not get_recurrent_bias(variant):   # Keras keeps one bias: b_hh comes back as 0
            for name, p in module.named_parameters():
                if name.startswith("bias_hh"):
                    p.zero_()
    model = gatedrnn.to_keras(module)
    x = torch.randn(B, T, I, generator=g)
    torch.testing.assert_close(model(x), module(x)[0], rtol=1e-5, atol=1e-6)
    back = gatedrnn.from_keras(model)
    assert len(back) == 2
    for layer, converted in enumerate(back):
        for d in range(2):
            for a, b in zip(converted._weights(0, d), module._weights(layer, d)):
                assert (a is None and b is None) or torch.equal(a, b)


def get_recurrent_bias(variant):
    return gatedrnn.get_variant(variant).recurrent_bias


def test_a_keras_file_and_a_weights_file_load(tmp_path):
    def model():
        return keras.Sequential([keras.Input((None, I)), L.GRU(H, reset_after=False,
                                 return_sequences=True), L.Bidirectional(L.LSTM(H)),
                                 L.Dense(2)])
    trained = model()
    trained.set_weights([0.3 * np.random.default_rng(3).standard_normal(w.shape)
                         for w in trained.get_weights()])
    trained.save(tmp_path / "m.keras")
    trained.save_weights(tmp_path / "m.weights.h5")
    from_file = gatedrnn.from_keras(tmp_path / "m.keras")
    from_weights = gatedrnn.from_keras(model(), weights=tmp_path / "m.weights.h5")
    assert [m.variant for m in from_file] == ["gru", "lstm"] and from_file[1].bidirectional
    for a, b in zip(from_file, from_weights):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    x = torch.randn(B, T, I)
    first = trained.layers[0](x)
    torch.testing.assert_close(from_file[0](x)[0], first, rtol=1e-5, atol=1e-6)


def test_what_gatedrnn_cannot_represent_is_refused():
    with pytest.raises(ValueError, match="variant: Keras has only .* 'lstm_peephole'"):
        gatedrnn.to_keras(gatedrnn.LSTM(I, H, peephole=True))
    with pytest.raises(ValueError, match="variant: Keras has only .* 'gru_simple'"):
        gatedrnn.to_keras(gatedrnn.GRU(I, H, variant="gru_simple"))
    with pytest.raises(ValueError, match="activation / recurrent_activation: .* got 'relu'"):
        gatedrnn.from_keras(_built(L.GRU(H, activation="relu")))
    with pytest.raises(ValueError, match="merge_mode: .* expected 'concat', got 'sum'"):
        gatedrnn.from_keras(_built(L.Bidirectional(L.GRU(H, return_sequences=True),
                                                   merge_mode="sum")))
    with pytest.raises(ValueError, match="not built yet"):
        gatedrnn.from_keras(L.LSTM(H))
    with pytest.raises(TypeError, match="expected a Keras GRU, LSTM, SimpleRNN or "
                                        "Bidirectional layer, got Dense"):
        gatedrnn.from_keras(_built(L.Dense(H)))
    with pytest.raises(ValueError, match="expected a Keras model with a GRU"):
        gatedrnn.from_keras(keras.Sequential([keras.Input((I,)), L.Dense(2)]))
    with pytest.warns(UserWarning, match="recurrent_dropout.* not carried over"):
        gatedrnn.from_keras(_built(L.LSTM(H, recurrent_dropout=0.2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)   # no dropout, no warning
        gatedrnn.from_keras(_built(L.LSTM(H)))
