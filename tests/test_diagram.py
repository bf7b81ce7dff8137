"""Cell diagrams are drawn from the cell definitions, for every variant."""

import numpy as np
import pytest
from PIL import Image

import gatedrnn
from gatedrnn.cli import main

from conftest import VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_draws_with_its_gates_and_peepholes(variant, tmp_path):
    v = gatedrnn.get_variant(variant)
    # The picture describes the same gates the math computes.
    drawn = {name for name, _, _ in v.diagram}
    assert set(v.saved_names) <= drawn and ("c" in drawn or "a" in drawn)
    svg = tmp_path / f"{variant}.svg"
    assert main(["diagram", "--variant", variant, "--out", str(svg)]) == 0
    text = svg.read_text()
    assert text.count('id="peephole') == (3 if v.peepholes else 0)
    for op in {op for _, op, _ in v.diagram}:
        assert ("W·+b" if op == "linear" else op) in text, op
    for name in v.saved_names:
        caption = {"c_tilde": "c̃&lt;t&gt;", "recurrent_c": "W_cc"}.get(name, "Γ_" + name[-1])
        assert caption in text, caption
    png = tmp_path / f"{variant}.png"
    assert main(["diagram", "--variant", variant, "--out", str(png)]) == 0
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.std() > 10 and min(pixels.shape) > 300


def test_diagram_refuses_other_formats(tmp_path, capsys):
    assert main(["diagram", "--variant", "gru", "--out", str(tmp_path / "x.jpg")]) == 1
    assert "expected a .svg or .png file name" in capsys.readouterr().err
