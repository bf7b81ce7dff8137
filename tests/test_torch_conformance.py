"""torch's own module test inputs for nn.LSTM, GRU, RNN and their cells, run on from_torch models.

The cases are the ones PyTorch's test suite runs for these modules
(torch.testing._internal.common_modules.module_db): every constructor setting and input it
lists, in float32 and float64, on each of gatedrnn's CPU backends, and again as packed batches.
Outputs, final states and the gradients of inputs, states and parameters must match torch.nn's.
Its error inputs must raise the exception type torch.nn raises.
"""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence
from torch.utils._pytree import tree_leaves

import gatedrnn

_frozen = torch.backends.flags_frozen()
common_modules = pytest.importorskip("torch.testing._internal.common_modules",
                                     reason="torch's test helpers need expecttest")
# Importing torch's test helpers freezes torch.backends' flags for the whole process (a rule of
# torch's own suite); the other tests of this worker set them, so thaw them again.
if not _frozen:
    torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True

MODULES = (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell)
INFOS = {info.module_cls.__name__: info for info in common_modules.module_db
         if info.module_cls in MODULES}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def _inputs(name, dtype):
    info = INFOS[name]
    return info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True,
                                   training=True)


CASES = [(name, d, i) for name in INFOS for d in DTYPES
         for i in range(len(_inputs(name, DTYPES[d])))]


def test_torch_lists_cases_for_every_module():
    assert set(INFOS) == {m.__name__ for m in MODULES}
    assert len(CASES) >= 150


def _pair(name, dtype, case):
    torch.manual_seed(0)
    ctor = case.constructor_input
    theirs = INFOS[name].module_cls(*ctor.args, **ctor.kwargs).to(dtype)
    return theirs, gatedrnn.from_torch(theirs)


def _leaves(tree):
    """The floating-point tensors of nested inputs or outputs (a PackedSequence's data)."""
    return [a for a in tree_leaves(tree) if isinstance(a, torch.Tensor) and a.is_floating_point()]


def _fresh(args):
    """The inputs again, as new leaves that take gradients."""
    return torch.utils._pytree.tree_map(
        lambda a: a.detach().clone().requires_grad_(a.is_floating_point())
        if isinstance(a, torch.Tensor) else a, args)


def _run(module, args, cotangents=None):
    """Outputs; with cotangents also the input gradients and the parameter gradients (these in
    torch.nn's layout)."""
    args = _fresh(args)
    outputs = _leaves(module(*args))
    if cotangents is None:
        return outputs
    params = dict(module.named_parameters())
    inputs = _leaves(args)
    grads = torch.autograd.grad(outputs, inputs + list(params.values()), cotangents,
                                allow_unused=True)
    d_params = dict(zip(params, grads[len(inputs):]))
    if not isinstance(module, MODULES):   # gatedrnn's gradients → torch.nn's layout
        holder = copy.deepcopy(module)
        with torch.no_grad():
            for k, p in holder.named_parameters():
                p.copy_(d_params[k])
        d_params = dict(holder.to_torch().named_parameters())
    return outputs, grads[:len(inputs)], d_params


def _compare(ours, theirs, args):
    expected = _run(theirs, args)
    cotangents = [torch.randn_like(o) for o in expected]
    out, d_in, d_params = _run(ours, args, cotangents)
    ref_out, ref_d_in, ref_d_params = _run(theirs, args, cotangents)
    # torch.testing's default tolerances, but a relative 1e-5 in float32: weight gradients
    # are sums over steps and batch that gatedrnn adds in another order than torch.nn.
    close = dict(rtol=1e-5, atol=1e-5) if out[0].dtype == torch.float32 else {}
    for a, b in zip(out, ref_out):
        torch.testing.assert_close(a, b, **close)
    for a, b in zip(d_in, ref_d_in):
        torch.testing.assert_close(a, b, **close)
    assert d_params.keys() == ref_d_params.keys()
    for k, b in ref_d_params.items():
        torch.testing.assert_close(d_params[k].detach(), b.detach(), **close,
                                   msg=lambda m: f"{k}: {m}")


@pytest.mark.parametrize("name,d,index", CASES, ids=[f"{n}-{d}-{i}" for n, d, i in CASES])
def test_module_db_case(name, d, index):
    dtype = DTYPES[d]
    case = _inputs(name, dtype)[index]
    theirs, ours = _pair(name, dtype, case)
    args = case.forward_input.args
    backends = ("cpu", "loop", "reference") if hasattr(ours, "num_layers") else (None,)
    for backend in backends:
        if backend is not None:
            ours.backend = backend
        _compare(ours, theirs, args)


def _packed(args, batch_first):
    """The unbatched case as a packed batch of three sequences of different lengths."""
    x, *rest = args
    T = x.shape[0]
    g = torch.Generator().manual_seed(1)
    seqs = [x, torch.randn(x.shape, generator=g, dtype=x.dtype)[:max(T - 1, 1)],
            torch.randn(x.shape, generator=g, dtype=x.dtype)[:1]]
    packed = pack_sequence(seqs, enforce_sorted=False)
    states = [torch.utils._pytree.tree_map(
        lambda s: torch.stack([s, 0.5 * s, -s], 1) if isinstance(s, torch.Tensor) else s, r)
        for r in rest]
    return (packed, *states)


@pytest.mark.parametrize("name,d,index", [c for c in CASES if c[0] in ("LSTM", "GRU", "RNN")],
                         ids=[f"{n}-{d}-{i}" for n, d, i in CASES if n in ("LSTM", "GRU", "RNN")])
def test_module_db_case_as_a_packed_batch(name, d, index):
    dtype = DTYPES[d]
    case = _inputs(name, dtype)[index]
    theirs, ours = _pair(name, dtype, case)
    args = _packed(case.forward_input.args, theirs.batch_first)
    for backend in ("cpu", "loop"):
        ours.backend = backend
        _compare(ours, theirs, args)


def _error_inputs():
    found = []
    for name, info in INFOS.items():
        if info.module_error_inputs_func is None:
            continue
        for i, e in enumerate(info.module_error_inputs_func(
                info, device="cpu", dtype=torch.float32, requires_grad=False, training=True)):
            found.append(pytest.param(name, e, id=f"{name}-{i}"))
    return found


@pytest.mark.parametrize("name,error", _error_inputs())
def test_module_db_error_input_raises_torchs_exception_type(name, error):
    ctor = error.module_error_input.constructor_input
    ours_class = getattr(gatedrnn, name)
    if error.error_on.name == "CONSTRUCTION_ERROR":
        with pytest.raises(error.error_type):
            ours_class(*ctor.args, **ctor.kwargs)
        return
    theirs = INFOS[name].module_cls(*ctor.args, **ctor.kwargs)
    ours = gatedrnn.from_torch(theirs)
    forward = error.module_error_input.forward_input
    with pytest.raises(error.error_type):
        ours(*forward.args, **forward.kwargs)


BAD = {   # inputs torch.nn refuses, each with the exception torch.nn raises
    "input of another dtype": lambda m: (torch.randn(5, 2, 3, dtype=torch.float64),),
    "state of another dtype": lambda m: (torch.randn(5, 2, 3), _state(m, 2, torch.float64)),
    "state of another batch": lambda m: (torch.randn(5, 2, 3), _state(m, 3)),
    "input of another size": lambda m: (torch.randn(5, 2, 2),),
    "input of 4 dimensions": lambda m: (torch.randn(5, 2, 2, 3),),
}


def _state(module, batch, dtype=torch.float32):
    s = torch.randn(1, batch, 4, dtype=dtype)
    return (s, s.clone()) if isinstance(module, nn.LSTM) else s


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN], ids=lambda k: k.__name__)
def test_bad_inputs_raise_an_exception_of_torchs_type(kind, bad):
    theirs = kind(3, 4)
    ours = gatedrnn.from_torch(theirs)
    args = BAD[bad](theirs)
    with pytest.raises(Exception) as raised:
        theirs(*args)
    with pytest.raises(type(raised.value)):
        ours(*args)
