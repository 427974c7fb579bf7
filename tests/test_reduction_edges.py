"""Reductions at the edges (issue 7): broadcast and strided inputs read in place, PyTorch's
values and gradients at inf, NaN, overflow, empty and 0-d inputs, and indices saved for
backward that were changed behind autograd's back.

``ones(1).expand(2**31 + 5).sum()`` used to copy its input (8.6 GB); the reductions now
read any layout through its strides, so the huge cases below run in a child process that
reports its peak memory. Where PyTorch's float32 accumulation overflows or rounds (the mean
of ``[3e38, 3e38]`` is inf there), nbgrad's float64 accumulators give the exact answer:
those cases are checked against the exact values instead, and say so.
"""
import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest

import nbgrad
from helpers import to_numpy
from nbgrad.ops import reduce as kernels
from nbgrad.ops.elementwise import PARALLEL_MIN

inf, nan = math.inf, math.nan


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _child(code):
    """Run ``code`` in a fresh interpreter; its last line of output, parsed as JSON."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- broadcast and strided inputs are read in place ---------------------------------------------------------
_HUGE = """
    import json, resource, {lib} as T
    n = 2**31 + 5
    leaf = T.ones(1, requires_grad=True)
    leaf.expand(n).sum().backward()        # the backward sums an expanded gradient too
    col = T.tensor([[1.0], [2.0]]).expand(2, n)
    out = [T.ones(1).expand(n).sum().item(), T.ones(1).expand(n).mean().item(), col.sum(1).tolist(),
           leaf.grad.tolist()]
    if {extremes}:                         # PyTorch copies here (16 GB, a minute): nbgrad only
        out += [T.tensor([[0.0], [1.0]]).expand(2, n).argmax().item(), col.amax().item()]
    # this process's own peak: VmHWM (ru_maxrss keeps the forking parent's peak across exec)
    peak = next((int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")),
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps([out, peak]))
"""


def test_huge_broadcast_inputs_are_reduced_in_place(torch):
    ours, peak = _child(_HUGE.format(lib="nbgrad", extremes=True))
    theirs, _ = _child(_HUGE.format(lib="torch", extremes=False))
    assert ours[:4] == theirs
    n = 2**31 + 5
    assert ours[4:] == [n, 2.0]                # a flat index past 2**31: int64 all the way
    assert peak < 1024 * 1024, f"peak RSS {peak / 1024:.0f} MB: the 8.6 GB input was materialised"


def _views(T, base):
    """Views that are no contiguous block: sliced, strided rows, transposed slices, broadcast.
    (No std along a broadcast dim below: its std is 0, and PyTorch's, rounded to about 1e-17,
    gives a gradient of order 1 where nbgrad's is 0.)"""
    return {
        "sliced": base[:, 1::2],
        "rows": base[::2],
        "transposed slice": base[:, ::2].t(),
        "broadcast column": base[:, :1].expand(base.shape[0], 7),
        "broadcast row": base[:1].expand(5, base.shape[1]),
        "broadcast middle": base[:, ::3].unsqueeze(1).expand(base.shape[0], 3, -1),
    }


_OPS = {
    "sum": lambda t: t.sum(), "sum(1)": lambda t: t.sum(1), "mean(0)": lambda t: t.mean(0),
    "prod": lambda t: t.prod(), "prod(1)": lambda t: t.prod(1),
    "var": lambda t: t.var(), "var(1)": lambda t: t.var(1), "std": lambda t: t.std(correction=0),
    "logsumexp(0)": lambda t: t.logsumexp(0), "logsumexp(1)": lambda t: t.logsumexp(1),
    "amax(1)": lambda t: t.amax(1), "amin": lambda t: t.amin(), "max": lambda t: t.max(),
    "max(0)": lambda t: t.max(0)[0], "min(1)": lambda t: t.min(1)[0],
    "softmax(1)": lambda t: t.softmax(1), "log_softmax(0)": lambda t: t.log_softmax(0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("view", list(_views(nbgrad, nbgrad.zeros(4, 6))))
def test_strided_and_broadcast_views_match_torch(torch, view, dtype):
    base = np.random.default_rng(0).uniform(0.5, 1.5, (6, 8)).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    for name, op in _OPS.items():
        results = []
        for T in (torch, nbgrad):
            leaf = T.tensor(base, requires_grad=True)
            y = op(_views(T, leaf * 1)[view])
            y.backward(T.tensor(np.random.default_rng(1).uniform(-1, 1, tuple(y.shape)).astype(dtype)))
            results.append((to_numpy(y), to_numpy(leaf.grad)))
        for ours, theirs in zip(*results):
            np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-6, err_msg=name)
    a, b = _views(nbgrad, nbgrad.tensor(base))[view], _views(torch, torch.tensor(base))[view]
    for index in (lambda t: t.max(0).indices, lambda t: t.min(-1).indices, lambda t: t.argmax(),
                  lambda t: t.argmin(1)):
        assert np.array_equal(to_numpy(index(a)), to_numpy(index(b)))


@pytest.mark.parametrize("view", ["sliced", "rows", "transposed slice", "broadcast"])
def test_large_strided_views_match_torch_on_the_parallel_paths(torch, view):
    """Big enough for the parallel kernels, whose reduced ranges are split among threads."""
    base = np.random.default_rng(2).standard_normal((700, 1300)).astype(np.float32)
    pick = {"sliced": lambda t: t[:, ::2], "rows": lambda t: t[::2], "transposed slice": lambda t: t[:, :900].t(),
            "broadcast": lambda t: t[:2, ::5].unsqueeze(1).expand(2, 1000, 260)}[view]
    a, b = pick(nbgrad.from_numpy(base)), pick(torch.from_numpy(base))
    assert a.numel() >= PARALLEL_MIN
    for dims in (None, 0, -1):
        for op in ("sum", "mean", "var", "std", "amax", "amin", "logsumexp", "argmax", "argmin"):
            if dims is None and op == "logsumexp":
                continue
            ours = getattr(a, op)() if dims is None else getattr(a, op)(dims)
            theirs = getattr(b, op)() if dims is None else getattr(b, op)(dims)
            if op.startswith("arg"):
                assert np.array_equal(to_numpy(ours), to_numpy(theirs)), (op, dims)
            else:
                np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=2e-5, atol=1e-5,
                                           err_msg=f"{op} {dims}")
        if dims is not None:
            for op in ("max", "min"):
                ours, theirs = getattr(a, op)(dims), getattr(b, op)(dims)
                assert np.array_equal(to_numpy(ours.indices), to_numpy(theirs.indices)), (op, dims)


def test_strided_views_are_not_copied():
    """A reduction of an 8 MB sliced view allocates only its (small) result."""
    x = nbgrad.from_numpy(np.random.default_rng(3).uniform(0.5, 1.5, (1000, 2000)))[:, ::2]
    ops = [lambda: x.sum(1), lambda: x.mean(0), lambda: x.var(1), lambda: x.std(), lambda: x.logsumexp(1),
           lambda: x.amax(0), lambda: x.max(1), lambda: x.argmax(), lambda: x.prod(1), lambda: x.min(0),
           lambda: x.t().sum(0), lambda: x[:, :1].expand(1000, 1000).sum(1)]
    for op in ops:
        op()                                   # compiles first: the compiler's memory is not the op's
        tracemalloc.start()
        try:
            op()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 200_000, f"{peak} bytes allocated: the input was copied"


# -- values and gradients at the edges, against PyTorch --------------------------------------------------------
EDGE_DATA = {
    "inf,inf": [inf, inf], "-inf,-inf": [-inf, -inf], "inf,-inf": [inf, -inf],
    "inf,1": [inf, 1.0], "-inf,1": [-inf, 1.0], "nan,1": [nan, 1.0], "nan,inf": [nan, inf], "0,0": [0.0, 0.0],
    "0,2": [0.0, 2.0], "0,inf": [0.0, inf], "0,nan": [0.0, nan], "0,0,inf": [0.0, 0.0, inf], "3,3": [3.0, 3.0],
    "large": [100.0, 1000.0], "one": [5.0], "0-d": 5.0, "0-d inf": inf, "0-d -inf": -inf, "0-d nan": nan,
    "0-d 0": 0.0, "empty": [], "empty 2x0": [[], []], "2x2 inf": [[inf, 1.0], [-inf, -inf]],
    "2x2 zeros": [[0.0, 2.0], [3.0, 0.0]], "2x2 nan": [[nan, 1.0], [2.0, 3.0]],
}

EDGE_OPS = {
    "sum": lambda t: t.sum(), "mean": lambda t: t.mean(), "mean(0)": lambda t: t.mean(0),
    "prod": lambda t: t.prod(), "prod(0)": lambda t: t.prod(0), "prod(-1)": lambda t: t.prod(-1),
    "var": lambda t: t.var(), "var(0)": lambda t: t.var(0), "var c0": lambda t: t.var(correction=0),
    "var c2": lambda t: t.var(correction=2), "var(0) c2": lambda t: t.var(0, correction=2),
    "var c3": lambda t: t.var(correction=3), "std": lambda t: t.std(), "std(0)": lambda t: t.std(0),
    "std c0": lambda t: t.std(correction=0), "std c2": lambda t: t.std(correction=2),
    "std(0) c3": lambda t: t.std(0, correction=3),
    "logsumexp(0)": lambda t: t.logsumexp(0), "logsumexp(-1)": lambda t: t.logsumexp(-1),
    "amax": lambda t: t.amax(), "amin(0)": lambda t: t.amin(0), "max": lambda t: t.max(), "min": lambda t: t.min(),
    "max(0)": lambda t: t.max(0), "min(-1)": lambda t: t.min(-1), "argmax": lambda t: t.argmax(),
    "argmin(0)": lambda t: t.argmin(0), "softmax(0)": lambda t: t.softmax(0),
    "log_softmax(-1)": lambda t: t.log_softmax(-1),
}


def _edge_outcome(T, data, op, dtype):
    """(value, indices, gradient) of ``op`` on ``data``, or the error's type and first line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # degrees of freedom <= 0
            t = T.tensor(data, dtype=getattr(T, dtype), requires_grad=True)
            y = op(t)
            idx = None
            if isinstance(y, tuple):
                y, idx = y
            if y.requires_grad:
                y.backward(T.ones_like(y))
        return ("values", to_numpy(y), None if idx is None else to_numpy(idx),
                None if t.grad is None else to_numpy(t.grad))
    except Exception as e:                      # noqa: BLE001  (compared with torch's)
        return ("raised", type(e).__name__, str(e).split("\n")[0])


def _same(ours, theirs):
    assert ours[0] == theirs[0], f"{ours} vs {theirs}"
    if ours[0] == "raised":
        assert ours == theirs
        return
    for a, b in zip(ours[1:], theirs[1:]):
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, f"{a!r} vs {b!r}"
        # the gradient of softmax's sum is 0 up to rounding, which differs
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-6, atol=1e-7)
        assert np.array_equal(np.signbit(a[np.isinf(a)]), np.signbit(b[np.isinf(b)])), f"{a!r} vs {b!r}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data", list(EDGE_DATA))
def test_edge_values_and_gradients_match_torch(torch, data, dtype):
    for name, op in EDGE_OPS.items():
        ours = _edge_outcome(nbgrad, EDGE_DATA[data], op, dtype)
        theirs = _edge_outcome(torch, EDGE_DATA[data], op, dtype)
        try:
            _same(ours, theirs)
        except AssertionError as e:
            raise AssertionError(f"{name} of {data} ({dtype}): {e}") from None


def _grad_outcome(T, data, op, g, create_graph):
    """(value, gradient) of ``op`` for an incoming gradient filled with ``g``, or the error."""
    try:
        x = T.tensor(data, dtype=T.float64, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # degrees of freedom <= 0
            y = op(x)
        y = y[0] if isinstance(y, tuple) else y
        gx, = T.autograd.grad(y, x, T.full(tuple(y.shape), g, dtype=T.float64, requires_grad=create_graph),
                              create_graph=create_graph)
        return ("values", to_numpy(y), None, to_numpy(gx))
    except Exception as e:                      # noqa: BLE001  (compared with torch's)
        return ("raised", type(e).__name__, str(e).split("\n")[0])


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("g", [inf, -inf, nan])
def test_infinite_incoming_gradients_match_torch(torch, g, create_graph):
    """Elements a reduction did not pick get exactly 0, not ``g * 0`` (NaN), where PyTorch's
    backward scatters or fills (max(dim), max()); amax spreads ``mask * (g / count)`` (NaN)."""
    for data in ([[1.0, 2.0], [3.0, 3.0]], [[0.5, 2.0], [3.0, 1.0]], [[nan, 2.0], [3.0, 1.0]]):
        for name, op in EDGE_OPS.items():
            if name.startswith("arg") or (create_graph and name.startswith("prod") and 0 in np.ravel(data)):
                continue                        # a recorded prod backward with zeros is not supported
            try:
                _same(_grad_outcome(nbgrad, data, op, g, create_graph), _grad_outcome(torch, data, op, g, create_graph))
            except AssertionError as e:
                raise AssertionError(f"{name} of {data}: {e}") from None


def test_var_and_std_without_degrees_of_freedom_follow_torch(torch):
    """Over all of x with N <= correction, PyTorch's gradient is inf, NaN where x equals its mean
    (its own rule, not 2 / (N - correction)); along a dim it keeps 2 / (N - correction)."""
    for T in (nbgrad, torch):
        x = T.tensor([0.0, 1.0, 2.0], requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x.var(correction=3).backward()
        assert to_numpy(x.grad).tolist()[0] == inf and math.isnan(to_numpy(x.grad)[1]), T.__name__
        x.grad = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x.var(0, correction=4).backward()
        assert to_numpy(x.grad).tolist() == [2.0, 0.0, -2.0], T.__name__


def test_prod_gradient_follows_torch(torch):
    """g * (prod / x) where x has no zero (so inf / inf is NaN), the exact product of the others
    where it has, and 0 for a whole-tensor prod with several zeros."""
    cases = [[inf, 1.0], [inf, inf], [nan, 2.0], [0.0, inf], [[0.0, 2.0], [inf, 3.0]], [0.0, 0.0, inf], [2.0, 0.0, 3.0]]
    for data in cases:
        for op in (lambda t: t.prod(), lambda t: t.prod(-1)):
            _same(_edge_outcome(nbgrad, data, op, "float64"), _edge_outcome(torch, data, op, "float64"))


def test_float32_accumulations_do_not_overflow_where_torch_does():
    """PyTorch sums float32 in float32: the mean of [3e38, 3e38] is inf there, its variance inf.
    nbgrad accumulates in float64 and gives the exact answers (and gradients)."""
    for data, mean, var, std in (([3e38, 3e38], 3e38, 0.0, 0.0), ([-3e38, -3e38], -3e38, 0.0, 0.0),
                                 ([1e30, 1e30, 1e30], 1e30, 0.0, 0.0), ([3e38, -3e38], 0.0, inf, inf)):
        x = nbgrad.tensor(data, requires_grad=True)
        assert x.mean().item() == np.float32(mean)
        assert x.var().item() == np.float32(var) and x.std().item() == np.float32(std)
        x.var().backward()
        assert np.all(np.isfinite(x.grad.numpy())) == (var == 0.0)
    # the float32 variance overflows, its root does not (PyTorch gives 3e38 too)
    x = nbgrad.tensor([3e38, -3e38], requires_grad=True)
    y = x.std(correction=0)
    y.backward()
    assert y.item() == np.float32(3e38)
    np.testing.assert_allclose(x.grad.numpy(), [0.5, -0.5], rtol=1e-6)


# -- indices saved for backward, changed behind autograd's back --------------------------------------------
def _max_changed(value, dim=1, keepdim=False, how="data"):
    def program(T):
        x = T.arange(6.0).reshape(2, 3).requires_grad_()
        v, i = x.max(dim, keepdim=keepdim)
        if how == "data":
            i.data.reshape(-1)[0] = value
        else:
            i.data = T.tensor(value)
        (v * T.tensor(2.0)).sum().backward()
        return x.grad
    return program


CHANGED = {
    "10**9": _max_changed(10**9), "3": _max_changed(3), "-1": _max_changed(-1), "-4": _max_changed(-4),
    "keepdim 7": _max_changed(7, keepdim=True), "dim 0, 2": _max_changed(2, dim=0), "in range": _max_changed(0),
}


def test_changed_indices_raise_torch_error_in_a_child_process(torch):
    """max(dim)'s backward puts the gradient at the saved indices: one changed through .data
    to point outside the dim raises PyTorch's error instead of writing there."""
    code = f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        import nbgrad
        from test_reduction_edges import CHANGED, _outcome
        print(json.dumps({{k: _outcome(p, nbgrad) for k, p in CHANGED.items()}}))
    """
    ours = _child(code)
    for name, program in CHANGED.items():
        assert ours[name] == _outcome(program, torch), name


def _outcome(program, T):
    try:
        grad = program(T)
    except Exception as e:                      # noqa: BLE001  (compared with torch's)
        return ["raised", type(e).__name__, str(e).split("\n")[0]]
    return ["values", None if grad is None else to_numpy(grad).tolist()]


def test_zero_d_changed_index(torch):
    for T in (nbgrad, torch):
        x = T.tensor(3.0, requires_grad=True)
        v, i = x.max(0)
        i.data.fill_(5)
        with pytest.raises(RuntimeError, match="index 5 is out of bounds for dimension 0 with size 1"):
            v.backward()


@pytest.mark.parametrize("replacement", [[0], [0, 1, 2, 0, 1], [0.0, 1.0]])
def test_replaced_indices_raise(replacement):
    """``.data =`` of another shape or dtype: a clear error, never a read past the array."""
    with pytest.raises(RuntimeError, match="indices saved for backward were given .data of another shape or dtype"):
        _max_changed(replacement, how="replace")(nbgrad)


@pytest.mark.parametrize("op", ["amax", "prod", "var", "std", "logsumexp", "softmax"])
def test_replaced_saved_tensors_raise(torch, op):
    """A saved input (or output) given .data of another shape: PyTorch raises too (its errors
    vary), nbgrad says what happened instead of reading past the new array."""
    for T in (torch, nbgrad):
        x = T.arange(6.0).reshape(2, 3).requires_grad_()
        h = x * 1
        y = getattr(h, op)(1)
        (y if op == "softmax" else h).data = T.zeros(7)
        with pytest.raises((RuntimeError, IndexError)):
            y.sum().backward()


def test_index_backward_kernel_checks_every_index():
    g = np.array([1.0, 2.0, 3.0])
    for bad in (-1, 3, 10**12):
        with pytest.raises(RuntimeError, match=f"index {bad} is out of bounds for dimension 1 with size 3"):
            kernels.index_backward(g.reshape(3, 1), np.array([0, bad, 2]), (3, 3), 1, np.float64)
    gx = kernels.index_backward(g.reshape(3, 1), np.array([0, 2, 1]), (3, 3), 1, np.float64)
    assert gx.tolist() == [[1, 0, 0], [0, 0, 2], [0, 3, 0]]


# -- errors on empty inputs and missing dims, as PyTorch words them ------------------------------------------
ERRORS = {
    "amax(-1)": lambda T: T.zeros(2, 0).amax(-1), "amax((-1, 0))": lambda T: T.zeros(0, 0).amax((-1, 0)),
    "amin((1, 0))": lambda T: T.zeros(0, 0).amin((1, 0)), "amax(-3)": lambda T: T.zeros(0, 2, 3).amax(-3),
    "amax()": lambda T: T.zeros(2, 0).amax(), "max(-1)": lambda T: T.zeros(2, 0).max(-1),
    "argmin(-1)": lambda T: T.zeros(2, 0).argmin(-1), "argmax()": lambda T: T.zeros(0).argmax(),
    "logsumexp(None)": lambda T: T.ones(2, 3).logsumexp(dim=None),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_match_torch(torch, name):
    assert _outcome(lambda T: ERRORS[name](T), nbgrad) == _outcome(lambda T: ERRORS[name](T), torch)
