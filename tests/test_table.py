"""The op table drives these tests: every differentiable record needs a case here, and each
case is checked through both readings of its gradient expressions (the fused kernel, and the
Tensor program a recorded backward runs) against PyTorch's first and second derivatives."""
import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import gradcheck, gradgradcheck
from nbgrad.ops.table import ACCUMULATIONS, TABLE


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# record -> (the op as PyTorch code with ``lib`` for the module, input ranges); inputs stay
# away from kinks and ties, where finite differences and tie rules blur a derivative
CASES = {
    "neg": (lambda lib, x: -(x * x), [(-2, 2)]),
    "add": (lambda lib, a, b: (a + b) * a, [(-2, 2), (-2, 2)]),
    "add_scaled": (lambda lib, a, b: lib.add(a, b, alpha=-1.5) * b, [(-2, 2), (-2, 2)]),
    "sub": (lambda lib, a, b: (a - b) * a, [(-2, 2), (-2, 2)]),
    "mul": (lambda lib, a, b: a * b * b, [(-2, 2), (-2, 2)]),
    "div": (lambda lib, a, b: a / (b * b), [(-2, 2), (0.5, 2)]),
    "floor_divide": (lambda lib, a, b: lib.div(a * a, b, rounding_mode="floor") + a * b, [(0.1, 0.9), (1.1, 1.9)]),
    "trunc_divide": (lambda lib, a, b: lib.div(a * a, b, rounding_mode="trunc") + a * b, [(0.1, 0.9), (1.1, 1.9)]),
    "remainder": (lambda lib, a, b: lib.remainder(a * a, b) * a, [(0.1, 0.9), (1.1, 1.9)]),
    "pow": (lambda lib, a, b: a ** b + a ** 3 + 2.5 ** b, [(0.5, 2), (-1, 1)]),
    "exp": (lambda lib, x: (x * x).exp(), [(-1, 1)]),
    "log": (lambda lib, x: (x * x).log(), [(0.5, 2)]),
    "sqrt": (lambda lib, x: (x * x).sqrt(), [(0.5, 2)]),
    "rsqrt": (lambda lib, x: (x * x).rsqrt() + x ** -0.5, [(0.5, 2)]),
    "abs": (lambda lib, x: (x * x * x).abs(), [(0.2, 2)]),
    "sign": (lambda lib, x: x.sign() * x * x, [(0.2, 2)]),
    "sin": (lambda lib, x: (x * x).sin(), [(-2, 2)]),
    "cos": (lambda lib, x: (x * x).cos(), [(-2, 2)]),
    "tanh": (lambda lib, x: (x * x).tanh(), [(-1.5, 1.5)]),
    "sigmoid": (lambda lib, x: (x * x).sigmoid(), [(-2, 2)]),
    "relu": (lambda lib, x: (x * x * x).relu() * x, [(-2, 2)]),
    "clamp": (lambda lib, x, lo, hi: lib.clamp(x * x, lo, hi + 1) * x + lib.clamp(x, min=-0.5) * x,
              [(-2, 2), (0.3, 1), (0.3, 1)]),
    "maximum": (lambda lib, a, b: lib.maximum(a * a, b) * a, [(-2, 2), (-2, 2)]),
    "minimum": (lambda lib, a, b: lib.minimum(a * a, b) * b, [(-2, 2), (-2, 2)]),
    "where": (lambda lib, a, b: lib.where(a > 0, a * a, b * b * b) ** 2, [(-2, 2), (-2, 2)]),
    "erf": (lambda lib, x: (x * x).erf(), [(-1.5, 1.5)]),
    "erfc": (lambda lib, x: (x * x).erfc(), [(-1.5, 1.5)]),
    "erfinv": (lambda lib, x: (x * x).erfinv(), [(-0.9, 0.9)]),
    "expm1": (lambda lib, x: (x * x).expm1(), [(-1, 1)]),
    "log1p": (lambda lib, x: (x * x).log1p(), [(-1, 1)]),
    "log2": (lambda lib, x: (x * x).log2(), [(0.5, 2)]),
    "log10": (lambda lib, x: (x * x).log10(), [(0.5, 2)]),
    "exp2": (lambda lib, x: (x * x).exp2(), [(-1, 1)]),
    "reciprocal": (lambda lib, x: (x * x).reciprocal(), [(0.5, 2)]),
    "tan": (lambda lib, x: (x * x).tan(), [(-1, 1)]),
    "asin": (lambda lib, x: (x * x).asin(), [(-0.9, 0.9)]),
    "acos": (lambda lib, x: (x * x).acos(), [(-0.9, 0.9)]),
    "atan": (lambda lib, x: (x * x).atan(), [(-2, 2)]),
    "sinh": (lambda lib, x: (x * x).sinh(), [(-1.5, 1.5)]),
    "cosh": (lambda lib, x: (x * x).cosh(), [(-1.5, 1.5)]),
    "asinh": (lambda lib, x: (x * x).asinh(), [(-2, 2)]),
    "acosh": (lambda lib, x: (x * x + 1).acosh(), [(0.5, 2)]),
    "atanh": (lambda lib, x: (x * x).atanh(), [(-0.9, 0.9)]),
    "floor": (lambda lib, x: (x * x).floor() * x, [(-2, 2)]),
    "ceil": (lambda lib, x: (x * x).ceil() * x, [(-2, 2)]),
    "round": (lambda lib, x: (x * x).round() * x, [(-2, 2)]),
    "round_decimals": (lambda lib, x: lib.round(x * 7, decimals=1) * x + lib.round(x * 70, decimals=-1) * x,
                       [(-2, 2)]),
    "trunc": (lambda lib, x: (x * x - 2).trunc() * x, [(-2, 2)]),
    "frac": (lambda lib, x: (x * x - 2).frac() * x, [(-2, 2)]),
    "atan2": (lambda lib, a, b: lib.atan2(a * a, b), [(0.5, 2), (-2, 2)]),
    "hypot": (lambda lib, a, b: lib.hypot(a * a, b), [(0.5, 2), (-2, 2)]),
    "lerp": (lambda lib, a, b, w: lib.lerp(a * a, b, w * w) + lib.lerp(a, b * b, 0.7) + lib.lerp(a, b, 0.2) * a,
             [(-2, 2), (-2, 2), (-1, 1.2)]),
    "addcmul": (lambda lib, a, b, c: lib.addcmul(a * a, b, c * c, value=-1.5) * a, [(-2, 2)] * 3),
    "addcdiv": (lambda lib, a, b, c: lib.addcdiv(a, b * b, c, value=0.5) * b, [(-2, 2), (-2, 2), (0.5, 2)]),
    "xlogy": (lambda lib, a, b: lib.xlogy(a * a, b) + lib.xlogy(a, 2.5) + lib.xlogy(1.5, b * b), [(-2, 2), (0.5, 2)]),
    "logaddexp": (lambda lib, a, b: lib.logaddexp(a * a, b), [(-2, 2), (-2, 2)]),
    "copysign": (lambda lib, a, b: lib.copysign(a * a, b) * a + lib.copysign(a, -1.0), [(-2, 2), (-2, 2)]),
    "fmod": (lambda lib, a, b: lib.fmod(a * a, b) * a + lib.fmod(a, 0.7), [(1.1, 1.9), (1.1, 1.9)]),
    "softplus": (lambda lib, x: lib.nn.functional.softplus(x * x, beta=2, threshold=3) * x, [(-2, 2)]),
    "silu": (lambda lib, x: lib.nn.functional.silu(x * x - 1), [(-2, 2)]),
    "gelu": (lambda lib, x: lib.nn.functional.gelu(x * x - 1), [(-2, 2)]),
    "gelu_tanh": (lambda lib, x: lib.nn.functional.gelu(x * x - 1, approximate="tanh"), [(-2, 2)]),
    "elu": (lambda lib, x: lib.nn.functional.elu(x * x - 1, alpha=0.7) * x + lib.nn.functional.selu(x) * x,
            [(-2, 2)]),
    "celu": (lambda lib, x: lib.nn.functional.celu(x * x - 1, alpha=1.5) * x, [(-2, 2)]),
    "leaky_relu": (lambda lib, x: lib.nn.functional.leaky_relu(x * x - 1, 0.2) * x, [(-2, 2)]),
    "hardtanh": (lambda lib, x: lib.nn.functional.hardtanh(x * x - 1, -0.5, 0.7) * x
                 + lib.nn.functional.relu6(x * 4) * x, [(-2, 2)]),
    "hardsigmoid": (lambda lib, x: lib.nn.functional.hardsigmoid(x * 3) * x, [(-2, 2)]),
    "hardswish": (lambda lib, x: lib.nn.functional.hardswish(x * 3) * x, [(-2, 2)]),
    "log_sigmoid": (lambda lib, x: lib.nn.functional.logsigmoid(x * x - 1) * x, [(-2, 2)]),
    "mish": (lambda lib, x: lib.nn.functional.mish(x * x - 1), [(-2, 2)]),
    "nan_to_num": (lambda lib, x: lib.nan_to_num(x * x, nan=1.0, posinf=2.0) * x, [(-2, 2)]),
}
# PyTorch's hardsigmoid backward multiplies by float32's 1/6 (0.1666666716...), also in float64,
# and has no double backward: its second derivatives are checked by gradgradcheck alone
LOOSE = {"hardsigmoid"}
DIFFERENTIABLE = sorted(name for name, record in TABLE.items() if record.grads)


def test_every_differentiable_record_has_a_case():
    assert sorted(CASES) == DIFFERENTIABLE


def _inputs(name, seed, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    return [rng.uniform(lo, hi, shape) for lo, hi in CASES[name][1]]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_first_and_second_derivatives_match_pytorch(name, torch):
    fn = CASES[name][0]
    values = _inputs(name, seed=len(name))
    ours = [nbgrad.tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    out_n, out_t = fn(nbgrad, *ours), fn(torch, *theirs)
    np.testing.assert_allclose(out_n.detach().numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    weights = np.random.default_rng(1).uniform(-1, 1, out_t.shape)
    g_n = nbgrad.autograd.grad((out_n * nbgrad.tensor(weights)).sum(), ours, create_graph=True)
    g_t = torch.autograd.grad((out_t * torch.tensor(weights)).sum(), theirs, create_graph=True)
    fused = nbgrad.autograd.grad((fn(nbgrad, *ours) * nbgrad.tensor(weights)).sum(), ours)   # not recorded
    rtol = 1e-6 if name in LOOSE else 1e-10
    for a, f, b in zip(g_n, fused, g_t):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(f.numpy(), b.detach().numpy(), rtol=rtol, atol=1e-12)
    if name in LOOSE:
        return
    gg_n = nbgrad.autograd.grad(sum((g * g).sum() for g in g_n), ours, allow_unused=True)
    gg_t = torch.autograd.grad(sum((g * g).sum() for g in g_t), theirs, allow_unused=True)
    for a, b in zip(gg_n, gg_t):
        if b is None:
            assert a is None or not a.numpy().any()
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_float32_strided_and_broadcast_operands_match_pytorch(name, torch):
    """The first operand a transposed view, the others rows broadcast against it, in float32."""
    fn, ranges = CASES[name]
    rng = np.random.default_rng(5)
    values = [rng.uniform(*ranges[0], (4, 3)).astype(np.float32)]
    values += [rng.uniform(lo, hi, (4,)).astype(np.float32) for lo, hi in ranges[1:]]
    ours = [nbgrad.tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    out_n, out_t = fn(nbgrad, ours[0].t(), *ours[1:]), fn(torch, theirs[0].t(), *theirs[1:])
    assert out_n.dtype is nbgrad.float32 and out_t.dtype is torch.float32
    np.testing.assert_allclose(out_n.detach().numpy(), out_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    weights = rng.uniform(-1, 1, tuple(out_t.shape)).astype(np.float32)
    g_n = nbgrad.autograd.grad((out_n * nbgrad.tensor(weights)).sum(), ours)
    g_t = torch.autograd.grad((out_t * torch.tensor(weights)).sum(), theirs)
    for a, b in zip(g_n, g_t):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradcheck_and_gradgradcheck(name):
    fn = CASES[name][0]
    inputs = [nbgrad.tensor(v[:2, :3], requires_grad=True) for v in _inputs(name, seed=7)]
    assert gradcheck(lambda *xs: fn(nbgrad, *xs), inputs)
    assert gradgradcheck(lambda *xs: fn(nbgrad, *xs), inputs)


# nbgrad's own: Adam's amsgrad keeps its running maximum in place
OWN_METHODS = {"maximum_", "minimum_"}


@pytest.mark.parametrize("name", sorted(name for name, record in TABLE.items() if record.api))
def test_generated_function_methods_and_node_match_pytorch(name, torch):
    """What the table generates for an op: its function, Tensor methods, in-place method and
    node class, under PyTorch's names; the in-place method agrees with the function."""
    from nbgrad.functional.inplace import _inplace_names
    record = TABLE[name]
    values = [np.random.default_rng(k).uniform(0.2, 0.8, (2, 3)) for k in range(len(record.args))]
    ours = [nbgrad.tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    out = getattr(nbgrad, record.api[0])(*ours)
    assert out.grad_fn.name() == getattr(torch, record.api[0])(*theirs).grad_fn.name() == record.node
    for alias in record.api:
        assert getattr(nbgrad.Tensor, alias) is getattr(nbgrad, record.api[0])
        assert hasattr(torch.Tensor, alias) and (alias.startswith("__") or hasattr(torch, alias))
    names = list(_inplace_names(record)) if record.inplace else []
    assert all(hasattr(torch.Tensor, n) for n in names if n not in OWN_METHODS)
    for n in names:
        x = nbgrad.tensor(values[0])
        assert getattr(x, n)(*[t.detach() for t in ours[1:]]) is x
        np.testing.assert_array_equal(x.numpy(), out.detach().numpy())


EDGES = [-np.inf, -20.0, -6.0, -3.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 3.0, 6.0, 20.0, np.inf, np.nan]
# every table op on its own, as users call it; kinks and ends of each op's domain are among EDGES
EDGE_CASES = {
    **{name: (lambda name: lambda lib, x: getattr(lib, name)(x))(name)
       for name, record in TABLE.items() if record.api and len(record.args) == 1},
    **{name: (lambda name: lambda lib, x: getattr(lib.nn.functional, name)(x))(name)
       for name in ("softplus", "silu", "gelu", "elu", "selu", "celu", "leaky_relu", "hardtanh", "hardsigmoid",
                    "hardswish", "relu6", "logsigmoid", "mish", "softsign", "tanhshrink")},
    "gelu_tanh": lambda lib, x: lib.nn.functional.gelu(x, approximate="tanh"),
    "softplus_beta": lambda lib, x: lib.nn.functional.softplus(x, beta=0.5, threshold=3),
    "celu_alpha": lambda lib, x: lib.nn.functional.celu(x, alpha=0.5),
    "hardtanh_bounds": lambda lib, x: lib.nn.functional.hardtanh(x, -3.0, 1.5),
    "leaky_relu_slope": lambda lib, x: lib.nn.functional.leaky_relu(x, -0.5),
    "erfinv_domain": lambda lib, x: (x / 20).erfinv(),
    "asin_domain": lambda lib, x: (x / 6).asin(),
    **{name: (lambda name: lambda lib, a, b: getattr(lib, name)(a, b))(name)
       for name, record in TABLE.items() if record.api and len(record.args) == 2},
    "lerp": lambda lib, a, b: lib.lerp(a, b, 0.25) + lib.lerp(b, a, b * 0 + 0.75),
    "addcmul": lambda lib, a, b: lib.addcmul(a, b, a, value=0.5),
    "addcdiv": lambda lib, a, b: lib.addcdiv(b, a, b, value=2),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_and_gradients_at_edge_points_match_pytorch(name, dtype, torch):
    """Infinities, NaN, signed zeros, and each op's kinks (for binary ops: every pair of them).
    Where PyTorch's vectorized loop and its scalar one disagree (the gradient of elu, hardtanh
    and hardswish at NaN; float32 gelu at inf), nbgrad may agree with either: the scalar one is
    asked point by point. float32 is compared loosely (PyTorch computes in float32 where nbgrad
    keeps float64 constants, and both lose digits to cancellation: gelu at -6, sigmoid at 6)."""
    fn = EDGE_CASES[name]
    arity = fn.__code__.co_argcount - 1
    values = np.array(EDGES, dtype)
    grids = [g.ravel() for g in np.meshgrid(*[values] * arity, indexing="ij")]
    ours = [nbgrad.tensor(v, requires_grad=True) for v in grids]
    out = fn(nbgrad, *ours)
    got = [out.detach().numpy()] + [g.numpy() for g in nbgrad.autograd.grad(out.sum(), ours)]

    def pytorch(*xs):
        theirs = [torch.tensor(x, requires_grad=True) for x in xs]
        out = fn(torch, *theirs)
        return [out.detach().numpy().copy()] + [g.numpy() for g in torch.autograd.grad(out.sum(), theirs)]
    want = pytorch(*grids)
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-6 if name == "hardsigmoid" else 1e-10, 0)
    for i in np.nonzero(~np.all([np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
                                 for a, b in zip(got, want)], 0))[0]:
        for k, b in enumerate(pytorch(*[v[i:i + 1] for v in grids])):
            want[k][i] = b[0]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_every_kernel_function_has_a_tensor_twin():
    """An expression is read by kernels (ops/scalar.py's names) and, under create_graph, by the
    Tensor layer (COMPOSED): both must know every name."""
    from nbgrad.functional.pointwise import COMPOSED
    from nbgrad.ops import scalar
    assert set(scalar.__all__) - {"import_line"} <= set(COMPOSED)


def test_erfinv_is_accurate_to_the_last_bits(torch):
    """Near ±1 (down to 1 - 2**-53) and near 0, against PyTorch's float64 erfinv."""
    x = np.concatenate([np.linspace(-1, 1, 4001)[1:-1], 1 - np.logspace(-16, -1, 300), np.logspace(-300, -1, 50),
                        [np.nextafter(1.0, 0.0), -np.nextafter(1.0, 0.0)]])
    ours, theirs = nbgrad.tensor(x).erfinv().numpy(), torch.tensor(x).erfinv().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=8e-16, atol=0)


@pytest.mark.parametrize("fn", [
    lambda lib, a, b: lib.fmod(a, b), lambda lib, a, b: lib.fmod(a, 2), lambda lib, a, b: lib.floor(a),
    lambda lib, a, b: lib.round(a), lambda lib, a, b: lib.trunc(b), lambda lib, a, b: lib.copysign(a, -1.0),
    lambda lib, a, b: lib.erf(a), lambda lib, a, b: lib.atan2(a, b), lambda lib, a, b: lib.xlogy(b, a),
    lambda lib, a, b: lib.hypot(a * 1.0, b)])
def test_integer_operands_keep_or_promote_as_pytorch(fn, torch):
    """Rounding keeps integers (exactly), C's remainder keeps the dividend's sign, the others
    compute in the default float."""
    a, b = np.array([-7, -3, 3, 7, 0, 5]), np.array([2, -2, 3, -3, 5, 1])
    ours, theirs = fn(nbgrad, nbgrad.tensor(a), nbgrad.tensor(b)), fn(torch, torch.tensor(a), torch.tensor(b))
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_errors_as_pytorch():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        nbgrad.fmod(nbgrad.tensor([3, 4]), 0)
    with pytest.raises(TypeError, match=r"erf\(\): argument 'input' \(position 1\) must be Tensor, not float"):
        nbgrad.erf(2.0)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        nbgrad.tensor([1, 2]).erf_()


# -- accumulations: the same two readings of each gradient expression ----------------------------------
# record -> the reduction as PyTorch code (over a dim, over all of x, and a second use of x so
# that second derivatives have something to differentiate), input range
ACCUMULATION_CASES = {
    "sum": (lambda lib, x: (x * x).sum(1) * x.sum() + x.sum((0, 1), keepdim=True), (-2, 2)),
    "mean": (lambda lib, x: (x * x).mean(0) * x.mean() + x.mean(1, keepdim=True).sum(), (-2, 2)),
    "prod": (lambda lib, x: (x * x).prod(1) * x.prod() + x.prod(0).sum(), (0.5, 1.5)),
    "var": (lambda lib, x: (x * x).var(1) * x.var() + x.var(0, correction=0).sum(), (-2, 2)),
    "std": (lambda lib, x: (x * x).std(1) * x.std() + x.std(0, keepdim=True).sum(), (-2, 2)),
    "logsumexp": (lambda lib, x: (x * x).logsumexp(1) * x.logsumexp((0, 1)) + x.logsumexp(0).sum(), (-2, 2)),
}
DIFFERENTIABLE_ACCUMULATIONS = sorted(name for name, record in ACCUMULATIONS.items() if record.grads)


def test_every_differentiable_accumulation_has_a_case():
    assert sorted(ACCUMULATION_CASES) == DIFFERENTIABLE_ACCUMULATIONS


@pytest.mark.parametrize("name", DIFFERENTIABLE_ACCUMULATIONS)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_accumulation_derivatives_match_pytorch(name, layout, torch):
    """First derivatives by the fused kernel and by the recorded Tensor program, second
    derivatives through the recorded one, against PyTorch's, on a contiguous and a transposed
    input; and the node names are the table's."""
    fn, (lo, hi) = ACCUMULATION_CASES[name]
    value = np.random.default_rng(len(name)).uniform(lo, hi, (3, 4) if layout == "contiguous" else (4, 3))
    ours, theirs = nbgrad.tensor(value, requires_grad=True), torch.tensor(value, requires_grad=True)
    view = (lambda t: t) if layout == "contiguous" else (lambda t: t.t())
    out_n, out_t = fn(nbgrad, view(ours)), fn(torch, view(theirs))
    np.testing.assert_allclose(out_n.detach().numpy(), out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    weights = np.random.default_rng(1).uniform(-1, 1, tuple(out_t.shape))
    g_n, = nbgrad.autograd.grad((out_n * nbgrad.tensor(weights)).sum(), ours, create_graph=True)
    g_t, = torch.autograd.grad((out_t * torch.tensor(weights)).sum(), theirs, create_graph=True)
    fused, = nbgrad.autograd.grad((fn(nbgrad, view(ours)) * nbgrad.tensor(weights)).sum(), ours)
    np.testing.assert_allclose(g_n.detach().numpy(), g_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.numpy(), g_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    gg_n, = nbgrad.autograd.grad((g_n * g_n).sum(), ours)
    gg_t, = torch.autograd.grad((g_t * g_t).sum(), theirs)
    np.testing.assert_allclose(gg_n.numpy(), gg_t.numpy(), rtol=1e-9, atol=1e-10)
    reduced = getattr(nbgrad, name)(ours, 1)
    assert type(reduced.grad_fn).__name__ == ACCUMULATIONS[name].node[1]
    if name != "logsumexp":                    # PyTorch's logsumexp has no all-dims form
        assert type(getattr(nbgrad, name)(ours).grad_fn).__name__ == ACCUMULATIONS[name].node[0]


@pytest.mark.parametrize("name", DIFFERENTIABLE_ACCUMULATIONS)
def test_accumulation_gradcheck_and_gradgradcheck(name):
    fn, (lo, hi) = ACCUMULATION_CASES[name]
    x = nbgrad.tensor(np.random.default_rng(3).uniform(lo, hi, (2, 3)), requires_grad=True)
    assert gradcheck(lambda t: fn(nbgrad, t), (x,))
    assert gradgradcheck(lambda t: fn(nbgrad, t), (x,))
