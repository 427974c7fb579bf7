"""Shared test utilities: shape and array strategies, non-contiguous layouts, a bridge to
PyTorch, and a float64 central-difference gradient check that needs no reduction op."""
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import nbgrad

FLOATS = (np.float32, np.float64)
LAYOUTS = ("contiguous", "transposed", "sliced")

# float32 kernels (Numba's libm calls) and PyTorch's vectorised ones differ in the last bits
TOLERANCE = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}
# gradients of broadcast operands are sums, added up in another order than PyTorch's
GRAD_TOLERANCE = {np.dtype(np.float32): dict(rtol=1e-4, atol=1e-4), np.dtype(np.float64): dict(rtol=1e-9, atol=1e-10)}


def tol(dtype):
    return TOLERANCE[np.dtype(dtype)]


def grad_tol(dtype):
    return GRAD_TOLERANCE[np.dtype(dtype)]


# -- strategies --------------------------------------------------------------------------------
def shapes(min_dims=0, max_dims=4, max_side=4):
    """Shapes from 0-d up to 4-D; small sides so size-1 dims are common."""
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4):
    """Tuples of shapes that broadcast together (including 0-d and size-1 dims)."""
    return mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=0, max_dims=max_dims,
                                         max_side=max_side).map(lambda b: b.input_shapes)


dtypes = st.sampled_from(FLOATS)
layouts = st.sampled_from(LAYOUTS)
seeds = st.integers(0, 2**32 - 1)


def random_array(shape, dtype, seed, low=-2.0, high=2.0, away_from=None):
    """Uniform values in [low, high); ``away_from`` keeps them at least 0.1 from that point
    (for kinks and poles, where finite differences and tie rules would blur the test)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(low, high, shape)
    if away_from is not None:
        near = np.abs(a - away_from) < 0.1
        a = np.where(near, away_from + np.where(a >= away_from, 0.1, -0.1) + a - away_from, a)
    return np.asarray(a, dtype=dtype)


@st.composite
def arrays(draw, shape, dtype=None, low=-2.0, high=2.0, away_from=None):
    """A NumPy array of ``shape`` in a drawn float dtype and drawn memory layout."""
    dtype = dtype if dtype is not None else draw(dtypes)
    a = random_array(shape, dtype, draw(seeds), low, high, away_from)
    return with_layout(a, draw(layouts))


# -- layouts -----------------------------------------------------------------------------------
def noncontiguous(a, how="transposed"):
    """The same values in memory that is not C-contiguous.

    ``transposed``: a transposed copy transposed back (Fortran order); ``sliced``: every
    other element of an array twice as big in each dimension."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a
    if how == "transposed":
        return np.ascontiguousarray(a.T).T
    big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def with_layout(a, layout):
    return a if layout == "contiguous" else noncontiguous(a, layout)


def nb(a, requires_grad=False):
    """An nbgrad tensor over ``a``'s memory (layout kept)."""
    t = nbgrad.from_numpy(np.asarray(a))
    if requires_grad:
        t.requires_grad_(True)
    return t


# -- PyTorch -----------------------------------------------------------------------------------
def to_torch(x, requires_grad=None):
    """A torch tensor with the values of ``x`` (nbgrad tensor, array or number)."""
    import torch
    if isinstance(x, nbgrad.Tensor):
        if requires_grad is None:
            requires_grad = x.requires_grad
        x = x.detach().numpy()
    if not isinstance(x, np.ndarray):
        return x
    t = torch.from_numpy(np.array(x))
    return t.requires_grad_(True) if requires_grad else t


def to_numpy(x):
    if isinstance(x, nbgrad.Tensor):
        return np.array(x.detach().numpy())
    if hasattr(x, "detach"):                       # torch
        return x.detach().numpy()
    return np.asarray(x)


def assert_close(actual, expected, rtol=None, atol=None, check_dtype=True):
    """Values (and dtype, and shape) of nbgrad/torch/NumPy results agree."""
    assert (actual is None) == (expected is None), f"{actual!r} vs {expected!r}"
    if actual is None:
        return
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    if check_dtype:
        assert a.dtype == e.dtype, f"dtype {a.dtype} != {e.dtype}"
    t = tol(a.dtype) if a.dtype.kind == "f" else dict(rtol=0, atol=0)
    np.testing.assert_allclose(a, e, rtol=rtol if rtol is not None else t["rtol"],
                               atol=atol if atol is not None else t["atol"])


# -- gradients ---------------------------------------------------------------------------------
def analytic_grad(fn, inputs, grad_output):
    """Gradients of ``sum(fn(*inputs) * grad_output)`` by nbgrad's ``backward(gradient)``."""
    leaves = [nb(np.array(x), requires_grad=True) for x in inputs]
    out = fn(*leaves)
    out.backward(nbgrad.from_numpy(np.array(grad_output)))
    return [l.grad.numpy() if l.grad is not None else np.zeros_like(x) for l, x in zip(leaves, inputs)]


def numeric_grad(fn, inputs, grad_output, eps=1e-6):
    """Central differences of ``sum(fn(*inputs) * grad_output)`` in float64 (no nbgrad reduction)."""
    inputs = [np.array(x, dtype=np.float64, order="C") for x in inputs]     # so reshape(-1) is a view
    grad_output = np.asarray(grad_output, dtype=np.float64)

    def f():
        with nbgrad.no_grad():
            out = fn(*(nbgrad.from_numpy(x) for x in inputs))
        return float(np.sum(out.numpy() * grad_output))

    grads = []
    for x in inputs:
        g = np.zeros_like(x)
        flat, gflat = x.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            plus = f()
            flat[i] = old - eps
            minus = f()
            flat[i] = old
            gflat[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def check_grad(fn, *inputs, seed=0, rtol=1e-5, atol=1e-7):
    """nbgrad's gradients of ``fn`` at float64 ``inputs`` agree with central differences,
    for a random output gradient (so a wrong broadcast reduction cannot hide)."""
    inputs = [np.asarray(x, dtype=np.float64) for x in inputs]
    with nbgrad.no_grad():
        shape = fn(*(nbgrad.from_numpy(np.array(x)) for x in inputs)).shape
    grad_output = np.random.default_rng(seed).uniform(-1, 1, shape)
    for k, (a, n) in enumerate(zip(analytic_grad(fn, inputs, grad_output), numeric_grad(fn, inputs, grad_output))):
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol, err_msg=f"gradient of input {k}")
    assert nbgrad.autograd.gradcheck(fn, tuple(nb(np.array(x), requires_grad=True) for x in inputs))


# -- comparing nn/optim code run in both libraries --------------------------------------------
def same_error(torch, fn):
    """``fn(lib)`` fails the same way (type and message) in both libraries."""
    with pytest.raises(Exception) as expected:
        fn(torch)
    with pytest.raises(type(expected.value)) as got:
        fn(nbgrad)
    assert str(got.value).replace("nbgrad.", "torch.") == str(expected.value)


def copy_state(module, torch_module):
    """Load ``torch_module``'s parameters and buffers into ``module`` (through ``load_state_dict``)."""
    state = {k: nbgrad.tensor(v.detach().numpy().copy()) for k, v in torch_module.state_dict().items()}
    assert repr(module.load_state_dict(state)) == "<All keys matched successfully>"
    return module
