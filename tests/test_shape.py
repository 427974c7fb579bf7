"""Shape ops: values, gradients, grad_fn names and view-or-copy decisions against PyTorch
(over shapes from 0-d up, size-1 dims, negative dims, transposed and sliced inputs,
float32 and float64), finite differences in float64, view semantics (shared memory and
version counter, writes through views, in-place updates of views replayed by
``view_fn``), and PyTorch's error texts."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
from helpers import arrays, assert_close, check_grad, dtypes, nb, random_array, seeds, shapes, with_layout

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_leaf(torch, a):
    """A torch leaf over ``a``'s own memory, strides included (so views match ours)."""
    return torch.from_numpy(a).requires_grad_(True)


def _outputs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _run_both(torch, op, inputs, grad_seed, check_views=True):
    """``op`` on nbgrad and on torch leaves over the same arrays: same values, same
    grad_fn names, views where torch makes views, then the same gradients."""
    xs = [nb(a, requires_grad=True) for a in inputs]
    ts = [_torch_leaf(torch, a) for a in inputs]
    ys, yts = _outputs(op(nbgrad, *xs)), _outputs(op(torch, *ts))
    assert len(ys) == len(yts)
    grads, tgrads = [], []
    for k, (y, yt) in enumerate(zip(ys, yts)):
        assert_close(y, yt)
        assert (y.grad_fn and y.grad_fn.name()) == (yt.grad_fn and yt.grad_fn.name())
        assert y.output_nr == yt.output_nr
        if check_views:
            assert (y._base is not None) == (yt._base is not None)
            if y._base is not None:
                assert y._version_counter is y._base._version_counter
                assert y.numel() == 0 or np.shares_memory(y._data, y._base._data)
        g = with_layout(random_array(yt.shape, yt.detach().numpy().dtype, grad_seed + k), "transposed")
        grads.append(nb(g))
        tgrads.append(torch.from_numpy(np.array(g)))
    nbgrad.autograd.backward(ys, grads)
    torch.autograd.backward(yts, tgrads)
    for x, t in zip(xs, ts):
        if t.grad is None:
            assert x.grad is None
        else:
            assert_close(x.grad, t.grad)
    return ys


def _swap_size1(shape):
    """``shape`` with every size-1 dim made 3 (a target ``expand`` accepts)."""
    return tuple(3 if n == 1 else n for n in shape)


# name: (op(lib, x), min_dims, max_dims)
UNARY = {
    "reshape_flat": (lambda lib, x: x.reshape(-1), 0, 4),
    "reshape_column": (lambda lib, x: x.reshape(-1, 1), 0, 4),
    "reshape_fn": (lambda lib, x: lib.reshape(x, (1, -1, 1)), 0, 4),
    "reshape_split_last": (lambda lib, x: x.reshape(*x.shape[:-1], 1, x.shape[-1]), 1, 4),
    "reshape_merge_first": (lambda lib, x: x.reshape(-1, *x.shape[2:]), 2, 4),
    "reshape_as": (lambda lib, x: x.reshape_as(x.reshape(-1)), 0, 4),
    "flatten": (lambda lib, x: x.flatten(), 0, 4),
    "flatten_from_1": (lambda lib, x: lib.flatten(x, 1), 2, 4),
    "flatten_middle": (lambda lib, x: x.flatten(start_dim=1, end_dim=-2), 3, 4),
    "flatten_one_dim": (lambda lib, x: x.flatten(-1, -1), 1, 4),
    "unflatten": (lambda lib, x: x.unflatten(-1, (1, x.shape[-1])), 1, 4),
    "unflatten_infer": (lambda lib, x: lib.unflatten(x, 0, (-1, 1)), 1, 4),
    "transpose": (lambda lib, x: x.transpose(0, -1), 0, 4),
    "transpose_fn": (lambda lib, x: lib.transpose(x, -2, 0), 2, 4),
    "swapaxes": (lambda lib, x: lib.swapaxes(x, 0, -1), 1, 4),
    "swapdims": (lambda lib, x: x.swapdims(-1, 0), 1, 4),
    "permute_reverse": (lambda lib, x: x.permute(*range(x.ndim - 1, -1, -1)), 1, 4),
    "permute_tuple": (lambda lib, x: x.permute(tuple(range(1, x.ndim)) + (0,)), 1, 4),
    "permute_fn_negative": (lambda lib, x: lib.permute(x, [-1] + list(range(x.ndim - 1))), 1, 4),
    "movedim": (lambda lib, x: x.movedim(0, -1), 1, 4),
    "movedim_tuple": (lambda lib, x: lib.movedim(x, (0, 1), (-1, 0)), 2, 4),
    "t": (lambda lib, x: x.t(), 0, 2),
    "t_fn": (lambda lib, x: lib.t(x), 2, 2),
    "T": (lambda lib, x: x.T, 2, 2),
    "mT": (lambda lib, x: x.mT, 2, 4),
    "squeeze_all": (lambda lib, x: x.squeeze(), 0, 4),
    "squeeze_first": (lambda lib, x: x.squeeze(0), 0, 4),
    "squeeze_negative": (lambda lib, x: lib.squeeze(x, -1), 1, 4),
    "squeeze_tuple": (lambda lib, x: x.squeeze((0, -1)), 2, 4),
    "unsqueeze_first": (lambda lib, x: x.unsqueeze(0), 0, 4),
    "unsqueeze_last": (lambda lib, x: lib.unsqueeze(x, -1), 0, 4),
    "unsqueeze_middle": (lambda lib, x: x.unsqueeze(1), 1, 4),
    "expand_same": (lambda lib, x: x.expand(x.shape), 0, 4),
    "expand_minus_one": (lambda lib, x: x.expand([-1] * x.ndim), 0, 4),
    "contiguous": (lambda lib, x: x.contiguous(), 0, 4),
    "narrow_first": (lambda lib, x: x.narrow(0, 0, 1), 1, 4),
    "narrow_last": (lambda lib, x: lib.narrow(x, -1, x.shape[-1] // 2, x.shape[-1] - x.shape[-1] // 2), 1, 4),
    "narrow_negative_start": (lambda lib, x: x.narrow(0, -1, 1), 1, 4),
    "split_1": (lambda lib, x: x.split(1), 1, 4),
    "split_2_last": (lambda lib, x: lib.split(x, 2, dim=-1), 1, 4),
    "split_sizes": (lambda lib, x: x.split([1, x.shape[0] - 1]), 1, 4),
    "chunk_2": (lambda lib, x: x.chunk(2), 1, 4),
    "chunk_3_last": (lambda lib, x: lib.chunk(x, 3, -1), 1, 4),
    "unbind": (lambda lib, x: x.unbind(), 1, 4),
    "unbind_last": (lambda lib, x: lib.unbind(x, -1), 1, 4),
    "flip_first": (lambda lib, x: x.flip(0), 1, 4),
    "flip_all": (lambda lib, x: lib.flip(x, list(range(x.ndim))), 0, 4),
    "flip_last_two": (lambda lib, x: x.flip(-1, -2), 2, 4),
    "chain": (lambda lib, x: x.unsqueeze(0).transpose(0, -1).reshape(-1).flip(0).view(1, -1).squeeze(0), 0, 4),
}

# these reduce a broadcast gradient (engine: sum_to_size)
BROADCASTING = {
    "expand": (lambda lib, x: x.expand(_swap_size1(x.shape)), 0, 4),
    "expand_new_dims": (lambda lib, x: x.expand(2, 3, *x.shape), 0, 3),
    "expand_as": (lambda lib, x: x.expand_as(lib.ones(2, *_swap_size1(x.shape))), 0, 3),
    "broadcast_to": (lambda lib, x: lib.broadcast_to(x, (2,) + _swap_size1(x.shape)), 0, 3),
    "broadcast_tensors": (lambda lib, x: lib.broadcast_tensors(x, lib.ones(2, *x.shape))[0], 0, 3),
    "repeat": (lambda lib, x: x.repeat([2] * x.ndim), 0, 4),
    "repeat_new_dims": (lambda lib, x: x.repeat(2, 1, *[3] * x.ndim), 0, 3),
}


@pytest.mark.parametrize("name", UNARY)
@given(dtype=dtypes, grad_seed=seeds, data=st.data())
def test_unary_shape_ops_match_torch(torch, name, dtype, grad_seed, data):
    op, lo, hi = UNARY[name]
    a = data.draw(arrays(data.draw(shapes(lo, hi)), dtype))
    _run_both(torch, op, [a], grad_seed)


@pytest.mark.parametrize("name", BROADCASTING)
@given(dtype=dtypes, grad_seed=seeds, data=st.data())
def test_broadcasting_shape_ops_match_torch(torch, name, dtype, grad_seed, data):
    op, lo, hi = BROADCASTING[name]
    a = data.draw(arrays(data.draw(shapes(lo, hi)), dtype))
    _run_both(torch, op, [a], grad_seed)


@st.composite
def pieces(draw, max_count=4):
    """Arrays that agree in all dims but one (of a drawn dtype each), and that dim."""
    shape = list(draw(shapes(1, 3)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    count = draw(st.integers(1, max_count))
    out = []
    for _ in range(count):
        shape[dim] = draw(st.integers(0, 3))
        out.append(draw(arrays(tuple(shape), draw(dtypes))))
    return out, dim


@given(args=pieces(), grad_seed=seeds)
def test_cat_matches_torch(torch, args, grad_seed):
    inputs, dim = args
    _run_both(torch, lambda lib, *xs: lib.cat(xs, dim), inputs, grad_seed)


@given(shape=shapes(0, 3), count=st.integers(1, 3), grad_seed=seeds, data=st.data())
def test_stack_matches_torch(torch, shape, count, grad_seed, data):
    inputs = [data.draw(arrays(shape)) for _ in range(count)]
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    _run_both(torch, lambda lib, *xs: lib.stack(xs, dim=dim), inputs, grad_seed)


@pytest.mark.parametrize("op", [
    lambda lib, a, b: lib.cat([a, b], 1),
    lambda lib, a, b: lib.concatenate((a, b), axis=0),
    lambda lib, a, b: lib.concat([a, b], -1),
    lambda lib, a, b: lib.stack([a, b], 2),
    lambda lib, a, b: lib.cat([a.t(), b.t()]),
    lambda lib, a, b: lib.cat([a, lib.zeros(0, dtype=lib.float64)]),   # 1-D empty tensors are skipped
])
def test_joining_matches_torch(torch, op):
    a, b = random_array((2, 3), np.float64, 0), random_array((2, 3), np.float64, 1)
    _run_both(torch, op, [a, b], grad_seed=3)


def test_cat_and_stack_promote_and_cast_gradients_back(torch):
    a = nb(np.ones((2, 2), np.float32), requires_grad=True)
    b = nb(np.ones((1, 2), np.float64), requires_grad=True)
    c = nb(np.arange(2).reshape(1, 2))
    assert nbgrad.stack([a.narrow(0, 0, 1), b]).dtype is nbgrad.float64
    assert nbgrad.stack([c, a.narrow(0, 0, 1)]).dtype is nbgrad.float32
    y = nbgrad.cat([c, a, b])
    assert y.dtype is nbgrad.float64
    np.testing.assert_array_equal(y.detach().numpy(), [[0, 1], [1, 1], [1, 1], [1, 1]])
    y.backward(nb(np.arange(8, dtype=np.float64).reshape(4, 2)))
    assert a.grad.dtype is nbgrad.float32 and b.grad.dtype is nbgrad.float64
    np.testing.assert_array_equal(a.grad.numpy(), [[2, 3], [4, 5]])
    np.testing.assert_array_equal(b.grad.numpy(), [[6, 7]])
    assert nbgrad.cat([nb(np.ones(2, bool)), nb(np.ones(2, np.int64))]).dtype is nbgrad.int64


@pytest.mark.parametrize("op", [
    lambda lib, x: x.reshape(0, 4), lambda lib, x: x.view(-1, 2, 2), lambda lib, x: x.split(2),
    lambda lib, x: x.chunk(3), lambda lib, x: x.split(0), lambda lib, x: x.unbind(1),
    lambda lib, x: x.flip(0, 1), lambda lib, x: x.t(), lambda lib, x: x.unbind(),
])
def test_empty_tensors_match_torch(torch, op):
    _run_both(torch, op, [np.zeros((0, 4))], grad_seed=0)


def test_large_flip_runs_the_parallel_kernel():
    x = nbgrad.randn(3, 200, 150)                        # above ops.elementwise.PARALLEL_MIN
    for dims in [(0,), (-1,), (0, 1, 2), (1,)]:
        np.testing.assert_array_equal(x.flip(dims).numpy(), np.flip(x.numpy(), dims))


def test_large_strided_copies():
    """Copies into and out of strided views, above the size where kernels run in parallel."""
    x = nbgrad.randn(300, 300)
    np.testing.assert_array_equal(nbgrad.cat([x, x], 1).numpy(), np.concatenate([x.numpy()] * 2, 1))
    np.testing.assert_array_equal(nbgrad.stack([x, x], 2).numpy(), np.stack([x.numpy()] * 2, 2))
    np.testing.assert_array_equal(x.t().contiguous().numpy(), x.numpy().T)
    np.testing.assert_array_equal(x.t().flip(0).numpy(), x.numpy().T[::-1])


# -- finite differences (float64) --------------------------------------------------------------------
FD_OPS = {name: entry[0] for name, entry in UNARY.items() if not name.startswith(("split", "chunk", "unbind"))}
FD_OPS["split_then_join"] = lambda lib, x: lib.cat([p * (i + 1) for i, p in enumerate(x.split(1, -1))], -1)
FD_OPS["unbind_then_stack"] = lambda lib, x: lib.stack([p * (i + 1) for i, p in enumerate(x.unbind(0))], -1)
FD_OPS["chunk_then_cat"] = lambda lib, x: lib.cat(x.chunk(2, 0)[::-1], 0)


@pytest.mark.parametrize("name", FD_OPS)
def test_finite_differences(name):
    op = FD_OPS[name]
    shape = (2, 3) if name in ("t", "t_fn", "T") else (2, 1, 3)
    check_grad(lambda x: op(nbgrad, x), random_array(shape, np.float64, 0))


@pytest.mark.parametrize("name", BROADCASTING)
def test_broadcasting_finite_differences(name):
    check_grad(lambda x: BROADCASTING[name][0](nbgrad, x), random_array((2, 1, 3), np.float64, 0))


def test_cat_stack_finite_differences():
    a, b = random_array((2, 3), np.float64, 0), random_array((2, 3), np.float64, 1)
    check_grad(lambda x, y: nbgrad.cat([x, y, x], 1), a, b)
    check_grad(lambda x, y: nbgrad.stack([x, y, x], -1), a, b)


def test_second_order_through_shape_ops(torch):
    """Backward rules are Tensor ops, so a gradient of a gradient flows through them."""
    a = random_array((2, 3), np.float64, 0)
    results = []
    for lib, x in ((nbgrad, nb(a, requires_grad=True)), (torch, _torch_leaf(torch, a.copy()))):
        y = lib.cat([x.t().reshape(-1), *x.flip(0).unbind(1)]) * x.flatten().narrow(0, 1, 1)
        g, = lib.autograd.grad(y, x, grad_outputs=lib.ones(*y.shape, dtype=lib.float64), create_graph=True)
        g.mul(g).backward(lib.ones(2, 3, dtype=lib.float64))
        results.append(x.grad)
    assert_close(*results)


# -- view semantics -----------------------------------------------------------------------------------------
def test_writes_through_views_reach_the_base():
    x = nbgrad.zeros(2, 3)
    v = x.view(3, 2)
    assert v.data_ptr() == x.data_ptr() and v._base is x
    v.mul_(0).add_(1)
    assert x._version == v._version == 2
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))
    x.t().narrow(0, 1, 1).unbind(1)[1].mul_(5)           # views of views: x[1, 1]
    assert x.numpy()[1, 1] == 5 and x.numpy().sum() == 10
    assert x.t()._version == x._version == 3


def test_views_of_views_keep_the_root_as_base():
    x = nbgrad.randn(2, 3, 4)
    v = x.transpose(0, 1).reshape(3, 2, 2, 2).narrow(3, 1, 1)
    assert v._base is x and v._version_counter is x._version_counter
    np.testing.assert_array_equal(v._view_fn(x).numpy(), v.numpy())
    other = nbgrad.randn(2, 3, 4)
    np.testing.assert_array_equal(v._view_fn(other).numpy(), other.numpy().transpose(1, 0, 2).reshape(3, 2, 2, 2)[..., 1:])


@pytest.mark.parametrize("make_view", [
    lambda x: x.view(3, 2), lambda x: x.t(), lambda x: x.transpose(0, 1).narrow(0, 1, 2),
    lambda x: x.unsqueeze(0).squeeze(0), lambda x: x.permute(1, 0).unsqueeze(0).flatten(0, 1), lambda x: x.narrow(1, 1, 1),
    lambda x: x.T.unflatten(0, (3, 1)),
])
def test_inplace_update_of_a_view_matches_torch(torch, make_view):
    """An in-place op on a view is recorded on its base by replaying the view's ``view_fn``."""
    a = random_array((2, 3), np.float64, 0)
    grads = []
    for lib, x in ((nbgrad, nb(a.copy(), requires_grad=True)), (torch, _torch_leaf(torch, a.copy()))):
        base = x * 1
        v = make_view(base)
        v.mul_(make_view(x * 3 + 1))
        assert v.grad_fn is not None and base.grad_fn.name().endswith("CopySlices")
        values = base.detach().numpy().copy()
        base.backward(lib.ones(2, 3, dtype=lib.float64) * 2)
        grads.append((values, x.grad))
    np.testing.assert_allclose(grads[0][0], grads[1][0])
    assert_close(grads[0][1], grads[1][1])


def test_reshape_views_exactly_when_torch_does(torch):
    rng = np.random.default_rng(0)
    for layout in ("contiguous", "transposed", "sliced"):
        a = with_layout(rng.standard_normal((2, 3, 4)), layout)
        for shape in [(24,), (6, 4), (2, 12), (4, 6), (2, 3, 2, 2), (1, 2, 3, 4, 1), (3, 2, 4)]:
            y, yt = nb(a).reshape(shape), torch.from_numpy(a).reshape(shape)
            assert (y._base is not None) == (yt._base is not None), (layout, shape)
            viewable = yt._base is not None
            if viewable:
                assert nb(a).view(shape).shape == shape
            else:
                with pytest.raises(RuntimeError, match="view size is not compatible"):
                    nb(a).view(shape)


def test_contiguous_returns_self_or_a_copy():
    x = nbgrad.randn(2, 3)
    assert x.contiguous() is x
    y = x.t().contiguous()
    assert y.is_contiguous() and y.data_ptr() != x.data_ptr()
    np.testing.assert_array_equal(y.numpy(), x.numpy().T)


def test_expanded_views_share_memory_and_are_writable():
    x = nbgrad.zeros(3, 1)
    e = x.expand(3, 4)
    assert e.stride() == (1, 0) and e._base is x and e._data.flags.writeable
    x.add_(1)
    np.testing.assert_array_equal(e.numpy(), np.ones((3, 4)))


def test_multiple_output_views_share_one_node():
    x = nbgrad.randn(5, 2, requires_grad=True)
    parts = x.split(2)
    assert [p.output_nr for p in parts] == [0, 1, 2]
    assert all(p.grad_fn is parts[0].grad_fn for p in parts) and parts[0].grad_fn.name() == "SplitBackward0"
    assert all(p._base is x and p._version_counter is x._version_counter for p in parts)


def test_unused_outputs_of_split_get_zero_gradient(torch):
    _run_both(torch, lambda lib, x: x.split(2)[1], [random_array((5, 2), np.float64, 0)], grad_seed=0,
              check_views=False)
    _run_both(torch, lambda lib, x: x.unbind(1)[0], [random_array((5, 2), np.float64, 0)], grad_seed=0,
              check_views=False)


# -- errors -------------------------------------------------------------------------------------------------
ERRORS = [
    ((10,), lambda lib, x: x.view(3, 4)),
    ((4, 3), lambda lib, x: x.t().view(12)),
    ((2, 3, 4), lambda lib, x: x.view(-1, -1)),
    ((2, 3, 4), lambda lib, x: x.view(-2, 12)),
    ((0, 3), lambda lib, x: x.view(-1, 0)),
    ((2, 3, 4), lambda lib, x: x.reshape(5, 5)),
    ((2, 3, 4), lambda lib, x: x.flatten(2, 1)),
    ((2, 3, 4), lambda lib, x: x.unflatten(2, (3, 2))),
    ((2, 3, 4), lambda lib, x: x.transpose(0, 3)),
    ((2, 3, 4), lambda lib, x: x.permute(0, 1)),
    ((2, 3, 4), lambda lib, x: x.permute(0, 1, 1)),
    ((2, 3, 4), lambda lib, x: x.t()),
    ((3,), lambda lib, x: x.mT),
    ((2, 1, 3), lambda lib, x: x.squeeze(3)),
    ((2, 1, 3), lambda lib, x: x.squeeze((1, 1))),
    ((2, 1, 3), lambda lib, x: x.unsqueeze(4)),
    ((2, 1, 3), lambda lib, x: x.expand(2, 5, 4)),
    ((2, 1, 3), lambda lib, x: x.expand(5, 3)),
    ((2, 1, 3), lambda lib, x: x.expand(-1, 2, 1, 3)),
    ((2, 1, 3), lambda lib, x: lib.broadcast_to(x, (2, 3))),
    ((2, 3, 4), lambda lib, x: lib.cat([x, lib.ones(2, 4, 4, dtype=lib.float64)], 2)),
    ((2, 3, 4), lambda lib, x: lib.cat([x, lib.ones(2, 4, dtype=lib.float64)], 0)),
    ((2, 3, 4), lambda lib, x: lib.cat([x, x], 3)),
    ((), lambda lib, x: lib.cat([x, x])),
    ((), lambda lib, x: lib.cat([])),
    ((2, 3, 4), lambda lib, x: lib.stack([x, lib.ones(2, 4, 4, dtype=lib.float64)])),
    ((2, 3, 4), lambda lib, x: lib.stack([x, x], 4)),
    ((), lambda lib, x: lib.stack([])),
    ((2, 3, 4), lambda lib, x: x.split([1, 1], 1)),
    ((2, 3, 4), lambda lib, x: x.split(0, 1)),
    ((2, 3, 4), lambda lib, x: x.split(-1, 1)),
    ((2, 3, 4), lambda lib, x: x.chunk(0, 1)),
    ((), lambda lib, x: x.unbind()),
    ((2, 3, 4), lambda lib, x: x.flip(0, 0)),
    ((2, 3, 4), lambda lib, x: x.flip(3)),
    ((2, 3, 4), lambda lib, x: x.repeat(2, 2)),
    ((2, 3, 4), lambda lib, x: x.repeat(2, 2, -1)),
    ((2, 3, 4), lambda lib, x: x.narrow(1, 2, 2)),
    ((2, 3, 4), lambda lib, x: x.narrow(1, 4, 0)),
]


@pytest.mark.parametrize("shape, op", ERRORS)
def test_errors_as_torch(torch, shape, op):
    a = np.ones(shape)
    with pytest.raises(Exception) as expected:
        op(torch, torch.from_numpy(a))
    with pytest.raises(type(expected.value)) as actual:
        op(nbgrad, nb(a))
    assert str(actual.value) == str(expected.value)
