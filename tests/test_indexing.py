"""Indexing against PyTorch: ``x[i]`` (basic views and advanced gathers; values, grad_fn
names, views and shared version counters, gradients, error texts), ``x[i] = v`` (leaf
rules, CopySlices/IndexPut gradients, refused updates leaving the tensor as it was), the
gather/scatter family (``index_select``, ``gather``, ``scatter``, ``scatter_add``,
``take``, ``index_put``, ``masked_fill``, ``masked_select``, ``nonzero``), over
contiguous/transposed/sliced inputs, float32 and float64, random indices (hypothesis),
float64 finite differences, second-order gradients, and the kernels' parallel paths."""
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
from helpers import FLOATS, LAYOUTS, assert_close, check_grad, nb, random_array, with_layout
from nbgrad.ops import index as kernels


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# -- building the same index for both libraries ----------------------------------------------------
class I:
    """An integer index tensor (``I(3)`` is 0-d)."""

    def __init__(self, v):
        self.v = np.array(v, np.int64)

    def __repr__(self):
        return f"I({self.v.tolist()})"


class M:
    """A bool mask tensor."""

    def __init__(self, v):
        self.v = np.array(v, np.bool_)

    def __repr__(self):
        return f"M({self.v.tolist()})"


def build(T, spec):
    if isinstance(spec, tuple):
        return tuple(build(T, s) for s in spec)
    if isinstance(spec, (I, M)):
        return T.from_numpy(spec.v.copy())
    return spec


def outcome(fn):
    """``fn()``'s value, or the error it raised as (type name, message)."""
    try:
        return fn()
    except Exception as e:                     # noqa: BLE001  (compared with torch's)
        return ("raised", type(e).__name__, str(e).split("\n")[0])


def same_error(torch, fn):
    """``fn(module)`` raises the same error type and text in both libraries."""
    ours, theirs = outcome(lambda: fn(nbgrad)), outcome(lambda: fn(torch))
    assert isinstance(theirs, tuple) and theirs[0] == "raised", f"torch did not raise: {theirs}"
    assert ours == theirs


def leaf(T, a):
    return T.from_numpy(a).requires_grad_(True)


MASK_34 = np.arange(12).reshape(3, 4) % 3 == 0
MASK_345 = np.arange(60).reshape(3, 4, 5) % 7 < 3

GETITEM = [
    0, -1, (0, 1), (1, 2, 3), (2, -1, 0), slice(1, 3), slice(None), (slice(None),), slice(0, 100), (slice(0, 100), 1),
    slice(None, None, 2), (slice(1, None, 2), slice(None, 3)), (slice(None), 0), (slice(None), None), None, Ellipsis,
    (Ellipsis, 0), (0, None), (None, 0), (slice(1, 3), 0), (None, None), (), (Ellipsis, None, slice(1, None, 2)),
    slice(5, 10), slice(2, 1), slice(-100, 2), I(1), (slice(None), I(-2)), (np.int64(2),),
    # advanced
    [0, 1], [2, 0, 2, 2], I([0, -1]), (slice(None), I([[0, 1], [3, 3]])), (I([0, 2]), slice(None), I([1, 4])),
    (0, slice(None), [0, 1]), ([[0], [1]], slice(None), [0, 1]), (None, [0, 1], None, [1, 2]),
    ([0, 1], None, [1, 2]), (Ellipsis, [0, 1]), True, False, M(True), (M(MASK_34),), (M(MASK_345),),
    (slice(None), M([True, False, True, True])), [True, False, True], np.array([0, 2]), (np.array(1),),
    (0, I([[1, 2]]), slice(1, 3)), (Ellipsis, M([True, False, False, True, True])), (I([1, 2]), M(True)),
    (M(MASK_34), 0), (M(MASK_34), None), (slice(1, 3), [0, 0], 4), ([], slice(None)), (M(np.zeros(3, bool)),),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("spec", GETITEM, ids=repr)
def test_getitem_matches_torch(torch, spec, dtype, layout):
    a = with_layout(random_array((3, 4, 5), dtype, 0), layout)
    x, tx = nb(a, requires_grad=True), leaf(torch, a)
    y, ty = x[build(nbgrad, spec)], tx[build(torch, spec)]
    assert_close(y, ty)
    assert y.grad_fn.name() == ty.grad_fn.name()
    is_view = ty._base is not None
    assert (y._base is x) == is_view
    assert np.shares_memory(y._data, x._data) == (is_view and ty.numel() > 0)
    assert (y._version_counter is x._version_counter) == is_view
    g = random_array(ty.shape, dtype, 1)
    y.backward(nbgrad.from_numpy(g))
    ty.backward(torch.from_numpy(g))
    assert_close(x.grad, tx.grad)


GETITEM_ERRORS = [
    ((3, 4), 5), ((3, 4), -5), ((3, 4), (slice(None), 7)), ((3, 4), [0, 5]), ((3, 4), (slice(None), [0, -6])),
    ((3, 4), I([[0, 1], [1, 5]])), ((3, 4), (1, 2, 3)), ((3, 4), slice(None, None, -1)),
    ((3, 4), slice(None, None, 0)), ((3, 4), 1.5), ((3, 4), I(0).v.astype(np.float32)), ((3, 4), M([True, False])),
    ((3, 4), (slice(None), M(np.ones((2, 4))))), ((3, 4), M(np.ones((3, 5)))), ((3, 4), ([0, 1], [0, 1, 2])),
    ((), 0), ((), [0]), ((), (0,)), ((3, 4, 5), (I([0, 7]), I([9, 0]))), ((3, 4, 5), ([0], slice(None), [7])),
    ((3, 4, 5), (slice(None), [[0], [9]], [1, 7])), ((3, 4, 5), (None, 9)), ((3, 4, 5), (Ellipsis, 9)),
    ((3, 4, 5), (M(MASK_345[:2]),)), ((3, 4), (slice(None), slice(None), slice(None))), ((0, 3), [0]),
]


@pytest.mark.parametrize("shape, spec", GETITEM_ERRORS, ids=repr)
def test_getitem_errors(torch, shape, spec):
    a = np.zeros(shape)
    if isinstance(spec, np.ndarray):                  # a float index tensor
        same_error(torch, lambda T: T.from_numpy(a)[T.from_numpy(spec)])
    else:
        same_error(torch, lambda T: T.from_numpy(a)[build(T, spec)])


def test_zero_dim_int_index_message():
    with pytest.raises(IndexError, match=r"invalid index of a 0-dim tensor\. Use `tensor\.item\(\)` in Python or "
                                         r"`tensor\.item<T>\(\)` in C\+\+ to convert a 0-dim tensor to a number"):
        nbgrad.tensor(3.0)[0]


def test_views_share_memory_both_ways():
    x = nbgrad.from_numpy(np.arange(12.0).reshape(3, 4))
    row = x[1]
    col = x[:, 2]
    x._data[1, 2] = 100.0
    assert row[2].item() == 100.0 and col[1].item() == 100.0
    v0 = x._version
    col.mul_(2)                                        # in place through a view: base sees it, one version
    assert x[1, 2].item() == 200.0 and x[0, 2].item() == 4.0
    assert x._version == v0 + 1 and row._version == x._version


def test_repeated_indices_accumulate():
    x = nbgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 1]].backward(nbgrad.tensor([1.0, 1.0, 1.0]))
    assert x.grad.tolist() == [2.0, 1.0, 0.0]


@st.composite
def index_for(draw, shape):
    """A random index: ints, slices, None, ..., int lists/tensors, masks (often, not always, valid).
    At most one ``...``: with two, PyTorch reads sizes of dims that are not there."""
    items, pos = [], 0
    for _ in range(draw(st.integers(0, len(shape) + 1))):
        size = shape[pos] if pos < len(shape) else 2
        valid = st.integers(-size, size - 1) if size else st.integers(-1, 1)
        kind = draw(st.sampled_from(["int", "slice", "slice", "none", "ellipsis", "list", "tensor", "mask", "bool"]))
        if kind == "int":
            items.append(draw(st.integers(-size - 1, size)))
        elif kind == "slice":
            bound = st.one_of(st.none(), st.integers(-size - 2, size + 2))
            items.append(slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, 3]))))
        elif kind == "none":
            items.append(None)
            pos -= 1
        elif kind == "ellipsis" and Ellipsis not in items:
            items.append(Ellipsis)
            pos = len(shape) - (len(items) - 1) if draw(st.booleans()) else pos - 1
        elif kind == "list":
            items.append(draw(st.lists(valid, max_size=3)))
        elif kind == "tensor":
            items.append(I(draw(st.lists(st.lists(valid, min_size=2, max_size=2),
                                         min_size=1, max_size=2))))
        elif kind == "mask":
            k = draw(st.integers(1, 2))
            mshape = tuple(shape[pos:pos + k]) or (size,)
            n = int(np.prod(mshape))
            items.append(M(np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool).reshape(mshape)))
            pos += len(mshape) - 1
        elif kind == "bool":
            items.append(draw(st.booleans()))
            pos -= 1
        pos += 1
    if len(items) == 1 and not isinstance(items[0], list) and draw(st.booleans()):
        return items[0]
    return tuple(items)


@given(data=st.data(), shape=st.lists(st.integers(0, 4), max_size=3).map(tuple), dtype=st.sampled_from(FLOATS),
       layout=st.sampled_from(LAYOUTS))
def test_getitem_random_indices_match_torch(data, shape, dtype, layout):
    torch = pytest.importorskip("torch")
    spec = data.draw(index_for(shape))
    a = with_layout(random_array(shape, dtype, 0), layout)
    x, tx = nb(a, requires_grad=True), leaf(torch, a)
    y, ty = outcome(lambda: x[build(nbgrad, spec)]), outcome(lambda: tx[build(torch, spec)])
    if isinstance(ty, tuple):
        assert y == ty
        return
    assert_close(y, ty)
    assert y.grad_fn.name() == ty.grad_fn.name()
    g = random_array(ty.shape, dtype, 1)
    y.backward(nbgrad.from_numpy(g))
    ty.backward(torch.from_numpy(g))
    assert_close(x.grad, tx.grad)


@given(data=st.data(), shape=st.lists(st.integers(0, 4), max_size=3).map(tuple), layout=st.sampled_from(LAYOUTS),
       value=st.sampled_from(["number", "full", "row", "one"]))
def test_setitem_random_indices_match_torch(data, shape, layout, value):
    torch = pytest.importorskip("torch")
    spec = data.draw(index_for(shape))
    a = with_layout(random_array(shape, np.float64, 0), layout)
    target = outcome(lambda: torch.from_numpy(a.copy())[build(torch, spec)].shape)
    if isinstance(target, torch.Size):
        vshape = {"full": target, "row": target[-1:], "one": (1,) * len(target)}.get(value)
    else:
        vshape = (2,)
    v = random_array(vshape, np.float64, 1) if vshape is not None else 2.5
    results = []
    for T in (nbgrad, torch):
        x = T.from_numpy(a.copy() if layout == "contiguous" else with_layout(a, layout))
        tv = T.from_numpy(v.copy()) if vshape is not None else v
        results.append((outcome(lambda: x.__setitem__(build(T, spec), tv)), x))
    (ours, x), (theirs, tx) = results
    assert ours == theirs
    if ours is None:
        assert_close(x, tx)
    else:                                  # refused: unchanged (PyTorch may have written part of it)
        assert_close(x, a)


# -- x[i] = v ------------------------------------------------------------------------------------------
SETITEM = [
    (0, "number"), ((slice(None), 1), "vector3"), ((slice(None), 1), "scalar"), ([0, 0], "vector4"),
    ((I([0, 2]), I([1, 3])), "vector2"), (M(MASK_34), "scalar"), ((slice(None), [1, 2]), "column"),
    ((0, [1, 2]), "row_leading_ones"), (None, "number"), (True, "number"),
    ((slice(1, None), slice(None, None, 2)), "column2"), (M(MASK_34), "number"), ([2, 0], "number"),
    (Ellipsis, "number"),
]

VALUES = {"number": None, "vector3": (3,), "scalar": (), "vector4": (4,), "vector2": (2,), "column": (3, 1),
          "column2": (2, 1), "row_leading_ones": (1, 1, 2)}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("spec, value", SETITEM, ids=repr)
def test_setitem_on_nonleaf_matches_torch(torch, spec, value, dtype):
    a = random_array((3, 4), dtype, 0)
    w = random_array(VALUES[value], dtype, 2) if VALUES[value] is not None else None
    g = random_array((3, 4), dtype, 3)
    results = []
    for T in (nbgrad, torch):
        x = leaf(T, a.copy())
        y = x * 1
        v = leaf(T, w.copy()) if w is not None else 2.5
        y[build(T, spec)] = v
        y.backward(T.from_numpy(g))
        results.append((y, x.grad, v.grad if w is not None else None, y.grad_fn.name().split("::")[-1]))
    (y, gx, gv, name), (ty, tgx, tgv, tname) = results
    assert_close(y, ty)
    assert name == tname
    assert_close(gx, tgx)
    if w is not None:
        assert_close(gv, tgv)


def test_setitem_first_element_of_nonleaf_gets_zero_gradient():
    x = nbgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    y[0] = 0
    y.backward(nbgrad.tensor([1.0, 1.0, 1.0]))
    assert x.grad.tolist() == [0.0, 1.0, 1.0]
    assert y.grad_fn.name() == "torch::autograd::CopySlices"


def test_setitem_column_gives_value_its_gradient():
    x = nbgrad.zeros(3, 4, requires_grad=True)
    w = nbgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    y[:, 1] = w
    y.backward(nbgrad.from_numpy(np.arange(12.0, dtype=np.float32).reshape(3, 4)))
    assert w.grad.tolist() == [1.0, 5.0, 9.0]
    assert x.grad[:, 1].tolist() == [0.0, 0.0, 0.0] and x.grad[:, 2].tolist() == [2.0, 6.0, 10.0]


@pytest.mark.parametrize("spec", [0, [0], M(MASK_34), (slice(None), 1)], ids=repr)
def test_setitem_on_leaf_requiring_grad(torch, spec):
    def assign(T):
        x = leaf(T, np.zeros((3, 4)))
        x[build(T, spec)] = 1.0
    same_error(torch, assign)
    x = nb(np.zeros((3, 4)), requires_grad=True)
    with nbgrad.no_grad():
        x[build(nbgrad, spec)] = 1.0
    assert x.grad_fn is None and x.requires_grad
    expected = np.zeros((3, 4))
    expected[spec.v if isinstance(spec, M) else spec] = 1.0
    assert_close(x.detach(), expected)


@pytest.mark.parametrize("spec, shape", [(0, (3,)), (0, (2, 4)), ([0, 1], (3,)), ((slice(None), [1, 2]), (3, 3)),
                                         (M(MASK_34), (3,)), (slice(None, 2), (3, 4))], ids=repr)
def test_setitem_bad_shape_raises_and_leaves_tensor_unchanged(torch, spec, shape):
    a = random_array((3, 4), np.float64, 0)

    def assign(T):
        x = T.from_numpy(a.copy())
        x[build(T, spec)] = T.ones(shape, dtype=T.float64)
    same_error(torch, assign)
    x = nb(a.copy())
    with pytest.raises(RuntimeError):
        x[build(nbgrad, spec)] = nbgrad.ones(shape, dtype=nbgrad.float64)
    assert_close(x, a)
    assert x._version == 0


def test_setitem_mask_on_plain_tensor():
    a = random_array((3, 4), np.float32, 0)
    x = nb(a.copy())
    x[x > 0] = 0
    assert_close(x, np.where(a > 0, 0, a).astype(np.float32))
    assert x._version == 1 and x.grad_fn is None


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_setitem_writes_through_noncontiguous_memory(torch, layout):
    a = with_layout(random_array((3, 4), np.float64, 0), layout)
    x, tx = nb(a.copy()), torch.from_numpy(a.copy())
    for T, t in ((nbgrad, x), (torch, tx)):
        t[[0, 2], 1:3] = T.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0]]))
        t[:, 0] = -1.0
        t[t > 1.5] = 9.0
        t[1, [3, 3]] = T.from_numpy(np.array([5.0, 6.0]))
    assert_close(x, tx)


def test_setitem_value_dtypes(torch):
    def ints(T):
        y = T.arange(6)
        y[[0, 1]] = 2.7
        y[2] = T.tensor(3.9)
        y[y > 3] = T.tensor(9.5)
        return y.tolist()
    assert ints(nbgrad) == ints(torch)
    same_error(torch, lambda T: T.arange(6).__setitem__([1], T.tensor([3.9])))
    same_error(torch, lambda T: T.arange(6).__setitem__(0, [1]))
    same_error(torch, lambda T: T.arange(6).__setitem__(0, np.array([1])))


def test_setitem_into_view_of_nonleaf_records_copyslices(torch):
    a = random_array((3, 4), np.float64, 0)
    out = []
    for T in (nbgrad, torch):
        x = leaf(T, a.copy())
        z = x * 1
        v = z[1]
        v[[0, 2]] = T.from_numpy(np.array([10.0, 20.0]))
        z.backward(T.ones(3, 4, dtype=T.float64))
        out.append((z, x.grad, z.grad_fn.name().split("::")[-1]))
    assert_close(out[0][0], out[1][0])
    assert_close(out[0][1], out[1][1])
    assert out[0][2] == out[1][2] == "CopySlices"


def test_setitem_false_does_nothing():
    x = nbgrad.zeros(3)
    x[False] = 1.0
    assert x.tolist() == [0.0, 0.0, 0.0]


# -- the gather/scatter family ------------------------------------------------------------------------
def _long(T, v):
    return T.from_numpy(np.array(v, np.int64))


def _bool(T, v):
    return T.from_numpy(np.array(v, np.bool_))


OPS = {
    "index_select": lambda T, y: T.index_select(y, 1, _long(T, [0, 3, 3])),
    "index_select_0d_index": lambda T, y: y.index_select(0, _long(T, 2)),
    "gather": lambda T, y: T.gather(y, 1, _long(T, [[0, 1], [2, 3], [3, 3]])),
    "gather_dim0": lambda T, y: y.gather(0, _long(T, [[0, 1, 2, 2], [2, 2, 2, 2]])),
    "take": lambda T, y: T.take(y, _long(T, [[0, 11], [-1, -12], [5, 5]])),
    "masked_fill": lambda T, y: T.masked_fill(y, _bool(T, [True, False, True, False]), 0.5),
    "masked_fill_column_mask": lambda T, y: y.masked_fill(_bool(T, [[True], [False], [True]]), -2),
    "masked_select": lambda T, y: T.masked_select(y, _bool(T, MASK_34)),
    "scatter_value": lambda T, y: T.scatter(y, 1, _long(T, [[0, 1], [3, 3]]), 2.5),
    "scatter_src": lambda T, y: T.scatter(y, 1, _long(T, [[0, 1], [3, 2], [1, 0]]), y[:, :2] * 3),
    "scatter_add": lambda T, y: T.scatter_add(y, 0, _long(T, [[0, 1, 1, 1], [0, 0, 0, 0]]), y[:2] * 3),
    "scatter_add_": lambda T, y: (y * 1).scatter_add_(0, _long(T, [[0, 1, 1, 1], [0, 0, 0, 0]]), y[1:] * 3),
    "scatter_": lambda T, y: (y * 1).scatter_(0, _long(T, [[0, 1, 1, 1], [0, 0, 2, 0]]), y[:2] * 3),
    "scatter_value_": lambda T, y: (y * 1).scatter_(1, _long(T, [[3], [0], [1]]), 7.0),
    "index_put_accumulate": lambda T, y: T.index_put(y, (_long(T, [0, 0]),), y[1] * 2, accumulate=True),
    "index_put_pairs": lambda T, y: T.index_put(y, (_long(T, [0, 0]), _long(T, [1, 2])), y[1, :2] * 2),
    "index_put_mask": lambda T, y: y.index_put((y > 0,), y[1, 0] * 2),
    "index_put_": lambda T, y: (y * 1).index_put_((_long(T, [2, 1]),), y[0] * 2),
    "masked_fill_": lambda T, y: (y * 1).masked_fill_(_bool(T, MASK_34), 1.5),
    "select": lambda T, y: T.select(y, 1, -1),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_match_torch(torch, name, dtype, layout):
    op = OPS[name]
    a = with_layout(random_array((3, 4), dtype, 0), layout)
    x, tx = nb(a, requires_grad=True), leaf(torch, a)
    y, ty = op(nbgrad, x), op(torch, tx)
    assert_close(y, ty)
    assert y.grad_fn.name() == ty.grad_fn.name()
    g = random_array(ty.shape, dtype, 1)
    y.backward(nbgrad.from_numpy(g))
    ty.backward(torch.from_numpy(g))
    assert_close(x.grad, tx.grad)


@pytest.mark.parametrize("name", ["index_select", "gather", "take", "masked_select", "scatter_src", "scatter_add",
                                  "index_put_accumulate", "index_put_pairs", "index_put_mask", "masked_fill",
                                  "scatter_value"])
def test_ops_finite_differences(name):
    check_grad(lambda y: OPS[name](nbgrad, y), random_array((3, 4), np.float64, 0))


def test_index_put_values_and_getitem_finite_differences():
    idx = (_long(nbgrad, [0, 2, 0]), _long(nbgrad, [1, 1, 1]))
    check_grad(lambda x, v: nbgrad.index_put(x, idx, v, accumulate=True),
               random_array((3, 4), np.float64, 0), random_array((3,), np.float64, 1))
    check_grad(lambda x, v: nbgrad.index_put(x, (_long(nbgrad, [2, 0]),), v), random_array((3, 4), np.float64, 0),
               random_array((1, 4), np.float64, 1))
    check_grad(lambda x: x[[0, 0, 2], 1:], random_array((3, 4), np.float64, 0))
    check_grad(lambda x: x[:, None, [[1], [2]]], random_array((3, 4), np.float64, 0))
    check_grad(lambda x: x[1:, 2][None], random_array((3, 4), np.float64, 0))


def test_scatter_gather_and_take_on_0d_and_broadcast(torch):
    for T in (nbgrad, torch):
        s = leaf(T, np.array(5.0))
        r = T.gather(s, 0, _long(T, [0, 0]))
        r.backward(T.from_numpy(np.array([1.0, 2.0])))
        assert r.tolist() == [5.0, 5.0] and s.grad.item() == 3.0
        assert T.index_select(T.tensor(5.0), 0, _long(T, [0])).shape == ()
        assert T.take(T.tensor(5.0), _long(T, [[0, -1]])).tolist() == [[5.0, 5.0]]
    check_grad(lambda s: nbgrad.take(s, _long(nbgrad, [0, 0, -1])), np.array(2.0))
    check_grad(lambda s: nbgrad.index_select(s, 0, _long(nbgrad, [0])), np.array(2.0))


@pytest.mark.skipif(not hasattr(nbgrad.Tensor, "sum"), reason="needs Tensor.sum (reduction.py)")
def test_masked_fill_with_tensor_value_and_broadcast(torch):
    a = random_array((3, 4), np.float64, 0)
    mask = MASK_34[:1]
    out = []
    for T in (nbgrad, torch):
        x, v = leaf(T, a.copy()), leaf(T, np.array(1.5))
        y = T.masked_fill(x, T.from_numpy(mask.copy()), v)
        z = T.masked_fill(x[0], T.from_numpy(np.ones((2, 4), bool)), 0.0)    # mask broadcasts the input
        y.backward(T.from_numpy(random_array((3, 4), np.float64, 1)))
        z.backward(T.ones(2, 4, dtype=T.float64))
        m = T.masked_select(x[0], T.from_numpy(MASK_34.copy()))              # input broadcast by mask
        m.backward(T.ones(m.shape, dtype=T.float64))
        out.append((y, z, m, x.grad, v.grad, y.grad_fn.name()))
    for ours, theirs in zip(*out):
        if isinstance(ours, str):
            assert ours == theirs
        else:
            assert_close(ours, theirs)
    check_grad(lambda x, v: nbgrad.masked_fill(x, nbgrad.from_numpy(mask.copy()), v), a, np.array(1.5))


OP_ERRORS = [
    lambda T: T.index_select(T.zeros(3, 4), 0, _long(T, [[0]])),
    lambda T: T.index_select(T.zeros(3, 4), 0, _long(T, [5])),
    lambda T: T.index_select(T.zeros(3, 4), 0, _long(T, [-1])),
    lambda T: T.index_select(T.zeros(3, 4), 0, T.tensor([1.0])),
    lambda T: T.index_select(T.zeros(3, 4), 2, _long(T, [1])),
    lambda T: T.gather(T.zeros(3, 4), 1, _long(T, [[0, 1], [2, 3], [0, 0], [0, 0]])),
    lambda T: T.gather(T.zeros(3, 4), 1, _long(T, [0, 1])),
    lambda T: T.gather(T.zeros(3, 4), 1, _long(T, [[0, 4]])),
    lambda T: T.gather(T.zeros(3, 4), 1, _long(T, [[0, -1]])),
    lambda T: T.gather(T.zeros(3, 4), 1, T.tensor([[0.0, 1.0]])),
    lambda T: T.take(T.zeros(3, 4), _long(T, [12])),
    lambda T: T.take(T.zeros(3, 4), _long(T, [-13])),
    lambda T: T.take(T.zeros(3, 4), T.tensor([0.0])),
    lambda T: T.masked_fill(T.zeros(3, 4), _long(T, [1, 0, 1, 0]), 0.0),
    lambda T: T.masked_fill(T.zeros(3, 4), _bool(T, [True, False, True]), 0.0),
    lambda T: T.masked_fill(T.zeros(3, 4), _bool(T, [True, False, True, False]), T.tensor([1.0])),
    lambda T: T.zeros(4).masked_fill_(T.ones(3, 4, dtype=T.bool), 0.0),
    lambda T: T.masked_select(T.zeros(3, 4), _long(T, [1, 0, 1, 1])),
    lambda T: T.scatter(T.zeros(3, 4), 1, _long(T, [[0, 1]]), T.ones(1, 2, dtype=T.long)),
    lambda T: T.scatter(T.zeros(3, 4), 1, _long(T, [[0, 1, 2]]), T.ones(1, 2)),
    lambda T: T.scatter(T.zeros(3, 4), 1, _long(T, [[0, 9]]), T.ones(1, 2)),
    lambda T: T.scatter(T.zeros(3, 4), 1, T.tensor([[0.0, 9.0]]), T.ones(1, 2)),
    lambda T: T.scatter_add(T.zeros(3, 4), 1, _long(T, [0, 1]), T.ones(2)),
    lambda T: T.index_put(T.zeros(3, 4), (_long(T, [0, 1]),) * 3, T.ones(4)),
    lambda T: T.index_put(T.zeros(3, 4), (None, _long(T, [0, 1])), T.ones(1)),
    lambda T: T.index_put(T.zeros(3, 4), (_long(T, [0, 1]),), 1.0),
    lambda T: T.index_put(T.zeros(3, 4), (_long(T, [0, 5]),), T.ones(4)),
    lambda T: T.index_put(T.zeros(3, 4), (_long(T, [0, 1]),), T.ones(4, dtype=T.float64)),
    lambda T: T.index_put(T.zeros(3, 4), (_long(T, [0, 1]),), T.ones(3)),
    lambda T: T.select(T.zeros(3, 4), 0, 5),
    lambda T: T.select(T.tensor(1.0), 0, 0),
]


@pytest.mark.parametrize("k", range(len(OP_ERRORS)))
def test_op_errors(torch, k):
    same_error(torch, OP_ERRORS[k])


def test_nonzero(torch):
    a = with_layout(random_array((3, 4), np.float64, 0), "transposed")
    for make in (lambda T: T.from_numpy(a) > 0, lambda T: T.from_numpy(np.where(a > 0, a, 0.0)),
                 lambda T: T.tensor(3.0), lambda T: T.tensor(0.0), lambda T: T.zeros(0, 3)):
        ours, theirs = make(nbgrad), make(torch)
        assert_close(nbgrad.nonzero(ours), torch.nonzero(theirs))
        assert_close(ours.argwhere(), theirs.argwhere())
        ours_t, theirs_t = nbgrad.nonzero(ours, as_tuple=True), torch.nonzero(theirs, as_tuple=True)
        assert len(ours_t) == len(theirs_t)
        for o, t in zip(ours_t, theirs_t):
            assert_close(o, t)


# -- second-order gradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [(1, slice(1, 3)), (slice(None), None, 2), ([0, 0, 2],), (M(MASK_34),),
                                  (slice(None), [3, 1])], ids=repr)
def test_double_backward_through_indexing(torch, spec):
    a = random_array((3, 4), np.float64, 0)
    out = []
    for T in (nbgrad, torch):
        x = leaf(T, a.copy())
        y = x[build(T, spec)]
        v = leaf(T, random_array(tuple(y.shape), np.float64, 1))
        gx, = T.autograd.grad(y, x, v, create_graph=True)
        gx.backward(T.from_numpy(random_array((3, 4), np.float64, 2)))
        out.append((gx, v.grad, gx.grad_fn.name()))
    assert_close(out[0][0], out[1][0])
    assert_close(out[0][1], out[1][1])
    assert out[0][2] == out[1][2]


def test_double_backward_through_index_put_and_gather(torch):
    a = random_array((3, 4), np.float64, 0)
    out = []
    for T in (nbgrad, torch):
        x = leaf(T, a.copy())
        w = leaf(T, random_array((2, 4), np.float64, 1))
        y = T.index_put(x * x, (_long(T, [2, 0]),), w * w) + T.gather(x * x, 1, _long(T, [[0, 0, 1, 1]] * 3))
        gx, gw = T.autograd.grad(y, (x, w), T.from_numpy(random_array((3, 4), np.float64, 2)), create_graph=True)
        (gx * gx).backward(T.ones(3, 4, dtype=T.float64))
        (gw * 1).backward(T.ones(2, 4, dtype=T.float64))
        out.append((gx, gw, x.grad, w.grad))
    for ours, theirs in zip(*out):
        assert_close(ours, theirs)


# -- the kernels on their own (parallel paths included) -----------------------------------------------
def test_kernels_parallel_gather_scatter_against_numpy():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((300, 500)).T                       # non-contiguous, 150k elements
    i0, i1 = rng.integers(0, 500, 70_000), rng.integers(0, 300, 70_000)
    for dims, arrays, index in [((0, 1), (i0, i1), (i0, i1)), ((0,), (i0[:400],), (i0[:400],)),
                                ((1,), (i1[:300, None],), (slice(None), i1[:300, None]))]:
        bshape = np.broadcast_shapes(*(a.shape for a in arrays))
        coords = np.stack([np.broadcast_to(a, bshape).reshape(-1) for a in arrays])
        coords[0, ::3] -= src.shape[dims[0]]                    # negative entries count from the end
        p = kernels.plan(src, dims, coords, bshape)
        out = np.empty(p.shape)
        kernels.gather(out, src, p)
        np.testing.assert_array_equal(out, src[index])
        dst = np.zeros((500, 300))
        vals = rng.standard_normal(p.shape)
        kernels.scatter(dst, vals, kernels.plan(dst, dims, coords, bshape), accumulate=True)
        expected = np.zeros((500, 300))
        np.add.at(expected, index, vals)
        np.testing.assert_allclose(dst, expected, rtol=1e-12, atol=1e-12)


def test_kernels_gather_dim_and_nonzero_against_numpy():
    rng = np.random.default_rng(1)
    src = rng.standard_normal((400, 300)).T
    index = rng.integers(0, 300, (300, 400))
    out = np.empty(index.shape)
    kernels.gather_dim(out, src, 1, index)
    np.testing.assert_array_equal(out, np.take_along_axis(src, index, 1))
    dst = np.zeros((300, 400))
    kernels.scatter_dim(dst, 1, index, np.ones(index.shape), reduce="add")
    expected = np.zeros((300, 400))
    np.add.at(expected, (np.arange(300)[:, None], index), 1.0)
    np.testing.assert_array_equal(dst, expected)
    for mask in (src[::2] > 0.5, src.reshape(-1) > 0.5, src[:1, :7] > 0, src[:, 5:6] > 0):
        np.testing.assert_array_equal(kernels.nonzero(mask), np.argwhere(mask))
    assert kernels.out_of_bounds(np.array([[0, 1, -3, 3], [0, 5, 0, 0]]), [3, 4]) == (1, 1)
    assert kernels.out_of_bounds(np.array([[0, 1, -3, 2]]), [3]) is None


# -- scatter with reduce (PyTorch's legacy form: computed, not differentiable) --------------------------
@pytest.mark.parametrize("reduce", ["add", "multiply"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("inplace", [False, True])
def test_scatter_reduce_matches_torch(torch, reduce, dim, inplace):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 5))
    index = rng.integers(0, 4 if dim == 0 else 5, (3, 4))
    src = rng.standard_normal((3, 5))
    for s in (src, 2.5):
        def run(lib):
            x = lib.tensor(base)
            op = x.scatter_ if inplace else x.scatter
            args = (dim, lib.tensor(index), lib.tensor(s) if isinstance(s, np.ndarray) else s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return op(*args, reduce=reduce)
        np.testing.assert_allclose(run(nbgrad).numpy(), run(torch).numpy(), rtol=1e-12)


def test_scatter_reduce_records_no_derivative_as_torch(torch):
    def run(lib):
        x = lib.zeros(3, 4, requires_grad=True)
        src = lib.arange(1., 13.).reshape(3, 4).requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")            # PyTorch warns once per process
            y = x.scatter(0, lib.tensor([[0, 1, 2, 0], [1, 2, 0, 1]]), src, reduce="add")
        assert type(y.grad_fn).__name__ == "NotImplemented"
        y.sum().backward()
    same_error(torch, run)


def test_scatter_reduce_with_a_tensor_source_warns_as_torch():
    x = nbgrad.zeros(3, 4)
    with pytest.warns(UserWarning, match="The reduce argument of torch.scatter with Tensor src is deprecated"):
        x.scatter(0, nbgrad.tensor([[0, 1, 2, 0]]), nbgrad.ones(1, 4), reduce="multiply")


def test_scatter_reduce_rejects_other_reductions_as_torch(torch):
    same_error(torch, lambda lib: lib.zeros(3).scatter(0, lib.tensor([0]), 1.0, reduce="max"))
