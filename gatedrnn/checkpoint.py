"""Training checkpoints: everything needed to continue a run exactly, and nothing unpickled.

A run directory holds:
    config.json          the run's configuration (task, model, data, optimiser, vocabulary, ...)
    metrics.jsonl        one JSON line per logged step
    checkpoint/          the latest good checkpoint:
        model.safetensors        the model's parameters
        optimizer.safetensors    the optimiser's tensors; optimizer.json its scalars and groups
        rng.safetensors          the data generator's and torch's random states
        state.json               the step reached and the last evaluation
A checkpoint is written into checkpoint.partial/ and renamed into place, so a crash leaves
either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason and what to do."""


def read_run(run_dir) -> dict:
    """A run directory's config.json: {"config": {...}, "task_metadata": {...}}."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no run here (expected {path}); pass the directory "
                              "a gatedrnn train or demo wrote")
    try:
        run = json.loads(path.read_text())
        run["config"], run["task_metadata"]   # noqa: B018 - both must be there
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: damaged run configuration ({error})") from None
    return run


def _flatten_optimizer(state_dict: dict):
    tensors, scalars = {}, {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"scalars": scalars, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for flat, value in list(tensors.items()) + list(meta["scalars"].items()):
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save(run_dir: Path, model, optimizer, generator: torch.Generator, state: dict) -> None:
    from safetensors.torch import save_file

    final, partial = run_dir / "checkpoint", run_dir / "checkpoint.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(partial / "model.safetensors"))
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, str(partial / "optimizer.safetensors"))
    (partial / "optimizer.json").write_text(json.dumps(meta))
    rng = {"data": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # dropout on a GPU draws here
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, str(partial / "rng.safetensors"))
    (partial / "state.json").write_text(json.dumps(state, indent=1))
    old = run_dir / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load(run_dir: Path, model, optimizer, generator: torch.Generator) -> dict:
    """Restore model, optimiser and random states in place; returns state.json's content."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = run_dir / "checkpoint"
    if not (folder / "state.json").is_file():
        raise CheckpointError(f"resume: {run_dir} has no checkpoint (expected "
                              f"{folder / 'state.json'}); start a new run instead")
    try:
        weights = load_file(str(folder / "model.safetensors"))
        try:
            missing, unexpected = model.load_state_dict(weights, strict=False)
        except RuntimeError as error:   # shapes differ
            raise CheckpointError(f"resume: the checkpoint in {run_dir} does not fit this model "
                                  f"({str(error).splitlines()[-1].strip()})") from None
        if missing or unexpected:
            raise CheckpointError(f"resume: the checkpoint in {run_dir} does not fit this model "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]}); "
                                  "it was written for another variant or size")
        optimizer.load_state_dict(_unflatten_optimizer(
            load_file(str(folder / "optimizer.safetensors")),
            json.loads((folder / "optimizer.json").read_text())))
        rng = load_file(str(folder / "rng.safetensors"))
        generator.set_state(rng["data"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        return json.loads((folder / "state.json").read_text())
    except (SafetensorError, json.JSONDecodeError, FileNotFoundError, KeyError,
            RuntimeError) as error:
        raise CheckpointError(f"resume: the checkpoint in {run_dir} is damaged ({error}); "
                              "remove it to start over") from None
