"""Loss curves of a run (train loss per logged step, evaluations as points)."""

from __future__ import annotations

from pathlib import Path


def loss_curve(run_dir, path=None) -> Path:
    """Draw run_dir/metrics.jsonl into a PNG (default run_dir/loss.png); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train import read_metrics

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise ValueError(f"run_dir: {run_dir} has no metrics.jsonl to plot")
    path = Path(path) if path else run_dir / "loss.png"
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="training loss", color="#1f77b4", linewidth=1.2)
    for key, colour in (("valid_loss", "#d62728"), ("valid_nll", "#d62728"),
                        ("test_mse", "#2ca02c")):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            ax.plot(*zip(*points), "-o", label=key.replace("_", " "), color=colour,
                    markersize=4, linewidth=1)
    baseline = [r["unigram_loss"] for r in rows if "unigram_loss" in r]
    if baseline:
        ax.axhline(baseline[-1], linestyle="--", color="#7f7f7f", linewidth=1,
                   label="unigram baseline")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(f"gatedrnn run {run_dir.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
