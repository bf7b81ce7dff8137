"""Data-parallel training: 2 Gloo processes hold identical parameters, equal to one process
trained on the same global batches."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from gatedrnn.train import TrainConfig, run

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with Gloo")


def _config(text_file, out):
    return TrainConfig(data=str(text_file), hidden_size=16, num_layers=2, embedding_size=8,
                       seq_len=12, batch_size=8, steps=4, eval_every=4, checkpoint_every=4,
                       log_every=1, dropout=0.0, out=str(out))


def _worker(rank, world, init_file, text_file, tmp):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        model, _ = run(_config(text_file, tmp / "ddp"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(tmp / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path):
    text_file = tmp_path / "text.txt"
    text_file.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), text_file, tmp_path), nprocs=2)
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name

    single, _ = run(_config(text_file, tmp_path / "single"))
    for name, value in single.state_dict().items():
        torch.testing.assert_close(rank0[name], value, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "ddp" / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / "ddp" / "checkpoint.partial").exists()
