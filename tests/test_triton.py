"""The "triton" backend: the GPU kernels, run by Triton's interpreter on CPU tensors where no
GPU is present (conftest sets TRITON_INTERPRET=1), compared with the loop backend (itself
compared with the NumPy reference in test_backends.py, which covers triton too).

Shapes here span several tiles in every direction (rows, units, and reduction chunks), in
every launch mode: a launch per step; the whole sequence in one launch, a program per block of
rows; the persistent launch, 5 programs sharing the 6 tiles and meeting at a grid-wide barrier
after every step; and the resident launch, a program per tile holding its strips of R. Drawn
shapes then take every launch about the tiles' edges (one row or unit, a tile and one). The
interpreter runs a launch's programs one after the other, where a barrier between them never
opens: the two barrier launches run here with a thread per program (interpreter_threads.py).
"""

import random
import sys
from pathlib import Path

import pytest
import torch

from conftest import VARIANTS, rel_err, require_triton

require_triton()   # skips this module where the "triton" backend cannot run
import triton  # noqa: E402

import gatedrnn  # noqa: E402
from gatedrnn import kernels  # noqa: E402
from gatedrnn.functional import argument_shapes, capture, lengths_to_mask, recurrence  # noqa: E402
from gatedrnn.kernels import planner  # noqa: E402
from gatedrnn.kernels import triton as triton_backend  # noqa: E402
from gatedrnn.kernels.gpu import common  # noqa: E402
import triton.language as tl  # noqa: E402

import interpreter_threads  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from gpu_common import SHAPES as CHECK_PROBLEMS  # noqa: E402  the GPU check's T, B, H

T, B, I, H = 4, 19, 6, 40          # 2 row blocks of 16, 3 unit blocks of 16, 3 chunks of 16
LENGTHS = [4, 1, 3, 2] * 4 + [4, 4, 2]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def small_tiles(monkeypatch):
    """16-wide tiles, so that the small shapes above cross tile boundaries; working buffers
    start as NaN, so that an element a kernel fails to write shows in the results."""
    for name in ("block_b", "block_h", "block_k"):
        monkeypatch.setattr(planner.settings, name, 16)
    monkeypatch.setattr(planner.settings, "poison", True)


def _use(launch, monkeypatch, programs=5):
    """Launch the triton backend's sequences as `launch` (planner.LAUNCHES) in this test. On a
    GPU the barrier launches run many programs and a barrier that never opens would hang the
    test run: benchmarks/gpu_check.py checks them in a child process it can kill. Here they
    run a thread per program: `programs` for "persistent" (at 5, the first of them owns two of
    the 6 tiles of T, B, I, H), one per tile for "resident". The interpreter has no CUDA
    graphs: there "+graphs" would run exactly as without."""
    settings = planner.launch(launch)
    if settings["mode"] in planner.BARRIER:
        if DEVICE == "cuda":
            pytest.skip(f"the {launch} mode on a GPU is checked by benchmarks/gpu_check.py")
        if not interpreter_threads.supported():
            pytest.skip("this Triton's interpreter cannot be run a thread per program")
        interpreter_threads.run_programs_in_threads(monkeypatch)
        limit = programs if launch == "persistent" else 64
        monkeypatch.setattr(planner, "device_limits", lambda: (limit, 1 << 62))
    if settings["graphs"] and DEVICE == "cpu":
        pytest.skip("CUDA graphs need a GPU (tests/test_graphs.py checks the rest)")
    for name, value in settings.items():
        monkeypatch.setattr(planner.settings, name, value)


def _leaves(variant, dtype, seed=0, sizes=(T, B, I, H)):
    g = torch.Generator().manual_seed(seed)
    shapes = argument_shapes(variant, *sizes)
    scale = {"weight_ih": 0.4, "weight_hh": 0.3}
    return {k: (scale.get(k, 1.0) * torch.randn(s, generator=g, dtype=torch.float64))
            .to(DEVICE, dtype).requires_grad_() for k, s in shapes.items()}


def _run(variant, leaves, backend, mask, reverse):
    args = [leaves[k] for k in ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "a0", "c0")]
    outs = recurrence(*args, variant=variant, peephole=leaves["peephole"], mask=mask,
                      reverse=reverse, backend=backend)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o) for o in outs]
    loss = sum((o.double() * w.double()).sum() for o, w in zip(outs, weights))
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return outs, dict(zip(leaves, grads))


def _compare(variant, dtype, mask, reverse, tol, seed=0, sizes=(T, B, I, H)):
    leaves = _leaves(variant, dtype, seed, sizes)
    exact = {k: v.detach().double().requires_grad_() for k, v in leaves.items()}
    outs, grads = _run(variant, leaves, "triton", mask, reverse)
    want_outs, want_grads = _run(variant, exact, "loop", mask, reverse)
    for o, w in zip(outs, want_outs):
        assert o.dtype == dtype
        assert rel_err(o, w) <= tol, f"output: {rel_err(o, w):.2e}"
    for name, w in want_grads.items():
        if w is None:
            assert grads[name] is None, name
            continue
        assert grads[name].dtype == dtype, name
        assert rel_err(grads[name], w) <= tol, f"d{name}: {rel_err(grads[name], w):.2e}"


@pytest.mark.parametrize("launch", planner.LAUNCHES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tile_matches_the_loop(variant, launch, small_tiles, monkeypatch):
    _use(launch, monkeypatch)
    mask = lengths_to_mask(torch.tensor(LENGTHS), T).to(DEVICE)
    _compare(variant, torch.float64, mask, reverse=False, tol=1e-10)
    _compare(variant, torch.float64, None, reverse=True, tol=1e-10)


PLAIN_LAUNCHES = [n for n in planner.LAUNCHES if "+" not in n]   # CUDA graphs need a GPU
EDGES = [1, 15, 16, 17, 40, 50]   # hidden sizes about the 16-wide tiles and k_pad's powers of 2


@pytest.mark.parametrize("seed", range(len(PLAIN_LAUNCHES) * len(EDGES)))
def test_random_shapes_tiles_and_launches_match_the_loop(seed, monkeypatch):
    """Drawn shapes and tiles, where the test above has one of each: sizes at and around the
    tiles' edges (one step, one row, one input feature, one unit; a tile less one, a tile, a
    tile and one), tiles and reduction chunks of 16 to 64, rows of length 0 (never updated),
    reversed or not, a drawn variant. The seeds go round the launches and the hidden sizes so
    that every launch meets every size in EDGES; the persistent launch gets 1 to 6 programs."""
    rnd = random.Random(seed)
    launch = PLAIN_LAUNCHES[seed % len(PLAIN_LAUNCHES)]
    variant, h = rnd.choice(VARIANTS), EDGES[seed % len(EDGES)]
    t, b, i = rnd.choice([1, 2, 4]), rnd.choice([1, 15, 16, 17, 33]), rnd.choice([1, 7, 20])
    _use(launch, monkeypatch, programs=rnd.randint(1, 6))
    tiles = dict(block_k=rnd.choice([16, 32, 64]), poison=True)
    if launch != "resident":   # its tiles are fixed (planner.RESIDENT_TILE)
        # 64: the plan's rows per program from B = 33 (G2, G3), and what a --tune may choose
        tiles.update(block_b=rnd.choice([16, 32, 64]), block_h=rnd.choice([16, 32, 64]))
    for name, value in tiles.items():
        monkeypatch.setattr(planner.settings, name, value)
    lengths = torch.tensor([rnd.choice([0, *range(1, t + 1)]) for _ in range(b)])
    mask = lengths_to_mask(lengths, t).to(DEVICE) if rnd.random() < 0.5 else None
    reverse = rnd.random() < 0.5
    print(f"drawn: {variant} {launch} T={t} B={b} I={i} H={h} {tiles} reverse={reverse}")
    _compare(variant, torch.float64, mask, reverse, tol=1e-10, seed=seed, sizes=(t, b, i, h))


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["plan", "resident"])
@pytest.mark.parametrize("problem", list(CHECK_PROBLEMS))
@pytest.mark.parametrize("variant", ["gru", "lstm"])
def test_the_gpu_checks_problems_in_the_plans_tiles(variant, problem, launch, monkeypatch):
    """The batch and hidden sizes the GPU check runs, for two steps in float32, with the tiles
    and grids the plan gives them there (64-row tiles at G2 and G3, 48 to 128 programs, strips
    of k_pad(768) = 1024): where the tests' small shapes cannot reach, a stray access or a
    missing barrier at these sizes fails here too (interpreter_memory.py), before a GPU run.
    About ten minutes on two cores: marked slow (make test-all)."""
    _, B, H = CHECK_PROBLEMS[problem]
    if launch == "resident":
        if not planner.resident_fits(B, H, torch.float32, variant, planner.H100):
            pytest.skip(f"resident does not fit {problem} in float32 on an H100")
        _use(launch, monkeypatch)
    monkeypatch.setattr(planner.settings, "poison", True)
    lengths = torch.full((B,), 2)
    lengths[-1] = 1
    mask = lengths_to_mask(lengths, 2).to(DEVICE)
    _compare(variant, torch.float32, mask, False, tol=1e-5, sizes=(2, B, 32, H))


@pytest.mark.parametrize("mode", ["auto", "gemm"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_bfloat16_inputs_keep_a_float32_state(variant, mode, small_tiles, monkeypatch):
    """bfloat16 weights and inputs against the float64 loop on the same (rounded) values: the
    error is the rounding of the products' operands, outputs and gradients, not of the carried
    state. 3e-2, as in benchmarks/gpu_check.py: the interpreter truncates to bfloat16 where a
    GPU rounds to nearest, which doubles the rounding error."""
    monkeypatch.setattr(planner.settings, "mode", mode)
    mask = lengths_to_mask(torch.tensor(LENGTHS), T).to(DEVICE)
    _compare(variant, torch.bfloat16, mask, reverse=True, tol=_bf16_tol(variant))


def _bf16_tol(variant):
    # A relu unit whose pre-activation rounds across 0 in bfloat16 loses its whole gradient
    # (the kink): the bfloat16 "loop" backend's own gradients are 0.09-0.16 off here.
    return 0.25 if variant == "rnn_relu" else 3e-2


@pytest.mark.parametrize("variant", VARIANTS)
def test_bfloat16_in_the_resident_launch(variant, small_tiles, monkeypatch):
    """Its strips of R are bfloat16 tensor-core operands, its products float32."""
    _use("resident", monkeypatch)
    mask = lengths_to_mask(torch.tensor(LENGTHS), T).to(DEVICE)
    _compare(variant, torch.bfloat16, mask, reverse=False, tol=_bf16_tol(variant))


@triton.jit
def _strips_of(W, OUT, w_stride, n_h, H, G: tl.constexpr, GATE_ROWS: tl.constexpr,
               BLOCK_H: tl.constexpr, K_PAD: tl.constexpr):
    """Program p writes the strips that a resident program of tile p holds, gate after gate."""
    tile = tl.program_id(0)
    w0, w1, w2, w3 = common.strips(W, w_stride, GATE_ROWS, tile, n_h, H, G, BLOCK_H, K_PAD)
    out = (OUT + tile * 4 * K_PAD * BLOCK_H + tl.arange(0, K_PAD)[:, None] * BLOCK_H
           + tl.arange(0, BLOCK_H)[None, :])
    tl.store(out, w0)
    tl.store(out + K_PAD * BLOCK_H, w1)
    tl.store(out + 2 * K_PAD * BLOCK_H, w2)
    tl.store(out + 3 * K_PAD * BLOCK_H, w3)


@pytest.mark.parametrize("gates", [1, 3, 4])
def test_each_resident_program_holds_its_own_tiles_strips(gates):
    """The strips a resident program of any tile loads, element by element (the launches
    above check only their products, which ignore what a padded strip holds past H where the
    state's rows are masked): here 2 row blocks × 2 unit blocks of 16 at H = 20, the
    reduction padded to 32. Forward: of R^T, the gates along its columns;
    backward: of R, the gates along its rows; zero past H and for the unused gates' repeats
    of gate 0."""
    H, block_h, k_pad, n_h = 20, 16, 32, 2
    R = torch.randn(gates * H, H, dtype=torch.float64, device=DEVICE)
    for W, gate_rows in ((R.t().contiguous(), False), (R, True)):
        out = torch.full((2 * n_h, 4, k_pad, block_h), float("nan"), dtype=R.dtype,
                         device=DEVICE)
        _strips_of[(2 * n_h,)](W, out, W.shape[1], n_h, H, gates, gate_rows, block_h, k_pad)
        for tile in range(2 * n_h):
            cols = torch.arange(block_h) + (tile % n_h) * block_h
            for g in range(4):
                want = torch.zeros(k_pad, block_h, dtype=R.dtype, device=DEVICE)
                inside = cols < H
                gate = R[(g if g < gates else 0) * H:][:H]   # R_g (H, H)
                # [k, unit]: backward R_g[k, unit]; forward (R^T)[k, g·H + unit] = R_g[unit, k]
                want[:H, inside] = gate[:, cols[inside]] if gate_rows else gate[cols[inside]].t()
                assert torch.equal(out[tile, g], want), (gate_rows, tile, g)


# Tests of the barrier itself, which on a GPU benchmarks/gpu_check.py checks in a child process
# it can kill (one that never opens would hang the test run).
threaded = pytest.mark.skipif(DEVICE == "cuda" or not interpreter_threads.supported(),
                              reason="the interpreter, a thread per program")


@triton.jit
def _sums_after_barriers(COUNTER, OUT, SUMS, ROUNDS: tl.constexpr, PROGRAMS: tl.constexpr):
    """Each round, program p writes (round + 1)·(p + 1) to OUT[p], waits at the barrier, reads
    every program's value, and waits again before the next round overwrites them."""
    p = tl.program_id(0)
    everyone = tl.arange(0, PROGRAMS)
    for r in range(ROUNDS):
        tl.store(OUT + p, (r + 1) * (p + 1))
        common.grid_barrier(COUNTER, (2 * r + 1) * PROGRAMS)
        tl.store(SUMS + r * PROGRAMS + p, tl.sum(tl.load(OUT + everyone)))
        common.grid_barrier(COUNTER, (2 * r + 2) * PROGRAMS)


@threaded
def test_the_grid_barrier_holds_every_program_until_all_arrive(monkeypatch):
    """The barrier of the persistent and resident launches, with a thread per program, the
    last one latest: a program that passed it early would read another's value of an
    earlier round."""
    interpreter_threads.run_programs_in_threads(monkeypatch)
    programs, rounds = 4, 3
    counter = torch.zeros(1, dtype=torch.int32)
    out = torch.full((programs,), -1, dtype=torch.int32)
    sums = torch.full((rounds, programs), -1, dtype=torch.int32)
    _sums_after_barriers[(programs,)](counter, out, sums, rounds, programs)
    want = torch.tensor([(r + 1) * programs * (programs + 1) // 2 for r in range(rounds)],
                        dtype=torch.int32)
    assert torch.equal(sums, want[:, None].expand(rounds, programs))
    assert counter.item() == 2 * rounds * programs


@threaded
def test_a_barrier_that_never_opens_stops_the_threaded_launch(monkeypatch):
    interpreter_threads.run_programs_in_threads(monkeypatch, timeout=2.0)
    counter = torch.full((1,), -1, dtype=torch.int32)   # one arrival short, forever
    out, sums = torch.zeros(2, dtype=torch.int32), torch.zeros(1, 2, dtype=torch.int32)
    with pytest.raises(interpreter_threads.BarrierTimeout, match="2 of 2 programs"):
        _sums_after_barriers[(2,)](counter, out, sums, 1, 2)


def test_threads_are_not_tried_on_an_interpreter_of_other_helpers(monkeypatch):
    """The barrier launches' tests skip, rather than fail, on a Triton whose interpreter
    changed the helpers interpreter_threads calls."""
    from triton.runtime import interpreter
    monkeypatch.setattr(interpreter.GridExecutor, "_init_args_hst",
                        lambda self, args, kwargs, device: None, raising=False)
    assert not interpreter_threads.supported()


@pytest.mark.parametrize("launch", planner.LAUNCHES)
@pytest.mark.parametrize("variant", ["gru", "lstm_peephole"])
def test_inference_keeps_no_gates_and_agrees(variant, launch, small_tiles, monkeypatch):
    _use(launch, monkeypatch)
    leaves = _leaves(variant, torch.float32)
    args = [leaves[k] for k in ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "a0", "c0")]
    with torch.no_grad():
        got = recurrence(*args, variant=variant, peephole=leaves["peephole"], backend="triton")
        want = recurrence(*args, variant=variant, peephole=leaves["peephole"], backend="loop")
    for g, w in zip(got, want):
        assert rel_err(g, w) <= 1e-5


@pytest.mark.parametrize("variant", ["gru", "gru_reset_after", "lstm_peephole"])
def test_capture_reads_the_same_gates(variant, small_tiles):
    leaves = {k: v.detach() for k, v in _leaves(variant, torch.float64).items()}
    mask = lengths_to_mask(torch.tensor(LENGTHS), T).to(DEVICE)
    args = [leaves[k] for k in ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "a0", "c0")]
    _, got = capture(*args, variant=variant, peephole=leaves["peephole"], mask=mask,
                     backend="triton")
    _, want = capture(*args, variant=variant, peephole=leaves["peephole"], mask=mask,
                      backend="loop")
    assert got.keys() == want.keys()
    for name in want:
        assert rel_err(got[name], want[name]) <= 1e-12, name


@pytest.mark.parametrize("cls", [gatedrnn.GRU, gatedrnn.LSTM])
def test_modules_two_layers_bidirectional_with_lengths(cls, small_tiles):
    torch.manual_seed(0)
    m = cls(I, 24, num_layers=2, bidirectional=True, batch_first=True,
            dtype=torch.float64).to(DEVICE)
    x = torch.randn(B, T, I, dtype=torch.float64, device=DEVICE, requires_grad=True)
    w = torch.randn(B, T, 48, dtype=torch.float64, device=DEVICE)
    results = {}
    for backend in ("loop", "triton"):
        m.backend = backend
        out, _ = m(x, lengths=torch.tensor(LENGTHS))
        results[backend] = [out.detach(), *torch.autograd.grad((out * w).sum(),
                                                               [x, *m.parameters()])]
    for got, want in zip(results["triton"], results["loop"]):
        assert rel_err(got, want) <= 1e-10


def test_triton_on_cpu_tensors_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="backend: 'triton' runs CUDA tensors"):
        kernels.resolve("triton", torch.device("cpu"))


def test_a_bad_mode_is_named(monkeypatch):
    monkeypatch.setattr(planner.settings, "mode", "fast")
    with pytest.raises(ValueError, match=r"settings.mode: expected one of \['auto', 'step', "
                                         r"'gemm', 'sequence', 'persistent', 'resident'\], "
                                         r"got 'fast'"):
        planner.plan(4, 8)


def test_plan_runs_tiny_problems_as_one_launch_and_spreads_the_rest():
    assert planner.plan(1, 64).mode == "sequence"
    small_batch = planner.plan(16, 768)
    assert (small_batch.mode, small_batch.block_b, small_batch.block_h) == ("step", 16, 16)
    large = planner.plan(256, 1024, torch.bfloat16)
    assert (large.block_b, large.block_h, large.block_k) == (64, 32, 64)


def test_the_plan_passes_over_a_refused_launch(monkeypatch):
    """A launch this machine refused (one that lost the device in the GPU check, say) is not
    the heuristic's either: the next way to launch takes its place."""
    monkeypatch.setattr(planner, "refused", {"sequence", "step"})
    assert planner.plan(1, 64).mode == "gemm"
    assert planner.plan(16, 768).mode == "gemm"
    monkeypatch.setattr(planner, "refused", {"sequence"})
    assert planner.plan(1, 64).mode == "step"


@pytest.mark.gpu
def test_cuda_tensors_default_to_triton():
    assert kernels.resolve(None, torch.device("cuda")) == "triton"


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cuda_training_step_in_bfloat16_follows_float32(variant):
    """The default path on a GPU: a module in bfloat16 against the same module (the same
    rounded weights and inputs) in float32."""
    torch.manual_seed(0)
    m16 = gatedrnn.for_variant(variant, 64, 96, num_layers=2).cuda().bfloat16()
    m32 = gatedrnn.for_variant(variant, 64, 96, num_layers=2).cuda()
    m32.load_state_dict({k: v.float() for k, v in m16.state_dict().items()})
    x = torch.randn(50, 8, 64, device="cuda").bfloat16()
    out32, _ = m32(x.float())
    out16, _ = m16(x)
    assert out16.dtype == torch.bfloat16
    assert rel_err(out16.float(), out32) <= 3e-2
    out16.float().square().mean().backward()
    out32.square().mean().backward()
    for (name, p32), p16 in zip(m32.named_parameters(), m16.parameters()):
        assert rel_err(p16.grad.float(), p32.grad) <= 5e-2, name


class _FakeCompiled:
    """What Triton's JIT returns after a launch, reduced to what the direct launch uses."""

    def __init__(self, calls, refuse=False):
        self.calls, self.refuse = calls, refuse
        self.function, self.packed_metadata = "function", "metadata"

    def run(self, *args):
        if self.refuse:
            raise TypeError("launcher signature changed")
        self.calls.append(("direct", args))


class _FakeKernel:
    arg_names = ["X", "t", "A", "B"]   # two run-time arguments, then two constexprs

    def __init__(self, refuse=False):
        self.calls, self.refuse = [], refuse

    def __getitem__(self, grid):
        def launch(*args, **constants):
            self.calls.append(("jit", grid, args, constants))
            return _FakeCompiled(self.calls, self.refuse)
        return launch


@pytest.mark.parametrize("refuse", [False, True], ids=["direct", "refused"])
def test_step_launches_after_the_first_go_to_the_launcher_in_order(refuse, monkeypatch):
    """The direct launch passes the grid, stream, function and metadata, no launch metadata or
    hooks, then every parameter in the kernel's order, constexprs included, as Triton's JIT
    does; a launcher that refuses it turns the direct launch off, and the JIT launches."""
    monkeypatch.setattr(planner, "settings", planner.Settings())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: type("S", (), {"cuda_stream": 7}))
    kernel = _FakeKernel(refuse)
    step = triton_backend._Launcher(kernel, (2, 3), {"A": 1, "B": "ieee", "num_warps": 4})
    step("x", 0)
    if refuse:
        with pytest.warns(UserWarning, match="Triton's launcher refused the direct call"):
            step("x", 1)
        assert not planner.settings.fast_launch
        assert kernel.calls[1] == ("jit", (2, 3), ("x", 1), {"A": 1, "B": "ieee", "num_warps": 4})
    else:
        step("x", 1)
        assert kernel.calls[1] == ("direct", (2, 3, 1, 7, "function", "metadata", None, None, None,
                                              "x", 1, 1, "ieee"))
    assert kernel.calls[0] == ("jit", (2, 3), ("x", 0), {"A": 1, "B": "ieee", "num_warps": 4})
