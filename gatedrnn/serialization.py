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


def _header_shapes(path: Path) -> dict:
    """{name: shape} from a safetensors file's header, reading nothing else."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path}: damaged or not a safetensors file ({error})") from None


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _dtype_of(path: Path, shapes: dict):
    """The weights' dtype, from the header."""
    import torch
    from safetensors import safe_open

    if not shapes:
        return None
    with safe_open(str(path), framework="pt") as f:
        stored = f.get_slice(next(iter(shapes))).get_dtype()
    if stored not in _DTYPES:
        raise ValueError(f"{path}: expected floating-point weights "
                         f"({', '.join(_DTYPES)}), got {stored}")
    return getattr(torch, _DTYPES[stored])


def _check_config(config: dict, config_path: Path, shapes: dict, weights_path: Path) -> None:
    """config.json's sizes against the weights' own shapes, before anything is built from them."""
    missing = [k for k in ("variant", *_FIELDS) if k not in config]
    if missing:
        raise ValueError(f"{config_path}: expected the keys {missing}, not found")
    for name in ("input_size", "hidden_size", "num_layers"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{config_path}: {name}: expected a positive integer, got {value!r}")
    layers = {int(k.split("_l")[-1].split("_")[0]) for k in shapes if "_l" in k}
    if len(layers) != config["num_layers"]:
        raise ValueError(f"{config_path}: num_layers: {config['num_layers']}, but "
                         f"{weights_path.name} holds {len(layers)} layers' weights")
    w_hh, w_ih = shapes.get("weight_hh_l0"), shapes.get("weight_ih_l0")
    if w_hh is None or w_ih is None:
        raise ValueError(f"{weights_path}: expected weight_ih_l0 and weight_hh_l0, not found")
    if w_hh[-1] != config["hidden_size"] or w_ih[-1] != config["input_size"]:
        raise ValueError(f"{config_path}: hidden_size {config['hidden_size']} and input_size "
                         f"{config['input_size']}, but the weights have hidden_size {w_hh[-1]} "
                         f"and input_size {w_ih[-1]}")


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
    shapes = _header_shapes(weights_path)
    _check_config(config, config_path, shapes, weights_path)
    # Built on the meta device first: nothing is allocated until the shapes agree.
    fields = {k: config[k] for k in _FIELDS}
    dtype = _dtype_of(weights_path, shapes)
    expected = {k: tuple(v.shape) for k, v in for_variant(
        config["variant"], **fields, device="meta", dtype=dtype).state_dict().items()}
    if set(shapes) != set(expected):
        raise ValueError(f"{weights_path}: expected the tensors {sorted(expected)}, "
                         f"got {sorted(shapes)}")
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise ValueError(f"{weights_path}: {name}: expected shape {expected[name]}, got "
                             f"{shape}")
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except SafetensorError as error:
        raise ValueError(f"{weights_path}: damaged or not a safetensors file ({error})") from None
    # "class" in config.json is for people; the variant says which class runs it.
    module = for_variant(config["variant"], **fields, dtype=dtype)
    module.load_state_dict(tensors)
    return module.to(device=device)
