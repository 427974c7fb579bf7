"""The elementwise loops that read a broadcast operand by rows (a bias row ``x @ W + b``, a
column ``z - z.max(1, keepdim=True)``), and the reassociated sums: against PyTorch."""
import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.ops.elementwise import PARALLEL_MIN, _rows

SHAPES = [((256, 256), (256,)), ((256, 10), (256, 1)), ((4, 5, 6), (5, 6)), ((4, 5, 6), (4, 1, 1)),
          ((4, 5, 6), (4, 5, 1)), ((2, 3, 4), (3, 1)), ((5, 1), (1, 5)), ((0, 5), (5,)), ((3, 4), (1,)),
          ((PARALLEL_MIN // 64 + 3, 64), (64,)), ((PARALLEL_MIN // 64 + 3, 64), (PARALLEL_MIN // 64 + 3, 1))]


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum"])
def test_row_and_column_broadcasts_agree_with_torch(shapes, dtype, op):
    rng = np.random.default_rng(len(shapes[0]))
    a, b = (rng.standard_normal(s) * 10 for s in shapes)
    a, b = a.astype(dtype), b.astype(dtype)
    for x, y in ((a, b), (b, a)):
        got = getattr(nbgrad, op)(nbgrad.tensor(x), nbgrad.tensor(y))
        want = getattr(torch, op)(torch.tensor(x), torch.tensor(y))
        assert got.shape == tuple(want.shape)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_the_row_loop_is_the_one_taken():
    out = np.empty((6, 4))
    assert _rows(out, [np.ones((6, 4)), np.ones(4)])[:2] == (4, "cr")
    assert _rows(out, [np.ones((6, 1)), np.ones((1, 4))])[:2] == (4, "or")
    assert _rows(np.empty((2, 3, 4)), [np.ones((2, 3, 4)), np.ones((3, 1))]) is None     # a middle broadcast
    assert _rows(out, [np.ones((4, 6)).T, np.ones(4)]) is None                        # a transposed operand


def test_an_in_place_bias_add_through_the_row_loop():
    x = np.arange(12.0).reshape(3, 4)
    b = np.array([1.0, -2.0, 3.0, 0.5])
    t = nbgrad.tensor(x.copy())
    t += nbgrad.tensor(b)
    np.testing.assert_array_equal(t.numpy(), x + b)
    c = nbgrad.tensor(x.copy())
    c[:, 1:] -= nbgrad.tensor(b[1:])                  # a view: the strided loop
    np.testing.assert_array_equal(c.numpy(), np.concatenate([x[:, :1], x[:, 1:] - b[1:]], 1))


def test_bias_gradient_through_the_row_loop():
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s) for s in ((8, 5), (5, 3), (3,)))
    got = [nbgrad.tensor(v, requires_grad=True) for v in (x, w, b)]
    want = [torch.tensor(v, requires_grad=True) for v in (x, w, b)]
    (got[0] @ got[1] + got[2]).relu().sum().backward()
    (want[0] @ want[1] + want[2]).relu().sum().backward()
    for g, t in zip(got, want):
        np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("shape,dim", [((1_000_003,), None), ((257, 1031), 1), ((1031, 257), 0), ((3, 4000, 5), 1)])
def test_reassociated_float32_sums_stay_accurate(shape, dim):
    x = np.random.default_rng(1).random(shape).astype(np.float32)
    got = nbgrad.tensor(x).sum() if dim is None else nbgrad.tensor(x).sum(dim)
    want = x.astype(np.float64).sum(axis=dim)
    np.testing.assert_allclose(got.numpy(), want.astype(np.float32), rtol=2e-7)


def test_reassociated_sums_keep_nan_and_inf():
    x = np.ones(1000, np.float32)
    x[517] = np.nan
    assert np.isnan(nbgrad.tensor(x).sum().item())
    x[517] = np.inf
    assert nbgrad.tensor(x).sum().item() == np.inf
    x[3] = -np.inf
    assert np.isnan(nbgrad.tensor(x).sum().item())


@pytest.mark.parametrize("n", [7, PARALLEL_MIN + 5])
def test_in_place_updates_read_their_own_output(n):
    """``p -= lr * g``, ``x.mul_(2)``, ``x.clamp_(...)``: the loops that read the first
    operand from the output itself."""
    rng = np.random.default_rng(n)
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    t = nbgrad.tensor(p.copy())
    t -= 0.01 * nbgrad.tensor(g)
    np.testing.assert_array_equal(t.numpy(), p - np.float32(0.01) * g)
    t.mul_(2)
    np.testing.assert_array_equal(t.numpy(), (p - np.float32(0.01) * g) * 2)
    t.sub_(nbgrad.tensor(g), alpha=3)
    t.clamp_(-1, 1)
    want = torch.tensor(p.copy())
    want -= 0.01 * torch.tensor(g)
    want.mul_(2).sub_(torch.tensor(g), alpha=3).clamp_(-1, 1)
    np.testing.assert_allclose(t.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)   # torch fuses a - 3 * b (FMA)
