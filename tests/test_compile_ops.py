"""The ops ``nbgrad.compile`` captures beyond the op table's pointwise records: views and
pieces, cat/stack, comparisons and where, extreme values, casts, in-place ops on computed
values. Each is compiled (``fullgraph=True``: nothing may break) and compared with eager
nbgrad on values and gradients, in float32 and float64, with a broadcasting case and a size-0
or size-1 case; bad shapes raise eager's exception and text."""
import numpy as np
import pytest

import nbgrad
import nbgrad.nn.functional as F
from nbgrad.compiler.capture import capture

DTYPES = [nbgrad.float32, nbgrad.float64]


def _run(fn, values, dtype, compiled=None):
    xs = [nbgrad.tensor(v, dtype=dtype, requires_grad=True) for v in values]
    out = (compiled or fn)(*xs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    loss = None
    for k, o in enumerate(outs):
        if o.requires_grad:
            w = nbgrad.tensor(np.random.default_rng(k).uniform(0.5, 1.5, tuple(o.shape)), dtype=o.dtype)
            term = (o * w).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()
    return [(o.detach().numpy(), o.dtype) for o in outs], [x.grad.numpy() if x.grad is not None else None for x in xs]


def _agree(fn, shapes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in shapes]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype is nbgrad.float32 else dict(rtol=1e-12, atol=1e-12)
    compiled = nbgrad.compile(fn, fullgraph=True)
    eager = _run(fn, values, dtype)
    for _ in range(2):                          # the capture's call, then a cached one
        ours = _run(fn, values, dtype, compiled)
        assert len(ours[0]) == len(eager[0])
        for (a, da), (b, db) in zip(ours[0], eager[0]):
            assert da is db and a.shape == b.shape
            np.testing.assert_allclose(a, b, **tol)
        for a, b in zip(ours[1], eager[1]):
            assert (a is None) == (b is None)
            if b is not None:
                np.testing.assert_allclose(a, b, **tol)


# (name, function, input shapes): broadcasting and size-0/size-1 cases are their own rows
PROGRAMS = [
    ("cat", lambda x, y: nbgrad.cat([x, y.tanh(), x * 2], 1), [(3, 2), (3, 4)]),
    ("cat_broadcast_operand", lambda x, y: nbgrad.cat([x + y, x], 0), [(3, 2), (2,)]),
    ("cat_empty", lambda x, y: nbgrad.cat([x, y], 0) * 3, [(0, 2), (3, 2)]),
    ("stack", lambda x, y: nbgrad.stack([x, y * 2], 1), [(3, 2), (3, 2)]),
    ("stack_negative_dim", lambda x, y: nbgrad.stack([x, y, x], -1).sum(-1), [(1, 2), (1, 2)]),
    ("chunk", lambda x: [a * (i + 1) for i, a in enumerate(x.chunk(3, 1))], [(2, 7)]),
    ("split", lambda x: x.split([1, 3], 0)[1].exp(), [(4, 2)]),
    ("split_size", lambda x: [p.sin() for p in x.split(2, -1)], [(2, 5)]),
    ("unbind", lambda x: x.unbind(1)[2] * 3 + x.unbind(1)[0], [(4, 3)]),
    ("unbind_size_1", lambda x: x.unbind(0)[0].cos(), [(1, 3)]),
    ("slice", lambda x: x[:, 1:3] * x[0].sum() + x[1:, :2][0], [(4, 3)]),
    ("slice_ellipsis_none", lambda x: x[..., None][1:, 0] * x[-1, None], [(4, 3)]),
    ("slice_step", lambda x: x[::2, 1] + 1, [(5, 3)]),
    ("slice_empty", lambda x: x[2:2] * 5, [(4, 3)]),
    ("narrow", lambda x: x.narrow(1, -2, 2).exp(), [(3, 4)]),
    ("unsqueeze_squeeze_flatten", lambda x: x.unsqueeze(0).squeeze(0).flatten() * 2 + x.flatten().sin(), [(4, 3)]),
    ("squeeze_dim", lambda x: x.squeeze(1) + x.unsqueeze(-1).squeeze(), [(3, 1)]),
    ("expand", lambda x: x.expand(2, 4, 3).sum(0) + x.expand(4, -1), [(1, 3)]),
    ("expand_as_broadcast_to", lambda x, y: x.expand_as(y) * y + x.broadcast_to(y.shape), [(3, 1), (3, 4)]),
    ("permute", lambda x: x.permute(2, 0, 1).exp() * 2, [(2, 3, 4)]),
    ("comparisons", lambda x, y: ((x > 0).float() + (x < y).float() + (x == x).double() + (x >= 0.5).float()
                                  + (x <= y).float() * (x != 0).float()) * x, [(5, 3), (3,)]),
    ("comparison_outputs", lambda x: (x > 0, x * 2, x.lt(0.1) & (x > -1), ~(x > 0) | (x < -0.5)), [(4,)]),
    ("where", lambda x, y: nbgrad.where(x > 0, x, y * 0.1) + nbgrad.where(y < 0, 1.0, x), [(5, 3), (3,)]),
    ("masked_fill", lambda x: x.masked_fill(x < 0, 0.5) * x, [(5, 3)]),
    ("masked_fill_broadcast_mask", lambda x, y: x.masked_fill(y > 0, -1.0), [(1, 3), (4, 3)]),
    ("clamp_min", lambda x: x.clamp(min=0.1) * x, [(5, 3)]),
    ("clamp_max", lambda x: x.clamp(max=-0.2) + nbgrad.clamp(x, max=0.3), [(5, 3)]),
    ("clamp_min_size_0", lambda x: x.clamp(min=0.0), [(0, 3)]),
    ("amax_amin", lambda x: x.amax(0) + x.amin(1, keepdim=True).sum() + x.amax((0, 1)), [(5, 3)]),
    ("max_whole", lambda x: x.max() * x.min() + x, [(5, 3)]),
    ("max_dim", lambda x: x.max(1)[0] + x.min(0, keepdim=True).values.sum() + x.max(-1).values, [(5, 3)]),
    ("max_dim_indices", lambda x: (x.max(1).indices, x.min(0)[1], x.max(1)[0]), [(5, 3)]),
    ("max_size_1", lambda x: x.max(0)[0] * 3, [(1, 4)]),
    ("maximum_via_max", lambda x, y: x.max(y) + x.min(other=y), [(5, 3), (3,)]),
    ("sum_mean_dtype", lambda x: x.sum(1, dtype=nbgrad.float64) + x.mean(dtype=nbgrad.float64), [(5, 3)]),
    ("sum_dtype_float32", lambda x: x.sum(0, dtype=nbgrad.float32) * 2, [(4, 3)]),
    ("casts", lambda x: x.double() * x.float().to(nbgrad.float64) + x.to(nbgrad.float32).double(), [(3, 2)]),
    ("detach", lambda x: x * x.detach() + x.contiguous(), [(3, 2)]),
    ("functional_forms", lambda x, y: F.relu(x) + F.gelu(x) + F.gelu(x, approximate="tanh") + F.silu(x)
     + nbgrad.tanh(x) + nbgrad.sigmoid(y) + F.mse_loss(x, y.expand(5, 3)), [(5, 3), (3,)]),
    ("mse_loss_reductions", lambda x, y: F.mse_loss(x, y, reduction="sum") + F.mse_loss(x, y, reduction="none"),
     [(4,), (4,)]),
    ("in_place", lambda x: (lambda y: (y.add_(1), y.relu_(), y.mul_(2), y.sub_(x), y)[-1])(x * 1.0), [(5, 3)]),
    ("in_place_operators", lambda x: (lambda y: (y.__iadd__(2), y.__imul__(x), y.__itruediv__(3), y)[-1])(x * 2),
     [(5, 3)]),
    ("in_place_functional", lambda x: F.relu(x + 1, inplace=True) * F.silu(x * 2, inplace=True), [(5, 3)]),
    ("in_place_broadcast_operand", lambda x, y: (lambda z: (z.add_(y), z.clamp_(min=0.0), z)[-1])(x * 2),
     [(4, 3), (3,)]),
    ("addmm", lambda b, x, w: nbgrad.addmm(b, x, w.t()) + nbgrad.addmm(b, x, w.t(), beta=0.5, alpha=2.0),
     [(4,), (3, 5), (4, 5)]),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name, fn, shapes", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_compiled_op_agrees_with_eager(name, fn, shapes, dtype):
    _agree(fn, shapes, dtype)


def test_lstm_cell_step_compiles():
    nbgrad.manual_seed(0)
    cell = nbgrad.nn.LSTMCell(8, 16).double()

    def step(x, h, c):
        h2, c2 = cell(x, (h, c))
        return (h2 * 2).sum() + c2.tanh().sum()
    x, h, c = (nbgrad.randn(4, n, dtype=nbgrad.float64) for n in (8, 16, 16))
    eager = step(x, h, c)
    eager.backward()
    expected = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    compiled = nbgrad.compile(step, fullgraph=True)
    for _ in range(2):
        out = compiled(x, h, c)
        out.backward()
        assert float(out) == pytest.approx(float(eager), rel=1e-12)
        for p, g in zip(cell.parameters(), expected):
            np.testing.assert_allclose(p.grad.numpy(), g.numpy(), rtol=1e-10, atol=1e-12)
        cell.zero_grad()


def test_gradcheck_through_the_new_ops():
    def f(x, y):
        a, b = nbgrad.cat([x, y], 0).chunk(2, 1)
        m = nbgrad.where(a > 0, a, b * 0.5).clamp(min=-0.3)
        s = nbgrad.stack([m, b], 0)[:, 1:].amax(0)
        return s.unsqueeze(0).expand(2, -1, -1).sum() + a.max(1)[0].sum() + m.masked_fill(b < 0, 0.25).sum()
    rng = np.random.default_rng(3)
    x = nbgrad.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = nbgrad.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert nbgrad.autograd.gradcheck(nbgrad.compile(f, fullgraph=True), (x, y))


# bad shapes: eager's exception and text, from the capture (nothing computed)
BAD = [
    lambda x: nbgrad.cat([x, x[:2]], 1),
    lambda x: nbgrad.cat([x, x.sum()], 0),
    lambda x: nbgrad.cat([x, x[0]], 0),
    lambda x: nbgrad.stack([x, x[:1]], 0),
    lambda x: x.chunk(0, 1),
    lambda x: x.split([1, 1], 0),
    lambda x: x[::-1],
    lambda x: x[5],
    lambda x: x[0, 0, 0],
    lambda x: x.unsqueeze(4),
    lambda x: x.expand(4, 3),
    lambda x: x.narrow(0, 1, 5),
    lambda x: x.permute(0, 0),
    lambda x: x.transpose(0, 2),
    lambda x: x.clamp(),
    lambda x: nbgrad.where(x, x, x),
    lambda x: x.amax(2),
    lambda x: x.max(3),
    lambda x: x + x[:, :2],
    lambda x: x.masked_fill(x, 1.0),
    lambda x: (x * 1).add_(nbgrad.ones(2, 3, 3)),
]


@pytest.mark.parametrize("k", range(len(BAD)))
def test_bad_shapes_raise_eagers_error(k):
    fn = BAD[k]
    x = nbgrad.ones(3, 3, requires_grad=True)
    with pytest.raises(Exception) as eager:
        fn(x)
    with pytest.raises(Exception) as compiled:
        capture(fn, (x,), {})
    assert type(compiled.value) is type(eager.value)
    assert str(compiled.value) == str(eager.value)


def test_in_place_on_an_argument_or_a_view_breaks_cleanly():
    x = nbgrad.ones(3)
    for fn in (lambda t: t.add_(1), lambda t: (t * 1)[1:].mul_(2), lambda t: (lambda y: (y[0], y.add_(1)))(t * 1)):
        with pytest.raises(nbgrad.compiler.GraphBreak, match="in-place"):
            nbgrad.compile(fn, fullgraph=True)(x.clone())


def test_comparison_results_are_bool_and_never_require_grad():
    x = nbgrad.tensor([1.0, -2.0, 3.0], requires_grad=True)
    mask = nbgrad.compile(lambda t: t > 0, fullgraph=True)(x)
    assert mask.dtype is nbgrad.bool and not mask.requires_grad
    assert mask.tolist() == [True, False, True]
