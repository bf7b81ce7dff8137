"""Safe model files: weights in safetensors, the configuration in JSON; loading never unpickles.

A saved model is a directory:
    config.json          {"format": "gatedrnn", "format_version": 1, "class": "LSTM",
                          "variant": "lstm_peephole", "input_size": ..., "hidden_size": ...,
                          "num_layers": ..., "bias": ..., "batch_first": ..., "dropout": ...,
                          "bidirectional": ...}
    model.safetensors    every parameter under its module name (weight_ih_l0, peephole_l0, ...)
"""

from __future__ import annotations

import json
from pathlib import Path


FORMAT_VERSION = 1
_FIELDS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
           "bidirectional")


def save(module, directory) -> Path:
    """Write `module` (gatedrnn.GRU / LSTM / RNN) to `directory`; returns the directory."""
    from safetensors.torch import save_file

    from .modules.layers import RecurrentLayers

    if not isinstance(module, RecurrentLayers):
        raise TypeError(f"module: expected a gatedrnn.GRU, LSTM or RNN, got {type(module).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": "gatedrnn", "format_version": FORMAT_VERSION,
              "class": type(module).__name__, "variant": module.variant}
    config.update({k: getattr(module, k) for k in _FIELDS})
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    # Written beside and renamed: a crash never leaves a half-written model behind.
    for name, write in (("model.safetensors", lambda p: save_file(tensors, str(p))),
                        ("config.json", lambda p: p.write_text(json.dumps(config, indent=1)))):
        partial = directory / (name + ".partial")
        write(partial)
        partial.replace(directory / name)
    return directory


def load(directory, device=None):
    """The module saved in `directory` by gatedrnn.save."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .modules.layers import for_variant

    directory = Path(directory)
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"directory: expected {path.name} in {directory}, not found")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    if config.get("format") != "gatedrnn" or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_path}: expected a gatedrnn model of format_version "
                         f"{FORMAT_VERSION}, got format={config.get('format')!r} "
                         f"format_version={config.get('format_version')!r}")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except SafetensorError as error:
        raise ValueError(f"{weights_path}: damaged or not a safetensors file ({error})") from None
    dtype = next(iter(tensors.values())).dtype if tensors else None
    # "class" in config.json is for people; the variant says which class runs it.
    module = for_variant(config["variant"], **{k: config[k] for k in _FIELDS}, dtype=dtype)
    expected = module.state_dict()
    if set(tensors) != set(expected):
        raise ValueError(f"{weights_path}: expected the tensors {sorted(expected)}, "
                         f"got {sorted(tensors)}")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(f"{weights_path}: {name}: expected shape "
                             f"{tuple(expected[name].shape)}, got {tuple(tensor.shape)}")
    module.load_state_dict(tensors)
    return module.to(device=device)
