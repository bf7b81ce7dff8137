"""State dicts never load silently wrong: torch.nn's load converted (torch.nn has the variant)
or are refused (it has not); gatedrnn's own carry a layout mark and round-trip exactly."""

import pytest
import torch

import gatedrnn

T, B, I, H = 5, 3, 4, 6


def _torch_and_ours(kind, **kwargs):
    torch.manual_seed(0)
    theirs = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](I, H, **kwargs)
    ours = {"lstm": lambda: gatedrnn.LSTM(I, H, **kwargs),
            "gru": lambda: gatedrnn.GRU(I, H, variant="gru_reset_after", **kwargs),
            "rnn": lambda: gatedrnn.RNN(I, H, **kwargs)}[kind]()
    return theirs, ours


@pytest.mark.parametrize("kwargs", [{}, {"num_layers": 2, "bidirectional": True},
                                    {"bias": False}], ids=["plain", "stacked", "no-bias"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_a_torch_nn_state_dict_loads_and_gives_torch_nn_outputs(kind, kwargs):
    theirs, ours = _torch_and_ours(kind, **kwargs)
    result = ours.load_state_dict(theirs.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(T, B, I)
    with torch.no_grad():
        for got, expected in zip(torch.utils._pytree.tree_leaves(ours(x)),
                                 torch.utils._pytree.tree_leaves(theirs(x))):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: gatedrnn.GRU(I, H), lambda: gatedrnn.GRU(I, H, variant="gru_simple"),
                                  lambda: gatedrnn.LSTM(I, H, peephole=True)],
                         ids=["gru", "gru_simple", "lstm_peephole"])
def test_a_torch_nn_state_dict_for_a_variant_torch_lacks_is_refused(make):
    module = make()
    theirs = torch.nn.LSTM(I, H) if module.variant.startswith("lstm") else torch.nn.GRU(I, H)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(RuntimeError, match=f"torch.nn has no '{module.variant}'"):
        module.load_state_dict(theirs.state_dict(), strict=False)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_gatedrnn_state_dict_is_refused_by_torch_nn():
    with pytest.raises(RuntimeError, match="Unexpected key.*_extra_state"):
        torch.nn.LSTM(I, H).load_state_dict(gatedrnn.LSTM(I, H).state_dict())


@pytest.mark.parametrize("make", [lambda: gatedrnn.LSTM(I, H, num_layers=2),
                                  lambda: gatedrnn.GRU(I, H, variant="gru_reset_after"),
                                  lambda: gatedrnn.LSTMCell(I, H), lambda: gatedrnn.GRUCell(I, H)],
                         ids=["lstm", "gru_reset_after", "lstm-cell", "gru-cell"])
def test_a_gatedrnn_state_dict_round_trips_exactly(make):
    torch.manual_seed(0)
    source, target = make(), make()
    target.load_state_dict(source.state_dict())
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_torch_nn_cell_state_dict_loads_into_the_cell():
    torch.manual_seed(0)
    theirs, ours = torch.nn.LSTMCell(I, H), gatedrnn.LSTMCell(I, H)
    ours.load_state_dict(theirs.state_dict())
    x, a, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    with torch.no_grad():
        for got, expected in zip(ours(x, (a, c)), theirs(x, (a, c))):
            torch.testing.assert_close(got, expected)


def test_files_written_before_the_mark_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    module = gatedrnn.LSTM(I, H)
    gatedrnn.save(module, tmp_path / "m")
    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    del tensors["_extra_state"]   # as format_version 1 files were written until now
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    loaded = gatedrnn.load(tmp_path / "m")
    for a, b in zip(module.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
