"""Compile every Triton kernel of the triton backend for a GPU, without one.

Triton's compiler and ptxas (shipped in the triton wheel) need no device: this builds each
kernel, for every variant, phase and dtype, down to machine code for the target (default the
H100's sm_90), and prints what the GPU check cannot show before it runs: registers per thread,
spills, shared memory, and how the products compile (tensor cores or FMAs, from the PTX). A
kernel that the interpreter runs but the compiler refuses fails here, on any machine, instead
of on the lent GPU.

    python benchmarks/compile_check.py                      # every kernel, sm_90, as planned
    python benchmarks/compile_check.py --kernels forward_step --dtypes bf16 --arch 90
    python benchmarks/compile_check.py --block-b 16 --block-h 64 --block-k 64 --num-warps 8
    python benchmarks/compile_check.py --kernels forward_resident backward_resident --hidden 768

The resident kernels hold their strips of R, k_pad(--hidden) long, in shared memory: their
"shared bytes" is what decides where they fit (planner.resident_fits). They compile with the
plan's tiles for them (16 × 16, 8 warps) whatever the block options say.

Exit status 1 if any kernel fails to compile.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import torch  # noqa: E402

from gatedrnn import VARIANTS, get_variant  # noqa: E402
from gatedrnn.kernels import planner  # noqa: E402
from gatedrnn.kernels import triton as triton_backend  # noqa: E402
from gatedrnn.kernels.gpu import backward, forward  # noqa: E402

# name: (kernel, constants beyond the variant's): the step kernels with their own product or
# cuBLAS's ("gemm" mode), the one-launch kernels in both launch modes
KERNELS = {"forward_step": (forward.forward_step, {"GIVEN": False}),
           "backward_step": (backward.backward_step, {"GIVEN": False}),
           "forward_gemm": (forward.forward_step, {"GIVEN": True}),
           "backward_gemm": (backward.backward_step, {"GIVEN": True}),
           "forward_sequence": (forward.forward_sequence, {"GRID_SYNC": False}),
           "backward_sequence": (backward.backward_sequence, {"GRID_SYNC": False}),
           "forward_persistent": (forward.forward_sequence, {"GRID_SYNC": True}),
           "backward_persistent": (backward.backward_sequence, {"GRID_SYNC": True}),
           "forward_resident": (forward.forward_sequence, {"GRID_SYNC": True, "RESIDENT": True}),
           "backward_resident": (backward.backward_sequence,
                                 {"GRID_SYNC": True, "RESIDENT": True})}
DTYPES = {"f32": "fp32", "bf16": "bf16"}
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Pointers in the weights' dtype (and the LSTM's SA); the others (states, gates, carried
# gradients) are float32.
PARAMETER_POINTERS = {"XP", "RT", "BHH", "P", "R", "DXP", "RA", "SAL"}
# Integer arguments that are sizes (the others are flags and step indices, which vary)
SIZES = {"T", "B", "H", "n_h", "n_tiles", "pr_stride"}


def signature(fn, dtype: str, constants: dict, has_cell: bool) -> dict:
    sig = {}
    for name in fn.arg_names:
        if name in constants:
            sig[name] = "constexpr"
        elif name in PARAMETER_POINTERS or (name == "SA" and has_cell):   # see triton.py
            sig[name] = "*" + dtype
        elif name == "MASK":
            sig[name] = "*i8"
        elif name == "COUNTER":
            sig[name] = "*i32"
        elif len(name) > 1 and name.isupper():
            sig[name] = "*fp32"
        else:
            sig[name] = "i32"
    return sig


def specialization(fn, sig: dict) -> dict:
    """What Triton's JIT tells the compiler about a launch at the check's shapes: every
    pointer 16-byte aligned and every size a multiple of 16 (as at G1-G4). It changes the
    kernels' layouts: without it the resident LSTM's backward at H = 768 in bfloat16 took 161
    KiB of shared memory here, with it 385 KiB, what the GPU refused
    (benchmarks/results/gpu-notes.md, v6)."""
    return {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names)
            if sig[name].startswith("*") or name in SIZES}


def compile_one(name: str, variant: str, phase: int, dtype: str, blocks, arch: int,
                num_warps: int, hidden: int = 256):
    """One kernel with the constants the backend launches it with (triton._common)."""
    fn, extra = KERNELS[name]
    if extra.get("RESIDENT"):   # as the plan launches it
        tile = planner.RESIDENT_TILE
        blocks, num_warps = (tile, tile, blocks[2]), planner.RESIDENT_WARPS
    v = get_variant(variant)
    weights = TORCH_DTYPES[dtype]
    constants = dict(triton_backend._common(v, weights, planner.Plan(
        "step", *blocks, num_warps)), **extra)
    del constants["num_warps"]   # a launch option, not a parameter
    if "PHASE" in fn.arg_names:
        constants["PHASE"] = phase
    if "LOW_COPY" in fn.arg_names:
        constants["LOW_COPY"] = triton_backend._low_copy(v, weights)
    if "PHASES" in fn.arg_names:
        constants["PHASES"] = triton_backend._phases(v)
    if "RESIDENT" in fn.arg_names:
        constants.setdefault("RESIDENT", False)
        constants["K_PAD"] = planner.k_pad(hidden) if constants["RESIDENT"] else 16
    sig = signature(fn, dtype, constants, v.has_cell)
    source = ASTSource(fn, sig, constants, specialization(fn, sig))
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options=dict(num_warps=num_warps))


def resources(kernel, arch: int) -> tuple[str, str]:
    """(registers, spilled bytes) as ptxas reports them: a compiled kernel learns its
    resources only when loaded on a device, so ptxas is asked again, verbosely."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    suffix = "a" if arch >= 90 else ""
    with tempfile.TemporaryDirectory() as folder:
        ptx = Path(folder) / "kernel.ptx"
        ptx.write_text(kernel.asm["ptx"])
        report = subprocess.run([str(ptxas), "-v", f"--gpu-name=sm_{arch}{suffix}", str(ptx),
                                 "-o", str(Path(folder) / "kernel.cubin")],
                                capture_output=True, text=True).stderr
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores", report)
    return (registers.group(1) if registers else "?", spills.group(1) if spills else "?")


def products(kernel) -> str:
    """How the kernel's matrix products (tl.dot) compile: "N × DTYPE" of its operands, then
    the PTX's way: "wgmma" or "mma" (tensor cores), "mma tf32" (float32 operands rounded to
    TF32 on tensor cores), "fma" (CUDA cores, IEEE float32); "none" where the kernel has no
    product (the "gemm" mode's kernels: cuBLAS does it)."""
    dots = [line for line in kernel.asm["ttir"].splitlines() if "tt.dot " in line]
    if not dots:
        return "none"
    operands = sorted({m for line in dots for m in re.findall(r"tensor<\d+x\d+x(\w+)> \*", line)})
    ptx = kernel.asm["ptx"]
    way = ("wgmma" if "wgmma.mma_async" in ptx else
           "mma tf32" if re.search(r"mma\.sync\.aligned\S*\.tf32", ptx) else
           "mma" if "mma.sync.aligned" in ptx else "fma")
    return f"{len(dots)} × {'/'.join(operands)}: {way}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", nargs="*", default=list(KERNELS))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES))
    parser.add_argument("--arch", type=int, default=90, help="compute capability × 10")
    parser.add_argument("--block-b", type=int, default=16)
    parser.add_argument("--block-h", type=int, default=32)
    parser.add_argument("--block-k", type=int, default=32)
    parser.add_argument("--num-warps", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256,
                        help="H of the resident kernels, whose strips are k_pad(H) long")
    args = parser.parse_args()
    blocks = (args.block_b, args.block_h, args.block_k)
    print(f"sm_{args.arch}, blocks (rows, units, k) = {blocks}, {args.num_warps} warps; "
          f"resident kernels (16 × 16, 8 warps) for H = {args.hidden}")
    print("| kernel | variant | phase | dtype | registers | spills | shared bytes | products "
          "| s |")
    print("|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for name in args.kernels:
        fn = KERNELS[name][0]
        for variant in args.variants:
            phases = (0, 1) if variant == "gru" and "PHASE" in fn.arg_names else (0,)
            for phase in phases:
                for dname in args.dtypes:
                    start = time.monotonic()
                    try:
                        k = compile_one(name, variant, phase, DTYPES[dname], blocks,
                                        args.arch, args.num_warps, args.hidden)
                    except Exception as error:  # report every failure, then fail at the end
                        failures += 1
                        message = str(error).strip().splitlines()
                        print(f"| {name} | {variant} | {phase} | {dname} | FAILED: "
                              f"{message[-1] if message else type(error).__name__} | | | | |")
                        continue
                    registers, spills = resources(k, args.arch)
                    print(f"| {name} | {variant} | {phase} | {dname} | {registers} | "
                          f"{spills} | {k.metadata.shared} | {products(k)} | "
                          f"{time.monotonic() - start:.1f} |", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
