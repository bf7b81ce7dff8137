"""Per-sample gradients of a GRU layer: torch.func's vmap(grad(loss)), which runs the backward
through time once with every sample in the batch (gatedrnn/vmap_rules.py), against a loop of
one autograd.grad per sample, interleaved; both checked equal first.

    python benchmarks/per_sample_grads.py [--samples 32] [--steps 50] [--hidden 128]
"""

import argparse

import torch
from speed import measure   # benchmarks/speed.py: interleaved, warmed up, medians
from torch.func import functional_call, grad, vmap

import gatedrnn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--backend", default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    H = args.hidden
    model = gatedrnn.GRU(H, H, backend=args.backend)
    xs = torch.randn(args.samples, args.steps, 1, H)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x):
        return functional_call(model, p, (x,))[0].square().mean()

    def vmapped():
        return vmap(grad(loss), in_dims=(None, 0))(params, xs)

    def looped():
        leaves = list(model.parameters())
        grads = [torch.autograd.grad(loss(dict(model.named_parameters()), x), leaves)
                 for x in xs]
        return {name: torch.stack(g) for name, g in zip(params, zip(*grads))}

    got, expected = vmapped(), looped()
    worst = max(((got[k] - expected[k]).abs().max() / expected[k].abs().max()).item()
                for k in params)
    times = measure({"vmap(grad)": vmapped, "loop": looped}, args.rounds)
    v, loop = (times[name]["median_ms"] for name in ("vmap(grad)", "loop"))
    print(f"gru, {args.samples} samples of T = {args.steps}, batch 1, H = {H}, backend "
          f"{gatedrnn.kernels.resolve(args.backend, xs.device)!r}, torch {torch.__version__}; "
          f"median of {args.rounds} interleaved rounds; largest relative difference {worst:.1e}")
    print(f"vmap(grad) {v:.1f} ms, loop of autograd.grad {loop:.1f} ms: {loop / v:.2f}x")


if __name__ == "__main__":
    main()
