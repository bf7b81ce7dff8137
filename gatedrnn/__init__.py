"""gatedrnn: the GRU and the LSTM as the "Recurrent Neural Networks" lectures teach them.

    >>> import torch, gatedrnn
    >>> lstm = gatedrnn.LSTM(input_size=3, hidden_size=5, peephole=True)
    >>> out, (a_n, c_n) = lstm(torch.randn(7, 2, 3))
    >>> sorted(lstm.gates())
    ['c', 'f', 'o', 'p_f', 'p_o', 'p_u', 'u']
"""

from . import reference
from .cells import VARIANTS, Variant, get_variant
from .functional import recurrence
from .interop.onnx_export import export_onnx
from .interop.onnx_import import load_onnx
from .interop.keras import from_keras, to_keras
from .interop.torch_nn import from_torch, to_torch
from .modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, for_variant
from .serialization import load, save
from .streaming import Stream, sample_text

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "for_variant", "VARIANTS",
           "Variant", "get_variant", "recurrence", "reference", "export_onnx", "load_onnx",
           "from_torch", "to_torch", "from_keras", "to_keras", "save", "load", "Stream",
           "sample_text"]
