"""The plan takes the launch the GPU check measured fastest at the nearest measured problem
(gatedrnn/kernels/choices.py), and its heuristic elsewhere."""

import json

import pytest
import torch
from conftest import needs_triton, rel_err

import gatedrnn
from gatedrnn.kernels import choices
from gatedrnn.kernels import graphs as graphs_module
from gatedrnn.kernels import planner
from gatedrnn.kernels import triton as triton_backend
from gatedrnn.kernels.choices import Choice, Measured

MEASURED = (Choice("lstm", "bf16", 16, 768, "persistent"),
            Choice("lstm", "bf16", 256, 1024, "gemm+graphs"),
            Choice("lstm", "f32", 16, 768, "step+graphs"),
            Choice("gru", "bf16", 16, 768, "step"),
            Choice("gru_simple", "bf16", 16, 768, "step"),
            Choice("lstm", "bf16", 1, 256, "sequence"))


@pytest.fixture
def measured(monkeypatch):
    """The plan as on a GPU, with MEASURED as the GPU check's choices."""
    monkeypatch.setattr(planner, "_choices", lambda: Measured(MEASURED))
    monkeypatch.setattr(planner, "interpreting", lambda: False)


def _launch(*args):
    chosen = choices.nearest(MEASURED, *args)
    return None if chosen is None else chosen.launch


def test_the_nearest_measured_problem_of_the_variant_and_dtype_chooses():
    assert _launch("lstm", 16, 768, torch.bfloat16) == "persistent"
    assert _launch("lstm", 32, 512, torch.bfloat16) == "persistent"
    assert _launch("lstm", 128, 1024, torch.bfloat16) == "gemm+graphs"
    assert _launch("lstm", 16, 768, torch.float32) == "step+graphs"
    assert _launch("lstm", 16, 768, torch.float16) == "persistent"


def test_an_unmeasured_variant_takes_what_most_measured_variants_took_there():
    assert _launch("rnn", 16, 768, torch.bfloat16) == "step"
    # gru was measured at G1 only: at G3 it takes what was measured there (lstm's)
    assert _launch("gru", 256, 1024, torch.bfloat16) == "gemm+graphs"


def test_nothing_is_chosen_far_from_every_measured_problem_nor_in_float64():
    assert _launch("lstm", 4, 4096, torch.bfloat16) is None
    assert _launch("lstm", 16, 768, torch.float64) is None
    assert choices.nearest((), "lstm", 16, 768, torch.bfloat16) is None


def test_the_plan_launches_as_measured(measured):
    chosen = planner.plan(16, 768, torch.bfloat16, "lstm")
    assert (chosen.mode, chosen.graphs) == ("persistent", False)
    chosen = planner.plan(256, 1024, torch.bfloat16, "lstm")
    assert planner.launch_name(chosen) == "gemm+graphs"
    assert (chosen.block_b, chosen.block_h, chosen.block_k) == (64, 32, 64)   # tiles as before


def _tiles(p):
    return p.block_b, p.block_h, p.block_k, p.num_warps


TUNED = Choice("lstm", "bf16", 16, 768, "step", block_b=32, block_h=64, block_k=32, num_warps=8)


def test_tuned_tiles_are_taken_within_an_octave_of_where_they_were_tuned(measured, monkeypatch):
    monkeypatch.setattr(planner, "_choices", lambda: Measured([TUNED]))
    assert _tiles(planner.plan(16, 768, torch.bfloat16, "lstm")) == (32, 64, 32, 8)
    assert _tiles(planner.plan(32, 768, torch.bfloat16, "lstm")) == (32, 64, 32, 8)
    assert _tiles(planner.plan(16, 384, torch.bfloat16, "lstm")) == (32, 64, 32, 8)
    far = planner.plan(64, 768, torch.bfloat16, "lstm")   # two octaves: the launch, not the tiles
    assert (far.mode, _tiles(far)) == ("step", (64, 16, 64, 4))


def test_tuned_tiles_are_the_variants_own_and_settings_go_first(measured, monkeypatch):
    monkeypatch.setattr(planner, "_choices", lambda: Measured([TUNED]))
    other = planner.plan(16, 768, torch.bfloat16, "rnn")   # lstm's launch, the heuristic tiles
    assert (other.mode, _tiles(other)) == ("step", (16, 16, 64, 4))
    monkeypatch.setattr(planner.settings, "block_h", 16)
    assert _tiles(planner.plan(16, 768, torch.bfloat16, "lstm")) == (32, 16, 32, 8)


def test_a_resident_launch_keeps_its_own_tiles(measured, monkeypatch):
    tuned = Choice("gru", "bf16", 16, 768, "resident", block_b=32, block_h=32, num_warps=4)
    monkeypatch.setattr(planner, "_choices", lambda: Measured([tuned]))
    monkeypatch.setattr(planner, "device_limits", lambda: H100)
    chosen = planner.plan(16, 768, torch.bfloat16, "gru")
    assert (chosen.mode, _tiles(chosen)) == ("resident", (16, 16, 64, 8))


def test_tuned_tiles_load_from_the_file_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "choices.json"
    entry = dict(variant="lstm", dtype="bf16", B=16, H=768, launch="step", block_b=32,
                 block_h=64, block_k=32, num_warps=8)
    path.write_text(json.dumps({"choices": [entry, dict(entry, variant="gru", block_b=None)]}))
    tuned, untuned_b = choices.load(path)
    assert tuned == TUNED and tuned.tiles() == dict(block_b=32, block_h=64, block_k=32,
                                                    num_warps=8)
    assert "block_b" not in untuned_b.tiles()
    path.write_text(json.dumps({"choices": [dict(entry, block_h=24)]}))
    with pytest.raises(ValueError, match=r"block_h: expected a power of two ≥ 16, got 24 "
                                         r"\(lstm bf16 B=16 H=768\)"):
        choices.load(path)


def test_the_heuristic_plans_where_nothing_near_was_measured(measured):
    assert planner.plan(4, 4096, torch.bfloat16, "lstm").mode == "step"
    assert planner.plan(1, 64, torch.float64, "lstm").mode == "sequence"
    assert planner.plan(16, 768, torch.bfloat16).mode == "step"   # no variant named


def test_a_measured_sequence_launch_is_not_taken_for_a_large_problem(measured):
    assert planner.plan(1, 256, torch.bfloat16, "lstm").mode == "sequence"
    assert _launch("lstm", 2, 512, torch.bfloat16) == "sequence"
    assert planner.plan(2, 512, torch.bfloat16, "lstm").mode == "step"


def test_sequence_fits_only_a_small_program_per_block_of_rows():
    assert planner.sequence_fits(1, 256) and planner.sequence_fits(16, 256)
    assert planner.sequence_fits(64, 128)
    assert not planner.sequence_fits(16, 768)    # G1
    assert not planner.sequence_fits(64, 256)    # G2


def test_settings_override_what_was_measured(measured, monkeypatch):
    monkeypatch.setattr(planner.settings, "mode", "step")
    assert planner.plan(16, 768, torch.bfloat16, "lstm").mode == "step"
    monkeypatch.setattr(planner.settings, "mode", "auto")
    monkeypatch.setattr(planner.settings, "graphs", True)
    assert planner.launch_name(planner.plan(16, 768, torch.bfloat16, "gru")) == \
        "step+graphs"


def test_the_interpreter_plans_by_the_heuristic(monkeypatch):
    monkeypatch.setattr(planner, "_choices", lambda: Measured(MEASURED))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert planner.plan(16, 768, torch.bfloat16, "lstm").mode == "step"


def test_the_shipped_file_loads():
    assert all(c.launch in planner.LAUNCHES for c in choices.load())


def test_a_missing_file_has_no_choices(tmp_path):
    assert choices.load(tmp_path / "none.json") == ()


def test_a_malformed_file_is_named(tmp_path):
    path = tmp_path / "choices.json"
    path.write_text(json.dumps({"choices": [{"variant": "lstm", "dtype": "bf16", "B": 16}]}))
    with pytest.raises(ValueError, match=r"choices.json: expected \{'choices': \[\{variant, "
                                         r"dtype, B, H, launch\}, \.\.\.\]\}, got an entry "
                                         r"without 'H'"):
        choices.load(path)


def test_an_unknown_launch_in_the_file_is_named(tmp_path, monkeypatch):
    path = tmp_path / "choices.json"
    path.write_text(json.dumps({"choices": [dict(variant="lstm", dtype="bf16", B=16, H=768,
                                                 launch="warp")]}))
    monkeypatch.setattr(choices, "PATH", path)
    planner._choices.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"launch: expected one of \['step', .*got \['warp'\]"):
            planner._choices()
    finally:
        planner._choices.cache_clear()


class _Refusing:
    """A one-launch kernel whose cooperative (persistent) launches fail, as a driver refuses a
    grid whose programs cannot all be resident."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            if kwargs["GRID_SYNC"]:
                raise RuntimeError("CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE")
            return self.kernel[grid](*args, **kwargs)
        return launch


def _refusing_one_launch(monkeypatch, measured: bool, launch="persistent", H=32):
    from gatedrnn.kernels.gpu import backward, forward
    monkeypatch.setattr(forward, "forward_sequence", _Refusing(forward.forward_sequence))
    monkeypatch.setattr(backward, "backward_sequence", _Refusing(backward.backward_sequence))
    monkeypatch.setattr(planner, "refused", set())
    if measured:   # as on a GPU whose check measured `launch` fastest at B=3, H
        monkeypatch.setattr(planner, "_use_measurements", lambda: True)
        measured = Measured([Choice("lstm", "f32", 3, H, launch)])
        monkeypatch.setattr(planner, "_choices", lambda: measured)
    else:
        monkeypatch.setattr(planner.settings, "mode", launch)


def _lstm_step(backend, H=32):
    torch.manual_seed(0)
    layer = gatedrnn.for_variant("lstm", 8, H, backend=backend)
    x = torch.randn(5, 3, 8, requires_grad=True)
    out, _ = layer(x)
    out.sum().backward()
    return out, x.grad


# The resident launch at H=16: one tile, as the interpreter can run it.
@needs_triton
@pytest.mark.parametrize("launch, H", [("persistent", 32), ("resident", 16)])
def test_a_measured_one_launch_kernel_this_machine_refuses_is_replanned(monkeypatch, launch, H):
    _refusing_one_launch(monkeypatch, True, launch, H)
    assert planner.plan(3, H, torch.float32, "lstm").mode == launch
    with pytest.warns(UserWarning, match=f"the {launch} launch, measured fastest for this "
                                         "problem, failed here .*COOPERATIVE_LAUNCH_TOO_LARGE"):
        got = _lstm_step("triton", H)
    for g, w in zip(got, _lstm_step("loop", H)):
        assert rel_err(g, w) <= 1e-5
    assert planner.plan(3, H, torch.float32, "lstm").mode == "sequence"


@needs_triton
@pytest.mark.parametrize("launch, H", [("persistent", 32), ("resident", 16)])
def test_a_one_launch_kernel_asked_for_by_hand_raises(monkeypatch, launch, H):
    _refusing_one_launch(monkeypatch, False, launch, H)
    with pytest.raises(RuntimeError, match="COOPERATIVE_LAUNCH_TOO_LARGE"):
        _lstm_step("triton", H)


H100 = planner.H100
A100 = (108, 163 << 10)   # multiprocessors, shared memory per program


def test_resident_fits_where_its_tiles_and_strips_do():
    fits = planner.resident_fits
    assert fits(16, 768, torch.bfloat16, "gru", H100)           # G1: 48 tiles, 193 KiB (ran)
    assert not fits(16, 768, torch.bfloat16, "gru", A100)       # ... more than an A100 has
    assert not fits(16, 768, torch.bfloat16, "lstm", H100)      # 385 KiB: the H100 refused it
    assert not fits(16, 768, torch.float32, "lstm", H100)       # 256 KiB of strips alone
    assert not fits(16, 768, torch.bfloat16, "gru_reset_after", H100)   # its backward: 417 KiB
    assert fits(64, 256, torch.float32, "lstm", H100)           # G2: 64 tiles, 192 KiB
    assert fits(1, 256, torch.float32, "gru_reset_after", H100)   # G4
    assert not fits(256, 1024, torch.bfloat16, "rnn", H100)     # G3: 1024 tiles
    assert not fits(64, 256, torch.float32, "lstm", (63, H100[1]))


def test_a_measured_resident_launch_is_taken_only_where_it_fits(measured, monkeypatch):
    resident = Measured([Choice(v, "bf16", 16, 768, "resident")
                         for v in ("gru", "gru_reset_after")])
    monkeypatch.setattr(planner, "_choices", lambda: resident)
    monkeypatch.setattr(planner, "device_limits", lambda: H100)
    chosen = planner.plan(16, 768, torch.bfloat16, "gru")
    assert (chosen.mode, chosen.block_b, chosen.block_h, chosen.num_warps) == (
        "resident", 16, 16, 8)
    assert planner.plan(16, 768, torch.bfloat16, "gru_reset_after").mode == "step"
    monkeypatch.setattr(planner, "device_limits", lambda: A100)
    assert planner.plan(16, 768, torch.bfloat16, "gru").mode == "step"


class _FailingGraphs(graphs_module.StepGraphs):
    """Recording refused, as where CUDA graphs cannot be captured."""

    def run(self, *args):
        raise RuntimeError("operation not permitted when stream is capturing")


@needs_triton
def test_a_measured_launch_with_graphs_that_cannot_record_is_replanned(monkeypatch):
    monkeypatch.setattr(planner, "refused", set())
    monkeypatch.setattr(planner, "_use_measurements", lambda: True)
    monkeypatch.setattr(triton_backend, "can_record", lambda: True)
    monkeypatch.setattr(triton_backend, "graphs", _FailingGraphs())
    measured = Measured([Choice("lstm", "f32", 3, 32, "step+graphs")])
    monkeypatch.setattr(planner, "_choices", lambda: measured)
    with pytest.warns(UserWarning, match="the step\\+graphs launch, measured fastest for this "
                                         "problem, failed here .*not permitted"):
        got = _lstm_step("triton")
    for g, w in zip(got, _lstm_step("loop")):
        assert rel_err(g, w) <= 1e-5
    assert planner.launch_name(planner.plan(3, 32, torch.float32, "lstm")) == \
        "sequence"


def test_the_nearest_launch_is_looked_up_once_per_problem(monkeypatch):
    asked = []
    monkeypatch.setattr(choices, "nearest", lambda *args: asked.append(args[1:]) or "step")
    table = Measured(MEASURED)
    for _ in range(3):
        assert table.nearest("lstm", 16, 768, torch.bfloat16) == "step"
    table.nearest("gru", 16, 768, torch.bfloat16)
    assert asked == [("lstm", 16, 768, torch.bfloat16), ("gru", 16, 768, torch.bfloat16)]
