"""The command line: `gatedrnn demo | train | sample | export | gates | diagram | plot` (also
`python -m gatedrnn`)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path

import torch

from .cells import VARIANTS
from .checkpoint import CheckpointError, read_run
from .tasks import TASKS
from .tasks.charlm import DataError
from .train import PRECISIONS, TrainConfig, TrainingError, resolve_device, train

DEMO_STEPS = 1000         # about two minutes on two cores with the defaults below
DEMO_TEMPERATURES = (0.5, 0.8, 1.0)
# What --resume may change; anything else belongs to the run and must stay as it was.
RESUMABLE = {"steps", "eval_every", "checkpoint_every", "log_every", "device", "precision"}
HELP = {
    "task": "what to learn: charlm (next character), adding (the adding problem), jsb (music)",
    "data": "charlm: stdlib (the default corpus: Python's own standard library), shakespeare "
            "(downloaded once) or a UTF-8 text file; jsb: the JSB Chorales JSON file",
    "variant": "the cell: " + ", ".join(VARIANTS),
    "hidden_size": "hidden units per layer", "num_layers": "stacked recurrent layers",
    "embedding_size": "charlm: size of the character embedding",
    "dropout": "dropout between layers", "bidirectional": "adding only: read both directions",
    "forget_bias": "LSTM variants: initial forget-gate bias (larger keeps memories longer)",
    "seq_len": "charlm: characters per training window; adding: sequence length T",
    "batch_size": "sequences per step (the global batch under torchrun)",
    "optimizer": "adam, adamw or sgd", "lr": "learning rate",
    "clip": "clip the gradient norm to this (0: off)", "steps": "training steps in all",
    "seed": "seed of the initialisation and the data order",
    "valid_fraction": "charlm: share of the text held out for validation",
    "eval_every": "steps between evaluations", "checkpoint_every": "steps between checkpoints",
    "log_every": "steps between lines in metrics.jsonl", "out": "the run's directory",
    "device": "where to train: auto (a GPU where torch sees one), cpu, cuda or cuda:N",
    "precision": "float32, or bfloat16 products under torch.autocast (weights stay float32)",
}


def unescape(text: str) -> str:
    """Backslash escapes (\\n, \\t, \\u00e9) decoded; every other character kept as typed."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kwargs = dict(default=None, help=f"{HELP[field.name]} (default: {field.default})")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", **kwargs)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            choices = {"task": TASKS, "variant": list(VARIANTS), "precision": list(PRECISIONS),
                       "optimizer": ["adam", "adamw", "sgd"]}.get(field.name)
            parser.add_argument(flag, type=kind, choices=choices, **kwargs)


def _given(args) -> dict:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    # Every option defaults to None (store_true flags too), so "given" is "not None".
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _config_for(args) -> tuple[TrainConfig, bool]:
    given = _given(args)
    if args.resume is None:
        return TrainConfig(**given), False
    run_dir = Path(args.resume)
    saved = read_run(run_dir)["config"]
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise CheckpointError(f"{run_dir / 'config.json'}: unknown settings {unknown} (written "
                              "by another version of gatedrnn?); resume it with that version")
    for name, value in given.items():
        if name == "out" or name in RESUMABLE or saved.get(name) == value:
            continue
        raise TrainingError(f"--{name.replace('_', '-')}: the run in {run_dir} has "
                            f"{saved.get(name)!r}; a resumed run keeps its settings (only "
                            f"{', '.join(sorted(RESUMABLE))} may change)")
    saved.update({k: v for k, v in given.items() if k in RESUMABLE})
    saved["out"] = str(run_dir)
    return TrainConfig(**saved), True


def load_charlm(run_dir, device=None) -> tuple:
    """(model, vocabulary) of a char-LM run directory, from its last checkpoint."""
    from safetensors import SafetensorError

    from .serialization import load_run

    run_dir = Path(run_dir)
    task = read_run(run_dir)["config"].get("task")
    if task != "charlm":
        raise CheckpointError(f"{run_dir}: a {task!r} run; only charlm runs sample text")
    try:
        model = load_run(run_dir, device)
    except (SafetensorError, FileNotFoundError, RuntimeError) as error:
        raise CheckpointError(f"{run_dir}: its checkpoint is missing, damaged or not this "
                              f"model's ({str(error).splitlines()[0]})") from None
    return model, model.vocabulary


def cmd_train(args) -> None:
    config, resume = _config_for(args)
    result = train(config, resume=resume)
    print(f"step {result['step']}: " + ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
        if k != "step"))
    print(f"run: {config.out} (checkpoint/, metrics.jsonl, config.json)")


def cmd_sample(args) -> None:
    from .streaming import sample_text

    model, vocab = load_charlm(args.run_dir)
    generator = torch.Generator().manual_seed(args.seed)
    print(sample_text(model, vocab, unescape(args.prime), args.length,
                      args.temperature, args.top_k, generator))


def cmd_export(args) -> None:
    from .interop.onnx_export import export_charlm

    model, vocab = load_charlm(args.run_dir)
    export_charlm(model, vocab.chars, args.onnx)
    print(f"{args.onnx}: inputs ids (T, B) int64 and the initial states, outputs logits and "
          "the final states; sample with examples/onnx_sample.py (onnxruntime alone)")


def cmd_gates(args) -> None:
    from .streaming import sample_text
    from .viz.heatmaps import capture_text, gate_heatmaps
    from .viz.page import gate_page

    model, vocab = load_charlm(args.run_dir)
    if args.text is not None:
        text = unescape(args.text)
    elif args.file is not None:
        from .tasks.charlm import read_text_file

        text = read_text_file(args.file)[: args.length]
    else:
        text = sample_text(model, vocab, "def ", args.length - 4, 0.7,
                           generator=torch.Generator().manual_seed(0))
    captured = capture_text(model, vocab, text)
    for path in gate_heatmaps(captured, args.out):
        print(path)
    print(gate_page(captured, Path(args.out) / "gates.html"))


def cmd_diagram(args) -> None:
    from .viz.diagram import draw

    print(draw(args.variant, args.out))


def cmd_plot(args) -> None:
    from .viz import loss_curve

    print(loss_curve(args.run_dir, args.out))


def _where(name: str) -> str:
    on = resolve_device(name)
    if on.type == "cuda":
        return f"on {torch.cuda.get_device_name(on)}"
    return f"on {torch.get_num_threads()} CPU threads"


def cmd_demo(args) -> None:
    from .viz import loss_curve
    from .streaming import sample_text

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or f"runs/demo-{stamp}"
    config = TrainConfig(task="charlm", data="stdlib", variant="gru", steps=args.steps,
                         eval_every=max(1, args.steps // 4), checkpoint_every=args.steps,
                         out=out)
    print(f"gatedrnn demo: a character-level language model with the lecture's GRU "
          f"(reset gate before the recurrent product), {config.num_layers} layers of "
          f"{config.hidden_size} units, learns to write Python from the standard library's own "
          f"source; {config.steps} steps of {config.batch_size} windows of {config.seq_len} "
          f"characters, {_where(config.device)}.\n", flush=True)
    result = train(config)
    print(f"\nvalidation loss {result['valid_loss']:.3f} nats/char "
          f"({result['valid_bits_per_char']:.2f} bits), against {result['unigram_loss']:.3f} "
          "for the unigram baseline (each character by its frequency alone)\n")
    model, vocab = load_charlm(out, resolve_device(config.device))   # sample where it trained
    for temperature in DEMO_TEMPERATURES:
        text = sample_text(model, vocab, "def ", 240, temperature,
                           generator=torch.Generator().manual_seed(0))
        print(f"---- sample at temperature {temperature}\n{text}\n")
    png = loss_curve(out)
    print(f"checkpoint: {out}/checkpoint/   metrics: {out}/metrics.jsonl   loss curve: {png}")
    print(f"more text:  gatedrnn sample {out} --prime 'class ' --temperature 0.7")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit status 1, as every other error."""

    def error(self, message):
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive.__name__ = "positive integer"


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


_non_negative_float.__name__ = "number >= 0"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gatedrnn", description="Gated recurrent networks as the lectures teach them: "
        "train, sample, plot.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"gatedrnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    demo = commands.add_parser("demo", help="train a char-LM on the default corpus (~2 min) "
                               "and show samples", description="Train the lecture's GRU as a character-level language model on "
                               "the embedded corpus, then sample from it.")
    demo.add_argument("--steps", type=_positive, default=DEMO_STEPS,
                      help=f"training steps (default: {DEMO_STEPS}, about two minutes)")
    demo.add_argument("--out", default=None, help="run directory (default: runs/demo-TIME)")
    demo.set_defaults(handler=cmd_demo)

    tr = commands.add_parser("train", help="train a model on a task",
                             description="Train a gatedrnn model. Under torchrun "
                             "--nproc-per-node N it trains data-parallel.")
    _add_train_options(tr)
    tr.add_argument("--resume", metavar="DIR", default=None,
                    help="continue the run in DIR exactly where its checkpoint left it")
    tr.set_defaults(handler=cmd_train)

    sa = commands.add_parser("sample", help="generate text from a char-LM run",
                             description="Generate text from a trained char-LM run.")
    sa.add_argument("run_dir", metavar="RUN_DIR", help="a charlm run directory")
    sa.add_argument("--prime", default="\\n", help="text to start from (escapes like \\n work)")
    sa.add_argument("--length", type=_positive, default=500, help="characters to generate")
    sa.add_argument("--temperature", type=_non_negative_float, default=0.8,
                    help="below 1: safer, above 1: wilder, 0: always the likeliest")
    sa.add_argument("--top-k", type=_positive, default=None, help="draw only among the k likeliest")
    sa.add_argument("--seed", type=int, default=0)
    sa.set_defaults(handler=cmd_sample)

    ex = commands.add_parser("export", help="export a char-LM run to ONNX",
                             description="Export a char-LM run (embedding, recurrent layers, "
                             "output layer) to ONNX, runnable by onnxruntime alone.")
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a charlm run directory")
    ex.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    ex.set_defaults(handler=cmd_export)

    ga = commands.add_parser("gates", help="heatmaps of a char-LM's gates over a text",
                             description="Draw what every gate of a char-LM does over a text: "
                             "one PNG per layer and gate (time × units, the characters along "
                             "the time axis) and gates.html, a page to explore them unit by unit.")
    ga.add_argument("run_dir", metavar="RUN_DIR", help="a charlm run directory")
    source = ga.add_mutually_exclusive_group()
    source.add_argument("--text", default=None, help="the text (escapes like \\n work)")
    source.add_argument("--file", default=None, help="read the text from this file")
    ga.add_argument("--length", type=_positive, default=120,
                    help="characters taken from --file, or sampled when neither is given")
    ga.add_argument("--out", required=True, metavar="DIR", help="where the PNGs go")
    ga.set_defaults(handler=cmd_gates)

    di = commands.add_parser("diagram", help="draw a cell in the style of 'LSTM in pictures'",
                             description="Draw a cell variant (gates, σ/tanh, ⊙ and +, "
                             "peepholes) from its definition, as SVG or PNG.")
    di.add_argument("--variant", required=True, choices=list(VARIANTS))
    di.add_argument("--out", required=True, metavar="FILE", help="FILE.svg or FILE.png")
    di.set_defaults(handler=cmd_diagram)

    pl = commands.add_parser("plot", help="draw a run's loss curves to a PNG",
                             description="Draw the loss curves of a run to a PNG.")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/loss.png)")
    pl.set_defaults(handler=cmd_plot)
    return parser


def _checked_by_gatedrnn(error: BaseException) -> bool:
    """Was `error` raised by gatedrnn's own code (a check whose message is for the user), not
    inside a library it calls (a bug there, whose traceback is wanted)?"""
    frame, package = error.__traceback__, Path(__file__).resolve().parent
    last = None
    while frame is not None:
        last, frame = frame.tb_frame.f_code.co_filename, frame.tb_next
    return last is not None and Path(last).resolve().is_relative_to(package)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (DataError, CheckpointError, TrainingError, ValueError) as error:
        if isinstance(error, ValueError) and not _checked_by_gatedrnn(error):
            raise
        print(f"gatedrnn {args.command}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:   # the file system said no: a path that cannot be read or written
        where = f": {error.filename}" if error.filename else ""
        print(f"gatedrnn {args.command}: error: {error.strerror or error}{where}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ngatedrnn {args.command}: interrupted; the last checkpoint is kept",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
