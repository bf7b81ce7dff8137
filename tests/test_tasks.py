"""The tasks' data: corpora and their errors, the adding problem, JSB piano rolls, sharding."""

import json

import pytest
import torch

from gatedrnn.tasks import adding, charlm, jsb
from gatedrnn.tasks.charlm import CharLMTask, DataError, Vocabulary, read_text_file


def test_stdlib_corpus_is_a_fixed_selection():
    text = charlm.stdlib_corpus()
    assert text == charlm.stdlib_corpus()
    assert len(text) > 300_000 and "# ---- textwrap.py" in text


def test_shakespeare_loader_reads_its_cache(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\nBefore we proceed")
    assert charlm.shakespeare_corpus(cache=tmp_path).startswith("First Citizen")


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"), (b"", "is empty"), (b"\x00\x01binary", "looks binary"),
    (b"caf\xe9 latin-1", "is not UTF-8"),
])
def test_bad_text_files(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=f"data: .*{message}"):
        read_text_file(path)


def test_vocabulary_round_trip_and_unknown_characters():
    vocab = Vocabulary.of("hello world")
    assert vocab.decode(vocab.encode("hello")) == "hello"
    with pytest.raises(ValueError, match=r"characters \['z'\] are not in the model's vocabulary"):
        vocab.encode("zoo")


def test_ranks_read_disjoint_shards_of_the_same_global_batch():
    task = CharLMTask("abcdefghij" * 100, seq_len=5)
    full = task.batch(torch.Generator().manual_seed(0), 8)
    shards = [task.batch(torch.Generator().manual_seed(0), 8, shard=(r, 2)) for r in range(2)]
    for k in range(2):
        assert torch.equal(torch.cat([s[k] for s in shards], 1), full[k])


def test_adding_problem_targets_and_markers():
    x, y = adding.make_batch(50, 64, torch.Generator().manual_seed(0))
    assert x.shape == (50, 64, 2) and y.shape == (64, 1)
    marks = x[..., 1]
    assert torch.all(marks.sum(0) == 2)
    assert torch.all(marks[:10].sum(0) >= 1) and torch.all(marks[25:].sum(0) == 0)
    torch.testing.assert_close(y[:, 0], 0.5 + (x[..., 0] * marks).sum(0) / 4)


def _jsb_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    song = lambda n: [sorted({60 + int(torch.randint(0, 12, (1,), generator=g)) for _ in range(3)})  # noqa: E731
                      for _ in range(n)]
    data = {"train": [song(12), song(9), song(15)], "valid": [song(10)], "test": [song(8), song(11)]}
    path = tmp_path / "jsb.json"
    path.write_text(json.dumps(data))
    return path


def test_jsb_rolls_and_likelihood(tmp_path):
    task = jsb.JSBTask.from_file(_jsb_file(tmp_path))
    x, y, lengths = task.batch(torch.Generator().manual_seed(0), 4)
    assert x.shape[1:] == (4, 88) and torch.equal(x[1:lengths[0], 0], y[: lengths[0] - 1, 0])
    model = task.build(variant="gru", hidden_size=8, num_layers=1, dropout=0.0)
    scores = task.evaluate(model)
    assert set(scores) == {"valid_nll", "test_nll"}
    # An untrained model is near 88 · log 2 per step: every key a coin flip.
    assert 40 < scores["test_nll"] < 80


def test_jsb_bad_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train": [[[10]]], "valid": [], "test": []}))
    with pytest.raises(DataError, match="split of .* has no sequence"):
        jsb.load_jsb(path)
    path.write_text(json.dumps({"train": [[[10], [60]]], "valid": [[[60], [61]]],
                                "test": [[[60], [62]]]}))
    with pytest.raises(DataError, match="pitch 10 at step 0 is outside the piano"):
        jsb.load_jsb(path)


def test_a_file_is_encoded_as_a_str_would_be(tmp_path):
    from gatedrnn.tasks import corpus

    text = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 🎻\n" * 300
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    saved, corpus.CHUNK = corpus.CHUNK, 1000   # pieces that cut characters' bytes apart
    try:
        vocab, ids = corpus.encode_file(tmp_path / "t.txt")
    finally:
        corpus.CHUNK = saved
    assert vocab.chars == Vocabulary.of(text).chars and ids.dtype == torch.uint8
    assert torch.equal(ids.long(), vocab.encode(text)) and vocab.decode(ids) == text


def test_training_data_takes_at_most_three_times_the_file(tmp_path):
    """Peak memory of building the char-LM task from a 24 MB file, in a fresh process."""
    import subprocess
    import sys

    line = "".join(chr(32 + (i * 7) % 90) for i in range(99)) + "\n"
    (tmp_path / "big.txt").write_text(line * 240_000)
    (tmp_path / "small.txt").write_text(line * 10)
    # The resident size sampled while the task is made, above what it was before.
    probe = """
import os, sys, threading, time
from gatedrnn.tasks import make
from gatedrnn.train import TrainConfig
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
before, peak, done = rss(), [0], []
def watch():
    while not done:
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
watcher = threading.Thread(target=watch)
watcher.start()
task = make(TrainConfig(data=sys.argv[1], seq_len=50))
done.append(1)
watcher.join()
print(max(peak[0], rss()) - before)
"""
    grown = [int(subprocess.run([sys.executable, "-c", probe, str(tmp_path / name)],
                                capture_output=True, text=True, check=True).stdout)
             for name in ("small.txt", "big.txt")]
    size = (tmp_path / "big.txt").stat().st_size
    assert grown[1] - grown[0] <= 3 * size, f"{(grown[1] - grown[0]) / size:.1f}x the file"


def test_the_workloads_benchmark_runs_and_prints_its_table(tmp_path):
    """benchmarks/workloads.py at toy sizes: every workload produces a row and a ratio."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "workloads.py"), "--quick",
                           "--variants", "lstm,gru", "--json", str(tmp_path / "w.json")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "w.json").read_text())["rows"]
    assert {r["workload"].split()[0] for r in rows} == {"W1", "W2", "W3"}
    assert all(r["gatedrnn"] > 0 and r["torch_nn"] > 0 for r in rows)
