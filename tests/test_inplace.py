"""In-place ops: values, version counters (shared by views), PyTorch's refusals, recorded
updates of non-leaves, and refusals that leave the data untouched."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
from helpers import assert_close, broadcastable_shapes, grad_tol, nb, noncontiguous, random_array, seeds, to_torch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def ones_like(t):
    return nbgrad.ones(t.shape, dtype=t.dtype)


# Each update as ``f(x, other)`` for both libraries; ``other`` broadcasts to ``x``.
UPDATES = {
    "add_": lambda x, o: x.add_(o),
    "add_alpha": lambda x, o: x.add_(o, alpha=2),
    "sub_": lambda x, o: x.sub_(o),
    "mul_": lambda x, o: x.mul_(o),
    "div_": lambda x, o: x.div_(o),
    "iadd": lambda x, o: x.__iadd__(o),
    "isub": lambda x, o: x.__isub__(o),
    "imul": lambda x, o: x.__imul__(o),
    "itruediv": lambda x, o: x.__itruediv__(o),
    "clamp_": lambda x, o: x.clamp_(-0.5, 0.5),
    "clamp_min": lambda x, o: x.clamp_(min=0.0),
    "zero_": lambda x, o: x.zero_(),
    "fill_": lambda x, o: x.fill_(2.5),
    "copy_": lambda x, o: x.copy_(o),
    "number_add_": lambda x, o: x.add_(3),
    "number_mul_": lambda x, o: x.mul_(-2.0),
}


def _other(shape, dtype, seed):
    """The second operand: nonzero (it may divide)."""
    a = random_array(shape, dtype, seed, 0.5, 2.0)
    return np.asarray(a * np.where(random_array(shape, np.float64, seed + 1) > 0, 1, -1).astype(dtype))


@pytest.mark.parametrize("name", UPDATES)
@given(shapes=broadcastable_shapes(), dtype=st.sampled_from([np.float32, np.float64]), seed=seeds,
       layout=st.sampled_from(["contiguous", "transposed", "sliced"]))
def test_update_values_match_torch(torch, name, shapes, dtype, seed, layout):
    """In place, into contiguous and non-contiguous memory (the update goes where the tensor's
    memory is, not into a copy)."""
    xshape = np.broadcast_shapes(*shapes)
    x = random_array(xshape, dtype, seed)
    if layout != "contiguous":
        x = noncontiguous(x, layout)
    o = _other(shapes[1], dtype, seed + 2)
    xt = torch.from_numpy(np.array(x))
    xn = nb(x)
    before = xn._version
    result = UPDATES[name](xn, nb(o))
    UPDATES[name](xt, torch.from_numpy(o))
    assert result is xn
    assert xn._version == before + 1
    assert_close(x, xt)                             # the caller's array was written to


def test_version_counter_counts_every_update():
    x = nbgrad.zeros(3)
    assert x._version == 0
    x.add_(1)
    x.mul_(2)
    x += 1
    x.zero_()
    assert x._version == 4


def test_operators_update_in_place():
    x = nbgrad.tensor([1.0, 2.0])
    alias = x
    x += 1
    x -= 0.5
    x *= 2
    x /= 3
    assert x is alias
    np.testing.assert_allclose(x.numpy(), [1.0, 5.0 / 3.0], rtol=1e-6)
    i = nbgrad.tensor([1, 2])
    i += 1
    assert i.dtype is nbgrad.int64 and i.tolist() == [2, 3]


def test_fill_zero_clamp_copy_values():
    x = nbgrad.tensor([1.0, 5.0])
    assert x.clamp_(2, 3).tolist() == [2.0, 3.0]
    assert x.fill_(7).tolist() == [7.0, 7.0]
    assert x.fill_(nbgrad.tensor(1.5)).tolist() == [1.5, 1.5]
    assert x.zero_().tolist() == [0.0, 0.0]
    m = nbgrad.zeros(2, 2)
    m.copy_(nbgrad.tensor([1, 2]))                   # broadcast, and cast from int64
    assert m.tolist() == [[1.0, 2.0], [1.0, 2.0]]
    i = nbgrad.tensor([1, 2])
    i.copy_(nbgrad.tensor([1.7, 2.2]))               # copy_ casts where arithmetic would refuse
    assert i.tolist() == [1, 2]


# -- views share the version counter ------------------------------------------------------------------
def test_views_share_version_counter():
    a = nbgrad.ones(2, 3)
    views = [a.t(), a[0], a.view(6), a[:, 1:]]
    a.add_(1)
    assert a._version == 1 and all(v._version == 1 for v in views)
    views[1].mul_(2)                                 # an update through a view
    assert a._version == 2 and all(v._version == 2 for v in views)
    assert a.tolist() == [[4.0, 4.0, 4.0], [2.0, 2.0, 2.0]]
    views[0].sub_(1)                                 # through a transposed view
    assert a.tolist() == [[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]]


def test_detach_shares_version_counter_data_does_not():
    x = nbgrad.ones(2)
    x.detach().add_(1)
    assert x._version == 1
    x.data.add_(1)
    assert x._version == 1 and x.tolist() == [3.0, 3.0]


# -- saved tensors changed in place -------------------------------------------------------------------
MODIFIED = (r"one of the variables needed for gradient computation has been modified by an inplace operation: "
            r"\[torch.FloatTensor \[2\]\], which is output 0 of \w+, is at version 1; expected version 0 instead")


def test_modified_saved_input_raises():
    a = nbgrad.ones(2, requires_grad=True)
    y = a * 2
    z = y * y                                        # saves y
    y.add_(1)
    with pytest.raises(RuntimeError, match=MODIFIED):
        z.backward(ones_like(z))


def test_modified_saved_output_raises():
    a = nbgrad.ones(2, requires_grad=True)
    y = a.exp()                                      # saves its output
    y.add_(1)
    with pytest.raises(RuntimeError, match=MODIFIED):
        y.backward(ones_like(y))


def test_modified_through_a_view_raises():
    a = nbgrad.ones(2, 2, requires_grad=True)
    y = a * 1
    z = y.sigmoid() * y                              # saves y
    y[0].mul_(3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward(ones_like(z))


def test_modified_through_detach_raises_but_not_through_data():
    a = nbgrad.ones(2, requires_grad=True)
    y = a * 1
    z = y * y
    y.detach().add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward(ones_like(z))
    y = a * 1
    z = y * y
    y.data.add_(1)                                   # .data: unchecked, uses the new values
    z.backward(ones_like(z))
    assert a.grad.tolist() == [4.0, 4.0]


def test_unsaved_tensor_may_be_modified():
    a = nbgrad.ones(2, requires_grad=True)
    y = a * 2
    z = y + 1                                        # add saves nothing
    y.mul_(5)
    z.backward(ones_like(z))
    assert a.grad.tolist() == [2.0, 2.0]


# -- leaves ------------------------------------------------------------------------------------------
def test_leaf_requiring_grad_refused_under_grad_mode():
    x = nbgrad.ones(2, requires_grad=True)
    for update in (lambda: x.add_(1), lambda: x.mul_(2), lambda: x.zero_(), lambda: x.fill_(3),
                   lambda: x.clamp_(0, 1), lambda: x.copy_(nbgrad.zeros(2)), lambda: x.__iadd__(1)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place "
                                               "operation."):
            update()
    assert x.tolist() == [1.0, 1.0] and x._version == 0


def test_view_of_leaf_requiring_grad_refused():
    x = nbgrad.ones(2, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad is being used in an "
                                           "in-place operation."):
        x[0].add_(1)


def test_leaf_update_allowed_under_no_grad():
    x = nbgrad.ones(2, requires_grad=True)
    with nbgrad.no_grad():
        x.add_(1)
        x.mul_(3)
        x -= 1
    assert x.detach().tolist() == [5.0, 5.0] and x.requires_grad and x.is_leaf and x.grad_fn is None
    (x * x).backward(ones_like(x))
    assert x.grad.tolist() == [10.0, 10.0]


def test_sgd_step_pattern():
    """The tutorials' update: ``w.data -= lr * w.grad.data`` then ``w.grad.data.zero_()``."""
    w = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    (w * w).backward(ones_like(w))
    w.data -= 0.1 * w.grad.data
    assert w.detach().tolist() == pytest.approx([0.8, 1.6])
    w.grad.data.zero_()
    assert w.grad.tolist() == [0.0, 0.0]
    (w * 3).backward(ones_like(w))
    assert w.grad.tolist() == [3.0, 3.0]


# -- recorded updates of non-leaves ---------------------------------------------------------------------
NON_LEAF = {
    "add_mul": lambda lib, a, b: _chain(a * 1, lambda y: (y.add_(b), y.mul_(b), y * a)[-1]),
    "div_sub": lambda lib, a, b: _chain(a.sin(), lambda y: (y.div_(b), y.sub_(a, alpha=0.5), y)[-1]),
    "operators": lambda lib, a, b: _chain(a * 2, lambda y: _iops(y, a, b)),
    "clamp_": lambda lib, a, b: _chain(a * b, lambda y: (y.clamp_(-0.5, 0.5), y * a)[-1]),
    "fill_": lambda lib, a, b: _chain(a * b, lambda y: (y.fill_(2.0), y * a + b)[-1]),
    "zero_": lambda lib, a, b: _chain(a + b, lambda y: (y.zero_(), y + a * b)[-1]),
    "copy_": lambda lib, a, b: _chain(a * 3, lambda y: (y.copy_(b * b), y * a)[-1]),
    "view_update": lambda lib, a, b: _chain(a * 1, lambda y: (y[1].mul_(b[1]), y.exp())[-1]),
    "slice_update": lambda lib, a, b: _chain(a * 2, lambda y: (y[:, :1].add_(b[:, :1] * 3), y * y)[-1]),
    "transposed_update": lambda lib, a, b: _chain(a + 0, lambda y: (y.t().mul_(b.t()), y.sigmoid())[-1]),
}


def _chain(y, rest):
    return rest(y)


def _iops(y, a, b):
    y += b
    y *= a
    y -= 1
    y /= b
    return y


@pytest.mark.parametrize("name", NON_LEAF)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_leaf_updates_are_recorded(torch, name, dtype):
    a0, b0 = random_array((3, 2), dtype, 1, 0.5, 2.0), random_array((3, 2), dtype, 2, 0.5, 2.0)
    g = random_array((3, 2), dtype, 3)
    a, b = nb(a0.copy(), requires_grad=True), nb(b0.copy(), requires_grad=True)
    at, bt = to_torch(a0, True), to_torch(b0, True)
    y, yt = NON_LEAF[name](nbgrad, a, b), NON_LEAF[name](torch, at, bt)
    assert_close(y, yt)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    assert_close(a.grad, at.grad, **grad_tol(dtype))
    assert_close(b.grad, bt.grad, **grad_tol(dtype))


def test_non_leaf_update_grad_fn_and_finite_differences():
    def f(a, b):
        y = a * 1
        y.mul_(b)
        y.add_(a)
        return y

    a, b = nbgrad.tensor([1.5, -2.0], dtype=nbgrad.float64, requires_grad=True), \
        nbgrad.tensor([0.5, 3.0], dtype=nbgrad.float64, requires_grad=True)
    y = f(a, b)
    assert y.grad_fn.name() == "AddBackward0" and not y.is_leaf
    y.backward(ones_like(y))
    assert a.grad.tolist() == [1.5, 4.0] and b.grad.tolist() == [1.5, -2.0]     # b + 1, a


def test_update_with_grad_operand_makes_tensor_require_grad():
    y = nbgrad.zeros(2)
    w = nbgrad.tensor([2.0, 3.0], requires_grad=True)
    y.add_(w * w)
    assert y.requires_grad and y.grad_fn is not None
    y.backward(ones_like(y))
    assert w.grad.tolist() == [4.0, 6.0]
    z = nbgrad.zeros(2)
    z.copy_(w * 3)
    assert z.grad_fn.name() == "CopyBackwards"


# -- refusals leave the data untouched ------------------------------------------------------------------
def test_result_dtype_that_does_not_fit_raises_before_writing():
    i = nbgrad.tensor([1, 2])
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i.mul_(2.5)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i.div_(2)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        i += nbgrad.tensor([0.5, 0.5])
    b = nbgrad.tensor([True, False])
    with pytest.raises(RuntimeError, match="result type Long can't be cast to the desired output type Bool"):
        b.add_(1)
    assert i.tolist() == [1, 2] and i._version == 0
    assert b.tolist() == [True, False] and b._version == 0


def test_bad_broadcast_raises_and_leaves_data_unchanged():
    x = nbgrad.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"output with shape \[2\] doesn't match the broadcast shape \[2, 2\]"):
        x.add_(nbgrad.ones(2, 2))
    with pytest.raises(RuntimeError, match=r"The size of tensor a \(2\) must match the size of tensor b \(3\)"):
        x.mul_(nbgrad.ones(3))
    with pytest.raises(RuntimeError, match=r"output with shape \[2\] doesn't match the broadcast shape \[3, 2\]"):
        x.copy_(nbgrad.ones(3, 2))
    assert x.tolist() == [1.0, 2.0] and x._version == 0


def test_refused_recorded_update_leaves_data_and_graph_unchanged():
    a = nbgrad.ones(2, requires_grad=True)
    y = a * 2
    fn = y.grad_fn
    with pytest.raises(RuntimeError):
        y.add_(nbgrad.ones(3, 2))
    assert y.grad_fn is fn and y.detach().tolist() == [2.0, 2.0] and y._version == 0


def test_update_reading_overlapping_memory():
    """``x[1:] += x[:-1]`` reads memory it writes. PyTorch refuses; nbgrad reads the
    overlapping operand from a copy, so the result never depends on the loop order."""
    x = nbgrad.tensor([1.0, 2.0, 3.0, 4.0])
    x[1:].add_(x[:-1])
    assert x.tolist() == [1.0, 3.0, 5.0, 7.0]
    y = nbgrad.arange(4.0).view(2, 2)
    y.add_(y.t())
    assert y.tolist() == [[0.0, 3.0], [3.0, 6.0]]
    big = nbgrad.from_numpy(np.arange(300.0 * 300.0).reshape(300, 300))   # the parallel loop
    expected = big.numpy() + big.numpy().T
    big.add_(big.t())
    np.testing.assert_array_equal(big.numpy(), expected)
