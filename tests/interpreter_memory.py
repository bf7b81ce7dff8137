"""Memory checks for Triton's interpreter, of what it runs differently from a GPU:

1. Bounds: every load, store and atomic operation of an interpreted launch must touch only the
   memory of that launch's tensor arguments. On the CPU the interpreter reads and writes raw
   addresses: a kernel that reads past its tensor gets whatever the heap holds there and one
   that writes past it corrupts a neighbour, both silently, and the numbers may still come out
   right when the stray lanes are masked later. On a GPU the same kernel reads another buffer
   of the caching allocator or stops the process with an illegal address. The extent of a
   tensor argument is its view: from its first element to one past its last, as its sizes and
   strides reach (not the whole storage it may be a view of: a kernel that reaches another
   view's elements through one argument is wrong even where it cannot fault).
2. Barriers within a program: since the program's last block barrier (tl.debug_barrier,
   also inside the grid barrier), a load of an address it stored fails, and so does a store
   to an address it loaded in another lane. The interpreter runs a program's operations on
   whole blocks, one after another, so a load always sees the stores before it and never the
   stores after it; on a GPU different threads of the program do them, and without the barrier
   one may read before another has written, or after. A store over what the same lane loaded
   (an in-place update of a tile: load, add, store) passes: the same lane of two blocks of one
   shape is taken to be the same thread, as Triton lays them out alike. A load of what the
   same lane stored still fails: the kernels need no such loads, so the rule stays strict.

Only the active lanes (mask true) count. Written against Triton 3.6's interpreter
(triton/runtime/interpreter.py): its GridExecutor's `_init_args_hst` / `_restore_args_dev`,
which run around every launch, also in interpreter_threads.py's threaded launches, and its
builder's memory operations, `set_grid_idx` and `create_barrier`.
"""

from __future__ import annotations

import functools
import inspect
import threading

import numpy as np
import torch
from triton.runtime import interpreter


class OutOfBounds(AssertionError):
    """An interpreted kernel touched memory outside its launch's tensor arguments."""


class NoBarrier(AssertionError):
    """An interpreted program loaded what it stored, or stored over what another of its lanes
    loaded, with no barrier in between."""


class _Extents:
    """The [start, stop) byte ranges of the tensor arguments of the launches under way: a union
    over them, should several threads launch at once. A launch that raised is never removed,
    which can only loosen the check, never fail a kernel that stays in bounds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_launch: dict[int, list[tuple[int, int, str]]] = {}
        self.starts = np.zeros(0, dtype=np.uint64)
        self.stops = np.zeros(0, dtype=np.uint64)
        self.names: list[str] = []

    def add(self, key: int, ranges: list[tuple[int, int, str]]) -> None:
        with self.lock:
            self.by_launch[key] = ranges
            self._merge()

    def remove(self, key: int) -> None:
        with self.lock:
            self.by_launch.pop(key, None)
            self._merge()

    def _merge(self) -> None:
        ranges = sorted(r for rs in self.by_launch.values() for r in rs)
        self.starts = np.array([r[0] for r in ranges], dtype=np.uint64)
        self.stops = np.array([r[1] for r in ranges], dtype=np.uint64)
        self.names = [r[2] for r in ranges]

    def outside(self, addresses: np.ndarray, size: int) -> np.ndarray:
        """The addresses whose `size` bytes are not all inside one range."""
        starts, stops = self.starts, self.stops   # one consistent pair (replaced, not mutated)
        if len(starts) == 0:
            return addresses
        # The range starting last at or before each address; ranges may overlap (views of one
        # storage), so also the furthest stop among all ranges starting up to there.
        reach = np.maximum.accumulate(stops)
        at = np.searchsorted(starts, addresses, side="right") - 1
        inside = (at >= 0) & (addresses + np.uint64(size) <= reach[np.maximum(at, 0)])
        return addresses[~inside]

    def where(self, address: int) -> str:
        """Where `address` lies from the nearest tensor starting before it."""
        before = [(start, stop, name) for start, stop, name
                  in zip(self.starts.tolist(), self.stops.tolist(), self.names)
                  if start <= address]
        if not before:
            return f"{address:#x}, below every tensor of the launch"
        start, stop, name = max(before, key=lambda r: r[1])
        past = (f"{address - stop} bytes past the end of" if address >= stop
                else f"{stop - address} bytes before the end of, and reaching past,")
        return f"{past} {name} ({stop - start} bytes from {start:#x})"


def _extent(name: str, tensor: torch.Tensor) -> tuple[int, int, str] | None:
    if tensor.numel() == 0:
        return None
    last = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))
    start = tensor.data_ptr()
    return start, start + (last + 1) * tensor.element_size(), name


def _tensors(names, args, kwargs):
    for i, value in enumerate(args):
        yield names[i] if i < len(names) else f"argument {i}", value
    yield from kwargs.items()


def _lanes(pointers, mask) -> tuple[np.ndarray, np.ndarray]:
    """A memory operation's addresses and which of them are active, in its block's shape."""
    addresses = np.asarray(pointers.data, dtype=np.uint64)
    active = (np.ones(addresses.shape, dtype=bool) if mask is None else
              np.broadcast_to(np.asarray(mask.data, dtype=bool), addresses.shape))
    return addresses, active


def _active(pointers, mask) -> np.ndarray:
    """The addresses of the lanes whose mask is true (all, without a mask)."""
    addresses, active = _lanes(pointers, mask)
    return addresses[active]


# The interpreter's functions that the checks wrap, with the leading parameters they read; the
# wrappers pass the rest on as they come (Triton 3.9 merged the loads' and stores' cache
# arguments of 3.5-3.6 into one).
WRAPPED = {"GridExecutor._init_args_hst": ["self", "args_dev", "kwargs"],
           "GridExecutor._restore_args_dev": ["self", "args_dev", "args_hst", "kwargs",
                                              "kwargs_hst"],
           "builder.set_grid_idx": ["self", "x", "y", "z"],
           "builder.create_barrier": ["self"],
           "builder.create_masked_load": ["self", "ptrs", "mask"],
           "builder.create_masked_store": ["self", "ptrs", "value", "mask"],
           "builder.create_atomic_rmw": ["self", "rmwOp", "ptr", "val", "mask"],
           "builder.create_atomic_cas": ["self", "ptr"]}


def supported() -> bool:
    """Has this Triton's interpreter the functions, with the leading parameters, that the
    checks wrap? (Where it has not, conftest runs the tests without the checks.)"""
    owners = {"GridExecutor": interpreter.GridExecutor,
              "builder": type(getattr(interpreter, "interpreter_builder", None))}
    for name, parameters in WRAPPED.items():
        owner, attribute = name.split(".")
        function = getattr(owners[owner], attribute, None)
        if (not callable(function)
                or list(inspect.signature(function).parameters)[:len(parameters)] != parameters):
            return False
    return callable(getattr(interpreter, "_get_np_dtype", None))


class _SinceBarrier:
    """What one program stored (active addresses) and loaded (addresses, active lanes and the
    active addresses) since its last barrier, each with the span of its active addresses:
    spans that do not meet (the weights a kernel only reads, say) need no closer look."""

    def __init__(self):
        self.stored: list[tuple[int, int, np.ndarray]] = []
        self.loaded: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = []

    def store(self, taken: np.ndarray) -> None:
        if len(taken):
            self.stored.append((int(taken.min()), int(taken.max()), taken))

    def load(self, addresses: np.ndarray, active: np.ndarray, taken: np.ndarray) -> None:
        if len(taken):
            self.loaded.append((int(taken.min()), int(taken.max()), addresses, active, taken))

    def stored_here(self, taken: np.ndarray) -> np.ndarray:
        """The active addresses of a load that a store since the barrier wrote."""
        if not len(taken):
            return taken
        low, high = int(taken.min()), int(taken.max())
        meet = [s for first, last, s in self.stored if first <= high and low <= last]
        return taken[np.isin(taken, np.concatenate(meet))] if meet else taken[:0]

    def loaded_elsewhere(self, addresses: np.ndarray, active: np.ndarray,
                         taken: np.ndarray) -> np.ndarray:
        """The active addresses of a store that a load since the barrier took in another lane
        (the same lane: the same position in a block of the same shape)."""
        if not len(taken):
            return taken
        low, high = int(taken.min()), int(taken.max())
        over = []
        for first, last, loaded, loaded_active, loaded_taken in self.loaded:
            if first > high or low > last:
                continue
            hit = active & np.isin(addresses, loaded_taken)
            if hit.any() and loaded.shape == addresses.shape:
                hit &= ~((loaded == addresses) & loaded_active)
            if hit.any():
                over.append(addresses[hit])
        return np.concatenate(over) if over else taken[:0]


def _unordered(operation: str, found: np.ndarray, program, earlier: str) -> None:
    if len(found):
        raise NoBarrier(f"{operation} of {len(found)} element(s) that program {program} "
                        f"{earlier} since its last barrier, the first at {int(found[0]):#x}: on "
                        "a GPU different threads of the program do the two, in no set order "
                        "without tl.debug_barrier() between them")


def check_memory(monkeypatch) -> None:
    """Until the test ends (monkeypatch undoes it), fail any interpreted launch whose kernel
    loads, stores or does an atomic operation outside its tensor arguments (OutOfBounds), or
    whose program loads what it stored, or stores over what another of its lanes loaded, since
    its last barrier (NoBarrier); raised inside the launch, the interpreter wraps them in an
    InterpreterError. Each wrapper keeps its original's signature (functools.wraps), which
    supported() and interpreter_threads.supported() read."""
    executor, builder = interpreter.GridExecutor, type(interpreter.interpreter_builder)
    init_args, restore_args = executor._init_args_hst, executor._restore_args_dev
    set_grid_idx, barrier = builder.set_grid_idx, builder.create_barrier
    load, store = builder.create_masked_load, builder.create_masked_store
    atomic_rmw, atomic_cas = builder.create_atomic_rmw, builder.create_atomic_cas
    extents = _Extents()
    # What each running program did since its last barrier, by (thread, program index): a
    # launch's programs run one after another on its thread, or each on a thread of its own.
    done: dict[tuple, _SinceBarrier] = {}

    def mine(self) -> _SinceBarrier:
        return done.setdefault((threading.get_ident(), self.grid_idx), _SinceBarrier())

    def in_bounds(what: str, pointers, taken: np.ndarray) -> None:
        size = np.dtype(interpreter._get_np_dtype(pointers.get_element_ty())).itemsize
        stray = extents.outside(taken, size)
        if len(stray):
            raise OutOfBounds(f"{what} of {len(stray)} element(s) of {size} bytes outside the "
                              f"launch's tensors; the first, {extents.where(int(stray.min()))}")

    @functools.wraps(init_args)
    def init_args_checked(self, args_dev, kwargs):
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        tensors = _tensors(self.arg_names, args_hst, kwargs_hst)
        ranges = [_extent(name, value) for name, value in tensors
                  if isinstance(value, torch.Tensor)]
        extents.add(id(args_hst), [r for r in ranges if r is not None])
        return args_hst, kwargs_hst

    @functools.wraps(restore_args)
    def restore_args_checked(self, args_dev, args_hst, kwargs, kwargs_hst):
        extents.remove(id(args_hst))
        return restore_args(self, args_dev, args_hst, kwargs, kwargs_hst)

    @functools.wraps(set_grid_idx)
    def set_grid_idx_checked(self, x, y, z):
        set_grid_idx(self, x, y, z)
        done[(threading.get_ident(), (x, y, z))] = _SinceBarrier()   # a program starts

    @functools.wraps(barrier)
    def barrier_checked(self):
        mine(self).__init__()
        return barrier(self)

    @functools.wraps(load)
    def load_checked(self, ptrs, mask, *rest):
        addresses, active = _lanes(ptrs, mask)
        taken = addresses[active]
        in_bounds("a load", ptrs, taken)
        since = mine(self)
        _unordered("a load", since.stored_here(taken), self.grid_idx, "stored itself")
        since.load(addresses, active, taken)
        return load(self, ptrs, mask, *rest)

    @functools.wraps(store)
    def store_checked(self, ptrs, value, mask, *rest):
        addresses, active = _lanes(ptrs, mask)
        taken = addresses[active]
        in_bounds("a store", ptrs, taken)
        since = mine(self)
        _unordered("a store", since.loaded_elsewhere(addresses, active, taken), self.grid_idx,
                   "loaded in other lanes")
        since.store(taken)
        return store(self, ptrs, value, mask, *rest)

    @functools.wraps(atomic_rmw)
    def atomic_rmw_checked(self, rmwOp, ptr, val, mask, *rest):
        in_bounds("an atomic operation", ptr, _active(ptr, mask))
        return atomic_rmw(self, rmwOp, ptr, val, mask, *rest)

    @functools.wraps(atomic_cas)
    def atomic_cas_checked(self, ptr, *rest):
        in_bounds("an atomic compare-and-swap", ptr, _active(ptr, None))
        return atomic_cas(self, ptr, *rest)

    for owner, name, wrapper in ((executor, "_init_args_hst", init_args_checked),
                                 (executor, "_restore_args_dev", restore_args_checked),
                                 (builder, "set_grid_idx", set_grid_idx_checked),
                                 (builder, "create_barrier", barrier_checked),
                                 (builder, "create_masked_load", load_checked),
                                 (builder, "create_masked_store", store_checked),
                                 (builder, "create_atomic_rmw", atomic_rmw_checked),
                                 (builder, "create_atomic_cas", atomic_cas_checked)):
        monkeypatch.setattr(owner, name, wrapper)
