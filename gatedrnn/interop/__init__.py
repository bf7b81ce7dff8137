"""Conversion to and from other frameworks' recurrent layers."""

from .torch_nn import from_torch, to_torch

__all__ = ["from_torch", "to_torch"]
