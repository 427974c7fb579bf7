"""Code generation of ``nbgrad.compile``: constant folding keeps values exactly, float32
programs compute in float32, and the gradients a program hands out are never overwritten by
later calls."""
import numba
import numpy as np
import pytest

import nbgrad
from nbgrad.compiler.codegen import _expression


def _names(value):
    return f"K({value!r})"


@pytest.mark.parametrize("expr, names, expected", [
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": 2, "g": 1}, "K(2) * x"),
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": 3, "g": "t"}, "t * K(3) * (x * x)"),
    ("where(b == 0, 0, g * b * power(a, b - 1))", {"a": "x", "b": 0, "g": "t"}, 0),
    ("power(a, b)", {"a": "x", "b": 1}, "x"),
    ("power(a, b)", {"a": "x", "b": 0.5}, "power(x, K(0.5))"),
    ("g * b", {"g": 1, "b": "y"}, "y"),
    ("g * b", {"g": 0, "b": "y"}, "K(0) * y"),          # 0 * inf is NaN: not folded
    ("g / b", {"g": "t", "b": 1}, "t"),
    ("g / b", {"g": 1, "b": 0}, "K(1) / K(0)"),           # not folded: Python would raise
    ("where((a == 0) & (b >= 0), 0, g)", {"a": "x", "b": 2, "g": "t"}, "where(x == K(0), K(0), t)"),
    ("where((a > b) | (a != a), a, b)", {"a": 3, "b": "y"}, "where(K(3) > y, K(3), y)"),
    ("-g", {"g": 2.5}, -2.5),
])
def test_folding(expr, names, expected):
    assert _expression(expr, names, _names) == expected


def _compiled_typemap(fn, x):
    compiled = nbgrad.compile(fn, fullgraph=True)
    compiled(x).backward()
    (entry,) = compiled._entries.values()
    program = entry.program
    kernels = [k for call in program.calls.values() for k in call[:2] if k is not None]
    typemaps = []
    for k in kernels:                          # typed afresh: a kernel loaded from the disk cache has no types
        fresh = numba.njit(error_model="numpy")(k.py_func)
        for sig in k.signatures:
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
    """A large gradient the user keeps stays as it was while later calls make new ones."""
    f = nbgrad.compile(lambda x: (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum())
    x = nbgrad.randn(1_000_000, requires_grad=True)
    held = []
    for i in range(4):
        with nbgrad.no_grad():
            x.mul_(1.5)
        f(x).backward()
        held.append((x.grad, x.grad.numpy().copy()))
        x.grad = None
    for grad, values in held:
        np.testing.assert_array_equal(grad.numpy(), values)
    for (a, _), (b, _) in zip(held, held[1:]):
        assert not np.shares_memory(a.numpy(), b.numpy())
    expected = 3 * x.detach().numpy() ** 2 + 14 * x.detach().numpy() + 5
    np.testing.assert_allclose(held[-1][0].numpy(), expected, rtol=1e-5)
