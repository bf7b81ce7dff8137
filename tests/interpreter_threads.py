"""Triton's interpreter with every program of a launch in a thread of its own, for the tests of
the launches whose programs meet at a grid-wide barrier (gatedrnn/kernels/gpu/common.py,
grid_barrier). The interpreter runs a launch's programs one after the other, so a barrier
between them never opens; here they all run at once, as on a GPU whose programs are all
resident.

The launch's last program is made the latest, whatever the threads' scheduling: each of its
stores waits until every other program has done an atomic operation since (arrived at a
barrier, or spins at one) or has finished. A program that passes a barrier before the last
program arrived, or reads across tiles with no barrier, then reads what the last one has not
written yet: the NaN of the poisoned buffers (tests/test_triton.py, small_tiles).

Threads share the interpreter's memory directly: this checks the programs' logic (who owns
which tile, where the barriers are, what each reads after them), not the GPU's memory model
(the barrier's release and acquire; gpu/common.py says why they suffice).

It replaces GridExecutor.__call__ of Triton's interpreter (triton/runtime/interpreter.py),
whose helpers it calls: written against Triton 3.6 (3.5's differs only as marked below), and
`supported()` says whether the Triton at hand has them.
"""

from __future__ import annotations

import inspect
import threading
import time

from triton.runtime import interpreter

PAUSE = 1e-3   # seconds a program gives the others after each atomic operation, and the
               # last program's wait between looks at the others


def supported() -> bool:
    """Has this Triton's interpreter the helpers, with the parameters, that this calls?"""
    def parameters(owner, name):
        function = getattr(owner, name, None)
        return list(inspect.signature(function).parameters) if callable(function) else None

    builder = type(getattr(interpreter, "interpreter_builder", None))
    return (all(callable(getattr(interpreter, name, None))
                for name in ("_patch_lang", "_implicit_cvt"))
            and parameters(interpreter.GridExecutor, "_init_args_hst")
            == ["self", "args_dev", "kwargs"]
            and parameters(interpreter.GridExecutor, "_restore_args_dev")
            == ["self", "args_dev", "args_hst", "kwargs", "kwargs_hst"]
            and callable(getattr(getattr(interpreter, "InterpretedFunction", None), "rewrite",
                                 None))
            and all(callable(getattr(builder, name, None))
                    for name in ("set_grid_idx", "set_grid_dim", "create_atomic_rmw",
                                 "create_store", "create_masked_store")))


class BarrierTimeout(RuntimeError):
    """Programs of a threaded launch still ran after the time allowed: a barrier that never
    opens, most likely."""


class _Launch:
    """What the threads of the running launch share."""

    def __init__(self):
        self.local = threading.local()   # this thread's program: index, last
        self.abandoned = threading.Event()
        self.atomics: dict[tuple, int] = {}   # atomic operations so far, by program
        self.finished: set[tuple] = set()

    def start(self) -> None:
        self.abandoned.clear()
        self.atomics.clear()
        self.finished.clear()

    def others_moved_on(self, seen: dict[tuple, int]) -> bool:
        return all(self.atomics[p] > n or p in self.finished for p, n in seen.items())


def run_programs_in_threads(monkeypatch, timeout: float = 300.0) -> None:
    """Until the test ends (monkeypatch undoes it), run each program of an interpreted launch in
    its own thread, the last one latest (see above). A launch whose programs have not all
    finished after `timeout` seconds raises BarrierTimeout, and its programs stop at their next
    atomic operation."""
    builder_class = type(interpreter.interpreter_builder)
    launch = _Launch()
    local = launch.local
    # The interpreter keeps the running program's index on its one builder: one per thread.
    monkeypatch.setattr(builder_class, "grid_idx",
                        property(lambda self: getattr(local, "index", None),
                                 lambda self, index: setattr(local, "index", index)),
                        raising=False)
    atomic_rmw = builder_class.create_atomic_rmw

    def create_atomic_rmw(self, *args, **kwargs):
        if launch.abandoned.is_set():
            raise BarrierTimeout("launch abandoned")
        value = atomic_rmw(self, *args, **kwargs)
        launch.atomics[local.index] += 1
        time.sleep(PAUSE)   # a program spinning at a barrier leaves the others the time
        return value

    def latest(store):
        def store_last(self, *args, **kwargs):
            if getattr(local, "last", False):
                seen = {p: n for p, n in launch.atomics.items() if p != local.index}
                while not launch.others_moved_on(seen) and not launch.abandoned.is_set():
                    time.sleep(PAUSE)
            return store(self, *args, **kwargs)
        return store_last

    # A helper's first call parses its source (ast.parse): Python 3.11's AST conversion is not
    # thread-safe ("SystemError: AST constructor recursion depth mismatch"), so one at a time.
    rewrite, parsing = interpreter.InterpretedFunction.rewrite, threading.Lock()

    def rewrite_one_at_a_time(self):
        with parsing:
            return rewrite(self)
    monkeypatch.setattr(interpreter.InterpretedFunction, "rewrite", rewrite_one_at_a_time)
    monkeypatch.setattr(builder_class, "create_atomic_rmw", create_atomic_rmw)
    for name in ("create_store", "create_masked_store"):
        monkeypatch.setattr(builder_class, name, latest(getattr(builder_class, name)))
    monkeypatch.setattr(interpreter.GridExecutor, "__call__",
                        lambda executor, *args, **kwargs:
                        _threaded_call(executor, launch, timeout, args, kwargs))


def _threaded_call(executor, launch: _Launch, timeout: float, args_dev, kwargs):
    """GridExecutor.__call__ with a thread per program instead of a loop over them."""
    fn = executor.fn
    kwargs = {k: v for k, v in kwargs.items() if k in inspect.getfullargspec(fn).args}
    args_host, kwargs_host = executor._init_args_hst(args_dev, kwargs)
    for hook in getattr(executor, "pre_run_hooks", ()):   # Triton 3.6 has them, 3.5 not
        hook(*args_host, **kwargs_host)
    scope = interpreter._patch_lang(fn)   # 3.6 undoes its patches after; 3.5 keeps them
    errors = []
    try:
        args = inspect.getcallargs(fn, *args_host, **kwargs_host)
        args = {name: value if name in executor.constexprs else interpreter._implicit_cvt(value)
                for name, value in args.items()}
        grid = executor.grid(args) if callable(executor.grid) else executor.grid
        grid = tuple(grid) + (1,) * (3 - len(grid))
        interpreter.interpreter_builder.set_grid_dim(*grid)
        indices = [(x, y, z) for x in range(grid[0]) for y in range(grid[1])
                   for z in range(grid[2])]
        launch.start()
        launch.atomics.update((index, 0) for index in indices)

        def program(index):
            try:
                interpreter.interpreter_builder.set_grid_idx(*index)
                launch.local.last = index == indices[-1]
                fn(**args)
            except BaseException as error:   # noqa: BLE001 -- re-raised by the launch
                errors.append((index, error))
                launch.abandoned.set()   # the others may wait for this one at a barrier
            finally:
                launch.finished.add(index)

        threads = [threading.Thread(target=program, args=(index,), daemon=True)
                   for index in indices]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = sum(thread.is_alive() for thread in threads)
        if running:
            launch.abandoned.set()
            for thread in threads:
                thread.join(10.0)
            raise BarrierTimeout(f"{running} of {len(threads)} programs still ran after "
                                 f"{timeout:g} s: a barrier that never opens?")
    finally:
        if scope is not None:
            scope.restore()
    first = next((e for e in errors if not isinstance(e[1], BarrierTimeout)), None)
    if first is not None:
        index, error = first
        raise interpreter.InterpreterError(f"program {index}: {error!r}") from error
    executor._restore_args_dev(args_dev, args_host, kwargs, kwargs_host)
