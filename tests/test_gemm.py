"""The triton backend's "gemm" mode, beyond what test_triton.py checks of its numbers: how its
16-bit products reach float32 on a torch that lacks the best way."""

from types import SimpleNamespace

import pytest
import torch

from gatedrnn.kernels import gemm


def test_a_refused_way_to_multiply_gives_way_to_the_next_with_a_warning(monkeypatch):
    calls = []

    def refuse(a, b, out):
        calls.append("refuse")
        raise TypeError("mm() got an unexpected keyword argument 'out_dtype'")

    def accept(a, b, out):
        calls.append("accept")

    monkeypatch.setattr(gemm, "_WAYS", [refuse, accept])
    a = SimpleNamespace(dtype=torch.bfloat16, is_cuda=True)   # all product() reads of a
    out = torch.zeros(1)
    with pytest.warns(UserWarning, match="refuse products refused .* goes on with accept"):
        assert gemm.product(a, None, out) is out
    gemm.product(a, None, out)
    assert calls == ["refuse", "accept", "accept"]   # the refused way is not tried again


def test_the_last_way_refused_is_an_error(monkeypatch):
    def refuse(a, b, out):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(gemm, "_WAYS", [refuse])
    with pytest.raises(RuntimeError, match="no kernel"):
        gemm.product(SimpleNamespace(dtype=torch.bfloat16, is_cuda=True), None, torch.zeros(1))


def test_cpu_products_of_bfloat16_are_float32_products_of_the_same_values():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(s, generator=g).bfloat16() for s in ((3, 5), (5, 4)))
    out = torch.empty(3, 4)
    gemm.product(a, b, out)
    assert torch.equal(out, a.float() @ b.float())
