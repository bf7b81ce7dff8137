"""gatedrnn as an ONNX backend (onnx.backend.base.Backend) for the LSTM, GRU and RNN operators.

A model made of recurrent nodes alone (ONNX's own operator test cases are) runs on gatedrnn's
modules: each node becomes the module load_onnx would give, with the weights fed at run time,
and its inputs and outputs are moved between ONNX's shapes and torch.nn's:
    X (T, B, I), or (B, T, I) for layout 1; sequence_lens (B,); initial_h, initial_c (D, B, H),
    or (B, D, H) for layout 1  →  Y (T, D, B, H), or (B, T, D, H); Y_h, Y_c like initial_h.

    >>> import numpy as np, onnx
    >>> from gatedrnn.interop.onnx_backend import Backend
    >>> node = onnx.helper.make_node("RNN", ["X", "W", "R"], ["", "Y_h"], hidden_size=2)
    >>> x, w = np.ones((3, 1, 2), np.float32), np.eye(2, dtype=np.float32)[None]
    >>> r = np.zeros((1, 2, 2), np.float32)
    >>> (y_h,) = Backend.run_node(node, [x, w, r])
    >>> y_h.shape, bool(np.allclose(y_h, np.tanh(1.0)))   # (D, B, H); R = 0: a<t> = tanh(x<t>)
    ((1, 1, 2), True)
"""

from __future__ import annotations

import numpy as np
import torch
from onnx.backend.base import Backend as _Backend, BackendRep

from .onnx_import import _GATES, _constants, _Node, node_module


def run(node: _Node, values: dict) -> list:
    """The outputs of one recurrent node (None where the node does not ask for one)."""
    module = node_module(node, values, graph_inputs=set(values)).eval()
    names = list(node.proto.input) + [""] * (7 - len(node.proto.input))
    given = lambda i: names[i] != "" and values.get(names[i]) is not None  # noqa: E731
    x = torch.from_numpy(np.asarray(values[names[0]]))
    module = module.to(x.dtype)
    lengths = torch.from_numpy(np.asarray(values[names[4]])).long() if given(4) else None

    def state(i):   # (D, B, H) as torch.nn takes it
        s = torch.from_numpy(np.asarray(values[names[i]])).to(x.dtype)
        return s.transpose(0, 1) if node.layout else s
    hx = None
    if given(5) or given(6):
        zeros = x.new_zeros(module.directions, x.shape[1 - node.layout], module.hidden_size)
        a0 = state(5) if given(5) else zeros
        hx = (a0, state(6) if given(6) else zeros) if node.op == "LSTM" else a0
    with torch.no_grad():
        y, finals = module(x, hx, lengths=lengths)
    finals = finals if isinstance(finals, tuple) else (finals,)
    y = y.unflatten(-1, (module.directions, module.hidden_size))   # (T, B, D, H) or (B, T, D, H)
    y = y if node.layout else y.permute(0, 2, 1, 3)
    finals = [f.transpose(0, 1) if node.layout else f for f in finals]
    outputs = [y, *finals]
    return [o.numpy() if name else None for name, o in zip(node.proto.output, outputs)]


class BackendRepresentation(BackendRep):
    """A prepared model: its graph, run node after node."""

    def __init__(self, model):
        self.graph = model.graph
        self.constants = _constants(model.graph)
        for index, proto in enumerate(model.graph.node):
            if proto.op_type not in _GATES:
                raise ValueError(f"model: this backend runs LSTM, GRU and RNN nodes only; node "
                                 f"{index} is {proto.op_type}")

    def run(self, inputs, **kwargs):
        constants = self.constants
        fed = [i.name for i in self.graph.input if i.name not in constants]
        if isinstance(inputs, dict):
            values = dict(inputs)
        else:
            values = dict(zip(fed, inputs if isinstance(inputs, (list, tuple)) else [inputs]))
        values.update(constants)
        for index, proto in enumerate(self.graph.node):
            node = _Node(proto, index)
            values.update((name, out) for name, out in zip(proto.output, run(node, values))
                          if name)
        return tuple(values[o.name] for o in self.graph.output)


class Backend(_Backend):
    """onnx.backend's interface: prepare(model).run(inputs), run_model, run_node."""

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        super().prepare(model, device, **kwargs)   # checks the model
        return BackendRepresentation(model)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        present = [name for name in node.input if name]
        values = dict(zip(present, inputs))
        return tuple(out for out in run(_Node(node, 0), values) if out is not None)
