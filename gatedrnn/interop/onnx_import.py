"""Import the LSTM / GRU / RNN nodes of any ONNX model as gatedrnn modules.

Each recurrent node becomes one single-layer gatedrnn module (bidirectional if the node is,
reverse=True for direction "reverse", batch_first for layout 1), in graph order; its weights
are converted exactly (gate order, Γ_u = 1 − z for the GRU). GRU linear_before_reset=0 is the
lecture's "gru", 1 is "gru_reset_after"; an LSTM with P is "lstm_peephole"; an RNN with
activations ["Relu"] is "rnn_relu"; a GRU whose reset gate is pinned open (as export_onnx
writes gru_simple) is "gru_simple". Weights may be initializers, Constant nodes, or graph
inputs whose values the caller passes. What gatedrnn cannot represent exactly is refused,
naming the node (by its name, or its operator and position) and the attribute.
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


class _Node:
    """A recurrent node, its attributes decoded, and the name errors call it by."""

    def __init__(self, node, index: int):
        import onnx

        self.proto, self.op = node, node.op_type
        self.where = f"node {node.name!r} ({self.op})" if node.name else \
            f"{self.op} node {index} (unnamed)"
        self.attributes = {a.name: _decoded(onnx.helper.get_attribute_value(a))
                           for a in node.attribute}
        self.direction = self.attributes.get("direction", "forward")
        self.layout = self.attributes.get("layout", 0)


def _decoded(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def _refuse(node: _Node, attribute: str, expected: str, got) -> None:
    raise ValueError(f"{node.where}: attribute {attribute!r}: gatedrnn needs {expected}, "
                     f"got {got!r}")


def _activation(node: _Node) -> str:
    """"tanh", or "relu" for an RNN node with activations ["Relu"]."""
    activations = node.attributes.get("activations")
    if activations is None:
        return "tanh"
    defaults = _DEFAULT_ACTIVATIONS[node.op]
    allowed = [defaults, defaults * 2] + ([["Relu"], ["Relu"] * 2] if node.op == "RNN" else [])
    if activations not in allowed:
        _refuse(node, "activations", f"the defaults {defaults}"
                + (" or ['Relu']" if node.op == "RNN" else ""), activations)
    return activations[0].lower()


def _check_attributes(node: _Node) -> None:
    attributes = node.attributes
    _activation(node)
    for name in ("activation_alpha", "activation_beta"):
        if name in attributes:
            _refuse(node, name, "no activation parameters", attributes[name])
    if "clip" in attributes:
        _refuse(node, "clip", "no cell clipping", attributes["clip"])
    if attributes.get("input_forget", 0) != 0:
        _refuse(node, "input_forget", "input_forget=0 (no coupled input and forget gates)",
                attributes["input_forget"])
    if node.layout not in (0, 1):
        _refuse(node, "layout", "0 (time first) or 1 (batch first)", node.layout)
    if node.direction not in ("forward", "reverse", "bidirectional"):
        _refuse(node, "direction", "'forward', 'reverse' or 'bidirectional'", node.direction)


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# 1.16 is the first onnx that refuses external-data paths leading outside the model's folder.
MIN_ONNX = (1, 16)


def _check_onnx_version(version: str) -> None:
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_ONNX:
        raise ImportError(f"onnx: gatedrnn needs onnx >= {'.'.join(map(str, MIN_ONNX))} "
                          f"(older versions follow external-data paths out of the model's "
                          f"folder), got {version}; pip install -U onnx")


def _check_shapes(node: _Node, W, R, B, P) -> None:
    """Every weight's shape against the others and the node's attributes."""
    where, attributes = node.where, node.attributes
    G = _GATES[node.op]
    if W.dim() != 3 or R.dim() != 3:
        raise ValueError(f"{where}: expected W and R of 3 dimensions, got shapes "
                         f"{tuple(W.shape)} and {tuple(R.shape)}")
    H = R.shape[-1]
    if "hidden_size" in attributes and attributes["hidden_size"] != H:
        raise ValueError(f"{where}: attribute 'hidden_size' is {attributes['hidden_size']}, "
                         f"but R has hidden_size {H} (shape {tuple(R.shape)})")
    direction = node.direction
    directions = 2 if direction == "bidirectional" else 1
    expected = {"W": (directions, G * H, W.shape[-1]), "R": (directions, G * H, H),
                "B": (directions, 2 * G * H), "P": (directions, 3 * H)}
    for name, value in (("W", W), ("R", R), ("B", B), ("P", P)):
        if value is not None and tuple(value.shape) != expected[name]:
            raise ValueError(f"{where}: input {name}: expected shape {expected[name]} (direction "
                             f"{direction!r}, hidden_size {H}), got {tuple(value.shape)}")


def _input(node: _Node, values: dict, graph_inputs: set, index: int):
    names = node.proto.input
    if len(names) <= index or names[index] == "":
        return None
    name = names[index]
    if name in values:
        return torch.from_numpy(np.array(values[name], dtype=np.float32))
    if name in graph_inputs:
        raise ValueError(f"{node.where}: input {name!r} is a graph input, so its value comes "
                         f"at run time; pass it: load_onnx(model, inputs={{{name!r}: ...}})")
    raise ValueError(f"{node.where}: input {name!r} is computed by other nodes; gatedrnn "
                     "needs it as an initializer, a Constant or a graph input passed in inputs")


def _variant(node: _Node, W, R, B, P) -> str:
    if node.op == "LSTM":
        return "lstm_peephole" if P is not None else "lstm"
    if node.op == "RNN":
        return "rnn" if _activation(node) == "tanh" else "rnn_relu"
    if node.attributes.get("linear_before_reset", 0):
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


def load_onnx(model_or_path, inputs: dict | None = None) -> list:
    """The recurrent layers of an ONNX model as gatedrnn modules, one per node, in graph order.

    inputs: values of graph inputs that hold weights ({"W": array, ...}), for models that take
    their weights at run time (as ONNX's own operator test cases do).

    Example:
        >>> import gatedrnn, torch
        >>> lstm = gatedrnn.LSTM(3, 4, peephole=True)
        >>> (loaded,) = gatedrnn.load_onnx(gatedrnn.export_onnx(lstm))
        >>> loaded.variant
        'lstm_peephole'
    """
    import onnx

    model = model_or_path
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model_or_path))
    _check_onnx_version(onnx.__version__)
    graph_inputs = {i.name for i in model.graph.input}
    unknown = sorted(set(inputs or {}) - graph_inputs)
    if unknown:
        raise ValueError(f"inputs: expected names of the graph's inputs "
                         f"{sorted(graph_inputs)}, got {unknown}")
    values = {**{k: np.asarray(v) for k, v in (inputs or {}).items()}, **_constants(model.graph)}
    nodes = [_Node(n, i) for i, n in enumerate(model.graph.node) if n.op_type in _GATES]
    if not nodes:
        raise ValueError(f"model: expected an ONNX model with an LSTM, GRU or RNN node, got "
                         f"{len(model.graph.node)} nodes and none of them recurrent")
    return [node_module(node, values, graph_inputs) for node in nodes]


def node_module(node: _Node, values: dict, graph_inputs: set = frozenset()):
    """The gatedrnn module of one recurrent node, its weights taken from `values`."""
    from ..modules.layers import for_variant

    _check_attributes(node)
    W, R, B = (_input(node, values, graph_inputs, i) for i in (1, 2, 3))
    P = _input(node, values, graph_inputs, 7) if node.op == "LSTM" else None
    if W is None or R is None:
        raise ValueError(f"{node.where}: inputs W and R are required")
    _check_shapes(node, W, R, B, P)
    variant = _variant(node, W, R, B, P)
    D, _, I = W.shape
    H = R.shape[-1]
    module = for_variant(variant, I, H, bias=B is not None, bidirectional=D == 2,
                         batch_first=node.layout == 1, reverse=node.direction == "reverse")
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
    return module
