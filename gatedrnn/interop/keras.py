"""Exact weight conversion to and from Keras 3's GRU, LSTM, SimpleRNN and Bidirectional layers.

Keras keeps kernel (I, G*H) and recurrent_kernel (H, G*H), gate blocks z, r, h (GRU) and
i, f, c, o (LSTM); gatedrnn keeps weight_ih (G*H, I) and weight_hh (G*H, H), blocks u, r, c and
u, f, o, c. Keras's GRU writes h = z ⊙ h<t-1> + (1 − z) ⊙ h~, so Γ_u = 1 − z: u's weights and
biases are z's negated, exact in floating point. reset_after=False is the lecture's GRU
("gru"), reset_after=True (Keras's default) "gru_reset_after"; its second bias row is b_hh.
Keras's single LSTM / SimpleRNN / reset_before GRU bias becomes bias_ih (bias_hh zero), so a
round trip gives back identical weights. Weights are read with get_weights() (NumPy), so any
Keras backend works.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..cells import get_variant
from .blocks import reorder

# ours[k] = sign[k] * keras[block[k]]
_BLOCKS = {"gru": ((0, 1, 2), (-1, 1, 1)), "gru_reset_after": ((0, 1, 2), (-1, 1, 1)),
           "lstm": ((0, 1, 3, 2), (1, 1, 1, 1)), "rnn": ((0,), (1,)), "rnn_relu": ((0,), (1,))}
_RECURRENT = ("GRU", "LSTM", "SimpleRNN")


def _keras():
    import importlib.util
    import os
    import sys

    # Keras starts TensorFlow unless told otherwise; where no backend was chosen and there is
    # no TensorFlow, torch (which gatedrnn has) is the one that can start.
    if ("keras" not in sys.modules and "KERAS_BACKEND" not in os.environ
            and importlib.util.find_spec("tensorflow") is None):
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError as error:
        raise ImportError(f"keras: gatedrnn's Keras conversion needs Keras 3 and a backend "
                          f"(pip install gatedrnn[keras]; KERAS_BACKEND=torch): {error}") from None
    return keras


def _name(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _variant(layer) -> str:
    config = layer.get_config()
    kind = type(layer).__name__
    activation = config.get("activation")
    if kind == "SimpleRNN":
        if activation not in ("tanh", "relu"):
            raise ValueError(f"{_name(layer)}: activation: gatedrnn's RNN takes 'tanh' or "
                             f"'relu', got {activation!r}")
        return "rnn" if activation == "tanh" else "rnn_relu"
    if activation != "tanh" or config.get("recurrent_activation") != "sigmoid":
        raise ValueError(f"{_name(layer)}: activation / recurrent_activation: the lecture's "
                         f"cells use 'tanh' / 'sigmoid', got {activation!r} / "
                         f"{config.get('recurrent_activation')!r}")
    if kind == "LSTM":
        return "lstm"
    return "gru_reset_after" if config.get("reset_after", True) else "gru"


def _check(layer) -> None:
    config = layer.get_config()
    if config.get("stateful"):
        raise ValueError(f"{_name(layer)}: stateful: gatedrnn layers carry no state between "
                         "calls; pass the state as hx instead (expected stateful=False)")
    dropped = {k: config.get(k, 0) for k in ("dropout", "recurrent_dropout") if config.get(k, 0)}
    if dropped:
        warnings.warn(f"{_name(layer)}: {dropped} act in training only and are not carried "
                      "over; the converted layer computes what the Keras layer computes in "
                      "inference", stacklevel=3)


def _direction(layer, variant: str) -> list:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of one Keras recurrent layer, as tensors."""
    block, sign = _BLOCKS[variant]
    weights = layer.get_weights()
    kernel, recurrent = (torch.from_numpy(np.ascontiguousarray(w.T)) for w in weights[:2])
    convert = lambda w: reorder(w, block, sign)  # noqa: E731
    out = [convert(kernel), convert(recurrent), None, None]
    if len(weights) == 3:
        bias = torch.from_numpy(np.asarray(weights[2]))
        if bias.dim() == 2:   # reset_after: input and recurrent biases
            out[2:] = convert(bias[0]), convert(bias[1])
        else:
            out[2:] = convert(bias), torch.zeros_like(bias)
    return out


def _one(layer):
    """The gatedrnn module of one Keras GRU / LSTM / SimpleRNN or Bidirectional layer."""
    from ..modules.layers import for_variant

    keras = _keras()
    directions = [layer]
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode != "concat":
            raise ValueError(f"{_name(layer)}: merge_mode: gatedrnn concatenates both "
                             f"directions; expected 'concat', got {layer.merge_mode!r}")
        directions = [layer.forward_layer, layer.backward_layer]
    for d in directions:
        if type(d).__name__ not in _RECURRENT:
            raise TypeError(f"layer: expected a Keras GRU, LSTM, SimpleRNN or Bidirectional "
                            f"layer, got {type(d).__name__}")
        _check(d)
        if not d.built:
            raise ValueError(f"{_name(d)}: not built yet, so it has no weights; call it on an "
                             "input first")
    variant = _variant(directions[0])
    first = directions[0]
    W = first.get_weights()[0]
    module = for_variant(variant, W.shape[0], first.units, bias=first.use_bias,
                         bidirectional=len(directions) == 2, batch_first=True,
                         reverse=len(directions) == 1 and first.go_backwards,
                         dtype=torch.from_numpy(W).dtype)
    with torch.no_grad():
        for d, keras_layer in enumerate(directions):
            for target, value in zip(module._weights(0, d), _direction(keras_layer, variant)):
                if target is not None:
                    target.copy_(value)
    return module


def from_keras(source, weights=None):
    """gatedrnn modules computing exactly what Keras 3 recurrent layers compute.

    source: a GRU, LSTM, SimpleRNN or Bidirectional layer (returns one module), or a model or
    a path to a `.keras` file (returns a list, one module per recurrent layer, in order).
    weights: a `.weights.h5` file to load into the model first. The modules are batch_first,
    as Keras is; a go_backwards layer becomes reverse=True, whose outputs are in the input's
    time order (Keras returns them reversed).
    """
    keras = _keras()
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        source = keras.saving.load_model(source)
    if weights is not None:
        source.load_weights(weights)
    if isinstance(source, keras.Model):
        found = [layer for layer in source.layers
                 if isinstance(layer, keras.layers.Bidirectional)
                 or type(layer).__name__ in _RECURRENT]
        if not found:
            raise ValueError("source: expected a Keras model with a GRU, LSTM, SimpleRNN or "
                             f"Bidirectional layer, got none among {len(source.layers)} layers")
        return [_one(layer) for layer in found]
    return _one(source)


def to_keras(module):
    """The Keras 3 layers computing exactly what the gatedrnn `module` computes (batch first,
    return_sequences=True): one layer for one layer, Bidirectional when it is, and a
    keras.Sequential of them for several layers. gru, gru_reset_after, lstm, rnn and rnn_relu."""
    keras = _keras()
    v = get_variant(module.variant)
    if v.name not in _BLOCKS:
        raise ValueError(f"variant: Keras has only {sorted(_BLOCKS)}; a {v.name!r} module "
                         "cannot be converted")
    if module.proj_size:
        raise ValueError(f"module: Keras's LSTM has no projection; expected proj_size=0, got "
                         f"proj_size={module.proj_size}")
    if module.reverse:
        raise ValueError("module: a reverse=True module would become go_backwards=True, whose "
                         "outputs Keras returns in reversed time order; expected reverse=False")
    block, sign = _BLOCKS[v.name]
    layers = []
    for layer in range(module.num_layers):
        built = []
        for d in range(module.directions):
            w_ih, w_hh, b_ih, b_hh, _ = (None if w is None else w.detach().cpu()
                                        for w in module._weights(layer, d))
            back = lambda w: reorder(w, block, sign, inverse=True).numpy()  # noqa: E731
            values = [back(w_ih).T, back(w_hh).T]
            kwargs = dict(units=module.hidden_size, use_bias=module.bias,
                          return_sequences=True, go_backwards=d == 1)
            if v.family == "gru":
                kwargs["reset_after"] = v.recurrent_bias
                cls = keras.layers.GRU
            elif v.family == "lstm":
                kwargs["unit_forget_bias"] = False
                cls = keras.layers.LSTM
            else:
                kwargs["activation"] = v.activation
                cls = keras.layers.SimpleRNN
            if module.bias:
                values.append(np.stack([back(b_ih), back(b_hh)]) if v.recurrent_bias
                              else back(b_ih + b_hh))
            keras_layer = cls(**kwargs)
            inputs = w_ih.shape[1]
            keras_layer.build((None, None, inputs))
            keras_layer.set_weights([np.ascontiguousarray(x) for x in values])
            built.append(keras_layer)
        if len(built) == 2:
            pair = keras.layers.Bidirectional(built[0], backward_layer=built[1],
                                              merge_mode="concat")
            pair.build((None, None, built[0].get_weights()[0].shape[0]))
            # Bidirectional builds fresh copies of its layers: give them the weights.
            pair.forward_layer.set_weights(built[0].get_weights())
            pair.backward_layer.set_weights(built[1].get_weights())
            built = [pair]
        layers.append(built[0])
    if len(layers) == 1:
        return layers[0]
    return keras.Sequential([keras.Input((None, module.input_size))] + layers)
