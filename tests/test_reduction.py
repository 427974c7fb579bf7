"""Reductions, softmax and log_softmax: values, indices and gradients against PyTorch and
against finite differences, over 0-d to 4-D shapes, int / tuple / negative / no dims,
keepdim, non-contiguous inputs, float32 and float64; accuracy of long sums; stability of
softmax at large inputs; PyTorch's errors."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
from nbgrad.autograd import gradcheck, gradgradcheck
from nbgrad.ops.elementwise import PARALLEL_MIN
from helpers import arrays, assert_close, check_grad, nb, random_array, seeds, shapes, to_numpy, to_torch, with_layout


def _torch():
    return pytest.importorskip("torch")


@st.composite
def dims_for(draw, ndim, allow_none=True, allow_tuple=True):
    """None, an int (possibly negative) or a tuple of distinct dims (possibly negative)."""
    kinds = (["none"] if allow_none else []) + ["int"] + (["tuple"] if allow_tuple and ndim else [])
    kind = draw(st.sampled_from(kinds))
    n = max(ndim, 1)
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-n, n - 1))
    picked = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in picked)


@st.composite
def cases(draw, min_dims=0, allow_none=True, allow_tuple=True):
    shape = draw(shapes(min_dims=min_dims))
    x = draw(arrays(shape))
    return x, draw(dims_for(len(shape), allow_none, allow_tuple)), draw(st.booleans())


def _backward_both(fn, x, seed=0):
    """Run ``fn(lib, tensor)`` in nbgrad and torch, backpropagate the same random gradient,
    return (nbgrad output, torch output, nbgrad grad, torch grad)."""
    torch = _torch()
    a, b = nb(x, requires_grad=True), to_torch(x, requires_grad=True)
    out_a, out_b = fn(nbgrad, a), fn(torch, b)
    g = random_array(tuple(out_b.shape), x.dtype, seed)
    out_a.backward(nbgrad.from_numpy(g.copy()))
    out_b.backward(torch.from_numpy(g.copy()))
    return out_a, out_b, a.grad, b.grad


# Reductions written once as f(lib, x, dim, keepdim); dim None means "all dims".
REDUCTIONS = {
    "sum": lambda lib, x, d, k: lib.sum(x, d, k) if d is not None else x.sum(),
    "sum_method_kw": lambda lib, x, d, k: x.sum(dim=d, keepdim=k),
    "mean": lambda lib, x, d, k: lib.mean(x, d, k) if d is not None else lib.mean(x),
    "amax": lambda lib, x, d, k: lib.amax(x, d if d is not None else (), k),
    "amin": lambda lib, x, d, k: x.amin(d if d is not None else (), keepdim=k),
    "logsumexp": lambda lib, x, d, k: lib.logsumexp(x, d if d is not None else tuple(range(x.dim())) or 0, k),
    "var": lambda lib, x, d, k: lib.var(x, d, keepdim=k, correction=0),
    "var_unbiased": lambda lib, x, d, k: x.var(d, keepdim=k),
    "std": lambda lib, x, d, k: lib.std(x, d, keepdim=k, correction=0),
    "std_unbiased": lambda lib, x, d, k: x.std(d, True, k),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@given(case=cases())
def test_reductions_match_torch(name, case):
    x, dim, keepdim = case
    fn = REDUCTIONS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # degrees of freedom <= 0 for var/std over one element
        out_a, out_b, grad_a, grad_b = _backward_both(lambda lib, t: fn(lib, t, dim, keepdim), x)
    assert_close(out_a, out_b)
    assert_close(grad_a, grad_b)


@given(case=cases(allow_tuple=False))
def test_prod_matches_torch(case):
    x, dim, keepdim = case
    x *= 0.25                                      # in place, keeping the layout: values in [0.5, 1.5),
    x += 1.0                                       # so that products of up to 256 of them stay moderate
    fn = (lambda lib, t: t.prod()) if dim is None else (lambda lib, t: lib.prod(t, dim, keepdim))
    out_a, out_b, grad_a, grad_b = _backward_both(fn, x)
    assert_close(out_a, out_b, rtol=1e-4 if x.dtype == np.float32 else None)
    assert_close(grad_a, grad_b, rtol=1e-4 if x.dtype == np.float32 else None)


def test_prod_gradient_with_zeros():
    torch = _torch()
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]])
    for dim in (None, 1, 0):
        fn = (lambda lib, t: t.prod()) if dim is None else (lambda lib, t: t.prod(dim))
        _, _, grad_a, grad_b = _backward_both(fn, x)
        assert_close(grad_a, grad_b)
    assert nbgrad.prod(nbgrad.tensor([[1, 2], [3, 4]])).item() == 24
    assert torch.equal(to_torch(nbgrad.tensor([True, False]).prod()), torch.tensor([True, False]).prod())


@pytest.mark.parametrize("op", ["max", "min"])
@given(case=cases(allow_none=False, allow_tuple=False))
def test_max_min_along_dim_match_torch(op, case):
    x, dim, keepdim = case
    torch = _torch()
    res_a = getattr(nbgrad, op)(nb(x), dim, keepdim)
    res_b = getattr(torch, op)(to_torch(x), dim, keepdim)
    assert type(res_a).__name__ == op
    values, indices = res_a                       # unpacks
    assert values is res_a.values and indices is res_a[1] is res_a.indices
    assert_close(values, res_b.values)
    assert_close(indices, res_b.indices)
    _, _, grad_a, grad_b = _backward_both(lambda lib, t: getattr(t, op)(dim=dim, keepdim=keepdim).values, x)
    assert_close(grad_a, grad_b)


@pytest.mark.parametrize("op", ["max", "min"])
@given(x=shapes().flatmap(arrays))
def test_max_min_whole_match_torch(op, x):
    out_a, out_b, grad_a, grad_b = _backward_both(lambda lib, t: getattr(lib, op)(t), x)
    assert out_a.shape == ()
    assert_close(out_a, out_b)
    assert_close(grad_a, grad_b)


def test_ties_split_evenly_or_go_to_the_first_index():
    torch = _torch()
    x = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [0.0, -1.0, 0.0, -1.0]])
    for fn in (lambda lib, t: t.max(), lambda lib, t: t.min(), lambda lib, t: lib.amax(t, 1),
               lambda lib, t: t.amin(0), lambda lib, t: lib.amax(t, (0, 1)), lambda lib, t: t.max(1).values,
               lambda lib, t: t.min(dim=0).values, lambda lib, t: lib.max(t, 1, True)[0]):
        out_a, out_b, grad_a, grad_b = _backward_both(fn, x)
        assert_close(out_a, out_b)
        assert_close(grad_a, grad_b)
    assert nbgrad.tensor(x).max(1).indices.tolist() == [1, 0, 0]
    assert nbgrad.tensor(x).argmin().item() == torch.tensor(x).argmin().item() == 9


def test_max_of_two_tensors_is_maximum():
    a, b = nbgrad.tensor([1.0, 5.0]), nbgrad.tensor([3.0, 2.0])
    assert nbgrad.max(a, b).tolist() == [3.0, 5.0]
    assert a.min(b).tolist() == [1.0, 2.0]
    assert nbgrad.max(a, other=b).grad_fn is None
    assert nbgrad.max(a.requires_grad_(), b).grad_fn.name() == "MaximumBackward0"


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@given(case=cases(allow_tuple=False), data=st.data())
def test_argmax_argmin_match_torch(op, case, data):
    x, dim, keepdim = case
    torch = _torch()
    if data.draw(st.booleans()):                  # ties too
        x = with_layout(np.round(np.ascontiguousarray(x)), "transposed")
    a = getattr(nbgrad, op)(nb(x), dim, keepdim)
    b = getattr(torch, op)(to_torch(x), dim, keepdim)
    assert_close(a, b)
    assert not a.requires_grad


@pytest.mark.parametrize("log", [False, True])
@given(shape=shapes(), data=st.data())
def test_softmax_matches_torch(log, shape, data):
    x = data.draw(arrays(shape))
    dim = data.draw(dims_for(len(shape), allow_none=False, allow_tuple=False))
    name = "log_softmax" if log else "softmax"
    fn = data.draw(st.sampled_from([lambda lib, t: getattr(lib, name)(t, dim),
                                    lambda lib, t: getattr(t, name)(dim=dim)]))
    out_a, out_b, grad_a, grad_b = _backward_both(fn, x)
    assert_close(out_a, out_b)
    assert_close(grad_a, grad_b)


def test_softmax_dtype_argument_and_integer_input():
    torch = _torch()
    x = np.arange(6).reshape(2, 3)
    assert_close(nbgrad.softmax(nbgrad.tensor(x), 1, dtype=nbgrad.float64),
                 torch.softmax(torch.tensor(x), 1, dtype=torch.float64))
    y = nbgrad.tensor(x, dtype=nbgrad.float32, requires_grad=True).log_softmax(0, nbgrad.float64)
    assert y.dtype is nbgrad.float64 and y.grad_fn.name() == "LogSoftmaxBackward0"
    y.sum().backward()
    with pytest.raises(NotImplementedError, match="\"softmax_lastdim_kernel_impl\" not implemented for 'Long'"):
        nbgrad.tensor(x).softmax(1)
    assert_close(nbgrad.tensor(x).logsumexp(1), torch.tensor(x).logsumexp(1))


def test_softmax_and_logsumexp_are_stable_at_large_inputs():
    torch = _torch()
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1002.0, -1001.0], [1000.0, -1000.0, 0.0],
                  [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0]])
    for dtype in (np.float32, np.float64):
        for fn in (lambda lib, t: lib.softmax(t, 1), lambda lib, t: t.log_softmax(-1), lambda lib, t: t.logsumexp(1),
                   lambda lib, t: lib.softmax(t[:3], 0), lambda lib, t: t[:3].log_softmax(0)):
            a, b = fn(nbgrad, nbgrad.tensor(x.astype(dtype))), fn(torch, torch.tensor(x.astype(dtype)))
            assert_close(a, b)
        finite = x[:3].astype(dtype)
        for fn in (lambda lib, t: lib.softmax(t, 1), lambda lib, t: t.log_softmax(0), lambda lib, t: t.logsumexp(1)):
            out_a, out_b, grad_a, grad_b = _backward_both(fn, finite)
            assert np.isfinite(to_numpy(out_a)).all() and np.isfinite(to_numpy(grad_a)).all()
            assert_close(grad_a, grad_b)
    ninf = nbgrad.tensor([-np.inf, -np.inf])
    assert np.isnan(ninf.softmax(0).numpy()).all() and ninf.logsumexp(0).item() == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_sums_are_accurate(dtype):
    """Sums of a million elements against torch in float64: float32 accumulates in float64,
    so the result is the exact sum rounded once; float64 is off by a few ulps at most."""
    torch = _torch()
    big = (np.random.default_rng(0).standard_normal(1 << 20) + 0.5).astype(dtype)
    exact = torch.tensor(big, dtype=torch.float64).sum().item()
    ulps = 1 if dtype == np.float32 else 16
    assert abs(nbgrad.from_numpy(big).sum().item() - exact) <= np.spacing(dtype(exact)) * ulps
    assert abs(nbgrad.from_numpy(big[::-1].copy()).sum().item() - exact) <= np.spacing(dtype(exact)) * 16


def test_parallel_paths_agree_with_torch():
    """Sizes above PARALLEL_MIN take the parallel kernels: rows per thread, column blocks per
    thread, or one long reduction cut into chunks whose partial results are combined."""
    torch = _torch()
    big = (np.random.default_rng(1).standard_normal(1 << 20) + 0.5).astype(np.float32)
    assert big.size >= 4 * PARALLEL_MIN          # every shape below is past the parallel threshold
    assert nbgrad.from_numpy(big).argmax().item() == int(np.argmax(big))
    rtol = 1e-6
    for shape in [(1024, 1024), (16, 1 << 16), (1 << 16, 16)]:
        x = big.reshape(shape)
        for layout in (x, x.T):                    # the transposed view is reduced in place, not copied
            t, r = nbgrad.from_numpy(layout), torch.from_numpy(np.array(layout)).double()
            for d in (0, 1):
                np.testing.assert_allclose(t.sum(d).numpy(), r.sum(d).numpy(), rtol=rtol, atol=rtol * 30)
                np.testing.assert_allclose(t.mean(d).numpy(), r.mean(d).numpy(), rtol=rtol, atol=rtol)
                assert (t.max(d).indices.numpy() == r.max(d).indices.numpy()).all()
                assert (t.argmin(d).numpy() == r.argmin(d).numpy()).all()
                if shape[0] == shape[1]:
                    np.testing.assert_allclose(t.var(d).numpy(), r.var(d).numpy(), rtol=10 * rtol)
                    np.testing.assert_allclose(t.logsumexp(d).numpy(), r.logsumexp(d).numpy(), rtol=rtol)
                    np.testing.assert_allclose(t.softmax(d).numpy(), r.softmax(d).numpy(), rtol=100 * rtol,
                                               atol=1e-12)


def test_gradients_of_large_inputs_match_torch():
    torch = _torch()
    x = random_array((300, 400), np.float32, 1)
    for fn in (lambda lib, t: (t * t).sum(), lambda lib, t: t.T.sum(0), lambda lib, t: t.amax(1),
               lambda lib, t: t.max(0).values, lambda lib, t: t.softmax(0), lambda lib, t: t.T.log_softmax(1),
               lambda lib, t: t.std(1), lambda lib, t: t.logsumexp(0), lambda lib, t: t.max()):
        out_a, out_b, grad_a, grad_b = _backward_both(fn, x)
        assert_close(out_a, out_b, rtol=1e-5, atol=1e-5)
        assert_close(grad_a, grad_b, rtol=1e-5, atol=1e-6)


def test_sum_to_size():
    torch = _torch()
    x = random_array((4, 3, 5), np.float64, 2)
    for size in [(5,), (3, 1), (1, 5), (3, 5), (1, 1, 1), (4, 1, 5), ()]:
        out_a, out_b, grad_a, grad_b = _backward_both(lambda lib, t: t.sum_to_size(size), x)
        assert_close(out_a, out_b)
        assert_close(grad_a, grad_b)
    t = nbgrad.tensor(x)
    assert t.sum_to_size(4, 3, 5) is t
    assert t.sum_to_size(nbgrad.Size([3, 1])).shape == (3, 1)
    with pytest.raises(RuntimeError, match=r"size \{\[2, 5\]\} is not expandable to size \{\[4, 3, 5\]\}\."):
        t.sum_to_size(2, 5)
    with pytest.raises(RuntimeError, match="is not expandable"):
        t.sum_to_size(1, 4, 3, 5)
    g = nbgrad.tensor(random_array((256, 10), np.float32, 3))
    assert_close(g.sum_to_size(10), to_torch(g).sum_to_size(10))


def test_integer_bool_and_dtype_arguments():
    torch = _torch()
    i = np.arange(12).reshape(3, 4) - 5
    b = i % 3 == 0
    for fn in (lambda lib, t: t.sum(), lambda lib, t: t.sum(0), lambda lib, t: lib.sum(t, (0, 1), True),
               lambda lib, t: t.prod(1), lambda lib, t: t.max(), lambda lib, t: t.amin(1), lambda lib, t: t.max(1)[0],
               lambda lib, t: t.sum(1, dtype=lib.float64), lambda lib, t: t.mean(dtype=lib.float32)):
        for data in (i, b):
            assert_close(fn(nbgrad, nbgrad.tensor(data)), fn(torch, torch.tensor(data)))
    x = nbgrad.tensor([1.5, 2.5], requires_grad=True)
    y = x.sum(dtype=nbgrad.float64)
    assert y.dtype is nbgrad.float64 and y.grad_fn.name() == "SumBackward0"
    y.backward()
    assert x.grad.dtype is nbgrad.float32 and x.grad.tolist() == [1.0, 1.0]


def test_empty_reductions():
    torch = _torch()
    e = np.zeros((0, 37))                          # wider than one vector of outputs
    for fn in (lambda lib, t: t.sum(), lambda lib, t: t.sum(0), lambda lib, t: t.mean(0), lambda lib, t: t.prod(0),
               lambda lib, t: t.logsumexp(0), lambda lib, t: t.amax(1), lambda lib, t: t.max(1).values,
               lambda lib, t: t.softmax(0), lambda lib, t: t.argmax(1), lambda lib, t: t.sum(1)):
        assert_close(fn(nbgrad, nbgrad.tensor(e)), fn(torch, torch.tensor(e)))
    assert nbgrad.zeros(0, dtype=nbgrad.int64).sum().item() == 0
    t = nbgrad.tensor(e)
    msg = "Expected reduction dim to be specified for input.numel() == 0. Specify the reduction dim with the 'dim'"
    for fn, name in ((t.max, "max"), (t.min, "min"), (t.amax, "amax"), (t.amin, "amin")):
        with pytest.raises(RuntimeError, match=rf"^{name}\(\): " + msg.replace(".", r"\.").replace("(", r"\(")
                           .replace(")", r"\)")):
            fn()
    with pytest.raises(IndexError, match=r"max\(\): Expected reduction dim 0 to have non-zero size\."):
        t.max(0)
    with pytest.raises(IndexError, match=r"amax\(\): Expected reduction dim 0 to have non-zero size\."):
        t.amax(0)
    with pytest.raises(IndexError, match=r"argmax\(\): Expected reduction dim to be specified for input\.numel"):
        t.argmax()
    with pytest.raises(IndexError, match=r"argmin\(\): Expected reduction dim 0 to have non-zero size\."):
        t.argmin(0)


def test_errors_match_torch():
    x = nbgrad.zeros(2, 3)
    for fn in (lambda: x.sum(5), lambda: x.mean((0, -3)), lambda: x.softmax(2), lambda: x.max(-3),
               lambda: x.logsumexp(2), lambda: x.argmax(2), lambda: x.var(9), lambda: nbgrad.zeros(()).sum(1)):
        with pytest.raises(IndexError, match=r"Dimension out of range \(expected to be in range of \[-\d, \d\], "
                                             r"but got -?\d\)"):
            fn()
    with pytest.raises(IndexError, match=r"range of \[-2, 1\], but got 5\)"):
        x.sum(5)
    for dims in [(0, 0), (0, -2), (1, 0, 1)]:
        with pytest.raises(RuntimeError, match=r"dim \d appears multiple times in the list of dims"):
            x.sum(dims)
    with pytest.raises(RuntimeError, match=r"^mean\(\): could not infer output dtype\. Input dtype must be either a "
                                           r"floating point or complex dtype\. Got: Long$"):
        nbgrad.arange(3).mean()
    for fn in (nbgrad.var, nbgrad.std):
        with pytest.raises(RuntimeError, match="^std and var only support floating point and complex dtypes$"):
            fn(nbgrad.arange(3))
    with pytest.raises(RuntimeError, match=r"^argmax\(\): does not support bool input$"):
        nbgrad.tensor([True]).argmax()
    with pytest.raises(TypeError):
        x.sum(1.5)
    with pytest.raises(TypeError):
        x.max((0, 1))
    with pytest.raises(TypeError):
        x.var(0, True, correction=1)


def test_var_std_signatures_and_warning():
    torch = _torch()
    x = random_array((3, 4), np.float64, 4)
    a, b = nbgrad.tensor(x), torch.tensor(x)
    for fn in (lambda lib, t: lib.var(t, True), lambda lib, t: lib.var(t, False), lambda lib, t: t.var(0, False),
               lambda lib, t: t.std(1, True, True), lambda lib, t: lib.std(t, dim=0, correction=2),
               lambda lib, t: t.var(dim=(0, 1), correction=0.5), lambda lib, t: t.std(unbiased=False),
               lambda lib, t: lib.var(t, 1, keepdim=True)):
        assert_close(fn(nbgrad, a), fn(torch, b))
    with pytest.warns(UserWarning, match=r"^var\(\): degrees of freedom is <= 0\. Correction should be strictly "
                                         r"less than the reduction factor"):
        assert np.isinf(a.var(0, correction=3).numpy()).all()
    with pytest.warns(UserWarning, match=r"^std\(\): degrees of freedom is <= 0"):
        assert np.isnan(nbgrad.tensor(1.0).std().item())
    z = nbgrad.tensor([[2.0, 2.0], [1.0, 3.0]], requires_grad=True)
    z.std(1).sum().backward()                     # zero std: gradient 0, not NaN
    assert z.grad.tolist()[0] == [0.0, 0.0] and np.isfinite(z.grad.numpy()).all()


def test_nan_propagates_like_torch():
    torch = _torch()
    x = np.array([[1.0, np.nan, 3.0, np.nan], [4.0, 2.0, 0.0, 1.0]])
    for fn in (lambda lib, t: t.max(1).values, lambda lib, t: t.max(1).indices, lambda lib, t: t.min(0).indices,
               lambda lib, t: t.argmax(), lambda lib, t: t.argmin(1), lambda lib, t: t.amax(1), lambda lib, t: t.max(),
               lambda lib, t: t.softmax(1), lambda lib, t: t.logsumexp(1), lambda lib, t: t.sum(0)):
        assert_close(fn(nbgrad, nbgrad.tensor(x)), fn(torch, torch.tensor(x)))
    _, _, grad_a, grad_b = _backward_both(lambda lib, t: t.max(), x)
    assert_close(grad_a, grad_b)                  # the gradient is shared among the NaNs


def test_grad_fn_names():
    x = nbgrad.ones(2, 3, requires_grad=True)
    names = {
        "SumBackward0": x.sum(), "SumBackward1": x.sum(1), "MeanBackward0": x.mean(), "MeanBackward1": x.mean((0, 1)),
        "MaxBackward1": x.max(), "MaxBackward0": x.max(0)[0], "MinBackward1": x.min(), "MinBackward0": x.min(1).values,
        "AmaxBackward0": x.amax(1), "AminBackward0": x.amin(), "VarBackward0": x.var(0), "StdBackward0": x.std(),
        "LogsumexpBackward0": x.logsumexp(1), "SoftmaxBackward0": x.softmax(1), "LogSoftmaxBackward0": x.log_softmax(0),
        "ProdBackward0": x.prod(), "ProdBackward1": x.prod(1),
    }
    for name, out in names.items():
        assert out.grad_fn.name() == name
    assert x.sum(None, True).grad_fn.name() == "SumBackward1"
    assert x.max(0).indices.grad_fn is None and x.argmax().grad_fn is None
    with nbgrad.no_grad():
        assert x.sum().grad_fn is None


def test_return_type_repr():
    res = nbgrad.tensor([[1.0, 2.0]]).max(1)
    assert repr(res).startswith("torch.return_types.max(\nvalues=tensor([2.])")
    assert "\nindices=tensor([1]))" in repr(res)
    assert isinstance(res, tuple) and len(res) == 2 and nbgrad.return_types.min.__name__ == "min"


# -- finite differences (float64) -----------------------------------------------------------------
GRAD_CASES = {
    "sum_dims": lambda t: t.sum((0, 2)), "sum_keepdim": lambda t: t.sum(-1, keepdim=True), "mean": lambda t: t.mean(1),
    "prod": lambda t: t.prod(1), "amax": lambda t: t.amax((1, 2)), "max_dim": lambda t: t.max(2).values,
    "min": lambda t: t.min(), "var": lambda t: t.var(1), "std": lambda t: t.std((0, 2), keepdim=True),
    "logsumexp": lambda t: t.logsumexp(0), "softmax": lambda t: t.softmax(1),
    "log_softmax": lambda t: t.log_softmax(-1),
    "sum_to_size": lambda t: t.sum_to_size(3, 1),
}


@pytest.mark.parametrize("name", GRAD_CASES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_gradients_against_finite_differences(name, layout):
    x = with_layout(random_array((2, 3, 4), np.float64, 5) + 0.1 * np.arange(24).reshape(2, 3, 4), layout)
    check_grad(GRAD_CASES[name], x)


@pytest.mark.parametrize("name", GRAD_CASES)
def test_second_derivatives(name):
    """The recorded backward (create_graph) against finite differences of the gradient."""
    x = nb(random_array((2, 3, 4), np.float64, 6) + 0.1 * np.arange(24).reshape(2, 3, 4), requires_grad=True)
    assert gradgradcheck(GRAD_CASES[name], (x,))


def test_second_derivatives_match_torch():
    torch = _torch()
    x = random_array((3, 4), np.float64, 7)
    for fn in (lambda lib, t: lib.softmax(t, 1), lambda lib, t: t.log_softmax(0), lambda lib, t: t.logsumexp(1),
               lambda lib, t: t.std(0), lambda lib, t: t.var(1), lambda lib, t: t.prod(1)):
        grads = []
        for lib, t in ((nbgrad, nb(x, requires_grad=True)), (torch, to_torch(x, requires_grad=True))):
            out = fn(lib, t)
            w = lib.from_numpy(random_array(tuple(out.shape), np.float64, 8))
            g, = lib.autograd.grad((out * w).sum(), t, create_graph=True)
            (g * g).sum().backward()
            grads.append(t.grad)
        assert_close(grads[0], grads[1])


@given(x=shapes(min_dims=1).flatmap(lambda s: arrays(s, np.float64)), seed=seeds)
def test_gradcheck_softmax_any_layout(x, seed):
    dim = seed % x.ndim
    t = nb(x, requires_grad=True)
    assert gradcheck(lambda a: a.log_softmax(dim) * 2 + a.softmax(dim), (t,))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_higher_derivatives_match_torch(name, dim):
    """Second and third derivatives through the recorded kernel (``_softmax_backward_data``
    and its own backward), against PyTorch's, and its node names."""
    value = np.random.default_rng(dim).normal(size=(3, 4))
    weights = np.random.default_rng(9).normal(size=(3, 4))
    grads = []
    for lib in (nbgrad, _torch()):
        x = lib.tensor(value, requires_grad=True)
        y = getattr(lib, name)(x * x, dim)
        g, = lib.autograd.grad((y * lib.tensor(weights)).sum(), x, create_graph=True)
        gg, = lib.autograd.grad((g * g * g).sum(), x, create_graph=True)
        ggg, = lib.autograd.grad((gg.sin()).sum(), x)
        grads.append((g.detach().numpy(), gg.detach().numpy(), ggg.numpy()))
        graph = [g.grad_fn]
        while graph and "BackwardData" not in type(graph[-1]).__name__:
            graph += [fn for fn, _ in graph.pop().next_functions if fn is not None]
        assert graph and type(graph[-1]).__name__ == ("LogSoftmax" if name == "log_softmax" else "Softmax") + \
            "BackwardDataBackward0"
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    x = nbgrad.tensor(value, requires_grad=True)
    assert gradgradcheck(lambda t: getattr(nbgrad, name)(t * t, dim), (x,))
