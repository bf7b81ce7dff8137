"""ONNX export and import: onnxruntime and ONNX's reference evaluator agree with gatedrnn."""

import itertools

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn.interop.onnx_layout import node_attributes

from conftest import VARIANTS, flat_outputs, layer_module, randomize

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

T, B, I, H = 6, 3, 4, 5
LENGTHS = np.array([6, 2, 4], dtype=np.int32)
CONFIGS = list(itertools.product([1, 2], [False, True], [False, True], [False, True]))


def _ids(config):
    layers, bidirectional, lengths, states = config
    return f"{layers}l-{'bi' if bidirectional else 'uni'}-" \
           f"{'len' if lengths else 'full'}-{'h0' if states else 'zero'}"


def _module(variant, seed=0, **kwargs):
    return randomize(layer_module(variant, I, H, **kwargs), torch.Generator().manual_seed(seed))


def _feeds(module, lengths, states, g):
    x = torch.randn(B, T, I, generator=g) if module.batch_first else torch.randn(T, B, I, generator=g)
    feeds, kwargs, hx = {"input": x.numpy()}, {}, None
    if lengths:
        feeds["lengths"] = LENGTHS
        kwargs["lengths"] = torch.from_numpy(LENGTHS.astype(np.int64))
    if states:
        n = module.num_layers * module.directions
        h0 = torch.randn(n, B, H, generator=g)
        feeds["h0"] = h0.numpy()
        hx = h0
        if gatedrnn.get_variant(module.variant).has_cell:
            c0 = torch.randn(n, B, H, generator=g)
            feeds["c0"] = c0.numpy()
            hx = (h0, c0)
    return x, hx, kwargs, feeds


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("variant", VARIANTS)
def test_exported_model_runs_in_onnxruntime_and_onnx_reference(variant, config):
    layers, bidirectional, lengths, states = config
    module = _module(variant, num_layers=layers, bidirectional=bidirectional).eval()
    model = gatedrnn.export_onnx(module, lengths=lengths, initial_states=states)
    x, hx, kwargs, feeds = _feeds(module, lengths, states, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = [o.numpy() for o in flat_outputs(module(x, hx, **kwargs))]

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    if not lengths and variant != "rnn_relu":   # onnx.reference (1.23) ignores sequence_lens
        # and knows no activation but the defaults
        for got, want in zip(ReferenceEvaluator(model).run(None, feeds), expected):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_batch_first_export(tmp_path):
    module = _module("lstm", num_layers=2, bidirectional=True, batch_first=True).eval()
    path = tmp_path / "lstm.onnx"
    gatedrnn.export_onnx(module, path)
    x, _, _, feeds = _feeds(module, False, False, torch.Generator().manual_seed(2))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(x)[0].numpy()
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, rtol=0, atol=1e-5)
    assert session.get_inputs()[0].shape[:2] == ["B", "T"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_round_trip_gives_identical_outputs_and_gates(variant, bidirectional):
    module = _module(variant, num_layers=2, bidirectional=bidirectional).eval()
    loaded = gatedrnn.load_onnx(gatedrnn.export_onnx(module))
    assert len(loaded) == 2 and all(m.variant == variant for m in loaded)
    for layer, m in enumerate(loaded):
        for direction in range(module.directions):
            ours, theirs = module.gates(layer, direction), m.gates(0, direction)
            assert ours.keys() == theirs.keys()
            for k in ours:
                for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (ours[k], theirs[k]))):
                    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    x = torch.randn(T, B, I)
    out = x
    with torch.no_grad():
        for m in loaded:
            out = m(out)[0]
        torch.testing.assert_close(out, module(x)[0], rtol=0, atol=1e-6)


def _helper_model(op, W, R, Bias, P, lbr, direction, with_lengths, with_states):
    D = W.shape[0]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])]
    initializers = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bias, "B"))]
    node_inputs = ["X", "W", "R", "B", "seq" if with_lengths else ""]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("seq", TensorProto.INT32, [B]))
    if with_states:
        node_inputs.append("h0")
        inputs.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, [D, B, H]))
        if op == "LSTM":
            node_inputs.append("c0")
            inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [D, B, H]))
    if P is not None:
        node_inputs += [""] * (7 - len(node_inputs)) + ["P"]
        initializers.append(numpy_helper.from_array(P, "P"))
    attributes = {"hidden_size": H, "direction": direction}
    if op == "GRU":
        attributes["linear_before_reset"] = lbr
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, node_inputs, outputs, **attributes)
    graph = helper.make_graph([node], "from_helper", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                               for o in outputs], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("with_states", [False, True], ids=["zero", "h0"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "len"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("op,lbr,peephole", [("LSTM", 0, False), ("LSTM", 0, True),
                                             ("GRU", 0, False), ("GRU", 1, False),
                                             ("RNN", 0, False)])
def test_import_of_models_built_with_onnx_helper(op, lbr, peephole, direction, with_lengths,
                                                 with_states):
    rng = np.random.default_rng(5)
    D = 2 if direction == "bidirectional" else 1
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    W = (0.5 * rng.standard_normal((D, G * H, I))).astype(np.float32)
    R = (0.5 * rng.standard_normal((D, G * H, H))).astype(np.float32)
    Bias = (0.5 * rng.standard_normal((D, 2 * G * H))).astype(np.float32)
    P = (0.5 * rng.standard_normal((D, 3 * H))).astype(np.float32) if peephole else None
    model = _helper_model(op, W, R, Bias, P, lbr, direction, with_lengths, with_states)
    feeds = {"X": rng.standard_normal((T, B, I)).astype(np.float32)}
    if with_lengths:
        feeds["seq"] = LENGTHS
    if with_states:
        feeds["h0"] = rng.standard_normal((D, B, H)).astype(np.float32)
        if op == "LSTM":
            feeds["c0"] = rng.standard_normal((D, B, H)).astype(np.float32)
    # onnx.reference ignores sequence_lens, so with lengths onnxruntime is the oracle.
    oracle = (ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
              if with_lengths else ReferenceEvaluator(model))
    expected = oracle.run(None, feeds)

    (module,) = gatedrnn.load_onnx(model)
    assert module.variant == {("LSTM", False): "lstm", ("LSTM", True): "lstm_peephole",
                              ("GRU", False): "gru" if lbr == 0 else "gru_reset_after",
                              ("RNN", False): "rnn"}[(op, peephole)]
    hx = None
    if with_states:
        hx = torch.from_numpy(feeds["h0"])
        if op == "LSTM":
            hx = (hx, torch.from_numpy(feeds["c0"]))
    kwargs = {"lengths": torch.from_numpy(LENGTHS.astype(np.int64))} if with_lengths else {}
    with torch.no_grad():
        out, state = module(torch.from_numpy(feeds["X"]), hx, **kwargs)
    y = out.reshape(T, B, D, H).permute(0, 2, 1, 3).numpy()
    np.testing.assert_allclose(y, expected[0], rtol=0, atol=1e-5)
    for got, want in zip(state if isinstance(state, tuple) else (state,), expected[1:]):
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)


def _single_node(op="LSTM", **attributes):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    W = np.zeros((1, G * H, I), np.float32)
    R = np.zeros((1, G * H, H), np.float32)
    node = helper.make_node(op, ["X", "W", "R"], ["Y"], name="rnn0", hidden_size=H, **attributes)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("attributes,message", [
    (dict(activations=["Sigmoid", "Relu", "Tanh"]), "attribute 'activations': gatedrnn needs the defaults"),
    (dict(clip=3.0), "attribute 'clip': gatedrnn needs no cell clipping, got 3.0"),
    (dict(input_forget=1), "attribute 'input_forget': gatedrnn needs input_forget=0"),
    (dict(layout=2), r"attribute 'layout': gatedrnn needs 0 \(time first\) or 1 \(batch first\), got 2"),
    (dict(direction="sideways"), "attribute 'direction': gatedrnn needs 'forward', 'reverse' or 'bidirectional'"),
    (dict(activation_alpha=[0.5]), "attribute 'activation_alpha': gatedrnn needs no activation"),
])
def test_refusals_name_the_node_and_the_attribute(attributes, message):
    with pytest.raises(ValueError, match=r"node 'rnn0' \(LSTM\): " + message):
        gatedrnn.load_onnx(_single_node(**attributes))


def test_computed_weights_are_refused():
    model = _single_node()
    del model.graph.initializer[1]   # R is no longer a constant
    with pytest.raises(ValueError, match="input 'R' is computed by other nodes"):
        gatedrnn.load_onnx(model)


def test_weights_given_as_graph_inputs_load_when_their_values_are_passed():
    model = _single_node()
    R = numpy_helper.to_array(model.graph.initializer[1])
    del model.graph.initializer[1]
    model.graph.input.append(helper.make_tensor_value_info("R", TensorProto.FLOAT, None))
    with pytest.raises(ValueError, match=r"input 'R' is a graph input.*inputs=\{'R': ...\}"):
        gatedrnn.load_onnx(model)
    (module,) = gatedrnn.load_onnx(model, inputs={"R": R + 0.5})
    assert torch.all(module.weight_hh_l0 == 0.5)
    with pytest.raises(ValueError, match=r"inputs: expected names of the graph's inputs .*got \['Q'\]"):
        gatedrnn.load_onnx(model, inputs={"Q": R})


def test_an_unnamed_node_is_named_by_its_operator_and_position():
    model = _single_node(clip=1.0)
    model.graph.node[0].name = ""
    with pytest.raises(ValueError, match=r"^LSTM node 0 \(unnamed\): attribute 'clip'"):
        gatedrnn.load_onnx(model)


@pytest.mark.parametrize("variant", VARIANTS)
def test_reverse_layers_export_and_load_back(variant):
    module = _module(variant, num_layers=2, reverse=True).eval()
    model = gatedrnn.export_onnx(module, lengths=True)
    assert {a.s for n in model.graph.node for a in n.attribute if a.name == "direction"} == {b"reverse"}
    x, _, kwargs, feeds = _feeds(module, True, False, torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = [o.numpy() for o in flat_outputs(module(x, **kwargs))]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    first, second = gatedrnn.load_onnx(model)
    assert first.reverse and first.variant == variant


@pytest.mark.parametrize("variant", ["gru", "lstm_peephole", "rnn"])
def test_layout_1_exports_batch_first_nodes_without_transposes(variant):
    module = _module(variant, num_layers=2, bidirectional=True, batch_first=True).eval()
    model = gatedrnn.export_onnx(module, layout=1, initial_states=True)
    assert "Transpose" not in {n.op_type for n in model.graph.node if n.input[0] == "input"}
    x, hx, _, feeds = _feeds(module, False, True, torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = [o.numpy() for o in flat_outputs(module(x, hx))]
    for got, want in zip(ReferenceEvaluator(model).run(None, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    loaded = gatedrnn.load_onnx(model)
    assert all(m.batch_first for m in loaded)
    with pytest.raises(ValueError, match="layout: 1 writes batch-first nodes .* got 1"):
        gatedrnn.export_onnx(_module(variant), layout=1)


def test_export_refuses_what_is_not_a_gatedrnn_layer():
    with pytest.raises(TypeError, match="module: expected a gatedrnn.GRU, LSTM or RNN, got LSTM"):
        gatedrnn.export_onnx(torch.nn.LSTM(I, H))


def test_gru_simple_is_a_gru_node_with_the_reset_gate_pinned_open():
    module = _module("gru_simple")
    model = gatedrnn.export_onnx(module)
    (node,) = [n for n in model.graph.node if n.op_type == "GRU"]
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.all(weights["W_l0"][0, H:2 * H] == 0) and np.all(weights["R_l0"][0, H:2 * H] == 0)
    assert np.all(weights["B_l0"][0, H:2 * H] == 100.0)
    assert node_attributes(_module("gru"))["linear_before_reset"] == 0


def test_a_hidden_size_that_disagrees_with_r_is_refused():
    model = _single_node()
    model.graph.node[0].attribute[0].i = H + 1   # hidden_size
    with pytest.raises(ValueError, match=rf"'hidden_size' is {H + 1}, but R has hidden_size {H}"):
        gatedrnn.load_onnx(model)


def test_a_forward_node_with_two_directions_of_weights_is_refused():
    model = _single_node()
    for k in range(2):   # W and R of two directions on a node that says "forward"
        array = numpy_helper.to_array(model.graph.initializer[k])
        model.graph.initializer[k].CopyFrom(numpy_helper.from_array(
            np.concatenate([array, array]), model.graph.initializer[k].name))
    with pytest.raises(ValueError, match=r"input W: expected shape \(1, .*direction 'forward'"):
        gatedrnn.load_onnx(model)


def test_an_empty_file_or_a_model_without_recurrent_nodes_is_refused(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="expected an ONNX model with an LSTM, GRU or RNN node"):
        gatedrnn.load_onnx(tmp_path / "empty.onnx")


def test_an_onnx_older_than_1_16_is_refused():
    from gatedrnn.interop.onnx_import import _check_onnx_version

    _check_onnx_version("1.16.0")
    with pytest.raises(ImportError, match="needs onnx >= 1.16 .* got 1.14.1"):
        _check_onnx_version("1.14.1")
