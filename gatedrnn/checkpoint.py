"""Training checkpoints and the run folders that hold them: nothing lost, nothing unpickled.

A run folder holds:
    .gatedrnn-run        the mark gatedrnn writes when it makes the folder; a folder without
                         it is never written into or deleted from
    .lock                held (flock) while a process trains in the folder
    config.json          the run's configuration (task, model, data, optimiser, vocabulary, ...)
    metrics.jsonl        one JSON line per logged step
    checkpoints/NNNNNNNN/    the checkpoint of step N:
        model.safetensors        the model's parameters
        optimizer.safetensors    the optimiser's tensors; optimizer.json its scalars and groups
        rng.safetensors          the data generator's and torch's random states
        state.json               the step reached and the last evaluation
    checkpoint           a link to the newest checkpoint, for people and tools
A checkpoint is written into checkpoints/NNNNNNNN.partial/, every file fsynced, and renamed
complete into place in one step; then the link moves (another rename) and older checkpoints go.
Whenever a process dies, the newest folder of checkpoints/ without ".partial" is whole, and
resuming takes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

MARK = ".gatedrnn-run"
_STEP = re.compile(r"^\d{8}$")


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


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entry to the disk (folders: where the OS allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:   # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def _write(path: Path, write) -> None:
    write(path)
    _fsync(path)


def latest(run_dir) -> Path | None:
    """The newest complete checkpoint folder of a run, or None. A folder in checkpoints/ is
    complete once it has its final name; runs written before checkpoints/ keep checkpoint/."""
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints"
    steps = sorted(p for p in folder.iterdir() if _STEP.match(p.name)) if folder.is_dir() else []
    if steps:
        return steps[-1]
    legacy = run_dir / "checkpoint"
    return legacy if (legacy / "state.json").is_file() else None


def save(run_dir: Path, model, optimizer, generator: torch.Generator, state: dict) -> Path:
    """Write a complete checkpoint of `state["step"]` and make it the newest; returns it."""
    from safetensors.torch import save_file

    folder = run_dir / "checkpoints"
    folder.mkdir(exist_ok=True)
    name = f"{state['step']:08d}"
    final, partial = folder / name, folder / (name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    _write(partial / "model.safetensors", lambda p: save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(p)))
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    _write(partial / "optimizer.safetensors", lambda p: save_file(tensors, str(p)))
    _write(partial / "optimizer.json", lambda p: p.write_text(json.dumps(meta)))
    rng = {"data": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # dropout on a GPU draws here
        rng["cuda"] = torch.cuda.get_rng_state()
    _write(partial / "rng.safetensors", lambda p: save_file(rng, str(p)))
    _write(partial / "state.json", lambda p: p.write_text(json.dumps(state, indent=1)))
    _fsync(partial)
    if final.exists():   # a step saved again (a resumed run that stops where it started)
        shutil.rmtree(final)
    partial.rename(final)
    _fsync(folder)
    _point(run_dir, final)
    for old in folder.iterdir():   # older steps and partial folders: all gatedrnn's own
        if old != final and (_STEP.match(old.name) or old.name.endswith(".partial")):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _point(run_dir: Path, target: Path) -> None:
    """Move the checkpoint link to `target` in one rename."""
    link, new = run_dir / "checkpoint", run_dir / "checkpoint.link"
    if link.is_dir() and not link.is_symlink():   # a run from before checkpoints/
        shutil.rmtree(link)
    try:
        new.unlink(missing_ok=True)
        new.symlink_to(target.relative_to(run_dir), target_is_directory=True)
        new.replace(link)
        _fsync(run_dir)
    except OSError:   # no symbolic links here: checkpoints/ is what resuming reads
        new.unlink(missing_ok=True)


def load(run_dir: Path, model, optimizer, generator: torch.Generator) -> dict | None:
    """Restore model, optimiser and random states in place from the newest checkpoint; returns
    its state.json's content, or None where the run has none yet."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = latest(run_dir)
    if folder is None:
        return None
    try:
        from .modules.state import own

        weights = own(model, load_file(str(folder / "model.safetensors")))
        try:
            missing, unexpected = model.load_state_dict(weights, strict=False)
        except RuntimeError as error:   # shapes differ
            raise CheckpointError(f"resume: the checkpoint in {folder} does not fit this model "
                                  f"({str(error).splitlines()[-1].strip()})") from None
        if missing or unexpected:
            raise CheckpointError(f"resume: the checkpoint in {folder} does not fit this model "
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
        state = json.loads((folder / "state.json").read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise KeyError("state.json has no step")
        return state
    except (SafetensorError, json.JSONDecodeError, FileNotFoundError, KeyError,
            RuntimeError) as error:
        raise CheckpointError(f"resume: the checkpoint in {folder} is damaged ({error}); "
                              "remove it to start over") from None
