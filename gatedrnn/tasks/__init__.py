"""Tasks: data, model and loss for charlm (char-level LM), adding (the adding problem) and jsb
(polyphonic music, JSB Chorales). Each task object offers build, batch, loss, evaluate, tokens,
unit and metadata; gatedrnn.train runs any of them."""

from __future__ import annotations

from .charlm import CharLMTask, Vocabulary, load_ids

TASKS = ("charlm", "adding", "jsb")


def make(config, metadata: dict | None = None):
    """The task of a TrainConfig; metadata (from a saved run) pins e.g. the vocabulary."""
    if config.task == "charlm":
        vocab = Vocabulary(metadata["vocabulary"]) if metadata else None
        vocab, ids = load_ids(config.data, vocab)
        return CharLMTask(ids, vocab, config.seq_len, config.valid_fraction)
    if config.task == "adding":
        from .adding import AddingTask

        return AddingTask(config.seq_len)
    if config.task == "jsb":
        from .jsb import JSBTask

        return JSBTask.from_file(config.data)
    raise ValueError(f"--task: expected one of {list(TASKS)}, got {config.task!r}")


def untrained(config: dict, metadata: dict):
    """The model a run with these settings trains, untrained, built without its data."""
    from .adding import AddingTask
    from .jsb import JSBTask

    classes = {"charlm": CharLMTask, "adding": AddingTask, "jsb": JSBTask}
    if config.get("task") not in classes:
        raise ValueError(f"task: expected one of {list(TASKS)}, got {config.get('task')!r}")
    return classes[config["task"]].model(metadata, **config)
