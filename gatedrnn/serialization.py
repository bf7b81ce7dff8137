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
import re
from pathlib import Path


FORMAT_VERSION = 1
_FIELDS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
           "bidirectional", "reverse", "proj_size")
_DEFAULTS = {"reverse": False, "proj_size": 0}   # fields that models written before them lack


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


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def _header(path: Path) -> tuple[dict, str | None]:
    """({name: shape}, the dtype of the recurrent weights) from a safetensors file's header,
    reading nothing else."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {s.get_dtype() for k, s in slices.items() if _LAYER.search(k)}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path}: damaged or not a safetensors file ({error})") from None
    if not dtypes <= set(_DTYPES):
        raise ValueError(f"{path}: expected floating-point weights ({', '.join(_DTYPES)}), "
                         f"got {sorted(dtypes)}")
    return shapes, (_DTYPES[dtypes.pop()] if len(dtypes) == 1 else None)


_LAYER = re.compile(r"(?:^|\.)weight_hh_l(\d+)(?:_reverse)?$")


def _check_config(config: dict, config_path: Path, shapes: dict, weights_path: Path,
                  required=("variant", *(k for k in _FIELDS if k not in _DEFAULTS))) -> None:
    """config.json's sizes against the weights' own shapes, before anything is built from them
    (the layers' names may have a prefix: rnn.weight_hh_l0 in a run's model)."""
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"{config_path}: expected the keys {missing}, not found")
    for name in ("input_size", "hidden_size", "num_layers"):
        value = config.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{config_path}: {name}: expected a positive integer, got {value!r}")
    layer_of = {k: found.group(1) for k in shapes if (found := _LAYER.search(k))}
    if len(set(layer_of.values())) != config["num_layers"]:
        raise ValueError(f"{config_path}: num_layers: {config['num_layers']}, but "
                         f"{weights_path.name} holds {len(set(layer_of.values()))} layers' "
                         "weights")
    first = next(k for k, layer in layer_of.items() if layer == "0")
    w_hh, w_ih = shapes[first], shapes.get(first.replace("weight_hh", "weight_ih"), (0, 0))
    width = config.get("proj_size") or config["hidden_size"]   # of the recurrent input a<t-1>
    if w_hh[-1] != width or w_ih[-1] != config.get("input_size", w_ih[-1]):
        raise ValueError(f"{config_path}: hidden_size {config['hidden_size']}, proj_size "
                         f"{config.get('proj_size', 0)} and input_size "
                         f"{config.get('input_size')}, but the weights have a recurrent input "
                         f"of {w_hh[-1]} and input_size {w_ih[-1]}")


def _same_shapes(shapes: dict, skeleton, weights_path: Path) -> None:
    """The stored tensors are exactly the (meta-device) skeleton's; files written before the
    layout mark lack it, and are gatedrnn's all the same (modules.state.own)."""
    from .modules.state import own

    shapes = {**{k: (1,) for k in own(skeleton, {})}, **shapes}
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if set(shapes) != set(expected):
        raise ValueError(f"{weights_path}: expected the tensors {sorted(expected)}, "
                         f"got {sorted(shapes)}")
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise ValueError(f"{weights_path}: {name}: expected shape {expected[name]}, got "
                             f"{shape}")


def load_run(run_dir, device=None):
    """The model of a run folder (gatedrnn train or demo) from its newest checkpoint, in
    evaluation mode; a charlm run's has its vocabulary as `.vocabulary`."""
    import torch
    from safetensors.torch import load_file

    from .checkpoint import CheckpointError, latest, read_run
    from .modules.state import own
    from .tasks import untrained
    from .tasks.charlm import Vocabulary

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    config, metadata = run["config"], run["task_metadata"]
    newest = latest(run_dir)
    if newest is None:
        raise CheckpointError(f"{run_dir}: the run has no checkpoint yet; train it further "
                              f"with gatedrnn train --resume {run_dir}")
    weights_path = newest / "model.safetensors"
    shapes, _ = _header(weights_path)
    _check_config(config, run_dir / "config.json", shapes, weights_path,
                  required=("task", "variant", "hidden_size", "num_layers"))
    with torch.device("meta"):
        skeleton = untrained(config, metadata)
    _same_shapes(shapes, skeleton, weights_path)
    model = untrained(config, metadata)
    model.load_state_dict(own(model, load_file(str(weights_path))))
    if config["task"] == "charlm":
        model.vocabulary = Vocabulary(metadata["vocabulary"])
    return model.to(device=device).eval()



def load(directory, device=None):
    """The module saved in `directory` by gatedrnn.save, or the trained model of a run folder
    (`gatedrnn train` / `gatedrnn demo`; see load_run).

    Example:
        >>> import tempfile, gatedrnn
        >>> folder = gatedrnn.save(gatedrnn.GRU(3, 4), tempfile.mkdtemp())
        >>> gatedrnn.load(folder).variant
        'gru'
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .modules.layers import for_variant
    import torch

    from .modules.state import own
    from .run_folder import is_run

    directory = Path(directory)
    if is_run(directory):
        return load_run(directory, device)
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
    shapes, dtype = _header(weights_path)
    _check_config(config, config_path, shapes, weights_path)
    # Built on the meta device first: nothing is allocated until the shapes agree.
    fields = {k: config.get(k, _DEFAULTS.get(k)) for k in _FIELDS}
    dtype = getattr(torch, dtype) if dtype else None
    _same_shapes(shapes, for_variant(config["variant"], **fields, device="meta", dtype=dtype),
                 weights_path)
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except SafetensorError as error:
        raise ValueError(f"{weights_path}: damaged or not a safetensors file ({error})") from None
    # "class" in config.json is for people; the variant says which class runs it.
    module = for_variant(config["variant"], **fields, dtype=dtype)
    tensors = own(module, tensors)
    module.load_state_dict(tensors)
    return module.to(device=device)
