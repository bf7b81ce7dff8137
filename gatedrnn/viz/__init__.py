"""Pictures: loss curves of a run, and heatmaps of what a model's gates do over a text."""

from .loss import loss_curve

__all__ = ["loss_curve"]
