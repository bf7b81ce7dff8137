"""The adding problem (Hochreiter & Schmidhuber 1997, Table 7; Bai et al. 2018) with gatedrnn.

T=100: train until solved (at most 1 of 2560 test sequences off by 0.04 or more) and report the
training sequences it took, against the paper's 74,000 for the LSTM. T=600: the test MSE after a
fixed budget, normalised by the MSE of always predicting the mean, against Bai et al.'s numbers
normalised the same way (their targets are X1 + X2 with X uniform in [0, 1]: mean-predictor MSE
1/6; ours 0.5 + (X1 + X2)/4 with X in [−1, 1]: 1/24).

    python benchmarks/tasks/adding.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time


from gatedrnn.train import TrainConfig, train

from report import table, write

PAPER_T100 = {"lstm": 74_000}                 # training sequences until solved, H&S 1997 Table 7
BAI_T600 = {"lstm": 0.164 / (1 / 6), "gru": 5.3e-5 / (1 / 6)}   # normalised test MSE
MEAN_PREDICTOR_MSE = 1 / 24


def run(variant: str, T: int, steps: int, until_solved: bool, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(task="adding", variant=variant, seq_len=T, hidden_size=args.hidden,
                             forget_bias=args.forget_bias,
                             num_layers=1, batch_size=args.batch, lr=args.lr, clip=1.0,
                             steps=steps, eval_every=args.eval_every if until_solved else steps,
                             checkpoint_every=steps,
                             log_every=args.eval_every, seed=args.seed, out=out)
        started = time.time()
        result = train(config, stop_when=(lambda e: e["solved"]) if until_solved else None)
    return {"variant": variant, "T": T, "steps": result["step"],
            "sequences": result["step"] * args.batch, "solved": result["solved"],
            "test_wrong": result["test_wrong"],
            "normalised_mse": result["test_mse"] / MEAN_PREDICTOR_MSE,
            "minutes": (time.time() - started) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=600 with 150 steps")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=9000, help="T=100 budget")
    parser.add_argument("--steps-600", type=int, default=2400, help="T=600 budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forget-bias", type=float, default=3.0,
                        help="the LSTM's initial b_f: with 1 it does not learn T=100 at all")
    args = parser.parse_args()
    steps_600 = 150 if args.quick else args.steps_600
    rows = []
    for variant in ("lstm", "gru"):
        row = run(variant, 100, args.max_steps, True, args)
        row["paper"] = PAPER_T100.get(variant, "—")
        rows.append(row)
        print(f"  T=100 {variant}: {row}", flush=True)
    for variant in ("lstm", "gru"):
        row = run(variant, 600, steps_600, False, args)
        row["paper"] = f"{BAI_T600[variant]:.3g} (Bai et al.)"
        rows.append(row)
        print(f"  T=600 {variant}: {row}", flush=True)
    path = write("adding", rows, vars(args))
    print("\nadding problem" + (" (QUICK)" if args.quick else "") + f"; raw: {path}\n")
    print(table(rows, ["variant", "T", "solved", "sequences", "paper", "test_wrong",
                       "normalised_mse", "minutes"]))


if __name__ == "__main__":
    main()
