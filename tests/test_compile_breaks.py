"""Graph breaks "from there": with ``fullgraph=False`` the part of the function captured
before a break runs compiled, the rest eagerly; values and gradients equal eager's, one
warning names the op and the line, and ``fullgraph=True`` raises instead."""
import warnings

import numpy as np
import pytest

import nbgrad
import nbgrad.nn.functional as F


def _call(fn, values):
    xs = [nbgrad.tensor(v, requires_grad=True) for v in values]
    out = fn(*xs)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum((o * (k + 1)).sum() for k, o in enumerate(outs) if o.requires_grad)
    loss.backward()
    return [o.detach().numpy() for o in outs], [x.grad.numpy() if x.grad is not None else None for x in xs]


def _agree(fn, calls, match):
    """``calls`` lists of argument values: compiled and eager agree on each; one warning."""
    compiled = nbgrad.compile(fn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for values in calls:
            ours, eager = _call(compiled, values), _call(fn, values)
            for a, b in zip(ours[0] + ours[1], eager[0] + eager[1]):
                if b is None:
                    assert a is None
                else:
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    breaks = [str(w.message) for w in caught if "graph break" in str(w.message)]
    assert len(breaks) == 1, breaks
    assert "from there" in breaks[0] and "test_compile_breaks.py" in breaks[0]
    assert match in breaks[0]
    return compiled


def data_dependent(x, y):
    a = (x * 2 + y).tanh()
    b = a.exp()
    if a.sum() > 0:                 # the break: a branch on data
        c = b * 3
    else:
        c = b - 1
    return (c.cumsum(0) * a).sum(), a


def test_a_branch_on_data_runs_its_captured_part_compiled_then_eagerly():
    rng = np.random.default_rng(0)
    calls = [[rng.standard_normal((4, 3)), rng.standard_normal(3)] for _ in range(5)]
    compiled = _agree(data_dependent, calls, "data-dependent")
    assert len(compiled._prefixes) == 1         # one prefix program, generated once, for every call


def unsupported_in_the_middle(x):
    y = x.sin() * 2
    z = y.cumsum(1)                 # not captured
    return (z * y).sum() + x.tanh().sum()


def test_an_unsupported_op_runs_eagerly_and_is_named():
    rng = np.random.default_rng(1)
    _agree(unsupported_in_the_middle, [[rng.standard_normal((3, 4))] for _ in range(3)], "cumsum")


def item_then_math(x):
    s = (x * x).mean()
    scale = s.item()                # a Python number from the data
    return (x * scale + s).sum()


def test_item_gives_the_number_and_the_rest_follows():
    rng = np.random.default_rng(2)
    _agree(item_then_math, [[rng.standard_normal(5)] for _ in range(3)], "data-dependent")


def linear_of_3d(x, w):
    h = (x * 0.5).relu()
    return F.linear(h, w).tanh().sum()   # a product of a 3-D input: not captured, F.linear runs eagerly


def test_a_break_inside_a_nested_op_reruns_the_outermost_eagerly():
    rng = np.random.default_rng(3)
    _agree(linear_of_3d, [[rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4))] for _ in range(2)],
           "matmul")


def test_module_parameters_get_gradients_through_both_parts():
    nbgrad.manual_seed(0)
    lstm, head = nbgrad.nn.LSTM(4, 8, batch_first=True).double(), nbgrad.nn.Linear(8, 1).double()
    x, t = nbgrad.randn(3, 5, 4, dtype=nbgrad.float64), nbgrad.randn(3, 1, dtype=nbgrad.float64)

    def loss(x, target):
        return F.mse_loss(head(lstm(x)[0][:, -1]), target)
    params = list(lstm.parameters()) + list(head.parameters())
    eager = loss(x, t)
    eager.backward()
    expected = [p.grad.clone() for p in params]
    compiled = nbgrad.compile(loss)
    with pytest.warns(UserWarning, match="graph break.*from there"):
        for _ in range(2):
            for p in params:
                p.grad = None
            out = compiled(x, t)
            out.backward()
            assert float(out) == pytest.approx(float(eager), rel=1e-12)
            for p, g in zip(params, expected):
                np.testing.assert_allclose(p.grad.numpy(), g.numpy(), rtol=1e-10, atol=1e-12)


def test_print_shows_the_real_values(capsys):
    def f(x):
        y = x * 2
        print(y)
        return y + 1
    with pytest.warns(UserWarning, match="graph break"):
        out = nbgrad.compile(f)(nbgrad.tensor([1.0, 2.0]))
    assert "2., 4." in capsys.readouterr().out
    assert out.tolist() == [3.0, 5.0]


def test_fullgraph_raises_naming_the_op_and_line():
    with pytest.raises(nbgrad.compiler.GraphBreak, match="cumsum.*test_compile_breaks.py"):
        nbgrad.compile(unsupported_in_the_middle, fullgraph=True)(nbgrad.ones(2, 2))
    with pytest.raises(nbgrad.compiler.GraphBreak, match="data-dependent"):
        nbgrad.compile(data_dependent, fullgraph=True)(nbgrad.ones(2, 3), nbgrad.ones(3))


def test_in_place_after_the_break_changes_the_argument_as_eager_does():
    def f(x):
        y = x * 2
        if y.sum() > 0:
            x.add_(1)
        return y
    a, b = nbgrad.tensor([1.0, 2.0]), nbgrad.tensor([1.0, 2.0])
    with pytest.warns(UserWarning, match="graph break"):
        out = nbgrad.compile(f)(a)
    assert f(b).tolist() == out.tolist() and a.tolist() == b.tolist() == [2.0, 3.0]


def test_create_graph_through_a_compiled_prefix_says_it_is_not_supported():
    def f(x):
        y = (x * x).sum()
        return y * float(y)
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(UserWarning, match="graph break"):
        out = nbgrad.compile(f)(x)
    with pytest.raises(RuntimeError, match="create_graph=True through the compiled part"):
        nbgrad.autograd.grad(out, x, create_graph=True)
