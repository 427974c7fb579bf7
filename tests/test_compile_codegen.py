"""Code generation of ``nbgrad.compile``: constant folding keeps values exactly, float32
programs compute in float32, and the gradients a program hands out are never overwritten by
later calls."""
import math
import resource

import numba
import numpy as np
import pytest

import nbgrad
from nbgrad.compiler import codegen
from nbgrad.compiler.codegen import _expression
from nbgrad.compiler.memory import keep_large_buffers


def _names(value):
    return f"K({value!r})"


@pytest.mark.parametrize("expr, names, expected", [
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": 2, "g": 1}, "K(2.0) * x"),
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": 3, "g": "t"}, "t * K(3.0) * (x * x)"),
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": 0, "g": "t"}, 0),
    ("power(a, b)", {"a": "x", "b": 1}, "x"),
    ("power(a, b)", {"a": "x", "b": 0.5}, "power(x, K(0.5))"),
    ("g * b", {"g": 1, "b": "y"}, "y"),
    ("g * b", {"g": 0, "b": "y"}, "K(0.0) * y"),          # 0 * inf is NaN: not folded
    ("g / b", {"g": "t", "b": 1}, "t"),
    ("g / b", {"g": 1, "b": 0}, "K(1.0) / K(0.0)"),           # not folded: Python would raise
    ("where((a == 0) & (b >= 0), 0, g)", {"a": "x", "b": 2, "g": "t"}, "where(x == K(0.0), K(0.0), t)"),
    ("where((a > b) | (a != a), a, b)", {"a": 3, "b": "y"}, "where(K(3.0) > y, K(3.0), y)"),
    ("-g", {"g": 2.5}, -2.5),
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": -2, "g": "t"}, "t * K(-2.0) * power(x, K(-3.0))"),
    ("where(x > 0, posinf, neginf)", {"x": "v", "posinf": float("inf"), "neginf": -1e-5},
     "where(v > K(0.0), K(inf), K(-1e-05))"),
])
def test_folding(expr, names, expected):
    assert _expression(expr, names, _names) == expected


def _compiled_typemap(fn, x):
    compiled = nbgrad.compile(fn, fullgraph=True)
    compiled(x).backward()
    (entry,) = compiled._entries.values()
    program = entry.program
    module = program.module
    typemaps = []
    for name in dir(module):
        if not name.startswith("group"):
            continue
        kernel = getattr(module, name)
        if name.endswith("_blocks"):            # typed as its loop calls it: the block range, then the loop's arguments
            loop = getattr(module, name[:-7] + "_s", None) or getattr(module, name[:-7] + "_p")
            signatures = [(numba.int64, numba.int64, *sig) for sig in loop.signatures]
        else:
            signatures = kernel.signatures
        fresh = numba.njit(error_model="numpy")(kernel.py_func)   # typed afresh: a cached kernel keeps no types
        for sig in signatures:
            fresh.compile(sig)
            typemaps.append(fresh.overloads[sig].type_annotation.typemap)
    return program, typemaps


@pytest.mark.parametrize("fn", [
    lambda x: (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum(),
    lambda x: (((x * 1.01 + 0.1).tanh() - 0.05).relu() * 2.5).sum(),
    lambda x: nbgrad.nn.functional.gelu(x).pow(2.0).mean(),
])
def test_float32_stays_float32(fn):
    """Every value, adjoint and gradient of the generated loops is float32 (a bare ``1`` or
    ``0.5`` in a table expression would make Numba compute in float64)."""
    x = nbgrad.randn(64, requires_grad=True)
    program, typemaps = _compiled_typemap(fn, x)
    assert typemaps
    seen = 0
    for typemap in typemaps:
        for name, ty in typemap.items():
            if name[0] in "vad" and name[1:].isdigit():
                seen += 1
                assert str(ty) == "float32", (name, ty, program.source)
    assert seen
    assert x.grad.dtype == nbgrad.float32


@pytest.mark.parametrize("fn", [
    lambda x: x ** 2, lambda x: x ** 3, lambda x: x ** 1, lambda x: x ** 0, lambda x: x ** -2,
    lambda x: x * 1 + x / 1, lambda x: (x - 0) * 0, lambda x: 2 ** x, lambda x: x.clamp(-0.5, 0.5),
    lambda x: nbgrad.maximum(x, x * 1), lambda x: nbgrad.nn.functional.leaky_relu(x, 0.0),
    lambda x: (x * 2).clamp(float("-inf"), 1.0) + x.clamp(-1.0, float("inf")),
])
def test_folded_programs_agree_with_eager(fn):
    values = np.array([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0, np.inf, -np.inf, np.nan])
    compiled = nbgrad.compile(fn, fullgraph=True)
    for f in (fn, compiled, compiled):
        x = nbgrad.tensor(values, requires_grad=True)
        out = f(x)
        out.sum().backward()
        if f is fn:
            expected = out.detach().numpy(), x.grad.numpy()
        else:
            np.testing.assert_array_equal(out.detach().numpy(), expected[0])
            np.testing.assert_array_equal(x.grad.numpy(), expected[1])


def test_a_held_gradient_is_never_overwritten():
    """A large gradient the user keeps stays as it was while later calls make new ones (the
    heap reuses only freed memory)."""
    f = nbgrad.compile(lambda x: (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum())
    x = nbgrad.randn(10_000_000, requires_grad=True)
    held = []
    for i in range(3):
        with nbgrad.no_grad():
            x.mul_(1.5)
        f(x).backward()
        held.append((x.grad, x.grad.numpy().copy()))
        x.grad = None
    for grad, values in held:
        np.testing.assert_array_equal(grad.numpy(), values)
    for (a, _), (b, _) in zip(held, held[1:]):
        assert not np.shares_memory(a.numpy(), b.numpy())
    v = x.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(held[-1][0].numpy(), 3 * v ** 2 + 14 * v + 5, rtol=1e-5, atol=1e-4)


def test_a_dropped_large_gradient_is_reused_without_page_faults():
    f = nbgrad.compile(lambda x: (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum())
    x = nbgrad.randn(10_000_000, requires_grad=True)
    f(x).backward()
    x.grad = None
    if not keep_large_buffers():
        pytest.skip("malloc is not glibc's")
    faults = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).backward()
        x.grad = None
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(faults) < 50                    # a fresh 40 MB array: about 10,000 (or 20 huge pages and ~550)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape, dtype, tol", [((6, 4), np.float64, 1e-12), ((300, 700), np.float32, 2e-6)])
def test_cross_entropy_is_one_fused_step_and_agrees_with_eager(reduction, shape, dtype, tol):
    rng = np.random.default_rng(3)
    z0 = (rng.standard_normal(shape) * 4).astype(dtype)
    t0 = rng.integers(0, shape[1], shape[0])
    t0[:2] = 2                                 # ignored rows

    def fn(z, t):
        return nbgrad.nn.functional.cross_entropy(z, t, reduction=reduction, ignore_index=2)
    compiled = nbgrad.compile(fn, fullgraph=True)
    results = []
    w0 = rng.uniform(0.5, 1.5, shape[0] if reduction == "none" else ())
    for f in (fn, compiled, compiled):
        z, t = nbgrad.tensor(z0, requires_grad=True), nbgrad.tensor(t0)
        out = f(z, t)
        (out * nbgrad.tensor(w0, dtype=out.dtype)).sum().backward()
        results.append((out.detach().numpy(), z.grad.numpy()))
    for out, grad in results[1:]:
        np.testing.assert_allclose(out, results[0][0], rtol=tol, atol=tol)
        np.testing.assert_allclose(grad, results[0][1], rtol=tol, atol=tol)
    assert "cross_entropy %" in compiled.explain(nbgrad.tensor(z0), nbgrad.tensor(t0))


def test_cross_entropy_fused_gradcheck_and_closed_over_target():
    rng = np.random.default_rng(4)
    t = nbgrad.tensor(rng.integers(0, 5, 7))
    compiled = nbgrad.compile(lambda z: nbgrad.nn.functional.cross_entropy(z, t), fullgraph=True)
    z = nbgrad.tensor(rng.standard_normal((7, 5)), requires_grad=True)
    assert nbgrad.autograd.gradcheck(compiled, (z,))
    t.copy_(nbgrad.tensor(rng.integers(0, 5, 7)))            # read afresh at each call
    expected = nbgrad.nn.functional.cross_entropy(z, t)
    np.testing.assert_allclose(compiled(z).item(), expected.item(), rtol=1e-12)


def test_cross_entropy_fused_target_out_of_range():
    compiled = nbgrad.compile(lambda z, t: nbgrad.nn.functional.cross_entropy(z, t), fullgraph=True)
    z = nbgrad.randn(4, 3, requires_grad=True)
    compiled(z, nbgrad.tensor([0, 1, 2, 1]))
    with pytest.raises(IndexError, match="Target 5 is out of bounds."):
        compiled(z, nbgrad.tensor([0, 5, 2, 1]))


@pytest.mark.parametrize("fn", [
    lambda a, b: (a @ b.t()).tanh().sum(),
    lambda a, b: (a.t() @ b.t().t()).sum() + (b.t() * 2).sum(),
    lambda a, b: ((a.t().t() @ b.t()) @ b).sum(),
])
def test_gradients_through_transposed_matmul_operands(fn):
    """A transposed operand's gradient goes straight to the value it transposes (grad.T @ a),
    C-contiguous, summed with its other uses."""
    rng = np.random.default_rng(5)
    a0, b0 = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    compiled = nbgrad.compile(fn, fullgraph=True)
    results = []
    for f in (fn, compiled, compiled):
        a, b = nbgrad.tensor(a0, requires_grad=True), nbgrad.tensor(b0, requires_grad=True)
        f(a, b).backward()
        assert a.grad.is_contiguous() and b.grad.is_contiguous()
        results.append((a.grad.numpy(), b.grad.numpy()))
    for ga, gb in results[1:]:
        np.testing.assert_allclose(ga, results[0][0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gb, results[0][1], rtol=1e-12, atol=1e-12)


def test_float32_tanh_of_generated_loops_is_correctly_rounded():
    """The loops' float32 tanh (vectorizable, from exp in float64) against tanh in float64
    rounded to float32, over a sweep of float32 bit patterns and the special values."""
    namespace = {}
    source = "import numpy as np\nfrom numba import njit\n" + codegen._TANH32.replace("cache=True", "cache=False")
    exec(compile(source, "tanh32", "exec"), namespace)
    tanh32 = namespace["tanh32"]

    @numba.njit(error_model="numpy")
    def sweep(x, out, exact):
        for i in range(x.size):
            out[i] = tanh32(x[i])
            exact[i] = math.tanh(np.float64(x[i]))
    bits = np.arange(0, 0x7F800000, 1009, dtype=np.uint32)
    x = bits.view(np.float32)
    x = np.concatenate([x, -x, np.array([0.0, -0.0, 2.4e-4, 2.45e-4, 19.9, 20.1, np.inf, -np.inf, np.nan], np.float32)])
    out, exact = np.empty_like(x), np.empty(x.size)
    sweep(x, out, exact)
    expected = exact.astype(np.float32)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(out), nan)
    ulps = np.abs(out[~nan].view(np.int32).astype(np.int64) - expected[~nan].view(np.int32).astype(np.int64))
    assert ulps.max() <= 1 and (ulps > 0).mean() < 1e-4
    assert np.signbit(out[x.size - 8]) and out[-3] == 1 and out[-2] == -1


@pytest.mark.parametrize("n", [25, 1000, 300_000])      # serial and parallel summing loops
def test_float32_chain_agrees_with_eager(n):
    def fn(x):
        y = x
        for _ in range(25):
            y = (y * 1.01 + 0.1).tanh() - x
        return y.sum()
    x0 = np.random.default_rng(6).standard_normal(n).astype(np.float32)
    compiled = nbgrad.compile(fn, fullgraph=True)
    results = []
    for f in (fn, compiled, compiled):
        x = nbgrad.tensor(x0, requires_grad=True)
        out = f(x)
        out.backward()
        results.append((out.item(), x.grad.numpy()))
    for value, grad in results[1:]:
        assert value == pytest.approx(results[0][0], rel=1e-5)
        np.testing.assert_allclose(grad, results[0][1], rtol=1e-4, atol=1e-5)
