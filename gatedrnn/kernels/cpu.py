"""The "cpu" backend: the time loop compiled (gatedrnn/kernels/cpu/recurrence.cpp).

The C++ source is built with torch.utils.cpp_extension the first time it is needed (about a
minute, once per environment: the build is cached under ~/.cache/torch_extensions, named by a
hash of what it depends on). If it cannot be built (no compiler, an unsupported platform)
gatedrnn warns once and runs the "loop" backend.
A build lock left by a process killed halfway is cleared (`_held_build`).
GATEDRNN_CPU_KERNEL=0 turns the compiled path off.

Why compiled: a Python time loop pays ~5-10 µs of interpreter and dispatch overhead per op;
at batch 1 that is most of the cost. Here each step is one product and one fused, vectorised
element-wise pass. The product is BLAS from 8 batch rows per thread (the MKL that ships inside
libtorch_cpu, called directly where its symbols are exported, else through ATen; oneDNN's for
float32 weights of onednn.MIN_VALUES values or more, see onednn.py) and, in calls of 64 steps
or more, the kernel's own below that (recurrence.cpp's Panels: BLAS spends more on
setting up a product of a few rows than on the product). The batch is split over threads by
rows, each thread running the whole time loop for its rows. The weight gradients stay large
GEMMs in PyTorch.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import sys
import threading
import warnings
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:   # Windows
    fcntl = None

from ..cells import Variant
from . import kernel_id, onednn
from .states import weight_grads

_SOURCE = Path(__file__).parent / "cpu" / "recurrence.cpp"
_lock = threading.Lock()
_state: dict = {}


def _exported(*symbols: str) -> bool:
    """Does libtorch_cpu export all these symbols? (The x86 builds export MKL's BLAS.)"""
    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        handle = ctypes.CDLL(str(lib))
    except OSError:
        return False
    return all(hasattr(handle, name) for name in symbols)


def _flags() -> list[str]:
    flags = ["-O3"]
    openmp = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    if openmp and sys.platform.startswith("linux"):
        # at::parallel_for is a header template over "#pragma omp parallel": compiled without
        # -fopenmp the pragma is dropped and the loop runs on one thread (a batch's row blocks
        # one after another). The OpenMP calls resolve to the libgomp torch loaded, so both
        # share one thread pool. (Apple's clang has no -fopenmp: there the loops stay on one
        # thread and BLAS threads the products.)
        flags.append("-fopenmp")
    # ATen's Vectorized<T> at the widest width ATen itself uses on this CPU: AVX-512 halves the
    # element-wise passes' instructions and gives Panels the registers for 4 rows at once.
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        flags += ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
                  "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
    elif capability == "AVX2":
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    if _exported("sgemm_", "dgemm_"):
        flags.append("-DGATEDRNN_BLAS_SYMBOLS")
    if _exported("cblas_sgemm_pack_get_size", "cblas_sgemm_pack", "cblas_sgemm_compute"):
        flags.append("-DGATEDRNN_MKL_PACKED")
    return flags


@contextlib.contextmanager
def _held_build(directory: Path | None, file_lock: bool):
    """Hold gatedrnn's own lock on building the kernel, and clear torch's if its holder died.

    torch's cpp_extension, up to 2.14, guards a build with a file that its holder deletes when
    done (FileBaton), and every later load waits, without end, while the file exists. A
    process killed in the middle of a build (SIGKILL, a CI timeout, the OOM killer) never
    deletes it, so every later first call hangs. Every gatedrnn process builds and loads under
    an OS lock of its own (flock), which the kernel lets go of when its holder dies: so once a
    process holds it, no live gatedrnn build holds torch's, and a torch lock file still there
    is a dead build's. It is removed, with a warning naming it. (torch 2.15 itself takes an OS
    lock on the file and leaves the file in place: `file_lock` is False there.) Without fcntl
    (Windows) or a build directory, torch's own lock is all there is."""
    if fcntl is None or directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "gatedrnn-build.lock", "w") as held:   # closing it lets go
        locked = True
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("gatedrnn: waiting for another process's build of the compiled CPU kernel",
                  file=sys.stderr, flush=True)
            fcntl.flock(held, fcntl.LOCK_EX)
        except OSError:   # a file system without locks: torch's is all there is
            locked = False
        stale = directory / "lock"
        if locked and file_lock and stale.exists():
            warnings.warn(f"gatedrnn: removed {stale}, left by a build of the compiled CPU "
                          "kernel that never finished (its process was killed)", stacklevel=5)
            stale.unlink(missing_ok=True)
        yield


def _name(flags: list[str]) -> str:
    """The build's name, keyed by all it depends on: the source, the flags (which follow the
    CPU and torch's build), torch and Python. Environments that differ in any of these keep
    builds of their own side by side, instead of rebuilding over each other's."""
    key = hashlib.sha256("\0".join([_SOURCE.read_text(), *flags, torch.__version__,
                                     sys.version, sys.prefix]).encode()).hexdigest()[:12]
    return f"gatedrnn_cpu_{key}"


def _build():
    from torch.utils import cpp_extension

    flags = _flags()
    name = _name(flags)
    try:   # a private helper: if it moves, the loss is this message and the stale-lock check
        directory = Path(cpp_extension._get_build_directory(name, False))
    except Exception:
        directory = None
    with _held_build(directory, file_lock=hasattr(cpp_extension, "FileBaton")):
        # The name is a key of everything the build depends on: a build there is this one.
        # (Asking ninja instead rebuilt it when processes' views of it differed.)
        built = directory / f"{name}{'.pyd' if sys.platform == 'win32' else '.so'}" \
            if directory is not None else None
        if built is not None and built.is_file():
            try:
                return _imported(name, built)
            except ImportError:   # a build cut short: built again below
                pass
        print(f"gatedrnn: building the compiled CPU kernel into {directory or name} (once "
              "per environment, about a minute)", file=sys.stderr, flush=True)
        return cpp_extension.load(name=name, sources=[str(_SOURCE)], extra_cflags=flags,
                                  verbose=False)


def _imported(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extension():
    """The compiled module, or None (with a one-time warning) where it cannot be had."""
    with _lock:
        if "ext" not in _state:
            _state["ext"] = None
            if os.environ.get("GATEDRNN_CPU_KERNEL", "1") == "0":
                _state["why"] = "GATEDRNN_CPU_KERNEL=0"
            else:
                try:
                    _state["ext"] = _build()
                except Exception as error:  # any build or load failure means: fall back
                    _state["why"] = f"{type(error).__name__}: {str(error).strip()[-500:]}"
                    warnings.warn("gatedrnn: the compiled CPU backend is unavailable, using the "
                                  f"slower 'loop' backend instead ({_state['why']})", stacklevel=3)
        return _state["ext"]


def available() -> bool:
    return extension() is not None


def _c(t):
    return None if t is None else t.contiguous()


def _mask2d(mask):
    """(T, B, 1) → the (T, B) bool rows the kernel reads."""
    return None if mask is None else mask.reshape(mask.shape[0], mask.shape[1]).contiguous()


def forward(variant: Variant, xp, R, b_hh, p, a0, c0, mask, reverse, keep_saved=True):
    SA, SC, saved = extension().forward(kernel_id(variant), _c(xp), _c(R), _c(b_hh),
                                        _c(p), _c(a0), _c(c0), _mask2d(mask), reverse,
                                        keep_saved, onednn.min_values(R))
    return SA, (SC if variant.has_cell else None), (saved if keep_saved else None)


def step(variant: Variant, xp, R, b_hh, p, a, c):
    """One step without autograd, in one call of the kernel: (a, c) after it from xp (B, G*H)
    and the states before it (c None without a cell). A single step's cost is call overhead,
    which the element-wise ops of Variant.step multiply."""
    SA, SC, _ = forward(variant, xp.unsqueeze(0), R, b_hh, p, a, c, None, False,
                        keep_saved=False)
    return SA[1], (SC[1] if SC is not None else None)


def backward(variant: Variant, d_A, d_a_n, d_c_n, R, b_hh, p, SA, SC, saved, mask, reverse):
    d_xp, d_a0, d_c0 = extension().backward(kernel_id(variant), _c(d_A), _c(d_a_n),
                                            _c(d_c_n), _c(R), _c(p), SA, SC, saved,
                                            _mask2d(mask), reverse, onednn.min_values(R))
    d_R, d_b_hh, d_p = weight_grads(variant, d_xp, SA, SC, saved, reverse)
    return d_xp, d_R, d_b_hh, d_p, d_a0, (d_c0 if variant.has_cell else None)
