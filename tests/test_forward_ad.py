"""Forward-mode AD against ``torch.func.jvp``: every differentiable record of the op table
(its JVP comes from the record's gradient expressions), the hand-written rules (matmul,
reductions, joins, indexing, softmax), views, and the API's errors."""
import numpy as np
import pytest

import nbgrad
import nbgrad.autograd.forward_ad as fwAD
from test_table import CASES, DIFFERENTIABLE, _inputs

torch = pytest.importorskip("torch")


def _jvp_nbgrad(fn, primals, tangents):
    with fwAD.dual_level():
        duals = [fwAD.make_dual(nbgrad.tensor(p), nbgrad.tensor(t)) for p, t in zip(primals, tangents)]
        out = fn(*duals)
        primal, tangent = fwAD.unpack_dual(out)
    return primal, tangent


def _jvp_torch(fn, primals, tangents):
    return torch.func.jvp(fn, tuple(torch.tensor(p) for p in primals), tuple(torch.tensor(t) for t in tangents))


def _check(fn_nb, fn_torch, primals, seed=0, rtol=1e-10):
    rng = np.random.default_rng(seed)
    tangents = [rng.uniform(-1, 1, np.shape(p)) for p in primals]
    p_n, t_n = _jvp_nbgrad(fn_nb, primals, tangents)
    p_t, t_t = _jvp_torch(fn_torch, primals, tangents)
    np.testing.assert_allclose(p_n.detach().numpy(), p_t.numpy(), rtol=1e-12, atol=1e-12)
    assert t_n is not None
    assert t_n.shape == p_n.shape
    np.testing.assert_allclose(t_n.detach().numpy(), t_t.numpy(), rtol=rtol, atol=1e-10)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_table_op_jvp_matches_torch(name):
    fn = CASES[name][0]
    _check(lambda *xs: fn(nbgrad, *xs), lambda *xs: fn(torch, *xs), _inputs(name, seed=3 + len(name)),
           rtol=1e-6 if name == "hardsigmoid" else 1e-10)


def test_broadcast_operands_and_numbers():
    a, b = np.random.default_rng(0).normal(size=(3, 1)), np.random.default_rng(1).normal(size=(1, 4))
    _check(lambda x, y: x + y * 2 - 3 / (1 + y * y), lambda x, y: x + y * 2 - 3 / (1 + y * y), [a, b])
    _check(lambda x, y: 2 ** x + x ** 3 + y, lambda x, y: 2 ** x + x ** 3 + y, [a, b])


def test_only_one_operand_dual():
    x = np.random.default_rng(2).normal(size=(3, 4))
    w = np.random.default_rng(3).normal(size=(4,))

    def f(lib):
        return lambda x: lib.tanh(x) * lib.tensor(w) + lib.tensor(w)
    _check(f(nbgrad), f(torch), [x])


def test_matmul_family():
    rng = np.random.default_rng(4)
    a, b, v = rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=(4,))
    c, d = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 2))
    bias = rng.normal(size=(5,))
    _check(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])
    _check(lambda x, y: x @ y, lambda x, y: x @ y, [a, v])
    _check(lambda x, y: x @ y, lambda x, y: x @ y, [v, v])
    _check(lambda x, y: x @ y, lambda x, y: x @ y, [c, d])
    _check(lambda x, y, z: nbgrad.addmm(z, x, y, beta=0.5, alpha=2), lambda x, y, z: torch.addmm(z, x, y, beta=0.5, alpha=2),
           [a, b, bias])
    _check(lambda x, y: nbgrad.nn.functional.linear(x, y.t()), lambda x, y: torch.nn.functional.linear(x, y.t()), [a, b])


def test_reductions_shapes_and_indexing():
    x = np.random.default_rng(5).normal(size=(3, 4))
    cases = [
        lambda lib, x: x.sum(),
        lambda lib, x: x.sum(1),
        lambda lib, x: x.sum(0, keepdim=True),
        lambda lib, x: x.mean(),
        lambda lib, x: x.mean((0, 1), keepdim=True),
        lambda lib, x: x.t().reshape(2, 6)[1],
        lambda lib, x: x.view(12)[2:9:3],
        lambda lib, x: x.transpose(0, 1).unsqueeze(0).squeeze().permute(1, 0),
        lambda lib, x: x.expand(2, 3, 4) * 1.5,
        lambda lib, x: lib.cat([x, x * x], 0),
        lambda lib, x: lib.stack([x, x.exp()], 1),
        lambda lib, x: x.flip(0),
        lambda lib, x: x[[0, 2], 1:],
        lambda lib, x: x[lib.tensor([[0, 1], [2, 2]])],
        lambda lib, x: x.index_select(1, lib.tensor([3, 0])),
        lambda lib, x: x.gather(1, lib.tensor([[0, 1], [1, 1], [3, 2]])),
        lambda lib, x: x.masked_fill(x > 0, 0.5),
        lambda lib, x: lib.softmax(x, 1),
        lambda lib, x: lib.log_softmax(x, 0),
        lambda lib, x: x.chunk(2, 1)[1] * 3,
        lambda lib, x: x.clone().double(),
        lambda lib, x: x.max(),
        lambda lib, x: x.amin(1),
        lambda lib, x: x.max(0).values,
        lambda lib, x: x.min(1, keepdim=True)[0],
        lambda lib, x: lib.logsumexp(x, 1),
        lambda lib, x: x.var(0),
        lambda lib, x: x.std(),
        lambda lib, x: x.std(1, keepdim=True),
        lambda lib, x: x.clone().copy_(x.sin()[0]),
        lambda lib, x: x.index_put((lib.tensor([0, 2]),), x[1] * 2),
        lambda lib, x: x.index_put((lib.tensor([0, 0]),), x[1], accumulate=True),
        lambda lib, x: x.repeat(2, 1, 3),
        lambda lib, x: x.prod(1),
        lambda lib, x: (x * lib.tensor([1.0, 0.0, 1.0, 1.0], dtype=lib.float64)).prod(),
        lambda lib, x: x.scatter(1, lib.tensor([[1], [0], [3]]), x[:, :1] * 2),
        lambda lib, x: x.scatter(0, lib.tensor([[1, 2, 0, 1]]), 0.5),
        lambda lib, x: x.scatter_add(1, lib.tensor([[1, 1], [0, 3], [3, 3]]), x[:, 1:3].exp()),
    ]
    for i, case in enumerate(cases):
        _check(lambda t: case(nbgrad, t), lambda t: case(torch, t), [x], seed=i)


def test_mlp_jvp_under_no_grad():
    """Forward AD does not depend on grad mode (the tangents flow under no_grad too)."""
    rng = np.random.default_rng(6)
    x, w1, w2 = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=(2, 3))

    def f(lib):
        F = lib.nn.functional
        return lambda a, b, c: F.log_softmax(F.linear(F.relu(F.linear(a, b)), c), dim=1).mean()
    with nbgrad.no_grad():
        _check(f(nbgrad), f(torch), [x, w1, w2])


def test_losses():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    target = [2, 0, 1, 2]
    cases = [
        lambda lib, a, b: lib.nn.functional.mse_loss(a, b),
        lambda lib, a, b: lib.nn.functional.l1_loss(a, b, reduction="sum"),
        lambda lib, a, b: lib.nn.functional.cross_entropy(a * b, lib.tensor(target)),
        lambda lib, a, b: lib.nn.functional.nll_loss(a.log_softmax(1), lib.tensor(target), reduction="none",
                                                     weight=lib.tensor([0.5, 1.0, 2.0], dtype=lib.float64)),
        lambda lib, a, b: lib.nn.functional.binary_cross_entropy(a.sigmoid(), b.sigmoid()),
    ]
    for i, case in enumerate(cases):
        _check(lambda a, b: case(nbgrad, a, b), lambda a, b: case(torch, a, b), [x, y], seed=i)


def test_tangent_is_recorded_for_backward():
    """The tangent is a function of the primal: backward through it gives the second derivative."""
    x = nbgrad.tensor([0.3, -1.2], dtype=nbgrad.float64, requires_grad=True)
    with fwAD.dual_level():
        y = fwAD.make_dual(x, nbgrad.ones(2, dtype=nbgrad.float64))
        t = fwAD.unpack_dual(y.sin() * y).tangent
        t.sum().backward()
    xv = x.detach().numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(xv) - xv * np.sin(xv), rtol=1e-12)


def test_tangents_are_dropped_when_the_level_exits():
    with fwAD.dual_level():
        d = fwAD.make_dual(nbgrad.ones(2), nbgrad.ones(2))
        e = d * 2
        assert fwAD.unpack_dual(e).tangent is not None
    assert fwAD.unpack_dual(d).tangent is None
    assert fwAD.unpack_dual(e).tangent is None
    assert (e * 2).tolist() == [4.0, 4.0]


def test_make_dual_is_a_view_and_unpack_without_tangent():
    x = nbgrad.ones(3)
    with fwAD.dual_level():
        d = fwAD.make_dual(x, nbgrad.zeros(3))
        assert d._base is x
        p, t = fwAD.unpack_dual(x)
        assert p is x and t is None
        assert fwAD.unpack_dual(d.detach()).tangent is None


def test_errors_match_torch():
    x = nbgrad.ones(3)
    with pytest.raises(RuntimeError, match="no level exists, make sure to enter_dual_level"):
        fwAD.make_dual(x, x)
    with fwAD.dual_level():
        with pytest.raises(RuntimeError, match=r"Tensor is of size \[3\] while the given forward gradient is of size "
                                               r"\[4\]"):
            fwAD.make_dual(x, nbgrad.ones(4))
        with pytest.raises(ValueError, match="Expected primal to be floating point"):
            fwAD.make_dual(nbgrad.ones(3, dtype=nbgrad.int64), x)
        with pytest.raises(RuntimeError, match="Nested forward mode AD is not supported at the moment"):
            with fwAD.dual_level():
                pass


def test_op_without_rule_raises():
    with fwAD.dual_level():
        d = fwAD.make_dual(nbgrad.tensor([1.0, 3.0, 2.0]), nbgrad.ones(3))
        with pytest.raises(NotImplementedError, match="Trying to use forward AD with masked_select that does not support it"):
            d.masked_select(d > 1)


def test_inplace_updates_carry_tangents_through_views():
    x = np.random.default_rng(7).normal(size=(3, 4))

    def f(lib):
        def run(t):
            y = t * 2
            y.mul_(t)
            y[0].add_(t[1])          # through a view: the view's tangent is a view of y's
            y.sin_()
            y[:, 1] = 0.5            # filled with a number: zero tangent there
            return y
        return run
    _check(f(nbgrad), f(torch), [x])


def test_custom_function_jvp():
    class Cube(nbgrad.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_forward(x)
            return x ** 3

        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return 3 * x * x * t

    class NoJvp(nbgrad.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

    with fwAD.dual_level():
        d = fwAD.make_dual(nbgrad.tensor([1.0, 2.0]), nbgrad.tensor([1.0, 0.5]))
        out = Cube.apply(d)
        assert out.tolist() == [1.0, 8.0]
        assert fwAD.unpack_dual(out).tangent.tolist() == [3.0, 6.0]
        with pytest.raises(NotImplementedError, match="You must implement the jvp function"):
            NoJvp.apply(d)
