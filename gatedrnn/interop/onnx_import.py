"""Import the LSTM / GRU / RNN nodes of any ONNX model as gatedrnn modules.

Each recurrent node becomes one single-layer gatedrnn module (bidirectional if the node is),
in graph order; its weights are converted exactly (gate order, Γ_u = 1 − z for the GRU).
GRU linear_before_reset=0 is the lecture's "gru", 1 is "gru_reset_after"; an LSTM with P is
"lstm_peephole"; a GRU whose reset gate is pinned open (as export_onnx writes gru_simple) is
"gru_simple". What gatedrnn cannot represent exactly is refused, naming the node and attribute.
"""

from __future__ import annotations

import numpy as np
import torch

from .onnx_export import PINNED_RESET_BIAS
from .onnx_layout import from_onnx

_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                        "RNN": ["Tanh"]}


def _constants(graph) -> dict:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _refuse(node, attribute: str, expected: str, got) -> None:
    raise ValueError(f"node {node.name or node.output[0]!r} ({node.op_type}): attribute "
                     f"{attribute!r}: gatedrnn needs {expected}, got {got!r}")


def _check_attributes(node, attributes: dict) -> None:
    op = node.op_type
    activations = attributes.get("activations")
    if activations is not None:
        decoded = [a.decode() if isinstance(a, bytes) else a for a in activations]
        defaults = _DEFAULT_ACTIVATIONS[op]
        if decoded not in (defaults, defaults * 2):
            _refuse(node, "activations", f"the defaults {defaults}", decoded)
    for name in ("activation_alpha", "activation_beta"):
        if name in attributes:
            _refuse(node, name, "no activation parameters", attributes[name])
    if "clip" in attributes:
        _refuse(node, "clip", "no cell clipping", attributes["clip"])
    if attributes.get("input_forget", 0) != 0:
        _refuse(node, "input_forget", "input_forget=0 (no coupled input and forget gates)",
                attributes["input_forget"])
    if attributes.get("layout", 0) != 0:
        _refuse(node, "layout", "layout=0 (time first)", attributes["layout"])
    direction = attributes.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        _refuse(node, "direction", "'forward' or 'bidirectional' (gatedrnn has no layer that "
                "only runs backwards)", direction)


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# 1.16 is the first onnx that refuses external-data paths leading outside the model's folder.
MIN_ONNX = (1, 16)


def _check_onnx_version(version: str) -> None:
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_ONNX:
        raise ImportError(f"onnx: gatedrnn needs onnx >= {'.'.join(map(str, MIN_ONNX))} "
                          f"(older versions follow external-data paths out of the model's "
                          f"folder), got {version}; pip install -U onnx")


def _check_shapes(node, attributes: dict, W, R, B, P) -> None:
    """Every weight's shape against the others and the node's attributes."""
    where = f"node {node.name or node.output[0]!r} ({node.op_type})"
    G = _GATES[node.op_type]
    if W.dim() != 3 or R.dim() != 3:
        raise ValueError(f"{where}: expected W and R of 3 dimensions, got shapes "
                         f"{tuple(W.shape)} and {tuple(R.shape)}")
    H = R.shape[-1]
    if "hidden_size" in attributes and attributes["hidden_size"] != H:
        raise ValueError(f"{where}: attribute 'hidden_size' is {attributes['hidden_size']}, "
                         f"but R has hidden_size {H} (shape {tuple(R.shape)})")
    direction = attributes.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    directions = 2 if direction == "bidirectional" else 1
    expected = {"W": (directions, G * H, W.shape[-1]), "R": (directions, G * H, H),
                "B": (directions, 2 * G * H), "P": (directions, 3 * H)}
    for name, value in (("W", W), ("R", R), ("B", B), ("P", P)):
        if value is not None and tuple(value.shape) != expected[name]:
            raise ValueError(f"{where}: input {name}: expected shape {expected[name]} (direction "
                             f"{direction!r}, hidden_size {H}), got {tuple(value.shape)}")


def _input(node, values: dict, index: int):
    if len(node.input) <= index or node.input[index] == "":
        return None
    name = node.input[index]
    if name not in values:
        raise ValueError(f"node {node.name or node.output[0]!r} ({node.op_type}): input "
                         f"{name!r} must be a constant (an initializer), got a computed tensor")
    return torch.from_numpy(np.array(values[name], dtype=np.float32))


def _variant(node, attributes: dict, W, R, B, P) -> str:
    if node.op_type == "LSTM":
        return "lstm_peephole" if P is not None else "lstm"
    if node.op_type == "RNN":
        return "rnn"
    if attributes.get("linear_before_reset", 0):
        return "gru_reset_after"
    H = R.shape[-1]
    reset = slice(H, 2 * H)   # ONNX GRU blocks: z, r, h
    pinned = (B is not None and torch.all(W[:, reset] == 0) and torch.all(R[:, reset] == 0)
              and torch.all(B[:, reset] + B[:, 3 * H + H: 3 * H + 2 * H] >= PINNED_RESET_BIAS))
    return "gru_simple" if pinned else "gru"


def _drop_reset_gate(w_ih, w_hh, b_ih, b_hh):
    H = w_hh.shape[1]
    keep = lambda w: torch.cat([w[:H], w[2 * H:]])  # noqa: E731
    return keep(w_ih), keep(w_hh), keep(b_ih), keep(b_hh)


def load_onnx(model_or_path) -> list:
    """The recurrent layers of an ONNX model as gatedrnn modules, one per node, in graph order.

    Example:
        >>> import gatedrnn, torch
        >>> lstm = gatedrnn.LSTM(3, 4, peephole=True)
        >>> (loaded,) = gatedrnn.load_onnx(gatedrnn.export_onnx(lstm))
        >>> loaded.variant
        'lstm_peephole'
    """
    import onnx

    from ..modules.layers import for_variant

    model = model_or_path
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model_or_path))
    _check_onnx_version(onnx.__version__)
    values = _constants(model.graph)
    if not any(node.op_type in _GATES for node in model.graph.node):
        raise ValueError(f"model: expected an ONNX model with an LSTM, GRU or RNN node, got "
                         f"{len(model.graph.node)} nodes and none of them recurrent")
    modules = []
    for node in model.graph.node:
        if node.op_type not in ("LSTM", "GRU", "RNN"):
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        _check_attributes(node, attributes)
        W, R, B = (_input(node, values, i) for i in (1, 2, 3))
        P = _input(node, values, 7) if node.op_type == "LSTM" else None
        if W is None or R is None:
            raise ValueError(f"node {node.name or node.output[0]!r} ({node.op_type}): inputs "
                             "W and R are required")
        _check_shapes(node, attributes, W, R, B, P)
        variant = _variant(node, attributes, W, R, B, P)
        D, _, I = W.shape
        H = R.shape[-1]
        module = for_variant(variant, I, H, bias=B is not None, bidirectional=D == 2)
        with torch.no_grad():
            for d in range(D):
                onnx_variant = "gru" if variant == "gru_simple" else variant
                weights = from_onnx(onnx_variant, W[d], R[d], None if B is None else B[d],
                                    None if P is None else P[d])
                if variant == "gru_simple":
                    weights = _drop_reset_gate(*weights[:4]) + (None,)
                for target, value in zip(module._weights(0, d), weights):
                    if target is not None:
                        target.copy_(value)
        modules.append(module)
    return modules
