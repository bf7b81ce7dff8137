"""The interpreter's memory checks (interpreter_memory.py, on for every test by conftest): a
kernel that strays outside its tensors fails, one whose stray lanes are masked off passes; a
program that loads what it stored, or stores over what another of its lanes loaded, fails
without a barrier between and passes with one."""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("the interpreter's checks (a GPU runs the kernels itself)",
                allow_module_level=True)
from conftest import require_triton

require_triton()   # skips this module where the "triton" backend cannot run
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.runtime import interpreter  # noqa: E402
from triton.runtime.interpreter import InterpreterError  # noqa: E402

import interpreter_memory  # noqa: E402


def test_the_checks_are_left_out_on_an_interpreter_of_other_functions(monkeypatch):
    """The checks wrap the interpreter's own functions: on a Triton whose functions changed
    where the checks read them, the tests run unchecked (conftest) rather than fail for the
    checks' sake. Parameters after those are passed on as they come."""
    assert interpreter_memory.supported()   # Triton 3.6, as pinned (and 3.5, 3.9: tried)
    builder = type(interpreter.interpreter_builder)
    monkeypatch.setattr(builder, "create_barrier", lambda self, scope=None: None)
    assert interpreter_memory.supported()
    monkeypatch.setattr(builder, "create_masked_load", lambda self, mask, ptrs, *rest: None)
    assert not interpreter_memory.supported()


@triton.jit
def _shifted_copy(X, Y, n, SHIFT: tl.constexpr, N: tl.constexpr, MASKED: tl.constexpr):
    i = tl.arange(0, N)
    if MASKED:
        ok = i + SHIFT < n
        tl.store(Y + i, tl.load(X + i + SHIFT, mask=ok, other=0.0), mask=i < n)
    else:
        tl.store(Y + i, tl.load(X + i + SHIFT))


@triton.jit
def _count(COUNTER, OFFSET: tl.constexpr):
    tl.atomic_add(COUNTER + OFFSET, 1)


def test_a_load_past_the_tensor_fails():
    x, y = torch.arange(8.0), torch.zeros(8)
    with pytest.raises(InterpreterError, match="a load of 1 element"):
        _shifted_copy[(1,)](x, y, 8, SHIFT=1, N=8, MASKED=False)


def test_a_store_past_the_tensor_fails():
    x, y = torch.arange(16.0), torch.zeros(7)
    with pytest.raises(InterpreterError, match="a store of 1 element"):
        _shifted_copy[(1,)](x, y, 7, SHIFT=0, N=8, MASKED=False)


def test_another_view_of_the_same_storage_is_outside():
    """A view's extent is its own elements, not its storage's: writing the next view's first
    element through this one is a bug even where the GPU would not fault."""
    buffer = torch.zeros(16)
    x, y = torch.arange(8.0), buffer[:7]
    with pytest.raises(InterpreterError, match="a store"):
        _shifted_copy[(1,)](x, y, 7, SHIFT=0, N=8, MASKED=False)


def test_an_atomic_past_the_tensor_fails():
    counter = torch.zeros(2, dtype=torch.int32)
    _count[(3,)](counter, OFFSET=1)
    assert counter.tolist() == [0, 3]
    with pytest.raises(InterpreterError, match="an atomic operation"):
        _count[(1,)](counter, OFFSET=2)


def test_masked_off_lanes_and_strided_views_pass():
    x = torch.arange(24.0).view(3, 8)[:, ::2]   # 12 elements, spread over the first 23 floats
    y = torch.zeros(8)
    # reads floats 16..22 of x's span; lane 7 (float 23, past the last element) is masked off
    _shifted_copy[(1,)](x, y, 23, SHIFT=16, N=8, MASKED=True)
    assert y.tolist() == [16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 0.0]


@triton.jit
def _reversed_through(X, Y, N: tl.constexpr, BARRIER: tl.constexpr, OTHER: tl.constexpr):
    """Y = X, then X = Y reversed: each element loaded back was stored by another lane. With
    OTHER, program 1 reads what program 0 stored instead (a launch's programs are ordered by
    other means: launches, the grid barrier)."""
    i = tl.arange(0, N)
    pid = tl.program_id(0)
    if OTHER:
        if pid == 0:
            tl.store(Y + i, tl.load(X + i))
        else:
            tl.store(X + i, tl.load(Y + N - 1 - i))
    else:
        tl.store(Y + i, tl.load(X + i))
        if BARRIER:
            tl.debug_barrier()
        tl.store(X + i, tl.load(Y + N - 1 - i))


def test_a_load_of_its_own_stores_needs_a_barrier_between():
    x, y = torch.arange(8.0), torch.zeros(8)
    with pytest.raises(InterpreterError, match=r"a load of 8 element\(s\) that program "
                                               r"\(0, 0, 0\) stored itself since its last barrier"):
        _reversed_through[(1,)](x, y, N=8, BARRIER=False, OTHER=False)
    x = torch.arange(8.0)
    _reversed_through[(1,)](x, y, N=8, BARRIER=True, OTHER=False)
    assert x.tolist() == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    x = torch.arange(8.0)
    _reversed_through[(2,)](x, y, N=8, BARRIER=False, OTHER=True)
    assert x.tolist() == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]


@triton.jit
def _in_place(X, N: tl.constexpr, REVERSED: tl.constexpr, BARRIER: tl.constexpr):
    i = tl.arange(0, N)
    if REVERSED:   # each lane stores over what another lane loaded
        v = tl.load(X + N - 1 - i)
    else:          # each lane stores over what it loaded itself
        v = tl.load(X + i) + 1.0
    if BARRIER:
        tl.debug_barrier()
    tl.store(X + i, v)


def test_a_store_over_another_lanes_load_needs_a_barrier_between():
    x = torch.arange(4.0)
    _in_place[(1,)](x, N=4, REVERSED=False, BARRIER=False)   # an update of a tile in place
    assert x.tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(InterpreterError, match=r"a store of 4 element\(s\) that program "
                                               r"\(0, 0, 0\) loaded in other lanes"):
        _in_place[(1,)](x, N=4, REVERSED=True, BARRIER=False)
    _in_place[(1,)](x, N=4, REVERSED=True, BARRIER=True)
    assert x.tolist() == [4.0, 3.0, 2.0, 1.0]
