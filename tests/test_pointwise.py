"""Elementwise ops: values and gradients against PyTorch and against finite differences,
over shapes with broadcasting, non-contiguous memory, float32 and float64."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbgrad
from helpers import (arrays, assert_close, broadcastable_shapes, check_grad, dtypes, grad_tol, nb, random_array,
                     seeds, shapes, to_torch, with_layout)

# Every op is written once as ``f(lib, *xs)`` and run with ``lib`` = nbgrad and = torch.
# Each entry: the op, and the range its inputs are drawn from (low, high, a point to keep away from).
ANY = (-2.0, 2.0, None)
POSITIVE = (0.2, 3.0, None)
NONZERO = (-2.0, 2.0, 0.0)

UNARY = {
    "neg": (lambda lib, x: -x, ANY),
    "neg_method": (lambda lib, x: x.neg(), ANY),
    "exp": (lambda lib, x: lib.exp(x), ANY),
    "exp_method": (lambda lib, x: x.exp(), ANY),
    "log": (lambda lib, x: lib.log(x), POSITIVE),
    "sqrt": (lambda lib, x: lib.sqrt(x), POSITIVE),
    "abs": (lambda lib, x: lib.abs(x), NONZERO),
    "abs_builtin": (lambda lib, x: abs(x), NONZERO),
    "sin": (lambda lib, x: lib.sin(x), ANY),
    "cos": (lambda lib, x: x.cos(), ANY),
    "tanh": (lambda lib, x: lib.tanh(x), (-4.0, 4.0, None)),
    "sigmoid": (lambda lib, x: x.sigmoid(), (-6.0, 6.0, None)),
    "relu": (lambda lib, x: lib.relu(x), NONZERO),
    "clamp": (lambda lib, x: lib.clamp(x, -1.0, 1.0), ANY),
    "clamp_min": (lambda lib, x: x.clamp(min=-0.5), ANY),
    "clamp_max": (lambda lib, x: x.clamp(max=0.5), ANY),
    "clip": (lambda lib, x: lib.clip(x, -1, 1), ANY),
    "square": (lambda lib, x: lib.square(x), ANY),
    "sign": (lambda lib, x: lib.sign(x), NONZERO),
    # tensor and number, on either side
    "add_number": (lambda lib, x: x + 1.5, ANY),
    "radd_number": (lambda lib, x: 1.5 + x, ANY),
    "sub_number": (lambda lib, x: x - 2, ANY),
    "rsub_number": (lambda lib, x: 10 - x, ANY),
    "mul_number": (lambda lib, x: x * 2, ANY),
    "rmul_number": (lambda lib, x: 2.5 * x, ANY),
    "div_number": (lambda lib, x: x / 3, ANY),
    "rdiv_number": (lambda lib, x: 3 / x, NONZERO),
    "pow_2": (lambda lib, x: x ** 2, ANY),
    "pow_3": (lambda lib, x: x ** 3, ANY),
    "pow_2.5": (lambda lib, x: x ** 2.5, POSITIVE),
    "pow_0": (lambda lib, x: x ** 0, ANY),
    "pow_minus_1": (lambda lib, x: x ** -1, NONZERO),
    "pow_method": (lambda lib, x: x.pow(0.5), POSITIVE),
    "rpow_2": (lambda lib, x: 2 ** x, ANY),
    "rpow_0.5": (lambda lib, x: 0.5 ** x, ANY),
    "add_alpha": (lambda lib, x: lib.add(x, 2.0, alpha=3), ANY),
    "chain": (lambda lib, x: (x * x + 1).tanh() * x.exp() - x / 2, ANY),
}

BINARY = {
    "add": (lambda lib, a, b: a + b, ANY, ANY),
    "add_fn_alpha": (lambda lib, a, b: lib.add(a, b, alpha=2), ANY, ANY),
    "sub": (lambda lib, a, b: a - b, ANY, ANY),
    "sub_alpha": (lambda lib, a, b: a.sub(b, alpha=0.5), ANY, ANY),
    "mul": (lambda lib, a, b: a * b, ANY, ANY),
    "mul_fn": (lambda lib, a, b: lib.mul(a, b), ANY, ANY),
    "div": (lambda lib, a, b: a / b, ANY, NONZERO),
    "div_fn": (lambda lib, a, b: lib.div(a, b), ANY, NONZERO),
    "pow": (lambda lib, a, b: a ** b, POSITIVE, ANY),
    "pow_fn": (lambda lib, a, b: lib.pow(a, b), POSITIVE, ANY),
    "maximum": (lambda lib, a, b: lib.maximum(a, b), ANY, ANY),
    "minimum": (lambda lib, a, b: lib.minimum(a, b), ANY, ANY),
    "clamp_tensor_bounds": (lambda lib, a, b: lib.clamp(a, min=b), ANY, ANY),
    "product_rule": (lambda lib, a, b: a * b + a / (b * b + 1) - a.sigmoid() * b, ANY, ANY),
}

COMPARISONS = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "eq_fn": lambda a, b: a.eq(b), "lt_fn": lambda a, b: a.lt(b), "ge_fn": lambda a, b: a.ge(b),
}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _draw(data, shape, domain, dtype):
    low, high, away = domain
    return data.draw(arrays(shape, dtype, low, high, away))


def _draw_pair(data, shapes, domains, dtype):
    """Two operands from different random streams: never tied, even when hypothesis shrinks
    both seeds to the same value (ties sit on the kinks of maximum, minimum and clamp)."""
    seed = data.draw(seeds)
    return [random_array(shape, dtype, seed + k, *domain) for k, (shape, domain) in enumerate(zip(shapes, domains))]


def _run_both(torch, op, inputs, grad_seed, float_inputs=None):
    """Run ``op`` on nbgrad and torch leaves built from ``inputs``; compare the values and,
    after ``backward`` with the same random (non-contiguous) gradient, the gradients."""
    xs = [nb(x, requires_grad=True) for x in inputs]
    ts = [to_torch(x, requires_grad=True) for x in inputs]
    y, yt = op(nbgrad, *xs), op(torch, *ts)
    assert_close(y, yt)
    assert y.requires_grad and y.grad_fn is not None and not y.is_leaf
    g = with_layout(random_array(yt.shape, yt.detach().numpy().dtype, grad_seed), "transposed")
    y.backward(nb(g))
    yt.backward(to_torch(g))
    for x, t in zip(xs, ts):
        assert_close(x.grad, t.grad, **grad_tol(x.dtype.numpy))


@pytest.mark.parametrize("name", UNARY)
@given(shape=shapes(), dtype=dtypes, grad_seed=seeds, data=st.data())
def test_unary_matches_torch(torch, name, shape, dtype, grad_seed, data):
    op, domain = UNARY[name]
    _run_both(torch, op, [_draw(data, shape, domain, dtype)], grad_seed)


@pytest.mark.parametrize("name", BINARY)
@given(shape=shapes(), dtype=dtypes, grad_seed=seeds, data=st.data())
def test_binary_same_shape_matches_torch(torch, name, shape, dtype, grad_seed, data):
    op, da, db = BINARY[name]
    _run_both(torch, op, [_draw(data, shape, da, dtype), _draw(data, shape, db, dtype)], grad_seed)


@pytest.mark.parametrize("name", BINARY)
@given(shapes=broadcastable_shapes(), dtype=dtypes, grad_seed=seeds, data=st.data())
def test_binary_broadcast_matches_torch(torch, name, shapes, dtype, grad_seed, data):
    """The engine sums the gradient of a broadcast operand back to its shape."""
    op, da, db = BINARY[name]
    _run_both(torch, op, [_draw(data, shapes[0], da, dtype), _draw(data, shapes[1], db, dtype)], grad_seed)


@pytest.mark.parametrize("name", ["add", "mul", "div", "pow", "maximum", "product_rule"])
@given(shapes=broadcastable_shapes(), grad_seed=seeds, data=st.data())
def test_binary_mixed_float_dtypes(torch, name, shapes, grad_seed, data):
    """float32 with float64 computes in float64 (unless the float64 one is 0-d); each
    gradient comes back in its input's dtype."""
    op, da, db = BINARY[name]
    a, b = _draw(data, shapes[0], da, np.float32), _draw(data, shapes[1], db, np.float64)
    if data.draw(st.booleans()):
        a, b = a.astype(np.float64), b.astype(np.float32)
    xa, xb = nb(a, requires_grad=True), nb(b, requires_grad=True)
    ta, tb = to_torch(a, True), to_torch(b, True)
    y, yt = op(nbgrad, xa, xb), op(torch, ta, tb)
    wide = a.dtype if (a.ndim and not b.ndim) else b.dtype if (b.ndim and not a.ndim) else np.float64
    assert y.dtype.numpy == wide == yt.detach().numpy().dtype
    g = random_array(y.shape, wide, grad_seed)
    y.backward(nb(g))
    yt.backward(to_torch(g))
    assert xa.grad.dtype is xa.dtype and xb.grad.dtype is xb.dtype
    assert_close(xa.grad, ta.grad, **grad_tol(np.float32))
    assert_close(xb.grad, tb.grad, **grad_tol(np.float32))


# -- finite differences (float64) ------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in UNARY if n != "sign"])
@given(shape=shapes(max_dims=3, max_side=3), data=st.data())
def test_unary_finite_differences(name, shape, data):
    op, domain = UNARY[name]
    check_grad(lambda x: op(nbgrad, x), _draw(data, shape, domain, np.float64), seed=data.draw(seeds))


@pytest.mark.parametrize("name", BINARY)
@given(shapes=broadcastable_shapes(max_dims=3, max_side=3), data=st.data())
def test_binary_finite_differences(name, shapes, data):
    op, da, db = BINARY[name]
    a, b = _draw_pair(data, shapes, (da, db), np.float64)
    check_grad(lambda x, y: op(nbgrad, x, y), a, b, seed=data.draw(seeds))


@given(shapes=broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), data=st.data())
def test_where_finite_differences(shapes, data):
    cond = nb(random_array(shapes[0], np.float64, data.draw(seeds)) > 0)
    a, b = _draw_pair(data, shapes[1:], (ANY, ANY), np.float64)
    check_grad(lambda x, y: nbgrad.where(cond, x, y), a, b, seed=data.draw(seeds))


# -- where -----------------------------------------------------------------------------------------
@given(shapes=broadcastable_shapes(num_shapes=3), dtype=dtypes, grad_seed=seeds, data=st.data())
def test_where_matches_torch(torch, shapes, dtype, grad_seed, data):
    cond = np.asarray(random_array(shapes[0], np.float64, data.draw(seeds)) > 0)
    a, b = _draw(data, shapes[1], ANY, dtype), _draw(data, shapes[2], ANY, dtype)
    c_nb, c_t = nb(with_layout(cond, data.draw(st.sampled_from(["contiguous", "sliced"])))), torch.from_numpy(cond)
    _run_both(torch, lambda lib, x, y: lib.where(c_nb if lib is nbgrad else c_t, x, y), [a, b], grad_seed)


def test_where_with_numbers(torch):
    x = np.array([[-1.0, 2.0], [3.0, -4.0]])
    got = nbgrad.where(nb(x) > 0, nb(x), 0.0)
    assert_close(got, torch.where(torch.from_numpy(x) > 0, torch.from_numpy(x), 0.0))
    got = nbgrad.where(nb(x) > 0, 1.0, nb(x))
    assert_close(got, torch.where(torch.from_numpy(x) > 0, 1.0, torch.from_numpy(x)))
    with pytest.raises(RuntimeError):
        nbgrad.where(nb(x), nb(x), nb(x))             # the condition must be bool


# -- comparisons and logic ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMPARISONS)
@given(shapes=broadcastable_shapes(), dtype=st.sampled_from([np.float32, np.float64, np.int64]),
       layout=st.sampled_from(["contiguous", "transposed", "sliced"]), data=st.data())
def test_comparisons_match_torch(torch, name, shapes, dtype, layout, data):
    """Small integers, so that ties (where ``==``, ``<=`` and ``<`` differ) are common."""
    op = COMPARISONS[name]
    rng = np.random.default_rng(data.draw(seeds))
    a = with_layout(rng.integers(-2, 3, shapes[0]).astype(dtype), layout)
    b = rng.integers(-2, 3, shapes[1]).astype(dtype)
    got = op(nb(a), nb(b))
    assert got.dtype is nbgrad.bool
    assert_close(got, op(torch.from_numpy(np.array(a)), torch.from_numpy(b)))
    assert_close(op(nb(a), 1), op(torch.from_numpy(np.array(a)), 1))
    assert_close(op(nb(a), 0.5), op(torch.from_numpy(np.array(a)), 0.5))
    if "_fn" not in name:                       # a number on the left: the reflected comparison
        assert_close(op(1, nb(a)), op(1, torch.from_numpy(np.array(a))))


def test_comparison_of_grad_tensor_has_no_grad():
    x = nbgrad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for y in (x > 2, x == x, x.lt(x * 2), nbgrad.ne(x, 1.0)):
        assert y.dtype is nbgrad.bool and not y.requires_grad and y.grad_fn is None


def test_comparisons_mixed_dtypes(torch):
    ints, floats = np.array([0, 1, 2]), np.array([0.5, 1.0, 2.5], dtype=np.float32)
    for op in COMPARISONS.values():
        assert_close(op(nb(ints), nb(floats)), op(torch.from_numpy(ints), torch.from_numpy(floats)))
        assert_close(op(nb(ints), 1.0), op(torch.from_numpy(ints), 1.0))
    assert (nbgrad.tensor([1, 2]) == 1.0).tolist() == [True, False]
    assert (nbgrad.tensor([1, 2]) < 1.5).tolist() == [True, False]
    assert (2 < nbgrad.tensor([1.0, 3.0])).tolist() == [False, True]


@pytest.mark.parametrize("name", ["logical_and", "logical_or", "logical_xor"])
@given(shapes=broadcastable_shapes(), dtype=st.sampled_from([np.bool_, np.float32, np.int64]), data=st.data())
def test_logical_match_torch(torch, name, shapes, dtype, data):
    rng = np.random.default_rng(data.draw(seeds))
    a = with_layout(rng.integers(0, 2, shapes[0]).astype(dtype) * (3 if dtype != np.bool_ else 1), "sliced")
    b = rng.integers(0, 2, shapes[1]).astype(dtype)
    got = getattr(nbgrad, name)(nb(a), nb(b))
    assert got.dtype is nbgrad.bool
    assert_close(got, getattr(torch, name)(torch.from_numpy(np.array(a)), torch.from_numpy(b)))
    assert_close(getattr(nb(a), name)(nb(b)), got)


def test_logical_not_and_bool_operators(torch):
    a = np.array([[True, False], [True, True]])
    b = np.array([False, True])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    assert_close(nbgrad.logical_not(nb(a)), torch.logical_not(ta))
    assert_close(nbgrad.logical_not(nb(np.array([0.0, 2.0]))), torch.logical_not(torch.tensor([0.0, 2.0])))
    assert_close(~nb(a), ~ta)
    assert_close(nb(a) & nb(b), ta & tb)
    assert_close(nb(a) | nb(b), ta | tb)
    assert_close(nb(a) ^ nb(b), ta ^ tb)
    assert_close(nb(a) & True, ta & True)
    assert_close(nb(a.T), ta.T)                       # (a non-contiguous bool tensor converts too)
    assert_close(~nb(a.T), ~ta.T)


# -- type promotion --------------------------------------------------------------------------------
PROMOTION = {
    "int_times_float_number": lambda lib: lib.tensor([1, 2]) * 2.5,
    "int_plus_int_number": lambda lib: lib.tensor([1, 2]) + 3,
    "int_times_bool_number": lambda lib: lib.tensor([1, 2]) * True,
    "float32_plus_float64": lambda lib: lib.tensor([1.0, 2.0]) + lib.tensor([0.5, 0.25], dtype=lib.float64),
    "float64_times_0d_float32": lambda lib: lib.tensor([1.0, 2.0], dtype=lib.float64) * lib.tensor(2.5),
    "float32_plus_0d_float64": lambda lib: lib.tensor([1.0, 2.0]) + lib.tensor(2.5, dtype=lib.float64),
    "int_plus_0d_float64": lambda lib: lib.tensor([1, 2]) + lib.tensor(2.5, dtype=lib.float64),
    "0d_float32_plus_0d_float64": lambda lib: lib.tensor(1.0) + lib.tensor(2.5, dtype=lib.float64),
    "int_div_int": lambda lib: lib.tensor([1, 2]) / lib.tensor([2, 4]),
    "int_div_number": lambda lib: lib.tensor([1, 3]) / 2,
    "number_div_int": lambda lib: 3 / lib.tensor([1, 2]),
    "float64_div_number": lambda lib: lib.tensor([1.0, 2.0], dtype=lib.float64) / 3,
    "bool_plus_bool": lambda lib: lib.tensor([True, False]) + lib.tensor([True, True]),
    "bool_times_bool": lambda lib: lib.tensor([True, False]) * lib.tensor([True, True]),
    "bool_times_float_number": lambda lib: lib.tensor([True, False]) * 2.5,
    "bool_plus_int_number": lambda lib: lib.tensor([True, False]) + 1,
    "int_pow_float": lambda lib: lib.tensor([1, 2]) ** 2.5,
    "int_pow_int": lambda lib: lib.tensor([1, 2]) ** 2,
    "number_pow_int": lambda lib: 2 ** lib.tensor([1, 2]),
    "float_number_pow_int": lambda lib: 2.0 ** lib.tensor([1, 2]),
    "int_exp": lambda lib: lib.tensor([1, 2]).exp(),
    "int_sqrt": lambda lib: lib.sqrt(lib.tensor([1, 4])),
    "int_abs": lambda lib: lib.tensor([-1, 2]).abs(),
    "int_neg": lambda lib: -lib.tensor([-1, 2]),
    "int_relu": lambda lib: lib.tensor([-1, 2]).relu(),
    "int_clamp_float_bounds": lambda lib: lib.clamp(lib.tensor([1, 5]), 0.5, 3.5),
    "int_clamp_int_bounds": lambda lib: lib.clamp(lib.tensor([1, 5]), 2, 3),
    "int_maximum_float": lambda lib: lib.maximum(lib.tensor([1, 5]), lib.tensor([2.0, 3.0])),
    "where_int_float_number": lambda lib: lib.where(lib.tensor([True, False]), lib.tensor([1, 2]), 2.5),
    "where_float32_float64": lambda lib: lib.where(lib.tensor([True, False]), lib.tensor([1.0, 2.0]),
                                                   lib.tensor([3.0, 4.0], dtype=lib.float64)),
    "int_sign": lambda lib: lib.sign(lib.tensor([-3, 0, 2])),
}


@pytest.mark.parametrize("name", PROMOTION)
def test_type_promotion_matches_torch(torch, name):
    got, expected = PROMOTION[name](nbgrad), PROMOTION[name](torch)
    assert got.dtype.name == str(expected.dtype).replace("torch.", "")
    assert_close(got, expected)


def test_promotion_closed_forms():
    assert (nbgrad.tensor([1, 2]) * 2.5).dtype is nbgrad.float32
    assert (nbgrad.ones(2) + nbgrad.ones(2, dtype=nbgrad.float64)).dtype is nbgrad.float64
    assert (nbgrad.tensor([1, 2]) / nbgrad.tensor([2, 2])).tolist() == [0.5, 1.0]
    assert (nbgrad.tensor([1, 2]) / nbgrad.tensor([2, 2])).dtype is nbgrad.float32
    s = nbgrad.tensor([True, False]) + nbgrad.tensor([True, True])
    assert s.dtype is nbgrad.bool and s.tolist() == [True, True]


def test_default_dtype_governs_float_results():
    nbgrad.set_default_dtype(nbgrad.float64)
    try:
        assert (nbgrad.tensor([1, 2]) * 2.5).dtype is nbgrad.float64
        assert (nbgrad.tensor([1, 2]) / 2).dtype is nbgrad.float64
        assert (nbgrad.tensor([1.0]) + 1).dtype is nbgrad.float64
    finally:
        nbgrad.set_default_dtype(nbgrad.float32)
    assert (nbgrad.tensor([1, 2]) * 2.5).dtype is nbgrad.float32


def test_operator_errors():
    with pytest.raises(RuntimeError, match="Subtraction, the `-` operator, with two bool tensors is not supported"):
        nbgrad.tensor([True]) - nbgrad.tensor([False])
    for bad in (lambda: nbgrad.tensor([True]) - True, lambda: True - nbgrad.tensor([True])):
        with pytest.raises(RuntimeError, match="with two bool tensors is not supported"):
            bad()
    for bad in (lambda: nbgrad.tensor([1]) - nbgrad.tensor([True]), lambda: nbgrad.tensor([True]) - 1,
                lambda: 1.5 - nbgrad.tensor([True]), lambda: nbgrad.ones(1).sub(nbgrad.tensor([True]), alpha=2)):
        with pytest.raises(RuntimeError, match="Subtraction, the `-` operator, with a bool tensor is not supported. "
                                               "If you are trying to invert a mask"):
            bad()
    with pytest.raises(RuntimeError, match="Negation, the `-` operator, on a bool tensor is not supported"):
        -nbgrad.tensor([True])
    with pytest.raises(RuntimeError, match="Integers to negative integer powers are not allowed"):
        nbgrad.tensor([1, 2]) ** -1
    with pytest.raises(RuntimeError, match=r"The size of tensor a \(3\) must match the size of tensor b \(4\) "
                                           r"at non-singleton dimension 1"):
        nbgrad.ones(2, 3) + nbgrad.ones(4)
    with pytest.raises(TypeError):
        nbgrad.ones(2) + "a"
    with pytest.raises(RuntimeError, match="At least one of 'min' or 'max' must not be None"):
        nbgrad.clamp(nbgrad.ones(2))


def test_int_grad_dtype_is_preserved_when_mixing_with_int():
    """An integer operand of a float op takes no gradient; the float one gets its own dtype."""
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    y = x * nbgrad.tensor([3, 4])
    assert y.dtype is nbgrad.float32
    y.backward(nbgrad.ones(2))
    assert x.grad.tolist() == [3.0, 4.0] and x.grad.dtype is nbgrad.float32


# -- kinks and special points: PyTorch's conventions ---------------------------------------------------
SPECIAL = {
    "relu_at_0": (lambda lib, x: lib.relu(x), [0.0, 1.0, -1.0]),
    "abs_at_0": (lambda lib, x: lib.abs(x), [0.0, 1.0, -1.0]),
    "clamp_at_bounds": (lambda lib, x: lib.clamp(x, 0.0, 1.0), [0.0, 1.0, 0.5, 2.0]),
    "maximum_ties": (lambda lib, x: lib.maximum(x, x * 0 + 1), [1.0, 0.0, 2.0]),
    "minimum_ties": (lambda lib, x: lib.minimum(x, x * 0 + 1), [1.0, 0.0, 2.0]),
    "pow_0_at_0": (lambda lib, x: x ** 0, [0.0, 1.0]),
    "pow_half_at_0": (lambda lib, x: x ** 0.5, [0.0, 4.0]),
    "pow_2.5_at_0": (lambda lib, x: x ** 2.5, [0.0, 1.0]),
    "sqrt_at_0": (lambda lib, x: lib.sqrt(x), [0.0, 4.0]),
    "log_at_0": (lambda lib, x: lib.log(x), [0.0, 1.0]),
    "log_negative": (lambda lib, x: lib.log(x), [-1.0]),
    "sqrt_negative": (lambda lib, x: lib.sqrt(x), [-1.0]),
    "zero_rpow": (lambda lib, x: 0 ** x, [0.0, 1.0, 2.0]),
    "negative_base_int_exponent": (lambda lib, x: x ** lib.tensor([2.0, 3.0], dtype=x.dtype), [-1.5, -2.0]),
    "div_by_zero": (lambda lib, x: x / (x * 0), [1.0, -1.0, 0.0]),
    "sigmoid_extremes": (lambda lib, x: lib.sigmoid(x), [-800.0, 800.0, 0.0]),
    "tanh_extremes": (lambda lib, x: lib.tanh(x), [-800.0, 800.0]),
    "exp_overflow": (lambda lib, x: lib.exp(x), [1000.0, -1000.0]),
    "nan_through_clamp": (lambda lib, x: lib.clamp(x, -1.0, 1.0), [float("nan"), 3.0]),
    "nan_through_maximum": (lambda lib, x: lib.maximum(x, x * 0), [float("nan"), -3.0]),
    "nan_through_relu": (lambda lib, x: lib.relu(x), [float("nan"), -3.0]),
    "nan_through_minimum": (lambda lib, x: lib.minimum(x, x * 0), [float("nan"), 3.0]),
    "nan_through_abs": (lambda lib, x: lib.abs(x), [float("nan"), -3.0]),
    "nan_through_sign": (lambda lib, x: lib.sign(x), [float("nan"), -3.0]),
    "nan_through_tanh": (lambda lib, x: lib.tanh(x), [float("nan"), -3.0]),
    "clamp_tensor_bounds_crossed": (lambda lib, x: lib.clamp(x, min=x * 0 + 1, max=x * 0 - 1), [0.0, 2.0]),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", SPECIAL)
def test_special_points_match_torch(torch, name, dtype):
    op, values = SPECIAL[name]
    _run_both(torch, op, [np.array(values, dtype=dtype)], grad_seed=0)


# -- large inputs: the parallel kernels (>= 2**16 elements) -------------------------------------------
# Each parallel kernel compiles on first use, so every op runs large once, in one dtype and layout.
LARGE = (256, 300)          # 76,800 elements
LARGE_UNARY = [(np.float32, "contiguous", ["exp", "tanh", "sigmoid", "relu", "rsub_number", "pow_2.5"]),
               (np.float64, "transposed", ["log", "sqrt", "abs", "sin", "clamp", "rdiv_number", "rpow_2"])]
LARGE_BINARY = [(np.float32, ["add", "mul", "div", "maximum"]), (np.float64, ["sub", "pow", "minimum"])]


@pytest.mark.parametrize("dtype, layout, names", LARGE_UNARY)
def test_large_unary_family(torch, dtype, layout, names):
    for name in names:
        op, (low, high, away) = UNARY[name]
        x = with_layout(random_array(LARGE, dtype, 1, low, high, away), layout)
        _run_both(torch, op, [x], grad_seed=2)


@pytest.mark.parametrize("dtype, names", LARGE_BINARY)
def test_large_binary_family(torch, dtype, names):
    full = random_array(LARGE, dtype, 3, 0.2, 3.0)
    other = with_layout(random_array(LARGE, dtype, 4, 0.2, 3.0), "transposed")
    column, row = random_array((LARGE[0], 1), dtype, 5, 0.2, 3.0), random_array((LARGE[1],), dtype, 6, 0.2, 3.0)
    for name in names:
        op = BINARY[name][0]
        _run_both(torch, op, [full, other], grad_seed=7)             # strided loop (transposed operand)
        _run_both(torch, op, [column, row], grad_seed=8)            # broadcast: gradients are large reductions


def test_large_comparisons_and_where(torch):
    rng = np.random.default_rng(9)
    a = rng.integers(-2, 3, LARGE).astype(np.float32)
    b = with_layout(rng.integers(-2, 3, LARGE).astype(np.float32), "transposed")
    ta, tb = torch.from_numpy(a), torch.from_numpy(np.array(b))
    for name in ("lt", "eq"):
        op = COMPARISONS[name]
        assert_close(op(nb(a), nb(b)), op(ta, tb))
        assert_close(op(nb(a), 0.5), op(ta, 0.5))
    assert_close(nbgrad.logical_xor(nb(a), nb(b)), torch.logical_xor(ta, tb))
    _run_both(torch, lambda lib, x, y: lib.where(x < y, x * 2, y), [a, b], grad_seed=10)


def test_large_finite_differences_spot_check():
    """The parallel backward kernels against central differences of the serial forward
    kernels, at a few coordinates."""
    x = random_array(LARGE, np.float64, 11, 0.2, 3.0)
    y = random_array(LARGE, np.float64, 12, 0.2, 3.0)

    def f(a, b):
        return (a ** b).sin() - nbgrad.minimum(a, b).sqrt() + a.log() * b.abs()
    g = random_array(LARGE, np.float64, 13)
    xa, ya = nb(x.copy(), requires_grad=True), nb(y.copy(), requires_grad=True)
    f(xa, ya).backward(nb(g))
    eps = 1e-6
    for idx in [(0, 0), (17, 123), (255, 299), (100, 5)]:
        for arr, leaf in ((x, xa), (y, ya)):
            old = arr[idx]
            vals = []
            for v in (old + eps, old - eps):
                arr[idx] = v
                with nbgrad.no_grad():
                    vals.append(float(f(nb(x[idx][None]), nb(y[idx][None])).numpy()[0] * g[idx]))
            arr[idx] = old
            np.testing.assert_allclose(leaf.grad.numpy()[idx], (vals[0] - vals[1]) / (2 * eps), rtol=1e-5, atol=1e-8)


def test_inputs_are_not_modified():
    a = with_layout(random_array((3, 4), np.float64, 14), "transposed")
    b = random_array((4,), np.float64, 15, 0.2, 3.0)
    before = (a.copy(), b.copy())
    xa, xb = nb(a, requires_grad=True), nb(b, requires_grad=True)
    for name in BINARY:
        y = BINARY[name][0](nbgrad, xa, xb)
        y.backward(nbgrad.ones(y.shape, dtype=nbgrad.float64))
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])


def test_zero_size_tensors(torch):
    for shape in [(0,), (2, 0), (0, 3)]:
        x = nbgrad.ones(shape, requires_grad=True)
        y = (x * 2).exp() + x
        assert y.shape == shape
        y.backward(nbgrad.ones(shape))
        assert x.grad.shape == shape


# -- rounding divisions ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_floor_trunc_divide_and_remainder_match_torch(torch, dtype):
    a = np.array([7, -7, 9, -9, 0, 5], dtype=dtype)
    b = np.array([2, 2, -4, -4, 3, -5], dtype=dtype)
    x, y, tx, ty = nbgrad.tensor(a), nbgrad.tensor(b), torch.tensor(a), torch.tensor(b)
    for ours, theirs in [(x // y, tx // ty), (x % y, tx % ty), (x // 2, tx // 2), (7 // y, 7 // ty),
                         (x.div(y, rounding_mode="trunc"), tx.div(ty, rounding_mode="trunc")),
                         (x.div(y, rounding_mode="floor"), tx.div(ty, rounding_mode="floor"))]:
        assert ours.dtype.name == str(theirs.dtype).split(".")[-1]
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_remainder_gradient_matches_torch(torch):
    a = np.array([7.5, -3.25, 2.0])
    x, tx = nbgrad.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, ty = nbgrad.tensor([2.0, 1.5, -0.75], requires_grad=True), torch.tensor([2.0, 1.5, -0.75], requires_grad=True)
    (x % y).sum().backward()
    (tx % ty).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy())
