"""Matrix products: values and gradients of matmul/mm/bmm/mv/dot against PyTorch (every
rank combination, broadcast batch dims, transposed and sliced operands, float32 and
float64), finite differences in float64, PyTorch's error texts, and the no-copy path
for transposed operands."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import nbgrad
from helpers import arrays, assert_close, check_grad, dtypes, nb, random_array, seeds, to_torch, with_layout
from nbgrad.ops import linalg as kernels

# BLAS and PyTorch sum products in different orders
TOL = {np.dtype(np.float32): dict(rtol=1e-5, atol=1e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _close(actual, expected):
    a = np.asarray(actual.detach().numpy())
    assert_close(actual, expected, **TOL[a.dtype])


def _run_both(torch, op, inputs, grad_seed):
    """``op`` on nbgrad and on torch: the same values, then the same gradients for one
    random, non-contiguous output gradient."""
    xs = [nb(x, requires_grad=True) for x in inputs]
    ts = [to_torch(x, requires_grad=True) for x in inputs]
    y, yt = op(nbgrad, *xs), op(torch, *ts)
    _close(y, yt)
    g = with_layout(random_array(yt.shape, yt.detach().numpy().dtype, grad_seed), "transposed")
    y.backward(nb(g))
    yt.backward(to_torch(g))
    for x, t in zip(xs, ts):
        _close(x.grad, t.grad)
    return y, yt


@st.composite
def operand_shapes(draw, broadcast=True):
    """Shapes of two matmul operands: vectors, matrices or batches of them."""
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    if broadcast:
        batch_a, batch_b = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    else:
        batch_a = batch_b = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    a = (k,) if draw(st.booleans()) else batch_a + (n, k)
    b = (k,) if draw(st.booleans()) else batch_b + (k, m)
    return a, b


# -- values and gradients against PyTorch -----------------------------------------------------------
@given(shapes=operand_shapes(broadcast=False), dtype=dtypes, grad_seed=seeds, data=st.data())
def test_matmul_matches_torch(torch, shapes, dtype, grad_seed, data):
    a, b = (data.draw(arrays(s, dtype)) for s in shapes)
    _run_both(torch, lambda lib, x, y: x @ y, [a, b], grad_seed)


@given(shapes=operand_shapes(), dtype=dtypes, grad_seed=seeds, data=st.data())
def test_matmul_broadcast_batch_matches_torch(torch, shapes, dtype, grad_seed, data):
    a, b = (data.draw(arrays(s, dtype)) for s in shapes)
    _run_both(torch, lambda lib, x, y: lib.matmul(x, y), [a, b], grad_seed)


@pytest.mark.parametrize("op, shapes", [
    (lambda lib, a, b: lib.mm(a, b), [(3, 4), (4, 2)]),
    (lambda lib, a, b: a.mm(b), [(1, 4), (4, 1)]),
    (lambda lib, a, b: lib.bmm(a, b), [(2, 3, 4), (2, 4, 5)]),
    (lambda lib, a, b: a.bmm(b), [(1, 1, 3), (1, 3, 1)]),
    (lambda lib, a, b: lib.mv(a, b), [(3, 4), (4,)]),
    (lambda lib, a, b: a.mv(b), [(1, 4), (4,)]),
    (lambda lib, a, b: lib.dot(a, b), [(5,), (5,)]),
    (lambda lib, a, b: a.dot(b), [(1,), (1,)]),
    (lambda lib, a, b: a.matmul(b), [(2, 3), (3, 2)]),
    (lambda lib, a, b: b.__rmatmul__(a), [(2, 3), (3,)]),
    (lambda lib, a, b: lib.outer(a, b), [(3,), (4,)]),
    (lambda lib, a, b: a @ b.t(), [(5, 3), (4, 3)]),           # a linear layer: x @ W.t()
    (lambda lib, a, b: a.t() @ b.t(), [(3, 5), (4, 3)]),
    (lambda lib, a, b: a.mT @ b, [(2, 4, 3), (2, 4, 5)]),
    (lambda lib, a, b: a.narrow(1, 1, 4) @ b.narrow(1, 1, 2), [(3, 5), (4, 6)]),   # sliced operands are copied
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_named_products_match_torch(torch, op, shapes, dtype):
    inputs = [random_array(s, dtype, seed) for seed, s in enumerate(shapes)]
    _run_both(torch, op, inputs, grad_seed=7)


@pytest.mark.parametrize("shapes", [[(2, 0), (0, 3)], [(0, 3), (3, 2)], [(2, 3), (3, 0)], [(0,), (0,)],
                                    [(0, 2, 3), (0, 3, 4)], [(2, 0, 3), (3, 4)], [(2, 2, 0), (0, 3)],
                                    [(2, 2, 0), (2, 0, 3)], [(0, 2, 3), (3,)], [(3, 0), (2, 1, 0, 4)]])
def test_empty_products_match_torch(torch, shapes):
    inputs = [random_array(s, np.float64, 0) for s in shapes]
    y, _ = _run_both(torch, lambda lib, a, b: a @ b, inputs, grad_seed=1)
    assert not np.any(y.detach().numpy())


def test_int64_products_match_torch(torch):
    rng = np.random.default_rng(0)
    for sa, sb, layout in [((3, 4), (4, 2), "contiguous"), ((4,), (4,), "contiguous"), ((3, 4), (4,), "sliced"),
                           ((2, 3, 4), (2, 4, 5), "contiguous"), ((3, 4), (4, 2), "transposed")]:
        a, b = with_layout(rng.integers(-5, 5, sa), layout), rng.integers(-5, 5, sb)
        y = nb(a) @ nb(b)
        assert y.dtype is nbgrad.int64
        np.testing.assert_array_equal(y.numpy(), (torch.from_numpy(a) @ torch.from_numpy(b)).numpy())


# -- finite differences (float64) -----------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [[(3,), (3,)], [(2, 3), (3,)], [(3,), (3, 4)], [(2, 3), (3, 4)],
                                    [(2, 2, 3), (3, 4)], [(2, 2, 3), (3,)], [(2, 2, 3), (2, 3, 2)]])
def test_matmul_finite_differences(shapes):
    check_grad(lambda a, b: a @ b, *(random_array(s, np.float64, seed) for seed, s in enumerate(shapes)))


@pytest.mark.parametrize("shapes", [[(3,), (2, 3, 2)], [(2, 3), (2, 3, 4)], [(2, 1, 2, 3), (3, 3, 2)]])
def test_matmul_broadcast_finite_differences(shapes):
    check_grad(lambda a, b: a @ b, *(random_array(s, np.float64, seed) for seed, s in enumerate(shapes)))


def test_primitives_finite_differences():
    r = lambda *s: random_array(s, np.float64, len(s))
    check_grad(nbgrad.mm, r(2, 3), r(3, 4))
    check_grad(nbgrad.bmm, r(2, 2, 3), r(2, 3, 1))
    check_grad(nbgrad.mv, r(2, 3), r(3))
    check_grad(nbgrad.dot, r(4), r(4))
    check_grad(lambda a, b: a @ b.t(), r(2, 3), r(4, 3))


def test_second_order_gradient_matches_torch(torch):
    a, b, c = (random_array(s, np.float64, i) for i, s in enumerate([(2, 3), (3, 4), (2, 4)]))
    results = []
    for lib, wrap in ((nbgrad, lambda x: nb(x, requires_grad=True)), (torch, lambda x: to_torch(x, True))):
        x, w = wrap(a), wrap(b)
        y = x @ w
        gx, = lib.autograd.grad(y, x, grad_outputs=wrap(c).detach(), create_graph=True)
        (gx * gx).backward(wrap(np.ones_like(a)).detach())
        results.append(w.grad)
    _close(*results)


# -- grad_fn names and graph shape --------------------------------------------------------------------
@pytest.mark.parametrize("sa, sb, name", [((3,), (3,), "DotBackward0"), ((2, 3), (3,), "MvBackward0"),
                                          ((2, 3), (3, 4), "MmBackward0"), ((3,), (3, 4), "SqueezeBackward1"),
                                          ((5, 2, 3), (3, 4), "UnsafeViewBackward0"),
                                          ((5, 2, 3), (5, 3, 4), "UnsafeViewBackward0")])
def test_grad_fn_names_as_torch(sa, sb, name):
    y = nbgrad.randn(*sa, requires_grad=True) @ nbgrad.randn(*sb, requires_grad=True)
    assert y.grad_fn.name() == name


def test_batch_times_matrix_is_one_mm():
    """A batch against one matrix folds the batch into rows: one gemm, no expanded copy."""
    y = nbgrad.randn(5, 2, 3, requires_grad=True) @ nbgrad.randn(3, 4, requires_grad=True)
    assert y.grad_fn.next_functions[0][0].name() == "MmBackward0"
    assert y.shape == (5, 2, 4) and y.is_contiguous()


def test_result_is_not_a_view():
    y = nbgrad.randn(5, 2, 3) @ nbgrad.randn(3, 4)
    assert y._base is None


# -- errors ----------------------------------------------------------------------------------------------
ERRORS = [
    ("matmul", (2, 3), (4, 5), "float32", "float32"),
    ("matmul", (3,), (4,), "float32", "float32"),
    ("matmul", (), (2, 2), "float32", "float32"),
    ("matmul", (3,), (), "float32", "float32"),
    ("matmul", (2, 3), (3, 4), "float32", "float64"),
    ("matmul", (2, 3), (3, 4), "int64", "float32"),
    ("matmul", (2, 3), (4,), "float32", "float32"),
    ("matmul", (3,), (4, 5), "float32", "float32"),
    ("matmul", (2, 2, 3), (2, 4, 5), "float32", "float32"),
    ("matmul", (2, 2, 3), (3, 4, 5), "float32", "float32"),
    ("matmul", (2, 2, 3), (4, 5), "float32", "float32"),
    ("matmul", (2, 3), (5, 4, 5), "float32", "float32"),
    ("matmul", (2, 2, 3), (2, 3, 5), "float32", "float64"),
    ("matmul", (3,), (3,), "float32", "float64"),
    ("matmul", (2, 3), (3,), "float32", "float64"),
    ("matmul", (2, 3), (3, 2), "bool", "bool"),
    ("matmul", (3,), (3,), "bool", "bool"),
    ("mm", (3,), (3, 3), "float32", "float32"),
    ("mm", (3, 3), (3,), "float32", "float32"),
    ("mm", (2, 3), (4, 5), "float32", "float32"),
    ("mm", (2, 3), (3, 5), "float32", "float64"),
    ("bmm", (2, 3), (3, 4), "float32", "float32"),
    ("bmm", (3, 3, 3), (1, 3, 3, 3), "float32", "float32"),
    ("bmm", (2, 2, 3), (3, 4, 5), "float32", "float32"),
    ("bmm", (2, 2, 3), (2, 4, 5), "float32", "float32"),
    ("bmm", (2, 2, 3), (2, 3, 5), "float32", "float64"),
    ("dot", (2, 3), (3,), "float32", "float32"),
    ("dot", (), (), "float32", "float32"),
    ("dot", (3,), (4,), "float32", "float32"),
    ("dot", (3,), (3,), "float32", "float64"),
    ("mv", (2, 3), (4,), "float32", "float32"),
    ("mv", (3,), (3,), "float32", "float32"),
    ("mv", (2, 3), (3, 1), "float32", "float32"),
    ("mv", (3, 3), (), "float32", "float32"),
    ("mv", (2, 3), (3,), "float32", "float64"),
]


@pytest.mark.parametrize("fn, sa, sb, da, db", ERRORS)
def test_errors_as_torch(torch, fn, sa, sb, da, db):
    a, b = np.ones(sa, da), np.ones(sb, db)
    with pytest.raises(Exception) as expected:
        getattr(torch, fn)(torch.from_numpy(a), torch.from_numpy(b))
    with pytest.raises(type(expected.value)) as actual:
        getattr(nbgrad, fn)(nb(a), nb(b))
    assert str(actual.value) == str(expected.value)


def test_matmul_operator_with_a_number_is_a_type_error():
    with pytest.raises(TypeError):
        nbgrad.ones(3) @ 2
    with pytest.raises(TypeError):
        2 @ nbgrad.ones(3)


# -- the kernel ------------------------------------------------------------------------------------------
def test_transposed_operand_is_passed_without_a_copy():
    w = np.ones((4, 3))
    for x in (w.T[None], np.ascontiguousarray(np.ones((2, 4, 3)).swapaxes(1, 2)).swapaxes(1, 2)):
        arr, transposed = kernels.operand(x)
        assert np.shares_memory(arr, x) and arr.flags.c_contiguous
        assert transposed == (not x.flags.c_contiguous)
    sliced = np.ones((4, 6))[None, :, ::2]
    arr, transposed = kernels.operand(sliced)
    assert not np.shares_memory(arr, sliced) and arr.flags.c_contiguous and not transposed


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("n, k, m", [(3, 4, 5), (1, 4, 1), (3, 1, 2), (1, 3, 4), (4, 3, 1)])
def test_kernel_against_numpy(dtype, ta, tb, n, k, m):
    """Every transpose flag with gemm, gemv (one row or column) and dot shapes."""
    rng = np.random.default_rng(0)
    a, b = (rng.integers(-9, 9, s).astype(dtype) for s in [(2, n, k), (2, k, m)])
    pa = np.ascontiguousarray(a.swapaxes(1, 2)).swapaxes(1, 2) if ta else a
    pb = np.ascontiguousarray(b.swapaxes(1, 2)).swapaxes(1, 2) if tb else b
    np.testing.assert_allclose(kernels.bmm(pa, pb), np.einsum("bik,bkj->bij", a, b), rtol=1e-6)


def test_only_the_needed_operand_is_saved(torch):
    """``x @ w`` with only ``w`` requiring grad keeps ``x``: changing ``w`` in place before
    backward is fine (as in PyTorch), changing ``x`` is caught."""
    for lib in (nbgrad, torch):
        x, w = lib.ones(2, 3, dtype=lib.float64), lib.ones(3, 4, dtype=lib.float64, requires_grad=True)
        y = x @ w
        with lib.no_grad():
            w.mul_(2)
        y.backward(lib.ones(2, 4, dtype=lib.float64))
        np.testing.assert_array_equal(w.grad.numpy(), np.full((3, 4), 2.0))
        y = x @ w
        x.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.backward(lib.ones(2, 4, dtype=lib.float64))


def test_gradient_of_a_transposed_weight_is_contiguous():
    """``x @ W.t()`` (a linear layer): ``W.grad`` comes out C-contiguous, as in PyTorch."""
    x, w = nbgrad.randn(5, 3, requires_grad=True), nbgrad.randn(4, 3, requires_grad=True)
    y = x.t().t() @ w.t()
    y.backward(nbgrad.ones(5, 4))
    assert w.grad.is_contiguous() and x.grad.is_contiguous()
    np.testing.assert_allclose(w.grad.numpy(), np.ones((4, 5)) @ x.detach().numpy(), rtol=1e-6)
    a = nbgrad.randn(3, 5, requires_grad=True)
    (a.t() @ w.t()).backward(nbgrad.ones(5, 4))
    assert a.grad.is_contiguous()
    np.testing.assert_allclose(a.grad.numpy(), w.detach().numpy().T @ np.ones((4, 5)), rtol=1e-6)


# -- addmm (a linear layer's op) -----------------------------------------------------------------------
ADDMM_BIAS = [(4,), (1, 4), (3, 1), (3, 4), (1,), ()]


@pytest.mark.parametrize("bias_shape", ADDMM_BIAS)
@pytest.mark.parametrize("beta, alpha", [(1, 1), (0.5, 2.0), (0, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_addmm_matches_torch(torch, bias_shape, beta, alpha, dtype):
    bias, m1, m2 = (random_array(s, np.dtype(dtype), seed) for seed, s in enumerate([bias_shape, (3, 5), (4, 5)]))
    y, yt = _run_both(torch, lambda lib, b, x, w: lib.addmm(b, x, w.t(), beta=beta, alpha=alpha), [bias, m1, m2], 7)
    assert y.grad_fn.name() == yt.grad_fn.name() == "AddmmBackward0"
    assert [type(f).__name__ for f, _ in y.grad_fn.next_functions] == \
        [type(f).__name__ for f, _ in yt.grad_fn.next_functions]


def test_addmm_ignores_input_when_beta_is_zero(torch):
    bias = np.full((4,), np.nan, np.float32)
    m1, m2 = random_array((3, 5), np.float32, 1), random_array((5, 4), np.float32, 2)
    y = nbgrad.addmm(nb(bias), nb(m1), nb(m2), beta=0)
    assert np.isfinite(y.numpy()).all()
    _close(y, torch.addmm(to_torch(bias), to_torch(m1), to_torch(m2), beta=0))


def test_addmm_finite_differences():
    check_grad(lambda b, x, w: nbgrad.addmm(b, x, w, beta=0.5, alpha=-1.5),
               random_array((4,), np.float64, 0), random_array((3, 5), np.float64, 1),
               random_array((5, 4), np.float64, 2))


def test_addmm_second_order_matches_torch(torch):
    arrays_ = [random_array(s, np.float64, k) for k, s in enumerate([(4,), (3, 5), (5, 4)])]
    grads = []
    for lib, conv in ((nbgrad, lambda a: nb(a, requires_grad=True)), (torch, lambda a: to_torch(a, True))):
        b, x, w = map(conv, arrays_)
        y = lib.addmm(b, x, w, alpha=2.0)
        gx, = lib.autograd.grad((y * y).sum(), x, create_graph=True)
        gx.sum().backward()
        grads.append([t.grad.detach().numpy() for t in (b, w)])
    for a, e in zip(*grads):
        np.testing.assert_allclose(a, e, rtol=1e-10)


@pytest.mark.parametrize("sb, s1, s2, db", [((5,), (3, 4), (4, 10), "float32"), ((10,), (3, 4), (4, 10), "float64"),
                                            ((10,), (3, 4), (5, 10), "float32"), ((10,), (4,), (4, 10), "float32")])
def test_addmm_errors_as_torch(torch, sb, s1, s2, db):
    arrays_ = [np.ones(sb, db), np.ones(s1, np.float32), np.ones(s2, np.float32)]
    with pytest.raises(Exception) as expected:
        torch.addmm(*map(torch.from_numpy, arrays_))
    with pytest.raises(type(expected.value)) as actual:
        nbgrad.addmm(*map(nb, arrays_))
    assert str(actual.value) == str(expected.value)


def test_add_rows_kernel_against_numpy():
    out, v = random_array((6, 7), np.float32, 0), random_array((7,), np.float32, 1)
    expected = out + v
    kernels.add_rows(out, v)
    np.testing.assert_array_equal(out, expected)
