"""nn.Modules: multi-layer recurrent layers and single-step cells."""

from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN, RecurrentLayers

__all__ = ["GRU", "LSTM", "RNN", "RecurrentLayers", "GRUCell", "LSTMCell", "RNNCell"]
