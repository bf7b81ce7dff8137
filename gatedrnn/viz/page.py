"""A self-contained HTML page to explore a char-LM's gates over a text (no network, no scripts
from elsewhere): the text coloured by one unit's activation, choosers for layer, gate and unit,
units ranked by how strongly they follow simple features of the text, and the model's
probability of every next character on hover (Karpathy, Johnson & Fei-Fei 2015).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .heatmaps import CapturedText

FEATURES = ("inside quotes", "inside brackets", "position in line", "after a newline")


def text_features(text: str) -> dict[str, list[float]]:
    """Per character: 1/0 inside quotes or brackets, column in its line, just after a newline."""
    quotes, brackets, column, after_newline = [], [], [], []
    quote, depth, col, previous = None, 0, 0, "\n"
    for ch in text:
        if quote is None and ch in "\"'":
            quote = ch
        elif quote == ch:
            quote = None
        if quote is None:
            depth += ch in "([{"
            depth = max(0, depth - (ch in ")]}"))
        quotes.append(1.0 if quote is not None else 0.0)
        brackets.append(1.0 if depth > 0 else 0.0)
        column.append(float(col))
        after_newline.append(1.0 if previous == "\n" else 0.0)
        col = 0 if ch == "\n" else col + 1
        previous = ch
    return dict(zip(FEATURES, (quotes, brackets, column, after_newline)))


def _correlations(values: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of every unit (columns of values, (T, H)) with a feature (T,)."""
    v = values - values.mean(0)
    f = feature - feature.mean()
    denominator = (v.norm(dim=0) * f.norm()).clamp_min(1e-12)
    return (v * f[:, None]).sum(0) / denominator


def page_data(captured: CapturedText, top: int = 8, max_units: int | None = None) -> dict:
    text, gates = captured.text, captured.gates
    features = {k: torch.tensor(v) for k, v in text_features(text).items()}
    layers, ranking = [], []
    for layer, directions in enumerate(gates):
        entry = {}
        for name, values in directions[0].items():
            grid = values[:, 0, :max_units]                        # (T, H)
            entry[name] = [[round(float(x), 2) for x in row] for row in grid]
            for feature, series in features.items():
                if series.numel() < 2 or series.std() == 0:   # nothing to correlate
                    continue
                r = _correlations(grid.double(), series.double())
                for unit in r.abs().topk(min(top, r.numel())).indices.tolist():
                    ranking.append({"layer": layer, "gate": name, "unit": unit,
                                    "feature": feature, "r": round(float(r[unit]), 3)})
        layers.append(entry)
    ranking.sort(key=lambda row: -abs(row["r"]))
    return {"text": text, "layers": layers, "ranking": ranking[: 4 * top],
            "next_char_probability": [round(float(p), 4)
                                      for p in captured.next_char_probability] + [None]}


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gatedrnn: gates over a text</title>
<style>
 body { font-family: sans-serif; margin: 1.5em; color: #222; }
 #text { font-family: monospace; white-space: pre-wrap; line-height: 1.6; font-size: 15px;
         border: 1px solid #ccc; padding: 0.8em; max-width: 60em; }
 #text span { padding: 1px 0; }
 .controls label { margin-right: 1.2em; }
 table { border-collapse: collapse; margin-top: 1em; }
 td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
 tr.pick { cursor: pointer; } tr.pick:hover { background: #f3f3f3; }
 #hover { font-family: monospace; margin: 0.5em 0; min-height: 1.2em; }
</style></head><body>
<h2>What the gates do over the text</h2>
<p>Each character is coloured by the chosen unit's value at that step (blue low, red high).
Hover over a character for the value and the probability the model gave it.</p>
<div class="controls">
 <label>layer <select id="layer"></select></label>
 <label>gate <select id="gate"></select></label>
 <label>unit <input id="unit" type="number" min="0" value="0" style="width:5em"></label>
</div>
<div id="hover"></div>
<div id="text"></div>
<h3>Units that follow the text</h3>
<p>Correlation of a unit's value with simple features of the text; click a row to show it.</p>
<table id="ranking"><tr><th>layer</th><th>gate</th><th>unit</th><th>feature</th><th>r</th></tr></table>
<script>
const DATA = __DATA__;
const $ = (id) => document.getElementById(id);
function colour(v, gate) {
  const t = (gate.startsWith("gamma") ? v : (v + 1) / 2);          // to [0, 1]
  const s = Math.max(0, Math.min(1, t));
  const r = Math.round(255 * Math.min(1, 2 * s)), b = Math.round(255 * Math.min(1, 2 - 2 * s));
  const g = Math.round(255 * (1 - Math.abs(2 * s - 1)));
  return `rgb(${r},${g},${b})`;
}
function gateNames() { return Object.keys(DATA.layers[+$("layer").value]); }
function fill(select, options) {
  select.innerHTML = "";
  for (const o of options) { const e = document.createElement("option"); e.value = e.textContent = o; select.appendChild(e); }
}
function render() {
  const values = DATA.layers[+$("layer").value][$("gate").value];
  const units = values[0].length;
  $("unit").max = units - 1;
  const unit = Math.max(0, Math.min(units - 1, +$("unit").value || 0));
  const spans = $("text").children;
  for (let t = 0; t < spans.length; t++) {
    const v = values[t][unit];
    spans[t].style.backgroundColor = colour(v, $("gate").value);
    spans[t].dataset.value = v;
  }
}
function build() {
  const text = $("text");
  [...DATA.text].forEach((ch, t) => {
    const s = document.createElement("span");
    s.textContent = ch === "\\n" ? "\\u21b5\\n" : ch;
    s.addEventListener("mouseenter", () => {
      const p = DATA.next_char_probability[t - 1];
      $("hover").textContent = `step ${t} ${JSON.stringify(ch)}: value ${s.dataset.value}` +
        (t > 0 && p !== null ? `, model's probability of this character ${p}` : "");
    });
    text.appendChild(s);
  });
  fill($("layer"), DATA.layers.map((_, i) => i));
  fill($("gate"), gateNames());
  $("layer").addEventListener("change", () => { const g = $("gate").value; fill($("gate"), gateNames()); if (gateNames().includes(g)) $("gate").value = g; render(); });
  $("gate").addEventListener("change", render);
  $("unit").addEventListener("input", render);
  for (const row of DATA.ranking) {
    const tr = document.createElement("tr"); tr.className = "pick";
    for (const k of ["layer", "gate", "unit", "feature", "r"]) { const td = document.createElement("td"); td.textContent = row[k]; tr.appendChild(td); }
    tr.addEventListener("click", () => { $("layer").value = row.layer; fill($("gate"), gateNames()); $("gate").value = row.gate; $("unit").value = row.unit; render(); });
    $("ranking").appendChild(tr);
  }
  render();
}
build();
</script></body></html>
"""


def gate_page(captured: CapturedText, path, max_units: int | None = None) -> Path:
    """Write the page of a captured run over a text to `path` (the first max_units units of
    each layer, or all); returns the path."""
    path = Path(path)
    data = json.dumps(page_data(captured, max_units=max_units), ensure_ascii=False,
                      separators=(",", ":"))
    path.write_text(_TEMPLATE.replace("__DATA__", data.replace("</", "<\\/")), encoding="utf-8")
    return path
