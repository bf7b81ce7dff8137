"""Export gatedrnn layers to standard ONNX operators (LSTM, GRU, RNN), opset 14 or newer.

Graph of an exported layer stack (T time, B batch, I input, H hidden, D directions, L layers):
    input (T, B, I)  [Transpose first if batch_first: (B, T, I)]
    per layer: LSTM/GRU/RNN node → Y (T, D, B, H) → Transpose (T, B, D, H) → Reshape (T, B, D*H)
    outputs: output (T, B, D*H), h_n (L*D, B, H), and c_n for the LSTM
    optional inputs: lengths (B,) int32 → every node's sequence_lens; h0 (and c0) (L*D, B, H),
    sliced per layer into initial_h (and initial_c).
Time and batch are dynamic; layout 0 (time first) throughout, the one onnxruntime accepts.

gru_simple has no operator of its own; it is exported exactly as a GRU node whose reset gate is
pinned open: W_r = R_r = 0 and b_r = 100, so Γ_r = σ(100) = 1 in float32 and
c~<t> = tanh(W_c[1 ⊙ c<t-1>, x<t>] + b_c), the simplified GRU. load_onnx recognises the pin.
"""

from __future__ import annotations

import numpy as np
import torch

from ..cells import get_variant
from .onnx_layout import to_onnx

PINNED_RESET_BIAS = 100.0   # σ(100) rounds to exactly 1 in float32 (and float64: 1 − 4e-44)


def _node_weights(module, layer: int) -> dict:
    """Stacked (D, ...) ONNX weights of one layer; gru_simple as a GRU with Γ_r pinned to 1."""
    per_direction = []
    for direction in range(module.directions):
        w_ih, w_hh, b_ih, b_hh, peephole = module._weights(layer, direction)
        variant = module.variant
        if variant == "gru_simple":
            w_ih, w_hh, b_ih, b_hh = _pin_reset_gate(w_ih, w_hh, b_ih, b_hh)
            variant = "gru"
        per_direction.append(to_onnx(variant, w_ih, w_hh, b_ih, b_hh, peephole))
    stacked = {k: torch.stack([w[k] for w in per_direction]).detach().float().numpy()
               for k in ("W", "R", "B", "P") if k in per_direction[0]}
    if "linear_before_reset" in per_direction[0]:
        stacked["linear_before_reset"] = per_direction[0]["linear_before_reset"]
    return stacked


def _pin_reset_gate(w_ih, w_hh, b_ih, b_hh):
    """gru_simple's (u, c) blocks → gru's (u, r, c) with a reset gate that is always 1."""
    H = w_hh.shape[1]
    zeros = lambda w: w.new_zeros(H, *w.shape[1:])  # noqa: E731
    if b_ih is None:
        b_ih, b_hh = w_ih.new_zeros(2 * H), w_ih.new_zeros(2 * H)
    pin = torch.full((H,), PINNED_RESET_BIAS, dtype=w_ih.dtype)
    insert = lambda w, r: torch.cat([w[:H], r, w[H:]])  # noqa: E731
    return (insert(w_ih, zeros(w_ih)), insert(w_hh, zeros(w_hh)), insert(b_ih, pin),
            insert(b_hh, zeros(b_hh)))


def export_onnx(module, path=None, *, lengths: bool = False, initial_states: bool = False,
                opset: int = 17):
    """Write `module` (gatedrnn.GRU / LSTM / RNN) as an ONNX model; returns the ModelProto.

    lengths=True adds an int32 input "lengths" (B,) fed to every node's sequence_lens;
    initial_states=True adds "h0" (and "c0" for the LSTM) of shape (L*D, B, H). The model runs
    in float32 and computes what module.eval() computes (dropout is a training-time thing).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..modules.layers import RecurrentLayers

    if not isinstance(module, RecurrentLayers):
        raise TypeError(f"module: expected a gatedrnn.GRU, LSTM or RNN, got {type(module).__name__}")
    v = get_variant(module.variant)
    op = "LSTM" if v.has_cell else ("RNN" if v.name == "rnn" else "GRU")
    L, D, H, I = module.num_layers, module.directions, module.hidden_size, module.input_size
    nodes, initializers = [], []
    const = lambda name, value: initializers.append(  # noqa: E731
        numpy_helper.from_array(np.asarray(value), name))
    const("yshape", np.array([0, 0, -1], dtype=np.int64))

    inputs = [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, ["B", "T", I] if module.batch_first else ["T", "B", I])]
    x = "input"
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", ["input"], ["input_tbi"], perm=[1, 0, 2]))
        x = "input_tbi"
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["B"]))
    states = ["h0", "c0"] if v.has_cell else ["h0"]
    if initial_states:
        inputs += [helper.make_tensor_value_info(s, TensorProto.FLOAT, [L * D, "B", H])
                   for s in states]
        const("axis0", np.array([0], dtype=np.int64))

    finals = {"h": [], "c": []}
    for layer in range(L):
        w = _node_weights(module, layer)
        names = {k: f"{k}_l{layer}" for k in ("W", "R", "B", "P")}
        for k in ("W", "R", "B", "P"):
            if k in w:
                const(names[k], w[k])
        initial = []
        if initial_states:
            const(f"begin_l{layer}", np.array([layer * D], dtype=np.int64))
            const(f"end_l{layer}", np.array([(layer + 1) * D], dtype=np.int64))
            for s in states:
                nodes.append(helper.make_node("Slice", [s, f"begin_l{layer}", f"end_l{layer}",
                                                        "axis0"], [f"{s}_l{layer}"]))
                initial.append(f"{s}_l{layer}")
        node_inputs = [x, names["W"], names["R"], names["B"], "lengths" if lengths else ""]
        node_inputs += initial if initial else [""] * len(states)
        if "P" in w:
            node_inputs.append(names["P"])
        while node_inputs[-1] == "":
            node_inputs.pop()
        outputs = [f"Y_l{layer}", f"Y_h_l{layer}"] + ([f"Y_c_l{layer}"] if v.has_cell else [])
        attributes = {"hidden_size": H,
                      "direction": "bidirectional" if D == 2 else "forward"}
        if "linear_before_reset" in w:
            attributes["linear_before_reset"] = w["linear_before_reset"]
        nodes.append(helper.make_node(op, node_inputs, outputs, name=f"{op.lower()}_l{layer}",
                                      **attributes))
        finals["h"].append(outputs[1])
        if v.has_cell:
            finals["c"].append(outputs[2])
        nodes.append(helper.make_node("Transpose", [outputs[0]], [f"Y_tbdh_l{layer}"],
                                      perm=[0, 2, 1, 3]))
        x = "output_tbi" if (layer == L - 1 and module.batch_first) else (
            "output" if layer == L - 1 else f"X_l{layer + 1}")
        nodes.append(helper.make_node("Reshape", [f"Y_tbdh_l{layer}", "yshape"], [x]))
    if module.batch_first:
        nodes.append(helper.make_node("Transpose", ["output_tbi"], ["output"], perm=[1, 0, 2]))
    nodes.append(helper.make_node("Concat", finals["h"], ["h_n"], axis=0))
    outputs = [helper.make_tensor_value_info(
        "output", TensorProto.FLOAT, ["B", "T", D * H] if module.batch_first else ["T", "B", D * H]),
        helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [L * D, "B", H])]
    if v.has_cell:
        nodes.append(helper.make_node("Concat", finals["c"], ["c_n"], axis=0))
        outputs.append(helper.make_tensor_value_info("c_n", TensorProto.FLOAT, [L * D, "B", H]))

    graph = helper.make_graph(nodes, f"gatedrnn_{v.name}", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="gatedrnn")
    model.metadata_props.add(key="gatedrnn.variant", value=v.name)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model
