"""Export gatedrnn layers to standard ONNX operators (LSTM, GRU, RNN), opset 14 or newer.

Graph of an exported layer stack (T time, B batch, I input, H hidden, D directions, L layers):
    input (T, B, I)  [Transpose first if batch_first: (B, T, I)]
    per layer: LSTM/GRU/RNN node → Y (T, D, B, H) → Transpose (T, B, D, H) → Reshape (T, B, D*H)
    outputs: output (T, B, D*H), h_n (L*D, B, H), and c_n for the LSTM
    optional inputs: lengths (B,) int32 → every node's sequence_lens; h0 (and c0) (L*D, B, H),
    sliced per layer into initial_h (and initial_c).
Time and batch are dynamic; layout 0 (time first) by default, the one onnxruntime accepts;
layout=1 writes batch-first nodes for a batch_first module (no transposes). A reverse=True
module's nodes have direction "reverse"; rnn_relu's RNN nodes activations ["Relu"].

gru_simple has no operator of its own; it is exported exactly as a GRU node whose reset gate is
pinned open: W_r = R_r = 0 and b_r = 100, so Γ_r = σ(100) = 1 in float32 and
c~<t> = tanh(W_c[1 ⊙ c<t-1>, x<t>] + b_c), the simplified GRU. load_onnx recognises the pin.
"""

from __future__ import annotations

import numpy as np
import torch

from ..cells import get_variant
from .onnx_layout import node_attributes, to_onnx

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
    return {k: torch.stack([w[k] for w in per_direction]).detach().float().numpy()
            for k in ("W", "R", "B", "P") if k in per_direction[0]}


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


class _Graph:
    """Nodes and initialisers being collected for one ONNX graph."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def const(self, name: str, value) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs, outputs, **attributes):
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attributes))
        return outputs[0]


def _check_module(module):
    from ..modules.layers import RecurrentLayers

    if not isinstance(module, RecurrentLayers):
        raise TypeError(f"module: expected a gatedrnn.GRU, LSTM or RNN, got {type(module).__name__}")
    if module.proj_size:
        raise ValueError(f"module: ONNX's LSTM operator has no projection; expected "
                         f"proj_size=0, got proj_size={module.proj_size}")


def _stack(graph: _Graph, module, x: str, lengths: str, h0: str, c0: str, out: str,
           layout: int):
    """The layer stack on x (T, B, I), or (B, T, I) for layout 1 → out (T, B, D*H) or
    (B, T, D*H); returns the names of h_n and c_n (L*D, B, H). lengths, h0, c0: input names or
    "" for none."""
    v = get_variant(module.variant)
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[v.family]
    L, D = module.num_layers, module.directions
    attributes = node_attributes(module, layout)
    yshape = graph.const("yshape", np.array([0, 0, -1], dtype=np.int64))
    axis0 = graph.const("axis0", np.array([0], dtype=np.int64)) if h0 else ""
    finals = {"h": [], "c": []}
    for layer in range(L):
        w = _node_weights(module, layer)
        names = {k: graph.const(f"{k}_l{layer}", w[k]) for k in ("W", "R", "B", "P") if k in w}
        initial = []
        if h0:
            begin = graph.const(f"begin_l{layer}", np.array([layer * D], dtype=np.int64))
            end = graph.const(f"end_l{layer}", np.array([(layer + 1) * D], dtype=np.int64))
            for s in [h0] + ([c0] if v.has_cell else []):
                state = graph.node("Slice", [s, begin, end, axis0], [f"{s}_l{layer}"])
                if layout:   # the node's initial states are (B, D, H)
                    state = graph.node("Transpose", [state], [f"{s}_bdh_l{layer}"],
                                       perm=[1, 0, 2])
                initial.append(state)
        node_inputs = [x, names["W"], names["R"], names["B"], lengths]
        node_inputs += initial or [""] * (2 if v.has_cell else 1)
        if "P" in names:
            node_inputs.append(names["P"])
        while node_inputs[-1] == "":
            node_inputs.pop()
        outputs = [f"Y_l{layer}", f"Y_h_l{layer}"] + ([f"Y_c_l{layer}"] if v.has_cell else [])
        graph.node(op, node_inputs, outputs, name=f"{op.lower()}_l{layer}", **attributes)
        for key, final in zip("hc", outputs[1:]):
            if layout:   # (B, D, H) → (D, B, H)
                final = graph.node("Transpose", [final], [f"{final}_dbh"], perm=[1, 0, 2])
            finals[key].append(final)
        y = outputs[0]
        if not layout:   # (T, D, B, H) → (T, B, D, H); layout 1 has (B, T, D, H) already
            y = graph.node("Transpose", [y], [f"Y_tbdh_l{layer}"], perm=[0, 2, 1, 3])
        x = graph.node("Reshape", [y, yshape], [out if layer == L - 1 else f"X_l{layer + 1}"])
    h_n = graph.node("Concat", finals["h"], ["h_n"], axis=0)
    c_n = graph.node("Concat", finals["c"], ["c_n"], axis=0) if v.has_cell else ""
    return h_n, c_n


def _finish(graph: _Graph, name: str, inputs, outputs, metadata: dict, opset: int, path):
    import onnx
    from onnx import helper

    model = helper.make_model(helper.make_graph(graph.nodes, name, inputs, outputs,
                                                graph.initializers),
                              opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="gatedrnn")
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def export_onnx(module, path=None, *, lengths: bool = False, initial_states: bool = False,
                opset: int = 17, layout: int = 0):
    """Write `module` (gatedrnn.GRU / LSTM / RNN) as an ONNX model; returns the ModelProto.

    lengths=True adds an int32 input "lengths" (B,) fed to every node's sequence_lens;
    initial_states=True adds "h0" (and "c0" for the LSTM) of shape (L*D, B, H). The model runs
    in float32 and computes what module.eval() computes (dropout is a training-time thing).
    layout=1 (batch_first modules only) writes batch-first nodes and no transposes: ONNX's
    reference evaluator runs them, onnxruntime (1.23) does not, hence the default 0.
    """
    from onnx import TensorProto, helper

    _check_module(module)
    if layout not in (0, 1):
        raise ValueError(f"layout: expected 0 (time first) or 1 (batch first), got {layout!r}")
    if layout and not module.batch_first:
        raise ValueError("layout: 1 writes batch-first nodes for a batch_first module; this "
                         "module has batch_first=False, so expected layout=0, got 1")
    v = get_variant(module.variant)
    L, D, H, I = module.num_layers, module.directions, module.hidden_size, module.input_size
    graph = _Graph()
    tensor = helper.make_tensor_value_info
    time_batch = ["B", "T"] if module.batch_first else ["T", "B"]
    inputs = [tensor("input", TensorProto.FLOAT, time_batch + [I])]
    transposed = module.batch_first and not layout
    x = "input"
    if transposed:
        x = graph.node("Transpose", ["input"], ["input_tbi"], perm=[1, 0, 2])
    if lengths:
        inputs.append(tensor("lengths", TensorProto.INT32, ["B"]))
    states = ["h0", "c0"] if v.has_cell else ["h0"]
    if initial_states:
        inputs += [tensor(s, TensorProto.FLOAT, [L * D, "B", H]) for s in states]
    h_n, c_n = _stack(graph, module, x, "lengths" if lengths else "",
                      "h0" if initial_states else "", "c0" if initial_states else "",
                      "output_tbi" if transposed else "output", layout)
    if transposed:
        graph.node("Transpose", ["output_tbi"], ["output"], perm=[1, 0, 2])
    outputs = [tensor("output", TensorProto.FLOAT, time_batch + [D * H]),
               tensor(h_n, TensorProto.FLOAT, [L * D, "B", H])]
    if c_n:
        outputs.append(tensor(c_n, TensorProto.FLOAT, [L * D, "B", H]))
    return _finish(graph, f"gatedrnn_{v.name}", inputs, outputs, {"gatedrnn.variant": v.name},
                   opset, path)


def export_charlm(model, vocabulary: str, path=None, opset: int = 17):
    """A char-LM (embedding → layers → linear) as ONNX that onnxruntime alone can sample from.

    Inputs: ids (T, B) int64, h0 (and c0) (L*D, B, H): zeros to start, then the h_n (and c_n)
    of the previous call. Outputs: logits (T, B, V), h_n (and c_n). The vocabulary (a string,
    character i has id i) is in the model's metadata as "gatedrnn.vocabulary".
    """
    import json

    from onnx import TensorProto, helper

    rnn = model.rnn
    _check_module(rnn)
    v = get_variant(rnn.variant)
    L, D, H = rnn.num_layers, rnn.directions, rnn.hidden_size
    graph = _Graph()
    tensor = helper.make_tensor_value_info
    embedding = graph.const("embedding", model.embedding.weight.detach().float().numpy())
    x = graph.node("Gather", [embedding, "ids"], ["embedded"], axis=0)
    states = ["h0", "c0"] if v.has_cell else ["h0"]
    h_n, c_n = _stack(graph, rnn, x, "", "h0", "c0" if v.has_cell else "", "hidden", 0)
    head_w = graph.const("head_weight_t", model.head.weight.detach().float().numpy().T.copy())
    head_b = graph.const("head_bias", model.head.bias.detach().float().numpy())
    projected = graph.node("MatMul", ["hidden", head_w], ["projected"])
    graph.node("Add", [projected, head_b], ["logits"])
    V = model.head.out_features
    inputs = [tensor("ids", TensorProto.INT64, ["T", "B"])]
    inputs += [tensor(s, TensorProto.FLOAT, [L * D, "B", H]) for s in states]
    outputs = [tensor("logits", TensorProto.FLOAT, ["T", "B", V]),
               tensor(h_n, TensorProto.FLOAT, [L * D, "B", H])]
    if c_n:
        outputs.append(tensor(c_n, TensorProto.FLOAT, [L * D, "B", H]))
    return _finish(graph, f"gatedrnn_charlm_{v.name}", inputs, outputs,
                   {"gatedrnn.variant": v.name, "gatedrnn.vocabulary": json.dumps(vocabulary)},
                   opset, path)
