"""The autograd engine: gradient flow, accumulation, graph lifetime, PyTorch's error texts,
``autograd.grad``, grad modes, hooks, graph introspection, deep graphs and threads.

Outputs are reduced with ``backward(gradient)`` rather than ``.sum()``, so these tests
depend only on the pointwise ops."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import Variable
from helpers import nb, random_array


def ones_like(t):
    return nbgrad.ones(t.shape, dtype=t.dtype)


def leaf(values, dtype=nbgrad.float64):
    return nbgrad.tensor(values, dtype=dtype, requires_grad=True)


# -- gradient flow ----------------------------------------------------------------------------------
def test_fan_in_sums_gradients():
    """``x`` reaches the output along three paths; their gradients add up."""
    x = leaf([1.0, 2.0, -3.0])
    y = x * x + x * 3 + x.exp()
    y.backward(ones_like(y))
    xv = np.array([1.0, 2.0, -3.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * xv + 3 + np.exp(xv))


def test_diamond_graph_runs_each_node_once():
    x = leaf([0.5, 1.5])
    a = x * 2
    b = a.sin()
    c = a.cos()
    y = b * c                                      # d/dx sin(2x)cos(2x) = 2cos(4x)
    y.backward(ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(4 * np.array([0.5, 1.5])), rtol=1e-12)


def test_same_tensor_twice_in_one_op():
    x = leaf([3.0])
    (x * x).backward(ones_like(x))
    assert x.grad.tolist() == [6.0]
    x.grad = None
    (x + x + x).backward(ones_like(x))
    assert x.grad.tolist() == [3.0]


def test_broadcast_gradient_reduction():
    a = leaf([[1.0], [2.0], [3.0]])                # (3, 1)
    b = leaf([[10.0, 20.0, 30.0, 40.0]])            # (1, 4)
    bias = leaf([1.0, 2.0, 3.0, 4.0])              # (4,)
    y = a * b + bias                               # (3, 4)
    assert y.shape == (3, 4)
    g = random_array((3, 4), np.float64, 0)
    y.backward(nb(g))
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4) and bias.grad.shape == (4,)
    np.testing.assert_allclose(a.grad.numpy(), (g * b.detach().numpy()).sum(1, keepdims=True))
    np.testing.assert_allclose(b.grad.numpy(), (g * a.detach().numpy()).sum(0, keepdims=True))
    np.testing.assert_allclose(bias.grad.numpy(), g.sum(0))


def test_broadcast_against_scalar_tensor():
    s = leaf(2.0)
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    (s * x).backward(ones_like(x))
    assert s.grad.shape == () and s.grad.item() == 10.0
    assert x.grad.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_gradient_accumulates_across_backward_calls():
    x = leaf([1.0, 2.0])
    (x * 3).backward(ones_like(x))
    (x * x).backward(ones_like(x))
    assert x.grad.tolist() == [3.0 + 2.0, 3.0 + 4.0]
    x.grad = None
    (x * 3).backward(ones_like(x))
    assert x.grad.tolist() == [3.0, 3.0]
    x.grad.zero_()
    (x * 2).backward(ones_like(x))
    assert x.grad.tolist() == [2.0, 2.0]


def test_grad_is_not_aliased_with_the_incoming_gradient():
    """The first gradient is copied into ``.grad``: later accumulation must not write
    into the tensor the caller passed."""
    x = leaf([1.0, 2.0])
    g = nbgrad.tensor([1.0, 1.0], dtype=nbgrad.float64)
    (x + 0).backward(g)
    (x + 0).backward(g)
    assert g.tolist() == [1.0, 1.0] and x.grad.tolist() == [2.0, 2.0]


def test_gradient_dtype_follows_leaf():
    x = leaf([1.0, 2.0], dtype=nbgrad.float32)
    y = x * nbgrad.tensor([2.0, 3.0], dtype=nbgrad.float64)
    assert y.dtype is nbgrad.float64
    y.backward(ones_like(y))
    assert x.grad.dtype is nbgrad.float32 and x.grad.tolist() == [2.0, 3.0]


def test_backward_on_scalar_output_with_implicit_gradient():
    x = leaf(3.0)
    y = x * x * x
    y.backward()
    assert x.grad.item() == 27.0
    z = leaf([2.0])                                 # one element, not 0-d: still implicit
    (z * z).backward()
    assert z.grad.tolist() == [4.0]


def test_retain_graph_allows_second_backward():
    x = leaf([1.0, 2.0])
    y = x.exp() * x
    y.backward(ones_like(y), retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward(ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)


def test_graph_without_saved_tensors_can_be_backpropagated_twice():
    x = leaf([1.0])
    y = x + 1
    y.backward(ones_like(y))
    y.backward(ones_like(y))
    assert x.grad.tolist() == [2.0]


def test_node_that_passes_no_gradient_still_releases_its_inputs():
    """A backward step may return None for an input (no gradient flows there). The nodes
    below it must still run for the gradients arriving by other paths."""
    class Stop(nbgrad.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return None

    a = leaf([1.0, 2.0])
    b = leaf([3.0, 4.0])
    y = Stop.apply(a * b)                            # a and b are reached through MulBackward0 ...
    z = y * a + b                                    # ... and directly
    z.backward(ones_like(z))
    assert a.grad is not None and b.grad is not None
    assert a.grad.tolist() == [6.0, 16.0] and b.grad.tolist() == [1.0, 1.0]       # y = 2ab, held fixed


def test_only_part_of_the_graph_requires_grad():
    x = leaf([1.0, 2.0])
    c = nbgrad.tensor([5.0, 6.0], dtype=nbgrad.float64)
    y = x * c + c.exp()
    assert y.grad_fn.next_functions[1][0] is None            # the branch made of constants
    y.backward(ones_like(y))
    assert x.grad.tolist() == [5.0, 6.0] and c.grad is None


# -- error texts ------------------------------------------------------------------------------------
def test_error_implicit_gradient_of_non_scalar():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()


def test_error_output_does_not_require_grad():
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad and does not have a grad_fn"):
        nbgrad.ones(2).backward(nbgrad.ones(2))
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad and does not have a grad_fn"):
        (nbgrad.ones(1) * 2).backward()
    with nbgrad.no_grad():
        y = leaf([1.0]) * 2
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
        y.backward()


def test_error_backward_twice_through_freed_graph():
    x = leaf([1.0, 2.0])
    y = x * x
    y.backward(ones_like(y))
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward(ones_like(y))
    z = x.exp()
    nbgrad.autograd.grad(z, x, ones_like(z))
    with pytest.raises(RuntimeError, match="Specify retain_graph=True"):
        nbgrad.autograd.grad(z, x, ones_like(z))


def test_error_gradient_shape_mismatch():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"Mismatch in shape: grad_output\[0\] has a shape of torch.Size\(\[3\]\) "
                                           r"and output\[0\] has a shape of torch.Size\(\[2\]\)"):
        (x * 2).backward(nbgrad.ones(3, dtype=nbgrad.float64))


# -- autograd.grad ----------------------------------------------------------------------------------
def test_autograd_grad_returns_without_accumulating():
    x = leaf([1.0, 2.0])
    y = leaf([3.0, 4.0])
    z = x * y + x
    gx, gy = nbgrad.autograd.grad(z, (x, y), ones_like(z))
    assert gx.tolist() == [4.0, 5.0] and gy.tolist() == [1.0, 2.0]
    assert x.grad is None and y.grad is None


def test_autograd_grad_single_input_and_scalar_output():
    x = leaf(2.0)
    (g,) = nbgrad.autograd.grad(x * x * x, x)
    assert g.item() == 12.0 and x.grad is None


def test_autograd_grad_with_respect_to_non_leaf():
    x = leaf([1.0, 2.0])
    h = x * 3                      # non-leaf
    out = h * h
    (gh,) = nbgrad.autograd.grad(out, h, ones_like(out), retain_graph=True)
    assert gh.tolist() == [6.0, 12.0]
    assert h.grad is None and x.grad is None
    (gx,) = nbgrad.autograd.grad(out, x, ones_like(out))
    assert gx.tolist() == [18.0, 36.0]


def test_autograd_grad_unused_input():
    x = leaf([1.0, 2.0])
    unused = leaf([5.0])
    y = x * 2
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph. Set allow_unused=True if "
                                           "this is the desired behavior."):
        nbgrad.autograd.grad(y, (x, unused), ones_like(y), retain_graph=True)
    gx, gu = nbgrad.autograd.grad(y, (x, unused), ones_like(y), allow_unused=True, retain_graph=True)
    assert gx.tolist() == [2.0, 2.0] and gu is None
    gx, gu = nbgrad.autograd.grad(y, (x, unused), ones_like(y), allow_unused=True, materialize_grads=True)
    assert gu.tolist() == [0.0]


def test_autograd_grad_unused_input_error_names_its_index():
    """PyTorch 2.x names the input: 'The differentiated Tensor at index 1 appears to not ...'."""
    x, unused = leaf([1.0]), leaf([5.0])
    with pytest.raises(RuntimeError, match="The differentiated Tensor at index 1 appears to not have been used"):
        nbgrad.autograd.grad(x * 2, (x, unused), ones_like(x))


def test_autograd_grad_input_without_grad():
    x = leaf([1.0])
    with pytest.raises(RuntimeError, match="One of the differentiated Tensors does not require grad"):
        nbgrad.autograd.grad(x * 2, nbgrad.ones(1), ones_like(x))


def test_autograd_backward_function_and_inputs():
    x, y = leaf([1.0]), leaf([2.0])
    z = x * y
    nbgrad.autograd.backward(z, ones_like(z), inputs=[x])
    assert x.grad.tolist() == [2.0] and y.grad is None
    a, b = leaf([1.0]), leaf([2.0])
    nbgrad.autograd.backward([a * 3, b * 4], [ones_like(a), ones_like(b)])
    assert a.grad.tolist() == [3.0] and b.grad.tolist() == [4.0]


# -- grad modes -------------------------------------------------------------------------------------
def test_no_grad_context():
    x = leaf([1.0])
    with nbgrad.no_grad():
        y = x * 2
        assert not nbgrad.is_grad_enabled()
    assert nbgrad.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    assert (x * 2).requires_grad


def test_enable_grad_inside_no_grad():
    x = leaf([1.0])
    with nbgrad.no_grad():
        with nbgrad.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and not z.requires_grad


def test_set_grad_enabled_context_and_call():
    x = leaf([1.0])
    with nbgrad.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with nbgrad.set_grad_enabled(True):
        assert (x * 2).requires_grad
    nbgrad.set_grad_enabled(False)
    try:
        assert not nbgrad.is_grad_enabled() and not (x * 2).requires_grad
    finally:
        nbgrad.set_grad_enabled(True)
    assert nbgrad.is_grad_enabled()


def test_grad_modes_as_decorators():
    x = leaf([1.0])

    @nbgrad.no_grad()
    def f():
        return x * 2

    @nbgrad.no_grad
    def g():
        return x * 2

    @nbgrad.enable_grad()
    def h():
        return x * 2

    @nbgrad.set_grad_enabled(False)
    def k():
        return x * 2

    assert nbgrad.is_grad_enabled()                  # decorating changes nothing outside
    assert not f().requires_grad and not g().requires_grad and not k().requires_grad
    with nbgrad.no_grad():
        assert h().requires_grad
    assert f.__name__ == "f"


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with nbgrad.no_grad():
            raise ValueError
    assert nbgrad.is_grad_enabled()


def test_grad_mode_is_per_thread():
    x = leaf([1.0])
    inside, ready, done = {}, threading.Event(), threading.Event()

    def worker():
        ready.wait()
        inside["enabled"] = nbgrad.is_grad_enabled()
        inside["requires_grad"] = (x * 2).requires_grad
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    with nbgrad.no_grad():
        ready.set()
        done.wait(30)
    t.join()
    assert inside == {"enabled": True, "requires_grad": True}


# -- retain_grad, hooks ------------------------------------------------------------------------------
def test_retain_grad_on_non_leaf():
    a = leaf([1.0, 2.0])
    b = a * 2
    b.retain_grad()
    assert b.retains_grad and not a.retains_grad
    c = b * b
    c.backward(ones_like(c))
    assert b.grad.tolist() == [4.0, 8.0] and a.grad.tolist() == [8.0, 16.0]
    assert c.grad is None
    a.retain_grad()                                  # a no-op on a leaf


def test_tensor_hook_modifies_gradient_and_can_be_removed():
    x = leaf([1.0, 1.0])
    y = x * 3
    handle = y.register_hook(lambda g: g * 10)
    z = y * y
    z.backward(ones_like(z))
    assert x.grad.tolist() == [180.0, 180.0]
    handle.remove()
    x.grad = None
    y = x * 3
    z = y * y
    z.backward(ones_like(z))
    assert x.grad.tolist() == [18.0, 18.0]


def test_leaf_hook_and_observing_hook():
    x = leaf([1.0, 1.0])
    seen = []
    h1 = x.register_hook(lambda g: g + 1)
    h2 = x.register_hook(lambda g: seen.append(g.tolist()))      # returns None: observes only
    (x * 2).backward(ones_like(x))
    assert x.grad.tolist() == [3.0, 3.0] and seen == [[3.0, 3.0]]
    h1.remove()
    h2.remove()
    x.grad = None
    (x * 2).backward(ones_like(x))
    assert x.grad.tolist() == [2.0, 2.0] and seen == [[3.0, 3.0]]


def test_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        nbgrad.ones(2).register_hook(lambda g: g)


def test_hook_sees_the_summed_gradient():
    x = leaf([1.0])
    y = x * 2
    seen = []
    y.register_hook(lambda g: seen.append(g.tolist()))
    (y * 3 + y * 4).backward(ones_like(y))
    assert seen == [[7.0]]


# -- graph introspection -------------------------------------------------------------------------------
def test_grad_fn_names_and_next_functions():
    x = leaf([1.0, 2.0])
    w = leaf([3.0, 4.0])
    cases = {
        "AddBackward0": x + 1, "SubBackward0": x - w, "RsubBackward1": 10 - x, "MulBackward0": x * w,
        "DivBackward0": x / 3, "NegBackward0": -x, "PowBackward0": x ** 2, "PowBackward1": x ** w,
        "PowBackward2": 2 ** x, "ExpBackward0": x.exp(), "LogBackward0": x.log(), "SqrtBackward0": x.sqrt(),
        "AbsBackward0": x.abs(), "SinBackward0": x.sin(), "CosBackward0": x.cos(), "TanhBackward0": x.tanh(),
        "SigmoidBackward0": x.sigmoid(), "ReluBackward0": x.relu(), "ClampBackward1": x.clamp(0, 1),
        "MaximumBackward0": nbgrad.maximum(x, w), "MinimumBackward0": nbgrad.minimum(x, w),
        "WhereBackward0": nbgrad.where(x > 1, x, w), "CloneBackward0": x.clone(), "ToCopyBackward0": x.float(),
    }
    for name, y in cases.items():
        assert y.grad_fn.name() == name and type(y.grad_fn).__name__ == name
    fns = (x * w).grad_fn.next_functions
    assert len(fns) == 2 and all(nr == 0 for _, nr in fns)
    assert all(type(fn).__name__ == "AccumulateGrad" for fn, _ in fns)
    assert fns[0][0].variable is x and fns[1][0].variable is w
    assert (x * 2).grad_fn.next_functions[1][0] is None        # a number has no edge
    y = (x * 2).exp()
    assert y.grad_fn.next_functions[0][0].name() == "MulBackward0"
    assert (x * 2).grad_fn.next_functions[0][0] is (x + 1).grad_fn.next_functions[0][0]   # one accumulator


def test_is_leaf_and_requires_grad_propagation():
    x = leaf([1.0])
    c = nbgrad.ones(1, dtype=nbgrad.float64)
    assert x.is_leaf and c.is_leaf
    y = x * c
    assert not y.is_leaf and y.requires_grad
    z = c * 2
    assert z.is_leaf and not z.requires_grad and z.grad_fn is None
    assert x.detach().is_leaf
    assert nbgrad.ones(1).requires_grad_().is_leaf


def test_variable_wrapper():
    v = Variable(nbgrad.ones(2))
    assert isinstance(v, nbgrad.Tensor) and not v.requires_grad
    w = Variable(nbgrad.ones(2), requires_grad=True)
    assert w.requires_grad and w.is_leaf
    (w * 3).backward(ones_like(w))
    assert w.grad.tolist() == [3.0, 3.0]
    assert nbgrad.autograd.Variable is Variable


# -- deep graphs -----------------------------------------------------------------------------------------
def test_chain_of_100000_ops_without_recursion():
    x = leaf([1.0])
    y = x
    for _ in range(50_000):
        y = y * 1.00001
        y = y + 1e-6
    assert sys.getrecursionlimit() < 100_000
    y.backward(ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), [1.00001 ** 50_000], rtol=1e-9)
    del y                                            # freeing the graph must not recurse either


# -- threads ---------------------------------------------------------------------------------------------
_THREADS_SCRIPT = textwrap.dedent("""
    import threading
    import numpy as np
    import nbgrad

    def work(k, errors):
        try:
            rng = np.random.default_rng(k)
            for shape in [(512, 256), (3, 4), (256, 512), (5,)] * 3:     # 2**17 elements: parallel kernels
                a = rng.uniform(0.5, 2.0, shape)
                b = rng.uniform(0.5, 2.0, shape[-1:])
                x = nbgrad.from_numpy(a.copy()).requires_grad_()
                w = nbgrad.from_numpy(b.copy()).requires_grad_()
                with nbgrad.no_grad():
                    assert not (x * w).requires_grad
                y = (x * w + 1).tanh() * x.exp() - x / w
                assert y.requires_grad
                g = rng.uniform(-1, 1, shape)
                y.backward(nbgrad.from_numpy(g))
                t = np.tanh(a * b + 1)
                dy_dx = (1 - t * t) * b * np.exp(a) + t * np.exp(a) - 1 / b
                dy_dw = (1 - t * t) * a * np.exp(a) + a / (b * b)
                np.testing.assert_allclose(x.grad.numpy(), g * dy_dx, rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(w.grad.numpy(), (g * dy_dw).reshape(-1, shape[-1]).sum(0),
                                           rtol=1e-9, atol=1e-9)
        except BaseException as e:
            errors.append(repr(e))

    errors = []
    threads = [threading.Thread(target=work, args=(k, errors)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    print("threads ok")
""")


def test_threads_run_forward_and_backward_concurrently(tmp_path):
    """Four threads on large (parallel kernels) and small tensors at once: correct results
    and no abort. Run in a child process so that an abort fails this test, not pytest."""
    script = tmp_path / "threads.py"
    script.write_text(_THREADS_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "threads ok" in proc.stdout


# -- .grad takes over a fresh gradient, and only a fresh one ---------------------------------------
@pytest.fixture
def takes(monkeypatch):
    """Whether each gradient accumulated into a leaf was taken without a copy."""
    from nbgrad.autograd import graph
    seen = []
    original = graph.accumulate_into

    def spy(variable, grad, fresh=False):
        seen.append(fresh)
        return original(variable, grad, fresh)
    monkeypatch.setattr(graph, "accumulate_into", spy)
    return seen


def test_fresh_gradient_becomes_grad_without_a_copy(takes):
    x = nbgrad.randn(5, 5, requires_grad=True)
    (x * 3.0).sum().backward()
    assert takes == [True]


def test_transposed_weight_gradient_is_taken_without_a_copy(takes):
    w = nbgrad.randn(4, 3, requires_grad=True)
    b = nbgrad.randn(4, requires_grad=True)
    nbgrad.nn.functional.linear(nbgrad.randn(6, 3), w, b).sum().backward()
    assert takes == [True, True]
    assert w.grad.is_contiguous()


def test_a_gradient_sent_to_two_leaves_is_not_shared():
    a, b = nbgrad.randn(3, requires_grad=True), nbgrad.randn(3, requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.add_(1.0)
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3, np.float32))


def test_a_gradient_kept_by_a_hook_is_copied(takes):
    x = nbgrad.randn(3, requires_grad=True)
    kept = []
    x.register_hook(lambda g: kept.append(g))
    (x * 2.0).sum().backward()
    assert takes == [False]
    assert not np.shares_memory(x.grad.numpy(), kept[0].numpy())


def test_the_callers_gradient_is_copied(takes):
    x = nbgrad.randn(3, requires_grad=True)
    g = nbgrad.ones(3)
    x.backward(g)
    assert takes == [False]
    x.grad.add_(1.0)
    np.testing.assert_array_equal(g.numpy(), np.ones(3, np.float32))
