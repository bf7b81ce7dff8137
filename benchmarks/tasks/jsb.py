"""JSB Chorales: test negative log-likelihood per time step with about 20K parameters.

Against Chung et al. 2014 (GRU 8.54, LSTM 8.67, ~20K parameters) and Bai et al. 2018 (GRU 8.43,
LSTM 8.45). The model: one recurrent layer on the 88-key piano roll, a linear layer to 88
Bernoulli logits; the checkpoint with the best validation NLL gives the test number.

    python benchmarks/tasks/jsb.py --data jsb-chorales-quarter.json [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from gatedrnn.train import TrainConfig, run

from report import table, write

PUBLISHED = {"gru": (8.54, 8.43), "lstm": (8.67, 8.45)}   # Chung et al. 2014, Bai et al. 2018
HIDDEN = {"gru": 40, "lstm": 34}                          # ~19-20K parameters each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="the JSB Chorales JSON (split -> sequences of MIDI pitches)")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--quick", action="store_true", help="500 steps")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    steps = 500 if args.quick else args.steps
    rows = []
    for variant in ("gru", "lstm"):
        best = {}

        def keep_best(evaluation, best=best):
            if not best or evaluation["valid_nll"] < best["valid_nll"]:
                best.update(evaluation)
            return False

        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(task="jsb", data=args.data, variant=variant,
                                 hidden_size=HIDDEN[variant], num_layers=1, batch_size=args.batch,
                                 lr=args.lr, clip=1.0, steps=steps, eval_every=100,
                                 checkpoint_every=steps, log_every=100, out=out)
            started = time.time()
            model, _ = run(config, stop_when=keep_best)
        parameters = sum(p.numel() for p in model.parameters())
        chung, bai = PUBLISHED[variant]
        rows.append({"variant": variant, "parameters": parameters, "steps": steps,
                     "best_valid_nll": best["valid_nll"], "test_nll": best["test_nll"],
                     "Chung et al. 2014": chung, "Bai et al. 2018": bai,
                     "minutes": (time.time() - started) / 60})
        print(f"  {rows[-1]}", flush=True)
    path = write("jsb", rows, vars(args) | {"steps": steps})
    print("\nJSB Chorales" + (" (QUICK)" if args.quick else "") + f"; raw: {path}\n")
    print(table(rows, ["variant", "parameters", "steps", "test_nll", "Chung et al. 2014",
                       "Bai et al. 2018", "minutes"]))


if __name__ == "__main__":
    main()
