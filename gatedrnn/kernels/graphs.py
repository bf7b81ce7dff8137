"""CUDA graphs of the triton backend's per-step launches (settings.graphs, for its "step" and
"gemm" modes).

A sequence launched per step is T launches (2T for the lecture's GRU, and in gemm mode as many
cuBLAS calls), each a few µs of Python and driver work. Recorded once into a CUDA graph, the
same launches replay as one call, with the GPU's own gaps between kernels. A graph holds the
addresses and sizes it was recorded with, so it may only be replayed for a call whose buffers
lie at the same addresses with the same sizes, dtypes and launch constants: that is the key a
recording is kept under. A training loop repeats its allocations step after step, and
PyTorch's caching allocator mostly hands them the same addresses: in the GPU check's loops (one
layer) 28-33 of 36 calls replayed. Two bidirectional layers over a packed batch often did not
repeat their addresses (benchmarks/results/gpu-notes.md, v6): there calls launch as without graphs,
plus a recording now and then. A key's first call launches directly, as without graphs: it
creates what the launches create on first use (the calling thread's cuBLAS handle: the
backward runs in autograd's own thread), which a recording may not (the first GPU run, whose
first call of all recorded, lost its backward's recording to that, and a recording that fails
leaves PyTorch's CUDA random generator unusable; benchmarks/results/gpu-notes.md, v6). It also costs
nothing for buffers that never come back. The second call records a graph (the cost of one
step-mode run, plus instantiating it), and the least recently used of more than `capacity`
graphs is dropped.

The caller allocates every buffer the launches read and write first, and compiles and loads
the kernels before recording. What cuBLAS allocates while recording (its workspace) comes
from the graph's own memory pool, which it holds as long as it is kept.
"""

from __future__ import annotations

import collections
from typing import Callable, Hashable

import torch

# launch_all(stream): issue every launch of the sequence, in order, on that CUDA stream (its
# raw handle, as Triton's launchers take it).
LaunchAll = Callable[[int], None]


def graph_key(parts) -> tuple:
    """What a recorded launch depends on: tensors by address, dtype and shape (the kernels
    read them through their addresses), everything else by value, nested as it comes."""
    if isinstance(parts, torch.Tensor):
        return ("tensor", parts.data_ptr(), parts.dtype, tuple(parts.shape))
    if isinstance(parts, dict):
        return tuple((k, graph_key(v)) for k, v in sorted(parts.items()))
    if isinstance(parts, (tuple, list)):
        return tuple(graph_key(p) for p in parts)
    return parts


class StepGraphs:
    """Recorded sequences of launches, by key (see the module's doc)."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._graphs: collections.OrderedDict = collections.OrderedDict()
        self._seen: collections.OrderedDict = collections.OrderedDict()   # keys called once: True
        self._streams: dict = {}
        self.direct = 0     # for benchmarks: how many calls launched directly (a new key) ...
        self.recorded = 0   # ... recorded a graph (a key's second call) ...
        self.replayed = 0   # ... and found theirs

    def run(self, key: Hashable, device: torch.device, launch_all: LaunchAll,
            prepare: Callable[[], None], direct: Callable[[], None]) -> None:
        """Replay the graph recorded under `key`; or, at the key's second call, record
        launch_all into one (nothing runs while recording) and replay that, on the current
        stream; or, at its first, direct(): the launches on the current stream, uncaptured.
        prepare() is called before recording: what cannot be recorded (compiling, loading
        kernels) happens there."""
        graph = self._graphs.pop(key, None)
        if graph is None and not self._seen.pop(key, False):
            self._seen[key] = True
            while len(self._seen) > 4 * self.capacity:
                self._seen.popitem(last=False)
            self.direct += 1
            direct()
            return
        if graph is None:
            prepare()
            graph = self._record(device, launch_all)
            self.recorded += 1
            while len(self._graphs) >= self.capacity:
                self._graphs.popitem(last=False)
        else:
            self.replayed += 1
        self._graphs[key] = graph   # the most recently used last
        graph.replay()

    def _record(self, device: torch.device, launch_all: LaunchAll):
        # Recording needs a stream of its own: the legacy default stream cannot be captured.
        # "thread_local": other threads (a data loader) may go on calling CUDA meanwhile.
        stream = self._streams.get(device)
        if stream is None:
            stream = self._streams[device] = torch.cuda.Stream(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                launch_all(stream.cuda_stream)
            finally:
                graph.capture_end()
        return graph
