"""torch.export of a model with gatedrnn layers: each layer and direction is one node of the
gatedrnn::through_time operator (gatedrnn/through_time.py), which runs the backend's kernels;
the time steps (and the batch) stay dynamic, and the exported program saves and loads where
gatedrnn is imported. Before the operator, export failed on the default CPU backend ("The
tensor has a non-zero number of elements, but its data is not allocated yet") and unrolled
the loop backend at the traced length."""

import subprocess
import sys

import pytest
import torch
from torch.export import Dim

from conftest import LayersInAModel, flat_outputs, needs_triton, rel_err

BACKENDS = ["cpu", "loop", "reference", pytest.param("triton", marks=needs_triton)]
THROUGH_TIME = torch.ops.gatedrnn.through_time.default


def _export(model, T=5, B=3, **kwargs):
    x = torch.randn(T, B, 3, dtype=torch.float64)
    lengths = torch.arange(T, T - B, -1)
    batch = Dim("B", min=2, max=1024)
    dynamic = ({0: Dim("T", min=2, max=4096), 1: batch}, {0: batch})
    return torch.export.export(model, (x, lengths), dynamic_shapes=dynamic, **kwargs)


def _operator_nodes(program):
    return [n for n in program.graph_module.graph.nodes if n.target is THROUGH_TIME]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_an_exported_model_runs_other_lengths_and_batches_as_the_eager_one(variant, backend):
    torch.manual_seed(0)
    model = LayersInAModel(variant, backend)
    program = _export(model)
    assert len(_operator_nodes(program)) == 4   # 2 layers × 2 directions
    for T, lengths in ((9, [9, 4, 7, 1]), (2, [2, 1])):
        x = torch.randn(T, len(lengths), 3, dtype=torch.float64)
        got, expected = program.module()(x, torch.tensor(lengths)), model(x, torch.tensor(lengths))
        for a, b in zip(flat_outputs(got), flat_outputs(expected)):
            assert a.shape == b.shape and rel_err(a, b) <= 1e-12


@pytest.mark.parametrize("strict", [False, True])
def test_decomposed_and_strict_exports_keep_the_operator(strict):
    """run_decompositions (the step toward core ATen that other runtimes take) leaves the
    operator whole, and Dynamo's strict export takes it as the default one does."""
    torch.manual_seed(0)
    model = LayersInAModel("lstm_peephole", "cpu")
    program = _export(model, strict=strict).run_decompositions()
    assert len(_operator_nodes(program)) == 4
    x, lengths = torch.randn(8, 3, 3, dtype=torch.float64), torch.tensor([8, 2, 6])
    for a, b in zip(flat_outputs(program.module()(x, lengths)), flat_outputs(model(x, lengths))):
        assert rel_err(a, b) <= 1e-12


def test_an_exported_models_gradients_are_the_eager_ones():
    """The exported graph keeps the operator's autograd: gradients through program.module()."""
    torch.manual_seed(0)
    model = LayersInAModel("lstm", "cpu")
    module = _export(model).module()
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for run in (model, module):
        out, (h, c) = run(x, torch.tensor([6, 4]))
        grads.append(torch.autograd.grad((out.sin().sum() + h.sum() + c.sum()), x))
    assert rel_err(grads[1][0], grads[0][0]) <= 1e-12


def test_exported_without_gradients_the_program_keeps_no_saved_gates():
    """Exported under no_grad (for inference), the operator is told no backward will follow:
    the kernels then keep one step's gates, not T."""
    model = LayersInAModel("gru", "cpu")
    with torch.no_grad():
        program = _export(model)
    assert [n.args[-1] for n in _operator_nodes(program)] == [False] * 4
    assert [n.args[-1] for n in _operator_nodes(_export(model))] == [True] * 4


def test_an_exported_program_saves_and_loads_where_gatedrnn_is_imported(tmp_path):
    torch.manual_seed(0)
    model = LayersInAModel("gru", "cpu")
    torch.export.save(_export(model), tmp_path / "model.pt2")
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, torch, gatedrnn; d = sys.argv[1]; "
            "program = torch.export.load(d + '/model.pt2'); "
            "out, h = program.module()(torch.load(d + '/x.pt'), torch.tensor([7, 3])); "
            "torch.save((out, h), d + '/got.pt')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    got = torch.load(tmp_path / "got.pt")
    for a, b in zip(got, model(x, torch.tensor([7, 3]))):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.gpu
def test_an_exported_model_on_the_gpu_gives_the_eager_ones_numbers():
    torch.manual_seed(0)
    model = LayersInAModel("lstm", "triton", torch.float32).cuda()
    x = torch.randn(6, 3, 3, device="cuda")
    lengths = torch.tensor([6, 2, 5], device="cuda")
    program = torch.export.export(model, (x, lengths))
    for a, b in zip(flat_outputs(program.module()(x, lengths)), flat_outputs(model(x, lengths))):
        assert rel_err(a, b) <= 1e-6
