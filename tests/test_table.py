"""The op table drives these tests: every differentiable record needs a case here, and each
case is checked through both readings of its gradient expressions (the fused kernel, and the
Tensor program a recorded backward runs) against PyTorch's first and second derivatives."""
import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import gradcheck, gradgradcheck
from nbgrad.ops.table import TABLE


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
}
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
    for a, f, b in zip(g_n, fused, g_t):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(f.numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    gg_n = nbgrad.autograd.grad(sum((g * g).sum() for g in g_n), ours, allow_unused=True)
    gg_t = torch.autograd.grad(sum((g * g).sum() for g in g_t), theirs, allow_unused=True)
    for a, b in zip(gg_n, gg_t):
        if b is None:
            assert a is None or not a.numpy().any()
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-10)


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
