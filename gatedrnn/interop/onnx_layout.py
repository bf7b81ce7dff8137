"""One layer-direction's weights in the layout of the ONNX LSTM / GRU / RNN operators.

ONNX gate orders: LSTM (i, o, f, c), GRU (z, r, h), peepholes P (i, o, f); W (G*H, I),
R (G*H, H), B = [Wb, Rb] (2*G*H). The GRU's z keeps the old state, so z = 1 − Γ_u: u's weights
and biases are negated (σ(−v) = 1 − σ(v)). gru is linear_before_reset=0, gru_reset_after 1.
gru_simple has no ONNX operator of its own; rnn_relu is the RNN with activations ["Relu"].
"""

from __future__ import annotations

import torch

from ..cells import get_variant
from .blocks import reorder

# ONNX block k = sign[k] * ours[block[k]]
_ONNX = {
    "lstm": ("LSTM", (0, 2, 1, 3), (1, 1, 1, 1)),
    "lstm_peephole": ("LSTM", (0, 2, 1, 3), (1, 1, 1, 1)),
    "gru": ("GRU", (0, 1, 2), (-1, 1, 1)),
    "gru_reset_after": ("GRU", (0, 1, 2), (-1, 1, 1)),
    "rnn": ("RNN", (0,), (1,)),
    "rnn_relu": ("RNN", (0,), (1,)),
}


def onnx_operator(variant: str) -> str:
    """The ONNX operator that runs `variant` ("LSTM", "GRU" or "RNN")."""
    v = get_variant(variant)
    if v.name not in _ONNX:
        raise ValueError(f"variant: ONNX has operators for {sorted(_ONNX)}, not {v.name!r}")
    return _ONNX[v.name][0]


def node_attributes(module, layout: int = 0) -> dict:
    """The attributes of the ONNX node that runs one layer of `module`."""
    v = get_variant(module.variant)
    direction = ("bidirectional" if module.bidirectional else
                 "reverse" if module.reverse else "forward")
    attributes = {"hidden_size": module.hidden_size, "direction": direction}
    if v.name.startswith("gru"):
        attributes["linear_before_reset"] = int(v.recurrent_bias)
    if v.activation != "tanh":
        attributes["activations"] = [v.activation.capitalize()] * module.directions
    if layout:
        attributes["layout"] = layout
    return attributes


def to_onnx(variant: str, weight_ih, weight_hh, bias_ih=None, bias_hh=None, peephole=None) -> dict:
    """{"W", "R", "B", and "P" for lstm_peephole} (tensors)."""
    v = get_variant(variant)
    onnx_operator(v.name)
    _, block, sign = _ONNX[v.name]
    # reorder's convention is ours[k] = sign[k] * theirs[block[k]]; here "ours" is ONNX.
    def convert(w):
        return reorder(w, block, sign)
    if bias_ih is None:
        bias_ih = weight_ih.new_zeros(weight_ih.shape[0])
        bias_hh = weight_ih.new_zeros(weight_ih.shape[0])
    out = {"W": convert(weight_ih), "R": convert(weight_hh),
           "B": torch.cat([convert(bias_ih), convert(bias_hh)])}
    if v.peepholes:
        p_u, p_f, p_o = peephole.detach()
        out["P"] = torch.cat([p_u, p_o, p_f])
    return out


def layer_model(module, opset: int = 17):
    """A one-node ONNX model running `module`'s single layer (uni- or bidirectional).

    Inputs: X (T, B, I) with dynamic T and B. Outputs: Y (T, D, B, H), Y_h (D, B, H) and, for the
    LSTM, Y_c. The building block of a full exporter; used by benchmarks/speed.py to time
    onnxruntime on exactly gatedrnn's weights.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if module.num_layers != 1:
        raise ValueError(f"module: layer_model takes one layer, got num_layers={module.num_layers}")
    op = onnx_operator(module.variant)
    H = module.hidden_size
    per_direction = [to_onnx(module.variant, *module._weights(0, d))
                     for d in range(module.directions)]
    names = ["W", "R", "B"] + (["P"] if "P" in per_direction[0] else [])
    initializers = [numpy_helper.from_array(
        torch.stack([w[n] for w in per_direction]).float().numpy(), n) for n in names]
    attributes = node_attributes(module)
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    inputs = ["X", "W", "R", "B"] + (["", "", "", "P"] if "P" in names else [])
    node = helper.make_node(op, inputs, outputs, **attributes)
    D = module.directions
    graph = helper.make_graph(
        [node], f"gatedrnn_{module.variant}",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", module.input_size])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", D, "B", H])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, [D, "B", H]) for n in outputs[1:]],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def from_onnx(variant: str, W, R, B=None, P=None):
    """One direction's ONNX W (G*H, I), R (G*H, H), B (2*G*H), P (3*H) → the stacked layout:
    (weight_ih, weight_hh, bias_ih, bias_hh, peephole or None). The inverse of to_onnx."""
    v = get_variant(variant)
    _, block, sign = _ONNX[v.name]

    def convert(w):
        return reorder(w, block, sign, inverse=True)
    bias_ih = bias_hh = None
    if B is not None:
        bias_ih, bias_hh = convert(B[: B.shape[0] // 2]), convert(B[B.shape[0] // 2:])
    peephole = None
    if v.peepholes:
        p_u, p_o, p_f = P.chunk(3)
        peephole = torch.stack([p_u, p_f, p_o])
    return convert(W), convert(R), bias_ih, bias_hh, peephole
