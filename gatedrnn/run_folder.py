"""Run folders are owned: gatedrnn writes only into a folder it made (or found empty and
marked), never deletes what it did not write, and lets one process at a time train in one.

The mark is checkpoint.MARK; the lock is an flock on `.lock`, which the OS lets go of when its
holder dies, so a killed run never leaves a folder locked.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from . import checkpoint
from .checkpoint import MARK

try:
    import fcntl
except ImportError:   # Windows: no lock, the rest holds
    fcntl = None


class RunFolderError(ValueError):
    """A folder that cannot take this run, with the reason and what to do."""


def is_run(folder: Path) -> bool:
    """Did gatedrnn make this folder? (Runs from before the mark: a readable config.json.)"""
    if (folder / MARK).is_file():
        return True
    try:
        run = json.loads((folder / "config.json").read_text())
        return isinstance(run, dict) and {"config", "task_metadata"} <= set(run)
    except (OSError, ValueError):
        return False


def claim(folder: Path) -> None:
    """Make `folder` a new run's: created, or taken when empty, and marked. Anything else is
    refused with the reason, and nothing in it is touched."""
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--out: {folder} is a file, not a folder; choose a folder path")
    if folder.is_dir() and not ((folder / MARK).is_file() and not (folder / "config.json").exists()):
        # (A marked folder without config.json is a run that died before it began: retaken.)
        if is_run(folder):
            raise RunFolderError(f"--out: {folder} already holds a run; continue it with "
                                 f"--resume {folder}, or choose another --out")
        if any(folder.iterdir()):
            raise RunFolderError(f"--out: {folder} is a folder gatedrnn did not make (it has "
                                 f"files and no {MARK}); gatedrnn writes runs only into new or "
                                 "empty folders: choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARK).write_text(json.dumps({"gatedrnn": "run folder"}) + "\n")
    except OSError as error:
        raise RunFolderError(f"--out: cannot make the run folder {folder} "
                             f"({error.strerror or error}); choose a writable path") from None


@contextlib.contextmanager
def hold(folder: Path):
    """Hold the folder's lock while the block runs; a second holder is refused at once."""
    if fcntl is None:
        yield
        return
    try:
        handle = open(folder / ".lock", "a+")
    except OSError as error:
        raise RunFolderError(f"--out: cannot write into {folder} "
                             f"({error.strerror or error}); choose a writable folder") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderError(f"--out: {folder} is in use by a training that is still "
                                 f"running ({holder}); wait for it to end, or choose another "
                                 "--out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def write_config(folder: Path, run: dict) -> None:
    """config.json, whole or not at all."""
    partial = folder / "config.json.partial"
    checkpoint._write(partial, lambda p: p.write_text(json.dumps(run, indent=1)))
    partial.replace(folder / "config.json")


def trim_metrics(folder: Path, step: int) -> None:
    """Drop metrics.jsonl's lines past `step` (a resumed run writes them again), by one
    rename of the rewritten file."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:   # a line cut short by a kill: it was never whole
            continue
    partial = folder / "metrics.jsonl.partial"
    partial.write_text("".join(line + "\n" for line in kept))
    partial.replace(path)
