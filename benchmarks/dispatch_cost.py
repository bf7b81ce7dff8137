"""What a call of the recurrence costs through each of its two doors (gatedrnn/through_time.py):
the eager one (the autograd Function; without gradients, straight to the backend) and the
custom operator that torch.compile and torch.export trace. Measured on one step of a small
layer (the streamed case, where the call's overhead is most of its time), interleaved, with and
without gradients.

    python benchmarks/dispatch_cost.py [--backend cpu] [--hidden 32] [--calls 3000]
"""

import argparse

import torch
from speed import measure, repeated   # benchmarks/speed.py: interleaved, warmed up, medians

from gatedrnn import through_time
from gatedrnn.cells import get_variant


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    v, H = get_variant("gru"), args.hidden
    print(f"gru, one step, batch 1, H = {args.hidden}, backend {args.backend!r}, torch "
          f"{torch.__version__}; median of {args.rounds} interleaved rounds of {args.calls} "
          f"calls")
    print(f"{'gradients':<10} {'eager µs':>12} {'operator µs':>12} {'difference':>11}")
    for grad in (False, True):
        xp = torch.randn(1, 1, 3 * H, requires_grad=grad)
        R = torch.randn(3 * H, H, requires_grad=grad)
        a0 = torch.zeros(1, H)
        inputs = (xp, R, None, None, a0, None, None)
        doors = {
            "eager": lambda: through_time.run(v, args.backend, *inputs, False, grad),
            "operator": lambda: torch.ops.gatedrnn.through_time(*inputs, v.name, args.backend,
                                                                False, grad),
        }
        times = measure({name: repeated(run, args.calls) for name, run in doors.items()},
                        args.rounds)
        f, o = (times[name]["median_ms"] * 1e3 / args.calls for name in doors)
        print(f"{'with' if grad else 'without':<10} {f:12.1f} {o:12.1f} {o - f:+10.1f}")


if __name__ == "__main__":
    main()
