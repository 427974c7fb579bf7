"""Custom differentiable operations: ``nbgrad.autograd.Function``."""
import warnings

import numpy as np
import pytest

import nbgrad
from nbgrad.autograd import Function, gradcheck, gradgradcheck
from nbgrad.autograd.function import once_differentiable


def dbl(*shape, seed=0, requires_grad=True, low=-2.0, high=2.0):
    a = np.random.default_rng(seed).uniform(low, high, shape)
    return nbgrad.tensor(a, dtype=nbgrad.float64, requires_grad=requires_grad)


def ones_like(t):
    return nbgrad.ones(*t.shape, dtype=t.dtype)


class MyExp(Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * y


class MyReLU(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * (x > 0).double() if x.dtype is nbgrad.float64 else grad * (x > 0).float()


class MulConstant(Function):
    """A number among the arguments: it gets no edge, and backward returns None for it."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.k = k
        return x * k

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.k, None


class Cube(Function):
    """A backward written with Tensor ops, hence itself differentiable."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * 3 * x * x


# -- gradients ------------------------------------------------------------------------------------
def test_custom_exp_matches_builtin_exp():
    x = dbl(3, 4)
    y = MyExp.apply(x)
    g = dbl(3, 4, seed=1, requires_grad=False)
    y.backward(g)
    x2 = x.detach().requires_grad_()
    x2.exp().backward(g)
    np.testing.assert_allclose(y.detach().numpy(), x2.exp().detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy())
    assert gradcheck(MyExp.apply, (dbl(2, 3),))


def test_custom_relu_matches_builtin_relu():
    x = dbl(10, low=-2, high=2)
    g = dbl(10, seed=2, requires_grad=False)
    MyReLU.apply(x).backward(g)
    x2 = x.detach().requires_grad_()
    x2.relu().backward(g)
    np.testing.assert_array_equal(x.grad.numpy(), x2.grad.numpy())
    away_from_kink = nbgrad.tensor([-1.5, -0.3, 0.4, 2.0], dtype=nbgrad.float64, requires_grad=True)
    assert gradcheck(MyReLU.apply, (away_from_kink,))


def test_float32_custom_function():
    x = nbgrad.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = MyReLU.apply(x)
    assert y.dtype is nbgrad.float32
    y.backward(ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), np.array([1, 0, 1], np.float32))


def test_grad_fn_is_the_ctx_and_named_after_the_class():
    x = dbl(3)
    y = MulConstant.apply(x, 2.5)
    assert type(y.grad_fn).__name__ == "MulConstantBackward"
    assert y.grad_fn.name() == "MulConstantBackward"
    assert y.grad_fn.k == 2.5                   # attributes set on ctx
    assert y.grad_fn._forward_cls is MulConstant
    assert repr(y).endswith("grad_fn=<MulConstantBackward>)")
    fn, nr = y.grad_fn.next_functions[0]
    assert len(y.grad_fn.next_functions) == 1  # the number has no edge
    assert type(fn).__name__ == "AccumulateGrad" and fn.variable is x and nr == 0
    y.backward(ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 2.5))


class LegendrePolynomial3(Function):
    """The custom Function of PyTorch's "learning PyTorch with examples" tutorial."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input ** 3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input ** 2 - 1)


def test_tutorial_legendre_polynomial():
    x = dbl(6, low=-1, high=1)
    assert gradcheck(LegendrePolynomial3.apply, (x,))
    assert gradgradcheck(LegendrePolynomial3.apply, (x,))
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    LegendrePolynomial3.apply(x).backward(ones_like(x))
    (0.5 * (5 * tx ** 3 - 3 * tx)).backward(torch.ones(6, dtype=torch.float64))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_chained_with_builtin_ops():
    x = dbl(4)
    z = MulConstant.apply(MyExp.apply(x * 2), 3.0) + x
    assert gradcheck(lambda t: MulConstant.apply(MyExp.apply(t * 2), 3.0) + t, (x,))
    z.backward(ones_like(z))
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.exp(2 * x.detach().numpy()) + 1)


def test_double_backward_through_a_custom_function():
    x = dbl(3)
    assert gradgradcheck(Cube.apply, (x,))
    g, = nbgrad.autograd.grad(Cube.apply(x), x, ones_like(x), create_graph=True)
    g.backward(ones_like(g))
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.detach().numpy())


# -- what backward returns ----------------------------------------------------------------------
def make(backward_result):
    class Fn(Function):
        @staticmethod
        def forward(ctx, x, k):
            return x * k

        @staticmethod
        def backward(ctx, grad):
            return backward_result(grad)
    return Fn


def test_wrong_number_of_gradients():
    x = dbl(3)
    y = make(lambda g: g).apply(x, 2)
    with pytest.raises(RuntimeError, match=r"^function FnBackward returned an incorrect number of gradients "
                                           r"\(expected 2, got 1\)$"):
        y.backward(ones_like(y))


def test_gradient_for_a_non_tensor_argument():
    x = dbl(3)
    y = make(lambda g: (g, 2)).apply(x, 2)
    with pytest.raises(RuntimeError, match="returned a gradient different than None at position 2, but the "
                                           "corresponding forward input was not a Variable"):
        y.backward(ones_like(y))


def test_extra_none_gradients_are_allowed():
    x = dbl(3)
    y = make(lambda g: (g, None, None)).apply(x, 2)
    y.backward(ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))


def test_gradient_of_a_wrong_shape():
    x = dbl(3)
    y = make(lambda g: (nbgrad.ones(2, dtype=nbgrad.float64), None)).apply(x, 2)
    with pytest.raises(RuntimeError, match=r"Function FnBackward returned an invalid gradient at index 0 - "
                                           r"got \[2\] but expected shape compatible with \[3\]"):
        y.backward(ones_like(y))


def test_none_gradient_means_no_contribution():
    x = dbl(3)
    y = make(lambda g: (None, None)).apply(x, 2) * x
    y.backward(ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy())


def test_errors_match_torch():
    torch = pytest.importorskip("torch")

    def message(lib, result):
        class Fn(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                return x * k

            @staticmethod
            def backward(ctx, grad):
                return result(grad)
        x = lib.ones(3, requires_grad=True)
        y = Fn.apply(x, 2)
        with pytest.raises(RuntimeError) as info:
            y.backward(lib.ones(3))
        return str(info.value)

    for result in (lambda g: g, lambda g: (g, 2), lambda g: (g, None, 3)):
        assert message(nbgrad, result) == message(torch, result)


# -- ctx ------------------------------------------------------------------------------------------
def test_needs_input_grad():
    seen = []

    class Fn(Function):
        @staticmethod
        def forward(ctx, a, b, k):
            seen.append(("forward", ctx.needs_input_grad, nbgrad.is_grad_enabled()))
            return a * b * k

        @staticmethod
        def backward(ctx, grad):
            seen.append(("backward", ctx.needs_input_grad))
            return grad * 2, None, None

    x, w = dbl(3), dbl(3, requires_grad=False)
    y = Fn.apply(x, w, 2)
    y.backward(ones_like(y))
    assert seen == [("forward", (True, False, False), False), ("backward", (True, False, False))]


def test_saved_tensor_modified_in_place_raises():
    x = dbl(3)
    a = x * 1
    y = MyReLU.apply(a)
    a.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward(ones_like(y))


def test_saved_tensors_are_freed_unless_retained():
    x = dbl(3)
    y = MyExp.apply(x)
    y.backward(ones_like(y), retain_graph=True)
    assert len(y.grad_fn.saved_tensors) == 1
    y.backward(ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(x.detach().numpy()))
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward(ones_like(y))
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.grad_fn.saved_tensors


def test_save_for_backward_accepts_only_tensors():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, 3)
            return x * 1

    with pytest.raises(TypeError, match="save_for_backward can only save variables, but argument 1 is of type int"):
        Fn.apply(dbl(2))


def test_saving_the_output_and_none():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(None, y)
            return y

        @staticmethod
        def backward(ctx, grad):
            none, y = ctx.saved_tensors
            assert none is None
            return grad * y

    x = dbl(3)
    y = Fn.apply(x)
    assert y.grad_fn.saved_tensors[1] is y
    assert gradcheck(Fn.apply, (x,))


def test_multiple_outputs():
    calls = []

    class Split(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            calls.append((g1.detach().numpy().copy(), g2.detach().numpy().copy()))
            return g1 * 2 + g2 * 3

    x = dbl(3)
    a, b = Split.apply(x)
    assert a.grad_fn is b.grad_fn and a.grad_fn.num_outputs == 2
    assert (a.output_nr, b.output_nr) == (0, 1)
    assert gradcheck(Split.apply, (x,))
    calls.clear()
    (a * b).backward(ones_like(a))
    np.testing.assert_allclose(x.grad.numpy(), 12 * x.detach().numpy())
    assert len(calls) == 1                      # one call with both gradients
    x.grad = None
    a, b = Split.apply(x)
    b.backward(ones_like(b))                    # a gets no gradient: backward sees zeros
    np.testing.assert_array_equal(calls[-1][0], np.zeros(3))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 3.0))


def test_non_tensor_outputs_pass_through():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, "label"

        @staticmethod
        def backward(ctx, g, g_label):
            assert g_label is None
            return g * 2

    x = dbl(3)
    y, label = Fn.apply(x)
    assert label == "label"
    y.backward(ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 2.0))


def test_mark_non_differentiable():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            y, mask = x * 2, x > 0
            scaled = x * 3
            ctx.mark_non_differentiable(scaled)
            return y, mask, scaled

        @staticmethod
        def backward(ctx, g, g_mask, g_scaled):
            assert g_mask.dtype is nbgrad.bool and g_scaled.dtype is nbgrad.float64
            np.testing.assert_array_equal(g_scaled.numpy(), np.zeros(3))
            return g * 2

    x = dbl(3)
    y, mask, scaled = Fn.apply(x)
    assert y.requires_grad and not mask.requires_grad and not scaled.requires_grad
    assert scaled.grad_fn is None
    y.backward(ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 2.0))


def test_materialize_grads_false_passes_none():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 1, x * 1

        @staticmethod
        def backward(ctx, g1, g2):
            assert g2 is None, "with materialize_grads off the unused output's gradient is None"
            return g1

    x = dbl(3)
    a, _ = Fn.apply(x)
    a.backward(ones_like(a))
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))


def test_mark_dirty():
    class AddOne(Function):
        @staticmethod
        def forward(ctx, x):
            x._data += 1                            # changes x's memory, as x.numpy() += 1 would
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad

    leaf = dbl(3)
    a = leaf * 2
    version = a._version
    out = AddOne.apply(a)
    assert out is a and a._version == version + 1
    assert type(a.grad_fn).__name__ == "AddOneBackward"
    a.backward(ones_like(a))
    np.testing.assert_array_equal(leaf.grad.numpy(), np.full(3, 2.0))
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad has been used in an in-place"):
        AddOne.apply(dbl(3))


def test_dirty_tensor_must_be_returned():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.mark_dirty(x)
            return x * 2

    with pytest.raises(RuntimeError, match="Some elements marked as dirty during the forward method were not "
                                           "returned as output"):
        Fn.apply(dbl(3) * 1)


def test_returning_an_input_makes_an_alias():
    class Identity(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad * 5

    x = dbl(3)
    y = Identity.apply(x)
    assert y is not x and x.is_leaf and x.grad_fn is None
    assert y.data_ptr() == x.data_ptr() and y._version_counter is x._version_counter
    y.backward(ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 5.0))


def test_setup_context_style():
    class Scale(Function):
        @staticmethod
        def forward(x, k=2.0):
            return x * k

        @staticmethod
        def setup_context(ctx, inputs, output):
            x, k = inputs
            ctx.k = k
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx, grad):
            out, = ctx.saved_tensors
            return grad * ctx.k, None

    x = dbl(3)
    assert Scale.apply(x).grad_fn.k == 2.0          # the default is bound, as in PyTorch
    y = Scale.apply(x, k=4.0)
    assert y.grad_fn.saved_tensors[0] is y
    y.backward(ones_like(y))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, 4.0))
    assert gradcheck(lambda t: Scale.apply(t, 3.0), (x,))


def test_keyword_arguments_bind_to_positions():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x, scale=None):
            ctx.scale_is_tensor = isinstance(scale, nbgrad.Tensor)
            return x * scale

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    x, s = dbl(3), dbl(3, seed=1)
    y = Fn.apply(x, scale=s)
    assert y.grad_fn.needs_input_grad == (True, True)
    y.backward(ones_like(y))
    np.testing.assert_array_equal(s.grad.numpy(), np.ones(3))


def test_forward_runs_without_recording_and_no_grad_gives_plain_outputs():
    class Fn(Function):
        @staticmethod
        def forward(ctx, x):
            inner = x * 2
            assert inner.grad_fn is None
            return inner

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    x = dbl(3)
    assert Fn.apply(x).requires_grad
    with nbgrad.no_grad():
        assert not Fn.apply(x).requires_grad
    assert not Fn.apply(dbl(3, requires_grad=False)).requires_grad


def test_once_differentiable():
    class Square(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            x, = ctx.saved_tensors
            assert not nbgrad.is_grad_enabled()
            return grad * 2 * x

    x = dbl(3)
    assert gradcheck(Square.apply, (x,))
    go = dbl(3, seed=3)
    g, = nbgrad.autograd.grad(Square.apply(x), x, go, create_graph=True)
    assert type(g.grad_fn).__name__ == "Error"
    with pytest.raises(RuntimeError, match="trying to differentiate twice a function that was marked with "
                                           "@once_differentiable"):
        g.backward(ones_like(g))


def test_default_backward_and_instantiation():
    class NoBackward(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

    y = NoBackward.apply(dbl(3))
    with pytest.raises(NotImplementedError, match="You must implement either the backward or vjp method"):
        y.backward(ones_like(y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn = NoBackward()
    assert caught and issubclass(caught[0].category, DeprecationWarning)
    with pytest.raises(RuntimeError, match="Legacy autograd function with non-static forward method"):
        fn(dbl(3))


def test_import_paths():
    import nbgrad.autograd.function as function_module
    assert nbgrad.autograd.Function is function_module.Function
    assert nbgrad.autograd.function.once_differentiable is once_differentiable
