"""The tensor functions of issue 10 against PyTorch: values, index results, gradients (and
float64 gradcheck/gradgradcheck where differentiable), PyTorch's errors, and shapes
including 0-d, size-0 and non-contiguous inputs."""
import math

import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X34 = RNG.standard_normal((3, 4))
X345 = RNG.standard_normal((3, 4, 5))


def _pair(x, grad=True):
    return nbgrad.tensor(x, requires_grad=grad), torch.tensor(x, requires_grad=grad)


def _as_np(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _same(a, b, **tol):
    assert tuple(a.shape) == tuple(b.shape), (a.shape, b.shape)
    assert str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1], (a.dtype, b.dtype)
    np.testing.assert_allclose(_as_np(a), _as_np(b), equal_nan=True, **(tol or dict(rtol=1e-10, atol=1e-12)))


def _check_grad(fn, x, check_gradgrad=True, check_numerical=True, **tol):
    """Values and the gradient of ``fn(lib, t)`` for a random weight, against PyTorch; then
    float64 gradcheck (and gradgradcheck) of nbgrad's (not at ties: ``check_numerical``)."""
    a, b = _pair(x)
    out_n, out_t = fn(nbgrad, a), fn(torch, b)
    _same(out_n, out_t, **tol)
    weight = np.random.default_rng(1).standard_normal(tuple(out_t.shape))
    g_n, = nbgrad.autograd.grad(out_n, a, nbgrad.tensor(weight))
    g_t, = torch.autograd.grad(out_t, b, torch.tensor(weight))
    _same(g_n, g_t, **tol)
    small = nbgrad.tensor(x, requires_grad=True)
    if not check_numerical:
        return out_n, out_t
    assert gradcheck(lambda t: fn(nbgrad, t), [small])
    if check_gradgrad:
        assert gradgradcheck(lambda t: fn(nbgrad, t), [small])
    return out_n, out_t


def _raises_like(fn):
    """nbgrad raises what PyTorch raises: the same type and text."""
    with pytest.raises(Exception) as theirs:
        fn(torch)
    with pytest.raises(type(theirs.value)) as ours:
        fn(nbgrad)
    assert str(ours.value) == str(theirs.value)


# -- sorting ------------------------------------------------------------------------------------------
SORTED = {
    "sort": lambda m, t: m.sort(t, 1, descending=True),
    "sort_dim0": lambda m, t: t.sort(0),
    "sort_stable": lambda m, t: m.sort(t, dim=-1, stable=True),
    "topk": lambda m, t: m.topk(t, 2, 0),
    "topk_smallest": lambda m, t: t.topk(3, largest=False),
    "kthvalue": lambda m, t: m.kthvalue(t, 2, 1, True),
    "median_dim": lambda m, t: m.median(t, 0),
    "nanmedian_dim": lambda m, t: t.nanmedian(1, keepdim=True),
    "mode": lambda m, t: m.mode(t.round(), 1),
    "cummax": lambda m, t: m.cummax(t, 1),
    "cummin": lambda m, t: t.cummin(0),
}


@pytest.mark.parametrize("name", sorted(SORTED))
def test_values_indices_and_gradients_as_pytorch(name):
    fn = SORTED[name]
    x = np.round(X34 * 4) / 4 if name == "mode" else X34
    a, b = _pair(x)
    r_n, r_t = fn(nbgrad, a), fn(torch, b)
    assert type(r_n).__name__ == type(r_t).__name__
    _same(r_n.values, r_t.values)
    np.testing.assert_array_equal(r_n.indices.numpy(), r_t.indices.numpy())
    values, indices = r_n                                    # unpacks as a tuple
    assert values is r_n[0] and indices is r_n.indices
    if name != "mode":
        assert r_n.values.grad_fn.name() == r_t.values.grad_fn.name()
        weight = np.random.default_rng(2).standard_normal(tuple(r_t.values.shape))
        g_n, = nbgrad.autograd.grad(r_n.values, a, nbgrad.tensor(weight))
        g_t, = torch.autograd.grad(r_t.values, b, torch.tensor(weight))
        _same(g_n, g_t)
        assert gradgradcheck(lambda t: fn(nbgrad, t).values, [nbgrad.tensor(x, requires_grad=True)])


def test_sort_orders_nan_largest_and_keeps_ties_in_order():
    x = [3.0, math.nan, 1.0, 1.0, -math.inf, 2.0, math.nan, 1.0]
    for descending in (False, True):
        r_n = nbgrad.sort(nbgrad.tensor(x), descending=descending, stable=True)
        r_t = torch.sort(torch.tensor(x, dtype=torch.float32), descending=descending, stable=True)
        _same(r_n.values, r_t.values)
        np.testing.assert_array_equal(r_n.indices.numpy(), r_t.indices.numpy())
    assert nbgrad.argsort(nbgrad.tensor(x)).tolist() == torch.argsort(torch.tensor(x), stable=True).tolist()


def test_sort_long_rows_parallel_integers_and_layouts():
    big = RNG.integers(-50, 50, (8, 40000))
    r_n, r_t = nbgrad.sort(nbgrad.tensor(big), 1), torch.sort(torch.tensor(big), dim=1, stable=True)
    np.testing.assert_array_equal(r_n.values.numpy(), r_t.values.numpy())
    np.testing.assert_array_equal(r_n.indices.numpy(), r_t.indices.numpy())
    view_n, view_t = nbgrad.tensor(X345).transpose(0, 2)[:, ::2], torch.tensor(X345).transpose(0, 2)[:, ::2]
    for dim in (0, 1, 2):
        _same(view_n.sort(dim).values, view_t.sort(dim).values)
        assert view_n.sort(dim).values.is_contiguous()


def test_sort_family_on_0d_and_empty():
    zero_n, zero_t = nbgrad.tensor(2.5), torch.tensor(2.5, dtype=torch.float32)
    for fn in (lambda m, t: m.sort(t), lambda m, t: m.topk(t, 1), lambda m, t: m.kthvalue(t, 1),
               lambda m, t: m.median(t, 0), lambda m, t: m.cummax(t, 0)):
        r_n, r_t = fn(nbgrad, zero_n), fn(torch, zero_t)
        _same(r_n.values, r_t.values)
        _same(r_n.indices, r_t.indices)
    e_n, e_t = nbgrad.zeros(2, 0), torch.zeros(2, 0)
    _same(nbgrad.sort(e_n, 1).values, torch.sort(e_t, 1).values)
    _same(nbgrad.topk(e_n, 0).values, torch.topk(e_t, 0).values)
    _same(nbgrad.median(nbgrad.zeros(0)), torch.median(torch.zeros(0)))


def test_median_with_nan_and_whole_tensor_gradient():
    x = [3.0, 1.0, math.nan, 1.0, 2.0]
    for fn in (lambda m, t: m.median(t, 0), lambda m, t: m.nanmedian(t, 0)):
        r_n, r_t = fn(nbgrad, nbgrad.tensor(x)), fn(torch, torch.tensor(x))
        _same(r_n.values, r_t.values)
        assert r_n.indices.item() == r_t.indices.item()
    ties = np.array([[1.0, 2.0, 2.0], [2.0, 3.0, 0.5]])
    out_n, out_t = _check_grad(lambda m, t: m.median(t) * 1.0, ties, check_numerical=False)
    assert out_n.grad_fn.next_functions[0][0].name() == "MedianBackward0"
    _check_grad(lambda m, t: t.nanmedian() * 1.0, ties, check_numerical=False)
    _check_grad(lambda m, t: m.median(t), X34)


def test_unique():
    x = [2.0, math.nan, 1.0, 3.0, 1.0, math.nan, 2.0, 2.0]
    for kw in ({}, dict(return_inverse=True), dict(return_counts=True), dict(return_inverse=True, return_counts=True)):
        r_n = nbgrad.unique(nbgrad.tensor(x), **kw)
        r_t = torch.unique(torch.tensor(x), **kw)
        for a, b in zip(r_n if kw else [r_n], r_t if kw else [r_t]):
            _same(a, b)
    m = np.array([[1, 1, 2], [2, 2, 0]])
    r_n = nbgrad.tensor(m).unique(return_inverse=True)
    r_t = torch.tensor(m).unique(return_inverse=True)
    _same(r_n[0], r_t[0])
    _same(r_n[1], r_t[1])
    r_n = nbgrad.unique_consecutive(nbgrad.tensor([1, 1, 2, 2, 1, 3]), return_counts=True, return_inverse=True)
    r_t = torch.unique_consecutive(torch.tensor([1, 1, 2, 2, 1, 3]), return_counts=True, return_inverse=True)
    for a, b in zip(r_n, r_t):
        _same(a, b)
    _same(nbgrad.unique(nbgrad.zeros(0)), torch.unique(torch.zeros(0)))


@pytest.mark.parametrize("name", ["unique", "unique_consecutive"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_unique_along_a_dim(name, dim):
    x = np.random.default_rng(4).integers(0, 2, (6, 3, 2))
    x[3] = x[1]
    for data in (x, x.astype(np.float64)):
        r_n = getattr(nbgrad, name)(nbgrad.tensor(data), dim=dim, return_inverse=True, return_counts=True)
        r_t = getattr(torch, name)(torch.tensor(data), dim=dim, return_inverse=True, return_counts=True)
        for a, b in zip(r_n, r_t):
            _same(a, b)
    _same(getattr(nbgrad, name)(nbgrad.zeros(0, 2), dim=0), getattr(torch, name)(torch.zeros(0, 2), dim=0))
    _raises_like(lambda m: getattr(m, name)(m.zeros(2, 0), dim=0))


@pytest.mark.parametrize("fn", [
    lambda m: m.sort(m.ones(2, 3), 2),
    lambda m: m.topk(m.ones(3), 4),
    lambda m: m.kthvalue(m.ones(3), 4),
    lambda m: m.kthvalue(m.ones(2, 3), 0, 1),
    lambda m: m.median(m.ones(2, 0), 1),
    lambda m: m.mode(m.ones(2), 3),
])
def test_sorting_errors_as_pytorch(fn):
    _raises_like(fn)


# -- scans --------------------------------------------------------------------------------------------
SCANS = {
    "cumsum0": lambda m, t: m.cumsum(t, 0),
    "cumsum_last": lambda m, t: t.cumsum(-1),
    "cumprod1": lambda m, t: m.cumprod(t, 1),
    "cumprod_transposed": lambda m, t: t.t().cumprod(0),
}


@pytest.mark.parametrize("name", sorted(SCANS))
def test_scans_and_their_gradients(name):
    out_n, out_t = _check_grad(SCANS[name], X34)
    assert out_n.grad_fn.name() == out_t.grad_fn.name()


def test_cumprod_gradient_with_zeros_as_pytorch():
    x = X34.copy()
    x[0, 1] = x[2, 0] = x[2, 2] = x[1, 3] = 0.0
    for dim in (0, 1):
        a, b = _pair(x)
        out_n, out_t = nbgrad.cumprod(a, dim), torch.cumprod(b, dim)
        _same(out_n, out_t)
        weight = np.random.default_rng(3).standard_normal(x.shape)
        g_n, = nbgrad.autograd.grad(out_n, a, nbgrad.tensor(weight))
        g_t, = torch.autograd.grad(out_t, b, torch.tensor(weight))
        _same(g_n, g_t)
        assert gradcheck(lambda t: t.cumprod(dim), [nbgrad.tensor(x, requires_grad=True)])
        assert gradgradcheck(lambda t: t.cumprod(dim), [nbgrad.tensor(x, requires_grad=True)])
        g_n, = nbgrad.autograd.grad(nbgrad.cumprod(a, dim).pow(2).sum(), a, create_graph=True)
        g_t, = torch.autograd.grad(torch.cumprod(b, dim).pow(2).sum(), b, create_graph=True)
        _same(nbgrad.autograd.grad((g_n * g_n).sum(), a)[0], torch.autograd.grad((g_t * g_t).sum(), b)[0])


def test_scan_dtypes_0d_empty_and_cummax_ties_and_nan():
    for x in ([True, False, True], [1, 2, 3]):
        _same(nbgrad.cumsum(nbgrad.tensor(x), 0), torch.cumsum(torch.tensor(x), 0))
        _same(nbgrad.cumprod(nbgrad.tensor(x), 0), torch.cumprod(torch.tensor(x), 0))
    _same(nbgrad.cumsum(nbgrad.tensor([1, 2]), 0, dtype=nbgrad.float64),
          torch.cumsum(torch.tensor([1, 2]), 0, dtype=torch.float64))
    _same(nbgrad.cumsum(nbgrad.tensor(3.0), 0), torch.cumsum(torch.tensor(3.0), 0))
    _same(nbgrad.cumsum(nbgrad.zeros(0, 3), 0), torch.cumsum(torch.zeros(0, 3), 0))
    x = [[1.0, 3.0, 3.0, 2.0, 5.0], [2.0, 2.0, 1.0, 1.0, 0.0], [math.nan, 1.0, 2.0, math.nan, 4.0]]
    for name in ("cummax", "cummin"):
        r_n, r_t = getattr(nbgrad, name)(nbgrad.tensor(x), 1), getattr(torch, name)(torch.tensor(x), 1)
        _same(r_n.values, r_t.values)
        np.testing.assert_array_equal(r_n.indices.numpy(), r_t.indices.numpy())
    _raises_like(lambda m: m.cumsum(m.ones(2), 1))


# -- tests of values, comparisons, clamps, paired reductions -------------------------------------------
SPECIAL = np.array([[1.0, -math.inf, math.nan, 0.0], [math.inf, -2.5, 3.0, -0.0]])


@pytest.mark.parametrize("name", ["isnan", "isinf", "isfinite", "isposinf", "isneginf", "isreal"])
def test_value_tests(name):
    for x in (SPECIAL, SPECIAL.astype(np.float32).T, np.array([1, 2]), np.array(2.0)):
        _same(getattr(nbgrad, name)(nbgrad.tensor(x)), getattr(torch, name)(torch.tensor(x)))
    _same(getattr(nbgrad.tensor(SPECIAL), name)(), getattr(torch.tensor(SPECIAL), name)())


def test_nan_to_num_values_gradient_and_inplace():
    for kw in ({}, dict(nan=1.5), dict(posinf=9.0, neginf=-9.0)):
        for x in (SPECIAL, SPECIAL.astype(np.float32)):
            _same(nbgrad.nan_to_num(nbgrad.tensor(x), **kw), torch.nan_to_num(torch.tensor(x), **kw))
        x_n, x_t = nbgrad.tensor(SPECIAL), torch.tensor(SPECIAL)
        assert x_n.nan_to_num_(**kw) is x_n
        _same(x_n, x_t.nan_to_num_(**kw))
    a, b = _pair(SPECIAL)
    out_n, out_t = nbgrad.nan_to_num(a), torch.nan_to_num(b)
    assert out_n.grad_fn.name() == out_t.grad_fn.name() == "NanToNumBackward0"
    _same(nbgrad.autograd.grad(out_n.sum(), a)[0], torch.autograd.grad(out_t.sum(), b)[0])
    _same(nbgrad.nan_to_num(nbgrad.tensor([1, 2])), torch.nan_to_num(torch.tensor([1, 2])))


REDUCE_BOOL = [
    lambda m, t: m.all(t), lambda m, t: m.any(t), lambda m, t: t.all(1), lambda m, t: t.any(0, keepdim=True),
    lambda m, t: m.all(t, dim=(0, 1)), lambda m, t: m.count_nonzero(t), lambda m, t: t.count_nonzero(1),
    lambda m, t: m.count_nonzero(t, (0, 1)),
]


@pytest.mark.parametrize("k", range(len(REDUCE_BOOL)))
def test_all_any_count_nonzero(k):
    fn = REDUCE_BOOL[k]
    for x in ([[1.0, 0.0, 2.0], [3.0, 4.0, 5.0]], [[True, False], [False, False]], [[0, 0], [0, 1]]):
        _same(fn(nbgrad, nbgrad.tensor(x)), fn(torch, torch.tensor(x)))
    _same(fn(nbgrad, nbgrad.zeros(0, 2)), fn(torch, torch.zeros(0, 2)))


def test_isclose_allclose_equal():
    a = [1.0, 2.0, math.nan, math.inf, -math.inf, 1e-9]
    b = [1.0 + 1e-6, 2.1, math.nan, math.inf, math.inf, 0.0]
    for kw in ({}, dict(equal_nan=True), dict(rtol=0.1, atol=0.0), dict(rtol=0, atol=0)):
        _same(nbgrad.isclose(nbgrad.tensor(a), nbgrad.tensor(b), **kw), torch.isclose(torch.tensor(a), torch.tensor(b), **kw))
        assert nbgrad.allclose(nbgrad.tensor(a[:2]), nbgrad.tensor(b[:2]), **kw) == \
            torch.allclose(torch.tensor(a[:2]), torch.tensor(b[:2]), **kw)
    assert nbgrad.tensor([1, 2]).isclose(nbgrad.tensor([1, 3])).tolist() == [True, False]
    assert nbgrad.equal(nbgrad.tensor([1.0, 2.0]), nbgrad.tensor([1.0, 2.0]))
    assert not nbgrad.equal(nbgrad.tensor([1.0, 2.0]), nbgrad.tensor([1.0]))
    assert not nbgrad.tensor([math.nan]).equal(nbgrad.tensor([math.nan]))
    _raises_like(lambda m: m.isclose(m.tensor([1.0]), m.tensor([1])))


def test_clamp_min_max():
    _check_grad(lambda m, t: m.clamp_min(t, 0.2), X34)
    _check_grad(lambda m, t: t.clamp_max(-0.1), X34)
    x_n, x_t = nbgrad.tensor(X34), torch.tensor(X34)
    _same(x_n.clamp_min_(0.0), x_t.clamp_min_(0.0))
    _same(x_n.clamp_max_(0.5), x_t.clamp_max_(0.5))


@pytest.mark.parametrize("fn", [
    lambda m, t: m.std_mean(t), lambda m, t: m.var_mean(t, 1), lambda m, t: m.std_mean(t, (0, 1), keepdim=True),
    lambda m, t: m.var_mean(t, 0, correction=0), lambda m, t: m.std_mean(t, dim=1, unbiased=False),
])
def test_std_mean_var_mean(fn):
    a, b = _pair(X34)
    r_n, r_t = fn(nbgrad, a), fn(torch, b)
    for u, v in zip(r_n, r_t):
        _same(u, v)
    g_n = nbgrad.autograd.grad(r_n[0].sum() + 2 * r_n[1].sum(), a)[0]
    g_t = torch.autograd.grad(r_t[0].sum() + 2 * r_t[1].sum(), b)[0]
    _same(g_n, g_t)


def test_aminmax():
    for kw in ({}, dict(dim=1), dict(dim=0, keepdim=True), dict(keepdim=True)):
        r_n, r_t = nbgrad.aminmax(nbgrad.tensor(X34), **kw), torch.aminmax(torch.tensor(X34), **kw)
        _same(r_n.min, r_t.min)
        _same(r_n.max, r_t.max)
    assert type(r_n).__name__ == "aminmax"
    _raises_like(lambda m: m.aminmax(m.zeros(0)))


# -- norms --------------------------------------------------------------------------------------------
NORMS = {
    "vector_2": lambda m, t: m.linalg.vector_norm(t),
    "vector_1_dim": lambda m, t: m.linalg.vector_norm(t, 1, dim=1),
    "vector_inf": lambda m, t: m.linalg.vector_norm(t, math.inf, 0, True),
    "vector_-inf": lambda m, t: m.linalg.vector_norm(t, -math.inf, 1),
    "vector_3": lambda m, t: m.linalg.vector_norm(t, 3, (0, 1)),
    "vector_0.5": lambda m, t: m.linalg.vector_norm(t, 0.5, 1),
    "vector_1.5": lambda m, t: m.linalg.vector_norm(t, 1.5),
    "matrix_fro": lambda m, t: m.linalg.matrix_norm(t),
    "matrix_1": lambda m, t: m.linalg.matrix_norm(t, 1),
    "matrix_-1": lambda m, t: m.linalg.matrix_norm(t, -1, keepdim=True),
    "matrix_inf": lambda m, t: m.linalg.matrix_norm(t, math.inf, dim=(1, 0)),
    "linalg_norm": lambda m, t: m.linalg.norm(t),
    "linalg_norm_1": lambda m, t: m.linalg.norm(t, 1),
    "linalg_norm_dim": lambda m, t: m.linalg.norm(t, dim=1, keepdim=True),
    "norm": lambda m, t: t.norm(),
    "norm_p_dim": lambda m, t: m.norm(t, 1, dim=0),
    "norm_fro_dims": lambda m, t: m.norm(t, "fro", dim=(0, 1)),
    "norm_3": lambda m, t: t.norm(3),
}
# extreme-value norms have kinks: their second derivatives are checked at distinct values only
KINKED = {"vector_inf", "vector_-inf", "matrix_1", "matrix_-1", "matrix_inf", "linalg_norm_1"}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_norms(name):
    _check_grad(NORMS[name], X34, check_gradgrad=name not in KINKED)


def test_norm_gradient_at_zero_and_batched():
    for p in (2, 1, 3, 0.5, math.inf):
        a, b = _pair(np.zeros((2, 3)))
        _same(nbgrad.autograd.grad(nbgrad.linalg.vector_norm(a, p), a)[0],
              torch.autograd.grad(torch.linalg.vector_norm(b, p), b)[0])
    _check_grad(lambda m, t: m.linalg.matrix_norm(t, "fro"), X345)
    _same(nbgrad.linalg.vector_norm(nbgrad.tensor(X34), 0, 1), torch.linalg.vector_norm(torch.tensor(X34), 0, 1))


@pytest.mark.parametrize("shape,ord,kw", [
    ((3, 4), "nuc", {}), ((3, 4), 2, {}), ((4, 3), -2, {}), ((2, 3, 4), "nuc", {"keepdim": True}),
    ((3, 4, 2), 2, {"dim": (0, 2)}), ((2, 3, 3), -2, {"dim": (2, 1), "keepdim": True}),
    ((2, 2, 3, 4), "nuc", {}),           # two batch dims: the backward's batch is flattened
])
def test_nuclear_and_spectral_norms(shape, ord, kw):
    x = np.random.default_rng(6).standard_normal(shape)
    out_n, out_t = _check_grad(lambda m, t: m.linalg.matrix_norm(t, ord, **kw), x, check_gradgrad=False)
    if not kw.get("keepdim"):
        assert out_n.grad_fn.name() == out_t.grad_fn.name()
    _same(nbgrad.linalg.svdvals(nbgrad.tensor(x)), torch.linalg.svdvals(torch.tensor(x)))
    if len(shape) == 2:
        _same(nbgrad.norm(nbgrad.tensor(x), "nuc"), torch.norm(torch.tensor(x), "nuc"))
    a = nbgrad.tensor(x, requires_grad=True)
    with pytest.raises(NotImplementedError, match="cannot be recorded"):
        nbgrad.autograd.grad(nbgrad.linalg.matrix_norm(a, ord, **kw).sum(), a, create_graph=True)


def test_svd_norms_of_empty_and_non_finite_matrices():
    for ord in ("nuc", 2):
        _same(nbgrad.linalg.matrix_norm(nbgrad.zeros(0, 3), ord), torch.linalg.matrix_norm(torch.zeros(0, 3), ord))
    with pytest.raises(nbgrad.linalg.LinAlgError, match="contained non-finite values"):
        nbgrad.linalg.svdvals(nbgrad.tensor([[math.nan, 1.0], [1.0, 1.0]]))
    assert issubclass(nbgrad.linalg.LinAlgError, RuntimeError)


@pytest.mark.parametrize("fn", [
    lambda m: m.linalg.vector_norm(m.tensor([1, 2])),
    lambda m: m.linalg.matrix_norm(m.ones(2)),
    lambda m: m.linalg.matrix_norm(m.ones(2, 2), ord=3),
    lambda m: m.linalg.norm(m.ones(2, 2, 2), ord=2),
    lambda m: m.linalg.vector_norm(m.ones(2, 0), ord=math.inf),
    lambda m: m.linalg.vector_norm(m.ones(2, 2), ord="fro"),
])
def test_norm_errors_as_pytorch(fn):
    _raises_like(fn)


# -- einsum -------------------------------------------------------------------------------------------
EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->i", [(3, 3)]), ("ii", [(3, 3)]), ("i,i->", [(4,), (4,)]), ("i,j->ij", [(3,), (4,)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]), ("ij->ji", [(2, 3)]), ("ijk->", [(2, 3, 4)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]), ("ij,ij->ij", [(2, 3), (2, 3)]), ("iij->j", [(3, 3, 2)]),
    ("ab,cd->", [(2, 3), (4, 5)]), ("i...->...", [(2, 3, 4)]), ("...,...->...", [(3, 1), (1, 4)]),
    ("b i j, j k", [(2, 3, 4), (4, 5)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("->", [()]),
]


@pytest.mark.parametrize("equation,shapes", EINSUM)
def test_einsum(equation, shapes):
    xs = [RNG.standard_normal(s) for s in shapes]
    ours = [nbgrad.tensor(x, requires_grad=True) for x in xs]
    theirs = [torch.tensor(x, requires_grad=True) for x in xs]
    out_n, out_t = nbgrad.einsum(equation, *ours), torch.einsum(equation, *theirs)
    _same(out_n, out_t)
    weight = RNG.standard_normal(tuple(out_t.shape))
    for g_n, g_t in zip(nbgrad.autograd.grad(out_n, ours, nbgrad.tensor(weight)),
                        torch.autograd.grad(out_t, theirs, torch.tensor(weight))):
        _same(g_n, g_t)
    assert gradgradcheck(lambda *ts: nbgrad.einsum(equation, *ts), ours)
    _same(nbgrad.einsum(equation, ours), torch.einsum(equation, theirs))         # operands as a list


def test_einsum_integers_and_views():
    a, b = RNG.integers(-5, 5, (3, 4)), RNG.integers(-5, 5, (4, 2))
    _same(nbgrad.einsum("ij,jk->ik", nbgrad.tensor(a), nbgrad.tensor(b)),
          torch.einsum("ij,jk->ik", torch.tensor(a), torch.tensor(b)))
    _same(nbgrad.einsum("ji->j", nbgrad.tensor(X34).t()), torch.einsum("ji->j", torch.tensor(X34).t()))


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4)]), ("ij->ik", [(3, 4)]), ("ijk->", [(3, 4)]), ("ij,jk->ii", [(3, 4), (4, 5)]),
    ("i->", [(3,), (3,)]), ("ij,jk->ik", [(3, 4), (3, 5)]),
])
def test_einsum_errors_as_pytorch(equation, shapes):
    _raises_like(lambda m: m.einsum(equation, *[m.ones(s) for s in shapes]))


# -- rearranging --------------------------------------------------------------------------------------
ARRANGE = {
    "tril": lambda m, t: m.tril(t, 1), "triu": lambda m, t: t.triu(-1), "tril_batched": lambda m, t: t.tril(),
    "diagonal": lambda m, t: t.diagonal(1, 0, 2), "diagonal_neg": lambda m, t: m.diagonal(t, -1, 2, 1),
    "diag_of_vector": lambda m, t: m.diag(t[0, 0]), "diag_offset": lambda m, t: m.diag(t[0, 0], 2),
    "diag_of_matrix": lambda m, t: t[0].diag(-1), "diag_embed": lambda m, t: m.diag_embed(t, 1),
    "trace": lambda m, t: t[0].trace(), "roll": lambda m, t: t.roll((1, -2), (0, 2)),
    "roll_flat": lambda m, t: m.roll(t, 3), "rot90": lambda m, t: m.rot90(t, 1, (1, 2)),
    "rot90_2": lambda m, t: t.rot90(2), "rot90_-1": lambda m, t: t.rot90(-1, [0, 2]),
    "tile": lambda m, t: t.tile((2, 1)), "tile_more": lambda m, t: m.tile(t, (2, 1, 1, 2)),
    "repeat_interleave": lambda m, t: t.repeat_interleave(2, dim=1),
    "repeat_interleave_flat": lambda m, t: t.repeat_interleave(2),
    "repeat_interleave_tensor": lambda m, t: m.repeat_interleave(t, m.tensor([1, 0, 2]), dim=2),
    "fliplr": lambda m, t: t.fliplr(), "flipud": lambda m, t: m.flipud(t),
}


@pytest.mark.parametrize("name", sorted(ARRANGE))
def test_rearranging_ops(name):
    x = RNG.standard_normal((2, 3, 3))
    out_n, out_t = _check_grad(ARRANGE[name], x)
    if name.split("_")[0] in ("tril", "triu", "diagonal", "roll") and name != "roll_flat":
        assert out_n.grad_fn.name() == out_t.grad_fn.name()


def test_diagonal_is_a_view_and_tril_inplace():
    x_n, x_t = nbgrad.tensor(X34), torch.tensor(X34)
    d_n, d_t = x_n.diagonal(1), x_t.diagonal(1)
    d_n.fill_(7.0)
    d_t.fill_(7.0)
    _same(x_n, x_t)
    assert x_n.triu_(1) is x_n
    _same(x_n, x_t.triu_(1))
    _same(x_n.tril_(), x_t.tril_())
    _same(nbgrad.tensor([[True, True], [True, True]]).tril(), torch.tensor([[True, True], [True, True]]).tril())
    _same(nbgrad.ones(0, 3).tril(), torch.ones(0, 3).tril())
    _same(nbgrad.ones(2, 5).diagonal(-4), torch.ones(2, 5).diagonal(-4))


@pytest.mark.parametrize("fn", [
    lambda m: m.tril(m.ones(3)), lambda m: m.ones(3).diagonal(), lambda m: m.ones(2, 2).diagonal(0, 1, 1),
    lambda m: m.ones(3, 3, 3).trace(), lambda m: m.roll(m.ones(3, 3), (1, 2), 0), lambda m: m.roll(m.ones(3), (1, 2)),
    lambda m: m.rot90(m.ones(3)), lambda m: m.rot90(m.ones(2, 2), 1, (0, 0)), lambda m: m.ones(2, 2, 2).diag(),
    lambda m: m.repeat_interleave(m.ones(3), m.tensor([1, 2])), lambda m: m.fliplr(m.ones(3)),
])
def test_rearranging_errors_as_pytorch(fn):
    _raises_like(fn)


# -- index ops, counts ----------------------------------------------------------------------------------
MASK = RNG.random((3, 4)) > 0.5
INDEX_OPS = {
    "index_add": lambda m, t, s: t.index_add(0, m.tensor([2, 0]), s, alpha=2),
    "index_add_repeated": lambda m, t, s: m.index_add(t, 0, m.tensor([1, 1]), s),
    "index_add_dim1": lambda m, t, s: t.index_add(1, m.tensor([3, 0]), s.t()[:3]),
    "index_copy": lambda m, t, s: t.index_copy(0, m.tensor([2, 0]), s),
    "index_fill": lambda m, t, s: t.index_fill(1, m.tensor([1, 3]), -1.0) * s.sum(),
    "index_fill_tensor_value": lambda m, t, s: t.index_fill(0, m.tensor([2, 0]), s[1, 2]),
    "masked_scatter": lambda m, t, s: t.masked_scatter(m.tensor(MASK), s.reshape(-1)),
    "masked_scatter_broadcast": lambda m, t, s: t.masked_scatter(m.tensor(MASK[0]), m.cat([s.reshape(-1)] * 2)),
    "put": lambda m, t, s: t.put(m.tensor([0, 5, 11, 3, 2, 1, 4, 6]), s.reshape(-1)),
    "put_accumulate": lambda m, t, s: t.put(m.tensor([0, 5, 5, 3, 2, 1, 4, -1]), s.reshape(-1), accumulate=True),
}


@pytest.mark.parametrize("name", sorted(INDEX_OPS))
def test_index_ops_values_and_gradients(name):
    fn = INDEX_OPS[name]
    src = RNG.standard_normal((2, 4))
    a, b = _pair(X34)
    sa, sb = _pair(src)
    out_n, out_t = fn(nbgrad, a, sa), fn(torch, b, sb)
    _same(out_n, out_t)
    weight = RNG.standard_normal(tuple(out_t.shape))
    for g_n, g_t in zip(nbgrad.autograd.grad(out_n, (a, sa), nbgrad.tensor(weight)),
                        torch.autograd.grad(out_t, (b, sb), torch.tensor(weight))):
        _same(g_n, g_t)
    assert gradgradcheck(lambda *ts: fn(nbgrad, *ts), [a, sa])


@pytest.mark.parametrize("fn", [
    lambda m: m.zeros(3, 4).index_add_(1, m.tensor([0, 0, 2]), m.ones(3, 3)),
    lambda m: m.zeros(3, 4).index_copy_(1, m.tensor([0, 2]), m.ones(3, 2)),
    lambda m: m.zeros(3, 4).put_(m.tensor([1, 1]), m.tensor([1.0, 2.0]), True),
    lambda m: m.zeros(3, 4).index_fill_(0, m.tensor([1]), 5),
    lambda m: m.zeros(2, 2).masked_scatter_(m.tensor([True, False]), m.arange(4.0)),
])
def test_index_ops_in_place(fn):
    _same(fn(nbgrad), fn(torch))


@pytest.mark.parametrize("fn", [
    lambda m: m.zeros(2, 3).put_(m.tensor([10]), m.tensor([1.0])),
    lambda m: m.zeros(2, 3).masked_scatter(m.ones(2, 3, dtype=m.bool), m.ones(2)),
    lambda m: m.zeros(2, 3).index_add(0, m.tensor([0, 1]), m.ones(3, 3)),
    lambda m: m.zeros(2, 3).index_add(0, m.tensor([0, 5]), m.ones(2, 3)),
    lambda m: m.zeros(2, 3).index_add(0, m.tensor([[0, 1]]), m.ones(2, 3)),
    lambda m: m.zeros(2, 3).index_add(0, m.tensor([0, 1]), m.ones(2, 3, dtype=m.float64)),
    lambda m: m.zeros(2, 3).index_copy(0, m.tensor([0, 5]), m.ones(2, 3)),
    lambda m: m.zeros(2, 3).index_fill(1, m.tensor([0, 5]), 2.0),
    lambda m: m.zeros(2, 3).index_fill(1, m.tensor([0.0]), 2.0),
    lambda m: m.zeros(2, 3).masked_scatter(m.ones(2, 3), m.ones(6)),
    lambda m: m.zeros(2, 3).put(m.tensor([1]), m.ones(2)),
    lambda m: m.zeros(2, requires_grad=True).index_add_(0, m.tensor([0]), m.ones(1)),
    lambda m: m.zeros(2, dtype=m.float64).masked_scatter(m.tensor([True, False]), m.ones(2)),
])
def test_index_op_errors_as_pytorch(fn):
    _raises_like(fn)


@pytest.mark.parametrize("fn", [
    lambda m: m.bincount(m.tensor([1, 3, 3, 0])),
    lambda m: m.bincount(m.tensor([1, 3]), weights=m.tensor([1.0, 2.0], dtype=m.float32), minlength=5),
    lambda m: m.bincount(m.tensor([1, 3]), weights=m.tensor([1.0, 2.0], dtype=m.float64)),
    lambda m: m.bincount(m.tensor([], dtype=m.int64)),
    lambda m: m.tensor([2, 2, 0]).bincount(minlength=2),
    lambda m: m.histc(m.tensor([1.0, 2.0, 3.0, 4.0, 2.0]), 3),
    lambda m: m.histc(m.tensor([1.0, 2.0, 3.0, 4.0, 2.0, 9.0, -1.0, math.nan]), 4, 0, 4),
    lambda m: m.tensor([0.5, 0.5], dtype=m.float64).histc(bins=2),
])
def test_counts(fn):
    _same(fn(nbgrad), fn(torch))


@pytest.mark.parametrize("fn", [
    lambda m: m.bincount(m.tensor([-1])), lambda m: m.bincount(m.tensor([1.0])),
    lambda m: m.bincount(m.tensor([[1]])), lambda m: m.histc(m.tensor([1, 2]), 3),
    lambda m: m.histc(m.tensor([1.0, 2.0]), 3, min=3, max=1),
])
def test_count_errors_as_pytorch(fn):
    _raises_like(fn)


# -- random -------------------------------------------------------------------------------------------
def test_random_fillers_distributions_and_seed():
    nbgrad.manual_seed(0)
    x = nbgrad.zeros(20000)
    assert x.uniform_(2, 3) is x and 2 <= x.min().item() and x.max().item() < 3
    assert abs(x.mean().item() - 2.5) < 0.02
    x.normal_(1.0, 2.0)
    assert abs(x.mean().item() - 1.0) < 0.1 and abs(x.std().item() - 2.0) < 0.1
    x.exponential_(2.0)
    assert abs(x.mean().item() - 0.5) < 0.03 and x.min().item() >= 0
    x.bernoulli_(0.3)
    assert set(x.unique().tolist()) == {0.0, 1.0} and abs(x.mean().item() - 0.3) < 0.03
    x.random_(3, 7)
    assert x.unique().tolist() == [3.0, 4.0, 5.0, 6.0]
    ints = nbgrad.zeros(1000, dtype=nbgrad.int64).random_(5)
    assert ints.dtype is nbgrad.int64 and ints.unique().tolist() == [0, 1, 2, 3, 4]
    assert abs(nbgrad.bernoulli(nbgrad.full((20000,), 0.25)).mean().item() - 0.25) < 0.02
    nbgrad.manual_seed(5)
    first = nbgrad.empty(4).uniform_().tolist()
    nbgrad.manual_seed(5)
    assert nbgrad.empty(4).uniform_().tolist() == first


def test_multinomial_randperm_normal():
    nbgrad.manual_seed(1)
    draws = nbgrad.multinomial(nbgrad.tensor([1.0, 3.0]), 20000, True)
    assert draws.dtype is nbgrad.int64 and abs(draws.float().mean().item() - 0.75) < 0.02
    picks = nbgrad.multinomial(nbgrad.tensor([[0.0, 1.0, 5.0, 0.0], [2.0, 2.0, 0.0, 1.0]]), 3)
    assert picks.shape == (2, 3)
    assert all(len(set(row)) == 3 for row in picks.tolist()) and picks[0, :2].sort().values.tolist() == [1, 2]
    perm = nbgrad.randperm(50)
    assert perm.dtype is nbgrad.int64 and sorted(perm.tolist()) == list(range(50))
    assert nbgrad.randperm(5, dtype=nbgrad.float32).dtype is nbgrad.float32
    assert nbgrad.normal(nbgrad.zeros(3), 1.0).shape == (3,) and nbgrad.normal(0.0, 1.0, (2, 2)).shape == (2, 2)


def test_random_fills_record_zero_gradients():
    leaf = nbgrad.ones(3, requires_grad=True)
    y = leaf * 2
    y.uniform_()
    assert y.grad_fn.name() == "UniformBackward0"
    y.sum().backward()
    assert leaf.grad.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("fn", [
    lambda m: m.multinomial(m.tensor([[[1.0]]]), 1), lambda m: m.multinomial(m.tensor([0.0, 0.0]), 1),
    lambda m: m.multinomial(m.tensor([-1.0, 2.0]), 1), lambda m: m.multinomial(m.tensor([1.0, 2.0]), 3),
    lambda m: m.zeros(3).random_(5, 2), lambda m: m.zeros(3).bernoulli_(1.5), lambda m: m.zeros(2).normal_(0, -1),
    lambda m: m.zeros(2).exponential_(-1), lambda m: m.zeros(2, requires_grad=True).uniform_(),
    lambda m: m.zeros(3, dtype=m.int64).uniform_(),
])
def test_random_errors_as_pytorch(fn):
    _raises_like(fn)


# -- nn.functional.pad, one_hot -------------------------------------------------------------------------
PADS = [((1, 2, 3), (1, 2), "constant", {}), ((1, 2, 3), (1, 2, 0, 1), "constant", {"value": 2.5}),
        ((2, 3), (-1, 2), "constant", {}), ((1, 2, 3), (2, 1), "reflect", {}),
        ((1, 2, 3, 4), (1, 2, 2, 1), "reflect", {}), ((1, 2, 3), (2, 1), "replicate", {}),
        ((1, 1, 2, 3, 4), (1, 1, 2, 0, 1, 2), "replicate", {}), ((1, 2, 3), (2, 3), "circular", {}),
        ((1, 2, 3, 4), (1, 0, 2, 1), "circular", {}), ((2, 3), (1, 1), "reflect", {}), ((3,), (1, 1), "constant", {})]


@pytest.mark.parametrize("shape,pad,mode,kw", PADS)
def test_pad(shape, pad, mode, kw):
    _check_grad(lambda m, t: m.nn.functional.pad(t, pad, mode, **kw), RNG.standard_normal(shape))


@pytest.mark.parametrize("fn", [
    lambda m: m.nn.functional.pad(m.ones(1, 2, 3), (1, 2, 3)),
    lambda m: m.nn.functional.pad(m.ones(1, 2, 3), (4, 4), mode="reflect"),
    lambda m: m.nn.functional.pad(m.ones(3), (1, 1), mode="reflect"),
    lambda m: m.nn.functional.pad(m.ones(1, 2, 3), (1, 1), mode="foo"),
    lambda m: m.nn.functional.pad(m.ones(1, 2, 3), (1, 1, 1, 1, 1, 1, 1, 1)),
    lambda m: m.nn.functional.pad(m.ones(1, 2, 3), (4, 4), mode="circular"),
    lambda m: m.nn.functional.one_hot(m.tensor([1.0])),
    lambda m: m.nn.functional.one_hot(m.tensor([3]), 2),
    lambda m: m.nn.functional.one_hot(m.tensor([-1])),
])
def test_pad_and_one_hot_errors_as_pytorch(fn):
    _raises_like(fn)


def test_one_hot():
    for x, n in (([[0, 2], [1, 1]], -1), ([1], 4), (3, 5)):
        _same(nbgrad.nn.functional.one_hot(nbgrad.tensor(x), n), torch.nn.functional.one_hot(torch.tensor(x), n))


# -- indexing, aliases, out=, bitwise ---------------------------------------------------------------------
@pytest.mark.parametrize("index", [
    lambda m: (range(3), m.tensor([0, 1, 2])), lambda m: range(1, 3), lambda m: [0.0, 1.0], lambda m: [0.5],
    lambda m: ([1.0, 2.0], [0, 1]), lambda m: range(0), lambda m: (slice(None), range(0, 4, 2)),
])
def test_indexing_by_range_and_float_lists(index):
    x_n, x_t = nbgrad.tensor(X34, requires_grad=True), torch.tensor(X34, requires_grad=True)
    out_n, out_t = x_n[index(nbgrad)], x_t[index(torch)]
    _same(out_n, out_t)
    if out_t.numel():
        _same(nbgrad.autograd.grad(out_n.sum(), x_n)[0], torch.autograd.grad(out_t.sum(), x_t)[0])


def test_cross_entropy_style_gather_with_range():
    logp = nbgrad.tensor(X34).log_softmax(1)
    target = nbgrad.tensor([3, 0, 1])
    expected = torch.tensor(X34).log_softmax(1)[range(3), torch.tensor([3, 0, 1])]
    _same(logp[range(3), target], expected)
    _raises_like(lambda m: m.ones(3)[(0.0,)])


@pytest.mark.parametrize("fn", [
    lambda m, t: t.sum(axis=0, keepdims=True), lambda m, t: m.mean(t, axis=1), lambda m, t: t.max(axis=0),
    lambda m, t: m.std(t, axis=0), lambda m, t: t.amax(axis=0), lambda m, t: t.argmax(axis=1),
    lambda m, t: t.prod(axis=0, keepdims=True), lambda m, t: m.cat([t, t], axis=0), lambda m, t: m.stack([t, t], axis=2),
    lambda m, t: t.logsumexp(axis=0), lambda m, t: t.var(axis=0, keepdims=True), lambda m, t: t.any(axis=0),
    lambda m, t: t.all(axis=0), lambda m, t: t.cumsum(axis=0), lambda m, t: t.softmax(axis=0),
    lambda m, t: m.sort(t, axis=0),
])
def test_numpy_keyword_aliases(fn):
    r_n, r_t = fn(nbgrad, nbgrad.tensor(X34)), fn(torch, torch.tensor(X34))
    if isinstance(r_t, tuple):
        for a, b in zip(r_n, r_t):
            _same(a, b)
    else:
        _same(r_n, r_t)


@pytest.mark.parametrize("fn", [
    lambda m, t, o: m.add(t, t, out=o), lambda m, t, o: m.mul(t, 3, out=o), lambda m, t, o: m.sub(t, 1, out=o),
    lambda m, t, o: m.matmul(t, t.t(), out=o), lambda m, t, o: m.sum(t, 0, out=o), lambda m, t, o: m.cat([t, t], out=o),
    lambda m, t, o: m.stack([t, t], out=o), lambda m, t, o: m.exp(t, out=o), lambda m, t, o: m.cumsum(t, 1, out=o),
    lambda m, t, o: m.mean(t, 1, out=o), lambda m, t, o: m.norm(t, out=o),
])
def test_out(fn):
    o_n, o_t = nbgrad.empty(0, dtype=nbgrad.float64), torch.empty(0, dtype=torch.float64)
    r_n, r_t = fn(nbgrad, nbgrad.tensor(X34), o_n), fn(torch, torch.tensor(X34), o_t)
    assert r_n is o_n and r_t is o_t
    _same(o_n, o_t)
    full_n = nbgrad.zeros(tuple(o_t.shape), dtype=nbgrad.float64)
    assert fn(nbgrad, nbgrad.tensor(X34), full_n) is full_n
    _same(full_n, o_t)


def test_out_tuple_and_refusals():
    v, i = nbgrad.empty(4), nbgrad.empty(4, dtype=nbgrad.int64)
    r = nbgrad.max(nbgrad.tensor(X34, dtype=nbgrad.float32), 0, out=(v, i))
    expected = torch.max(torch.tensor(X34, dtype=torch.float32), 0)
    _same(v, expected.values)
    _same(i, expected.indices)
    assert r.values is v
    _raises_like(lambda m: m.add(m.ones(2, requires_grad=True), 1, out=m.empty(2)))
    with pytest.warns(UserWarning, match="An output with one or more elements was resized"):
        nbgrad.add(nbgrad.ones(3), 1, out=nbgrad.empty(2))


def test_bitwise_ops_and_in_place_forms():
    a, b = [5, 3, 12, -7], [3, 6, 10, 2]
    for name in ("__and__", "__or__", "__xor__"):
        _same(getattr(nbgrad.tensor(a), name)(nbgrad.tensor(b)), getattr(torch.tensor(a), name)(torch.tensor(b)))
        _same(getattr(nbgrad.tensor(a), name)(6), getattr(torch.tensor(a), name)(6))
    _same(~nbgrad.tensor(a), ~torch.tensor(a))
    _same(nbgrad.bitwise_xor(nbgrad.tensor([True, False]), nbgrad.tensor([True, True])),
          torch.bitwise_xor(torch.tensor([True, False]), torch.tensor([True, True])))
    x_n, x_t = nbgrad.tensor(a), torch.tensor(a)
    for op in ("__ior__", "__iand__", "__ixor__"):
        before = x_n
        x_n = getattr(x_n, op)(nbgrad.tensor(b))
        x_t = getattr(x_t, op)(torch.tensor(b))
        assert x_n is before
        _same(x_n, x_t)
    _raises_like(lambda m: m.tensor([1.0]) & 1)
    _raises_like(lambda m: ~m.tensor([1.0]))


@pytest.mark.parametrize("fn", [
    lambda m: m.tensor([1.0, 2.0, 3.0]).cumsum_(0), lambda m: m.tensor([[1.0, 2.0], [3.0, 4.0]]).cumprod_(1),
    lambda m: m.tensor([5, 3, 12]).bitwise_and_(m.tensor([3, 6, 10])), lambda m: m.tensor([5, 3]).bitwise_or_(2),
    lambda m: m.tensor([5, 3]).bitwise_xor_(m.tensor([1, 1])), lambda m: m.tensor([5, -3]).bitwise_not_(),
    lambda m: m.tensor([True, False]).logical_not_(), lambda m: m.tensor([True, False]).logical_and_(m.tensor([True, True])),
    lambda m: m.tensor([1.0, 0.0]).logical_or_(m.tensor([0.0, 0.0])), lambda m: m.clamp_min_(m.tensor([-1.0, 2.0]), 0),
    lambda m: m.clamp_max_(m.tensor([-1.0, 2.0]), 0), lambda m: m.tensor([1.0, 2.0]).diag_embed(),
])
def test_more_in_place_forms(fn):
    _same(fn(nbgrad), fn(torch))


def test_in_place_scan_records_its_gradient():
    a, b = _pair(X34)
    y_n, y_t = a * 2, b * 2
    y_n.cumsum_(1)
    y_t.cumsum_(1)
    _same(nbgrad.autograd.grad(y_n.sum(), a)[0], torch.autograd.grad(y_t.sum(), b)[0])


def test_index_ops_in_place_through_views_record_gradients():
    results = []
    for m in (nbgrad, torch):
        x = m.zeros(3, 4)
        x.t().index_add_(0, m.tensor([0, 0, 2]), m.ones(3, 3))
        x[:, 1:].put_(m.tensor([0, 4]), m.tensor([1.0, 2.0]))
        a = m.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
        y = a * 1
        y.t().index_fill_(0, m.tensor([1]), 0.0)
        y[0].masked_scatter_(m.tensor([True, False, True, False]), m.tensor([7.0, 8.0], dtype=m.float64))
        y.sum().backward()
        results.append((x, y, a.grad))
    for ours, theirs in zip(*results):
        _same(ours, theirs)


# -- one sweep over 0-d, size-0 and non-contiguous inputs: the same values, or the same error --------------
SWEEP = {
    "sort": lambda m, t: m.sort(t, -1), "argsort": lambda m, t: m.argsort(t, 0, descending=True),
    "topk": lambda m, t: m.topk(t, 1, 0), "kthvalue": lambda m, t: m.kthvalue(t, 1, -1),
    "median": lambda m, t: m.median(t, -1), "median_all": lambda m, t: m.median(t), "mode": lambda m, t: m.mode(t, 0),
    "unique": lambda m, t: m.unique(t, return_counts=True), "msort": lambda m, t: m.msort(t),
    "cumsum": lambda m, t: m.cumsum(t, 0), "cumprod": lambda m, t: m.cumprod(t, -1), "cummax": lambda m, t: m.cummax(t, 0),
    "isnan": lambda m, t: m.isnan(t), "nan_to_num": lambda m, t: m.nan_to_num(t), "all": lambda m, t: m.all(t, -1),
    "any": lambda m, t: m.any(t), "count_nonzero": lambda m, t: m.count_nonzero(t, 0),
    "aminmax": lambda m, t: m.aminmax(t, dim=0), "std_mean": lambda m, t: m.std_mean(t, 0),
    "vector_norm": lambda m, t: m.linalg.vector_norm(t, 2, 0), "norm": lambda m, t: m.norm(t, 1),
    "matrix_norm": lambda m, t: m.linalg.matrix_norm(t, 1), "einsum": lambda m, t: m.einsum("...->", t),
    "tril": lambda m, t: m.tril(t, -1), "diagonal": lambda m, t: m.diagonal(t), "trace": lambda m, t: m.trace(t),
    "roll": lambda m, t: m.roll(t, 1, 0), "rot90": lambda m, t: m.rot90(t), "tile": lambda m, t: m.tile(t, (2,)),
    "repeat_interleave": lambda m, t: m.repeat_interleave(t, 2, 0), "fliplr": lambda m, t: m.fliplr(t),
    "index_add": lambda m, t: t.index_add(0, m.tensor([0]), t.narrow(0, 0, 1) if t.ndim else t),
    "index_fill": lambda m, t: t.index_fill(-1, m.tensor([0]), 1.5) if t.numel() else t,
    "histc": lambda m, t: m.histc(t, 4),
    "pad": lambda m, t: m.nn.functional.pad(t, (1, 1)),
}
SWEEP_INPUTS = {
    "0-d": lambda: np.array(1.5),
    "size-0 rows": lambda: np.zeros((0, 3)),
    "size-0 cols": lambda: np.zeros((3, 0)),
    "transposed": lambda: X34.T,
    "sliced": lambda: X345[:, ::2, 1],
}


def _results(r):
    return list(r) if isinstance(r, tuple) else [r]


@pytest.mark.parametrize("kind", sorted(SWEEP_INPUTS))
@pytest.mark.parametrize("name", sorted(SWEEP))
def test_edge_shapes_and_layouts(name, kind):
    data = SWEEP_INPUTS[kind]()
    base = np.ascontiguousarray(X345[:, ::2, 1]) if kind == "sliced" else None
    t_n = nbgrad.tensor(X345)[:, ::2, 1] if kind == "sliced" else (
        nbgrad.tensor(np.ascontiguousarray(data.T)).t() if kind == "transposed" else nbgrad.tensor(data))
    t_t = torch.tensor(base if base is not None else data)
    assert kind != "transposed" or not t_n.is_contiguous()
    try:
        expected = SWEEP[name](torch, t_t)
    except Exception as error:
        with pytest.raises(type(error)) as ours:
            SWEEP[name](nbgrad, t_n)
        assert str(ours.value) == str(error)
        return
    for a, b in zip(_results(SWEEP[name](nbgrad, t_n)), _results(expected)):
        _same(a, b)


NAMES = ("all any allclose isclose equal isnan isinf isfinite isposinf isneginf nan_to_num nan_to_num_ norm cumsum "
         "cumsum_ cumprod cumprod_ sort argsort topk kthvalue median nanmedian mode msort unique unique_consecutive "
         "einsum tril triu tril_ triu_ diag diagonal diag_embed trace roll rot90 tile repeat_interleave fliplr "
         "flipud index_add index_add_ index_copy index_copy_ index_fill index_fill_ masked_scatter masked_scatter_ "
         "put put_ bincount histc clamp_min clamp_max clamp_min_ clamp_max_ std_mean var_mean aminmax cummax cummin "
         "count_nonzero uniform_ normal_ bernoulli bernoulli_ random_ exponential_ multinomial randperm normal "
         "poisson bitwise_and bitwise_or bitwise_xor bitwise_not bitwise_and_ bitwise_or_ bitwise_xor_ "
         "bitwise_not_ logical_and_ logical_or_ logical_xor_ logical_not_").split()


@pytest.mark.parametrize("name", NAMES)
def test_function_and_method_wherever_pytorch_has_them(name):
    assert hasattr(nbgrad, name) == hasattr(torch, name) or not hasattr(torch, name)
    assert hasattr(nbgrad.Tensor, name) or not hasattr(torch.Tensor, name)
    for f in (getattr(nbgrad, name, None), getattr(nbgrad.Tensor, name, None)):
        assert f is None or (f.__doc__ or "").strip(), f"{name} has no docstring"
    for sub in ("vector_norm", "matrix_norm", "norm"):
        assert callable(getattr(nbgrad.linalg, sub))
    assert callable(nbgrad.nn.functional.pad) and callable(nbgrad.nn.functional.one_hot)


@pytest.mark.parametrize("shape", [(600, 700), (3, 4, 5), (40, 90, 80)])
def test_scans_along_every_dim_serial_and_parallel(shape):
    x = np.random.default_rng(7).standard_normal(shape)
    for d in range(len(shape)):
        for name in ("cumsum", "cumprod"):
            _same(getattr(nbgrad, name)(nbgrad.tensor(x), d), getattr(torch, name)(torch.tensor(x), d), rtol=1e-9)
        ints = (x * 3).astype(np.int64)
        _same(nbgrad.cumsum(nbgrad.tensor(ints), d), torch.cumsum(torch.tensor(ints), d))
        f32 = x.astype(np.float32)
        _same(nbgrad.cumsum(nbgrad.tensor(f32), d), torch.cumsum(torch.tensor(f32), d), rtol=1e-4, atol=1e-4)
