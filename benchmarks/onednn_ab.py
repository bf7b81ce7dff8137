"""What oneDNN's products give on this machine: the same modules with GATEDRNN_CPU_ONEDNN=0
(every product MKL's) and without (gatedrnn/kernels/onednn.py's rule), side by side in one run.

    python benchmarks/onednn_ab.py                     # every variant at S1, S2, S3
    python benchmarks/onednn_ab.py --variants lstm --shapes S1

A training step and inference as in speed.py, interleaved repeat after repeat, medians.
Ratio = with oneDNN / MKL only: below 1 oneDNN's products are faster. MKL's code paths differ
by CPU vendor, so this is how to check the rule on another machine (it was measured on an AMD
EPYC).
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from speed import SHAPES, VARIANTS, inference, make_module, measure, train_step


def switched(run, on: bool):
    """run with oneDNN's products on or off (the switch is read at every call)."""
    def wrapped():
        os.environ["GATEDRNN_CPU_ONEDNN"] = "1" if on else "0"
        run()
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"oneDNN's products / MKL only, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, torch {torch.__version__}; medians of {args.repeats}\n")
    print("| variant | shape | train ms MKL | oneDNN | ratio | infer ms MKL | oneDNN | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        for shape in args.shapes.split(","):
            T, B, H = SHAPES[shape]
            x = torch.randn(T, B, H)
            module = make_module(variant, H)
            runs = {f"{kind} {on}": switched(make(module, x), on)
                    for kind, make in (("train", train_step), ("infer", inference))
                    for on in (False, True)}
            ms = {name: r["median_ms"] for name, r in measure(runs, args.repeats).items()}
            cells = []
            for kind in ("train", "infer"):
                off, on = ms[f"{kind} False"], ms[f"{kind} True"]
                cells += [f"{off:.1f}", f"{on:.1f}", f"{on / off:.2f}"]
            print(f"| {variant} | {shape} | " + " | ".join(cells) + " |", flush=True)
    os.environ.pop("GATEDRNN_CPU_ONEDNN")


if __name__ == "__main__":
    main()
