"""Programs that once gave a wrong answer without a word (fuzzing against PyTorch found
them): each is written once, run with nbgrad and with PyTorch, and must agree in values,
gradients, and in what it raises."""
import threading
import warnings

import numpy as np
import pytest

import nbgrad


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def outcome(program, lib):
    """What ``program(lib)`` gives: its results as arrays (signed zeros kept), or the error."""
    try:
        result = program(lib)
    except Exception as error:              # noqa: BLE001: the error is the outcome
        return type(error).__name__, str(error)
    return [np.array(r.detach().tolist() if hasattr(r, "detach") else r, dtype=np.float64) for r in result]


def agree(program, torch):
    ours, theirs = outcome(program, nbgrad), outcome(program, torch)
    if isinstance(theirs, tuple) or isinstance(ours, tuple):
        assert ours == theirs
        return
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
        np.testing.assert_array_equal(np.signbit(a) & ~np.isnan(a), np.signbit(b) & ~np.isnan(b))  # -0.0 != 0.0


def grad_of(build, values, dtype="float32"):
    """The gradient of ``build(lib, x).sum()`` with respect to a leaf ``x`` holding ``values``."""
    def program(lib):
        x = lib.tensor(values, dtype=getattr(lib, dtype), requires_grad=True)
        y = build(lib, x)
        y.sum().backward()
        return y, x.grad
    return program


# -- views follow their base's history --------------------------------------------------------------
def _view_then_setitem(lib):
    x = lib.tensor([1., 2., 3.], requires_grad=True)
    h = x * 1
    a = h.view(3)
    h[1] = 0.0
    a.backward(lib.ones(3))
    return a, x.grad


def _slice_then_mul_(lib):
    x = lib.tensor([1., 2., 3.], requires_grad=True)
    h = x * 1
    a = h[:]
    h.mul_(2)
    a.backward(lib.ones(3))
    return a, x.grad


def _sibling_view_written(lib):
    x = lib.tensor([1., 2., 3.], requires_grad=True)
    h = x * 1
    a, b = h[:2], h[1:]
    b.mul_(3)
    a.sum().backward()
    return a, x.grad


def _view_of_plain_base_gets_history(lib):
    x = lib.tensor([1., 2., 3.], requires_grad=True)
    h = lib.zeros(3)
    a = h[1:]
    h.copy_(x * 2)
    (a * a).sum().backward()
    return a, x.grad


def _view_of_view(lib):
    x = lib.tensor([[1., 2.], [3., 4.]], requires_grad=True)
    h = x * 1
    a = h.t()[0]
    h[0, 0] = 10.0
    (a * a).sum().backward()
    return a, x.grad


@pytest.mark.parametrize("program", [_view_then_setitem, _slice_then_mul_, _sibling_view_written,
                                     _view_of_plain_base_gets_history, _view_of_view])
def test_views_take_their_base_history_after_inplace_writes(program, torch):
    agree(program, torch)


def test_views_cannot_be_detached_in_place(torch):
    agree(lambda lib: (lib.ones(3, requires_grad=True) * 1)[:].detach_(), torch)


# -- zero branches give zero gradients, also when the incoming gradient is infinite --------------------
ZERO_BRANCHES = {
    "clamp_min": lambda lib, x: x.clamp(min=0).sqrt(),
    "clamp_tensor_bound": lambda lib, x: x.clamp(min=lib.zeros(2)).sqrt(),
    "relu": lambda lib, x: x.relu().sqrt(),
    "maximum": lambda lib, x: lib.maximum(x, lib.tensor(0.)).sqrt(),
    "minimum": lambda lib, x: (-lib.minimum(-x, lib.tensor(0.))).sqrt(),
    "where": lambda lib, x: lib.where(x > 0, x, 0.).sqrt(),
    "trunc_div": lambda lib, x: lib.div(x, 3, rounding_mode="trunc").sqrt(),
    "floor_div": lambda lib, x: (x // 3 + 1).sqrt(),
    "sign": lambda lib, x: (x.sign() * 0).sqrt(),
    "pow_zero": lambda lib, x: (x ** 0 - 1).sqrt(),
    "setitem": lambda lib, x: _set_first(x * 1).sqrt(),
}


def _set_first(y):
    y[0] = 0.0
    return y


@pytest.mark.parametrize("name", sorted(ZERO_BRANCHES))
def test_zero_branches_give_zero_not_nan(name, torch):
    agree(grad_of(ZERO_BRANCHES[name], [-1., 4.]), torch)


@pytest.mark.parametrize("values", [[-np.inf, -2., -0., 0., 3., np.nan]])
def test_relu_at_the_edges(values, torch):
    agree(grad_of(lambda lib, x: x.relu(), values), torch)
    agree(lambda lib: [1 / lib.relu(lib.tensor([-2., -0.]))], torch)


# -- values at the edges ----------------------------------------------------------------------------
INF, NAN = np.inf, np.nan
EDGES = {
    "remainder_inf": lambda lib: [lib.remainder(lib.tensor([5., -1., -0., 0.]), INF),
                                  lib.remainder(lib.tensor([5., -5.]), -INF)],
    "remainder_zero_sign": lambda lib: [lib.tensor([-0., 0., -3., 3.]) % 3., lib.tensor([-3., 3.]) % -3.],
    "remainder_int": lambda lib: [lib.tensor([7, -7, 7, -7]) % lib.tensor([2, 2, -2, -2])],
    "trunc_inf": lambda lib: [lib.div(lib.tensor([INF, -INF, 1., -0.3]), 3, rounding_mode="trunc")],
    "trunc_rounded_quotient": lambda lib: [lib.div(lib.tensor(1.), 0.1, rounding_mode="trunc")],
    "trunc_negative_zero": lambda lib: [lib.div(lib.tensor([-0.3]), 1, rounding_mode="trunc")],
    "trunc_int": lambda lib: [lib.div(lib.tensor([7, -7, 7, -7]), lib.tensor([2, 2, -2, -2]), rounding_mode="trunc")],
    "floor_edges": lambda lib: [lib.div(lib.tensor([INF, 1., -1., -0.]), 3, rounding_mode="floor"),
                                lib.div(lib.tensor([1., -1., 0.]), 0., rounding_mode="floor")],
    "clamp_nan_bound": lambda lib: [lib.clamp(lib.tensor([1., 2.]), min=lib.tensor([NAN, 0.])),
                                    lib.clamp(lib.tensor([1., 2.]), max=lib.tensor([NAN, 0.])),
                                    lib.clamp(lib.tensor([1., 2.]), min=NAN)],
    "clamp_crossed": lambda lib: [lib.clamp(lib.tensor([1., 2., 5.]), min=3., max=2.)],
    "pow_half": lambda lib: [lib.tensor([-INF, -0., 0., -4., INF, 2.]) ** 0.5,
                             lib.tensor([-INF, -0., 0., -4., INF, 2.]) ** -0.5],
    "pow_tensor_half": lambda lib: [lib.pow(lib.tensor([-INF, -0.]), lib.tensor([0.5, 0.5]))],
    "pow_int_half": lambda lib: [lib.tensor([4, 9]) ** 0.5],
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_values_at_the_edges(name, torch):
    agree(EDGES[name], torch)


def test_divisor_gradient_does_not_overflow(torch):
    def program(lib):
        a = lib.tensor([1e10, 1.], requires_grad=True)
        b = lib.tensor([1e20, 1e-30], requires_grad=True)
        (a / b).sum().backward()
        return a.grad, b.grad
    agree(program, torch)


# -- bad input is refused, as PyTorch refuses it ------------------------------------------------------
REFUSED = {
    "int_floor_divide_by_zero_tensor": lambda lib: [lib.tensor([1, 2]) // lib.tensor([0, 1])],
    "int_remainder_by_zero_tensor": lambda lib: [lib.tensor([1, 2]) % lib.tensor([1, 0])],
    "int_trunc_by_zero_tensor": lambda lib: [lib.div(lib.tensor([1, 2]), lib.tensor([0, 1]), rounding_mode="trunc")],
    "int_floor_divide_by_zero": lambda lib: [lib.tensor([1, 2]) // 0],
    "int_true_divide_by_zero": lambda lib: [lib.tensor([1, 2]) / lib.tensor([0, 1])],
    "outer_2d": lambda lib: [lib.outer(lib.ones(2, 2), lib.ones(2))],
    "outer_2d_other": lambda lib: [lib.outer(lib.ones(2), lib.ones(2, 2))],
    "arange_negative": lambda lib: [lib.arange(-5)],
    "arange_backwards": lambda lib: [lib.arange(5, 0)],
    "arange_down": lambda lib: [lib.arange(5, 0, -1)],
    "arange_inf": lambda lib: [lib.arange(0, INF)],
    "neg_bool_inplace": lambda lib: [lib.tensor([True]).neg_()],
    "broadcast_names_last_dim": lambda lib: [lib.ones(2, 3) * lib.ones(3, 2)],
    "broadcast_3d": lambda lib: [lib.ones(2, 3, 4) + lib.ones(5, 1, 4)],
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_as_pytorch_refuses(name, torch):
    agree(REFUSED[name], torch)


# -- writes through memory that several elements share ------------------------------------------------
def _expanded(lib, update):
    v = lib.zeros(3)
    update(v.expand(2, 3))
    return [v]


OVERLAPPING = {
    "add_": lambda t: t.add_(1),
    "mul_": lambda t: t.mul_(2),
    "relu_": lambda t: t.relu_(),
    "clamp_": lambda t: t.clamp_(0, 1),
    "copy_": lambda t: t.copy_(nbgrad.ones(2, 3) if isinstance(t, nbgrad.Tensor) else t.new_ones(2, 3)),
    "fill_tensor": lambda t: t.fill_(t.new_tensor(1.) if not isinstance(t, nbgrad.Tensor) else nbgrad.tensor(1.)),
    "fill_number": lambda t: t.fill_(1.),          # one value everywhere: allowed
    "zero_": lambda t: t.zero_(),
    "setitem_row": lambda t: t.__setitem__(0, 5.),   # the row itself has no shared memory: allowed
    "setitem_column": lambda t: t.__setitem__((slice(None), 0), 5.),
    "setitem_all": lambda t: t.__setitem__(slice(None), 5.),
}


@pytest.mark.parametrize("name", sorted(OVERLAPPING))
def test_inplace_through_expanded_views(name, torch):
    agree(lambda lib: _expanded(lib, OVERLAPPING[name]), torch)


def test_inplace_through_expanded_view_is_refused_with_grad_too(torch):
    def program(lib):
        x = lib.tensor([1., 2., 3.], requires_grad=True)
        w = x * 1
        w.expand(2, 3).mul_(2)
        return [w]
    agree(program, torch)


# -- what is saved, and what may change after -------------------------------------------------------
SAVED = {
    "mul_self": lambda lib, a, c: a * c,
    "mul_other": lambda lib, a, c: c * a,
    "div_self": lambda lib, a, c: c / a,
    "div_other": lambda lib, a, c: a / c,
    "maximum": lambda lib, a, c: lib.maximum(a, c),
    "minimum": lambda lib, a, c: lib.minimum(c, a),
}


@pytest.mark.parametrize("name", sorted(SAVED))
def test_operand_changed_after_use_is_an_error_only_if_saved(name, torch):
    def program(lib):
        a = lib.tensor([2., 3.])
        c = lib.tensor([1., 5.], requires_grad=True)
        y = SAVED[name](lib, a, c)
        with lib.no_grad():
            c.zero_()
        y.sum().backward()
        return [c.grad]
    ours, theirs = outcome(program, nbgrad), outcome(program, torch)
    assert isinstance(ours, tuple) == isinstance(theirs, tuple)
    if isinstance(theirs, tuple):
        assert ours[1].split(" is at version")[0] == theirs[1].split(" is at version")[0]


# -- numpy views of tensors that require grad ---------------------------------------------------------
NUMPY = {
    "numpy_grad_mode": lambda lib: [lib.ones(2, requires_grad=True).numpy()],
    "numpy_no_grad": lambda lib: _under_no_grad(lib, lambda: lib.ones(2, requires_grad=True).numpy()),
    "asarray_grad_mode": lambda lib: [np.asarray(lib.ones(2, requires_grad=True))],
    "asarray_no_grad": lambda lib: _under_no_grad(lib, lambda: np.asarray(lib.ones(2, requires_grad=True))),
    "asarray_plain": lambda lib: [np.asarray(lib.ones(2))],
}


def _under_no_grad(lib, f):
    with lib.no_grad():
        return [f()]


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_numpy_refused_only_while_it_could_corrupt_the_graph(name, torch):
    agree(NUMPY[name], torch)


def test_numpy_inside_a_custom_function_forward(torch):
    def program(lib):
        class Double(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a):
                return lib.tensor(a.numpy() * 2)

            @staticmethod
            def backward(ctx, g):
                return g * 2
        x = lib.ones(2, dtype=lib.float64, requires_grad=True)
        Double.apply(x).sum().backward()
        return [x.grad]
    agree(program, torch)


# -- bool tensors updated in place --------------------------------------------------------------------
@pytest.mark.parametrize("op", ["__ior__", "__iand__", "__ixor__"])
def test_bool_inplace_operators_update_in_place(op, torch):
    def program(lib):
        m, n = lib.tensor([True, False, True]), lib.tensor([False, False, True])
        view = m[:]
        result = getattr(m, op)(n)
        assert result is m
        return [m, view]
    agree(program, torch)


# -- anomaly detection --------------------------------------------------------------------------------
def test_anomaly_mode_names_the_nan_and_the_forward_line():
    x = nbgrad.tensor([0., 4.], requires_grad=True)
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
        mode = nbgrad.autograd.detect_anomaly()
    with mode:
        assert nbgrad.is_anomaly_enabled()
        y = (x * 0).sqrt()
        with pytest.raises(RuntimeError, match=r"Function 'MulBackward0' returned nan values in its 0th output\."):
            y.sum().backward()
    assert not nbgrad.is_anomaly_enabled()
    with nbgrad.autograd.set_detect_anomaly(True):
        h = x * 2
        y = h * h
        h.add_(1)                              # the line the warning must name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                y.sum().backward()
    message = "\n".join(str(w.message) for w in caught)
    assert "Error detected in MulBackward0" in message and "y = h * h" in message
    assert "nbgrad/" not in message.split("caused the error:")[1]      # the user's frames only


# -- threads accumulating into one leaf ------------------------------------------------------------
def test_threads_backpropagating_into_one_leaf_lose_nothing():
    x = nbgrad.ones(8, 510, dtype=nbgrad.float64)
    w = nbgrad.zeros(510, 510, dtype=nbgrad.float64, requires_grad=True)
    rounds, threads = 150, 4

    def work():
        for _ in range(rounds):
            (x @ w).sum().backward()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert np.unique(w.grad.numpy()).tolist() == [8.0 * rounds * threads]


def test_a_loop_never_reads_past_an_operand_that_does_not_fit():
    """The last line of defence under every elementwise op (a saved tensor given new ``.data``
    of another shape reaches the kernels without the Tensor layer's broadcast check)."""
    from nbgrad.ops.elementwise import OPS
    out = np.empty((3, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        OPS["add"](out, np.ones((3, 5))[:, :4].T.copy().T[:, :3], np.ones(4))
    with pytest.raises(ValueError, match="does not broadcast"):
        OPS["add"](out, np.ones((2, 3, 4))[:, ::2], np.ones(4))


# -- found by the fuzzer ----------------------------------------------------------------------------
FOUND = {
    "masked_select_0d": lambda lib: [lib.tensor(1.5).masked_select(lib.tensor(True)),
                                     lib.tensor(1.5).masked_select(lib.tensor(False)) * 2],
    "sum_empty_dims_keepdim": lambda lib: [lib.zeros(3, 0, 0).sum((-1, 0), keepdim=True)],
    "sum_to_size_empty": lambda lib: [lib.zeros(0, 3, 2).sum_to_size(1, 3, 1)],
    "max_empty_kept": lambda lib: list(lib.zeros(3, 0, 2).max(0)),
    "sum_to_size_to_a_number_is_new": lambda lib: _sum_to_number_then_update(lib),
}


def _sum_to_number_then_update(lib):
    x = lib.tensor(0.5)
    x.sum_to_size(()).mul_(3)
    return [x]


@pytest.mark.parametrize("name", sorted(FOUND))
def test_found_by_the_fuzzer(name, torch):
    agree(FOUND[name], torch)


def test_backward_of_an_expanded_empty_tensor(torch):
    def program(lib):
        x = lib.zeros(0, 1, 3, requires_grad=True)
        x.expand(3, -1, 3, 3).sum().backward()
        return [x.grad]
    agree(program, torch)
