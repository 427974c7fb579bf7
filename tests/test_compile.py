"""``nbgrad.compile`` against eager nbgrad: values and gradients of compiled programs, guards
and recompiles, graph breaks, parameters updated between calls, the disk cache."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import nbgrad
from nbgrad.functional.pointwise import RUN
from nbgrad.ops.table import TABLE


def _run(fn, values, requires_grad=True, weights_seed=1, compiled=None):
    """(output, gradients) of ``fn`` on fresh tensors of ``values``, eager or compiled."""
    xs = [nbgrad.tensor(v, requires_grad=requires_grad) for v in values]
    out = (compiled or fn)(*xs)
    if requires_grad:
        w = nbgrad.tensor(np.random.default_rng(weights_seed).uniform(0.5, 1.5, tuple(out.shape)), dtype=out.dtype)
        (out * w).sum().backward()
    return out.detach().numpy(), [x.grad.numpy() if x.grad is not None else None for x in xs]


def _agree(fn, values, rtol=1e-10, atol=1e-12, **kwargs):
    compiled = nbgrad.compile(fn, fullgraph=True)
    eager = _run(fn, values, **kwargs)
    for _ in range(2):                          # the capture's call, then a cached one
        ours = _run(fn, values, compiled=compiled, **kwargs)
        np.testing.assert_allclose(ours[0], eager[0], rtol=rtol, atol=atol)
        for a, b in zip(ours[1], eager[1]):
            if b is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    return compiled


def poly(x):
    return (x ** 3 + 7 * x ** 2 + 5 * x + 10).sum()


def chain(x):
    y = x
    for _ in range(25):
        y = (y * 1.01 + 0.1).tanh() - x
    return y.sum()


def tutorial(a, x1, x2, x3, x4):
    b = x1 * a
    c = x2 * a
    d = x3 * b + x4 * c
    return (10 - d).sum()


def mlp(X, W1, b1, W2, b2):
    return ((X @ W1 + b1).relu() @ W2 + b2).tanh().mean()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_workloads_agree_with_eager(dtype):
    rng = np.random.default_rng(0)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-5)
    _agree(poly, [rng.normal(size=(300,)).astype(dtype)], **tol)
    _agree(chain, [rng.normal(size=(5, 5)).astype(dtype)], **tol)
    _agree(tutorial, [rng.normal(size=(5, 5)).astype(dtype) for _ in range(5)], **tol)
    _agree(mlp, [rng.normal(size=s).astype(dtype) for s in [(8, 6), (6, 5), (5,), (5, 3), (3,)]], **tol)


def test_a_large_input_runs_the_parallel_loops():
    x = np.random.default_rng(1).normal(size=(600, 500))          # above PARALLEL_MIN
    _agree(poly, [x], rtol=1e-9)
    _agree(lambda x: (x.sin() * x).mean(0), [x])


def test_broadcasting_reductions_views_and_outputs_that_are_not_a_loss():
    rng = np.random.default_rng(2)
    _agree(lambda a, b: a * b + a.exp(), [rng.normal(size=(4, 3)), rng.normal(size=(3,))])
    _agree(lambda a, b: (a - b) / (1 + b * b), [rng.normal(size=(4, 3)), rng.normal(size=(4, 1))])
    _agree(lambda a: a.sum(1, keepdim=True) * a, [rng.normal(size=(4, 3))])
    _agree(lambda a: (a - a.mean()) ** 2, [rng.normal(size=(4, 3))])
    _agree(lambda a, b: (a.t() @ b).sigmoid(), [rng.normal(size=(5, 4)), rng.normal(size=(5, 3))])
    _agree(lambda a: a.reshape(2, 6).sum(0).sqrt(), [rng.uniform(1, 2, size=(4, 3))])
    _agree(lambda a, b: nbgrad.maximum(a, b) + nbgrad.atan2(a, b), [rng.normal(size=(3, 3)), rng.normal(size=(3, 3))])
    _agree(lambda a: nbgrad.nn.functional.silu(a) * nbgrad.nn.functional.gelu(a), [rng.normal(size=(6,))])


def test_several_outputs_and_inputs_without_grad():
    rng = np.random.default_rng(3)
    f = nbgrad.compile(lambda a, b: (a * b, (a * b).sum() + b.sum()), fullgraph=True)
    a = nbgrad.tensor(rng.normal(size=(3,)))
    b = nbgrad.tensor(rng.normal(size=(3,)), requires_grad=True)
    prod, total = f(a, b)
    assert prod.grad_fn is total.grad_fn and type(total.grad_fn).__name__ == "CompiledFunctionBackward"
    total.backward(retain_graph=True)
    np.testing.assert_allclose(prod.detach().numpy(), a.numpy() * b.detach().numpy())
    np.testing.assert_allclose(b.grad.numpy(), a.numpy() + 1)
    b.grad = None
    (prod * 3).sum().backward()                   # the other output alone: the first gets zeros
    np.testing.assert_allclose(b.grad.numpy(), 3 * a.numpy())
    assert a.grad is None


UNARY_TABLE_OPS = [name for name, rec in TABLE.items() if name in RUN and len(rec.args) == 1 and rec.api]


@pytest.mark.parametrize("name", UNARY_TABLE_OPS)
def test_every_unary_table_op_compiles_as_eager_computes_it(name):
    x = np.random.default_rng(len(name)).uniform(0.2, 0.8, (7,))
    _agree(lambda t: RUN[name](t * t) * t, [x], rtol=1e-9, atol=1e-12)


def test_a_call_with_a_new_signature_recaptures_and_old_ones_stay():
    calls = []

    def f(x):
        calls.append(1)
        return (x * 2).sum()
    c = nbgrad.compile(f)
    for shape in [(3,), (4,), (3,)]:
        assert float(c(nbgrad.ones(shape))) == 2 * shape[0]
    assert len(calls) == 2                      # two captures; the third call ran the cached program
    c(nbgrad.ones(3, dtype=nbgrad.float64))
    c(nbgrad.ones(3, requires_grad=True))
    assert len(calls) == 4


def test_recompile_limit_warns_once_then_runs_eagerly():
    c = nbgrad.compile(lambda x: x.sum())
    with pytest.warns(UserWarning, match="recompiled 8 times"):
        for n in range(1, 12):
            assert float(c(nbgrad.ones(n))) == n


def test_graph_breaks_run_eagerly_with_a_warning_naming_the_line_or_raise_with_fullgraph():
    def f(x):
        if x.sum() > 0:                          # data-dependent Python
            return x * 2
        return x * 3
    x = nbgrad.tensor([1.0, 2.0])
    with pytest.warns(UserWarning, match="graph break.*test_compile.py"):
        np.testing.assert_allclose(nbgrad.compile(f)(x).numpy(), [2.0, 4.0])
    with pytest.raises(nbgrad.compiler.GraphBreak, match="data-dependent"):
        nbgrad.compile(f, fullgraph=True)(x)


def test_unsupported_ops_fall_back_and_a_users_error_is_still_raised():
    x = nbgrad.tensor([[1.0, 2.0]])
    with pytest.warns(UserWarning, match="graph break"):
        out = nbgrad.compile(lambda t: t.cumsum(1).sum())(x)
    assert float(out) == 4.0
    with pytest.warns(UserWarning), pytest.raises(RuntimeError):
        nbgrad.compile(lambda t: t @ nbgrad.ones(3, 3))(x)


def test_parameters_read_afresh_and_receive_gradients():
    W = nbgrad.tensor(np.eye(3), requires_grad=True)
    b = nbgrad.zeros(3, requires_grad=True)
    step = nbgrad.compile(lambda x: ((x @ W + b) ** 2).sum())
    x = nbgrad.tensor(np.arange(6.0).reshape(2, 3))
    for _ in range(3):
        loss = step(x)
        W.grad = b.grad = None
        loss.backward()
        expected_W = 2 * x.numpy().T @ (x.numpy() @ W.detach().numpy() + b.detach().numpy())
        np.testing.assert_allclose(W.grad.numpy(), expected_W)
        with nbgrad.no_grad():
            W -= 0.01 * W.grad
            b -= 0.01 * b.grad
    assert float(step(x)) == pytest.approx(float(((x @ W + b) ** 2).sum()))


def test_modules_compile():
    model = nbgrad.nn.Sequential(nbgrad.nn.Tanh())
    compiled = nbgrad.compile(model)
    x = nbgrad.tensor([0.5, -1.0])
    np.testing.assert_allclose(compiled(x).numpy(), np.tanh([0.5, -1.0]))
    assert compiled.training is model.training
    model.compile(fullgraph=True)
    np.testing.assert_allclose(model(x).numpy(), np.tanh([0.5, -1.0]))
    assert type(model.forward).__name__ == "CompiledFunction"


def test_in_place_change_before_backward_is_caught():
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    y = nbgrad.tensor([3.0, 4.0])
    out = nbgrad.compile(lambda a, b: (a * b).sum())(x, y)
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_retain_graph_and_create_graph():
    x = nbgrad.tensor([1.0, 2.0], requires_grad=True)
    c = nbgrad.compile(poly)
    out = c(x)
    out.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    out.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    with pytest.warns(UserWarning, match="create_graph"):
        g, = nbgrad.autograd.grad(c(x), x, create_graph=True)
    gg, = nbgrad.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), 6 * x.detach().numpy() + 14)


def test_a_second_process_compiles_nothing(tmp_path):
    script = textwrap.dedent("""
        import nbgrad, numba
        from numba.core.dispatcher import Dispatcher
        f = nbgrad.compile(lambda x: ((x * 1.5).tanh() - x).sum(), fullgraph=True)
        x = nbgrad.ones(4, requires_grad=True)
        f(x).backward()
        import sys
        entry = next(iter(f._entries.values()))
        kernels = [k for k in vars(entry.program.module).values() if isinstance(k, Dispatcher)]
        print(sum(sum(k.stats.cache_misses.values()) for k in kernels))
    """)
    env = dict(os.environ, NBGRAD_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
            for _ in range(2)]
    misses = [int(r.stdout.split()[-1]) for r in runs]
    assert misses[0] >= 1 and misses[1] == 0, misses


def test_explain_and_logs(capsys, monkeypatch):
    text = nbgrad.compile(poly).explain(nbgrad.ones(3, requires_grad=True))
    assert "== graph ==" in text and "joint forward-backward" in text and "@njit" in text
    monkeypatch.setenv("NBGRAD_LOGS", "fusion")
    nbgrad.compile(poly)(nbgrad.ones(5))
    assert "[nbgrad.compile fusion]" in capsys.readouterr().out
    nbgrad.compiler.reset()


def test_training_steps_agree_with_eager():
    """The MLP workloads' losses, written with plain ops and with nn layers and F.cross_entropy."""
    rng = np.random.default_rng(4)
    x = nbgrad.tensor(rng.normal(size=(16, 12)))
    y = nbgrad.tensor(rng.integers(0, 5, 16))
    onehot = nbgrad.tensor(np.eye(5)[y.numpy()])

    def plain(w1, b1, w2, b2):
        return -(nbgrad.log_softmax(nbgrad.relu(x @ w1 + b1) @ w2 + b2, 1) * onehot).sum(1).mean()
    _agree(plain, [rng.normal(size=s) * 0.3 for s in [(12, 8), (8,), (8, 5), (5,)]])
    _agree(lambda z: nbgrad.nn.functional.cross_entropy(z, y) + nbgrad.softmax(z, 0).sum(), [rng.normal(size=(16, 5))])
    _agree(lambda z: nbgrad.nn.functional.nll_loss(z.log_softmax(1), y, reduction="sum"), [rng.normal(size=(16, 5))])

    model = nbgrad.nn.Sequential(nbgrad.nn.Linear(12, 8), nbgrad.nn.ReLU(), nbgrad.nn.Linear(8, 5)).double()
    loss = lambda inputs: nbgrad.nn.functional.cross_entropy(model(inputs), y)  # noqa: E731
    compiled = nbgrad.compile(loss, fullgraph=True)
    for _ in range(3):                          # parameters change between calls, in place
        model.zero_grad()
        loss(x).backward()
        eager = [p.grad.numpy().copy() for p in model.parameters()]
        model.zero_grad()
        value = compiled(x)
        value.backward()
        assert float(value) == pytest.approx(float(loss(x)), rel=1e-12)
        for p, g in zip(model.parameters(), eager):
            np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-12)
        with nbgrad.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad


def test_threads_share_one_compiled_function():
    """Captures in several threads at once (thread-local tracing, one lock for the cache), and
    eager ops in other threads meanwhile, give each caller its own right answer."""
    import threading
    compiled = nbgrad.compile(chain)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for k in range(12):
            value = rng.normal(size=(3 + k % 3, 4))
            x = nbgrad.tensor(value, requires_grad=True)
            eager_x = nbgrad.tensor(value, requires_grad=True)
            out = compiled(x) if seed % 2 == 0 else chain(x)
            out.backward()
            chain(eager_x).backward()
            if not np.allclose(x.grad.numpy(), eager_x.grad.numpy(), rtol=1e-10):
                errors.append(seed)
    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(compiled._entries) == 3
