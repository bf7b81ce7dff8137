"""Shared by the task scripts: where results go and how they are printed."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent.parent / "results"


def write(name: str, rows: list[dict], settings: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"task-{name}.json"
    path.write_text(json.dumps({"date": datetime.date.today().isoformat(),
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
