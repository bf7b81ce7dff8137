"""Conversion to and from other frameworks' recurrent layers: torch.nn and ONNX."""

from .onnx_export import export_onnx
from .onnx_import import load_onnx
from .torch_nn import from_torch, to_torch

__all__ = ["export_onnx", "load_onnx", "from_torch", "to_torch"]
