"""ONNX's own operator test cases for LSTM, GRU and RNN, run through gatedrnn's ONNX backend.

The cases come from the installed onnx package's generators (onnx.backend.test.case.node),
the ones its backend test suite is built from: weights as graph inputs, layout 1, direction
"reverse" and "bidirectional", peepholes, sequence_lens and initial states.
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
from gatedrnn.interop.onnx_backend import Backend  # noqa: E402

RECURRENT = ("LSTM", "GRU", "RNN")


def _cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():   # other operators' generators overflow on purpose
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return {c.name: c for c in cases if c.model.graph.node[0].op_type in RECURRENT}


CASES = _cases()


def test_every_recurrent_case_of_the_installed_onnx_is_collected():
    ops = {c.model.graph.node[0].op_type for c in CASES.values()}
    assert ops == set(RECURRENT) and len(CASES) >= 18


@pytest.mark.parametrize("name", sorted(CASES))
def test_onnx_operator_case(name):
    case = CASES[name]
    rep = Backend.prepare(case.model)
    for inputs, expected in case.data_sets:
        got = rep.run(inputs)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)


def test_run_node_answers_like_prepare():
    case = CASES["test_lstm_with_peepholes"]
    node = case.model.graph.node[0]
    inputs, expected = case.data_sets[0]
    for g, e in zip(Backend.run_node(node, inputs), expected):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-6)


def test_a_model_with_other_operators_is_refused():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    with pytest.raises(ValueError, match="LSTM, GRU and RNN nodes only; node 0 is Relu"):
        Backend.prepare(helper.make_model(graph))
