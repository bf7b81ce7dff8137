"""One training loop for every task: progress, evaluation, checkpoints, exact resume, DDP.

The same code runs in one process or under torchrun: with WORLD_SIZE > 1 it joins the process
group (Gloo on CPU, NCCL on CUDA, a GPU per process by LOCAL_RANK), wraps the model in
DistributedDataParallel and each rank takes its own slice of every global batch; only rank 0
writes checkpoints and logs. Batches are made on the CPU (from the CPU generator whose state the
checkpoint keeps) and moved to the model's device; on CUDA the numbers of a resumed run may
differ from an unbroken one in the last bits (cuBLAS and atomics do not promise the same sums).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint, run_folder
from .progress import Progress
from .tasks import make as make_task
from .tasks.common import on_device


PRECISIONS = ("float32", "bfloat16")


@dataclass
class TrainConfig:
    task: str = "charlm"            # charlm | adding | jsb
    data: str = "stdlib"            # charlm: stdlib | shakespeare | PATH; jsb: PATH to the JSON
    variant: str = "gru"            # any gatedrnn variant
    hidden_size: int = 256          # H of every layer
    num_layers: int = 2
    embedding_size: int = 64        # charlm: size of the character embedding
    dropout: float = 0.0            # between layers
    bidirectional: bool = False     # adding only: the others predict the next step
    forget_bias: float = 1.0        # LSTM variants: the initial forget-gate bias b_f
    seq_len: int = 100              # charlm: window; adding: T
    batch_size: int = 32            # global: split over the ranks under torchrun
    optimizer: str = "adam"         # adam | adamw | sgd
    lr: float = 2e-3
    clip: float = 1.0               # max gradient norm; 0 turns clipping off
    steps: int = 1000
    seed: int = 0
    valid_fraction: float = 0.05    # charlm: the end of the text held out
    eval_every: int = 200           # steps between evaluations (and at the end)
    checkpoint_every: int = 200     # steps between checkpoints (and at the end)
    log_every: int = 10             # steps between metrics lines
    out: str = "runs/latest"
    device: str = "auto"            # auto (CUDA where there is a GPU) | cpu | cuda | cuda:N
    precision: str = "float32"      # float32 | bfloat16 (torch.autocast; weights stay float32)

    def check(self) -> None:
        for name in ("hidden_size", "num_layers", "embedding_size", "seq_len", "batch_size",
                     "steps", "eval_every", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, "
                                 f"got {value!r}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"--lr: expected a positive learning rate, got {self.lr}")
        if not 0 <= self.clip < math.inf:
            raise ValueError(f"--clip: expected a gradient norm >= 0 (0: off), got {self.clip}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"--valid-fraction: expected a share in (0, 1), got "
                             f"{self.valid_fraction}")
        if not math.isfinite(self.forget_bias):
            raise ValueError(f"--forget-bias: expected a finite number, got {self.forget_bias}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"--seed: expected an integer in [0, 2**63), got {self.seed}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout: expected a probability in [0, 1), got {self.dropout}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"--optimizer: expected adam, adamw or sgd, got {self.optimizer!r}")
        resolve_device(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision: expected one of {', '.join(PRECISIONS)}, got "
                             f"{self.precision!r}")


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def resolve_device(name: str) -> torch.device:
    """The device --device names: "auto" is CUDA where torch sees a GPU, else the CPU. Under
    torchrun each process takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(name)
    except RuntimeError:
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device: {name} asked for, but this torch sees no CUDA device")
        index = chosen.index if chosen.index is not None else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device: expected a GPU index below "
                             f"{torch.cuda.device_count()}, got {index}")
        chosen = torch.device("cuda", index)
    return chosen


def _world(on: torch.device):
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if on.type == "cuda" else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _optimizer(config: TrainConfig, parameters):
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    return kinds[config.optimizer](parameters, lr=config.lr)


def train(config: TrainConfig, resume: bool = False, stop_when=None) -> dict:
    """Train as `config` says; returns the step reached and the last evaluation. Raises
    TrainingError on a non-finite loss (the last good checkpoint is kept). stop_when, given
    an evaluation (a dict), may end training early by returning True."""
    return run(config, resume, stop_when)[1]


def run(config: TrainConfig, resume: bool = False, stop_when=None):
    """train(), returning (model, result): the trained module itself, on every rank."""
    config.check()
    on = resolve_device(config.device)
    if on.type == "cuda":   # the current device: NCCL's, and the RNG state checkpoints keep
        torch.cuda.set_device(on)
    rank, world = _world(on)
    if config.batch_size % world:
        raise ValueError(f"--batch-size: {config.batch_size} does not split over {world} "
                         "processes; use a multiple of the process count")
    run_dir = Path(config.out)
    # A resumed run keeps what it was built with (the vocabulary) whatever the data now holds;
    # reading it says what is missing where there is no run.
    metadata = checkpoint.read_run(run_dir)["task_metadata"] if resume else None
    if not resume and rank == 0:
        run_folder.claim(run_dir)
    with run_folder.hold(run_dir) if rank == 0 else contextlib.nullcontext():
        return _run(config, resume, stop_when, on, rank, world, run_dir, metadata)


def _run(config, resume, stop_when, on, rank, world, run_dir, metadata):
    task = make_task(config, metadata)
    torch.manual_seed(config.seed)
    model = task.build(**dataclasses.asdict(config)).to(on)
    optimizer = _optimizer(config, model.parameters())
    generator = torch.Generator().manual_seed(config.seed + 1)
    step, last = 0, {}
    # A run stopped before its first checkpoint resumes from its beginning.
    state = checkpoint.load(run_dir, model, optimizer, generator) if resume else None
    if state is not None:
        step, last = state["step"], state.get("evaluation", {})
    if rank == 0 and resume:
        run_folder.trim_metrics(run_dir, step)
    elif rank == 0:
        run_folder.write_config(run_dir, {"config": dataclasses.asdict(config),
                                          "task_metadata": task.metadata()})
    trained = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[on] if on.type == "cuda" else None) if world > 1 else model
    progress = Progress(config.steps, step) if rank == 0 else None
    metrics = open(run_dir / "metrics.jsonl", "a") if rank == 0 else None
    started, tokens, saved_step = time.time(), 0, step
    try:
        while step < config.steps:
            model.train()
            batch = on_device(task.batch(generator, config.batch_size, shard=(rank, world)), on)
            # bfloat16: the products in bfloat16 (on a GPU the triton backend's tensor-core
            # path, float32 state), the loss and the optimiser's step in float32.
            with torch.autocast(on.type, dtype=torch.bfloat16,
                                enabled=config.precision == "bfloat16"):
                loss = task.loss(trained, batch)
            global_loss = loss.detach().clone()
            if world > 1:
                dist.all_reduce(global_loss)
                global_loss /= world
            if not torch.isfinite(global_loss):
                raise _stopped(step + 1, f"the loss became {global_loss.item()}", saved_step,
                               run_dir)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            step += 1
            tokens += task.tokens(batch) * world
            if rank == 0 and (step % config.log_every == 0 or step == config.steps):
                rate = tokens / (time.time() - started)
                metrics.write(json.dumps({"step": step, "loss": global_loss.item(),
                                          "per_second": rate}) + "\n")
                metrics.flush()
                progress.update(step, loss=f"{global_loss.item():.3f}",
                                **{f"{task.unit}/s": f"{rate:,.0f}"})
            stopping = False
            if step % config.eval_every == 0 or step == config.steps:
                model.eval()
                last = task.evaluate(model)
                stopping = bool(stop_when and stop_when(last))
                if rank == 0:
                    metrics.write(json.dumps({"step": step, **last}) + "\n")
                    metrics.flush()
            if rank == 0 and (step % config.checkpoint_every == 0 or step == config.steps
                              or stopping):
                _finite_or_stop(model, step, saved_step, run_dir)
                checkpoint.save(run_dir, model, optimizer, generator,
                                {"step": step, "evaluation": last})
                saved_step = step
            if stopping:
                break
    finally:
        if progress is not None:
            progress.close()
        if metrics is not None:
            metrics.close()
    return model, {"step": step, **last}


def _finite_or_stop(model, step: int, saved_step: int, run_dir: Path) -> None:
    """A step can make a weight non-finite while its loss was finite: such weights are never
    saved over the last good checkpoint."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise _stopped(step, f"{name} became non-finite", saved_step, run_dir)


def _stopped(step: int, what: str, saved_step: int, run_dir: Path) -> TrainingError:
    return TrainingError(f"training stopped at step {step}: {what}; the last good checkpoint "
                         f"(step {saved_step}) is kept in {run_dir / 'checkpoint'}; try a lower "
                         "--lr or --clip 1")


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.is_file() else []

