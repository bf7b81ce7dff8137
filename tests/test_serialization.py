"""Safe model files: a round trip is exact; damaged or foreign files are refused clearly."""

import json

import pytest
import torch

import gatedrnn

from conftest import VARIANTS, layer_module, randomize


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_is_exact(variant, tmp_path):
    module = randomize(layer_module(variant, 3, 4, num_layers=2, bidirectional=True,
                                    batch_first=True, dtype=torch.float64),
                       torch.Generator().manual_seed(0))
    loaded = gatedrnn.load(gatedrnn.save(module, tmp_path / "m"))
    assert type(loaded) is type(module) and loaded.variant == variant
    for attr in ("num_layers", "bidirectional", "batch_first", "bias", "dropout"):
        assert getattr(loaded, attr) == getattr(module, attr)
    for (n1, p1), (n2, p2) in zip(module.named_parameters(), loaded.named_parameters()):
        assert n1 == n2 and p2.dtype == p1.dtype and torch.equal(p1, p2)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_the_weights_file_is_not_a_pickle(tmp_path):
    gatedrnn.save(gatedrnn.GRU(3, 4), tmp_path)
    header_length = int.from_bytes((tmp_path / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "model.safetensors").read_bytes()[8:8 + header_length])
    assert "weight_ih_l0" in header


def test_damaged_weights_are_refused(tmp_path):
    gatedrnn.save(gatedrnn.GRU(3, 4), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="damaged or not a safetensors file"):
        gatedrnn.load(tmp_path)


def test_mismatched_config_is_refused(tmp_path):
    gatedrnn.save(gatedrnn.LSTM(3, 4), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_size"] = 5
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"hidden_size 5, proj_size 0 .* the weights have a recurrent input of 4"):
        gatedrnn.load(tmp_path)


@pytest.mark.parametrize("change,message", [
    ({"num_layers": 100_000}, "num_layers: 100000, but model.safetensors holds 1 layers"),
    ({"hidden_size": 10**9}, "hidden_size 1000000000, .* the weights have a recurrent input of 4"),
    ({"input_size": -3}, "input_size: expected a positive integer, got -3"),
    ({"bidirectional": True}, "expected the tensors"),
])
def test_a_hostile_config_is_refused_before_anything_large_is_allocated(tmp_path, change,
                                                                         message):
    import time
    import tracemalloc

    gatedrnn.save(gatedrnn.LSTM(3, 4), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    # A first build on the meta device imports what it needs (sympy, ~20 MiB): before counting.
    gatedrnn.LSTM(3, 4, device="meta")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=message):
            gatedrnn.load(tmp_path)
        assert tracemalloc.get_traced_memory()[1] < 10 * 2**20
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("cls", [gatedrnn.GRU, gatedrnn.LSTM, gatedrnn.RNN])
def test_16_bit_models_build_save_and_load(cls, dtype, tmp_path):
    module = cls(5, 8, num_layers=2, dtype=dtype)
    w = module.weight_hh_l0.float()[:8]   # an orthogonal block, drawn in float32, then rounded
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=2e-2, rtol=0)
    loaded = gatedrnn.load(gatedrnn.save(module, tmp_path / "m"))
    for p1, p2 in zip(module.parameters(), loaded.parameters()):
        assert p2.dtype == dtype and torch.equal(p1, p2)


def test_foreign_or_missing_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected config.json"):
        gatedrnn.load(tmp_path)
    gatedrnn.save(gatedrnn.RNN(3, 4), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="expected a gatedrnn model of format_version 1"):
        gatedrnn.load(tmp_path)
    with pytest.raises(TypeError, match="module: expected a gatedrnn.GRU, LSTM or RNN"):
        gatedrnn.save(torch.nn.GRU(3, 4), tmp_path)
