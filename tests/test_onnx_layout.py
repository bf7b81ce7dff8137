"""The ONNX weight layout: onnxruntime running converted weights computes what gatedrnn does."""

import pytest
import torch

from gatedrnn.interop.onnx_layout import layer_model, onnx_operator, to_onnx

from conftest import layer_module, randomize

ort = pytest.importorskip("onnxruntime")

ONNX_VARIANTS = ["rnn", "gru", "gru_reset_after", "lstm", "lstm_peephole"]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("variant", ONNX_VARIANTS)
def test_onnxruntime_matches_gatedrnn(variant, bidirectional):
    T, B, I, H = 7, 3, 5, 4
    g = torch.Generator().manual_seed(1)
    module = randomize(layer_module(variant, I, H, bidirectional=bidirectional), g)
    x = torch.randn(T, B, I, generator=g)
    session = ort.InferenceSession(layer_model(module).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": x.numpy()})
    with torch.no_grad():
        out, state = module(x)
    D = 2 if bidirectional else 1
    y = torch.from_numpy(got[0]).permute(0, 2, 1, 3).reshape(T, B, D * H)
    torch.testing.assert_close(y, out, rtol=0, atol=1e-5)
    states = state if isinstance(state, tuple) else (state,)
    for mine, theirs in zip(states, got[1:]):
        torch.testing.assert_close(torch.from_numpy(theirs), mine, rtol=0, atol=1e-5)


def test_gru_simple_has_no_onnx_operator():
    with pytest.raises(ValueError, match="variant: ONNX has operators for .* not 'gru_simple'"):
        onnx_operator("gru_simple")


def test_update_gate_is_negated_for_onnx():
    module = layer_module("gru", 3, 2)
    z_weights = to_onnx("gru", *module._weights(0, 0))["W"][:2]
    assert torch.equal(z_weights, -module.weight_ih_l0[:2].detach())
