"""A cell drawn in the style of "LSTM in pictures", from its definition (Variant.diagram).

Nothing here knows any particular cell: a new variant with a `diagram` is drawn as it is.
Columns follow the order of computation (an operation sits one column right of its latest
input); layers (σ, tanh over [a<t-1>, x<t>]) are boxes, element-wise operations circles,
peephole paths dashed.
"""

from __future__ import annotations

from pathlib import Path

from ..cells import get_variant

_NAMES = {"x": "x<t>", "a_prev": "a<t-1>", "c_prev": "c<t-1>", "c": "c<t>", "a": "a<t>",
          "c_tilde": "c̃<t>", "gamma_u": "Γ_u", "gamma_r": "Γ_r", "gamma_f": "Γ_f",
          "gamma_o": "Γ_o", "recurrent_c": "W_cc c<t-1> + b_cc", "relevant": "Γ_r ⊙ ·"}
_POINTWISE = {"⊙", "+", "1−"}


def _label(name: str) -> str:
    return _NAMES.get(name, "")


def _layout(variant):
    """Positions (column, row) of the sources and of every operation."""
    sources = [s for s in ("c_prev", "a_prev", "x")
               if any(s == i.split(":")[-1] for _, _, inputs in variant.diagram for i in inputs)]
    column = {s: 0 for s in sources}
    for name, _, inputs in variant.diagram:
        column[name] = 1 + max(column[i.split(":")[-1]] for i in inputs)
    rows: dict[int, int] = {}
    position = {}
    for name in sources:
        position[name] = (0, {"c_prev": 0, "a_prev": 1, "x": 2}[name] * 1.6)
    for name, _, _ in variant.diagram:
        c = column[name]
        position[name] = (c, rows.get(c, 0) * 1.3)
        rows[c] = rows.get(c, 0) + 1
    return sources, position


def draw(variant_name: str, path) -> Path:
    """Draw the cell of `variant_name` into `path` (.svg or .png); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

    path = Path(path)
    if path.suffix not in (".svg", ".png"):
        raise ValueError(f"out: expected a .svg or .png file name, got {path.name!r}")
    v = get_variant(variant_name)
    sources, position = _layout(v)
    columns = 1 + max(c for c, _ in position.values())
    height = 1 + max(r for _, r in position.values())
    right = (columns - 1) * 1.25 + 0.7
    fig, ax = plt.subplots(figsize=(1.6 * (right + 0.8), 1.6 * (height + 1.4)), dpi=100)
    ax.set_xlim(-0.8, right)
    ax.set_ylim(height + 0.4, -1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    xy = {name: (c * 1.25, r) for name, (c, r) in position.items()}

    for name in sources:
        x, y = xy[name]
        ax.text(x, y, _label(name), ha="center", va="center", fontsize=12, fontweight="bold",
                bbox=dict(boxstyle="round", facecolor="#eeeeee", edgecolor="#888888"))
    outputs = {"c", "a"}
    for name, op, inputs in v.diagram:
        x, y = xy[name]
        if op in _POINTWISE or (op == "tanh" and len(inputs) == 1):
            ax.add_patch(Circle((x, y), 0.22, facecolor="#fde9c9", edgecolor="#c98a1b", zorder=3))
            ax.text(x, y, op, ha="center", va="center", fontsize=12, zorder=4)
        else:
            colour = "#cfe3f7" if op == "σ" else "#d9f2d0"
            ax.add_patch(FancyBboxPatch((x - 0.38, y - 0.24), 0.76, 0.48,
                                        boxstyle="round,pad=0.02", facecolor=colour,
                                        edgecolor="#355f8c", zorder=3))
            ax.text(x, y, "W·+b" if op == "linear" else op, ha="center", va="center",
                    fontsize=12, zorder=4)
        caption = _label(name)
        if caption:
            ax.text(x, y + 0.42, caption, ha="center", va="center", fontsize=10,
                    fontweight="bold" if name in outputs else "normal", color="#222222")
        for source in inputs:
            peephole = source.startswith("peephole:")
            start = xy[source.split(":")[-1]]
            arrow = FancyArrowPatch(start, (x, y), arrowstyle="-|>", mutation_scale=12,
                                    shrinkA=16, shrinkB=16, linewidth=1.2, zorder=2,
                                    connectionstyle="arc3,rad=0.08",
                                    linestyle="--" if peephole else "-",
                                    color="#b22222" if peephole else "#555555")
            if peephole:
                arrow.set_gid("peephole")
            ax.add_patch(arrow)
    if v.has_cell:
        note = "outputs: c<t> and a<t>"
    else:
        note = "output: " + ("a<t>" if v.name == "rnn" else "c<t> = a<t>")
    ax.set_title(f"{v.name}: {note}" + ("  (dashed: peepholes)" if v.peepholes else ""),
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none"}):   # real, searchable text in SVGs
        fig.savefig(path)
    plt.close(fig)
    return path
