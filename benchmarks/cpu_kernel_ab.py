"""The compiled CPU kernel of another git revision against this tree's, side by side in one run.

Builds gatedrnn/kernels/cpu/recurrence.cpp as it is at --base (with --base-flags, default this
tree's flags) and as it is here (this tree's flags), then times each build's forward alone
(inference: no saved gates) and forward + backward (the kernel's time loops only: no input
projection, no weight gradients), interleaved repeat after repeat, medians (speed.measure).
Ratio = this tree / base: below 1 this tree is faster.

    python benchmarks/cpu_kernel_ab.py --base 48e4203 \\
        --base-flags "-O3 -mavx2 -mfma -DCPU_CAPABILITY=AVX2 -DCPU_CAPABILITY_AVX2 \\
                      -DGATEDRNN_BLAS_SYMBOLS -DGATEDRNN_MKL_PACKED"
    python benchmarks/cpu_kernel_ab.py --base HEAD~1 --variants lstm --shapes 500x1x128
    python benchmarks/cpu_kernel_ab.py --base HEAD~1 --shapes 1x1x512 --calls 200   # a stream step

(48e4203's flags are those above: AVX2 and no -fopenmp.) A shape is TxBxH.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils import cpp_extension

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatedrnn import get_variant  # noqa: E402
from gatedrnn.kernels import KERNEL_IDS, cpu, onednn  # noqa: E402
from speed import measure, repeated  # noqa: E402  (interleaved, warmed up, medians)

SOURCE = "gatedrnn/kernels/cpu/recurrence.cpp"
SHAPES = ["100x32x256", "100x64x512", "500x1x128", "200x16x128", "300x7x128", "400x4x64",
          "300x4x256", "300x1x256", "300x2x256"]


def build(name: str, source: str, flags: list[str]):
    """The kernel built from `source` (torch's extension cache keeps it for the next run)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recurrence.cpp"
        path.write_text(source)
        return cpp_extension.load(name=name, sources=[str(path)], extra_cflags=flags)


def runs(ext, variant: str, T: int, B: int, H: int):
    v = get_variant(variant)
    k, G = KERNEL_IDS[variant], v.num_gates
    g = torch.Generator().manual_seed(0)
    xp = torch.randn(T, B, G * H, generator=g)
    R = torch.randn(G * H, H, generator=g) / H ** 0.5
    p = 0.1 * torch.randn(3, H, generator=g) if v.peepholes else None
    a0, c0 = torch.zeros(B, H), (torch.zeros(B, H) if v.has_cell else None)
    d_A, d_n = torch.randn(T, B, H, generator=g), torch.zeros(B, H)
    # Builds since oneDNN's products take its threshold (kernels/onednn.py) last.
    extra = (onednn.min_values(),) if hasattr(ext, "onednn_available") else ()

    def infer():
        ext.forward(k, xp, R, None, p, a0, c0, None, False, False, *extra)

    def train():
        SA, SC, saved = ext.forward(k, xp, R, None, p, a0, c0, None, False, True, *extra)
        ext.backward(k, d_A, d_n, d_n if v.has_cell else None, R, p, SA,
                     SC if v.has_cell else None, saved, None, False, *extra)
    return infer, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="a git revision")
    parser.add_argument("--base-flags", default=None, help="compiler flags of the base build")
    parser.add_argument("--variants", default="lstm,gru")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="TxBxH,...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--calls", type=int, default=1,
                        help="calls back to back per timing (times are per call): for calls "
                             "well under a millisecond, which the pause before each timing "
                             "otherwise slows by up to several ms")
    args = parser.parse_args()
    here_flags = cpu._flags()
    base_flags = args.base_flags.split() if args.base_flags else here_flags
    base_source = subprocess.run(["git", "show", f"{args.base}:{SOURCE}"], check=True,
                                 capture_output=True, text=True).stdout
    print(f"building {args.base}'s kernel and this tree's (a minute each)", file=sys.stderr)
    base = build("gatedrnn_ab_base", base_source, base_flags)
    here = build("gatedrnn_ab_here", Path(SOURCE).read_text(), here_flags)
    torch.set_num_threads(args.threads)
    print(f"compiled CPU kernel, this tree / {args.base}, {args.threads} threads, medians of "
          f"{args.repeats}; base flags: {' '.join(base_flags)}; here: {' '.join(here_flags)}\n")
    print("| shape T×B×H | variant | infer ms base | here | ratio | fwd+bwd ms base | here "
          "| ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        T, B, H = (int(n) for n in shape.split("x"))
        for variant in args.variants.split(","):
            contenders = dict(zip(("base infer", "base train"), runs(base, variant, T, B, H)))
            contenders.update(zip(("here infer", "here train"), runs(here, variant, T, B, H)))
            contenders = {name: repeated(run, args.calls) for name, run in contenders.items()}
            ms = {name: r["median_ms"] / args.calls
                  for name, r in measure(contenders, args.repeats).items()}
            print(f"| {T}×{B}×{H} | {variant} | {ms['base infer']:.2f} | {ms['here infer']:.2f} | "
                  f"{ms['here infer'] / ms['base infer']:.2f} | {ms['base train']:.2f} | "
                  f"{ms['here train']:.2f} | {ms['here train'] / ms['base train']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
