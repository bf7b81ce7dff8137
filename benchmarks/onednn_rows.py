"""oneDNN's linear against MKL's (F.linear) by the number of rows, at the projections' sizes:
where gatedrnn's input projection should leave oneDNN. Prints a table; rerun anywhere."""

import argparse
import time

import torch
import torch.nn.functional as F

from gatedrnn.kernels.onednn import _product


def best_us(f, calls=500, repeats=5):
    for _ in range(20):
        f()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="768x64,768x256,1024x256,4096x1024",
                        help="out x in of each weight")
    parser.add_argument("--rows", default="1,2,8,16,32,128,1024")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of 5, µs per call")
    print("| weight | rows | oneDNN | MKL | oneDNN / MKL |\n|---|---|---|---|---|")
    with torch.no_grad():
        for shape in args.weights.split(","):
            out, inp = map(int, shape.split("x"))
            w, b = torch.randn(out, inp), torch.randn(out)
            for rows in map(int, args.rows.split(",")):
                x = torch.randn(rows, inp)
                one = best_us(lambda: _product(x, w, b))
                mkl = best_us(lambda: F.linear(x, w, b))
                print(f"| {shape} | {rows} | {one:.1f} | {mkl:.1f} | {one / mkl:.2f} |")


if __name__ == "__main__":
    main()
