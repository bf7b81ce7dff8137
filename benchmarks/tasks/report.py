"""Shared by the task scripts: where results go and how they are printed."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent.parent / "results"


def write(name: str, rows: list[dict], settings: dict) -> Path:
    """A new file task-NAME-DATE[-N].json: a run never overwrites the results kept before it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    date = datetime.date.today().isoformat()
    path, n = RESULTS / f"task-{name}-{date}.json", 1
    while path.exists():
        n += 1
        path = RESULTS / f"task-{name}-{date}-{n}.json"
    path.write_text(json.dumps({"date": date,
                                "machine": platform.machine(), "threads": torch.get_num_threads(),
                                "torch": torch.__version__, "settings": settings, "rows": rows},
                               indent=1))
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "—")) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
