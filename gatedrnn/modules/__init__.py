"""nn.Modules: multi-layer recurrent layers and single-step cells."""

from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN, RecurrentLayers, for_variant

__all__ = ["GRU", "LSTM", "RNN", "RecurrentLayers", "for_variant", "GRUCell", "LSTMCell", "RNNCell"]
