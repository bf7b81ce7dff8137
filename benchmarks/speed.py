"""CPU speed of every cell variant against its peers, measured side by side in one run.

gatedrnn's default CPU backend against: torch.nn.LSTM / GRU / RNN at the same shape (the LSTM
runs on oneDNN), the "loop" backend (a PyTorch time loop: what people write by hand for the
lecture's GRU or a peephole LSTM) and onnxruntime's LSTM / GRU / RNN operators (inference; GRU
with linear_before_reset=0 for gru, 1 for gru_reset_after, LSTM with P for lstm_peephole).

A training step is forward + backward of the sum of the outputs, parameter gradients included;
inference is a forward under torch.no_grad(). Contenders run interleaved, repeat after repeat,
and the table shows medians: gatedrnn's time in ms and the ratio gatedrnn / peer (below 1:
gatedrnn is faster) with the peer's time in brackets.

    python benchmarks/speed.py            # S1, S2, S3 (a few minutes)
    python benchmarks/speed.py --quick    # T divided by 4, 3 repeats (under a minute)
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import platform
import statistics
import time
from pathlib import Path

import torch

import gatedrnn

SHAPES = {"S1": (100, 32, 256), "S2": (100, 64, 512), "S3": (500, 1, 128)}   # T, B, I = H
VARIANTS = ["rnn", "gru_simple", "gru", "gru_reset_after", "lstm", "lstm_peephole"]
TORCH_PEER = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "lstm_peephole": torch.nn.LSTM}


def make_module(variant: str, size: int, backend=None):
    return gatedrnn.for_variant(variant, size, size, backend=backend)


def train_step(module, x):
    def run():
        for p in module.parameters():
            p.grad = None
        out, _ = module(x)
        out.sum().backward()
    return run


def inference(module, x):
    def run():
        with torch.no_grad():
            module(x)
    return run


def onnxruntime_run(module, x):
    """onnxruntime on exactly the module's weights, checked against gatedrnn's output first."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from gatedrnn.interop.onnx_layout import layer_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Workers spin while a run lasts (onnxruntime's default, good for its latency) but stop when
    # it ends: otherwise they spin on and take cores from whichever contender runs next
    # (measured: gatedrnn twice as slow at S3).
    options.add_session_config_entry("session.force_spinning_stop", "1")
    session = ort.InferenceSession(layer_model(module).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"X": x.numpy()}
    with torch.no_grad():
        expected = module(x)[0]
    got = torch.from_numpy(session.run(None, feed)[0][:, 0])
    assert (got - expected).abs().max() < 1e-4, "onnxruntime disagrees with gatedrnn"
    return lambda: session.run(None, feed)


def contenders(variant: str, shape: tuple[int, int, int]):
    T, B, H = shape
    x = torch.randn(T, B, H)
    torch.manual_seed(0)
    ours = make_module(variant, H)
    loop = make_module(variant, H, backend="loop")
    loop.load_state_dict(ours.state_dict())
    peer_class = TORCH_PEER.get(variant, torch.nn.GRU)
    peer = peer_class(H, H)
    runs = {"gatedrnn/train": train_step(ours, x), "gatedrnn/infer": inference(ours, x),
            "loop/train": train_step(loop, x), "loop/infer": inference(loop, x),
            "torch/train": train_step(peer, x), "torch/infer": inference(peer, x)}
    if variant != "gru_simple":
        ort_run = onnxruntime_run(ours, x)
        if ort_run is not None:
            runs["onnxruntime/infer"] = ort_run
    return runs, f"torch.nn.{peer_class.__name__}"


def repeated(run, calls: int):
    """run, `calls` times back to back: one timing of calls too short to time one by one."""
    def calls_in_a_row():
        for _ in range(calls):
            run()
    return calls_in_a_row


def measure(runs: dict, repeats: int) -> dict:
    """Median times; contenders run interleaved, repeat after repeat, so that the machine's
    noise spreads evenly over them."""
    for run in runs.values():   # warm-up: first-use compilation, allocator, caches
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(0.02)    # let the previous contender's idle workers stop spinning
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: {"median_ms": 1e3 * statistics.median(t), "all_ms": [1e3 * s for s in t]}
            for name, t in times.items()}


def _peak_training_memory(kind: str, shape, threads: int, queue) -> None:
    """Runs in a fresh process: peak resident memory of one training step above the setup."""
    torch.set_num_threads(threads)
    T, B, H = shape
    module = make_module("lstm", H) if kind == "gatedrnn" else torch.nn.LSTM(H, H)
    x = torch.randn(T, B, H)
    train_step(module, x)()   # compile / warm up, then measure a second, identical step
    for p in module.parameters():
        p.grad = None

    def status(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024   # MiB
    base = status("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")   # resets the peak (VmHWM) to the current RSS
    train_step(module, x)()
    queue.put(status("VmHWM:") - base)


def peak_memory(shape, threads: int) -> dict | None:
    if not Path("/proc/self/clear_refs").exists():
        return None
    context = multiprocessing.get_context("spawn")
    result = {}
    for kind in ("gatedrnn", "torch.nn.LSTM"):
        queue = context.Queue()
        process = context.Process(target=_peak_training_memory, args=(kind, shape, threads, queue))
        process.start()
        process.join()
        result[kind] = queue.get() if process.exitcode == 0 else None
    return result


def ratio(results, name, peer):
    if peer not in results:
        return "—"
    ours, theirs = results[name]["median_ms"], results[peer]["median_ms"]
    return f"{ours / theirs:.2f} ({theirs:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T / 4 and 3 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--json", default="benchmarks/results/speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 7)
    shapes = {k: ((v[0] // 4 if args.quick else v[0]),) + v[1:]
              for k, v in SHAPES.items() if k in args.shapes.split(",")}

    raw = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or
           platform.machine(), "cpu": _cpu_name(), "threads": args.threads,
           "torch": torch.__version__, "quick": args.quick, "repeats": repeats,
           "shapes": shapes, "results": {}}
    rows = []
    for variant in args.variants.split(","):
        for shape_name, shape in shapes.items():
            runs, peer_name = contenders(variant, shape)
            results = measure(runs, repeats)
            raw["results"][f"{variant}/{shape_name}"] = dict(results, torch_peer=peer_name)
            rows.append((variant, shape_name, peer_name, results))
            print(f"  measured {variant} {shape_name}", flush=True)
    if "S2" in shapes:
        raw["peak_training_memory_mib_S2"] = peak_memory(shapes["S2"], args.threads)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(raw, indent=1))
    print(f"\ngatedrnn CPU speed, {raw['date']}, {raw['cpu']}, {args.threads} threads, "
          f"torch {torch.__version__}{', QUICK (T/4)' if args.quick else ''}; "
          f"medians of {repeats}; ratio = gatedrnn / peer (peer ms)\n")
    print("| variant | shape | train ms | ÷ torch.nn | ÷ loop | infer ms | ÷ torch.nn | ÷ onnxruntime |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, shape_name, peer_name, r in rows:
        print(f"| {variant} | {shape_name} | {r['gatedrnn/train']['median_ms']:.1f} | "
              f"{ratio(r, 'gatedrnn/train', 'torch/train')} | {ratio(r, 'gatedrnn/train', 'loop/train')} | "
              f"{r['gatedrnn/infer']['median_ms']:.1f} | {ratio(r, 'gatedrnn/infer', 'torch/infer')} | "
              f"{ratio(r, 'gatedrnn/infer', 'onnxruntime/infer')} |")
    memory = raw.get("peak_training_memory_mib_S2")
    if memory:
        print(f"\npeak training memory at S2 (lstm): gatedrnn {memory['gatedrnn']:.0f} MiB, "
              f"torch.nn.LSTM {memory['torch.nn.LSTM']:.0f} MiB")
    print("torch.nn peers: torch.nn.LSTM for lstm and lstm_peephole, torch.nn.RNN for rnn, "
          "torch.nn.GRU for the GRUs. Raw numbers: " + args.json)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
