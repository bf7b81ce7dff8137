"""Bad input: a clear ValueError / TypeError naming the argument, the expected and the actual."""

import pytest
import torch

import gatedrnn

T, B, I, H = 5, 3, 4, 6


@pytest.fixture
def gru():
    return gatedrnn.GRU(I, H, num_layers=2)


@pytest.fixture
def lstm():
    return gatedrnn.LSTM(I, H)


def test_wrong_input_rank(gru):
    with pytest.raises(ValueError, match=r"input: expected 3 dimensions \(T, B, I\).*got 4 with shape \(5, 3, 4, 1\)"):
        gru(torch.randn(T, B, I, 1))


def test_input_not_a_tensor(gru):
    with pytest.raises(TypeError, match="input: expected a torch.Tensor, got list"):
        gru([[1.0] * I])


def test_wrong_feature_size(gru):
    with pytest.raises(ValueError, match=r"input: expected input_size=4 features .* got 5"):
        gru(torch.randn(T, B, I + 1))


def test_wrong_input_dtype(gru):
    with pytest.raises(TypeError, match="input: expected dtype torch.float32 .* got torch.float64"):
        gru(torch.randn(T, B, I, dtype=torch.float64))


def test_state_of_the_wrong_shape(gru):
    with pytest.raises(ValueError, match=r"hx: expected shape \(2, 3, 6\) .* got \(1, 3, 6\)"):
        gru(torch.randn(T, B, I), torch.zeros(1, B, H))


def test_state_of_the_wrong_dtype(gru):
    with pytest.raises(TypeError, match="hx: expected dtype torch.float32 .* got torch.float64"):
        gru(torch.randn(T, B, I), torch.zeros(2, B, H, dtype=torch.float64))


def test_state_on_the_wrong_device(gru):
    with pytest.raises(ValueError, match="hx: expected a tensor on cpu .* got one on meta"):
        gru(torch.randn(T, B, I), torch.zeros(2, B, H, device="meta"))


def test_lstm_state_not_a_pair(lstm):
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(a0, c0\) for the LSTM, got Tensor"):
        lstm(torch.randn(T, B, I), torch.zeros(1, B, H))


def test_lstm_cell_state_of_the_wrong_shape(lstm):
    with pytest.raises(ValueError, match=r"hx\[1\] \(c0\): expected shape \(1, 3, 6\)"):
        lstm(torch.randn(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, H + 1)))


def test_lengths_out_of_range(gru):
    with pytest.raises(ValueError, match="lengths: expected every length <= 5 .* got a length of 6"):
        gru(torch.randn(T, B, I), lengths=[5, 6, 2])


def test_zero_length_sequence(gru):
    with pytest.raises(ValueError, match="lengths: expected every length >= 1 .* got a length of 0"):
        gru(torch.randn(T, B, I), lengths=[5, 0, 2])


def test_lengths_wrong_count(gru):
    with pytest.raises(ValueError, match=r"lengths: expected one length per sequence, shape \(3,\), got shape \(2,\)"):
        gru(torch.randn(T, B, I), lengths=[5, 2])


def test_lengths_not_integers(gru):
    with pytest.raises(TypeError, match="lengths: expected an integer tensor or list, got dtype torch.float32"):
        gru(torch.randn(T, B, I), lengths=torch.tensor([5.0, 2.0, 1.0]))


def test_lengths_unsorted_packed_sequence_refused_by_packing():
    """Unsorted lengths only matter when packing with enforce_sorted=True (torch's own check);
    gatedrnn's lengths= takes any order (see test_modules)."""
    x = torch.randn(T, B, I)
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        torch.nn.utils.rnn.pack_padded_sequence(x, [2, 5, 3])


def test_lengths_together_with_packed_input(gru):
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(T, B, I), [5, 3, 2])
    with pytest.raises(ValueError, match="lengths: a PackedSequence carries its own lengths"):
        gru(packed, lengths=[5, 3, 2])


def test_empty_sequence(gru):
    with pytest.raises(ValueError, match=r"input: expected at least one time step, got an empty sequence \(T=0\)"):
        gru(torch.randn(0, B, I))


def test_empty_batch(gru):
    with pytest.raises(ValueError, match="input: expected at least one sequence in the batch, got B=0"):
        gru(torch.randn(T, 0, I))


def test_unknown_variant():
    with pytest.raises(ValueError, match=r"variant: expected one of \[.*'gru'.*\], got 'gru2'"):
        gatedrnn.GRU(I, H, variant="gru2")


def test_lstm_variant_on_a_gru():
    with pytest.raises(ValueError, match=r"variant: a GRU takes one of \['gru', 'gru_simple', 'gru_reset_after'\], got 'lstm'"):
        gatedrnn.GRU(I, H, variant="lstm")


def test_peephole_on_a_gru():
    with pytest.raises(ValueError, match="peephole: only the LSTM has peephole connections"):
        gatedrnn.GRU(I, H, peephole=True)
    with pytest.raises(ValueError, match="peephole: only the LSTM has peephole connections"):
        gatedrnn.GRUCell(I, H, peephole=True)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"backend: expected one of \[.*'loop'.*\], 'auto' or None, got 'cuda'"):
        gatedrnn.GRU(I, H, backend="cuda")


@pytest.mark.parametrize("name,value,error", [("input_size", 0, ValueError),
                                               ("hidden_size", 2.5, TypeError),
                                               ("num_layers", -1, ValueError)])
def test_bad_sizes(name, value, error):
    kwargs = {**dict(input_size=I, hidden_size=H, num_layers=1), name: value}
    with pytest.raises(error, match=f"{name}: expected a positive int"):
        gatedrnn.LSTM(**kwargs)


def test_bad_dropout():
    with pytest.raises(ValueError, match=r"dropout: expected a number in \[0, 1\], got 1.5"):
        gatedrnn.LSTM(I, H, num_layers=2, dropout=1.5)


def test_gates_of_a_missing_layer(gru):
    with pytest.raises(ValueError, match="layer: expected 0 <= layer < 2, got 2"):
        gru.gates(layer=2)
    with pytest.raises(ValueError, match="direction: expected 0 <= direction < 1, got 1"):
        gru.gates(direction=1)


def test_cell_input_and_state_checks():
    cell = gatedrnn.LSTMCell(I, H)
    with pytest.raises(ValueError, match=r"input: expected shape \(B, 4\) or \(4,\), got \(3, 5\)"):
        cell(torch.randn(B, I + 1))
    with pytest.raises(ValueError, match=r"hx\[0\] \(a_prev\): expected shape \(3, 6\) \(batch, hidden_size\), got \(3, 5\)"):
        cell(torch.randn(B, I), (torch.zeros(B, H - 1), torch.zeros(B, H)))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(a_prev, c_prev\), got Tensor"):
        cell(torch.randn(B, I), torch.zeros(B, H))


def test_a_packed_sequence_of_the_wrong_feature_size_is_refused(gru):
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(T, B, I + 1), [5, 3, 2])
    with pytest.raises(ValueError, match=f"input: expected input_size={I} features"):
        gru(packed)


@pytest.mark.parametrize("make", [lambda: gatedrnn.GRU(I, H, batch_first="False"),
                                  lambda: gatedrnn.LSTM(I, H, bias="x"),
                                  lambda: gatedrnn.RNN(I, H, bidirectional="yes"),
                                  lambda: gatedrnn.LSTMCell(I, H, bias=None)],
                         ids=["batch_first", "bias", "bidirectional", "cell-bias"])
def test_a_flag_that_is_not_a_bool_is_refused_as_torch_refuses_it(make):
    with pytest.raises(TypeError, match="expected a bool, got"):
        make()
