"""The examples in the docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["gatedrnn", "gatedrnn.reference", "gatedrnn.modules.layers", "gatedrnn.modules.cells",
           "gatedrnn.interop.onnx_import", "gatedrnn.interop.onnx_backend", "gatedrnn.streaming"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
