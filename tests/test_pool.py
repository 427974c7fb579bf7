"""Pooling against PyTorch: values, indices, gradients, second derivatives, node names, error
texts, modules, and float64 finite-difference checks of first and second derivatives."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
import nbgrad.nn.functional as F
from nbgrad.nn import _pool
from helpers import assert_close, random_array, same_error
from nbgrad.autograd import gradcheck, gradgradcheck


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def check(torch, name, x, seed=0, **kw):
    """``name`` in both libraries: output (and indices), node names, the input gradient of a
    random output gradient, and the node of that gradient taken with ``create_graph``."""
    xn, xt = nbgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yn, yt = getattr(F, name)(xn, **kw), getattr(torch.nn.functional, name)(xt, **kw)
    if isinstance(yt, tuple):
        assert_close(yn[1], yt[1])
        yn, yt = yn[0], yt[0]
    t = TOL[x.dtype.type]
    assert_close(yn.detach(), yt.detach(), **t)
    assert yn.grad_fn.name() == yt.grad_fn.name()
    g = random_array(tuple(yt.shape), x.dtype, seed + 1)
    yn.backward(nbgrad.tensor(g))
    yt.backward(torch.tensor(g))
    assert_close(xn.grad, xt.grad, **t)


MAX_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
    dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True),
    dict(kernel_size=2, ceil_mode=True, return_indices=True),
    dict(kernel_size=(3, 1), stride=1, return_indices=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", MAX_CASES)
@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (3, 7, 7), (1, 1, 5, 6)])
def test_max_pool2d(torch, kw, shape, dtype):
    check(torch, "max_pool2d", random_array(shape, dtype, 0), **kw)


AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), divisor_override=4),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", AVG_CASES)
@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (3, 7, 7)])
def test_avg_pool2d(torch, kw, shape, dtype):
    check(torch, "avg_pool2d", random_array(shape, dtype, 0), **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [(3, 4), (4, 4), (1, 5), (9, 8), (None, 3), 5, (13, 11)])
def test_adaptive_avg_pool2d(torch, size, dtype):
    check(torch, "adaptive_avg_pool2d", random_array((2, 3, 9, 8), dtype, 0), output_size=size)


def test_adaptive_avg_pool2d_to_one_is_the_mean(torch):
    check(torch, "adaptive_avg_pool2d", random_array((2, 3, 5, 4), np.float64, 0), output_size=1)


@pytest.mark.parametrize("name,kw", [
    ("max_pool1d", dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool1d", dict(kernel_size=2, dilation=2, ceil_mode=True, return_indices=True)),
    ("avg_pool1d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("avg_pool1d", dict(kernel_size=2, ceil_mode=True)),
    ("adaptive_avg_pool1d", dict(output_size=4)),
])
@pytest.mark.parametrize("shape", [(2, 3, 9), (3, 8)])
def test_1d_forms(torch, name, kw, shape):
    check(torch, name, random_array(shape, np.float64, 0), **kw)


@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)), p=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), ceil=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_max_and_avg_pool_random_options(torch, h, w, k, s, p, d, ceil, seed):
    if any(pi > ((ki - 1) * di + 1) // 2 for pi, ki, di in zip(p, k, d)):
        return                                              # padding over half the window: an error case
    x = random_array((2, 2, h, w), np.float64, seed)
    try:
        torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d, ceil)
    except RuntimeError:                                    # output too small: tested below
        return
    out_hw = _pool._out_hw(nbgrad.tensor(x), k, s, p, d, ceil)
    if _pool._empty_windows((h, w), out_hw, k, s, p, d) is None:    # PyTorch writes those past the plane: below
        check(torch, "max_pool2d", x, seed, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil,
              return_indices=True)
    if all(pi <= ki // 2 for pi, ki in zip(p, k)):
        try:
            torch.nn.functional.avg_pool2d(torch.tensor(x), k, s, p, ceil)
        except RuntimeError:
            return
        check(torch, "avg_pool2d", x, seed, kernel_size=k, stride=s, padding=p, ceil_mode=ceil,
              count_include_pad=bool(seed % 2))


def test_max_pool_propagates_nan_and_picks_the_first_maximum(torch):
    x = np.array([[[[1.0, 3.0, 3.0, np.nan], [0.0, 2.0, -1.0, 5.0]]]])
    check(torch, "max_pool2d", x, kernel_size=2, return_indices=True)


@pytest.mark.parametrize("name,kw", [("max_pool2d", dict(kernel_size=3, stride=2, padding=1, dilation=2)),
                                     ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
                                     ("adaptive_avg_pool2d", dict(output_size=(3, 4)))])
def test_second_derivatives_as_torch(torch, name, kw):
    """The gradient taken with ``create_graph`` is a recorded op whose own gradient is the
    forward op again; through a square it reaches the input as in PyTorch."""
    x = random_array((2, 2, 6, 7), np.float64, 0)
    grads = []
    for lib in (nbgrad, torch):
        t = lib.tensor(x, requires_grad=True)
        y = getattr(lib.nn.functional, name)(t, **kw)
        (g,) = lib.autograd.grad((y * y).sum(), t, create_graph=True)
        (g * g).sum().backward()
        grads.append(t.grad)
    assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda x: F.max_pool2d(x, 3, 2, 1, 2),
    lambda x: F.max_pool2d(x, 2, ceil_mode=True),
    lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
    lambda x: F.avg_pool2d(x, 2, divisor_override=3),
    lambda x: F.adaptive_avg_pool2d(x, (4, 3)),
    lambda x: F.max_pool1d(x.reshape(2, 2, -1), 3, 2, 1),
    lambda x: F.avg_pool1d(x.reshape(2, 2, -1), 3, 2, 1),
])
def test_gradcheck(fn):
    x = nbgrad.tensor(random_array((2, 2, 5, 6), np.float64, 3), requires_grad=True)
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


def test_saved_indices_changed_in_place_are_caught():
    x = nbgrad.tensor(random_array((1, 1, 4, 4), np.float64, 0), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    idx.add_(100)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


ERRORS = [
    lambda F, t: F.max_pool2d(t.randn(2, 3, 8, 8), 2, padding=2),
    lambda F, t: F.max_pool2d(t.randn(2, 3, 8, 8), 2, stride=0),
    lambda F, t: F.max_pool2d(t.randn(2, 3, 8, 8), 0),
    lambda F, t: F.max_pool2d(t.randn(2, 3, 8, 8), 0, 1),
    lambda F, t: F.max_pool2d(t.randn(2, 3, 8, 8), (2, 2, 2)),
    lambda F, t: F.max_pool2d(t.randn(2, 3, 8, 8), 2, dilation=0),
    lambda F, t: F.max_pool2d(t.randn(2, 3), 2),
    lambda F, t: F.max_pool2d(t.randn(1, 1, 1, 1), 2),
    lambda F, t: F.max_pool2d(t.randn(2, 3, 0, 4), 2),
    lambda F, t: F.avg_pool2d(t.randn(2, 3, 8, 8), 2, padding=2),
    lambda F, t: F.avg_pool2d(t.randn(2, 3, 8, 8), 2, stride=0),
    lambda F, t: F.avg_pool2d(t.randn(2, 3, 8, 8), 2, divisor_override=0),
    lambda F, t: F.avg_pool2d(t.randn(2, 3), 2),
    lambda F, t: F.avg_pool2d(t.randn(1, 1, 1, 1), 2),
    lambda F, t: F.avg_pool2d(t.randn(2, 0, 4, 4), 2),
    lambda F, t: F.adaptive_avg_pool2d(t.randn(2, 3, 4, 4), (1, 2, 3)),
]


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_errors_as_torch(torch, i):
    same_error(torch, lambda lib: ERRORS[i](lib.nn.functional, lib))


@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.MaxPool2d(2), (2, 3, 8, 8)),
    (lambda nn: nn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 8, 7)),
    (lambda nn: nn.AvgPool2d(3), (2, 3, 8, 8)),
    (lambda nn: nn.AvgPool2d(3, 2, 1, count_include_pad=False, divisor_override=None), (3, 8, 8)),
    (lambda nn: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 8, 8)),
    (lambda nn: nn.MaxPool1d(2), (2, 3, 8)),
    (lambda nn: nn.AvgPool1d(2), (2, 3, 8)),
    (lambda nn: nn.AdaptiveAvgPool1d(3), (2, 3, 8)),
])
def test_modules(torch, make, shape):
    ours, theirs = make(nbgrad.nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    x = random_array(shape, np.float32, 0)
    assert_close(ours(nbgrad.tensor(x)), theirs(torch.tensor(x)))


def test_max_pool_module_returns_indices(torch):
    x = random_array((1, 2, 6, 6), np.float32, 0)
    y, idx = nbgrad.nn.MaxPool2d(2, return_indices=True)(nbgrad.tensor(x))
    yt, idxt = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    assert_close(idx, idxt)
    assert_close(y, yt)


def test_saved_indices_replaced_through_data_are_refused():
    x = nbgrad.randn(2, 2, 6, 6, requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    idx.data = nbgrad.zeros(2, 2, 2, 2, dtype=nbgrad.int64)
    with pytest.raises(RuntimeError, match="replaced through .data"):
        y.sum().backward()
    idx.data = nbgrad.full((2, 2, 3, 3), 36, dtype=nbgrad.int64)           # right shape, index out of range
    with pytest.raises(RuntimeError, match="out of bounds"):
        y.sum().backward()


def test_a_window_wholly_in_the_padding_is_minus_inf_and_gets_no_gradient(torch):
    """PyTorch gives such a window -inf and an index one past its plane, and its backward then
    adds the gradient into the next plane's first element; nbgrad gives the same value and index
    and drops that gradient."""
    x = random_array((2, 1, 1, 1), np.float64, 3)
    kw = dict(kernel_size=(2, 1), stride=1, padding=(1, 0), dilation=(2, 1), return_indices=True)
    y_t, i_t = torch.nn.functional.max_pool2d(torch.tensor(x), **kw)
    xn = nbgrad.tensor(x, requires_grad=True)
    y_n, i_n = F.max_pool2d(xn, **kw)
    assert np.isneginf(y_n.detach().numpy()).all() and np.isneginf(y_t.numpy()).all()
    np.testing.assert_array_equal(i_n.numpy(), i_t.numpy())
    y_n.sum().backward()
    assert not xn.grad.numpy().any()
