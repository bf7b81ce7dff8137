"""torch.jit: a trace would replay the traced input's results, so it is refused by name, and so
is torch.jit.script; torch.export and torch.compile are the ways to a graph (test_export.py,
test_compile.py)."""

import pytest
import torch

import gatedrnn


@pytest.mark.parametrize("backend", ["loop", "cpu"])
@pytest.mark.parametrize("make", [lambda b: gatedrnn.LSTM(3, 4, backend=b),
                                  lambda b: gatedrnn.GRU(3, 4, num_layers=2, backend=b)],
                         ids=["lstm", "gru"])
def test_torch_jit_trace_is_refused_with_the_ways_that_work(make, backend):
    module = make(backend)
    with torch.no_grad(), pytest.raises(RuntimeError, match="torch.export.export or torch.compile"):
        torch.jit.trace(module, (torch.randn(5, 2, 3),))


def test_torch_jit_script_is_refused_in_one_clear_message():
    with pytest.raises(RuntimeError, match="torch.jit.script cannot compile"):
        torch.jit.script(gatedrnn.GRU(3, 4))


def test_a_cell_traces_correctly_as_plain_torch_operations():
    cell = gatedrnn.LSTMCell(3, 4)
    x, a, c = torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad():
        traced = torch.jit.trace(cell, (x, (a, c)))
        new = torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4))
        for got, expected in zip(traced(*new), cell(*new)):
            torch.testing.assert_close(got, expected)
