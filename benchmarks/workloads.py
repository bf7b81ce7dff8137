"""The models people train, side by side with torch.nn (cuDNN on a GPU, oneDNN on the CPU) in
one run; ratios printed last (gatedrnn's time over torch.nn's: below 1 gatedrnn is faster).

    python benchmarks/workloads.py                        # the CPU, float32
    python benchmarks/workloads.py --device cuda          # a GPU: also bfloat16 and float16
    python benchmarks/workloads.py --quick                # small sizes, a few repeats

W1  an encoder: 2 layers, bidirectional, batch_first, a PackedSequence of lengths drawn
    between T/10 and T; a training step and inference, every variant (torch.nn's peer: its
    LSTM for both LSTMs, its GRU for the three GRUs, its RNN).
W2  the char-LM of `gatedrnn train`: embedding, 2-layer stack, head, an Adam step.
W3  streaming: one step at batch 1 of gatedrnn's cells against torch.nn's, H 128 to 1024; and
    `sample_text` of a char-LM in characters per second (no peer).
W4  on a GPU, W1 in bfloat16 and float16: the modules cast (.to) and float32 ones under
    torch.autocast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gatedrnn  # noqa: E402
from gatedrnn.tasks.charlm import CharLM, Vocabulary  # noqa: E402
from speed import measure, repeated  # noqa: E402  (interleaved, warmed up, medians)

PEER = {"rnn": nn.RNN, "gru_simple": nn.GRU, "gru": nn.GRU, "gru_reset_after": nn.GRU,
        "lstm": nn.LSTM, "lstm_peephole": nn.LSTM}
CELLS = {"lstm": (gatedrnn.LSTMCell, nn.LSTMCell), "gru_reset_after": (gatedrnn.GRUCell,
                                                                         nn.GRUCell)}
# T, B, I, H of W1 (speech- and tagging-like), and of W2 (the CLI's char-LM defaults).
W1 = {"cpu": (100, 16, 40, 128), "cuda": (400, 32, 80, 256)}
W2 = (100, 32, 256)
QUICK_W1, QUICK_W2 = (20, 4, 8, 16), (20, 4, 32)
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def synced(run, device: torch.device):
    def call():
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def w1_runs(variant, T, B, I, H, device, dtype, autocast):
    """(ours, theirs) training-step and inference closures on one packed batch."""
    cast = torch.float32 if autocast else dtype
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(1, T // 10), T + 1, (B,), generator=gen)
    x = torch.randn(B, T, I, generator=gen).to(device, cast)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True, device=device, dtype=cast)
    pair = {"gatedrnn": gatedrnn.for_variant(variant, I, H, **kwargs),
            "torch.nn": PEER[variant](I, H, **kwargs)}
    context = (lambda: torch.autocast(device.type, dtype=dtype)) if autocast else \
        (lambda: torch.autocast(device.type, enabled=False))

    def train(module):
        def run():
            with context():
                out, _ = module(packed)
            out.data.float().sum().backward()
        return run

    def infer(module):
        def run():
            with torch.no_grad(), context():
                module(packed)
        return run
    return ({f"{k} train": synced(train(m), device) for k, m in pair.items()},
            {f"{k} infer": synced(infer(m), device) for k, m in pair.items()})


def w2_runs(variant, T, B, H, device):
    vocab = 100
    ours = CharLM(vocab, variant, H, 2, 64).to(device)
    theirs = CharLM(vocab, variant, H, 2, 64).to(device)
    theirs.rnn = PEER[variant](64, H, num_layers=2).to(device)
    ids = torch.randint(0, vocab, (T + 1, B), device=device)

    def step(model):
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run():
            logits, _ = model(ids[:-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), ids[1:].reshape(-1))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        return run
    return {"gatedrnn": synced(step(ours), device), "torch.nn": synced(step(theirs), device)}


def w3_runs(variant, H, device, calls):
    ours_cls, theirs_cls = CELLS[variant]
    kwargs = {"variant": "gru_reset_after"} if ours_cls is gatedrnn.GRUCell else {}
    ours = ours_cls(H, H, device=device, **kwargs)
    theirs = theirs_cls(H, H, device=device)
    x = torch.randn(1, H, device=device)
    state = (torch.zeros(1, H, device=device),) * (2 if variant == "lstm" else 1)
    hx = state if variant == "lstm" else state[0]

    def step(cell):
        def run():
            with torch.no_grad():
                cell(x, hx)
        return synced(repeated(run, calls), device)
    return {"gatedrnn": step(ours), "torch.nn": step(theirs)}


def sample_rate(device, H: int, length: int) -> float:
    vocab = Vocabulary("".join(chr(32 + i) for i in range(95)))
    model = CharLM(len(vocab), "gru", H, 2, 64).to(device)
    gatedrnn.sample_text(model, vocab, "def ", 5)   # warm up
    started = time.perf_counter()
    gatedrnn.sample_text(model, vocab, "def ", length, generator=torch.Generator().manual_seed(0))
    return length / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variants", default=",".join(PEER))
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds after which no new row starts (a lent GPU's time)")
    parser.add_argument("--w1", default=None, metavar="T,B,I,H", help="W1's sizes")
    parser.add_argument("--only", default="W1,W2,W3,W4", help="which workloads")
    parser.add_argument("--json", default="benchmarks/results/workloads.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = 3 if args.quick else args.repeats
    variants = args.variants.split(",")
    started, rows = time.time(), []

    def add(workload, variant, dtype, times, ours, theirs, unit="ms"):
        rows.append(dict(workload=workload, variant=variant, dtype=dtype, unit=unit,
                         gatedrnn=times[ours]["median_ms"], torch_nn=times[theirs]["median_ms"]))
        print(f"  {workload} {variant} {dtype}: {rows[-1]['gatedrnn']:.3f} against "
              f"{rows[-1]['torch_nn']:.3f} {unit}", flush=True)

    def in_time():
        return time.time() - started < args.budget

    only = args.only.split(",")
    T, B, I, H = (tuple(int(n) for n in args.w1.split(",")) if args.w1 else
                  QUICK_W1 if args.quick else W1[device.type])
    dtypes = ([("f32", False)] if "W1" in only else []) + (
        [("bf16", False), ("f16", False), ("bf16", True), ("f16", True)]
        if device.type == "cuda" and "W4" in only else [])
    for name, autocast in dtypes:
        for variant in variants if name == "f32" else [v for v in variants
                                                       if v in ("lstm", "gru")]:
            if not in_time():
                break
            train, infer = w1_runs(variant, T, B, I, H, device, DTYPES[name], autocast)
            label = f"{name} autocast" if autocast else name
            times = measure({**train, **infer}, repeats)
            add("W1 train" if name == "f32" else "W4 train", variant, label, times,
                "gatedrnn train", "torch.nn train")
            add("W1 infer" if name == "f32" else "W4 infer", variant, label, times,
                "gatedrnn infer", "torch.nn infer")
    T2, B2, H2 = QUICK_W2 if args.quick else W2
    for variant in [v for v in ("lstm", "gru") if v in variants and "W2" in only]:
        if in_time():
            add("W2 char-LM step", variant, "f32", measure(w2_runs(variant, T2, B2, H2, device),
                                                           repeats), "gatedrnn", "torch.nn")
    for H3 in ((16,) if args.quick else (128, 256, 512, 1024)) if "W3" in only else ():
        for variant in CELLS:
            if in_time():
                add(f"W3 step H={H3}", variant, "f32", measure(w3_runs(variant, H3, device, 100),
                                                               repeats), "gatedrnn",
                    "torch.nn", unit="ms per 100 steps")
    chars = sample_rate(device, 32 if args.quick else 256, 50 if args.quick else 500)

    title = (f"workloads, {datetime.date.today()}, "
             f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
             f"torch {torch.__version__}{', QUICK' if args.quick else ''}; medians of {repeats}; "
             "ratio = gatedrnn / torch.nn")
    print(f"\n{title}\n\n| workload | variant | dtype | gatedrnn | torch.nn | ratio |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['variant']} | {r['dtype']} | {r['gatedrnn']:.3f} | "
              f"{r['torch_nn']:.3f} | {r['gatedrnn'] / r['torch_nn']:.2f} |")
    print(f"\ngatedrnn sample_text (2-layer GRU char-LM, H {32 if args.quick else 256}): "
          f"{chars:,.0f} characters/s. Times in ms (W3: per 100 steps).")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"title": title, "rows": rows,
                                           "sample_chars_per_s": chars}, indent=1))


if __name__ == "__main__":
    main()
