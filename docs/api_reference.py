"""Writes docs/api.md from the docstrings themselves, as they read in the code: signatures and
text kept verbatim (the lecture's c<t> is no HTML tag). tests/test_docs_pages.py checks that
the page is what this writes.

    python docs/api_reference.py        # rewrites docs/api.md
"""

import inspect
import sys
from pathlib import Path

PAGE = Path(__file__).parent / "api.md"
SECTIONS = {
    "Layers": ["GRU", "LSTM", "RNN"],
    "Cells": ["GRUCell", "LSTMCell", "RNNCell"],
    "Functions": ["recurrence", "save", "load", "export_onnx", "load_onnx", "Stream",
                  "sample_text", "get_variant"],
    "The reference": ["reference", "reference.forward", "reference.backward",
                      "reference.init_params"],
}


def _title(name: str, obj) -> str:
    """gatedrnn.name(arg, arg=default, ...) without annotations, wrapped at 90 columns."""
    if inspect.ismodule(obj):
        return f"gatedrnn.{name}"
    parameters = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    shown, starred = [], False
    for p in parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not starred:
            shown.append("*")
        starred = starred or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        shown.append(("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD
                      else "") + p.name + ("" if p.default is p.empty else f"={p.default!r}"))
    lines, line = [], f"gatedrnn.{name}("
    for k, part in enumerate(shown):
        part += ", " if k < len(shown) - 1 else ""
        if len(line) + len(part) > 90:
            lines.append(line.rstrip())
            line = "    "
        line += part
    return "\n".join(lines + [line + ")"])


def _entry(name: str, obj) -> list[str]:
    return [f"### {name}", "", "```text", _title(name, obj), "",
            inspect.getdoc(obj) or "", "```", ""]


def reference() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import gatedrnn

    parts = ["# API", "", "Generated from the docstrings by `docs/api_reference.py`.", ""]
    for section, names in SECTIONS.items():
        parts += [f"## {section}", ""]
        for name in names:
            obj = gatedrnn
            for attribute in name.split("."):
                obj = getattr(obj, attribute)
            parts += _entry(name, obj)
    return "\n".join(parts)


if __name__ == "__main__":
    PAGE.write_text(reference())
