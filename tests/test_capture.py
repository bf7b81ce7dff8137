"""Captured gates are the lecture's gates: equal to the reference's, step by step."""

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn.layout import to_lecture

from conftest import VARIANTS, layer_module, randomize

T, B, I, H = 7, 3, 4, 5


@pytest.mark.parametrize("backend", ["cpu", "loop"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_captured_gates_equal_the_reference(variant, backend):
    g = torch.Generator().manual_seed(0)
    module = randomize(layer_module(variant, I, H, dtype=torch.float64, backend=backend), g)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    out, _, gates = module.capture(x)
    params = {k: w.numpy() for k, w in to_lecture(variant, *[
        None if w is None else w.detach() for w in module._weights(0, 0)]).items()}
    a, c, cache = gatedrnn.reference.forward(variant, x.numpy(), params, np.zeros((B, H)),
                                             np.zeros((B, H)))
    captured = gates[0][0]
    expected_names = set(gatedrnn.get_variant(variant).saved_names) | {"a"} | (
        {"c"} if c is not None else set())
    assert set(captured) == expected_names
    for name, value in captured.items():
        if name == "a":
            want = a
        elif name == "c":
            want = c
        else:
            want = np.stack([step[name] for step in cache["steps"]])
        np.testing.assert_allclose(value.numpy(), want, rtol=1e-10, atol=1e-12, err_msg=name)
    torch.testing.assert_close(out, module(x)[0])


def test_capture_layout_follows_the_input():
    module = gatedrnn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(B, T, I)
    out, (a_n, c_n), gates = module.capture(x, lengths=[7, 2, 5])
    assert len(gates) == 2 and all(len(layer) == 2 for layer in gates)
    assert gates[1][1]["gamma_f"].shape == (B, T, H)
    # past a sequence's end the gates are zero, and the output is zero as ever
    assert gates[0][0]["gamma_u"][1, 2:].abs().max() == 0
    assert out[1, 2:].abs().max() == 0
    assert not out.requires_grad
